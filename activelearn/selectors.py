"""Reads of rounds, labels and predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import User
from django.db.models import Count, Prefetch, Q
from django.utils import timezone

from activelearn.evaluation import LearningCurve, learning_curve_fit
from activelearn.models import ClassifierVersion, Consensus, Label, Prediction, Round
from annotator.models import Image, Project, Species
from detector.models import Crop


def round_open_get(*, project: Project) -> Round | None:
    return Round.objects.filter(project=project, status=Round.Status.OPEN).first()


def round_progress(*, round_: Round) -> tuple[int, int]:
    """(crops of the round decided or sent to review, crops in the round)."""
    settled = Q(crop__consensus__status__in=(Consensus.Status.DONE, Consensus.Status.REVIEW))
    counts = round_.items.aggregate(total=Count("id"), done=Count("id", filter=settled))
    return counts["done"], counts["total"]


def labels_latest_by_crop(*, project: Project) -> dict[int, tuple[str, int | None, int]]:
    """{crop id: (kind, species id or None, label id)} of each crop whose votes are decided.

    The label id is the newest label counted in the crop's consensus. Disputed crops (review)
    and crops waiting for more votes are left out until they are decided.
    """
    rows = Consensus.objects.filter(project=project, status=Consensus.Status.DONE).values_list(
        "crop_id", "kind", "species_id", "label_id"
    )
    return {
        crop_id: (kind, species_id, label_id)
        for crop_id, kind, species_id, label_id in rows.iterator(chunk_size=5000)
    }


def labels_today_count(*, project: Project, user: User) -> int:
    """``user``'s labels in ``project`` since local midnight, undone ones not counted."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Label.objects.filter(
        project=project, user=user, created_at__gte=midnight, undone_at__isnull=True
    ).count()


def label_last_get(*, project: Project, user: User) -> Label | None:
    """``user``'s latest label in ``project`` that can still be undone."""
    return (
        Label.objects.filter(project=project, user=user, undone_at__isnull=True)
        .select_related("species", "crop")
        .order_by("-id")
        .first()
    )


def consensus_review_list(*, project: Project, limit: int = 50) -> list[Consensus]:
    """Crops the volunteers disagreed on, oldest first, with their votes' labels."""
    return list(
        Consensus.objects.filter(project=project, status=Consensus.Status.REVIEW)
        .select_related("crop__image", "species")
        .prefetch_related(
            Prefetch(
                "crop__labels",
                queryset=Label.objects.filter(undone_at__isnull=True)
                .select_related("species", "user")
                .order_by("id"),
                to_attr="votes_cast",
            )
        )
        .order_by("updated_at", "id")[:limit]
    )


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
class Suggestion:
    """A species offered first on the labelling page (keys 1-5).

    ``probability`` is the classifier's for ``source`` "machine", None for "frequent" (no
    classifier yet: the project's most labelled species are offered instead).
    """

    species_id: int
    name: str
    probability: float | None
    source: str


def crop_suggestions(
    *, project: Project, crops: Sequence[Crop], species: Sequence[Species], k: int = 5
) -> dict[int, list[Suggestion]]:
    """{crop id: up to ``k`` suggestions}: the latest classifier's top-k for each crop.

    Crops without a prediction get the project's ``k`` most labelled species (or the first of
    the list before any label). Ids no longer in ``species`` (merged away) are skipped. Two
    queries at most, whatever the number of crops.
    """
    names = {s.pk: s.name for s in species}
    classifier = classifier_latest(project=project)
    tops: dict[int, list[list[float]]] = {}
    if classifier is not None:
        rows = Prediction.objects.filter(classifier=classifier, crop__in=list(crops))
        tops = dict(rows.values_list("crop_id", "top"))
    fallback: list[Suggestion] | None = None
    result: dict[int, list[Suggestion]] = {}
    for crop in crops:
        top = [(int(sid), float(p)) for sid, p in tops.get(crop.pk, []) if int(sid) in names]
        if top:
            result[crop.pk] = [Suggestion(sid, names[sid], p, "machine") for sid, p in top[:k]]
            continue
        if fallback is None:
            fallback = _frequent_species(project=project, names=names, k=k)
        result[crop.pk] = fallback
    return result


def _frequent_species(*, project: Project, names: dict[int, str], k: int) -> list[Suggestion]:
    counts = (
        Consensus.objects.filter(project=project, species__isnull=False)
        .values("species_id")
        .annotate(n=Count("id"))
        .order_by("-n", "species_id")
    )
    ordered = [row["species_id"] for row in counts[: k * 2] if row["species_id"] in names]
    ordered += [sid for sid in names if sid not in ordered]
    return [Suggestion(sid, names[sid], None, "frequent") for sid in ordered[:k]]


def sequence_frames(*, image: Image, limit: int = 12) -> list[Image]:
    """The other images of ``image``'s capture sequence, in frame order (none without one)."""
    if not image.seq_id:
        return []
    return list(
        Image.objects.filter(project_id=image.project_id, seq_id=image.seq_id)
        .exclude(pk=image.pk)
        .order_by("frame_num", "taken_at", "file_name")[:limit]
    )


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


@dataclass(frozen=True)
class ConfusionView:
    """The latest classifier's cross-validated confusion matrix on the labelled crops.

    ``counts[i, j]``: crops labelled ``names[i]`` that cross-validation predicted as
    ``names[j]``. Species merged or removed since the classifier was trained show as
    "removed species #<id>" until the next retrain replaces the matrix.
    """

    classifier: int
    names: list[str]
    counts: np.ndarray
    n_crops: int
    svg: str


def confusion_matrix_get(*, project: Project) -> ConfusionView | None:
    """The confusion matrix from the latest classifier's ``.cv.npz`` (two queries), or None
    when it has no cross-validation (too few labels) or predates the saved predictions."""
    # Imported here: scikit-learn and matplotlib are slow to import and only this page needs
    # them, not the workers.
    import hashlib
    from pathlib import Path

    from django.conf import settings
    from django.core.cache import cache
    from sklearn.metrics import confusion_matrix

    from activelearn.plots import confusion_matrix_svg

    classifier = classifier_latest(project=project)
    if classifier is None or classifier.cv_accuracy is None:
        return None
    path = (Path(settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".cv.npz")
    if not path.exists():
        return None
    with np.load(path) as cv:
        if "predicted" not in cv.files or "true" not in cv.files:
            return None  # saved before the predicted species were kept
        predicted, true = cv["predicted"].astype(np.int64), cv["true"].astype(np.int64)
    species = {s.pk: s for s in Species.objects.filter(project=project)}
    present = np.union1d(true, predicted).tolist()
    order = sorted(
        present,
        key=lambda i: (0, species[i].position, species[i].name) if i in species else (1, 0, i),
    )
    names = [species[i].name if i in species else f"removed species #{i}" for i in order]
    counts = confusion_matrix(true, predicted, labels=order)
    # Drawing a large matrix takes a while: keep it per classifier and species names.
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    key = f"confusion-svg:{classifier.pk}:{digest}"
    svg = cache.get(key)
    if svg is None:
        svg = confusion_matrix_svg(counts, names)
        cache.set(key, svg, 24 * 3600)
    return ConfusionView(
        classifier=classifier.number,
        names=names,
        counts=counts,
        n_crops=int(true.size),
        svg=svg,
    )
