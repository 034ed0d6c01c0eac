"""The project, image, invitation and outbox row locks, named once. The order they are taken in
with the other locks is documented in ``activelearn.services.locks``, which re-exports the
project lock."""

from __future__ import annotations

from datetime import datetime

from projects.models import Image, Invitation, Project, QueuedTask


def project_lock(*, project_id: int) -> None:
    """Lock the project row until the transaction ends: one writer at a time for the writes
    that must not interleave (queueing fine-tuning, the admin's species and attribute edits)."""
    Project.objects.select_for_update().filter(pk=project_id).first()


def image_lock(*, image_id: int) -> Image:
    """Lock the image row until the transaction ends and return it (with its project): one box
    change of an image at a time, so two people redrawing the same box cannot both drop it and
    leave two replacements."""
    return Image.objects.select_for_update().select_related("project").get(pk=image_id)


def invitation_lock(*, token_hash: str) -> Invitation | None:
    """Lock the invitation with ``token_hash`` until the transaction ends and return it (with
    its project), or None when there is none: one acceptance of an invitation at a time, so
    that a single-use link cannot make two members. Taken first and alone by
    ``projects.invitations.invitation_accept``, which then writes only the membership and the
    invitation's use; no other service locks an invitation, so it takes part in no cycle."""
    return (
        Invitation.objects.select_for_update()
        .select_related("project")
        .filter(token_hash=token_hash)
        .first()
    )


def invitation_lock_by_id(*, project_id: int, invitation_id: int) -> Invitation | None:
    """Lock the invitation ``invitation_id`` of project ``project_id`` (None when it has no
    such invitation), for revoking it: taken alone, like ``invitation_lock``."""
    return (
        Invitation.objects.select_for_update()
        .filter(project_id=project_id, pk=invitation_id)
        .first()
    )


def queued_task_claim(
    *,
    record_id: int,
    published_at: datetime | None,
    started_at: datetime | None,
    worker: str,
    attempts: int,
) -> bool:
    """Lock the outbox record ``record_id`` until the transaction ends, if it still holds the
    values its caller read (it was found lost or waiting with these), and mark it waiting:
    not published, not started. Returns whether it did; False when another worker changed it
    first (queued it again, or it started meanwhile).

    One conditional UPDATE, so two workers requeuing at once cannot both claim the record: on
    PostgreSQL the second waits for the first's row lock and then finds the values changed
    (the first published it, or counted a failed attempt); on SQLite writers are serialised.
    Taken first and alone by ``projects.taskqueue.tasks_requeue``, which then writes only this
    record; held while the task is handed to the broker (about a second at most), during
    which the task's own worker marking it started waits. A requeuer that dies meanwhile rolls
    back and leaves the record as it was, to be found again."""
    claimed = QueuedTask.objects.filter(
        pk=record_id,
        published_at=published_at,
        started_at=started_at,
        worker=worker,
        attempts=attempts,
    ).update(published_at=None, started_at=None, worker="")
    return claimed == 1
