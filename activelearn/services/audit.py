"""The audit stream's writes: the live classifier's machine label of each audit crop, stored
once, when the crop is first offered (``audit_predictions_record``).

An audit crop is drawn uniformly at random from the unlabelled crops (``rounds.round_start``)
and shown without suggestions; its human label compared with the machine label stored here
is an unbiased test of the classifier that was live when it was offered. The estimates are
read by ``activelearn.selectors_audit``.
"""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Exists, OuterRef

from activelearn.models import AuditPrediction, ClassifierVersion, Prediction, Round, RoundCrop
from activelearn.selectors import classifier_latest

__all__ = ["audit_predictions_record", "species_threshold"]


def species_threshold(*, classifier: ClassifierVersion, species_id: int) -> float | None:
    """The confidence at or above which ``classifier``'s machine label of ``species_id`` is
    auto-accepted: the species' own threshold when the classifier has one, else the global
    one (None: nothing is auto-accepted)."""
    own = (classifier.thresholds_per_species or {}).get(str(species_id))
    return float(own) if own is not None else classifier.threshold


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
    rows = []
    for prediction in predictions:
        threshold = species_threshold(classifier=classifier, species_id=prediction.species_id)
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
