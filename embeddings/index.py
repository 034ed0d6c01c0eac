"""Nearest-neighbour search over embeddings with FAISS: exact up to a size, IVF beyond.

Every index is an ``IndexIDMap2`` whose search results are the caller's ids (crop primary
keys), never row numbers, around one of two inner indexes:

* ``N <= flat_max`` (default 200,000): ``IndexFlatL2``, brute-force and exact. One query
  over 200k x 256 costs a few ms on 2 cores, so small projects need nothing approximate.
* ``N > flat_max``: ``IndexIVFFlat`` with ``nlist = round(4 * sqrt(N))`` k-means cells,
  trained on a seeded sample of ``TRAIN_PER_CELL * nlist`` rows (deterministic for a
  seed), searching ``nprobe = DEFAULT_NPROBE`` cells; vectors are stored uncompressed, so
  the distances returned are exact and only the candidate set is approximate.

Why IVF-Flat rather than HNSW (2 shared CPU cores, 300k x 256 unit vectors, 1000 queries):
IVF (nlist 2190) built in 23 s, HNSW (M=32, efConstruction=40) in 98 s; at equal search
time their recall@10 was the same. On isotropic random vectors no index recalls well (the
true neighbours are barely nearer than the rest: IVF nprobe 32 0.11-0.18, HNSW efSearch 64
0.08-0.16). On clustered vectors (3000 clusters, like crops of sequences and species),
queries near stored vectors reach recall@10 1.00 with IVF from nprobe 8; nprobe 32 costs
~0.5 ms per query against ~3 ms for flat. IVF also runs on faiss-gpu (HNSW does not) and
keeps the memory of a flat index.

* ``N > pq_min`` (default 2,000,000): ``IndexRefine`` of an ``IndexIVFPQ`` (``nlist =
  min(1024, round(sqrt(N)))`` cells, 32-byte PQ codes of the residuals) re-ranked by an
  8-bit scalar-quantised copy (``SQ8``): the ``REFINE_K_FACTOR`` x k PQ candidates are
  re-scored at near-exact distances. At 10M x 256 it holds ~3 GB
  (32 + 256 bytes a vector, ids beside) where a flat or IVF-Flat index holds 10.24 GB, and
  builds in minutes on 2 cores: k-means and codebooks on a sample, vectors added in blocks
  (a memory-mapped array is never loaded whole). Distances are SQ8's, within ~1e-3 of exact
  on unit vectors.
  Measured in benchmarks/README.md ("FAISS at ten million": recall@10 against exact search).

Where faiss-gpu sees a CUDA device, ``index_load`` (and ``index_to_gpu``) move the index to
the GPU for searching; ``index_save`` always writes the CPU form, so files are portable.
For unit-norm vectors, squared L2 ``D`` and cosine similarity are related by
``cos = 1 - D / 2``, so the ranking is the cosine ranking.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from projects.atomic import atomic_path

# faiss has no type stubs; alias for readability in signatures.
FaissIndex = Any

DEFAULT_FLAT_MAX = 200_000
DEFAULT_PQ_MIN = 2_000_000
DEFAULT_NPROBE = 32
# IVF-PQ: bytes per code (d must be a multiple), candidates re-ranked per neighbour asked,
# most cells, rows per add block. (An HNSW quantizer, tried to assign vectors without the
# N x nlist product, was slower than this flat one at efSearch 128 on 2 cores.)
PQ_BYTES, REFINE_K_FACTOR, PQ_NLIST_MAX, ADD_BLOCK = 32, 8, 1024, 262_144
# k-means iterations for the IVF-PQ cells: 10 instead of faiss's 25 (the cells only route
# queries; the re-ranking makes the distances) keeps 10M's training near a minute.
PQ_KMEANS_ITER = 10
# k-means needs ~30+ points per centroid to place it well; faiss itself warns below 39
# and subsamples above 256, so 64 gives stable cells at a fraction of N's training cost.
TRAIN_PER_CELL = 64


def _as_float32_matrix(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as a C-contiguous (N, d) float32 matrix or raise ValueError.

    Only float32 is accepted (no silent down-casting of float64 inputs).
    """
    if array.ndim != 2 or array.dtype != np.float32 or array.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D float32 array (N, d), got shape {array.shape} "
            f"dtype {array.dtype}"
        )
    return np.ascontiguousarray(array)


def _check_ids(ids: np.ndarray, n_rows: int) -> None:
    """ids must be (n_rows,) int64 and unique: each id identifies exactly one crop."""
    if ids.ndim != 1 or ids.dtype != np.int64 or ids.shape[0] != n_rows:
        raise ValueError(
            f"ids must be a 1-D int64 array of length {n_rows}, got shape "
            f"{ids.shape} dtype {ids.dtype}"
        )
    if np.unique(ids).size != ids.size:
        raise ValueError("ids must be unique")


def ivf_nlist(n: int) -> int:
    """Number of IVF cells for ``n`` vectors: ``round(4 * sqrt(n))``, between 1 and ``n``.

    k-means cannot train more cells than it has points (tiny sets with a small flat_max).
    """
    return max(1, min(n, round(4 * math.sqrt(n))))


def _ivf_index(matrix: np.ndarray, *, seed: int, nprobe: int) -> FaissIndex:
    """Untrained-then-trained ``IndexIVFFlat`` for ``matrix`` (N, d); vectors not added."""
    n, d = matrix.shape
    nlist = ivf_nlist(n)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist, faiss.METRIC_L2)
    ivf.cp.seed = seed  # k-means initialisation
    rng = np.random.default_rng(seed)
    sample_size = min(n, TRAIN_PER_CELL * nlist)
    rows = np.sort(rng.choice(n, size=sample_size, replace=False))
    ivf.train(matrix[rows])
    ivf.nprobe = min(nprobe, nlist)
    return ivf


def pq_nlist(n: int) -> int:
    """IVF cells of the IVF-PQ index for ``n`` vectors: ``round(sqrt(n))`` up to
    ``PQ_NLIST_MAX``, between 1 and ``n``. Fewer than IVF-Flat's: a cell is scanned as
    32-byte codes, so large cells are cheap, while assigning every vector to its cell costs
    N x nlist x d (10M x 1024 x 256: minutes on 2 cores; 4 x sqrt(N) would be 12 times that)."""
    return max(1, min(n, PQ_NLIST_MAX, round(math.sqrt(n))))


def _ivfpq_index(matrix: np.ndarray, *, seed: int, nprobe: int) -> FaissIndex:
    """Trained ``IndexRefine(IndexIVFPQ, SQ8)`` for ``matrix`` (N, d); vectors not added."""
    n, d = matrix.shape
    if d % PQ_BYTES:
        raise ValueError(f"IVF-PQ needs d divisible by {PQ_BYTES}, got d={d}")
    nlist = pq_nlist(n)
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatL2(d), d, nlist, PQ_BYTES, 8)
    ivf.cp.seed = seed
    ivf.cp.niter = PQ_KMEANS_ITER
    ivf.pq.cp.seed = seed
    rng = np.random.default_rng(seed)
    # k-means and the PQ codebooks (256 centroids each) both want a few dozen per centroid.
    sample_size = min(n, max(TRAIN_PER_CELL * nlist, 256 * TRAIN_PER_CELL))
    rows = np.sort(rng.choice(n, size=sample_size, replace=False))
    sample = np.ascontiguousarray(matrix[rows])
    refine = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    index = faiss.IndexRefine(ivf, refine)
    index.train(sample)
    index.k_factor = REFINE_K_FACTOR
    ivf.nprobe = min(nprobe, nlist)
    return index


def index_build(
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    flat_max: int = DEFAULT_FLAT_MAX,
    pq_min: int = DEFAULT_PQ_MIN,
    seed: int = 0,
    nprobe: int = DEFAULT_NPROBE,
) -> FaissIndex:
    """Index ``vectors`` (N, d) float32 under ``ids`` (N,) int64 (unique), on the CPU.

    Args:
        vectors, ids: what to store; search results return these ids. ``vectors`` may be a
            memory-mapped array: it is read in blocks of ``ADD_BLOCK`` rows.
        flat_max: largest N indexed exactly (``IndexFlatL2``); above it, IVF-Flat.
        pq_min: above this N (and above ``flat_max``), IVF-PQ re-ranked by SQ8 (d must be a
            multiple of 32).
        seed: fixes the IVF training sample and k-means start (same inputs, same index).
        nprobe: IVF cells visited per query (saved with the index); ignored for flat.

    Returns:
        ``IndexIDMap2`` around ``IndexFlatL2``, ``IndexIVFFlat`` or ``IndexRefine``; see
        ``index_kind``.
    """
    matrix = _as_float32_matrix(vectors, "vectors")
    _check_ids(ids, matrix.shape[0])
    if flat_max < 0 or pq_min < 0 or nprobe < 1:
        raise ValueError(
            f"flat_max and pq_min must be >= 0 and nprobe >= 1, got {flat_max}, {pq_min}, {nprobe}"
        )
    n = matrix.shape[0]
    if n <= flat_max:
        inner = faiss.IndexFlatL2(matrix.shape[1])
    elif n > pq_min:
        inner = _ivfpq_index(matrix, seed=seed, nprobe=nprobe)
    else:
        inner = _ivf_index(matrix, seed=seed, nprobe=nprobe)
    index = faiss.IndexIDMap2(inner)
    all_ids = np.ascontiguousarray(ids)
    for r0 in range(0, n, ADD_BLOCK):
        block = np.ascontiguousarray(matrix[r0 : r0 + ADD_BLOCK])
        index.add_with_ids(block, all_ids[r0 : r0 + ADD_BLOCK])
    return index


def index_kind(index: FaissIndex) -> str:
    """ "flat" (exact), "ivf" (approximate candidates, exact distances) or "ivfpq"
    (approximate candidates, SQ8 distances) for an index from ``index_build``/``index_load``."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexRefine):
        return "ivfpq"
    return "ivf" if isinstance(inner, faiss.IndexIVF) else "flat"


def index_set_nprobe(index: FaissIndex, nprobe: int) -> None:
    """Set how many IVF cells a search visits (more: higher recall, slower); no-op if flat."""
    if nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    if index_kind(index) != "flat":
        faiss.extract_index_ivf(index).nprobe = nprobe


def index_ids(index: FaissIndex) -> np.ndarray:
    """The ids stored in an ``IndexIDMap``/``IndexIDMap2``, (ntotal,) int64, insertion order."""
    ids: np.ndarray = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    return ids


def gpu_count() -> int:
    """CUDA devices faiss can use: 0 with faiss-cpu (which lacks ``get_num_gpus``)."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if get_num_gpus is not None else 0


@cache
def _gpu_resources(device: int) -> Any:
    """One ``StandardGpuResources`` (scratch memory, streams) per GPU, kept for the process:
    it must outlive every index cloned with it, and creating one costs ~0.1-1 s."""
    return faiss.StandardGpuResources()


def index_to_gpu(index: FaissIndex, *, device: int = 0) -> FaissIndex:
    """A copy of ``index`` on GPU ``device`` for searching, or ``index`` itself without one.

    Search results (ids, distances) are the same as on the CPU up to float rounding.
    """
    if gpu_count() == 0 or index_kind(index) == "ivfpq":
        return index  # faiss-gpu cannot clone IndexRefine: IVF-PQ stays on the CPU
    return faiss.index_cpu_to_gpu(_gpu_resources(device), device, index)


def _to_cpu(index: FaissIndex) -> FaissIndex:
    """The CPU form of ``index``; only where GPUs exist can it be a GPU index to copy back
    (``index_gpu_to_cpu`` clones CPU indexes unchanged)."""
    return faiss.index_gpu_to_cpu(index) if gpu_count() > 0 else index


def index_save(index: FaissIndex, path: Path) -> None:
    """Write ``index`` (always in CPU form) to ``path`` atomically (temp file +
    os.replace); creates parent dirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        faiss.write_index(_to_cpu(index), str(tmp))


def index_load(path: Path, *, gpu: bool | None = None) -> FaissIndex:
    """Read an index written by ``index_save``; FileNotFoundError if ``path`` is missing.

    ``gpu``: True/None move it to the first GPU when faiss-gpu sees one (None is "auto"),
    False keeps it on the CPU. IVF's nprobe is stored in the file and survives the trip.
    """
    if not path.is_file():
        raise FileNotFoundError(f"FAISS index file {path} does not exist")
    index = faiss.read_index(str(path))
    return index_to_gpu(index) if gpu is not False else index


def index_search(index: FaissIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest stored vectors for each query.

    Args:
        index: built by ``index_build`` / loaded by ``index_load``.
        queries: (Q, d) float32, d equal to ``index.d``.
        k: neighbours per query, >= 1.

    Returns:
        ``(distances (Q, k) float32, ids (Q, k) int64)``, nearest first. Distances are
        squared L2 (exact, also for IVF, which only may miss candidates; IVF-PQ: SQ8's,
        within ~1e-3 of exact for unit vectors). If k exceeds
        the number of vectors found the surplus columns hold id -1 and distance float32
        max (FAISS convention).
    """
    matrix = _as_float32_matrix(queries, "queries")
    if matrix.shape[1] != index.d:
        raise ValueError(f"queries have dimension {matrix.shape[1]}, index has {index.d}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    distances, ids = index.search(matrix, k)
    return distances.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)
