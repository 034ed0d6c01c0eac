"""Detection jobs: progress, resuming after a kill, and threshold changes from the services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detector import services as detector_services
from detector.imported import ImportedDetector
from detector.imports import images_import
from detector.jobs import detection_job_create
from detector.models import Crop, Detection, DetectionJob
from detector.selectors import detection_job_latest
from embeddings.models import EmbeddingVersion
from embeddings.pipeline import (
    detection_job_run_and_embed as detection_job_run,
)
from embeddings.pipeline import (
    project_thresholds_update,
)
from projects.models import Image, Project

pytestmark = pytest.mark.django_db


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the job catches it."""


def test_killed_job_resumes_without_redoing_images(
    project: Project, small_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images_import(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    monkeypatch.setattr(detector_services, "BATCH_SIZE", 4)
    real_detect = ImportedDetector.detect
    calls = {"n": 0}

    def dying_detect(self: ImportedDetector, files: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed
        return real_detect(self, files)

    monkeypatch.setattr(ImportedDetector, "detect", dying_detect)
    job = detection_job_create(
        project=project,
        detector="coco",
        queue=False,
        options={"file": str(small_folder / "annotations.json")},
    )
    with pytest.raises(Killed):
        detection_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == ("running", 8, 15)
    progress = detection_job_latest(project=project)
    assert progress is not None and progress.rate is not None and progress.seconds_left is not None

    monkeypatch.setattr(ImportedDetector, "detect", real_detect)
    job = detection_job_run(job_id=job.pk)  # what a redelivered task does
    assert (job.status, job.done, job.failed, job.total) == ("done", 15, 0, 15)
    assert Detection.objects.count() == 11  # every box once: no image was detected twice
    assert not Image.objects.filter(detected_at__isnull=True).exists()
    assert EmbeddingVersion.objects.get().n_crops == Crop.objects.count() == 11
    assert detection_job_run(job_id=job.pk).done == 15  # a finished job does nothing more


def test_unknown_detector_is_refused(project: Project) -> None:
    from detector.base import DetectorError

    with pytest.raises(DetectorError, match="unknown detector"):
        detection_job_create(project=project, detector="yolo", queue=False)
    assert not DetectionJob.objects.exists()


def test_threshold_update_embeds_new_crops_and_rebuilds_on_padding(
    ingested_project: Project,
) -> None:
    version = EmbeddingVersion.objects.get()
    report = project_thresholds_update(
        project=ingested_project,
        detection_threshold=0.5,
        min_box_pixels=8,
        crop_padding=0.1,
        queue=False,
    )
    assert report is not None and report.created == report.recut == 0
    assert EmbeddingVersion.objects.count() == 1
    report = project_thresholds_update(
        project=ingested_project,
        detection_threshold=0.5,
        min_box_pixels=8,
        crop_padding=0.25,
        queue=False,
    )
    assert report is not None and report.recut == 11
    newest = EmbeddingVersion.objects.order_by("-number").first()
    assert newest is not None and newest.number == version.number + 1 and newest.n_crops == 11


def test_crop_shape_change_recuts_and_reembeds(ingested_project: Project) -> None:
    """A new shape, like a new padding, recuts every crop (recording the shape it was cut
    with) and builds a new embedding version; the same shape again changes nothing."""
    version = EmbeddingVersion.objects.get()
    assert set(Crop.objects.values_list("shape", flat=True)) == {"box"}
    report = project_thresholds_update(
        project=ingested_project,
        detection_threshold=0.5,
        min_box_pixels=8,
        crop_padding=0.1,
        crop_shape="square",
        queue=False,
    )
    assert report is not None and report.recut == 11
    ingested_project.refresh_from_db()
    assert ingested_project.crop_shape == "square"
    assert set(Crop.objects.filter(active=True).values_list("shape", flat=True)) == {"square"}
    newest = EmbeddingVersion.objects.order_by("-number").first()
    assert newest is not None and newest.number == version.number + 1 and newest.n_crops == 11
    again = project_thresholds_update(
        project=ingested_project,
        detection_threshold=0.5,
        min_box_pixels=8,
        crop_padding=0.1,
        queue=False,  # no shape given: the project's stays
    )
    assert again is not None and again.recut == 0
    ingested_project.refresh_from_db()
    assert ingested_project.crop_shape == "square"


def test_crop_shape_unknown_refused(project: Project) -> None:
    with pytest.raises(ValueError, match="crop shape"):
        project_thresholds_update(
            project=project,
            detection_threshold=0.5,
            min_box_pixels=8,
            crop_padding=0.1,
            crop_shape="round",
            queue=False,
        )
    project.refresh_from_db()
    assert project.crop_shape == "box" and project.detection_threshold == 0.2


def test_threshold_update_refuses_out_of_range(project: Project) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        project_thresholds_update(
            project=project,
            detection_threshold=1.5,
            min_box_pixels=8,
            crop_padding=0.1,
            queue=False,
        )
    project.refresh_from_db()
    assert project.detection_threshold == 0.2


def test_refresh_with_a_missing_image_reports_it_and_resumes(ingested_project: Project) -> None:
    """A padding change while one image file is gone: the other crops are recut and
    re-embedded, the image is a problem on the job row (not an abort), and the same refresh
    once the file is back recuts what was left."""
    from annotator.jobs import jobs_recent_for_project
    from projects.models import Job

    version = EmbeddingVersion.objects.get()
    image = Image.objects.filter(crops__isnull=False).distinct().order_by("id").first()
    assert image is not None
    own = set(image.crops.values_list("pk", flat=True))
    hidden = Path(f"{image.path}.away")
    Path(image.path).rename(hidden)

    def refresh() -> Any:
        return project_thresholds_update(
            project=ingested_project,
            detection_threshold=0.2,
            min_box_pixels=8,
            crop_padding=0.25,
            queue=False,
        )

    report = refresh()
    assert report.recut == 11 - len(own) and report.created == 0
    assert [name for name, _ in report.problems] == [image.file_name]
    padded = dict(Crop.objects.values_list("pk", "padding"))
    assert {pk for pk, padding in padded.items() if padding == 0.25} == set(padded) - own
    assert {padded[pk] for pk in own} == {0.1}  # its old crops stay, as they were
    job = Job.objects.get(kind=Job.Kind.CROPS)
    assert job.status == Job.Status.DONE and job.total == 15
    assert len(job.problems) == 1 and job.problems[0][0] == image.file_name
    assert "No such file" in job.problems[0][1] and "1 of 15 images" in job.detail
    shown = [j for j in jobs_recent_for_project(project=ingested_project) if j.kind == "crops"]
    assert shown[0].problems == ((image.file_name, job.problems[0][1]),)
    second = EmbeddingVersion.objects.order_by("-number").first()
    assert second is not None and second.number == version.number + 1 and second.n_crops == 11

    hidden.rename(image.path)
    again = refresh()
    assert (again.recut, again.created, again.problems) == (len(own), 0, [])
    assert set(Crop.objects.values_list("padding", flat=True)) == {0.25}
    last = Job.objects.filter(kind=Job.Kind.CROPS).order_by("-id").first()
    assert last is not None and last.status == Job.Status.DONE and last.problems == []
    third = EmbeddingVersion.objects.order_by("-number").first()
    assert third is not None and third.number == version.number + 2 and third.n_crops == 11
