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
