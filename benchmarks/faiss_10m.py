"""FAISS at ten million crops (issue 19, item 6): build, memory, latency, recall@10.

``python -m benchmarks faiss_10m [--n N]`` (default 10,000,000) indexes the memory-mapped
(N, 256) vectors of ``benchmarks.crops_10m`` with the product's ``embeddings.index.index_build``
(above ``pq_min`` it builds IVF-PQ re-ranked by SQ8; for a quick run at small N the thresholds
are lowered so the same path runs), in a subprocess whose peak RSS is recorded (it includes
the pages of the memory map the build read) beside its anonymous RSS after the build (the
index itself) and the saved index's size. ``Q`` queries are stored crops (their burst-mates
are their true neighbours); latency is ``index_search`` one query at a time (p50/p95), and
recall@10 is against exact search over the same memory map (blocked BLAS, same run), whose
time per query is the baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from benchmarks import crops_10m
from benchmarks._result import BENCH_DIR, result_write
from embeddings.index import (
    DEFAULT_FLAT_MAX,
    DEFAULT_NPROBE,
    DEFAULT_PQ_MIN,
    index_build,
    index_kind,
    index_save,
    index_search,
)

Q, K, SEED = 200, 10, 0
_BLOCK_ROWS = 262_144


def _rss_anon() -> int:
    """Anonymous resident bytes now (/proc/self/status RssAnon): memory the process owns,
    not the file pages of a memory map."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _exact(features: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) row numbers of the exact k nearest rows, streaming ``features`` in blocks."""
    best_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    q_norms = np.einsum("ij,ij->i", queries, queries)[:, None]
    for r0 in range(0, features.shape[0], _BLOCK_ROWS):
        block = features[r0 : r0 + _BLOCK_ROWS]
        dist = queries @ block.T
        dist *= -2.0
        dist += q_norms
        dist += np.einsum("ij,ij->i", block, block)[None, :]
        part = np.argpartition(dist, k, axis=1)[:, :k]
        cand_d = np.concatenate([best_d, np.take_along_axis(dist, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + r0], axis=1)
        order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(cand_d, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_i


def _child(n: int) -> dict[str, object]:
    features = crops_10m.vectors_open(n)
    ids = np.arange(n, dtype=np.int64)
    start = time.perf_counter()
    index = index_build(
        features,
        ids,
        flat_max=min(DEFAULT_FLAT_MAX, n // 4),
        pq_min=min(DEFAULT_PQ_MIN, n // 2),
        seed=SEED,
    )
    build_s = time.perf_counter() - start
    anon_after_build = _rss_anon()
    path = BENCH_DIR / f"faiss_{n}.faiss"
    index_save(index, path)
    rows = np.sort(np.random.default_rng(SEED).choice(n, size=Q, replace=False))
    queries = np.ascontiguousarray(features[rows])
    latencies = []
    found = np.empty((Q, K), dtype=np.int64)
    for q in range(Q):
        t0 = time.perf_counter()
        _, found[q] = index_search(index, queries[q : q + 1], K)
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    index_search(index, queries, K)
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth = _exact(features, queries, K)
    exact_s = time.perf_counter() - t0
    recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))
    return {
        "kind": index_kind(index),
        "build_s": build_s,
        "query_p50_ms": 1e3 * float(np.percentile(latencies, 50)),
        "query_p95_ms": 1e3 * float(np.percentile(latencies, 95)),
        "batch_ms_per_query": 1e3 * batch_s / Q,
        "exact_ms_per_query": 1e3 * exact_s / Q,
        "recall_at_10": recall,
        "peak_rss": crops_10m.peak_rss_bytes(),
        "rss_anon_after_build": anon_after_build,
        "index_file_bytes": path.stat().st_size,
    }


def main() -> None:
    n = crops_10m.N
    crops_10m.vectors_file(n)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.faiss_10m", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    r = json.loads(done.stdout.strip().splitlines()[-1])
    params = {"n": n, "d": crops_10m.D, "queries": Q, "k": K, "nprobe": DEFAULT_NPROBE, **r}
    out = result_write(
        name="faiss_10m",
        unit="ms per query (one at a time, p95)",
        value=r["query_p95_ms"],
        baseline_name="exact search over the same memory map (blocked BLAS, batched, per query)",
        baseline=r["exact_ms_per_query"],
        params=params,
    )
    print(
        f"faiss_10m N={n}: {r['kind']} built in {r['build_s']:.0f} s, recall@10 "
        f"{r['recall_at_10']:.3f}, p50/p95 {r['query_p50_ms']:.1f}/{r['query_p95_ms']:.1f} ms "
        f"(exact {r['exact_ms_per_query']:.0f} ms/query), index {r['index_file_bytes'] / 1e9:.2f}"
        f" GB, anon RSS {r['rss_anon_after_build'] / 1e9:.2f} GB, peak RSS "
        f"{r['peak_rss'] / 1e9:.2f} GB -> {out}"
    )


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]))))
