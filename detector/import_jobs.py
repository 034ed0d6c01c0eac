"""Imports asked for in the browser: recorded with a ``Job`` of kind IMPORT, queued for the
worker (by task name, through the outbox), run there with progress and every problem listed,
then handed to the project's detector.

A folder must lie under ``TRAPWISE_IMPORT_ROOTS``, an ``s3://bucket/prefix`` in one of the
``TRAPWISE_IMPORT_BUCKETS`` (its images stay in the bucket); an upload is stored first under
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
from detector.imports import images_import, remote_images_list
from detector.jobs import detection_job_create
from detector.models import ImageImport
from detector.uploads import UploadLimits, upload_store
from projects.image_source import import_bucket_check, is_remote, s3_object_check
from projects.import_roots import (
    IMAGE_SUFFIXES,
    FolderImportError,
    import_path_check,
    upload_root,
)
from projects.jobs import job_finish, job_problems_record, job_resume
from projects.models import Job, Project, ProjectDetector
from projects.taskqueue import task_enqueue

# The Celery task this module queues, by name (``detector.tasks`` defines it).
IMPORT_TASK = "detector.tasks.image_import_task"


def image_import_create(
    *,
    project: Project,
    folder: Path | str,
    coco: Path | str | None = None,
    created_by: User | None = None,
    uploaded: bool = False,
    problems: Sequence[tuple[str, str]] = (),
    queue: bool = True,
) -> ImageImport:
    """Record an import of ``folder`` (and its COCO file) into ``project``; queue it.

    ``problems`` are those found before (an upload's left-out files): the job lists them with
    its own. With ``queue=False`` the caller runs it (``image_import_run``).

    ``folder`` (and ``coco``) may be ``s3://bucket/prefix`` strings: the bucket must be one of
    ``TRAPWISE_IMPORT_BUCKETS`` (this is what the browser and the API call; the import
    command reads any bucket), and the prefix must hold images (listed once here for the
    job's total).

    Raises:
        FolderImportError: the folder or the COCO file outside the import roots (or a bucket
        not allowed), missing or not what it should be, a prefix without images, S3 out of
        reach or no credentials. Nothing is recorded.
    """
    if is_remote(folder):
        folder = import_bucket_check(location=str(folder), what="the image folder")
        # The queued job shows what it will look at (the run lists again: objects may change).
        total = len(remote_images_list(prefix_url=folder))
        name = folder
    else:
        folder = import_path_check(path=Path(folder), what="the image folder")
        if not folder.is_dir():
            raise FolderImportError(f"{folder} is not a folder; nothing imported")
        total = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        name = folder.name
    if coco is not None and is_remote(coco):
        coco = import_bucket_check(location=str(coco), what="the COCO file")
        try:
            s3_object_check(coco)
        except OSError as exc:
            raise FolderImportError(f"the COCO file: {exc}; nothing imported") from exc
    elif coco is not None:
        coco = import_path_check(path=Path(coco), what="the COCO file")
        if not coco.is_file():
            raise FolderImportError(f"{coco} is not a file; nothing imported")
    with transaction.atomic():
        job = Job.objects.create(
            project=project,
            kind=Job.Kind.IMPORT,
            status=Job.Status.QUEUED,
            total=total,
            detail=f"{'upload' if uploaded else 'folder'} {name}"[:300],
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


def image_import_request(
    *, project: Project, source: str, coco: str = "", created_by: User | None = None
) -> ImageImport:
    """Record (and queue) the import of ``source`` asked for by a person (the API, the
    browser's bucket form): an ``s3://bucket/prefix`` in one of ``TRAPWISE_IMPORT_BUCKETS``,
    or an absolute folder under ``TRAPWISE_IMPORT_ROOTS``; ``coco`` likewise, or "".

    Unlike the command line, a local folder needs import roots to be set: without them a
    project admin could read any folder of the server.

    Raises:
        FolderImportError: as ``image_import_create``, or an empty source, a relative path or
        no import roots set for a local one. Nothing is recorded.
    """
    source, coco = source.strip(), coco.strip()
    if not source:
        raise FolderImportError("give the folder or the s3://bucket/prefix to import")
    for location, what in ((source, "the image folder"), (coco, "the COCO file")):
        if not location or is_remote(location):
            continue
        if not Path(location).is_absolute() or "\x00" in location:
            raise FolderImportError(f"{what} {location!r} is not an absolute path")
        if not settings.TRAPWISE_IMPORT_ROOTS:
            raise FolderImportError(
                "no import roots are set: set TRAPWISE_IMPORT_ROOTS to the folders imports may "
                "read, or import from an s3:// bucket of TRAPWISE_IMPORT_BUCKETS"
            )
    return image_import_create(
        project=project,
        folder=source if is_remote(source) else Path(source),
        coco=(coco if is_remote(coco) else Path(coco)) if coco else None,
        created_by=created_by,
    )


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
    tracker = job_resume(job=job)
    # Strings: an s3:// location is no Path (Path would fold its "//").
    folder: Path | str = record.folder if is_remote(record.folder) else Path(record.folder)
    coco: Path | str | None = None
    if record.coco:
        coco = record.coco if is_remote(record.coco) else Path(record.coco)
    try:
        report = images_import(
            project=record.project, folder=folder, coco=coco, progress=tracker.advance
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
