"""Reads of the audit stream: how accurate the machine labels of the unlabelled crops are,
from the audit labels (``activelearn.audit`` does the statistics).

An audit crop was drawn uniformly at random from the unlabelled crops and labelled without
suggestions; ``AuditPrediction`` holds the machine label that was live when it was offered.
Its human label (the crop's *done* consensus: a species or "not an animal"; "unknown" tells
nothing and is left out) says whether that machine label was right.

The estimate is about one classifier version, the newest one with audit labels: the live one
while its round is labelled, its parent just after a retrain (the new version has not been
tested yet, and saying so is the honest answer). Two intervals sit side by side: the audit
labels alone (Wilson) and prediction-powered (PPI++), which also uses that version's
confidence on every unlabelled crop and is narrower when the confidences are calibrated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from activelearn.audit import AccuracyEstimate, binomial_interval, ppi_interval
from activelearn.final_labels import AutoAccept
from activelearn.models import (
    AuditPrediction,
    ClassifierVersion,
    Consensus,
    LabelKind,
    Prediction,
)
from activelearn.selectors import classifier_latest
from activelearn.thresholds import thresholds_accept
from projects.models import Project, Species

__all__ = [
    "AUDIT_MIN_SPECIES",
    "AuditCurvePoint",
    "AuditAccuracy",
    "AuditOutcomes",
    "AuditView",
    "audit_curve_get",
    "classifier_rejected_get",
    "audit_estimate_get",
    "audit_evidence_get",
    "audit_outcomes_get",
]

# Audit labels a species needs before its own interval is shown (fewer: too wide to help).
AUDIT_MIN_SPECIES = 5


@dataclass(frozen=True)
class AuditOutcomes:
    """The audit labels of one classifier version; every array (n,), one per audit crop.

    ``crop_ids``, ``species_ids`` (the machine's species), ``confidence`` (its probability),
    ``threshold`` (NaN: none), ``auto_accepted`` and ``correct`` (the human label agrees).
    """

    classifier_id: int
    crop_ids: np.ndarray
    species_ids: np.ndarray
    confidence: np.ndarray
    auto_accepted: np.ndarray
    correct: np.ndarray


@dataclass(frozen=True)
class AuditAccuracy:
    """One accuracy from the audit: prediction-powered (``accuracy``, ``ci_low``,
    ``ci_high``; ``method`` "ppi", or "binomial" when PPI does not apply yet) and the audit
    labels' own Wilson interval beside it (``binomial_low``/``binomial_high``)."""

    n: int
    accuracy: float | None
    ci_low: float
    ci_high: float
    method: str
    binomial_low: float
    binomial_high: float
    n_unlabelled: int

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low

    @property
    def binomial_width(self) -> float:
        return self.binomial_high - self.binomial_low

    @classmethod
    def of(cls, *, ppi: AccuracyEstimate, binomial: AccuracyEstimate, pool: int) -> AuditAccuracy:
        return cls(
            n=ppi.n,
            accuracy=ppi.estimate,
            ci_low=ppi.low,
            ci_high=ppi.high,
            method=ppi.method,
            binomial_low=binomial.low,
            binomial_high=binomial.high,
            n_unlabelled=pool,
        )


@dataclass(frozen=True)
class SpeciesAudit:
    species_id: int
    name: str
    accuracy: AuditAccuracy


@dataclass(frozen=True)
class AuditCurvePoint:
    """One point of the audit learning curve: classifier version ``classifier`` (trained on
    ``n_labels`` labels) was right on ``accuracy`` of the ``n`` audit crops offered while it
    was live (rounds ``rounds``), with the Wilson 95% interval. Unlike cross-validation on the
    crops the strategy chose, these crops were drawn at random: an unbiased curve."""

    classifier: int
    n_labels: int
    rounds: list[int]
    n: int
    accuracy: float | None
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class AuditView:
    """The audit estimate of classifier ``classifier`` (its number; ``live``: still the latest).

    ``overall``: all its machine labels of unlabelled crops; ``auto_accepted``: those at or
    above their species' threshold; ``per_species``: by machine species, for species with at
    least ``AUDIT_MIN_SPECIES`` audit labels, most audited first.
    """

    classifier: int
    live: bool
    overall: AuditAccuracy
    auto_accepted: AuditAccuracy
    per_species: list[SpeciesAudit]
    curve: list[AuditCurvePoint]

    def as_json(self) -> dict[str, object]:
        """The ``audit`` block of ``metrics.json``: ``n``, ``accuracy``, ``ci_low``,
        ``ci_high`` (the narrower PPI interval), the binomial one beside it, and the rest."""
        return {
            **asdict(self.overall),
            "classifier": self.classifier,
            "live": self.live,
            "auto_accepted": asdict(self.auto_accepted),
            "per_species": [
                {"species_id": s.species_id, "name": s.name, **asdict(s.accuracy)}
                for s in self.per_species
            ],
            "curve": [asdict(point) for point in self.curve],
        }


def audit_outcomes_get(
    *, project: Project, classifier: ClassifierVersion | None = None
) -> AuditOutcomes | None:
    """The audit labels of ``classifier`` (default: the newest version with any), or None
    when there is none. Two queries."""
    rows = AuditPrediction.objects.filter(
        round__project=project,
        crop__consensus__status=Consensus.Status.DONE,
        crop__consensus__kind__in=[LabelKind.SPECIES, LabelKind.NOT_ANIMAL],
    )
    if classifier is None:
        newest = rows.order_by("-classifier__number").values_list("classifier_id", flat=True)
        classifier_id = newest.first()
        if classifier_id is None:
            return None
    else:
        classifier_id = classifier.pk
    values = list(
        rows.filter(classifier_id=classifier_id)
        .order_by("id")
        .values_list(
            "crop_id", "species_id", "confidence", "auto_accepted", "crop__consensus__species_id"
        )
    )
    if not values:
        return None
    crop, species, confidence, auto, human = zip(*values, strict=True)
    return AuditOutcomes(
        classifier_id=classifier_id,
        crop_ids=np.asarray(crop, dtype=np.int64),
        species_ids=np.asarray(species, dtype=np.int64),
        confidence=np.asarray(confidence, dtype=np.float64),
        auto_accepted=np.asarray(auto, dtype=bool),
        # "Not an animal" has no species: a machine species is wrong for it.
        correct=np.asarray([h is not None and h == s for s, h in zip(species, human, strict=True)]),
    )


def _accuracy(
    *, outcomes: AuditOutcomes, rows: np.ndarray, pool_confidence: np.ndarray
) -> AuditAccuracy:
    """The audit accuracy of the audit rows ``rows`` (bool (n,)), prediction-powered with
    ``pool_confidence`` (M,): the same version's confidence on the unlabelled crops they stand
    for (its top-1 probability predicts whether it is right)."""
    correct = outcomes.correct[rows].astype(np.float64)
    return AuditAccuracy.of(
        ppi=ppi_interval(
            correct=correct, audit_scores=outcomes.confidence[rows], pool_scores=pool_confidence
        ),
        binomial=binomial_interval(correct=correct),
        pool=int(pool_confidence.size),
    )


def audit_estimate_get(*, project: Project) -> AuditView | None:
    """The audit estimate of the machine labels on the unlabelled crops (``AuditView``), or
    None before the first audit label. Four queries, and one pass over the version's
    predictions of the unlabelled active crops."""
    outcomes = audit_outcomes_get(project=project)
    if outcomes is None:
        return None
    classifier = ClassifierVersion.objects.get(pk=outcomes.classifier_id)
    pool = Prediction.objects.filter(
        classifier=classifier, crop__active=True, crop__consensus__isnull=True
    ).values_list("species_id", "confidence")
    pairs = np.fromiter(
        pool.iterator(chunk_size=20_000), dtype=np.dtype([("s", np.int64), ("c", np.float64)])
    )
    pool_species, pool_confidence = pairs["s"], pairs["c"]
    rule = AutoAccept.of(classifier)
    # Each unlabelled crop at its species' own threshold, else the global one.
    pool_accepted = thresholds_accept(
        species=pool_species,
        confidence=pool_confidence,
        per_species=rule.per_species,
        global_threshold=rule.default,
    )
    names = dict(Species.objects.filter(project=project).values_list("id", "name"))
    all_rows = np.ones(outcomes.correct.size, dtype=bool)
    per_species = []
    for species_id in np.unique(outcomes.species_ids):
        rows = outcomes.species_ids == species_id
        if rows.sum() < AUDIT_MIN_SPECIES:
            continue
        accuracy = _accuracy(
            outcomes=outcomes,
            rows=rows,
            pool_confidence=pool_confidence[pool_species == species_id],
        )
        per_species.append(SpeciesAudit(int(species_id), names.get(int(species_id), "?"), accuracy))
    per_species.sort(key=lambda s: (-s.accuracy.n, s.name))
    latest = classifier_latest(project=project)
    return AuditView(
        classifier=classifier.number,
        live=latest is not None and latest.pk == classifier.pk,
        overall=_accuracy(outcomes=outcomes, rows=all_rows, pool_confidence=pool_confidence),
        auto_accepted=_accuracy(
            outcomes=outcomes,
            rows=outcomes.auto_accepted,
            pool_confidence=pool_confidence[pool_accepted],
        ),
        per_species=per_species,
        curve=audit_curve_get(project=project),
    )


def audit_curve_get(*, project: Project) -> list[AuditCurvePoint]:
    """The audit learning curve: one point per classifier version with audit labels, oldest
    first (``AuditCurvePoint``). One query."""
    rows = (
        AuditPrediction.objects.filter(
            round__project=project,
            crop__consensus__status=Consensus.Status.DONE,
            crop__consensus__kind__in=[LabelKind.SPECIES, LabelKind.NOT_ANIMAL],
        )
        .order_by("classifier__number", "round__number")
        .values_list(
            "classifier__number",
            "classifier__n_labels",
            "round__number",
            "species_id",
            "crop__consensus__species_id",
        )
    )
    by_version: dict[tuple[int, int], tuple[list[int], list[bool]]] = {}
    for number, n_labels, round_number, machine, human in rows:
        rounds, correct = by_version.setdefault((number, n_labels), ([], []))
        if round_number not in rounds:
            rounds.append(round_number)
        correct.append(human is not None and human == machine)
    points = []
    for (number, n_labels), (rounds, correct) in by_version.items():
        interval = binomial_interval(correct=np.asarray(correct, dtype=np.float64))
        points.append(
            AuditCurvePoint(
                number, n_labels, rounds, interval.n, interval.estimate, interval.low, interval.high
            )
        )
    return points


def audit_evidence_get(*, project: Project) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every audit label of ``project``, of every classifier version, as evidence for the
    per-species thresholds: (n,) machine species ids, (n,) confidences, (n,) bool correct.
    One query."""
    values = list(
        AuditPrediction.objects.filter(
            round__project=project,
            crop__consensus__status=Consensus.Status.DONE,
            crop__consensus__kind__in=[LabelKind.SPECIES, LabelKind.NOT_ANIMAL],
        ).values_list("species_id", "confidence", "crop__consensus__species_id")
    )
    species = np.asarray([v[0] for v in values], dtype=np.int64)
    confidence = np.asarray([v[1] for v in values], dtype=np.float64)
    correct = np.asarray([v[2] is not None and v[2] == v[0] for v in values], dtype=bool)
    return species, confidence, correct


def classifier_rejected_get(*, project: Project) -> ClassifierVersion | None:
    """The newest classifier version when its gate rejected it (the live one is older), so
    the dashboard can say why the live classifier stayed; else None. One query."""
    newest = ClassifierVersion.objects.filter(project=project).order_by("-number").first()
    if newest is None or newest.status != ClassifierVersion.Status.REJECTED:
        return None
    return newest
