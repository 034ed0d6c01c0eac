"""Reads of rounds, labels and predictions."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Q

from activelearn.evaluation import LearningCurve, learning_curve_fit
from activelearn.models import ClassifierVersion, Label, Prediction, Round
from annotator.models import Project
from detector.models import Crop


def round_open_get(*, project: Project) -> Round | None:
    return Round.objects.filter(project=project, status=Round.Status.OPEN).first()


def round_progress(*, round_: Round) -> tuple[int, int]:
    """(crops of the round with a label, crops in the round)."""
    counts = round_.items.aggregate(
        total=Count("id"), done=Count("id", filter=Q(crop__labels__isnull=False), distinct=True)
    )
    return counts["done"], counts["total"]


def round_next_crop(*, round_: Round, skipped: Collection[int] = ()) -> Crop | None:
    """The first crop of the round, in pick order, with no label and not skipped."""
    item = (
        round_.items.filter(crop__labels__isnull=True)
        .exclude(crop_id__in=list(skipped))
        .select_related("crop__image", "crop__detection")
        .order_by("position")
        .first()
    )
    return item.crop if item is not None else None


def labels_latest_by_crop(*, project: Project) -> dict[int, tuple[str, int | None, int]]:
    """{crop id: (kind, species id or None, label id)} of each labelled crop's latest label."""
    latest: dict[int, tuple[str, int | None, int]] = {}
    rows = Label.objects.filter(project=project).order_by("id")
    for label_id, crop_id, kind, species_id in rows.values_list(
        "id", "crop_id", "kind", "species_id"
    ).iterator(chunk_size=5000):
        latest[crop_id] = (kind, species_id, label_id)
    return latest


def classifier_latest(*, project: Project) -> ClassifierVersion | None:
    return (
        ClassifierVersion.objects.filter(project=project, status=ClassifierVersion.Status.READY)
        .select_related("embedding_version")
        .order_by("-number")
        .first()
    )


def prediction_for_crop(*, crop: Crop) -> Prediction | None:
    classifier = classifier_latest(project=crop.project)
    if classifier is None:
        return None
    return Prediction.objects.filter(classifier=classifier, crop=crop).first()


@dataclass(frozen=True)
class LearningCurvePoint:
    classifier: int
    round: int | None
    n_labels: int
    accuracy: float
    top5_accuracy: float | None


@dataclass(frozen=True)
class LearningCurveView:
    """The admin's learning curve: one point per classifier version with a CV accuracy.

    ``fit`` extrapolates them (an estimate: see ``evaluation.learning_curve_fit``).
    """

    points: list[LearningCurvePoint]
    fit: LearningCurve
    svg: str


def learning_curve_get(*, project: Project) -> LearningCurveView | None:
    """The project's learning curve, or None before the first cross-validated classifier.

    Versions retrained with the same labels (a new embedding) replace the earlier point.
    """
    versions = (
        ClassifierVersion.objects.filter(project=project, cv_accuracy__isnull=False)
        .select_related("round")
        .order_by("number")
    )
    by_labels: dict[int, LearningCurvePoint] = {}
    for v in versions:
        by_labels[v.n_labels] = LearningCurvePoint(
            classifier=v.number,
            round=v.round.number if v.round else None,
            n_labels=v.n_labels,
            accuracy=float(v.cv_accuracy or 0.0),
            top5_accuracy=v.cv_top5_accuracy,
        )
    if not by_labels:
        return None
    points = [by_labels[n] for n in sorted(by_labels)]
    n = [p.n_labels for p in points]
    accuracy = [p.accuracy for p in points]
    fit = learning_curve_fit(np.asarray(n, dtype=float), np.asarray(accuracy))
    # Imported here: matplotlib is slow to import and only this page needs it, not workers.
    from activelearn.plots import learning_curve_svg

    svg = learning_curve_svg(n, accuracy, fit=fit, target=project.target_accuracy)
    return LearningCurveView(points=points, fit=fit, svg=svg)
