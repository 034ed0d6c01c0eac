"""The Celery app. Tasks take primary keys and call one service."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun, worker_ready
from celery.worker.consumer import Consumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")

app = Celery("trapwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


@app.on_after_configure.connect
def _filesystem_broker_folders(sender: Celery, **kwargs: object) -> None:
    """The file-system transport expects its folders to exist; make them once configured."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


# --- The outbox (annotator/taskqueue.py): what was started, finished, or never queued -------

# Outbox records claimed by each running task, by task id, until it finishes.
_claimed: dict[str, list[int]] = {}


@task_prerun.connect
def _task_started(task_id: str, task: Task, args: tuple[object, ...], **kwargs: object) -> None:  # type: ignore[type-arg]
    from annotator.taskqueue import task_started

    worker = task.request.hostname or ""
    _claimed[task_id] = task_started(name=task.name, args=args, worker=worker)


@task_postrun.connect
def _task_finished(task_id: str, **kwargs: object) -> None:
    from annotator.taskqueue import task_finished

    ids = _claimed.pop(task_id, [])
    if ids:
        task_finished(ids=ids)


@worker_ready.connect
def _tasks_requeue_on_start(sender: Consumer, **kwargs: object) -> None:
    """Queue again what this worker's previous life left unfinished, and what never reached
    the broker; then keep looking for the latter (a broker outage ends while we run)."""
    from django.conf import settings

    _tasks_requeue(worker=sender.hostname, grace=timedelta(0))
    sender.timer.call_repeatedly(settings.TRAPWISE_TASK_REQUEUE_SECONDS, _tasks_requeue)


def _tasks_requeue(worker: str = "", grace: timedelta | None = None) -> None:
    from django.db import close_old_connections

    from annotator.taskqueue import REQUEUE_GRACE, tasks_requeue

    close_old_connections()  # a connection dropped by a database restart is replaced
    try:
        tasks_requeue(worker=worker, grace=REQUEUE_GRACE if grace is None else grace)
    except Exception:  # the database may be down; try again on the next tick
        logger.exception("could not queue the waiting tasks again")
