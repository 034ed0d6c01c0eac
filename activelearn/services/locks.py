"""Every lock the active-learning services take, and the one order they take them in.

Locks, outermost first:

1. ``retrain_lock``: the project's retrain, a PostgreSQL session advisory lock. Taken by the
   retrain (``classifier_retrain``, also after fine-tuning) outside any transaction, before any
   row lock, and held across the short transactions that store the new classifier.
2. ``label_latest_lock``: the user's newest label, which ``label_undo`` withdraws before it
   recomputes that label's crop.
3. ``crops_lock``: crop rows, in ascending id order (``consensus_update`` locks chunk after
   chunk of sorted ids, so all of its locks are taken in ascending order). Every vote, review,
   undo and consensus recomputation goes through it.
4. ``round_lock``: the open round, when a settled crop may have been its last one
   (``round_close_if_done``, after the vote's crops).
5. ``project_lock``: the project row. Last in a vote: ``embedding_finetune_queue`` takes it only
   once fine-tuning is due (one queuer at a time). First and alone in the admin's project edits
   (the forced fine-tuning queue; species and attribute edits in ``projects.services``;
   merging species and removing attributes in ``activelearn.services.species``). Defined in
   ``projects.locks``, the ground app, so that ``projects.services`` can take it.

6. ``empty_check_lock``: one check of a detector-empty image, taken alone by
   ``empty_check_answer`` (the first answer holds). Drawing a sample of empties takes
   ``project_lock`` alone (one draw at a time per project).

7. ``image_lock`` (``projects.locks``): an image row, taken first by the box edits
   (``detector.services.box_draw``/``box_drop``), which then write that image's detections and
   crops. No vote or review locks an image, so a vote holding crops never waits for one.

8. ``invitation_lock`` (``projects.locks``): an invitation row, taken first and alone by
   ``projects.invitations.invitation_accept`` (which then writes only the new membership and the
   invitation's use) and by ``invitation_revoke``. Nothing else locks an invitation.

9. ``queued_task_claim`` (``projects.locks``): an outbox record (``QueuedTask``), locked by the
   conditional UPDATE that claims it for queueing again, taken first and alone by
   ``projects.taskqueue.tasks_requeue`` (a transaction per record, which then writes only that
   record) and held while the task is handed to the broker. A second worker requeuing the same
   record waits for it and then finds the record changed, so the task is published once.
   Nothing else locks an outbox record; ``task_started`` updating it waits at most that long.

Why this order cannot deadlock: two transactions deadlock only when each holds a lock the other
waits for. Each transaction here takes its locks in the order above, so whoever holds a later
lock never waits for an earlier one; among crops, the one holding the higher id never waits for
a lower one. The advisory lock is taken before any row lock and never from inside a
transaction, so no one holding a row lock waits for it.

Not in the order: the claim queue (``claims._claimable``) reads claimable round crops with
``SELECT ... FOR UPDATE SKIP LOCKED``: it skips rows others hold instead of waiting for them,
so it cannot take part in a deadlock. ``claims_user_lock``, a PostgreSQL transaction advisory
lock per user, is taken first in ``crop_claim_next`` and by nothing else: whoever holds it
waits at most for row locks of votes and undos, which never ask for it.

One known exception, kept as it was: admin edits that write the project row first and then
recompute consensus (``project_consensus_update`` updates the project row, and a plain UPDATE
locks it; ``species_merge`` in ``activelearn.services.species`` takes ``project_lock``) take the
project before crops. A vote due to queue fine-tuning at that very moment holds its crops and
asks for the project (or, at commit, for the project's foreign-key share lock: PostgreSQL checks
Django's deferred foreign keys then); PostgreSQL detects that cycle and aborts one of the two
transactions with an error, leaving nothing half-written.

Every function here but ``retrain_lock`` must run inside a transaction (``transaction.atomic``):
the row stays locked until it ends. On SQLite they lock nothing (it has no row locks and
serialises writers anyway).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.db import connection, transaction

from activelearn.models import EmptyCheck, Label, Round
from detector.models import Crop

# The project row lock lives on the ground floor, where the project edits take it too; it is
# named here with the others so that the order above covers it.
from projects.locks import project_lock

__all__ = [
    "CLAIMS_LOCK_KEY",
    "RETRAIN_LOCK_KEY",
    "claims_user_lock",
    "crops_lock",
    "empty_check_lock",
    "label_latest_lock",
    "project_lock",
    "retrain_lock",
    "round_lock",
]

# First key of the PostgreSQL advisory lock that lets one retrain per project run at a time
# (the second key is the project id).
RETRAIN_LOCK_KEY = 7201
# First key of the advisory lock that serialises one user's claim requests (the second key is
# the user id).
CLAIMS_LOCK_KEY = 7202


@contextmanager
def retrain_lock(*, project_id: int) -> Iterator[None]:
    """Hold the project's retrain lock (a PostgreSQL session advisory lock) for the block.

    Two workers retraining one project at once would both write ``v<n>`` files and race for the
    version number; the second now waits, then finds nothing new and returns the first one's
    classifier. A no-op elsewhere (SQLite runs one worker). Take it outside any transaction.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [RETRAIN_LOCK_KEY, project_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RETRAIN_LOCK_KEY, project_id])


def claims_user_lock(*, user_id: int) -> None:
    """Hold the user's claim lock until the transaction ends (PostgreSQL; a no-op elsewhere).

    The cap on a user's live claims is checked by counting them, then claiming more: two
    requests of one user at the same moment would each count the claims before the other's
    and together pass the cap. With it the second waits, then counts the first one's claims.
    """
    if connection.vendor == "postgresql" and transaction.get_connection().in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [CLAIMS_LOCK_KEY, user_id])


def label_latest_lock(*, project_id: int, user_id: int) -> Label | None:
    """Lock and return the user's newest label of the project that is not undone (None if
    there is none): two undos in a row must withdraw two different labels."""
    return (
        Label.objects.select_for_update()
        .filter(project_id=project_id, user_id=user_id, undone_at__isnull=True)
        .order_by("-id")
        .first()
    )


def crops_lock(*, crop_ids: Sequence[int]) -> None:
    """Lock the crop rows (sorted ids, so two writers never deadlock) until the transaction ends.

    Two volunteers voting on one crop at the same moment would otherwise each count only their
    own vote and both try to create the crop's Consensus row: the second waits here instead and
    then reads the first one's committed vote. A no-op outside PostgreSQL (SQLite serialises
    writers anyway) and outside a transaction.
    """
    if connection.features.has_select_for_update and transaction.get_connection().in_atomic_block:
        list(Crop.objects.select_for_update().filter(pk__in=crop_ids).order_by("pk").values("pk"))


def round_lock(*, round_id: int) -> bool:
    """Lock the round row if the round is still open; returns whether it is (False: it was
    closed meanwhile, and nothing is locked).

    Two volunteers settling a round's last two crops at once each see the other's crop as open
    without the lock, and neither would close it. With it the second one waits, then reads the
    first one's committed vote.
    """
    locked = Round.objects.select_for_update().filter(pk=round_id, status=Round.Status.OPEN)
    return bool(list(locked.values_list("pk", flat=True)))


def empty_check_lock(*, project_id: int, check_id: int) -> EmptyCheck | None:
    """Lock one empty-image check of the project until the transaction ends and return it
    (None: no such check in this project). Two answers to one check queue here, so the second
    one sees the first and is refused."""
    return EmptyCheck.objects.select_for_update().filter(project_id=project_id, pk=check_id).first()
