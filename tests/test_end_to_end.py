"""The whole loop on real images, with the retrain run by a real Celery worker process.

import (missouri-dev sample with its boxes) → crops → embeddings → round → labels through the
Django test client → retrain task on the configured broker (not eager) → a prediction for every
crop → a CSV with one row per crop.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from activelearn.models import ClassifierVersion, Prediction, Round
from annotator.exports import EXPORT_HEADER
from detector.models import Crop
from projects.models import Project

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WORKER_TIMEOUT_S = 180


def _truth_by_file(sample_dir: Path) -> dict[str, str]:
    """COCO species name of every image file of the sample (labels are per sequence)."""
    coco = json.loads((sample_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    return {files[a["image_id"]]: names[a["category_id"]] for a in coco["annotations"]}


def _login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_whole_loop_with_real_worker(
    project: Project,
    sample_dir: Path,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    celery_worker_process: subprocess.Popen[bytes],
) -> None:
    call_command(
        "import_images",
        project.slug,
        str(sample_dir),
        "--coco",
        str(sample_dir / "annotations.json"),
    )
    n_crops = Crop.objects.filter(project=project).count()
    assert project.images.count() == 209 and n_crops == 203
    assert project.images.filter(is_empty=True).count() > 0

    admin = _login(admin_user)
    admin.post(reverse("round_start", args=[project.slug]), {"strategy": "k_center", "size": 100})
    round_ = Round.objects.get(project=project)
    assert round_.items.count() == 100  # as asked: the sample has more crops
    labelled = set(round_.items.values_list("crop_id", flat=True))

    truth = _truth_by_file(sample_dir)
    species = {s.name: s.pk for s in project.species.all()}
    volunteer_client = _login(volunteer)
    label_url = reverse("label", args=[project.slug])
    files = dict(round_.items.values_list("crop_id", "crop__image__file_name"))
    for _ in range(len(labelled)):  # the page serves a crop, the volunteer labels it
        served = re.search(r'name="crop_id" value="(\d+)"', volunteer_client.get(label_url).text)
        assert served is not None
        crop_id = int(served.group(1))
        choice = f"species:{species[truth[files[crop_id]]]}"
        response = volunteer_client.post(label_url, {"crop_id": crop_id, "choice": choice})
        assert response.status_code == 302
    round_.refresh_from_db()
    assert round_.status == Round.Status.CLOSED

    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not ClassifierVersion.objects.filter(project=project).exists():
        assert celery_worker_process.poll() is None, "the Celery worker died"
        assert time.monotonic() < deadline, "the worker did not retrain in time"
        time.sleep(1)
    classifier = ClassifierVersion.objects.get(project=project)
    predictions = Prediction.objects.filter(classifier=classifier)
    assert predictions.count() == n_crops
    assert classifier.round == round_ and classifier.n_labels == len(labelled)
    # Trained on these very labels, the classifier must get almost all of them right.
    correct = sum(
        p.species.name == truth[p.crop.image.file_name]
        for p in predictions.filter(crop_id__in=labelled).select_related("species", "crop__image")
    )
    assert correct >= 0.9 * len(labelled)

    response = _login(ecologist).get(reverse("export_csv", args=[project.slug]))
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == EXPORT_HEADER
    assert len(rows) == n_crops + 1
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert sum(1 for r in records if r["human_label"]) == len(labelled)
    assert all(r["machine_label"] for r in records)  # the unlabelled crops too
    record = next(r for r in records if r["human_label"])
    assert record["labelled_by"] == "vic"
    assert float(record["machine_confidence"]) > 0
    assert record["classifier_version"] == "classifier v1"
    assert (record["round"], record["strategy"]) == ("1", "k_center")


def test_detection_job_runs_in_the_worker(
    project: Project,
    small_folder: Path,
    admin_user: User,
    celery_worker_process: subprocess.Popen[bytes],
) -> None:
    """Admin queues offline detection from the project page; the worker detects, crops, embeds."""
    from detector.models import DetectionJob
    from embeddings.models import EmbeddingVersion

    call_command(
        "import_images",
        project.slug,
        str(small_folder),
        "--coco",
        str(small_folder / "annotations.json"),
        "--no-boxes",
    )
    assert not Crop.objects.exists()
    response = _login(admin_user).post(
        reverse("detection_start", args=[project.slug]), {"detector": "offline"}, follow=True
    )
    assert "Detection queued for 15 images" in response.text
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    job = DetectionJob.objects.get(project=project)
    while job.status not in (DetectionJob.Status.DONE, DetectionJob.Status.FAILED):
        assert celery_worker_process.poll() is None, "the Celery worker died"
        assert time.monotonic() < deadline, "the worker did not finish detection in time"
        time.sleep(1)
        job.refresh_from_db()
    assert (job.status, job.done, job.total) == ("done", 15, 15), job.error
    assert project.images.filter(detected_at__isnull=True).count() == 0
    n_crops = Crop.objects.filter(project=project, active=True).count()
    assert n_crops > 0 and job.crops == Crop.objects.filter(project=project).count()
    assert EmbeddingVersion.objects.get(project=project).n_crops == Crop.objects.count()
