"""Imports asked for in the browser: recorded with a ``Job`` of kind IMPORT, queued for the
worker (by task name, through the outbox), run there with progress and every problem listed,
then handed to the project's detector.

A folder must lie under ``TRAPWISE_IMPORT_ROOTS``; an upload is stored first under
``TRAPWISE_DATA_DIR/uploads/<project>/<batch>/`` (``detector.uploads``) and imported from there.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from detector.base import DetectorError
from detector.coco import CocoError
from detector.imports import images_import
from detector.jobs import detection_job_create
from detector.models import ImageImport
from detector.uploads import UploadLimits, upload_store
from projects.import_roots import (
    IMAGE_SUFFIXES,
    FolderImportError,
    import_path_check,
    upload_root,
)
from projects.jobs import JobTracker, job_finish, job_problems_record, worker_current
from projects.models import Job, Project, ProjectDetector
from projects.taskqueue import task_enqueue

# The Celery task this module queues, by name (``detector.tasks`` defines it).
IMPORT_TASK = "detector.tasks.image_import_task"


def image_import_create(
    *,
    project: Project,
    folder: Path,
    coco: Path | None = None,
    created_by: User | None = None,
    uploaded: bool = False,
    problems: Sequence[tuple[str, str]] = (),
    queue: bool = True,
) -> ImageImport:
    """Record an import of ``folder`` (and its COCO file) into ``project``; queue it.

    ``problems`` are those found before (an upload's left-out files): the job lists them with
    its own. With ``queue=False`` the caller runs it (``image_import_run``).

    Raises:
        FolderImportError: the folder or the COCO file outside the import roots, missing or
        not what it should be. Nothing is recorded.
    """
    folder = import_path_check(path=folder, what="the image folder")
    if not folder.is_dir():
        raise FolderImportError(f"{folder} is not a folder; nothing imported")
    if coco is not None:
        coco = import_path_check(path=coco, what="the COCO file")
        if not coco.is_file():
            raise FolderImportError(f"{coco} is not a file; nothing imported")
    # The queued job shows what it will look at (the run counts again: the folder may change).
    total = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    with transaction.atomic():
        job = Job.objects.create(
            project=project,
            kind=Job.Kind.IMPORT,
            status=Job.Status.QUEUED,
            total=total,
            detail=f"{'upload' if uploaded else 'folder'} {folder.name}"[:300],
        )
        record = ImageImport.objects.create(
            project=project,
            job=job,
            folder=str(folder),
            coco=str(coco) if coco is not None else "",
            uploaded=uploaded,
            problems=[list(p) for p in problems],
            created_by=created_by,
        )
        if queue:
            task_enqueue(name=IMPORT_TASK, args=[record.pk])  # kept if the broker is down
    return record


def image_upload_import(
    *,
    project: Project,
    files: Sequence[tuple[str, Path]],
    created_by: User | None = None,
    queue: bool = True,
) -> ImageImport:
    """Store an upload ((name as sent, received file) pairs) in a new batch folder of the
    project under ``upload_root()``, then record its import (``image_import_create``).

    Raises:
        UploadRefused: the upload as a whole (``detector.uploads.upload_store``); its batch
        folder is removed and nothing is recorded.
    """
    batch = f"{timezone.now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    folder = upload_root() / str(project.pk) / batch
    limits = UploadLimits(
        max_bytes=settings.TRAPWISE_UPLOAD_MAX_BYTES,
        max_members=settings.TRAPWISE_UPLOAD_MAX_MEMBERS,
    )
    try:
        stored = upload_store(folder=folder, files=files, limits=limits)
        return image_import_create(
            project=project,
            folder=folder,
            created_by=created_by,
            uploaded=True,
            problems=stored.problems,
            queue=queue,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def image_import_run(*, import_id: int) -> ImageImport:
    """Run a recorded import: add the folder's new images with progress on its job, list every
    problem, then queue detection with the project's detector. Safe to run again: a done job
    is left alone, and images already in the project are skipped by path.

    A folder or COCO file that became unusable fails the job with the reason (nothing
    imported); any other error fails it too and is raised.
    """
    record = ImageImport.objects.select_related("job", "project").get(pk=import_id)
    job = record.job
    if job.status == Job.Status.DONE:
        return record
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING,
        started_at=job.started_at or timezone.now(),
        worker=worker_current(),
        error="",
    )
    tracker = JobTracker(job)
    coco = Path(record.coco) if record.coco else None
    try:
        report = images_import(
            project=record.project, folder=Path(record.folder), coco=coco, progress=tracker.advance
        )
    except (FolderImportError, CocoError) as exc:
        job_finish(job_id=job.pk, error=str(exc))
        return record
    except Exception as exc:
        job_finish(job_id=job.pk, error=f"{type(exc).__name__}: {exc}"[:5000])
        raise
    problems = [(str(p[0]), str(p[1])) for p in record.problems] + report.problems
    detail = f"{report.added} images added, {report.already_present} already there"
    if problems:
        detail += f", {len(problems)} problem{'s' if len(problems) != 1 else ''}"
    if report.added:
        detail += "; " + _detection_queue(record)
    job_problems_record(job_id=job.pk, problems=problems, detail=detail)
    job_finish(job_id=job.pk)
    return record


def _detection_queue(record: ImageImport) -> str:
    """Queue detection of the new images with the project's detector; what was done, in words."""
    project = record.project
    if project.detector == ProjectDetector.IMPORTED:
        if not record.coco:
            return "no boxes file given: start detection from the data page"
        name, options = "coco", {"file": record.coco}
    else:
        name, options = project.detector, {}
    try:
        job = detection_job_create(project=project, detector=name, options=options)
    except DetectorError as exc:
        return f"detection not started: {exc}"
    return f"detection queued for {job.total} images"
