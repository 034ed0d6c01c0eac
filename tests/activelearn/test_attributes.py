"""The attribute head on synthetic embeddings: it learns, it does not learn noise, it round-trips.

The data imitate the product's: unit 256-d vectors in clusters (the crops of one capture event
are near-identical), and attributes that depend on where a crop lies. Scores are
cross-validated with folds grouped by event, as the retrain does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activelearn.attributes import (
    AttributeHeadError,
    attributes_cross_validate,
    attributes_load,
    attributes_probabilities,
    attributes_save,
    attributes_train,
)
from activelearn.metrics import multilabel_metrics

NAMES = ("standing", "eating", "young present")


def synthetic(
    *, n_events: int = 80, per_event: int = 4, d: int = 256, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (N, d) unit rows, y (N, 3) bool, events (N,)).

    Each event has a few latent factors (pose, activity, ...) that a random linear map spreads
    over the 256 dimensions, as a trained embedding spreads what it sees; attribute i is yes
    when factor i is high. The crops of an event are noisy copies of it, so they agree.
    """
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_events, 8))
    mixing = rng.normal(size=(8, d))
    # Offsets make the attributes unequally common (about 50%, 30% and 15% yes).
    event_truth = factors[:, :3] > np.asarray([0.0, 0.52, 1.04])
    events = np.repeat(np.arange(n_events), per_event)
    x = factors[events] @ mixing + 2.0 * rng.normal(size=(events.size, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), event_truth[events], events


def scores(x: np.ndarray, y: np.ndarray, events: np.ndarray) -> dict[str, float | int]:
    cv = attributes_cross_validate(x, y, groups=events, n_splits=5, random_state=3)
    return multilabel_metrics(cv.probabilities, y, names=NAMES).summary()


def test_the_head_learns_attributes_that_the_embedding_separates() -> None:
    x, y, events = synthetic()
    measured = scores(x, y, events)
    print("synthetic attribute head, 5-fold grouped CV:", measured)
    assert measured["accuracy"] > 0.9
    assert measured["precision"] > 0.8 and measured["recall"] > 0.8


def test_shuffled_labels_are_not_learnt() -> None:
    """The control: the same rows with the events' attributes shuffled between events."""
    x, y, events = synthetic()
    rng = np.random.default_rng(1)
    permuted = rng.permutation(events.max() + 1)
    y_event = y[:: events.size // (events.max() + 1)]  # one row per event (rows are grouped)
    shuffled = y_event[permuted][events]
    measured = scores(x, shuffled, events)
    print("shuffled control:", measured)
    # Always answering "no" scores about 0.67 here; a head that learnt noise cannot beat it
    # by much, and it finds few of the yes answers.
    assert measured["accuracy"] < 0.8
    assert measured["recall"] < 0.6


def test_training_is_deterministic_and_probabilities_are_probabilities() -> None:
    x, y, _ = synthetic(n_events=20)
    first = attributes_train(x, y, random_state=5)
    again = attributes_train(x, y, random_state=5)
    np.testing.assert_array_equal(first.weights, again.weights)
    probs = attributes_probabilities(first, x)
    assert probs.shape == (x.shape[0], len(NAMES)) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    # On its own training rows it is right nearly always.
    assert np.mean((probs > 0.5) == y) > 0.95
    assert first.positives.tolist() == y.sum(axis=0).tolist()


def test_an_attribute_never_seen_yes_is_predicted_no() -> None:
    x, y, _ = synthetic(n_events=20)
    y[:, 2] = False
    probs = attributes_probabilities(attributes_train(x, y, random_state=0), x)
    assert (probs[:, 2] < 0.5).all()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    x, y, _ = synthetic(n_events=10)
    model = attributes_train(x, y, random_state=0)
    path = tmp_path / "head.joblib"
    attributes_save(model, path)
    assert [p.name for p in tmp_path.iterdir()] == ["head.joblib"]  # no temporary file left
    loaded = attributes_load(path)
    np.testing.assert_array_equal(
        attributes_probabilities(loaded, x), attributes_probabilities(model, x)
    )
    (tmp_path / "other.joblib").write_bytes(b"not a head")
    with pytest.raises(AttributeHeadError, match="not a readable attribute head"):
        attributes_load(tmp_path / "other.joblib")


@pytest.mark.parametrize(
    "x,y,message",
    [
        (np.zeros((0, 4)), np.zeros((0, 2), dtype=bool), "zero rows"),
        (np.zeros((3, 4)), np.zeros((3, 2), dtype=int), "bool"),
        (np.zeros((3, 4)), np.zeros((2, 2), dtype=bool), "shape"),
        (np.full((3, 4), np.nan), np.zeros((3, 2), dtype=bool), "NaN"),
    ],
)
def test_bad_input_is_refused(x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(AttributeHeadError, match=message):
        attributes_train(x, y, random_state=0)


def test_cross_validation_needs_two_events() -> None:
    x, y, _ = synthetic(n_events=3)
    with pytest.raises(AttributeHeadError, match="at least 2 capture events"):
        attributes_cross_validate(x, y, groups=np.zeros(x.shape[0]), n_splits=5, random_state=0)
    model = attributes_train(x, y, random_state=0)
    with pytest.raises(AttributeHeadError, match="width"):
        attributes_probabilities(model, x[:, :10])
