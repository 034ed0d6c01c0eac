"""Verification on the explore page: an admin or ecologist confirms or corrects many crops at
once, and can undo it.

A verification is a human decision, not a vote in a round: it needs no claim (the views let
only admins and ecologists call it), and like an admin's review it decides the crop's
consensus whatever the votes say. Each act stores one Label per crop with
``origin=LabelOrigin.VERIFIED``, the user and the time, all sharing one ``decision`` UUID;
``verification_undo`` marks that decision's labels undone (rows stay: labels are never lost)
and the crops fall back to their votes, or to the machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from activelearn.models import ClassifierVersion, Label, LabelKind, LabelOrigin, Prediction
from activelearn.selectors import round_open_get
from activelearn.services.errors import LabelError
from activelearn.services.finetune import embedding_finetune_queue
from activelearn.services.labels import consensus_update, round_close_if_done
from detector.models import Crop
from projects.models import Project, Species

# What a bulk verification does to each crop.
CONFIRM, CORRECT, NOT_ANIMAL = "confirm", "correct", "not_animal"
ACTIONS = (CONFIRM, CORRECT, NOT_ANIMAL)
# Most crops one act may verify (a page of the explore view is at most 500).
VERIFY_MAX = 500


def crops_verify(
    *,
    project: Project,
    user: User,
    crop_ids: Sequence[int],
    action: str,
    classifier: ClassifierVersion | None,
    species_id: int | None = None,
) -> uuid.UUID:
    """Record ``user``'s verification of ``crop_ids``: one decision, returned for undo.

    ``action``: ``confirm`` the latest classifier's (``classifier``) label of each crop,
    ``correct`` every crop to the project's species ``species_id``, or mark them
    ``not_animal``. All or nothing: LabelError (nothing stored) for no crop, too many, a crop
    of another project, an unknown action, a species not in the project, or (confirm) a crop
    without a prediction of ``classifier``.
    """
    ids = list(dict.fromkeys(int(c) for c in crop_ids))
    if not ids:
        raise LabelError("no crop selected")
    if len(ids) > VERIFY_MAX:
        raise LabelError(f"at most {VERIFY_MAX} crops at once")
    if action not in ACTIONS:
        raise LabelError(f"unknown action {action!r}; choose from {', '.join(ACTIONS)}")
    found = set(Crop.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True))
    missing = [c for c in ids if c not in found]
    if missing:
        raise LabelError(
            f"crop {', '.join(map(str, missing[:10]))} is not part of project {project.name!r}"
        )
    species_of = _species_of(
        project=project, ids=ids, action=action, classifier=classifier, species_id=species_id
    )
    decision = uuid.uuid4()
    with transaction.atomic():
        open_round = round_open_get(project=project)
        in_round = (
            set(open_round.items.filter(crop_id__in=ids).values_list("crop_id", flat=True))
            if open_round is not None
            else set()
        )
        Label.objects.bulk_create(
            Label(
                project=project,
                crop_id=crop_id,
                user=user,
                kind=LabelKind.NOT_ANIMAL if action == NOT_ANIMAL else LabelKind.SPECIES,
                species_id=species_of.get(crop_id),
                round=open_round if crop_id in in_round else None,
                # Like an admin's review, a verification decides the crop over its votes.
                is_review=True,
                origin=LabelOrigin.VERIFIED,
                decision=decision,
            )
            for crop_id in ids
        )
        settled = consensus_update(project=project, crop_ids=ids)
        if open_round is not None and in_round & settled:
            round_close_if_done(round_=open_round)
        embedding_finetune_queue(project=project)
    return decision


def _species_of(
    *,
    project: Project,
    ids: list[int],
    action: str,
    classifier: ClassifierVersion | None,
    species_id: int | None,
) -> dict[int, int]:
    """{crop id: species id} each crop is labelled with ({} for not_animal)."""
    if action == NOT_ANIMAL:
        return {}
    if action == CORRECT:
        if (
            species_id is None
            or not Species.objects.filter(project=project, pk=species_id).exists()
        ):
            raise LabelError(f"species #{species_id} is not a species of project {project.name!r}")
        return dict.fromkeys(ids, species_id)
    predicted = (
        dict(
            Prediction.objects.filter(classifier=classifier, crop_id__in=ids).values_list(
                "crop_id", "species_id"
            )
        )
        if classifier is not None
        else {}
    )
    unpredicted = [c for c in ids if c not in predicted]
    if unpredicted:
        raise LabelError(
            f"crop {', '.join(map(str, unpredicted[:10]))} has no machine label to confirm"
        )
    return predicted


def verification_undo(*, project: Project, decision: uuid.UUID) -> int:
    """Undo one verification decision of ``project``: its labels are kept, marked undone, and
    their crops' consensus recomputed. Returns the labels undone; LabelError when the
    decision is not a verification of this project or was already undone."""
    with transaction.atomic():
        labels = Label.objects.filter(
            project=project,
            decision=decision,
            origin=LabelOrigin.VERIFIED,
            undone_at__isnull=True,
        )
        crop_ids = list(labels.values_list("crop_id", flat=True))
        if not crop_ids:
            raise LabelError("nothing to undo: no such verification, or it was already undone")
        n = labels.update(undone_at=timezone.now())
        consensus_update(project=project, crop_ids=crop_ids)
    return n


def explore_volunteers_set(*, project: Project, allowed: bool) -> None:
    """Let volunteers look at the explore page (read-only), or stop them."""
    project.explore_volunteers = allowed
    project.save(update_fields=["explore_volunteers"])
