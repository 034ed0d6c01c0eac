"""Project settings of the learning loop, and what has to follow when they change.

A new target accuracy re-derives the latest classifier's threshold from its saved
cross-validation (``classifier_threshold_update``), a new class balance or ensemble size queues
a retrain, and new consensus rules recompute every crop's consensus.
"""

from __future__ import annotations

import numpy as np
from django.db import transaction

from activelearn.evaluation import accuracy_threshold
from activelearn.models import ClassifierVersion, Consensus, Strategy
from activelearn.selectors import classifier_cv_local, classifier_latest, round_open_get
from activelearn.services.audit import thresholds_per_species_compute
from activelearn.services.errors import SettingsError
from activelearn.services.labels import consensus_update, round_close_if_done
from activelearn.services.retrain import classifier_retrain_queue
from activelearn.thresholds import thresholds_accept
from projects.models import ClassBalance, Project

__all__ = [
    "AUDIT_SHARE_MAX",
    "ENSEMBLE_SIZE_MAX",
    "SECONDS_PER_IMAGE_MAX",
    "classifier_threshold_update",
    "project_consensus_update",
    "project_learning_update",
]


def project_learning_update(
    *,
    project: Project,
    first_round_strategy: str,
    target_accuracy: float,
    seconds_per_image: float | None = None,
    class_balance: str | None = None,
    ensemble_size: int | None = None,
    audit_share: float | None = None,
) -> Project:
    """Change the first round's strategy, the auto-accept target accuracy and, when given,
    the volunteer seconds per image (effort saved), the class balance and the ensemble size
    (both used by the next retrain) and the audit share (the share of every new round drawn
    at random and shown without suggestions, 0 to ``AUDIT_SHARE_MAX``). None leaves a setting
    as it is.

    The latest classifier's threshold and auto-acceptable share are recomputed from its saved
    cross-validated predictions, so a new target applies at once, without retraining. A new
    class balance or ensemble size queues a retrain (when a classifier exists).
    """
    if first_round_strategy not in Strategy.values:
        raise SettingsError(f"unknown strategy {first_round_strategy!r}")
    if not 0.0 < target_accuracy <= 1.0:
        raise SettingsError("the target accuracy must be in (0, 1], e.g. 0.966 for 96.6%")
    extra = _learning_extra_settings(
        seconds_per_image=seconds_per_image,
        class_balance=class_balance,
        ensemble_size=ensemble_size,
        audit_share=audit_share,
    )
    with transaction.atomic():
        retrain = any(
            getattr(project, name) != extra[name]
            for name in ("class_balance", "ensemble_size")
            if name in extra
        )
        project.first_round_strategy = first_round_strategy
        project.target_accuracy = target_accuracy
        for name, value in extra.items():
            setattr(project, name, value)
        project.save(update_fields=["first_round_strategy", "target_accuracy", *extra])
        classifier = classifier_latest(project=project)
        if classifier is not None:
            classifier_threshold_update(classifier=classifier, target=target_accuracy)
            if retrain:  # the classifier was trained under the old setting
                classifier_retrain_queue(project_id=project.pk)
    return project


# Longest volunteer time per image the effort estimate accepts (an hour per image).
SECONDS_PER_IMAGE_MAX = 3600.0
ENSEMBLE_SIZE_MAX = 10
# Past half a round the strategy would hardly choose anything.
AUDIT_SHARE_MAX = 0.5


def _learning_extra_settings(
    *,
    seconds_per_image: float | None,
    class_balance: str | None,
    ensemble_size: int | None,
    audit_share: float | None = None,
) -> dict[str, float | str | int]:
    """The optional learning settings that were given, validated (SettingsError if not)."""
    extra: dict[str, float | str | int] = {}
    if seconds_per_image is not None:
        if not (0.0 < seconds_per_image <= SECONDS_PER_IMAGE_MAX):  # NaN fails too
            raise SettingsError(
                f"seconds per image must be more than 0 and at most {SECONDS_PER_IMAGE_MAX:g}"
            )
        extra["seconds_per_image"] = float(seconds_per_image)
    if class_balance is not None:
        if class_balance not in ClassBalance.values:
            raise SettingsError(
                f"unknown class balance {class_balance!r}; "
                f"choose one of {', '.join(ClassBalance.values)}"
            )
        extra["class_balance"] = class_balance
    if ensemble_size is not None:
        if not 1 <= ensemble_size <= ENSEMBLE_SIZE_MAX:
            raise SettingsError(f"the ensemble size must be between 1 and {ENSEMBLE_SIZE_MAX}")
        extra["ensemble_size"] = int(ensemble_size)
    if audit_share is not None:
        if not (0.0 <= audit_share <= AUDIT_SHARE_MAX):  # NaN fails too
            raise SettingsError(
                f"the audit share must be between 0 and {AUDIT_SHARE_MAX:g}, e.g. 0.1 for 10%"
            )
        extra["audit_share"] = float(audit_share)
    return extra


def project_consensus_update(
    *, project: Project, votes_per_crop: int, agreement_threshold: float
) -> int:
    """Change how many votes a crop needs and the agreement that decides it.

    Every crop's consensus is recomputed under the new rule (votes are never dropped): raising
    the votes sends decided crops of the open round back to the queue for more votes, lowering
    them can decide pending crops. Returns the number of crops recomputed.
    """
    if not 1 <= votes_per_crop <= 10:
        raise SettingsError("votes per crop must be between 1 and 10")
    if not 0.0 <= agreement_threshold <= 1.0:
        raise SettingsError("the agreement threshold must be within [0, 1], e.g. 0.66")
    with transaction.atomic():
        # The project row is written (and so locked) before the crops: the one exception to
        # the lock order, documented in ``locks``.
        project.votes_per_crop = votes_per_crop
        project.agreement_threshold = agreement_threshold
        project.save(update_fields=["votes_per_crop", "agreement_threshold"])
        crop_ids = list(Consensus.objects.filter(project=project).values_list("crop_id", flat=True))
        consensus_update(project=project, crop_ids=crop_ids)
        open_round = round_open_get(project=project)
        if open_round is not None:
            round_close_if_done(round_=open_round)
    return len(crop_ids)


def classifier_threshold_update(*, classifier: ClassifierVersion, target: float) -> None:
    """Re-derive ``classifier``'s thresholds (global and per species, with the audit labels)
    for ``target`` from its ``.cv.npz`` file, and its auto-acceptable share."""
    path = classifier_cv_local(classifier=classifier)
    if path is None:
        ClassifierVersion.objects.filter(pk=classifier.pk).update(target_accuracy=target)
        return
    with np.load(path) as cv:
        threshold = accuracy_threshold(cv["confidence"], cv["correct"], target=target)
        # Files written before the per-species thresholds have no predicted species.
        per_species = (
            thresholds_per_species_compute(
                project=classifier.project,
                cv_predicted=cv["predicted"],
                cv_confidence=cv["confidence"],
                cv_correct=cv["correct"],
                target=target,
            )
            if "predicted" in cv.files
            else {}
        )
    predictions = classifier.predictions.filter(
        crop__active=True, crop__consensus__isnull=True
    ).values_list("species_id", "confidence")
    unlabelled = np.fromiter(
        predictions.iterator(chunk_size=20_000),
        dtype=np.dtype([("s", np.int64), ("c", np.float64)]),
    )
    accepted = thresholds_accept(
        species=unlabelled["s"],
        confidence=unlabelled["c"],
        per_species={int(k): v for k, v in per_species.items()},
        global_threshold=threshold.threshold,
    )
    ClassifierVersion.objects.filter(pk=classifier.pk).update(
        target_accuracy=target,
        threshold=threshold.threshold,
        threshold_accuracy=threshold.accuracy_at_threshold,
        thresholds_per_species=per_species,
        auto_accept_share=float(accepted.mean()) if accepted.size else 0.0,
    )
