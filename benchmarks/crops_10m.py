"""Shared synthetic data for the ten-million-crop benchmarks (issue 19, item 6).

``vectors_file(n)`` returns ``var/bench/crops_<n>x256.npy``: ``n`` L2-normalised float32
vectors around ``CLUSTERS`` gaussian cluster centres (crops of one species and camera look
alike), in bursts of ``BURST`` consecutive rows that share a sequence offset (the frames of
one trigger look nearly the same: they are each other's nearest neighbours), generated once
in chunks through ``np.lib.format.open_memmap`` (so 10M x 256, 10.24 GB, never sits in
memory) and reused when present. Labels (``cluster_labels``) are each row's
cluster id, from which the classifier benchmark derives species.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np

from benchmarks._result import BENCH_DIR

D, CLUSTERS, BURST, SEED = 256, 2_000, 10, 0
N_DEFAULT = 10_000_000
# The crop count the *_10m benchmarks run at (`python -m benchmarks kcenter_10m --n 100000`).
N = N_DEFAULT
# Per-dimension spread of a burst around its cluster centre and of a crop around its burst:
# crops of one burst sit at cosine ~0.97, of one cluster ~0.8, of other clusters near 0.
SPREAD, BURST_SPREAD = 0.03, 0.01
_CHUNK = 500_000


def _centres() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((CLUSTERS, D), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return centres


def cluster_labels(n: int) -> np.ndarray:
    """(n,) int64 cluster id of each row of ``vectors_file(n)`` (same seed, recomputed); the
    rows of one burst share it."""
    rng = np.random.default_rng(SEED + 1)
    return np.repeat(rng.integers(0, CLUSTERS, size=-(-n // BURST)), BURST)[:n]


def vectors_file(n: int = N_DEFAULT) -> Path:
    """Path of the (n, 256) float32 .npy, written in chunks if missing."""
    path = BENCH_DIR / f"crops_{n}x{D}.npy"
    if path.exists():
        return path
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    centres, labels = _centres(), cluster_labels(n)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, D))
    start = time.perf_counter()
    for r0 in range(0, n, _CHUNK):
        rng = np.random.default_rng([SEED + 2, r0])
        rows = min(_CHUNK, n - r0)  # _CHUNK is a multiple of BURST: bursts stay whole
        bursts = rng.standard_normal((-(-rows // BURST), D), dtype=np.float32)
        block = rng.standard_normal((rows, D), dtype=np.float32)
        block *= BURST_SPREAD
        block += SPREAD * np.repeat(bursts, BURST, axis=0)[:rows]
        block += centres[labels[r0 : r0 + rows]]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[r0 : r0 + block.shape[0]] = block
    out.flush()
    del out
    os.replace(tmp, path)
    print(f"wrote {path} ({n} x {D}) in {time.perf_counter() - start:.0f} s")
    return path


def vectors_open(n: int = N_DEFAULT) -> np.ndarray:
    """The (n, 256) float32 vectors as a read-only memory map."""
    arr: np.ndarray = np.load(vectors_file(n), mmap_mode="r")
    return arr


def peak_rss_bytes() -> int:
    """This process's peak resident set size: /proc/self/status VmHWM (per address space, so
    a subprocess does not inherit its parent's, as ``ru_maxrss`` does across fork and exec);
    ``ru_maxrss`` where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    import sys

    vectors_file(int(sys.argv[1]) if len(sys.argv) > 1 else N_DEFAULT)
