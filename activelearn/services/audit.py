"""The audit stream's writes: the live classifier's machine label of each audit crop, stored
once, when the crop is first offered (``audit_predictions_record``), and the per-species
auto-accept thresholds a classifier version stores (``thresholds_per_species_compute``), and
the gate that keeps the live classifier when a new one is worse on its audit labels
(``classifier_gate``).

An audit crop is drawn uniformly at random from the unlabelled crops (``rounds.round_start``)
and shown without suggestions; its human label compared with the machine label stored here
is an unbiased test of the classifier that was live when it was offered. The estimates are
read by ``activelearn.selectors_audit``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from django.db.models import Exists, OuterRef

from activelearn.audit import GATE_MIN_PAIRED, paired_gate
from activelearn.final_labels import AutoAccept
from activelearn.models import AuditPrediction, ClassifierVersion, Prediction, Round, RoundCrop
from activelearn.selectors import classifier_latest
from activelearn.selectors_audit import audit_evidence_get, audit_outcomes_get
from activelearn.thresholds import species_thresholds
from projects.models import Project

__all__ = ["audit_predictions_record", "classifier_gate", "thresholds_per_species_compute"]


def audit_predictions_record(*, round_: Round, crop_ids: Collection[int]) -> int:
    """Store the live classifier's prediction for the audit crops of ``round_`` among
    ``crop_ids`` that have none yet; returns how many were stored.

    Once per (round, crop): a crop offered again (skipped, its claim expired, a retrain
    meanwhile) keeps the prediction of its first offer, which is what its label tests. Crops
    without a prediction by the live classifier (none trained yet, imported since) get no row:
    there is no machine label to test.
    """
    if not crop_ids:
        return 0
    audit = (
        RoundCrop.objects.filter(round=round_, is_audit=True, crop_id__in=list(crop_ids))
        .exclude(Exists(AuditPrediction.objects.filter(round=round_, crop_id=OuterRef("crop_id"))))
        .values_list("crop_id", flat=True)
    )
    pending = list(audit)
    if not pending:
        return 0
    classifier = classifier_latest(project=round_.project)
    if classifier is None:
        return 0
    predictions = Prediction.objects.filter(classifier=classifier, crop_id__in=pending)
    rule = AutoAccept.of(classifier)
    rows = []
    for prediction in predictions:
        threshold = rule.threshold_for(prediction.species_id)
        rows.append(
            AuditPrediction(
                round=round_,
                crop_id=prediction.crop_id,
                classifier=classifier,
                strategy=round_.strategy,
                species_id=prediction.species_id,
                confidence=prediction.confidence,
                threshold=threshold,
                auto_accepted=threshold is not None and prediction.confidence >= threshold,
            )
        )
    # A volunteer racing for the same crop (several votes per crop) may have stored it first.
    AuditPrediction.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def thresholds_per_species_compute(
    *,
    project: Project,
    cv_predicted: np.ndarray,
    cv_confidence: np.ndarray,
    cv_correct: np.ndarray,
    target: float,
) -> dict[str, float | None]:
    """{species id (str, for JSON): its auto-accept threshold, or None for never} for the
    species with enough evidence: the new classifier's grouped cross-validation on the
    labelled crops ((L,) predicted species ids, confidences, hits) pooled with every audit
    label of the project (``activelearn.thresholds``). Species left out use the global
    threshold."""
    species, confidence, correct = audit_evidence_get(project=project)
    found = species_thresholds(
        predicted=np.concatenate([np.asarray(cv_predicted, dtype=np.int64), species]),
        confidence=np.concatenate([np.asarray(cv_confidence, dtype=np.float64), confidence]),
        correct=np.concatenate([np.asarray(cv_correct, dtype=bool), correct]),
        target=target,
    )
    return {str(species_id): t.threshold for species_id, t in sorted(found.items())}


def classifier_gate(
    *,
    parent: ClassifierVersion | None,
    crop_ids: np.ndarray,
    cv_correct: np.ndarray | None,
    min_paired: int = GATE_MIN_PAIRED,
) -> dict[str, object]:
    """Whether a new classifier replaces the live one (``parent``): ``activelearn.audit.
    paired_gate`` on the parent's audit labels, the child judged by its held-out
    (cross-validated) prediction of the same crops, ``crop_ids`` (L,) with ``cv_correct``
    (L,). An audit crop labelled "not an animal" is in no training set: both machine labels
    were wrong. Fewer than ``min_paired`` audit labels: kept (the cross-validated choice
    stands). Returns the version's ``gate`` field; its "decision" is "kept" or "rejected".
    """
    if parent is None:
        return {"decision": "kept", "reason": "no live classifier to compare with"}
    if cv_correct is None:
        return {"decision": "kept", "reason": "no cross-validation to compare with"}
    outcomes = audit_outcomes_get(project=parent.project, classifier=parent)
    if outcomes is None:
        parent_correct = child_correct = np.zeros(0, dtype=bool)
    else:
        position = {int(crop_id): i for i, crop_id in enumerate(crop_ids.tolist())}
        parent_correct = outcomes.correct
        child_correct = np.asarray(
            [
                bool(cv_correct[position[c]]) if c in position else False
                for c in outcomes.crop_ids.tolist()
            ],
            dtype=bool,
        )
    decision = paired_gate(
        parent_correct=parent_correct, child_correct=child_correct, min_paired=min_paired
    )
    return {
        "decision": "kept" if decision.keep_child else "rejected",
        "reason": decision.reason,
        "parent": parent.number,
        "n": decision.n,
        "parent_correct": decision.parent_correct,
        "child_correct": decision.child_correct,
    }
