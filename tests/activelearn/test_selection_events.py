"""Event embeddings and k-Center over events against brute force on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.selection_events import event_embeddings, event_k_center


def _brute_embeddings(x: np.ndarray, events: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for event in dict.fromkeys(events):
        rows = [x[i] / np.linalg.norm(x[i]) for i, e in enumerate(events) if e == event]
        mean = np.mean(rows, axis=0)
        out[event] = mean / np.linalg.norm(mean)
    return out


def test_event_embeddings_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3)) * rng.uniform(0.1, 10, size=(12, 1))  # norms must not matter
    events = [f"e{k}" for k in rng.integers(0, 4, size=12)]
    got = event_embeddings(x, np.array(events))
    want = _brute_embeddings(x, events)
    assert got.keys.tolist() == list(want)
    for row, key in enumerate(got.keys.tolist()):
        np.testing.assert_allclose(got.vectors[row], want[key], atol=1e-6)
    assert [got.keys[i] for i in got.index] == events


def _brute_k_center(
    x: np.ndarray, events: list[str], labeled: np.ndarray, candidates: np.ndarray, budget: int
) -> list[str]:
    emb = _brute_embeddings(x, events)
    covered = [emb[e] for e, lab in zip(events, labeled, strict=True) if lab]
    covered_names = {e for e, lab in zip(events, labeled, strict=True) if lab}
    open_ = [
        e
        for e in emb
        if e not in covered_names
        and any(c and ev == e for c, ev in zip(candidates, events, strict=True))
    ]
    picks: list[str] = []
    while open_ and len(picks) < budget:
        best = max(open_, key=lambda e: min(np.linalg.norm(emb[e] - c) for c in covered))
        picks.append(best)
        covered.append(emb[best])
        open_.remove(best)
    return picks


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_event_k_center_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(15, 3))
    events = [f"e{k}" for k in rng.integers(0, 7, size=15)]
    labeled = np.zeros(15, dtype=bool)
    labeled[rng.integers(0, 15, size=2)] = True
    candidates = ~labeled & (rng.uniform(size=15) > 0.1)
    got = event_k_center(
        x,
        np.array(events),
        labeled_mask=labeled,
        candidate_mask=candidates,
        budget=4,
        random_state=0,
    )
    emb = event_embeddings(x, np.array(events))
    names = [str(emb.keys[e]) for e in got.events]
    assert names == _brute_k_center(x, events, labeled, candidates, 4)
    for event, rows in zip(got.events, got.crop_rows, strict=True):
        # Every candidate crop of the picked event, and only those.
        want = [i for i in range(15) if emb.index[i] == event and candidates[i]]
        assert rows.tolist() == want


def test_nothing_labelled_starts_at_a_seeded_event_and_never_repeats() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 4))
    events = np.array([f"e{i // 2}" for i in range(20)])  # 10 events of 2 crops
    args = dict(labeled_mask=np.zeros(20, bool), candidate_mask=np.ones(20, bool), budget=50)
    a = event_k_center(x, events, random_state=3, **args)  # type: ignore[arg-type]
    b = event_k_center(x, events, random_state=3, **args)  # type: ignore[arg-type]
    assert a.events.tolist() == b.events.tolist()
    assert sorted(a.events.tolist()) == list(range(10))  # all, each once
    assert np.isnan(a.distances[0]) and (a.distances[1:] >= 0).all()
    assert all(len(rows) == 2 for rows in a.crop_rows)


def test_an_event_with_a_labelled_crop_is_covered() -> None:
    x = np.array([[1.0, 0], [1.0, 0.1], [0, 1.0], [-1.0, 0]])
    events = np.array(["a", "a", "b", "c"])
    labeled = np.array([True, False, False, False])
    got = event_k_center(
        x, events, labeled_mask=labeled, candidate_mask=~labeled, budget=5, random_state=0
    )
    assert got.events.tolist() == [2, 1]  # c (opposite a) first, then b; a never


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        event_embeddings(np.ones((3, 2)), np.array(["a", "b"]))
    with pytest.raises(ValueError, match="must be"):
        event_k_center(
            np.ones((2, 2)),
            np.array(["a", "b"]),
            labeled_mask=np.zeros(3, bool),
            candidate_mask=np.ones(2, bool),
            budget=1,
            random_state=0,
        )
