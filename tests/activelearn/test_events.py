"""Event-combined probabilities against a brute-force loop over events."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.events import event_probabilities_combine


def _brute(p: np.ndarray, events: list[str], weight: float, dissent: float) -> np.ndarray:
    out = p.copy()
    for i, event in enumerate(events):
        members = [j for j, e in enumerate(events) if e == event]
        mean = p[members].mean(axis=0)
        if len(members) == 1:
            continue
        if p[i].argmax() != mean.argmax() and p[i].max() >= dissent:
            continue
        out[i] = (1 - weight) * p[i] + weight * mean
    return out


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("dissent", [0.3, 0.6, 1.1])
def test_matches_brute_force(weight: float, dissent: float) -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4) * 0.5, size=30)
    events = [f"e{k}" for k in rng.integers(0, 8, size=30)]
    got = event_probabilities_combine(p, np.array(events), weight=weight, dissent=dissent)
    np.testing.assert_allclose(got.probabilities, _brute(p, events, weight, dissent), atol=1e-6)
    np.testing.assert_allclose(got.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_a_confident_dissenter_keeps_its_own_label_and_lone_crops_are_untouched() -> None:
    p = np.array([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    events = np.array(["a", "a", "a", "a", "b"])
    got = event_probabilities_combine(p, events, weight=1.0, dissent=0.85)
    assert got.event_used.tolist() == [True, True, True, False, False]
    np.testing.assert_allclose(got.probabilities[3], p[3])  # dissents at 0.9 >= 0.85
    np.testing.assert_allclose(got.probabilities[4], p[4])  # alone in its event
    np.testing.assert_allclose(got.probabilities[0], p[:4].mean(axis=0), atol=1e-6)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        event_probabilities_combine(np.ones((1, 2)) / 2, np.array(["a"]), weight=1.5)
    with pytest.raises(ValueError, match="expected"):
        event_probabilities_combine(np.ones((2, 2)) / 2, np.array(["a"]))


@pytest.mark.parametrize("block_rows", [1, 4, 65536])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_give_the_same_numbers_as_the_whole_array(
    block_rows: int, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: combining crops a block at a time (no (N, C) float64 copies) changes no bit,
    whatever the block size; the caller's array is left as it was."""
    import activelearn.events as events_module

    rng = np.random.default_rng(1)
    p: np.ndarray = rng.dirichlet(np.ones(5) * 0.5, size=41).astype(dtype)
    events = np.array([f"e{k}" for k in rng.integers(0, 9, size=41)])
    before = p.copy()
    monkeypatch.setattr(events_module, "_BLOCK_ROWS", block_rows)
    got = event_probabilities_combine(p, events, weight=0.7, dissent=0.6)
    want = _brute(p.astype(np.float64), list(events), 0.7, 0.6).astype(np.float32)
    np.testing.assert_allclose(got.probabilities, want, atol=1e-6)
    monkeypatch.setattr(events_module, "_BLOCK_ROWS", 1 << 20)
    whole = event_probabilities_combine(p, events, weight=0.7, dissent=0.6)
    np.testing.assert_array_equal(got.probabilities, whole.probabilities)
    np.testing.assert_array_equal(got.event_used, whole.event_used)
    np.testing.assert_array_equal(p, before)
    assert got.probabilities.dtype == np.float32
