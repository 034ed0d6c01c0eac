"""Exact nearest-neighbour search over embeddings with FAISS.

The index is ``IndexIDMap2(IndexFlatL2(d))``: brute-force squared-L2 search (exact, no
training, fine for ~1M x 256 on CPU) whose result ids are the caller's ids (crop primary
keys) rather than row numbers. For unit-norm vectors, squared L2 ``D`` and cosine
similarity are related by ``cos = 1 - D / 2``, so the ranking is the cosine ranking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from embeddings._atomic import atomic_path

# faiss has no type stubs; alias for readability in signatures.
FaissIndex = Any


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


def index_build(vectors: np.ndarray, ids: np.ndarray) -> FaissIndex:
    """Build an exact ``IndexIDMap2(IndexFlatL2(d))`` holding ``vectors`` (N, d) float32
    under ``ids`` (N,) int64 (unique). Search results return these ids.
    """
    matrix = _as_float32_matrix(vectors, "vectors")
    _check_ids(ids, matrix.shape[0])
    # GPU hook: with faiss-gpu, wrap the flat index via faiss.index_cpu_to_gpu(...) here,
    # and convert back with faiss.index_gpu_to_cpu before index_save.
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(matrix.shape[1]))
    index.add_with_ids(matrix, np.ascontiguousarray(ids))
    return index


def index_ids(index: FaissIndex) -> np.ndarray:
    """The ids stored in an ``IndexIDMap``/``IndexIDMap2``, (ntotal,) int64, insertion order."""
    ids: np.ndarray = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    return ids


def index_save(index: FaissIndex, path: Path) -> None:
    """Write ``index`` to ``path`` atomically (temp file + os.replace); creates parent dirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def index_load(path: Path) -> FaissIndex:
    """Read an index written by ``index_save``; FileNotFoundError if ``path`` is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"FAISS index file {path} does not exist")
    return faiss.read_index(str(path))


def index_search(index: FaissIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest stored vectors for each query.

    Args:
        index: built by ``index_build`` / loaded by ``index_load``.
        queries: (Q, d) float32, d equal to ``index.d``.
        k: neighbours per query, >= 1.

    Returns:
        ``(distances (Q, k) float32, ids (Q, k) int64)``, nearest first. Distances are
        squared L2. If k exceeds the number of stored vectors the surplus columns hold
        id -1 and distance float32 max (FAISS convention).
    """
    matrix = _as_float32_matrix(queries, "queries")
    if matrix.shape[1] != index.d:
        raise ValueError(f"queries have dimension {matrix.shape[1]}, index has {index.d}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    distances, ids = index.search(matrix, k)
    return distances.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)
