"""The outbox's Celery signal handlers: which worker started a queued task, when it finished,
and what a starting worker queues again (``projects.taskqueue``).

Connected once Django's apps are ready (``ProjectsConfig.ready``), in the web process and in
every worker alike; only the worker sends these signals.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task
from celery.signals import task_postrun, task_prerun, worker_ready
from celery.worker.consumer import Consumer
from django.conf import settings
from django.db import close_old_connections

from projects.taskqueue import REQUEUE_GRACE, task_finished, task_started, tasks_requeue

logger = logging.getLogger(__name__)

# Outbox records claimed by each running task, by task id, until it finishes.
_claimed: dict[str, list[int]] = {}


@task_prerun.connect
def _task_started(task_id: str, task: Task, args: tuple[object, ...], **kwargs: object) -> None:  # type: ignore[type-arg]
    worker = task.request.hostname or ""
    _claimed[task_id] = task_started(name=task.name, args=args, worker=worker)


@task_postrun.connect
def _task_finished(task_id: str, **kwargs: object) -> None:
    ids = _claimed.pop(task_id, [])
    if ids:
        task_finished(ids=ids)


@worker_ready.connect
def _tasks_requeue_on_start(sender: Consumer, **kwargs: object) -> None:
    """Queue again what this worker's previous life left unfinished, and what never reached
    the broker; then keep looking for the latter (a broker outage ends while we run)."""
    _tasks_requeue(worker=sender.hostname, grace=timedelta(0))
    sender.timer.call_repeatedly(settings.TRAPWISE_TASK_REQUEUE_SECONDS, _tasks_requeue)


def _tasks_requeue(worker: str = "", grace: timedelta | None = None) -> None:
    close_old_connections()  # a connection dropped by a database restart is replaced
    try:
        tasks_requeue(worker=worker, grace=REQUEUE_GRACE if grace is None else grace)
    except Exception:  # the database may be down; try again on the next tick
        logger.exception("could not queue the waiting tasks again")
