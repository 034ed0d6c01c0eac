"""Stored predictions: one row per crop and per capture event for each classifier version.

A retrain of a large project writes a million rows; ``rows_insert`` writes them with COPY on
PostgreSQL, and the JSON columns are formatted with one ``%`` per row. Only the newest
``retrain.PREDICTION_VERSIONS_KEPT`` versions keep their crop predictions
(``predictions_prune``): older ones can be recomputed from their saved model files.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
from django.db import connection, models

from activelearn.classifier import probabilities_top_k
from activelearn.evaluation import EventProbabilities
from activelearn.models import ClassifierVersion, EventPrediction, Prediction
from activelearn.selectors import classifier_latest
from projects.models import Project

__all__ = ["event_predictions_store", "predictions_prune", "predictions_store", "rows_insert"]


def predictions_store(
    *,
    classifier: ClassifierVersion,
    ids: np.ndarray,
    top_labels: np.ndarray,
    top_probs: np.ndarray,
    attributes: Sequence[str] | None = None,
) -> None:
    """Insert one Prediction per crop: ids (N,), top_labels (N, k) int64, top_probs (N, k).

    ``attributes``: per crop, the attribute head's ``{id: probability}`` as JSON text (N,), or
    None without a head (the column stays null). Call inside the transaction that creates
    ``classifier``.
    """
    tops = _top_json_rows(top_labels, top_probs)
    rows = zip(
        ids.tolist(),
        itertools.repeat(classifier.pk),
        top_labels[:, 0].tolist(),
        top_probs[:, 0].astype(np.float64).tolist(),
        tops,
        strict=False,  # repeat() is endless; the other four have N items each
    )
    columns = ("crop_id", "classifier_id", "species_id", "confidence", "top")
    names, values = _with_attributes(columns, rows, attributes)
    rows_insert(model=Prediction, columns=names, rows=values)


def _with_attributes(
    columns: tuple[str, ...],
    rows: Iterable[tuple[int | float | str, ...]],
    attributes: Sequence[str] | None,
) -> tuple[tuple[str, ...], Iterable[tuple[int | float | str, ...]]]:
    """``columns`` and ``rows`` with the ``attributes`` JSON column added, when there is one
    (without a head the column is left out, so it stays null)."""
    if attributes is None:
        return columns, rows
    extended = (row + (text,) for row, text in zip(rows, attributes, strict=True))
    return (*columns, "attributes"), extended


def rows_insert(
    *,
    model: type[models.Model],
    columns: tuple[str, ...],
    rows: Iterable[tuple[int | float | str, ...]],
) -> None:
    """Insert many rows of ``model``'s table fast: COPY on PostgreSQL, one executemany elsewhere.

    A million rows through ``bulk_create`` take minutes; this takes seconds. ``rows`` are
    tuples in ``columns`` order (column names, not field names: ``crop_id``), already in
    database form (JSON columns as JSON text); they are read once. No ``save()``, no signals,
    no ids come back, and nothing is validated beyond the database's constraints. It writes
    in the caller's transaction (``predictions_store`` runs inside the one that creates the
    classifier version).
    """
    table = model._meta.db_table
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # the psycopg cursor behind Django's wrapper
            with raw.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))


def _top_json_rows(labels: np.ndarray, probs: np.ndarray) -> list[str]:
    """Per row, ``[[species_id, probability], ...]`` as JSON text (probabilities to 6 places).

    labels (N, k) int, probs (N, k). One ``%`` per row over a pre-built template: a million
    rows format in about a second, several times faster than joining per pair.
    """
    k = labels.shape[1]
    template = "[" + ",".join(["[%d,%.6f]"] * k) + "]"
    pairs = np.empty((labels.shape[0], 2 * k), dtype=np.float64)
    pairs[:, 0::2] = labels
    pairs[:, 1::2] = probs
    return [template % tuple(row) for row in pairs.tolist()]


def event_predictions_store(
    *,
    classifier: ClassifierVersion,
    events: EventProbabilities,
    classes: np.ndarray,
    attributes: Sequence[str] | None = None,
) -> None:
    """Insert one EventPrediction per event of ``events``; ``attributes`` as in
    ``predictions_store``, one per event in ``events.event_ids`` order."""
    labels, probs = probabilities_top_k(events.probabilities, classes=classes, k=5)
    tops = _top_json_rows(labels, probs)
    rows = (
        (classifier.pk, str(event), int(top[0]), float(p[0]), text, int(n))
        for event, top, p, text, n in zip(
            events.event_ids, labels, probs, tops, events.n_crops, strict=True
        )
    )
    columns = ("classifier_id", "event", "species_id", "confidence", "top", "n_crops")
    names, values = _with_attributes(columns, rows, attributes)
    rows_insert(model=EventPrediction, columns=names, rows=values)


def predictions_prune(*, project: Project, keep: int) -> int:
    """Delete the predictions of all but the newest ``keep`` classifier versions.

    Predictions are recomputable from the saved model files; a million rows per version would
    otherwise pile up with every round. The versions themselves (and their files) stay, and
    so do the predictions of the live classifier, however old (newer ones may be rejected).
    Returns the number of crop predictions deleted.
    """
    numbers = project.classifier_versions.order_by("-number").values_list("number", flat=True)
    cutoff = list(numbers[:keep])
    if len(cutoff) < keep:
        return 0
    old = Prediction.objects.filter(classifier__project=project, classifier__number__lt=cutoff[-1])
    live = classifier_latest(project=project)
    if live is not None:  # newer versions may have been rejected (their gate): keep the live one
        old = old.exclude(classifier=live)
    deleted, _ = old.delete()
    return int(deleted)
