"""Exports built in the background: recorded with a ``Job`` of kind EXPORT and an
``ExportFile``, queued for a CPU worker (by task name, through the outbox), built there with
progress, published in the "exports" storage (``projects.storage``) and downloaded from there.

Why a job: the Camtrap DP zip is complete before its first byte can be sent, and a COCO file
of a large project takes minutes to write; a request that long dies at the proxy's or the
WSGI server's timeout. A project with at most ``TRAPWISE_EXPORT_DIRECT_MAX_IMAGES`` images
(5,000 unless configured) keeps the direct downloads too (``export_direct_allowed``).

Memory stays constant whatever the size: the writers read the project in chunks and write to
the local file that ``stored_write`` yields (the Camtrap DP zip straight into it, the JSON and
CSV line by line), never a whole file in memory. With ``TRAPWISE_STORAGE=s3`` publishing it is
django-storages' ``S3Storage._save``, which hands the open file to boto3's managed
``upload_fileobj`` with the storage's ``TransferConfig`` (boto3's defaults unless
``AWS_S3_TRANSFER_CONFIG`` is set): a file above 8 MiB goes up as a multipart upload in 8 MiB
parts, read from disk part by part.
"""

from __future__ import annotations

import csv
import secrets
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from activelearn.selectors import classifier_latest
from annotator.camtrapdp import (
    CamtrapDpError,
    PackageOptions,
    camtrap_dp_check,
    camtrap_dp_write,
)
from annotator.csvsafe import csv_safe_row
from annotator.exports import (
    EVENT_HEADER,
    EXPORT_HEADER,
    IMAGE_HEADER,
    export_crop_rows,
    export_event_rows,
    export_image_rows,
)
from annotator.exports_coco import export_coco_json
from annotator.models import ExportFile, ExportFormat
from detector.models import Crop
from projects.jobs import job_finish, job_resume
from projects.models import Job, Project
from projects.storage import stored_delete, stored_exists, stored_size, stored_write
from projects.taskqueue import task_enqueue

# The Celery task this module queues, by name (``annotator.tasks`` defines it).
EXPORT_TASK = "annotator.tasks.export_file_task"
# The task's time limit; a job queued or running for longer than this is taken for dead.
EXPORT_TIME_LIMIT = 6 * 3600

# The end of each format's file name (after the project's slug).
SUFFIXES: dict[str, str] = {
    ExportFormat.CAMTRAP_DP: "camtrap-dp.zip",
    ExportFormat.COCO: "coco.json",
    ExportFormat.CROPS_CSV: "crops.csv",
    ExportFormat.IMAGES_CSV: "images.csv",
    ExportFormat.EVENTS_CSV: "events.csv",
}

# The formats the exports page offers to build with one button (Camtrap DP has its own form).
FILE_FORMATS = [f for f in ExportFormat if f != ExportFormat.CAMTRAP_DP]

Progress = Callable[[int, int], None]


class ExportError(ValueError):
    """The export cannot be recorded or deleted; the message says why. Nothing was changed."""


def export_direct_allowed(*, project: Project) -> bool:
    """Whether the project is small enough for the direct downloads of the COCO and Camtrap DP
    exports (at most ``TRAPWISE_EXPORT_DIRECT_MAX_IMAGES`` images)."""
    return bool(project.images.count() <= settings.TRAPWISE_EXPORT_DIRECT_MAX_IMAGES)


def export_download_name(*, export_file: ExportFile) -> str:
    """The name a download is saved under: ``<slug>-<suffix>``, as the direct exports."""
    return f"{export_file.project.slug}-{SUFFIXES[export_file.format]}"


def export_job_create(
    *,
    project: Project,
    format: str,
    created_by: User | None = None,
    options: PackageOptions | None = None,
    queue: bool = True,
) -> ExportFile:
    """Record an export of ``project`` as ``format`` (an ``ExportFormat``) and queue its job.

    ``options`` are required for Camtrap DP (the study's metadata and a location) and ignored
    otherwise. With ``queue=False`` the caller runs it (``export_file_run``).

    Raises:
        ExportError: an unknown format, or Camtrap DP without options.
        CamtrapDpError: the project cannot make a valid package (``camtrap_dp_check``).
        Nothing is recorded in either case.
    """
    if format not in SUFFIXES:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(SUFFIXES)}")
    stored_options: dict[str, object] = {}
    if format == ExportFormat.CAMTRAP_DP:
        if options is None:
            raise ExportError("a Camtrap DP export needs the package options")
        camtrap_dp_check(project=project, options=options)
        stored_options = asdict(options)
    # The stored name: a random folder per file, so a name is never reused.
    name = f"{project.pk}/{secrets.token_hex(8)}/{project.slug}-{SUFFIXES[format]}"
    with transaction.atomic():
        job = Job.objects.create(
            project=project,
            kind=Job.Kind.EXPORT,
            status=Job.Status.QUEUED,
            total=_work_total(project=project, format=format),
            detail=ExportFormat(format).label[:300],
        )
        record = ExportFile.objects.create(
            project=project,
            format=format,
            job=job,
            name=name,
            options=stored_options,
            created_by=created_by,
        )
        if queue:
            task_enqueue(name=EXPORT_TASK, args=[record.pk])  # kept if the broker is down
    return record


def export_file_run(*, export_id: int) -> ExportFile | None:
    """Build a recorded export into the "exports" storage, with progress on its job.

    Safe to run twice: a done job is left alone; a file already published under the record's
    name (by a run that died before finishing its job) is kept, not rebuilt; a run that died
    earlier published nothing (``stored_write`` is atomic), so building again is clean. None
    when the record was deleted meanwhile.

    A project that can no longer make a valid Camtrap DP package fails the job with the
    reason; any other error fails it too and is raised.
    """
    record = ExportFile.objects.select_related("job", "project").filter(pk=export_id).first()
    if record is None:
        return None
    job = record.job
    if job.status == Job.Status.DONE:
        return record
    tracker = job_resume(job=job)
    # The predictions the writers read are the latest ready classifier's: say which it was.
    classifier = classifier_latest(project=record.project)
    record.classifier = classifier
    record.classifier_number = classifier.number if classifier else None
    record.round_number = classifier.round.number if classifier and classifier.round else None
    record.save(update_fields=["classifier", "classifier_number", "round_number"])
    try:
        if not stored_exists(kind="exports", name=record.name):
            with stored_write(kind="exports", name=record.name) as local:
                _build(record, local, tracker.advance)
        record.size = stored_size(kind="exports", name=record.name)
    except CamtrapDpError as exc:
        job_finish(job_id=job.pk, error=f"Not exported: {exc}")
        job.refresh_from_db()
        return record
    except Exception as exc:
        job_finish(job_id=job.pk, error=f"{type(exc).__name__}: {exc}"[:5000])
        raise
    record.save(update_fields=["size"])
    job_finish(job_id=job.pk)
    job.refresh_from_db()  # the record's job as finished, for the caller
    return record


def export_file_delete(*, export_file: ExportFile) -> None:
    """Delete an export: its stored file, its record and its job.

    Raises:
        ExportError: its job is queued or running (and not older than the task's time limit,
        after which it is taken for dead); nothing is deleted.
    """
    job = export_file.job
    active = job.status in (Job.Status.QUEUED, Job.Status.RUNNING)
    if active and job.updated_at > timezone.now() - timedelta(seconds=EXPORT_TIME_LIMIT):
        raise ExportError("this export is still being built: delete it once it is done or failed")
    stored_delete(kind="exports", name=export_file.name)
    job.delete()  # the ExportFile goes with it (one-to-one, cascade)


def _work_total(*, project: Project, format: str) -> int:
    """The job's work units: what the writer's progress counts (images twice, or CSV rows)."""
    images = project.images
    if format in (ExportFormat.CAMTRAP_DP, ExportFormat.COCO):
        return 2 * images.count()
    if format == ExportFormat.CROPS_CSV:
        # export_crop_rows' rows: active crops, and inactive ones with a human vote.
        crops = Crop.objects.filter(project=project)
        return crops.filter(Q(active=True) | Q(consensus__isnull=False)).count()
    if format == ExportFormat.EVENTS_CSV:
        # A capture event is a sequence, or an image without one.
        sequences = images.exclude(seq_id="").values("seq_id").distinct().count()
        return sequences + images.filter(seq_id="").count()
    return images.count()


def _build(record: ExportFile, local: Path, progress: Progress) -> None:
    """Write the export's file to ``local``, streaming."""
    project = record.project
    if record.format == ExportFormat.CAMTRAP_DP:
        options = PackageOptions(**record.options)
        camtrap_dp_check(project=project, options=options)  # the project may have changed
        with open(local, "wb") as out:
            camtrap_dp_write(project=project, options=options, out=out, progress=progress)
    elif record.format == ExportFormat.COCO:
        with open(local, "w", encoding="utf-8") as text:
            for piece in export_coco_json(project=project, progress=progress):
                text.write(piece)
    else:
        header, rows = {
            ExportFormat.CROPS_CSV: (EXPORT_HEADER, export_crop_rows),
            ExportFormat.IMAGES_CSV: (IMAGE_HEADER, export_image_rows),
            ExportFormat.EVENTS_CSV: (EVENT_HEADER, export_event_rows),
        }[ExportFormat(record.format)]
        total = record.job.total
        with open(local, "w", encoding="utf-8", newline="") as text:
            writer = csv.writer(text)
            writer.writerow(header)
            for done, row in enumerate(rows(project=project), start=1):
                writer.writerow(csv_safe_row(row))
                # The total is counted when queued: rows may have come since (the page caps
                # the bar at 100%), and a changing total would make every call write.
                progress(done, total)
