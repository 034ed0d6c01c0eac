"""The outbox's Celery signal handlers: which worker started a queued task, when it finished,
what a starting worker queues again (``projects.taskqueue``), and the worker's heartbeat
(``projects.heartbeats``), from ready to shutdown.

Connected once Django's apps are ready (``ProjectsConfig.ready``), in the web process and in
every worker alike; only the worker sends these signals.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from celery.worker.consumer import Consumer
from django.conf import settings
from django.db import close_old_connections

from projects.heartbeats import Heartbeat, worker_heartbeat_delete
from projects.taskqueue import REQUEUE_GRACE, task_finished, task_started, tasks_requeue

logger = logging.getLogger(__name__)

# Outbox records claimed by each running task, by task id, until it finishes.
_claimed: dict[str, list[int]] = {}

# This worker's heartbeat thread, from ready to shutdown; None elsewhere.
_heartbeat: Heartbeat | None = None


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
    the broker; then keep looking for the latter (a broker outage ends while we run) and for
    the tasks of workers that stopped beating. Starts this worker's heartbeat first, so that no
    other worker takes the tasks it is about to start for a lost worker's."""
    _heartbeat_start(sender)
    _tasks_requeue(worker=sender.hostname, grace=timedelta(0))
    sender.timer.call_repeatedly(settings.TRAPWISE_TASK_REQUEUE_SECONDS, _tasks_requeue)


def _tasks_requeue(worker: str = "", grace: timedelta | None = None) -> None:
    close_old_connections()  # a connection dropped by a database restart is replaced
    try:
        tasks_requeue(worker=worker, grace=REQUEUE_GRACE if grace is None else grace)
    except Exception:  # the database may be down; try again on the next tick
        logger.exception("could not queue the waiting tasks again")


def _heartbeat_start(consumer: Consumer) -> None:
    global _heartbeat
    queues = sorted(getattr(consumer.app.amqp.queues, "consume_from", None) or {})
    heartbeat = Heartbeat(
        node=consumer.hostname,
        interval=settings.TRAPWISE_WORKER_HEARTBEAT_SECONDS,
        queues=queues,
    )
    close_old_connections()
    heartbeat.beat()  # before the first task; a failure is logged and the thread tries again
    heartbeat.start()
    _heartbeat = heartbeat


@worker_shutdown.connect
def _heartbeat_stop(**kwargs: object) -> None:
    """A clean stop: no task runs any more (a warm shutdown let it finish), so the heartbeat
    goes; the others then need not wait ``TRAPWISE_WORKER_LOST_SECONDS`` to know."""
    global _heartbeat
    heartbeat, _heartbeat = _heartbeat, None
    if heartbeat is None:
        return
    heartbeat.stop()
    close_old_connections()
    try:
        worker_heartbeat_delete(node=heartbeat.node)
    except Exception:  # the database may be down; the row then just grows old
        logger.exception("could not delete the heartbeat of %s", heartbeat.node)
