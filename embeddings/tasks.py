"""Celery tasks of the pipeline from images to embedded crops: each takes primary keys and
calls one service."""

from __future__ import annotations

from celery import shared_task

from detector.jobs import DETECTION_TASK
from embeddings.pipeline import (
    CROPS_EMBED_TASK,
    CROPS_REFRESH_TASK,
    detection_job_run_and_embed,
    project_crops_embed,
    project_crops_refresh,
)


@shared_task(
    name=DETECTION_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=24 * 3600,
    soft_time_limit=24 * 3600 - 300,
)
def detection_job_task(job_id: int) -> int:
    """Run a detection job and embed its crops; a redelivered message resumes it."""
    return detection_job_run_and_embed(job_id=job_id).done


@shared_task(
    name=CROPS_REFRESH_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=12 * 3600,
    soft_time_limit=12 * 3600 - 300,
)
def project_crops_refresh_task(project_id: int) -> int:
    """Re-derive crops after a threshold change; returns the number of crops created."""
    return project_crops_refresh(project_id=project_id).created


@shared_task(
    name=CROPS_EMBED_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=12 * 3600,
    soft_time_limit=12 * 3600 - 300,
)
def project_crops_embed_task(project_id: int) -> int | None:
    """Embed the crops a person's boxes added; returns the embedding version's number."""
    return project_crops_embed(project_id=project_id)
