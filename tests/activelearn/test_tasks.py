"""The retrain and fine-tuning tasks survive a worker killed (SIGKILL) in the middle of them.

A real ``celery worker --pool=solo`` runs on the test database and broker. The test watches the
task's progress rows until it is training, then freezes the worker at its next database write
(a write lock held from the test) and kills it there: no new version may have become current,
the labels and rounds are as before, and a worker started again on the same queue runs the task
to completion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from activelearn.classifier import classifier_load
from activelearn.models import ClassifierVersion, Label, Prediction, Round
from activelearn.services import (
    FinetuneError,
    embedding_finetune_queue,
    labels_import,
    round_start,
)
from detector.models import Crop
from embeddings.index import index_load
from embeddings.models import EmbeddingVersion
from embeddings.pipeline import folder_ingest
from embeddings.selectors import embedding_vectors_dir, embedding_vectors_load
from embeddings.selectors import embedding_version_current as current_version
from projects.models import Job, Project, QueuedTask
from tests.processes import (
    celery_worker_start,
    database_writes_frozen,
    process_stop,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def labelled_project(
    project: Project, sample_dir: Path, admin_user: User, volunteer: User, worker_queue: str
) -> Project:
    """The bundled sample (203 crops in 21 capture events, enough for 5-fold cross-validation)
    with a first round of 100 random crops labelled with their true species; the round closed
    and so queued a retrain (on ``worker_queue``; no worker runs yet)."""
    folder_ingest(project=project, folder=sample_dir, coco=sample_dir / "annotations.json")
    coco = json.loads((sample_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    truth = {files[a["image_id"]]: names[a["category_id"]] for a in coco["annotations"]}
    species = {s.name: s.pk for s in project.species.all()}
    round_ = round_start(project=project, user=admin_user, strategy="random", size=100)
    for item in round_.items.select_related("crop__image"):
        labels_import(
            project=project,
            crop_ids=[item.crop_id],
            user=volunteer,
            kind="species",
            species_id=species[truth[item.crop.image.file_name]],
        )
    return project


@pytest.fixture
def workers(worker_queue: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The workers a test starts (all on ``worker_queue``); stopped and their log shown after."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for worker in started:
        process_stop(worker)
    log = tmp_path / "worker.log"
    if log.exists():
        print(log.read_text()[-4000:])


def _start(workers: list[subprocess.Popen[bytes]], queue: str, tmp_path: Path) -> None:
    workers.append(celery_worker_start(queue=queue, log=tmp_path / "worker.log"))


def _kill_at_next_write(worker: subprocess.Popen[bytes]) -> None:
    """Freeze ``worker`` at its next database write, then SIGKILL it there."""
    with database_writes_frozen() as waiting:
        wait_for(waiting, what="the worker to wait for the lock", timeout=30, interval=0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


Rows = list[tuple[Any, ...]]


def _labels_and_rounds(project: Project) -> tuple[Rows, Rows]:
    labels = list(
        Label.objects.filter(project=project)
        .order_by("id")
        .values_list("id", "crop_id", "user_id", "kind", "species_id", "undone_at")
    )
    rounds = list(project.rounds.order_by("id").values_list("id", "number", "status", "closed_at"))
    return labels, rounds


def test_retrain_killed_mid_task_runs_again_and_only_then_becomes_current(
    labelled_project: Project,
    worker_queue: str,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    project = labelled_project
    n_crops = Crop.objects.filter(project=project).count()
    n_labels = project.rounds.get().items.count()
    assert (n_crops, n_labels) == (203, 100)
    before = _labels_and_rounds(project)
    assert project.rounds.get().status == Round.Status.CLOSED
    queued = QueuedTask.objects.get()
    assert queued.args == [project.pk] and queued.published_at is not None

    _start(workers, worker_queue, tmp_path)
    running = Job.objects.filter(project=project, kind=Job.Kind.RETRAIN, status=Job.Status.RUNNING)
    # Cross-validation (it chooses the classifier) runs before the model file is written.
    wait_for(
        lambda: running.filter(detail__contains="cross-validating").exists(),
        what="the retrain to reach cross-validation",
        process=workers[0],
        interval=0.05,
    )
    _kill_at_next_write(workers[0])

    assert not ClassifierVersion.objects.filter(project=project).exists()
    assert not Prediction.objects.exists()
    assert _labels_and_rounds(project) == before
    model_file = Path(settings.TRAPWISE_DATA_DIR) / f"projects/{project.pk}/classifiers/v1.joblib"
    assert not model_file.exists()  # the kept classifier is trained after the choice
    leftover = QueuedTask.objects.get()
    assert leftover.started_at is not None and leftover.worker.startswith(worker_queue)

    _start(workers, worker_queue, tmp_path)
    classifier = wait_for(
        lambda: ClassifierVersion.objects.filter(project=project).first(),
        what="the retrain to run again",
        process=workers[1],
    )
    assert (classifier.number, classifier.n_labels) == (1, n_labels)
    assert Prediction.objects.filter(classifier=classifier).count() == n_crops
    assert classifier.cv_n_splits == 5 and classifier.cv_accuracy is not None
    assert model_file.exists()
    loaded = classifier_load(Path(settings.TRAPWISE_DATA_DIR) / classifier.path)
    assert loaded.classes.size == classifier.n_classes == 10
    with np.load(model_file.with_suffix(".cv.npz")) as cv:
        assert cv["confidence"].shape == (n_labels,)
    assert _labels_and_rounds(project) == before
    wait_for(lambda: not QueuedTask.objects.exists(), what="the task to be marked finished")
    assert ClassifierVersion.objects.filter(project=project).count() == 1


def test_finetune_killed_mid_training_runs_again_and_switches_only_when_complete(
    labelled_project: Project,
    worker_queue: str,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    project = labelled_project
    project.finetune_mode, project.finetune_epochs = "head", 60
    project.save(update_fields=["finetune_mode", "finetune_epochs"])
    crop_ids = sorted(Crop.objects.filter(project=project).values_list("id", flat=True))
    parent = current_version(project=project)
    assert parent is not None
    before = _labels_and_rounds(project)
    with transaction.atomic():
        version = embedding_finetune_queue(project=project, force=True)
    assert version is not None and version.status == EmbeddingVersion.Status.BUILDING

    _start(workers, worker_queue, tmp_path)
    wait_for(
        lambda: Job.objects.filter(
            project=project, kind=Job.Kind.FINETUNE, status=Job.Status.RUNNING
        ).exists(),
        what="fine-tuning to start training",
        process=workers[0],
        interval=0.05,
    )
    _kill_at_next_write(workers[0])

    version.refresh_from_db()
    assert version.status == EmbeddingVersion.Status.BUILDING and version.activated_at is None
    assert current_version(project=project) == parent
    ids, _ = embedding_vectors_load(version=parent)
    assert index_load(embedding_vectors_dir(version=parent) / "index.faiss", gpu=False).ntotal == (
        ids.size
    )
    # The round's retrain ran before, on the parent; nothing was trained on the new version.
    assert not ClassifierVersion.objects.filter(embedding_version=version).exists()
    assert _labels_and_rounds(project) == before
    with pytest.raises(FinetuneError, match="fine-tuned already"), transaction.atomic():
        embedding_finetune_queue(project=project, force=True)

    _start(workers, worker_queue, tmp_path)
    classifier = wait_for(
        lambda: ClassifierVersion.objects.filter(
            project=project, embedding_version=version
        ).first(),
        what="fine-tuning and the retrain on it to run again",
        process=workers[1],
    )
    version.refresh_from_db()
    assert version.status == EmbeddingVersion.Status.READY
    assert current_version(project=project) == version
    ids, vectors = embedding_vectors_load(version=version)
    assert sorted(ids.tolist()) == crop_ids and version.n_crops == len(crop_ids)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    index = index_load(embedding_vectors_dir(version=version) / "index.faiss", gpu=False)
    assert index.ntotal == len(crop_ids)
    assert len(version.loss_curve) == 60
    assert Prediction.objects.filter(classifier=classifier).count() == len(crop_ids)
    assert _labels_and_rounds(project) == before
    wait_for(lambda: not QueuedTask.objects.exists(), what="the tasks to be marked finished")
