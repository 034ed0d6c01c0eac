"""Queueing Celery tasks so that none is lost: an outbox in the database (``QueuedTask``).

``task_enqueue`` records the task in the caller's transaction and hands it to the broker once
that commits. When the broker is down the request still succeeds (the label is stored, the round
closed), the task waits in the table and a warning is logged; nothing runs in the web process
instead. A worker queues such tasks again when it starts and then every
``TRAPWISE_TASK_REQUEUE_SECONDS`` (``tasks_requeue``, hooked up in ``projects/outbox_signals.py``).
On start it also queues again the tasks that its previous life (same node name) started and
never finished: a worker killed mid-task takes its message with it on the file-system broker,
and Redis gives it back only after its visibility timeout. A worker that never comes back (its
machine reclaimed or retired) is known by its heartbeat (``projects.heartbeats``): any other
worker's periodic pass queues again the tasks it had started once its last beat is
``TRAPWISE_WORKER_LOST_SECONDS`` old. Every task is safe to run twice, so a task that ends up
queued twice costs a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from celery import Task, current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from projects.locks import queued_task_claim
from projects.models import QueuedTask, WorkerHeartbeat

logger = logging.getLogger(__name__)

# A task not yet on the broker and younger than this is left alone by ``tasks_requeue``: its
# request is probably handing it over right now.
REQUEUE_GRACE = timedelta(seconds=10)


# Whether this process has imported the task modules yet (once is enough).
_discovered = False


def _tasks() -> Mapping[str, Task]:  # type: ignore[type-arg]
    """The current Celery app's tasks by name, with every app's ``tasks`` module imported.

    The app discovers task modules lazily (a worker imports them when it starts); a web process
    that queues a task by name must import them first, as the worker does.
    """
    global _discovered
    # A worker imported them when it started (``init_worker``). Importing again there would
    # set Django up again, whose logging configuration then writes into the worker's
    # redirected stderr and so silences every log line of the worker from then on.
    if not _discovered and not getattr(current_app.loader, "worker_initialized", False):
        current_app.loader.import_default_modules()
    _discovered = True
    return current_app.tasks


def task_enqueue(*, name: str, args: Sequence[int]) -> QueuedTask:
    """Record the task called ``name`` with ``args`` now; queue it once the transaction commits.

    Never raises for a broker that is down: the record stays and a worker queues it later.
    Raises KeyError, writing nothing, for a name the Celery app does not know.
    """
    if name not in _tasks():
        raise KeyError(f"no Celery task is called {name!r}")
    record = QueuedTask.objects.create(name=name, args=list(args))
    transaction.on_commit(lambda: _publish(record_id=record.pk, name=name, args=list(args)))
    return record


def _publish(*, record_id: int, name: str, args: list[int]) -> bool:
    """Hand the task to the broker; on failure note why on its record. Returns success.

    ``name`` is a task the current Celery app knows (``task_enqueue`` checked it).
    """
    task = _tasks()[name]
    try:
        task.delay(*args)
    except Exception as exc:  # the errors differ per transport: kombu's, redis', OSError
        logger.warning(
            "could not queue %s%s (%s: %s); it is kept and queued again when the broker is back",
            name,
            tuple(args),
            type(exc).__name__,
            exc,
        )
        QueuedTask.objects.filter(pk=record_id).update(
            attempts=F("attempts") + 1, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return False
    QueuedTask.objects.filter(pk=record_id).update(
        published_at=timezone.now(), attempts=F("attempts") + 1, error=""
    )
    return True


def tasks_requeue(
    *,
    worker: str = "",
    grace: timedelta = REQUEUE_GRACE,
    lost_after: timedelta | None = None,
) -> int:
    """Queue again the tasks that never reached the broker (recorded more than ``grace`` ago);
    the tasks started by a worker that is gone (``_worker_lost``, its heartbeat older than
    ``lost_after``, by default ``TRAPWISE_WORKER_LOST_SECONDS``); and, with ``worker`` (a
    Celery node name, when that worker starts), the tasks it started in an earlier life and
    never finished. Never a task whose worker beats within ``lost_after``, and each record
    once however many workers call this at the same moment (``queued_task_claim``). Stops at
    the first broker error (it is down, so the rest would fail too); returns the number queued.
    """
    now = timezone.now()
    if lost_after is None:
        lost_after = timedelta(seconds=settings.TRAPWISE_WORKER_LOST_SECONDS)
    lost = Q(published_at__isnull=True, created_at__lte=now - grace) | _worker_lost(
        before=now - lost_after
    )
    if worker:
        lost |= Q(worker=worker, started_at__isnull=False)
    queued = 0
    for record in QueuedTask.objects.filter(lost).order_by("id"):
        if record.name not in _tasks():
            logger.error("queued task %s is unknown to this worker; left as it is", record)
            continue
        with transaction.atomic():
            if not queued_task_claim(
                record_id=record.pk,
                published_at=record.published_at,
                started_at=record.started_at,
                worker=record.worker,
                attempts=record.attempts,
            ):
                continue  # another worker queued it again, or it started, since we read it
            if not _publish(record_id=record.pk, name=record.name, args=list(record.args)):
                break
        if record.worker:
            logger.warning("queued %s again, left unfinished by %s", record, record.worker)
        else:
            logger.info("queued %s again", record)
        queued += 1
    return queued


def _worker_lost(*, before: datetime) -> Q:
    """Records started by a worker that is gone: no heartbeat since ``before``, whether its row
    is older (it died or was cut off from the database) or missing (it shut down, or ran
    before heartbeats existed; then only tasks started before ``before``, so that a worker
    writing its first beat right now keeps what it started).

    Only Celery node names ("name@host"): a task run in the foreground (``task_run``) is
    marked with the bare host name and belongs to a command still running, not to a worker.
    """
    beats = WorkerHeartbeat.objects.filter(node=OuterRef("worker"))
    return (
        Q(started_at__isnull=False, worker__contains="@")
        & ~Exists(beats.filter(seen_at__gte=before))
        & (Exists(beats) | Q(started_at__lt=before))
    )


def task_started(*, name: str, args: Sequence[object], worker: str) -> list[int]:
    """Mark the records of ``name(*args)`` as run by ``worker``; returns their ids.

    Taken over from whichever worker had them: a task redelivered after its worker died.
    """
    wanted = list(args)
    ids = [
        pk
        for pk, stored in QueuedTask.objects.filter(name=name).values_list("pk", "args")
        if stored == wanted
    ]
    if ids:
        QueuedTask.objects.filter(pk__in=ids).update(started_at=timezone.now(), worker=worker)
    return ids


def task_finished(*, ids: Sequence[int]) -> None:
    """Forget the records ``task_started`` returned: the task ran (or failed for good)."""
    QueuedTask.objects.filter(pk__in=list(ids)).delete()


def task_run(*, name: str, args: Sequence[int]) -> object:
    """Run the task called ``name`` here and now, in this process, and return its result.

    For commands that run a job in the foreground (``detect``) when the task's module lives in
    an app above the caller's: the task is found by name, as the outbox finds it. Nothing goes
    through the broker or the outbox; the task's exception, if any, is raised here.
    """
    tasks = _tasks()
    if name not in tasks:
        raise KeyError(f"no Celery task is called {name!r}")
    return tasks[name].apply(args=tuple(args), throw=True).get()
