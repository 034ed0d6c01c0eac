"""Crop claims: which volunteer is labelling which crop of the open round right now.

A claim keeps a crop away from other volunteers until it expires
(``TRAPWISE_CLAIM_SECONDS``), unless the project wants several votes per crop. A volunteer
holds at most ``TRAPWISE_CLAIMS_PER_USER`` live claims per round (a grid page's worth), so no
one can hold a whole round. A claim is also the volunteer's right to vote: ``labels_submit``
takes a vote only on a crop its user holds (``crop_claims_held``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from activelearn.models import Consensus, CropClaim, Label, Round, RoundCrop, RoundUnit
from activelearn.selectors_events import round_event_crop_ids
from activelearn.services.audit import audit_predictions_record
from activelearn.services.locks import claims_user_lock
from activelearn.services.rounds import crop_settled
from detector.models import Crop

__all__ = [
    "claims_create",
    "crop_claim_next",
    "crop_claim_release",
    "crop_claims_held",
    "event_claim_next",
]


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

    ``user``'s claims on ``skipped`` crops are released first (they passed them over). New
    claims stop at ``TRAPWISE_CLAIMS_PER_USER`` live claims of ``user`` in ``round_``, the ones
    held counted: a request for more gets fewer crops. One user's requests are serialised
    (``claims_user_lock``), so parallel requests cannot pass the cap either.

    In an event round each newly claimed crop brings the other crops of its capture event that
    ``user`` may be offered (``_events_expand``), claimed with it, so that one answer can label
    the whole event; at most ``limit`` crops are returned, the rest are held and come next.
    """
    now = timezone.now()
    skip = [int(c) for c in skipped]
    cap = settings.TRAPWISE_CLAIMS_PER_USER
    with transaction.atomic():
        claims_user_lock(user_id=user.pk)
        if skip:
            CropClaim.objects.filter(round=round_, user=user, crop_id__in=skip).delete()
        # Every crop user holds and may still label: what counts against the cap.
        held = list(
            CropClaim.objects.filter(round=round_, user=user, expires_at__gt=now)
            .exclude(_crop_voted_by(user))
            .exclude(crop_settled())
            .order_by("-id")
            .values_list("crop_id", flat=True)
        )
        mine = held[:limit]
        room = min(limit - len(mine), cap - len(held))
        new: list[int] = []
        if room > 0:
            new = _claimable(round_=round_, user=user, now=now, exclude=[*skip, *held], limit=room)
        if round_.unit == RoundUnit.EVENT and new:
            new = _events_expand(round_=round_, user=user, now=now, new=new, exclude=[*skip, *held])
        claims_create(round_=round_, user=user, crop_ids=[*mine, *new])
        # The machine label each audit crop's label will test: the live one, at first offer.
        audit_predictions_record(round_=round_, crop_ids=new)
    crops = Crop.objects.filter(pk__in=[*mine, *new]).select_related("image", "detection")
    by_id = {c.pk: c for c in crops}
    return [by_id[c] for c in [*mine, *new] if c in by_id][: max(limit, 1)]


def _events_expand(
    *, round_: Round, user: User, now: datetime, new: list[int], exclude: list[int]
) -> list[int]:
    """``new`` crops with the other crops of their capture events in ``round_`` that ``user``
    may be offered, each event's crops together in pick order: an event round serves whole
    events (the claims cap counts the first crop of each; an event may pass it)."""
    out: list[int] = []
    for crop in Crop.objects.filter(pk__in=new).select_related("image"):
        if crop.pk in out:
            continue
        event = round_event_crop_ids(round_=round_, crop=crop)
        # Locked and checked again as in ``_claimable``: a crop another volunteer is claiming
        # now is skipped, and one they claimed since the lock's snapshot is dropped.
        locked = list(
            _open_items(round_=round_, user=user, now=now, exclude=[*exclude, *out])
            .filter(crop_id__in=event)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("crop_id", flat=True)
        )
        free = set(
            _open_items(round_=round_, user=user, now=now, exclude=[*exclude, *out])
            .filter(crop_id__in=locked)
            .values_list("crop_id", flat=True)
        )
        out += [crop.pk] + [c for c in event if c in free and c != crop.pk]
    return out


def event_claim_next(*, round_: Round, user: User, skipped: Collection[int] = ()) -> list[Crop]:
    """The crops of the next capture event of ``round_`` for ``user``, all claimed together
    (``crop_claim_next`` claims an event round's crops event by event): the event's crops
    ``user`` holds now and may vote on, in pick order; [] when nothing is left.

    ``skipped`` are crop ids passed over (their claims are released first)."""
    first = crop_claim_next(round_=round_, user=user, skipped=skipped, limit=1)
    if not first:
        return []
    event = round_event_crop_ids(round_=round_, crop=first[0])
    held = crop_claims_held(round_=round_, user=user, crop_ids=event)
    ids = [first[0].pk] + [c for c in event if c in held and c != first[0].pk]
    crops = Crop.objects.filter(pk__in=ids).select_related("image", "detection")
    by_id = {c.pk: c for c in crops}
    return [by_id[c] for c in ids if c in by_id]


def crop_claims_held(*, round_: Round, user: User, crop_ids: Collection[int]) -> set[int]:
    """The crops of ``crop_ids`` that ``user`` may vote on now (one query).

    A crop of ``round_`` that ``user`` holds a claim on, not settled and not voted on by
    them; the claim live, or expired but nobody took the crop meanwhile (``crop_claim_next``
    would hand it to ``user`` again now): a volunteer slower than ``TRAPWISE_CLAIM_SECONDS``
    keeps their vote unless the crop went to someone else.
    """
    now = timezone.now()
    claim = CropClaim.objects.filter(round=round_, user=user, crop=OuterRef("crop_id"))
    return set(
        _items_counted(round_=round_, user=user, now=now, exclude=[])
        .filter(crop_id__in=list(crop_ids))
        .annotate(held=Exists(claim), live=Exists(claim.filter(expires_at__gt=now)))
        .filter(held=True)
        .filter(Q(live=True) | _room_left(round_))
        .values_list("crop_id", flat=True)
    )


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
    return _items_counted(round_=round_, user=user, now=now, exclude=exclude).filter(
        _room_left(round_)
    )


def _room_left(round_: Round) -> Q:
    """For ``_items_counted``: the crop's votes and other volunteers' live claims are fewer
    than the votes per crop, so it may be claimed."""
    return Q(n_votes__lt=round_.project.votes_per_crop - F("n_claims"))


def _items_counted(
    *, round_: Round, user: User, now: datetime, exclude: list[int]
) -> QuerySet[RoundCrop]:
    """The round crops of ``round_`` neither settled nor voted on by ``user``, with their
    votes (``n_votes``) and other volunteers' live claims at ``now`` (``n_claims``)."""
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
