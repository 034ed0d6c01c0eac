"""Celery tasks of the detector layer: each takes primary keys and calls one service."""

from __future__ import annotations

from celery import shared_task

from detector.import_jobs import IMPORT_TASK, image_import_run


@shared_task(
    name=IMPORT_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=12 * 3600,
    soft_time_limit=12 * 3600 - 300,
)
def image_import_task(import_id: int) -> int:
    """Run a browser import; a redelivered message skips what was imported already."""
    return image_import_run(import_id=import_id).job.done
