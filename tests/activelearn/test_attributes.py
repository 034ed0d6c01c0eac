"""The attribute head on synthetic embeddings: it learns, it does not learn noise, it round-trips.

The data imitate the product's: unit 256-d vectors in clusters (the crops of one capture event
are near-identical), and attributes that depend on where a crop lies. Scores are
cross-validated with folds grouped by event, as the retrain does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from activelearn.attributes import (
    AttributeHeadError,
    attributes_cross_validate,
    attributes_head_fit,
    attributes_json_rows,
    attributes_load,
    attributes_metrics,
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
    summary = multilabel_metrics(cv.probabilities, y, names=NAMES).summary()
    # Every attribute here has recorded yes answers, so every score has its evidence.
    assert all(value is not None for value in summary.values())
    return {name: value for name, value in summary.items() if value is not None}


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


# --- what a retrain stores of the head (attributes_head_fit and its parts) -----------------


def test_attributes_json_rows_are_the_probabilities_by_id_to_four_places() -> None:
    probs = np.array([[0.123456, 1.0, 0.0], [0.99995, 0.5, 1e-6]], dtype=np.float32)
    rows = attributes_json_rows([4, 9, 12], probs)
    assert rows[0] == '{"4":0.1235,"9":1.0000,"12":0.0000}'
    for text, row in zip(rows, probs, strict=True):
        decoded = json.loads(text)
        assert list(decoded) == ["4", "9", "12"]
        np.testing.assert_allclose(list(decoded.values()), row, atol=5e-5)
    assert attributes_json_rows([4], np.zeros((0, 1))) == []


def test_attributes_metrics_score_the_cross_validated_head(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, y, events = synthetic(n_events=20)
    got = attributes_metrics(
        x, y, groups=events, names=list(NAMES), ids=[7, 8, 9], random_state=3, n_splits=5
    )
    cv = attributes_cross_validate(x, y, groups=events, n_splits=5, random_state=3)
    expected = multilabel_metrics(cv.probabilities, y, names=NAMES)
    assert got is not None and got["n_splits"] == 5 and got["threshold"] == 0.5
    assert {k: got[k] for k in expected.summary()} == expected.summary()
    per_attribute = got["per_attribute"]
    assert isinstance(per_attribute, list)
    assert [(a["id"], a["name"]) for a in per_attribute] == list(zip([7, 8, 9], NAMES, strict=True))
    for i, row in enumerate(per_attribute):
        predicted = cv.probabilities[:, i] > 0.5
        assert row["support"] == int(y[:, i].sum())
        assert row["accuracy"] == pytest.approx(np.mean(predicted == y[:, i]))
    with caplog.at_level(logging.INFO, logger="activelearn.attributes"):
        one_event = attributes_metrics(
            x,
            y,
            groups=np.zeros(x.shape[0]),
            names=list(NAMES),
            ids=[7, 8, 9],
            random_state=3,
            n_splits=5,
        )
    assert one_event is None and "not cross-validated" in caplog.text


def test_attributes_head_fit_trains_on_the_rows_saves_and_applies_to_every_crop(
    tmp_path: Path,
) -> None:
    x, y, events = synthetic(n_events=12, per_event=3)
    rows = np.arange(0, x.shape[0], 2)  # attributes recorded on every other crop
    path = tmp_path / "v1.attributes.joblib"
    head = attributes_head_fit(
        x,
        rows=rows,
        truth=y[rows],
        events=events.astype(str),
        ids=[7, 8, 9],
        names=list(NAMES),
        random_state=4,
        n_splits=3,
        path=path,
    )
    model = attributes_train(x[rows], y[rows], random_state=4)
    probs = attributes_probabilities(model, x)
    np.testing.assert_array_equal(attributes_probabilities(attributes_load(path), x), probs)
    assert head.ids == [7, 8, 9]
    assert head.crop_json == attributes_json_rows([7, 8, 9], probs)
    # Per capture event, in sorted event order: the mean of its crops' probabilities.
    labels = sorted(set(events.astype(str)))
    means = np.stack([probs[events.astype(str) == e].mean(axis=0) for e in labels])
    decoded = np.array([list(json.loads(t).values()) for t in head.event_json])
    np.testing.assert_allclose(decoded, means, atol=5e-5)
    assert head.metrics == attributes_metrics(
        x[rows],
        y[rows],
        groups=events.astype(str)[rows],
        names=list(NAMES),
        ids=[7, 8, 9],
        random_state=4,
        n_splits=3,
    )
