"""Crop claims: which volunteer is labelling which crop of the open round right now.

A claim keeps a crop away from other volunteers until it expires
(``TRAPWISE_CLAIM_SECONDS``), unless the project wants several votes per crop. Claims are
hints, not locks: a vote on an unclaimed crop still counts.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from activelearn.models import Consensus, CropClaim, Label, Round, RoundCrop
from activelearn.services.audit import audit_predictions_record
from activelearn.services.rounds import crop_settled
from detector.models import Crop

__all__ = ["claims_create", "crop_claim_next", "crop_claim_release"]


def crop_claim_next(
    *, round_: Round, user: User, skipped: Collection[int] = (), limit: int = 1
) -> list[Crop]:
    """Claim up to ``limit`` crops of ``round_`` for ``user`` to label, in pick order.

    Crops ``user`` holds already come first (newest claim first: an undone crop is shown
    again). Others are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two volunteers
    asking at the same moment never get the same crop unless the project wants several votes:
    a crop is offered while its votes plus other volunteers' live claims are fewer than the
    votes per crop. Claims expire after ``TRAPWISE_CLAIM_SECONDS``. Crops decided, sent to
    review, already voted on by ``user`` or in ``skipped`` are never offered. Audit crops
    newly claimed get the live classifier's prediction stored (``audit_predictions_record``).
    """
    now = timezone.now()
    skip = [int(c) for c in skipped]
    with transaction.atomic():
        mine = list(
            CropClaim.objects.filter(round=round_, user=user, expires_at__gt=now)
            .exclude(crop_id__in=skip)
            .exclude(_crop_voted_by(user))
            .exclude(crop_settled())
            .order_by("-id")
            .values_list("crop_id", flat=True)[:limit]
        )
        new: list[int] = []
        if len(mine) < limit:
            new = _claimable(
                round_=round_, user=user, now=now, exclude=[*skip, *mine], limit=limit - len(mine)
            )
        claims_create(round_=round_, user=user, crop_ids=[*mine, *new])
        # The machine label each audit crop's label will test: the live one, at first offer.
        audit_predictions_record(round_=round_, crop_ids=new)
    crops = Crop.objects.filter(pk__in=[*mine, *new]).select_related("image", "detection")
    by_id = {c.pk: c for c in crops}
    return [by_id[c] for c in [*mine, *new] if c in by_id]


def crop_claim_release(*, round_: Round, user: User, crop_id: int) -> None:
    """Give a claimed crop back (the volunteer skipped it), so that others are offered it."""
    CropClaim.objects.filter(round=round_, user=user, crop_id=crop_id).delete()


def _claimable(
    *, round_: Round, user: User, now: datetime, exclude: list[int], limit: int
) -> list[int]:
    """Up to ``limit`` crop ids of ``round_`` that ``user`` may claim now, in pick order.

    A query, not one of the row locks of ``locks``: its ``FOR UPDATE SKIP LOCKED`` skips the
    round crops another transaction is claiming instead of waiting for them.

    Locking is not enough on its own. A claim lives in another table, so the statement that
    locks a round crop may have taken its snapshot before another volunteer's transaction
    committed a claim on it and let the row go; PostgreSQL then hands over the row without
    rechecking (the row itself did not change). So the locked rows are checked again by a
    second statement, whose snapshot is taken after the locks are held and therefore sees
    every claim committed by a transaction that held them before; rows that fail are dropped
    and more are locked until ``limit`` are found or none are left.
    """
    chosen: list[int] = []
    tried = list(exclude)
    while len(chosen) < limit:
        wanted = limit - len(chosen)
        locked = list(
            _open_items(round_=round_, user=user, now=now, exclude=tried)
            .order_by("position")
            # Rows another volunteer's transaction is claiming right now are skipped, not
            # waited for; "of self" because the subqueries must not be locked.
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("crop_id", flat=True)[:wanted]
        )
        if not locked:
            break
        tried += locked
        still_open = set(
            _open_items(round_=round_, user=user, now=now, exclude=exclude)
            .filter(crop_id__in=locked)
            .values_list("crop_id", flat=True)
        )
        chosen += [crop_id for crop_id in locked if crop_id in still_open]
        if len(locked) < wanted:
            break  # nothing more was free to lock: another pass would find nothing
    return chosen


def _open_items(
    *, round_: Round, user: User, now: datetime, exclude: list[int]
) -> QuerySet[RoundCrop]:
    """The round crops of ``round_`` that ``user`` may be offered at ``now`` (unordered)."""
    others = (
        CropClaim.objects.filter(round=round_, crop=OuterRef("crop_id"), expires_at__gt=now)
        .exclude(user=user)
        .values("crop")
        .annotate(n=Count("id"))
        .values("n")
    )
    votes = Consensus.objects.filter(crop=OuterRef("crop_id")).values("votes")
    return (
        RoundCrop.objects.filter(round=round_)
        .exclude(crop_id__in=exclude)
        .exclude(_crop_voted_by(user))
        .exclude(crop_settled())
        .annotate(
            n_votes=Coalesce(Subquery(votes), 0),
            n_claims=Coalesce(Subquery(others), 0),
        )
        .filter(n_votes__lt=round_.project.votes_per_crop - F("n_claims"))
    )


def _crop_voted_by(user: User) -> Exists:
    return Exists(
        Label.objects.filter(
            crop=OuterRef("crop_id"), user=user, undone_at__isnull=True, is_review=False
        )
    )


def claims_create(*, round_: Round, user: User, crop_ids: list[int]) -> None:
    """Claim (or re-claim, renewing the expiry) ``crop_ids`` of ``round_`` for ``user``; the
    first crop gets the newest claim, so ``crop_claim_next`` offers it first."""
    if not crop_ids:
        return
    expires = timezone.now() + timedelta(seconds=settings.TRAPWISE_CLAIM_SECONDS)
    CropClaim.objects.filter(round=round_, user=user, crop_id__in=crop_ids).delete()
    CropClaim.objects.bulk_create(
        CropClaim(round=round_, user=user, crop_id=crop_id, expires_at=expires)
        for crop_id in reversed(crop_ids)  # the first crop gets the newest claim id
    )
