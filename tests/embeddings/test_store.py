"""Tests for embeddings.store: round trip, mmap, validation errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.store import embeddings_load, embeddings_save


def _data(n: int = 50, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.permutation(10_000)[:n].astype(np.int64)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    return ids, vectors


def test_round_trip(tmp_path: Path) -> None:
    ids, vectors = _data()
    directory = tmp_path / "model_v1"  # created by embeddings_save
    embeddings_save(directory, ids=ids, vectors=vectors)
    loaded_ids, loaded_vectors = embeddings_load(directory)
    np.testing.assert_array_equal(loaded_ids, ids)
    np.testing.assert_array_equal(loaded_vectors, vectors)
    assert loaded_ids.dtype == np.int64 and loaded_vectors.dtype == np.float32
    assert sorted(p.name for p in directory.iterdir()) == ["ids.npy", "vectors.npy"]


def test_round_trip_mmap(tmp_path: Path) -> None:
    ids, vectors = _data()
    embeddings_save(tmp_path, ids=ids, vectors=vectors)
    loaded_ids, loaded_vectors = embeddings_load(tmp_path, mmap=True)
    assert isinstance(loaded_ids, np.memmap) and isinstance(loaded_vectors, np.memmap)
    assert not loaded_vectors.flags.writeable
    np.testing.assert_array_equal(loaded_ids, ids)
    np.testing.assert_array_equal(loaded_vectors, vectors)


def test_overwrite_replaces_contents(tmp_path: Path) -> None:
    ids, vectors = _data()
    embeddings_save(tmp_path, ids=ids, vectors=vectors)
    embeddings_save(tmp_path, ids=ids[:3], vectors=vectors[:3] + 1)
    loaded_ids, loaded_vectors = embeddings_load(tmp_path)
    np.testing.assert_array_equal(loaded_ids, ids[:3])
    np.testing.assert_array_equal(loaded_vectors, vectors[:3] + 1)


def test_empty_store(tmp_path: Path) -> None:
    embeddings_save(tmp_path, ids=np.empty(0, np.int64), vectors=np.empty((0, 256), np.float32))
    ids, vectors = embeddings_load(tmp_path)
    assert ids.shape == (0,) and vectors.shape == (0, 256)


def test_duplicate_ids_rejected_on_save(tmp_path: Path) -> None:
    ids, vectors = _data()
    ids[5] = ids[7]
    with pytest.raises(ValueError, match=rf"unique.*{ids[7]}"):
        embeddings_save(tmp_path, ids=ids, vectors=vectors)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_duplicate_ids_rejected_on_load(tmp_path: Path) -> None:
    ids, vectors = _data()
    ids[0] = ids[1]
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "vectors.npy", vectors)
    with pytest.raises(ValueError, match="unique"):
        embeddings_load(tmp_path, mmap=True)


@pytest.mark.parametrize(
    ("ids", "vectors", "pattern"),
    [
        (np.arange(3, dtype=np.int32), np.zeros((3, 4), np.float32), "int64"),
        (np.arange(3, dtype=np.int64), np.zeros((3, 4), np.float64), "float32"),
        (np.arange(3, dtype=np.int64), np.zeros(3, np.float32), "2-D"),
        (np.arange(3, dtype=np.int64), np.zeros((4, 4), np.float32), "3 ids but 4"),
        (np.arange(2, dtype=np.int64), np.full((2, 4), np.nan, np.float32), "NaN"),
    ],
)
def test_invalid_inputs_rejected_on_save(
    tmp_path: Path,
    ids: np.ndarray,
    vectors: np.ndarray,
    pattern: str,
) -> None:
    with pytest.raises(ValueError, match=pattern):
        embeddings_save(tmp_path, ids=ids, vectors=vectors)


def test_load_validates_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ids.npy"):
        embeddings_load(tmp_path)
    np.save(tmp_path / "ids.npy", np.arange(3, dtype=np.int64))
    np.save(tmp_path / "vectors.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="3 ids but 2"):
        embeddings_load(tmp_path)
