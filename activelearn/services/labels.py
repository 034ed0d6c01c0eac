"""Labels: volunteers' votes and admins' reviews, and the consensus they make per crop.

A vote is taken only on a crop its user was served and holds (``crop_claims_held``);
``labels_import`` stores trusted labels (ground truth, imports) without that check.

Every write of a label recomputes its crops' consensus (``consensus_update``) in the same
transaction; when that settles the last crop of the open round, the round closes and a retrain
is queued (``round_close_if_done``). Labels are never deleted: a changed vote adds a row (the
user's newest counts), an undo marks the row undone.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from activelearn.consensus import attributes_decide, consensus_decide
from activelearn.models import Consensus, CropClaim, Label, LabelKind, LabelOrigin, Round
from activelearn.selectors import round_open_get
from activelearn.selectors_events import crop_events_get
from activelearn.services.claims import claims_create, crop_claims_held
from activelearn.services.errors import LabelError
from activelearn.services.finetune import embedding_finetune_queue
from activelearn.services.locks import crops_lock, label_latest_lock, round_lock
from activelearn.services.retrain import classifier_retrain_queue
from activelearn.services.rounds import SETTLED, crop_settled
from detector.models import Crop
from projects.models import Attribute, Project, Species
from projects.selectors_taxonomy import species_ancestors

__all__ = [
    "CONSENSUS_CHUNK",
    "SECONDS_MAX",
    "SUGGESTIONS_MAX",
    "consensus_update",
    "label_review",
    "label_submit",
    "label_undo",
    "labels_event_submit",
    "labels_import",
    "labels_submit",
    "round_close_if_done",
]

# Crops per batch when consensus rows are recomputed.
CONSENSUS_CHUNK = 2000


def label_submit(
    *,
    project: Project,
    crop_id: int,
    user: User,
    kind: str,
    species_id: int | None = None,
    idempotency_key: str = "",
    attributes: Sequence[int] | None = None,
    suggestions: Sequence[int] | None = None,
    suggestion_rank: int | None = None,
    seconds: float | None = None,
) -> Label:
    """Store a volunteer's vote on a crop and update the crop's consensus.

    Only a crop ``user`` was served and still holds is theirs to vote on (see
    ``labels_submit``). A volunteer's newer label on the same crop replaces their earlier vote
    (the row stays). When the vote decides the last crop of the open round, the round closes
    and a retrain is queued. Raises LabelError (and stores nothing) for a crop of another
    project or not held by ``user``, an unknown kind or a species not in the project. With an
    ``idempotency_key``, a repeat of the same submission returns the stored label and stores
    nothing (see ``labels_submit``). ``attributes``: the ids of the project's attributes ticked
    yes; ``suggestions``, ``suggestion_rank``, ``seconds``: what the page showed and how long
    the volunteer looked (see ``labels_submit``).
    """
    return labels_submit(
        project=project,
        crop_ids=[crop_id],
        user=user,
        kind=kind,
        species_id=species_id,
        idempotency_key=idempotency_key,
        attributes=attributes,
        suggestions=suggestions,
        suggestion_rank=suggestion_rank,
        seconds=seconds,
    )[0]


def labels_submit(
    *,
    project: Project,
    crop_ids: Sequence[int],
    user: User,
    kind: str,
    species_id: int | None = None,
    idempotency_key: str = "",
    attributes: Sequence[int] | None = None,
    suggestions: Sequence[int] | None = None,
    suggestion_rank: int | None = None,
    seconds: float | None = None,
) -> list[Label]:
    """Store the same vote on several crops at once (grid mode), all or nothing.

    Same contract as ``label_submit``. Votes are taken only on crops of the project's open
    round that ``user`` holds a claim on (``crop_claims_held``: served to them by
    ``crop_claim_next``, the grid page included, or given back by ``label_undo``; an expired
    claim still counts while nobody else took the crop). Any other crop, decided ones and
    those of closed rounds among them, is LabelError and nothing is stored: admins decide
    crops through ``label_review``. A vote uses up the claim.

    ``idempotency_key`` (up to 200 characters, chosen by the client per submission): when this
    user already submitted it in this project, the labels stored then are returned and nothing
    is written (the claim they used up is not needed), also when two copies race (the
    database's unique constraint decides). Reusing a key for a different label raises
    LabelError.

    ``attributes``: ids of the project's attributes ticked yes (behaviours), stored on every
    label; None when not recorded, [] for all no. Only species labels carry them (an empty
    crop has no behaviour): for other kinds, [] and None store None and any id is refused.
    LabelError (nothing stored) for an id that is not one of the project's attributes.

    What the page showed, stored on every label (each None: not recorded): ``suggestions``,
    the species ids suggested in order (at most ``SUGGESTIONS_MAX``, distinct, all the
    project's); ``suggestion_rank``, the 1-based place in it of the button used (None: an
    answer not taken from the list), which must name the answer's species; ``seconds``, the
    time from showing the crop to the answer, a finite number from 0 to ``SECONDS_MAX`` (a
    grid's page time shared out among its crops). Anything else is LabelError, nothing stored.
    A replayed submission (same idempotency key) is not compared on these: a retry measures
    a different time.
    """
    return _labels_store(
        project=project,
        crop_ids=crop_ids,
        user=user,
        kind=kind,
        species_id=species_id,
        idempotency_key=idempotency_key,
        attributes=attributes,
        vote=True,
        shown=_label_shown(
            project=project,
            kind=kind,
            species_id=species_id,
            suggestions=suggestions,
            suggestion_rank=suggestion_rank,
            seconds=seconds,
        ),
    )


def labels_import(
    *,
    project: Project,
    crop_ids: Sequence[int],
    user: User,
    kind: str,
    species_id: int | None = None,
    attributes: Sequence[int] | None = None,
    origin: str | None = None,
) -> list[Label]:
    """Store labels that did not come through the labelling queue, as ``user``'s votes
    (``origin``: how they came, e.g. ``LabelOrigin.IMPORTED``; a vote by default).

    For trusted code only: ground truth fed in by tests, benchmarks and simulations, labels
    imported by an operator. No claim is needed, so any crop of the project can be labelled;
    everything else is as ``labels_submit`` (validation, consensus, closing the round). Never
    call it with a request's input: the web pages and the API go through ``labels_submit``
    (tests/test_architecture.py checks that ``annotator`` never names this function).
    """
    return _labels_store(
        project=project,
        crop_ids=crop_ids,
        user=user,
        kind=kind,
        species_id=species_id,
        attributes=attributes,
        origin=origin,
    )


def _labels_store(
    *,
    project: Project,
    crop_ids: Sequence[int],
    user: User,
    kind: str,
    species_id: int | None = None,
    is_review: bool = False,
    idempotency_key: str = "",
    attributes: Sequence[int] | None = None,
    vote: bool = False,
    shown: _Shown | None = None,
    origin: str | None = None,
    decision: uuid.UUID | None = None,
) -> list[Label]:
    """``labels_submit`` (``vote``: only on crops ``user`` holds), ``labels_import`` and
    ``label_review`` (``is_review``); ``origin`` and ``decision`` as the labels record them
    (default: a review or a vote, no decision)."""
    unique_ids = list(dict.fromkeys(int(c) for c in crop_ids))
    if not unique_ids:
        raise LabelError("no crop given")
    if len(idempotency_key) > 200:
        raise LabelError("the idempotency key is longer than 200 characters")
    ticked = _label_attributes(project=project, kind=kind, attributes=attributes)

    def replayed() -> list[Label] | None:
        if not idempotency_key:
            return None
        return _labels_replayed(
            project=project,
            user=user,
            key=idempotency_key,
            crop_ids=unique_ids,
            kind=kind,
            species_id=species_id,
            attributes=ticked,
        )

    replay = replayed()
    if replay is not None:
        return replay
    crops = {c.pk: c for c in Crop.objects.filter(project=project, pk__in=unique_ids)}
    missing = [c for c in unique_ids if c not in crops]
    if missing:
        raise LabelError(
            f"crop {', '.join(map(str, missing))} is not part of project {project.name!r}"
        )
    species = _label_species(project=project, kind=kind, species_id=species_id)
    with transaction.atomic():
        open_round = round_open_get(project=project)
        if vote:
            # A vote's crops are all held by its user, so all are in the open round.
            in_round = (
                crop_claims_held(round_=open_round, user=user, crop_ids=unique_ids)
                if open_round is not None
                else set()
            )
            refused = [c for c in unique_ids if c not in in_round]
            if refused:
                # A copy of this submission may have used up the claims since we looked.
                replay = replayed()
                if replay is not None:
                    return replay
                raise LabelError(
                    f"crop {', '.join(map(str, refused))} is not yours to label now: ask for "
                    "the next crop (you can label only the crops of the open round served to "
                    "you and not yet decided)"
                )
        else:
            in_round = (
                set(
                    open_round.items.filter(crop_id__in=unique_ids).values_list(
                        "crop_id", flat=True
                    )
                )
                if open_round is not None
                else set()
            )
        new = [
            Label(
                project=project,
                crop=crops[crop_id],
                user=user,
                kind=kind,
                species=species,
                round=open_round if crop_id in in_round else None,
                is_review=is_review,
                origin=origin or (LabelOrigin.REVIEW if is_review else LabelOrigin.VOTE),
                decision=decision,
                client_key=f"{idempotency_key}:{crop_id}" if idempotency_key else "",
                attributes=ticked,
                suggestions=shown.suggestions if shown else None,
                suggestion_rank=shown.rank if shown else None,
                seconds=shown.seconds if shown else None,
            )
            for crop_id in unique_ids
        ]
        try:
            with transaction.atomic():  # a savepoint: a lost race must not spoil the outer one
                labels = Label.objects.bulk_create(new)
        except IntegrityError:
            # The same key was stored by a concurrent copy of this submission since we looked.
            replay = replayed()
            if replay is None:
                raise
            return replay
        settled = consensus_update(project=project, crop_ids=unique_ids)
        if open_round is not None:
            CropClaim.objects.filter(round=open_round, user=user, crop_id__in=unique_ids).delete()
            # The round can be complete only if these crops are settled: a vote that leaves
            # them waiting for more votes skips the round's lock (measured by `make loadtest`).
            if in_round & settled:
                round_close_if_done(round_=open_round)
        embedding_finetune_queue(project=project)
    return labels


def _labels_replayed(
    *,
    project: Project,
    user: User,
    key: str,
    crop_ids: list[int],
    kind: str,
    species_id: int | None,
    attributes: list[int] | None = None,
) -> list[Label] | None:
    """The labels ``user`` stored under ``key`` in ``project`` for ``crop_ids``, or None if
    none exists. Another project's labels are never replayed: a crop of theirs is refused."""
    keys = {f"{key}:{crop_id}": crop_id for crop_id in crop_ids}
    stored = {
        label.crop_id: label
        for label in Label.objects.filter(project=project, user=user, client_key__in=list(keys))
    }
    if not stored:
        return None
    same = set(stored) == set(crop_ids) and all(
        label.kind == kind
        and label.species_id == species_id
        and _attributes_same(label.attributes, attributes)
        for label in stored.values()
    )
    if not same:
        raise LabelError(f"the idempotency key {key!r} was already used for a different label")
    return [stored[crop_id] for crop_id in crop_ids]


def label_review(
    *,
    project: Project,
    crop_id: int,
    user: User,
    kind: str,
    species_id: int | None = None,
    attributes: Sequence[int] | None = None,
) -> Label:
    """An admin decides a crop the volunteers disagreed on (or overrules a decided one).

    With ``attributes`` recorded, the admin's attributes decide the crop's too.
    """
    return _labels_store(
        project=project,
        crop_ids=[crop_id],
        user=user,
        kind=kind,
        species_id=species_id,
        is_review=True,
        attributes=attributes,
    )[0]


def label_undo(*, project: Project, user: User) -> Label:
    """Withdraw ``user``'s latest label in ``project``: the row stays, marked undone.

    A label made by one decision on several crops (an event's answer) is undone with every
    label of that decision. The crops' consensus is recomputed without them. While their round
    is open the crops go back to the queue, claimed by ``user`` so that the labelling page
    shows them next. Returns the latest label. Raises LabelError when there is nothing to undo.
    """
    with transaction.atomic():
        label = label_latest_lock(project_id=project.pk, user_id=user.pk)
        if label is None:
            raise LabelError("nothing to undo: you have no label in this project")
        now = timezone.now()
        crop_ids = [label.crop_id]
        if label.decision is not None:
            same = Label.objects.filter(
                project=project, user=user, decision=label.decision, undone_at__isnull=True
            )
            crop_ids = sorted(set(same.values_list("crop_id", flat=True)) | {label.crop_id})
            same.exclude(pk=label.pk).update(undone_at=now)
        label.undone_at = now
        label.save(update_fields=["undone_at"])
        consensus_update(project=project, crop_ids=crop_ids)
        open_round = round_open_get(project=project)
        if open_round is not None:
            in_round = list(
                open_round.items.filter(crop_id__in=crop_ids)
                .order_by("-position")
                .values_list("crop_id", flat=True)
            )
            # Last position first: the first crop gets the newest claim, offered first.
            claims_create(round_=open_round, user=user, crop_ids=in_round[::-1])
    return label


def consensus_update(*, project: Project, crop_ids: Iterable[int]) -> set[int]:
    """Recompute the Consensus rows of ``crop_ids`` from their labels.

    Each user's latest label not undone is one vote; the latest review label, if any, decides.
    Crops left without a vote lose their row. Works in chunks, so it also rebuilds a whole
    project (a few queries per 2,000 crops). Returns the crops of ``crop_ids`` now settled
    (done, or waiting for an admin's review). Inside a transaction each chunk's crop rows are
    locked first (``locks.crops_lock``), chunks in ascending id order.
    """
    ids = sorted({int(c) for c in crop_ids})
    settled: set[int] = set()
    # A vote for a higher taxon agrees with the species below it (``consensus_decide``).
    ancestors = species_ancestors(project_id=project.pk) if ids else {}
    for start in range(0, len(ids), CONSENSUS_CHUNK):
        chunk = ids[start : start + CONSENSUS_CHUNK]
        crops_lock(crop_ids=chunk)
        settled |= _consensus_chunk(project=project, crop_ids=chunk, ancestors=ancestors)
    return settled


def _consensus_chunk(
    *, project: Project, crop_ids: list[int], ancestors: dict[int, tuple[int, ...]]
) -> set[int]:
    votes: dict[int, dict[int, Label]] = {c: {} for c in crop_ids}
    reviews: dict[int, Label] = {}
    newest: dict[int, Label] = {}
    labels = Label.objects.filter(crop_id__in=crop_ids, undone_at__isnull=True).order_by("id")
    fields = ("id", "crop_id", "user_id", "kind", "species_id", "is_review", "attributes")
    for label in labels.only(*fields):
        if label.is_review:
            reviews[label.crop_id] = label
        else:
            # Re-inserting moves a changed vote to the end: votes stay in casting order.
            votes[label.crop_id].pop(label.user_id, None)
            votes[label.crop_id][label.user_id] = label
        newest[label.crop_id] = label
    existing = {c.crop_id: c for c in Consensus.objects.filter(crop_id__in=crop_ids)}
    create: list[Consensus] = []
    update: list[Consensus] = []
    for crop_id in crop_ids:
        if crop_id not in newest:
            continue
        review = reviews.get(crop_id)
        result = consensus_decide(
            [(v.kind, v.species_id) for v in votes[crop_id].values()],
            votes_needed=project.votes_per_crop,
            threshold=project.agreement_threshold,
            review=(review.kind, review.species_id) if review else None,
            ancestors=ancestors,
        )
        row = existing.get(crop_id) or Consensus(project=project, crop_id=crop_id)
        row.status, row.kind, row.species_id = result.status, result.kind, result.species_id
        row.votes, row.agreement, row.reviewed = result.votes, result.agreement, review is not None
        row.label = newest[crop_id]
        row.attributes = _consensus_attributes(
            kind=result.kind, votes=votes[crop_id].values(), review=review
        )
        (update if row.pk else create).append(row)
    Consensus.objects.filter(crop_id__in=[c for c in existing if c not in newest]).delete()
    Consensus.objects.bulk_create(create)
    Consensus.objects.bulk_update(
        update,
        ["status", "kind", "species", "votes", "agreement", "reviewed", "label", "attributes"],
    )
    return {row.crop_id for row in (*create, *update) if row.status in SETTLED}


def _consensus_attributes(
    *, kind: str, votes: Iterable[Label], review: Label | None
) -> list[int] | None:
    """The crop's attributes by ``attributes_decide``: None unless it is decided an animal."""
    if kind != LabelKind.SPECIES:
        return None
    return attributes_decide(
        [v.attributes for v in votes], review=review.attributes if review is not None else None
    )


def _label_species(*, project: Project, kind: str, species_id: int | None) -> Species | None:
    if kind not in LabelKind.values:
        raise LabelError(f"unknown label kind {kind!r}")
    if kind != LabelKind.SPECIES:
        return None
    if species_id is None:
        raise LabelError("a species label needs a species")
    species = Species.objects.filter(project=project, pk=species_id).first()
    if species is None:
        raise LabelError(f"species {species_id} is not in project {project.name!r}")
    return species


# The longest suggestion list a label records (the pages show five).
SUGGESTIONS_MAX = 20
# The longest time a label records: a page left open over lunch is no measurement of effort
# (the pages cap what they send at this).
SECONDS_MAX = 3600.0


@dataclass(frozen=True)
class _Shown:
    suggestions: list[int] | None
    rank: int | None
    seconds: float | None


def _label_shown(
    *,
    project: Project,
    kind: str,
    species_id: int | None,
    suggestions: Sequence[int] | None,
    suggestion_rank: int | None,
    seconds: float | None,
) -> _Shown:
    """What the page showed, checked (see ``labels_submit``); LabelError when inconsistent."""
    ids = None if suggestions is None else [int(s) for s in suggestions]
    if ids is not None:
        if len(ids) > SUGGESTIONS_MAX:
            raise LabelError(f"at most {SUGGESTIONS_MAX} suggestions, not {len(ids)}")
        if len(set(ids)) != len(ids):
            raise LabelError("a species is suggested twice")
        # Ids beyond a bigint are no species (and must not reach the database).
        queried = [s for s in ids if 0 < s < 2**63]
        known = set(
            Species.objects.filter(project=project, pk__in=queried).values_list("pk", flat=True)
        )
        unknown = [s for s in ids if s not in known]
        if unknown:
            raise LabelError(
                f"suggested species {', '.join(map(str, unknown))} is not in project "
                f"{project.name!r}"
            )
    if suggestion_rank is not None:
        rank = int(suggestion_rank)
        if ids is None or not 1 <= rank <= len(ids):
            raise LabelError(
                f"suggestion rank {rank} is not a place in the {len(ids or [])} suggestions shown"
            )
        if kind != LabelKind.SPECIES or ids[rank - 1] != species_id:
            raise LabelError(f"suggestion {rank} is not the species of this label")
    if seconds is not None:
        seconds = float(seconds)
        if not (math.isfinite(seconds) and 0.0 <= seconds <= SECONDS_MAX):
            raise LabelError(f"seconds must be a number from 0 to {SECONDS_MAX:g}")
    return _Shown(ids, suggestion_rank, seconds)


def _label_attributes(
    *, project: Project, kind: str, attributes: Sequence[int] | None
) -> list[int] | None:
    """``attributes`` as sorted unique ids of ``project``'s attributes (None: not recorded).

    LabelError for ids of another project (or of none), and for any id on a label that is not
    a species: only an animal has a behaviour.
    """
    if attributes is None:
        return None
    ids = sorted({int(a) for a in attributes})
    if kind != LabelKind.SPECIES:
        if ids:
            raise LabelError(f"attributes are only for species labels, not for {kind!r}")
        return None
    known = set(Attribute.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True))
    unknown = [a for a in ids if a not in known]
    if unknown:
        raise LabelError(
            f"attribute {', '.join(map(str, unknown))} is not part of project {project.name!r}"
        )
    return ids


def _attributes_same(stored: list[int] | None, sent: list[int] | None) -> bool:
    if stored is None or sent is None:
        return stored is None and sent is None
    return sorted(stored) == sorted(sent)


def labels_event_submit(
    *,
    project: Project,
    crop_ids: Sequence[int],
    user: User,
    kind: str,
    species_id: int | None = None,
    idempotency_key: str = "",
    attributes: Sequence[int] | None = None,
) -> list[Label]:
    """One answer for a whole capture event: a vote on each of ``crop_ids`` (the event's crops
    the page showed), all or nothing, as ``labels_submit``.

    Every crop must belong to one capture event and be held by ``user`` (served together by
    ``crop_claim_next`` in an event round); LabelError otherwise, and nothing is stored. The
    labels record origin EVENT and share one decision id, so ``label_undo`` withdraws them
    together.
    """
    events = set(crop_events_get(project=project, crop_ids=crop_ids).values())
    if len(events) > 1:
        raise LabelError("these crops belong to different capture events: answer each event")
    return _labels_store(
        project=project,
        crop_ids=crop_ids,
        user=user,
        kind=kind,
        species_id=species_id,
        idempotency_key=idempotency_key,
        attributes=attributes,
        vote=True,
        origin=LabelOrigin.EVENT,
        decision=uuid.uuid4(),
    )


def round_close_if_done(*, round_: Round) -> None:
    """Close ``round_`` if every crop of it is settled, and queue a retrain; else do nothing.

    Call it inside the transaction that settled the crops, after their locks (``locks``
    order): it locks the round first, so that of two volunteers settling the round's last two
    crops at once, the second waits, then reads the first one's committed vote and closes it.
    """
    if not round_lock(round_id=round_.pk):
        return  # closed meanwhile
    if round_.items.exclude(crop_settled()).exists():
        return
    round_.status = Round.Status.CLOSED
    round_.closed_at = timezone.now()
    round_.save(update_fields=["status", "closed_at"])
    round_.claims.all().delete()
    classifier_retrain_queue(project_id=round_.project_id)
