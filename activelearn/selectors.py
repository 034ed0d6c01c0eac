"""Reads of rounds, labels and predictions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.db.models import Count, Prefetch, Q
from django.utils import timezone

from activelearn.evaluation import LearningCurve, learning_curve_fit
from activelearn.models import (
    ClassifierVersion,
    Consensus,
    Label,
    Prediction,
    Round,
    RoundCrop,
)
from activelearn.taxa import training_labels
from detector.models import Crop
from projects.models import Image, Project, Species
from projects.selectors_taxonomy import species_higher_taxa
from projects.storage import stored_local


def round_open_get(*, project: Project) -> Round | None:
    open_round = (
        Round.objects.filter(project=project, status=Round.Status.OPEN)
        .select_related("target_species")
        .first()
    )
    if open_round is not None:
        open_round.project = project  # its readers need the project: this saves them a query
    return open_round


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


def labels_for_training(*, project: Project) -> dict[int, tuple[str, int | None, int]]:
    """``labels_latest_by_crop`` as the classifier and the fine-tuning see it: crops decided
    as a higher taxon (genus and above) carry the kind ``activelearn.taxa.HIGHER_TAXON``, so
    they train nothing but stay labelled (``activelearn.taxa.training_labels``)."""
    return training_labels(
        labels_latest_by_crop(project=project),
        higher_taxa=species_higher_taxa(project_id=project.pk),
    )


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
    the list before any label). Audit crops of the open round get the same as a crop without
    a prediction: their labels must not lean on the machine they measure. Ids no longer in
    ``species`` (merged away) are skipped. Three queries at most, whatever the number of crops.
    """
    names = {s.pk: s.name for s in species}
    classifier = classifier_latest(project=project)
    tops: dict[int, list[list[float]]] = {}
    if classifier is not None:
        audited = audit_crop_ids(project=project, crop_ids=[crop.pk for crop in crops])
        rows = Prediction.objects.filter(classifier=classifier, crop__in=list(crops))
        tops = {c: top for c, top in rows.values_list("crop_id", "top") if c not in audited}
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


def audit_crop_ids(*, project: Project, crop_ids: Iterable[int]) -> set[int]:
    """The crops of ``crop_ids`` that are audit crops of ``project``'s open round: they are
    shown without machine suggestions (one query)."""
    return set(
        RoundCrop.objects.filter(
            round__project=project,
            round__status=Round.Status.OPEN,
            is_audit=True,
            crop_id__in=list(crop_ids),
        ).values_list("crop_id", flat=True)
    )


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
    """One classifier version's cross-validated scores (``activelearn.metrics``): top-1
    (``accuracy``), top-5 and F1 macro (None for versions trained before it was stored)."""

    classifier: int
    round: int | None
    n_labels: int
    accuracy: float
    top5_accuracy: float | None
    f1_macro: float | None = None


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
        # The stored metrics summary when there is one; older versions have only the fields.
        summary = v.cv_metrics or {}
        by_labels[v.n_labels] = LearningCurvePoint(
            classifier=v.number,
            round=v.round.number if v.round else None,
            n_labels=v.n_labels,
            accuracy=float(summary.get("top1", v.cv_accuracy) or 0.0),
            top5_accuracy=summary.get("top5", v.cv_top5_accuracy),
            f1_macro=summary.get("f1_macro"),
        )
    if not by_labels:
        return None
    points = [by_labels[n] for n in sorted(by_labels)]
    n = [p.n_labels for p in points]
    accuracy = [p.accuracy for p in points]
    fit = learning_curve_fit(np.asarray(n, dtype=float), np.asarray(accuracy))
    # Imported here: matplotlib is slow to import and only this page needs it, not workers.
    from activelearn.plots import learning_curve_svg

    svg = learning_curve_svg(
        n,
        accuracy,
        fit=fit,
        target=project.target_accuracy,
        top5=[p.top5_accuracy for p in points],
        f1_macro=[p.f1_macro for p in points],
    )
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
    when it has no cross-validation (too few labels) or predates the saved predictions.

    The counts are ``activelearn.metrics``' confusion matrix, saved by the retrain; a file from
    before that is scored again through the same module from its predicted and true species.
    """
    # Imported here: matplotlib is slow to import and only this page needs it, not workers.
    import hashlib

    from django.core.cache import cache

    from activelearn.plots import confusion_matrix_svg

    classifier = classifier_latest(project=project)
    if classifier is None or classifier.cv_accuracy is None:
        return None
    saved = _cv_confusion_load(classifier=classifier)
    if saved is None:
        return None
    classes, full = saved
    species = {s.pk: s for s in Species.objects.filter(project=project)}
    # Only the species that occur (labelled or predicted), in the species list's order.
    present = [
        int(c) for c, row, col in zip(classes, full, full.T, strict=True) if row.any() or col.any()
    ]
    order = _species_ordered(present, species)
    index = [int(np.flatnonzero(classes == i)[0]) for i in order]
    counts = full[np.ix_(index, index)]
    names = [_species_name(i, species) for i in order]
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
        n_crops=int(full.sum()),
        svg=svg,
    )


def _cv_confusion_load(*, classifier: ClassifierVersion) -> tuple[np.ndarray, np.ndarray] | None:
    """(classes (C,), confusion (C, C), rows true) of ``classifier``'s cross-validation, or
    None without a usable ``.cv.npz``."""
    from activelearn.metrics import classification_metrics

    path = classifier_cv_local(classifier=classifier)
    if path is None:
        return None
    with np.load(path) as cv:
        if "confusion" in cv.files and "confusion_classes" in cv.files:
            return cv["confusion_classes"].astype(np.int64), cv["confusion"].astype(np.int64)
        if "predicted" not in cv.files or "true" not in cv.files:
            return None  # saved before the predicted species were kept
        predicted, true = cv["predicted"].astype(np.int64), cv["true"].astype(np.int64)
    if true.size == 0:
        return None
    # The confusion depends on the predicted labels only: one-hot rows predict exactly them.
    classes = np.union1d(true, predicted)
    one_hot = (predicted[:, None] == classes[None, :]).astype(np.float64)
    metrics = classification_metrics(one_hot, true, classes=classes)
    return metrics.classes, metrics.confusion


def _species_ordered(ids: Iterable[int], species: dict[int, Species]) -> list[int]:
    """``ids`` in the species list's order; ids of species merged away last, by id."""
    return sorted(
        ids,
        key=lambda i: (0, species[i].position, species[i].name) if i in species else (1, 0, i),
    )


def _species_name(species_id: int, species: dict[int, Species]) -> str:
    """The species' name, or "removed species #<id>" for one merged away since."""
    return species[species_id].name if species_id in species else f"removed species #{species_id}"


def classifier_cv_local(*, classifier: ClassifierVersion) -> Path | None:
    """A path on this machine to ``classifier``'s cross-validation file (``<path>.cv.npz`` in
    the data store; on a remote store a cached copy), or None when it has none."""
    name = PurePosixPath(classifier.path).with_suffix(".cv.npz")
    try:
        return stored_local(kind="data", name=str(name))
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class SpeciesAccuracy:
    """One species' cross-validated accuracy (None without labelled crops) and support."""

    species_id: int
    name: str
    accuracy: float | None
    support: int


@dataclass(frozen=True)
class ClassifierMetricsView:
    """The latest classifier's cross-validated metrics (``activelearn.metrics``), for the
    admin page and the metrics export.

    ``summary``: top1, top5, f1_micro, f1_macro, f1_weighted, log_loss, event_top1, n,
    n_events. ``per_species``: in the species list's order, species the classifier never saw
    left out; merged-away ones named "removed species #<id>".
    """

    classifier: int
    n_splits: int
    class_balance: str
    ensemble_size: int
    summary: dict[str, float | int | None]
    per_species: list[SpeciesAccuracy]
    attribute_metrics: dict[str, Any] | None


def classifier_metrics_get(
    *, project: Project, classifier: ClassifierVersion | None
) -> ClassifierMetricsView | None:
    """``classifier``'s (the latest, as ``classifier_latest``) stored metrics with species
    names; None without a classifier or before its metrics were stored. One query."""
    if classifier is None or not classifier.cv_metrics:
        return None
    species = {s.pk: s for s in Species.objects.filter(project=project)}
    stored = {int(k): (v[0], int(v[1])) for k, v in (classifier.cv_per_species or {}).items()}
    order = _species_ordered(stored, species)
    return ClassifierMetricsView(
        classifier=classifier.number,
        n_splits=classifier.cv_n_splits,
        class_balance=classifier.class_balance,
        ensemble_size=classifier.ensemble_size,
        summary=dict(classifier.cv_metrics),
        per_species=[
            SpeciesAccuracy(
                species_id=i,
                name=_species_name(i, species),
                accuracy=None if stored[i][0] is None else float(stored[i][0]),
                support=stored[i][1],
            )
            for i in order
        ],
        attribute_metrics=classifier.attribute_metrics or None,
    )


@dataclass(frozen=True)
class AttributeScore:
    """One attribute's scores; None where there is no evidence (no recorded yes: accuracy and
    recall; never predicted yes: precision)."""

    name: str
    accuracy: float | None
    precision: float | None
    recall: float | None
    support: int

    @property
    def scores(self) -> tuple[float | None, float | None, float | None]:
        """Accuracy, precision and recall, in the page's column order."""
        return (self.accuracy, self.precision, self.recall)


@dataclass(frozen=True)
class AttributeMetricsView:
    """The latest classifier's attribute head, cross-validated (folds grouped by capture
    event; probability > 0.5 is yes): micro-averaged scores and one row per attribute.

    ``evidence`` is False when no crop had any attribute recorded as yes: then every score is
    None and the page says "no evidence yet" (the all-no answer would score 1.000).
    """

    classifier: int
    n: int
    n_splits: int
    evidence: bool
    exact_match: float | None
    accuracy: float | None
    precision: float | None
    recall: float | None
    rows: list[AttributeScore]


def _score(value: object, *, evidence: bool) -> float | None:
    """A stored score, None without evidence (scores stored before ``multilabel_metrics``
    returned None for them hold 1.0 and 0.0 there)."""
    return float(value) if evidence and isinstance(value, int | float) else None


def attribute_metrics_get(
    *, project: Project, classifier: ClassifierVersion | None
) -> AttributeMetricsView | None:
    """``classifier``'s (the latest, as ``classifier_latest``) attribute head scores, or None
    when it has none (too few crops with attributes, or too few capture events to
    cross-validate). One query.

    Attributes renamed since show their current name; removed ones keep the stored name.
    """
    metrics = classifier.attribute_metrics if classifier is not None else None
    if classifier is None or not metrics:
        return None
    current = dict(project.attributes.values_list("id", "name"))
    stored = metrics.get("per_attribute", [])
    # No recorded yes at all: nothing was measured, whatever numbers were stored.
    evidence = any(int(row["support"]) > 0 for row in stored)
    rows = []
    for row in stored:
        seen = evidence and int(row["support"]) > 0
        rows.append(
            AttributeScore(
                name=current.get(row["id"], row["name"]),
                accuracy=_score(row["accuracy"], evidence=seen),
                # Precision needs a predicted yes, not a recorded one (None when there was none).
                precision=_score(row["precision"], evidence=evidence),
                recall=_score(row["recall"], evidence=seen),
                support=int(row["support"]),
            )
        )
    return AttributeMetricsView(
        classifier=classifier.number,
        n=int(metrics["n"]),
        n_splits=int(metrics["n_splits"]),
        evidence=evidence,
        exact_match=_score(metrics["exact_match"], evidence=evidence),
        accuracy=_score(metrics["accuracy"], evidence=evidence),
        precision=_score(metrics["precision"], evidence=evidence),
        recall=_score(metrics["recall"], evidence=evidence),
        rows=rows,
    )
