"""The attribute head: yes/no attributes (standing, eating, young present, ...) of a crop.

The PNAS paper describes animals with a multi-label output (one sigmoid per attribute, binary
cross-entropy) beside the species output; a probability above 0.5 counts as yes. Here the
head sits on the fixed 256-d embedding, as the species classifier does.

Why one linear layer (multi-label logistic regression) and not an MLP: the head learns from
the crops volunteers ticked attributes on, tens to a few thousand, while an MLP (150, 100) on
256 inputs has about 55,000 weights and would memorise them; the embedding is already trained
to separate what the crops show, so behaviours that are visible at all are close to linearly
separable in it. The loss is convex, so L-BFGS on the full batch from zero weights finds the
same optimum every time (the seed only shuffles the cross-validation folds), and training takes
milliseconds. An L2 penalty keeps the weights finite on separable data and the probabilities
calibrated enough for the 0.5 rule.

Arrays in, dataclasses out; no Django. Persistence uses joblib (pickle), written atomically:
only load files this application wrote itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GroupKFold

from activelearn._checks import check_int
from activelearn.classifier import joblib_dump_atomic, joblib_load_checked
from activelearn.evaluation import event_probabilities
from activelearn.metrics import multilabel_metrics, score_or_none
from embeddings.inference import torch_threads

__all__ = [
    "AttributeHead",
    "AttributeHeadError",
    "CrossValidatedAttributes",
    "TrainedAttributes",
    "attributes_cross_validate",
    "attributes_head_fit",
    "attributes_json_rows",
    "attributes_load",
    "attributes_metrics",
    "attributes_probabilities",
    "attributes_save",
    "attributes_train",
]

logger = logging.getLogger(__name__)

_FILE_FORMAT = "trapwise-attributes"
_FILE_VERSION = 1
# L2 penalty on the weights (not the biases), added to the mean loss. Embeddings are unit
# vectors (coordinates about 0.06), so useful weights are large: 1e-3 and more left a random
# 256-d direction unlearnt from 320 rows (recall 0.29 cross-validated), 1e-4 reached 0.63.
_L2 = 1e-4
_MAX_ITER = 500


class AttributeHeadError(ValueError):
    """Raised for invalid attribute-head input or an unreadable/foreign saved file."""


@dataclass(frozen=True)
class TrainedAttributes:
    """A trained attribute head: ``sigmoid(x @ weights + bias)``.

    Attributes:
        weights: (d, A) float32.
        bias: (A,) float32.
        n_train: training rows.
        random_state: the seed it was trained with.
        positives: (A,) int64 number of training rows with each attribute yes.
    """

    weights: np.ndarray
    bias: np.ndarray
    n_train: int
    random_state: int
    positives: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_attributes(self) -> int:
        return int(self.weights.shape[1])


def _check_x(x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
        raise AttributeHeadError(f"x must be a real (N, d) array, got {arr.dtype} {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise AttributeHeadError("x contains NaN or infinite values")
    return out


def _check_y(y: object, *, n_rows: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype != np.bool_:
        raise AttributeHeadError(f"y must be a bool (N, A) array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] < 1:
        raise AttributeHeadError(f"y must have shape ({n_rows}, A >= 1), got {arr.shape}")
    return arr


def attributes_train(x: np.ndarray, y: np.ndarray, *, random_state: int) -> TrainedAttributes:
    """Fit the head on (N, d) embeddings ``x`` and (N, A) bool ``y`` (True = yes).

    Minimises the mean binary cross-entropy plus ``_L2``/2 * ||W||^2 with full-batch L-BFGS.
    An attribute that is never (or always) yes gets a bias towards no (yes): nothing else can
    be learnt from it. Deterministic for a given ``random_state``.

    Raises AttributeHeadError (a ValueError) for N = 0, shape or dtype mismatches, NaN/inf.
    """
    random_state = check_int(random_state, name="random_state", minimum=0, error=AttributeHeadError)
    xs = _check_x(x)
    if xs.shape[0] == 0:
        raise AttributeHeadError("cannot train the attribute head on zero rows")
    ys = _check_y(y, n_rows=xs.shape[0])
    xt = torch.from_numpy(xs)
    yt = torch.from_numpy(ys.astype(np.float32))
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(random_state)
        weights = torch.zeros((xs.shape[1], ys.shape[1]), requires_grad=True)
        # Start from the base rates: the optimum without features.
        rate = yt.mean(dim=0).clamp(1e-3, 1 - 1e-3)
        bias = torch.log(rate / (1 - rate)).clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [weights, bias], max_iter=_MAX_ITER, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = xt @ weights + bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt)
            loss = loss + 0.5 * _L2 * (weights * weights).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return TrainedAttributes(
        weights=weights.detach().numpy().copy(),
        bias=bias.detach().numpy().copy(),
        n_train=int(xs.shape[0]),
        random_state=random_state,
        positives=ys.sum(axis=0).astype(np.int64),
    )


def attributes_probabilities(
    model: TrainedAttributes, x: np.ndarray, *, batch_size: int = 65536
) -> np.ndarray:
    """(N, A) float32 probability of yes for each row of (N, d) ``x`` and each attribute."""
    xs = _check_x(x)
    if xs.shape[1] != model.n_features:
        raise AttributeHeadError(
            f"x has width {xs.shape[1]}, the attribute head expects {model.n_features}"
        )
    out = np.empty((xs.shape[0], model.n_attributes), dtype=np.float32)
    for start in range(0, xs.shape[0], batch_size):
        logits = xs[start : start + batch_size] @ model.weights + model.bias
        # exp of -|z| never overflows: the stable form of the sigmoid.
        e = np.exp(-np.abs(logits))
        out[start : start + batch_size] = np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out


@dataclass(frozen=True)
class CrossValidatedAttributes:
    """Out-of-fold probabilities: (N, A) float32, each row predicted by a head that never saw
    its group (capture event); ``n_splits`` folds were used."""

    probabilities: np.ndarray
    n_splits: int


def attributes_cross_validate(
    x: np.ndarray, y: np.ndarray, *, groups: np.ndarray, n_splits: int, random_state: int
) -> CrossValidatedAttributes:
    """Grouped k-fold cross-validation of ``attributes_train`` (folds by capture event).

    Uses ``min(n_splits, number of groups)`` folds, shuffled by ``random_state``, so that the
    frames of one burst never sit on both sides. Raises AttributeHeadError with fewer than 2
    groups.
    """
    n_splits = check_int(n_splits, name="n_splits", minimum=2, error=AttributeHeadError)
    xs = _check_x(x)
    ys = _check_y(y, n_rows=xs.shape[0])
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    if group_ids.shape[0] != xs.shape[0]:
        raise AttributeHeadError(f"groups must have shape ({xs.shape[0]},)")
    n_groups = int(group_ids.max()) + 1 if group_ids.size else 0
    if n_groups < 2:
        raise AttributeHeadError(
            f"cross-validation needs at least 2 capture events, got {n_groups}"
        )
    used = min(n_splits, n_groups)
    splitter = GroupKFold(n_splits=used, shuffle=True, random_state=random_state)
    probs = np.zeros(ys.shape, dtype=np.float32)
    for train, test in splitter.split(xs, groups=group_ids):
        model = attributes_train(xs[train], ys[train], random_state=random_state)
        probs[test] = attributes_probabilities(model, xs[test])
    return CrossValidatedAttributes(probabilities=probs, n_splits=used)


def attributes_save(model: TrainedAttributes, path: Path) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    payload = {"format": _FILE_FORMAT, "version": _FILE_VERSION, "model": model}
    joblib_dump_atomic(payload, path)


def attributes_load(path: Path) -> TrainedAttributes:
    """Read a head written by ``attributes_save``; AttributeHeadError for any other file."""
    path = Path(path)
    payload = joblib_load_checked(
        path, file_format=_FILE_FORMAT, what="attribute head", error=AttributeHeadError
    )
    if payload.get("version") != _FILE_VERSION or not isinstance(
        payload.get("model"), TrainedAttributes
    ):
        raise AttributeHeadError(f"{path} has an unsupported attribute head version")
    model: TrainedAttributes = payload["model"]
    return model


@dataclass(frozen=True)
class AttributeHead:
    """A trained attribute head applied to every crop, as a retrain stores it.

    Attributes:
        ids: (A,) the attribute ids, in the order of the head's outputs.
        metrics: the cross-validated scores as JSON (``attributes_metrics``), or None when
            they could not be computed (fewer than 2 capture events).
        crop_json: (N,) per crop, ``{"<id>": probability, ...}`` as JSON text.
        event_json: (E,) the same per capture event, in ``event_probabilities`` order.
    """

    ids: list[int]
    metrics: dict[str, object] | None
    crop_json: list[str]
    event_json: list[str]


def attributes_head_fit(
    vectors: np.ndarray,
    *,
    rows: np.ndarray,
    truth: np.ndarray,
    events: np.ndarray,
    ids: list[int],
    names: list[str],
    random_state: int,
    n_splits: int,
    path: Path,
) -> AttributeHead:
    """Train the attribute head on some rows, save it, cross-validate it and apply it to all.

    Args:
        vectors: (N, d) embeddings of every crop.
        rows: (R,) int64 rows of ``vectors`` whose attributes were recorded (R >= 1).
        truth: (R, A) bool, the recorded yes/no per row and attribute (columns: ``ids``).
        events: (N,) capture event of every crop: the head's probabilities are averaged per
            event, and the folds of the cross-validation are grouped by it.
        ids, names: (A,) the attributes' ids and names.
        random_state: seed of ``attributes_train`` and of the fold shuffle.
        n_splits: folds of the cross-validation (fewer with fewer events).
        path: where the head is saved (``attributes_save``); the parent folder must exist.

    Raises AttributeHeadError for inconsistent shapes (``attributes_train``).
    """
    head = attributes_train(vectors[rows], truth, random_state=random_state)
    attributes_save(head, path)
    probabilities = attributes_probabilities(head, vectors)
    per_event = event_probabilities(probabilities, events)
    return AttributeHead(
        ids=list(ids),
        metrics=attributes_metrics(
            vectors[rows],
            truth,
            groups=events[rows],
            names=names,
            ids=ids,
            random_state=random_state,
            n_splits=n_splits,
        ),
        crop_json=attributes_json_rows(ids, probabilities),
        event_json=attributes_json_rows(ids, per_event.probabilities),
    )


def attributes_metrics(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups: np.ndarray,
    names: list[str],
    ids: list[int],
    random_state: int,
    n_splits: int,
) -> dict[str, object] | None:
    """Cross-validated multi-label scores (``attributes_cross_validate``, probability > 0.5
    is yes) as JSON: the ``multilabel_metrics`` summary, the folds used, the threshold and per
    attribute its id, name, accuracy, precision, recall and support; a score without evidence
    (no recorded yes, nothing predicted yes) is null. None (logged) with fewer than 2 capture
    events in ``groups``."""
    try:
        cv = attributes_cross_validate(
            x, y, groups=groups, n_splits=n_splits, random_state=random_state
        )
    except AttributeHeadError as exc:
        logger.info("attribute head not cross-validated: %s", exc)
        return None
    scores = multilabel_metrics(cv.probabilities, y, names=names)
    return {
        **scores.summary(),
        "n_splits": cv.n_splits,
        "threshold": scores.threshold,
        "per_attribute": [
            {
                "id": attribute_id,
                "name": name,
                # None (JSON null) where the attribute has no evidence (``multilabel_metrics``).
                "accuracy": score_or_none(scores.per_attribute_accuracy[i]),
                "precision": score_or_none(scores.per_attribute_precision[i]),
                "recall": score_or_none(scores.per_attribute_recall[i]),
                "support": int(scores.per_attribute_support[i]),
            }
            for i, (attribute_id, name) in enumerate(zip(ids, names, strict=True))
        ],
    }


def attributes_json_rows(ids: list[int], probabilities: np.ndarray) -> list[str]:
    """Per row of (N, A) ``probabilities``, ``{"<id>": p, ...}`` as JSON text (4 places).

    One ``%`` per row over a pre-built template: a million rows format in about a second.
    """
    template = "{" + ",".join(f'"{a}":%.4f' for a in ids) + "}"
    return [template % tuple(row) for row in probabilities.astype(np.float64).tolist()]
