"""Tests for embeddings.index: ids, exact self-retrieval, persistence, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.index import index_build, index_ids, index_load, index_save, index_search


def _unit_vectors(n: int = 200, d: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def _ids(n: int = 200) -> np.ndarray:
    # Non-contiguous, unordered primary keys: results must not be row numbers.
    return (np.random.default_rng(1).permutation(n) * 7 + 1000).astype(np.int64)


def test_index_ids_are_given_ids() -> None:
    vectors, ids = _unit_vectors(), _ids()
    index = index_build(vectors, ids)
    assert index.ntotal == 200 and index.d == 16
    np.testing.assert_array_equal(index_ids(index), ids)


def test_nearest_neighbour_of_stored_vector_is_itself() -> None:
    vectors, ids = _unit_vectors(), _ids()
    distances, found = index_search(index_build(vectors, ids), vectors, k=3)
    assert distances.shape == (200, 3) and distances.dtype == np.float32
    assert found.shape == (200, 3) and found.dtype == np.int64
    np.testing.assert_array_equal(found[:, 0], ids)
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-5)
    assert np.all(np.diff(distances, axis=1) >= 0)  # nearest first


def test_search_matches_brute_force() -> None:
    vectors, ids = _unit_vectors(), _ids()
    queries = _unit_vectors(5, seed=2)
    distances, found = index_search(index_build(vectors, ids), queries, k=4)
    brute = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    order = np.argsort(brute, axis=1)[:, :4]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(distances, np.take_along_axis(brute, order, 1), atol=1e-5)


def test_k_larger_than_index_pads_with_minus_one() -> None:
    vectors = _unit_vectors(3)
    _, found = index_search(index_build(vectors, np.array([5, 6, 7], np.int64)), vectors[:1], 5)
    assert found[0, 0] == 5 and list(found[0, 3:]) == [-1, -1]


def test_save_load_round_trip(tmp_path: Path) -> None:
    vectors, ids = _unit_vectors(), _ids()
    index = index_build(vectors, ids)
    path = tmp_path / "v1" / "index.faiss"
    index_save(index, path)
    loaded = index_load(path)
    np.testing.assert_array_equal(index_ids(loaded), ids)
    for a, b in zip(
        index_search(loaded, vectors[:10], 5), index_search(index, vectors[:10], 5), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in path.parent.iterdir()] == ["index.faiss"]  # no temp files left


def test_load_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.faiss"):
        index_load(tmp_path / "nope.faiss")


def test_invalid_inputs_raise() -> None:
    vectors, ids = _unit_vectors(), _ids()
    with pytest.raises(ValueError, match="unique"):
        index_build(vectors, np.concatenate([ids[:-1], ids[:1]]))
    with pytest.raises(ValueError, match="float32"):
        index_build(vectors.astype(np.float64), ids)
    with pytest.raises(ValueError, match="int64"):
        index_build(vectors, ids.astype(np.int32))
    index = index_build(vectors, ids)
    with pytest.raises(ValueError, match="dimension 8"):
        index_search(index, _unit_vectors(2, d=8), 1)
    with pytest.raises(ValueError, match="k must be"):
        index_search(index, vectors[:1], 0)


# --- Approximate (IVF) path beyond flat_max --------------------------------------------------


def _clustered(n: int = 6000, d: int = 32, clusters: int = 60, seed: int = 3) -> np.ndarray:
    """Unit vectors around a few centres, like crop embeddings (species, sequences)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, d)).astype(
        np.float32
    )
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def test_small_flat_max_builds_ivf_with_ids_and_recall() -> None:
    from embeddings.index import index_kind

    vectors = _clustered()
    ids = (np.random.default_rng(1).permutation(len(vectors)) * 3 + 10).astype(np.int64)
    exact = index_build(vectors, ids)
    approx = index_build(vectors, ids, flat_max=1000, seed=0)
    assert index_kind(exact) == "flat" and index_kind(approx) == "ivf"
    np.testing.assert_array_equal(index_ids(approx), ids)
    queries = vectors[::60]
    _, truth = index_search(exact, queries, 10)
    distances, found = index_search(approx, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.9
    np.testing.assert_array_equal(found[:, 0], ids[::60])  # stored vectors find themselves
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_ivf_is_deterministic_for_a_seed() -> None:
    vectors, ids = _clustered(3000), np.arange(3000, dtype=np.int64)
    a = index_search(index_build(vectors, ids, flat_max=100, seed=7), vectors[:20], 5)
    b = index_search(index_build(vectors, ids, flat_max=100, seed=7), vectors[:20], 5)
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("flat_max", [10_000, 100])
def test_save_load_round_trip_both_kinds(tmp_path: Path, flat_max: int) -> None:
    from embeddings.index import index_kind, index_set_nprobe

    vectors = _clustered(3000)
    ids = (np.arange(3000) * 5 + 1).astype(np.int64)
    index = index_build(vectors, ids, flat_max=flat_max, nprobe=4)
    index_set_nprobe(index, 8)
    path = tmp_path / "index.faiss"
    index_save(index, path)
    loaded = index_load(path)
    assert index_kind(loaded) == index_kind(index) == ("ivf" if flat_max == 100 else "flat")
    np.testing.assert_array_equal(index_ids(loaded), ids)
    before, after = index_search(index, vectors[:50], 7), index_search(loaded, vectors[:50], 7)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)  # same nprobe after the trip, same results


def test_no_gpu_keeps_cpu_index(tmp_path: Path) -> None:
    from embeddings.index import gpu_count, index_to_gpu

    index = index_build(_unit_vectors(), _ids())
    if gpu_count() == 0:
        assert index_to_gpu(index) is index
    index_save(index, tmp_path / "i.faiss")
    assert index_load(tmp_path / "i.faiss", gpu=False).ntotal == 200


# --- IVF-PQ + SQ8 re-ranking beyond pq_min (issue 19: ten million crops) --------------------


def _bursts(n: int = 4000, d: int = 32, clusters: int = 20, burst: int = 10) -> np.ndarray:
    """Clustered unit vectors in bursts of ``burst`` near-duplicates (frames of a trigger)."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    offsets = np.repeat(0.5 * rng.standard_normal((n // burst, d)), burst, axis=0)
    vectors = centres[np.repeat(rng.integers(0, clusters, n // burst), burst)] + offsets
    vectors += 0.1 * rng.standard_normal((n, d))
    unit: np.ndarray = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return unit


def test_pq_min_builds_refined_ivfpq_matching_brute_force(tmp_path: Path) -> None:
    from embeddings.index import index_kind, index_set_nprobe

    vectors = _bursts()
    ids = (np.arange(len(vectors)) * 3 + 1).astype(np.int64)
    path = tmp_path / "vectors.npy"
    np.save(path, vectors)
    mapped = np.load(path, mmap_mode="r")  # read in blocks, never loaded whole
    index = index_build(mapped, ids, flat_max=100, pq_min=1000, seed=0)
    assert index_kind(index) == "ivfpq"
    np.testing.assert_array_equal(index_ids(index), ids)
    queries = vectors[::40]
    brute = ((queries[:, None, :].astype(np.float64) - vectors[None]) ** 2).sum(-1)
    truth = ids[np.argsort(brute, axis=1, kind="stable")[:, :10]]
    want_d = np.sort(brute, axis=1)[:, :10]
    distances, found = index_search(index, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.95
    np.testing.assert_array_equal(found[:, 0], ids[::40])
    np.testing.assert_allclose(distances, want_d, atol=5e-3)  # SQ8 re-ranking: near exact
    index_set_nprobe(index, 4)
    index_save(index, tmp_path / "pq.faiss")
    loaded = index_load(tmp_path / "pq.faiss")
    assert index_kind(loaded) == "ivfpq"
    for a, b in zip(index_search(index, queries, 5), index_search(loaded, queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ivfpq_needs_d_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        index_build(_unit_vectors(300, 16), _ids(300), flat_max=10, pq_min=100)
    with pytest.raises(ValueError, match="pq_min"):
        index_build(_unit_vectors(), _ids(), pq_min=-1)
