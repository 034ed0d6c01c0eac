"""Celery tasks of the web app's layer: each takes primary keys and calls one service."""

from __future__ import annotations

from celery import shared_task

from annotator.export_jobs import EXPORT_TASK, EXPORT_TIME_LIMIT, export_file_run


@shared_task(
    name=EXPORT_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=EXPORT_TIME_LIMIT,
    soft_time_limit=EXPORT_TIME_LIMIT - 300,
)
def export_file_task(export_id: int) -> int:
    """Build an export file; a redelivered message finds it done (or published) and stops.
    Returns the file's size in bytes (0 when it was deleted meanwhile or failed)."""
    record = export_file_run(export_id=export_id)
    return record.size or 0 if record is not None else 0
