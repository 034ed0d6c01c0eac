"""Browser imports as jobs: recorded and queued by name, run with progress, every problem listed,
safe to run twice, handed to the project's detector; uploads stored under the data folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from detector.import_jobs import (
    IMPORT_TASK,
    image_import_create,
    image_import_run,
    image_upload_import,
)
from detector.imports import images_import
from detector.models import DetectionJob, ImageImport
from detector.tasks import image_import_task
from detector.uploads import UploadRefused
from projects import jobs as jobs_module
from projects.import_roots import FolderImportError, upload_root
from projects.models import Image, Job, Project, ProjectDetector, QueuedTask

pytestmark = pytest.mark.django_db


@pytest.fixture
def roots(settings: Any, tmp_path: Path) -> Path:
    """A configured import root holding the small folder's images (15) under ``traps``."""
    root = tmp_path / "root"
    root.mkdir()
    settings.TRAPWISE_IMPORT_ROOTS = [root]
    return root


@pytest.fixture
def traps(roots: Path, small_folder: Path) -> Path:
    folder = roots / "traps"
    shutil.copytree(small_folder, folder)
    return folder


def test_images_import_reports_progress_to_the_end(project: Project, small_folder: Path) -> None:
    calls: list[tuple[int, int]] = []
    report = images_import(
        project=project, folder=small_folder, progress=lambda d, t: calls.append((d, t))
    )
    assert report.added == 15
    assert calls[0] == (0, 15) and calls[-1] == (15, 15)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # never goes back


def test_import_job_runs_with_progress_and_queues_detection(
    project: Project, traps: Path, admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every progress report is written (no throttling), so that the job's rows can be watched.
    monkeypatch.setattr(jobs_module, "ADVANCE_MIN_SECONDS", 0.0)
    seen: list[tuple[int, int]] = []
    original = jobs_module.job_advance

    def watch(*, job_id: int, done: int, total: int | None = None, detail: str = "") -> bool:
        wrote = original(job_id=job_id, done=done, total=total, detail=detail)
        row = Job.objects.get(pk=job_id)
        seen.append((row.done, row.total))
        return wrote

    monkeypatch.setattr(jobs_module, "job_advance", watch)
    record = image_import_create(project=project, folder=traps, created_by=admin_user)
    job = record.job
    assert (job.kind, job.status, job.done, job.total) == (
        Job.Kind.IMPORT,
        Job.Status.QUEUED,
        0,
        15,
    )
    assert QueuedTask.objects.filter(name=IMPORT_TASK, args=[record.pk]).exists()

    image_import_run(import_id=record.pk)
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == (Job.Status.DONE, 15, 15)
    assert job.started_at is not None and job.finished_at is not None
    assert (5, 15) in seen and seen[-1] == (15, 15)
    assert job.detail.startswith("15 images added, 0 already there")
    assert "detection queued for 15 images" in job.detail
    assert Image.objects.filter(project=project).count() == 15
    detection = DetectionJob.objects.get(project=project)
    assert (detection.detector, detection.total) == (ProjectDetector.OFFLINE, 15)


def test_import_job_is_safe_to_run_twice(project: Project, traps: Path) -> None:
    record = image_import_create(project=project, folder=traps)
    image_import_task(record.pk)  # the Celery task calls the service
    finished = Job.objects.get(pk=record.job_id).finished_at
    image_import_task(record.pk)  # a redelivered message: the done job is left alone
    assert Job.objects.get(pk=record.job_id).finished_at == finished
    assert Image.objects.filter(project=project).count() == 15
    # A second import of the same folder skips every image it has, by path.
    again = image_import_create(project=project, folder=traps)
    image_import_run(import_id=again.pk)
    job = Job.objects.get(pk=again.job_id)
    assert job.status == Job.Status.DONE
    assert job.detail == "0 images added, 15 already there"
    assert Image.objects.filter(project=project).count() == 15
    assert DetectionJob.objects.filter(project=project).count() == 1  # not queued again


def test_import_job_lists_every_problem_and_imports_the_rest(project: Project, traps: Path) -> None:
    (traps / "notes.jpg").write_text("not an image at all")
    (traps / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    record = image_import_create(project=project, folder=traps)
    image_import_run(import_id=record.pk)
    job = Job.objects.get(pk=record.job_id)
    assert job.status == Job.Status.DONE
    assert sorted(p[0] for p in job.problems) == ["broken.png", "notes.jpg"]
    assert all("not a readable image" in p[1] for p in job.problems)
    assert "15 images added" in job.detail and "2 problems" in job.detail
    assert Image.objects.filter(project=project).count() == 15


def test_imported_detector_uses_the_coco_file_or_says_what_is_missing(
    project: Project, traps: Path
) -> None:
    project.detector = ProjectDetector.IMPORTED
    project.save(update_fields=["detector"])
    bare = image_import_create(project=project, folder=traps / "images" / "Red_Fox")
    image_import_run(import_id=bare.pk)
    assert "no boxes file given" in Job.objects.get(pk=bare.job_id).detail
    assert not DetectionJob.objects.exists()
    coco = traps / "annotations.json"
    record = image_import_create(project=project, folder=traps, coco=coco)
    image_import_run(import_id=record.pk)
    detection = DetectionJob.objects.get(project=project)
    assert (detection.detector, detection.options) == ("coco", {"file": str(coco)})


def test_import_outside_the_roots_is_refused_and_records_nothing(
    project: Project, roots: Path, small_folder: Path
) -> None:
    with pytest.raises(FolderImportError, match="outside the allowed import roots"):
        image_import_create(project=project, folder=small_folder)
    with pytest.raises(FolderImportError, match="outside the allowed import roots"):
        image_import_create(project=project, folder=roots, coco=small_folder / "annotations.json")
    assert not Job.objects.exists() and not ImageImport.objects.exists()


def test_a_folder_gone_before_the_job_runs_fails_it_with_the_reason(
    project: Project, traps: Path
) -> None:
    record = image_import_create(project=project, folder=traps)
    shutil.rmtree(traps)
    image_import_run(import_id=record.pk)
    job = Job.objects.get(pk=record.job_id)
    assert job.status == Job.Status.FAILED and "is not a folder" in job.error
    assert not Image.objects.exists()


def _received(tmp_path: Path, name: str, data: bytes) -> Path:
    """A file as Django's temporary upload handler leaves it."""
    path = tmp_path / "received" / f"{len(list(tmp_path.glob('received/*')))}.upload"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def test_upload_is_stored_under_the_data_folder_and_imported(
    project: Project, roots: Path, small_folder: Path, tmp_path: Path
) -> None:
    images = sorted((small_folder / "images" / "Red_Fox").rglob("*.JPG"))[:3]
    files = [(p.name, _received(tmp_path, p.name, p.read_bytes())) for p in images]
    files.append(("copy.jpg", _received(tmp_path, "copy.jpg", images[0].read_bytes())))
    files.append(("readme.txt", _received(tmp_path, "readme.txt", b"hello")))
    record = image_upload_import(project=project, files=files)
    folder = Path(record.folder)
    assert folder.parent == upload_root().resolve() / str(project.pk)
    assert record.uploaded and sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in images
    )
    image_import_run(import_id=record.pk)
    job = Job.objects.get(pk=record.job_id)
    assert (job.status, job.done) == (Job.Status.DONE, 3)
    assert sorted(p[0] for p in job.problems) == ["copy.jpg", "readme.txt"]
    assert "duplicate of" in dict(job.problems)["copy.jpg"]
    assert Image.objects.filter(project=project).count() == 3


def test_refused_upload_leaves_no_folder_and_no_job(project: Project, tmp_path: Path) -> None:
    files = [("readme.txt", _received(tmp_path, "readme.txt", b"hello"))]
    with pytest.raises(UploadRefused, match="holds no image"):
        image_upload_import(project=project, files=files)
    assert not (upload_root() / str(project.pk)).exists() or not any(
        (upload_root() / str(project.pk)).iterdir()
    )
    assert not Job.objects.exists()
