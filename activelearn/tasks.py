"""Celery tasks: each takes primary keys and calls one service."""

from __future__ import annotations

from celery import shared_task

from activelearn.services import (
    FINETUNE_TASK,
    RETRAIN_TASK,
    classifier_retrain,
    embedding_finetune_and_retrain,
)


@shared_task(
    name=RETRAIN_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=3600,
    soft_time_limit=3300,
)
def classifier_retrain_task(project_id: int) -> int | None:
    """Retrain the project's classifier and predict every crop; returns the version's pk."""
    classifier = classifier_retrain(project_id=project_id)
    return classifier.pk if classifier is not None else None


@shared_task(
    name=FINETUNE_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=24 * 3600,
    soft_time_limit=24 * 3600 - 300,
)
def embedding_finetune_task(version_id: int) -> int | None:
    """Fine-tune the embedding version, switch to it and retrain the classifier on it."""
    classifier = embedding_finetune_and_retrain(version_id=version_id)
    return classifier.pk if classifier is not None else None
