"""Fine-tuning the embedding on the volunteers' labels, then retraining on it.

Every label submission asks ``embedding_finetune_queue`` whether ``finetune_interval`` new species
labels have arrived since the current embedding version (the project's ``finetune_every``, or,
left empty, an interval that grows with the project's crops); if so, a new version is created and
its task queued by name (``FINETUNE_TASK``, through the outbox: ``activelearn.tasks`` imports
this package, so this package never imports it). The task fine-tunes the embedding, switches
the project to it, and retrains the classifier on it (``embedding_finetune_and_retrain``). At
most one version is fine-tuned at a time.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.db.models import Max, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from activelearn.models import ClassifierVersion, Label, LabelKind
from activelearn.selectors import labels_for_training
from activelearn.services.errors import FinetuneError
from activelearn.services.locks import project_lock
from activelearn.services.retrain import classifier_retrain
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_version_current
from embeddings.services import embedding_finetune_create, embedding_finetune_run
from projects.models import Project
from projects.taskqueue import task_enqueue

__all__ = [
    "FINETUNE_ABANDONED_AFTER",
    "FINETUNE_TASK",
    "embedding_finetune_and_retrain",
    "embedding_finetune_queue",
    "finetune_interval",
]

# The Celery task that runs ``embedding_finetune_and_retrain``, by name (see above).
FINETUNE_TASK = "activelearn.tasks.embedding_finetune_task"

# Longer than embedding_finetune_task's time limit (24 h): a version building for longer than
# this has no task left that could finish it.
FINETUNE_ABANDONED_AFTER = timedelta(hours=25)

# The automatic interval: a tenth of the project's crops, rounded to a hundred, between these.
# The ceiling is the paper's flat schedule (2,000 labels, for millions of images); a small
# project reaches its floor long before, so its embedding adapts while labels still matter.
AUTO_SHARE = 0.1
AUTO_MIN = 200
AUTO_MAX = 2000


def finetune_interval(*, finetune_every: int | None, n_crops: int) -> int:
    """New species labels between two automatic fine-tunings; 0 means never automatically.

    ``finetune_every`` is the project's setting: a number is used as is (0: only when an admin
    asks), None is "auto": ``AUTO_SHARE`` of ``n_crops`` (the crops of the current embedding
    version, >= 0) rounded to the nearest hundred, clipped to [``AUTO_MIN``, ``AUTO_MAX``]
    (e.g. 637 crops: 200; 8,000: 800; 50,000: 2,000).

    Raises:
        ValueError: a negative ``finetune_every`` or ``n_crops``.
    """
    if n_crops < 0 or (finetune_every is not None and finetune_every < 0):
        raise ValueError(
            f"need n_crops >= 0 and finetune_every >= 0, got {n_crops}, {finetune_every}"
        )
    if finetune_every is not None:
        return finetune_every
    return int(min(AUTO_MAX, max(AUTO_MIN, round(AUTO_SHARE * n_crops, -2))))


def embedding_finetune_queue(*, project: Project, force: bool = False) -> EmbeddingVersion | None:
    """Queue fine-tuning of the embedding when ``finetune_interval`` species labels are new.

    ``force`` (an admin's button) skips the count. At most one version is fine-tuned at a time;
    returns the version queued, or None when none is due. Call it inside a transaction: once
    fine-tuning is due it locks the project row (``locks.project_lock``) until that ends.
    """
    current = embedding_version_current(project=project)
    if current is None:
        return None
    every = finetune_interval(finetune_every=project.finetune_every, n_crops=current.n_crops)
    if every == 0 and not force:
        return None
    species_labels = Label.objects.filter(project=project, kind=LabelKind.SPECIES)
    # Every label submission asks; almost always too few labels are new. Answer that with one
    # count, before the project lock: taken on every submission, that lock made all of a
    # project's label writes wait for each other (measured by `make loadtest`).
    # Counted from the newest ready version, not the current one: a fine-tuned version the
    # gate did not keep (``embedding_finetune_and_retrain``) used those labels already.
    newest = (
        EmbeddingVersion.objects.filter(project=project, status=EmbeddingVersion.Status.READY)
        .order_by("-last_label_id")
        .values("last_label_id")[:1]
    )
    if not force and (
        species_labels.filter(id__gt=Coalesce(Subquery(newest), current.last_label_id)).count()
        < every
    ):
        return None
    project_lock(project_id=project.pk)  # one queuer at a time
    building = EmbeddingVersion.objects.filter(
        project=project, status=EmbeddingVersion.Status.BUILDING
    )
    # A version still building past the task's time limit was abandoned (its task is gone):
    # it must not block fine-tuning for good.
    building.filter(created_at__lt=timezone.now() - FINETUNE_ABANDONED_AFTER).update(
        status=EmbeddingVersion.Status.FAILED,
        error="abandoned: not finished within the fine-tuning time limit",
    )
    if building.exists():
        if force:
            raise FinetuneError("the embedding is being fine-tuned already")
        return None
    if species_labels.values("species_id").distinct().count() < 2:
        if force:
            raise FinetuneError("fine-tuning needs labels of at least two species")
        return None
    last_label_id = Label.objects.filter(project=project).aggregate(n=Max("id"))["n"] or 0
    version = embedding_finetune_create(
        project=project, parent=current, last_label_id=last_label_id
    )
    task_enqueue(name=FINETUNE_TASK, args=[version.pk])
    return version


def embedding_finetune_and_retrain(*, version_id: int) -> ClassifierVersion | None:
    """Fine-tune the embedding on every species label, switch to it, then retrain the classifier.

    Labels that arrive while it trains count toward the next fine-tuning and the next retrain;
    none is lost. When the retrained classifier is rejected by its gate (worse than the live
    one on the live one's audit labels), the fine-tuned embedding is not kept either: its
    parent is activated again.
    """
    version = EmbeddingVersion.objects.select_related("project").get(pk=version_id)
    latest = labels_for_training(project=version.project)
    pairs = sorted(
        (crop, species)
        for crop, (kind, species, _) in latest.items()
        if kind == LabelKind.SPECIES and species is not None
    )
    crop_ids = np.asarray([c for c, _ in pairs], dtype=np.int64)
    labels = np.asarray([s for _, s in pairs], dtype=np.int64)
    embedding_finetune_run(version_id=version_id, crop_ids=crop_ids, labels=labels)
    classifier = classifier_retrain(project_id=version.project_id)
    if (
        classifier is not None
        and classifier.embedding_version_id == version.pk
        and classifier.gate.get("decision") == "rejected"
        and version.parent_id is not None
    ):
        _embedding_revert(version=version, parent_id=version.parent_id, classifier=classifier)
    return classifier


def _embedding_revert(
    *, version: EmbeddingVersion, parent_id: int, classifier: ClassifierVersion
) -> None:
    """The classifier trained on fine-tuned ``version`` was worse than the live one on its
    audit labels: the fine-tuned embedding is not kept either. Its parent is activated again
    (one write, as every switch), and the classifier's gate says so."""
    EmbeddingVersion.objects.filter(pk=parent_id).update(activated_at=timezone.now())
    gate = {
        **classifier.gate,
        "embedding": f"fine-tuned embedding v{version.number} not kept: its classifier was "
        f"{classifier.gate.get('reason', 'worse')}; the parent embedding is active again",
    }
    ClassifierVersion.objects.filter(pk=classifier.pk).update(gate=gate)
    classifier.gate = gate
