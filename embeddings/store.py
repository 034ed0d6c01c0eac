"""On-disk embedding storage: one directory per model version holding two .npy files.

Layout::

    <directory>/ids.npy      (N,)   int64   crop primary keys, unique
    <directory>/vectors.npy  (N, d) float32 row i is the embedding of ids[i]

Plain .npy files load 1M x 256 in one read (or lazily with ``mmap=True``) without any
Python-level loop, and need no pickle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from projects.atomic import atomic_path

IDS_FILENAME = "ids.npy"
VECTORS_FILENAME = "vectors.npy"


def _check_ids(ids: np.ndarray, where: str) -> None:
    """ids must be 1-D int64 without duplicates (they are database primary keys)."""
    if ids.ndim != 1 or ids.dtype != np.int64:
        raise ValueError(
            f"{where}: ids must be a 1-D int64 array, got shape {ids.shape} dtype {ids.dtype}"
        )
    unique, counts = np.unique(ids, return_counts=True)
    if unique.size != ids.size:
        duplicates = unique[counts > 1]
        raise ValueError(
            f"{where}: ids must be unique; {duplicates.size} duplicated, e.g. "
            f"{duplicates[:10].tolist()}"
        )


def _check_vectors(vectors: np.ndarray, n_ids: int, where: str) -> None:
    """vectors must be (n_ids, d) float32 with d >= 1."""
    if vectors.ndim != 2 or vectors.dtype != np.float32 or vectors.shape[1] < 1:
        raise ValueError(
            f"{where}: vectors must be a 2-D float32 array (N, d), got shape "
            f"{vectors.shape} dtype {vectors.dtype}"
        )
    if vectors.shape[0] != n_ids:
        raise ValueError(f"{where}: {n_ids} ids but {vectors.shape[0]} vector rows")


def embeddings_save(directory: Path, *, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Write ``ids`` (N,) int64 and ``vectors`` (N, d) float32 into ``directory``.

    The directory is created if needed. Each file is written to a temporary name and
    ``os.replace``-d into place, so readers never see a partial file. The two renames are
    sequential: a crash between them can leave the new ids next to old vectors, which
    ``embeddings_load`` detects only if N changed; callers publishing a new model version
    should write into a fresh directory.

    Raises ValueError on wrong dtypes/shapes, duplicate ids or non-finite vectors.
    """
    _check_ids(ids, "embeddings_save")
    _check_vectors(vectors, ids.shape[0], "embeddings_save")
    if not np.isfinite(vectors).all():
        raise ValueError("embeddings_save: vectors contain NaN or inf")
    directory.mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(directory / VECTORS_FILENAME) as vectors_tmp,
        atomic_path(directory / IDS_FILENAME) as ids_tmp,
    ):
        # Write through file handles: np.save(path) would append ".npy" to the temp name.
        with open(vectors_tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors), allow_pickle=False)
        with open(ids_tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(ids), allow_pickle=False)


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """np.load without pickle; FileNotFoundError names the missing file."""
    if not path.is_file():
        raise FileNotFoundError(f"embedding store file {path} does not exist")
    array: np.ndarray = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return array


def embeddings_load(directory: Path, *, mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(ids (N,) int64, vectors (N, d) float32)`` written by ``embeddings_save``.

    With ``mmap=True`` both arrays are read-only ``np.memmap``s (pages load on access);
    otherwise they are ordinary in-memory arrays. Validates dtypes, shapes, matching N
    and unique ids; raises FileNotFoundError / ValueError with the offending path.
    """
    ids = _load_array(directory / IDS_FILENAME, mmap)
    vectors = _load_array(directory / VECTORS_FILENAME, mmap)
    where = f"embeddings_load({directory})"
    _check_ids(ids, where)
    _check_vectors(vectors, ids.shape[0], where)
    return ids, vectors
