"""Detection jobs: recorded, queued for the worker (by task name, through the outbox) or run
in the foreground, resumable after a kill, with progress for the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.utils import timezone

from detector.base import DetectorError
from detector.models import DetectionJob
from detector.selectors import image_roots_pending, images_pending
from detector.services import (
    DETECTORS,
    MAX_PROBLEMS_KEPT,
    DetectionReport,
    detections_run,
    detector_for_root,
)
from projects.image_source import is_remote, s3_location_split
from projects.import_roots import FolderImportError, import_path_check
from projects.jobs import worker_current
from projects.models import Project
from projects.taskqueue import task_enqueue

# The Celery task this module queues, by name (``embeddings.tasks`` defines it and imports
# this module). The name is the one it had in ``annotator.tasks``, so that tasks already in the
# outbox when a site upgrades still run.
DETECTION_TASK = "annotator.tasks.detection_job_task"


def detection_job_create(
    *, project: Project, detector: str, options: dict[str, str] | None = None, queue: bool = True
) -> DetectionJob:
    """Record a detection job for the project's undetected images; queue it for the worker.

    With ``queue=False`` the caller runs it (``detection_job_run``), e.g. a command in a terminal.
    """
    if detector not in DETECTORS:
        raise DetectorError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if options and options.get("file") and is_remote(options["file"]):
        # A COCO file in a bucket (an S3 import's): read from there when the job runs.
        try:
            s3_location_split(options["file"])
        except ValueError as exc:
            raise DetectorError(str(exc)) from exc
    elif options and options.get("file"):
        # A detections file is read like an import's JSON, so it obeys the same roots.
        try:
            resolved = import_path_check(path=Path(options["file"]), what="the detections file")
        except FolderImportError as exc:
            raise DetectorError(str(exc)) from exc
        options = {**options, "file": str(resolved)}
    job = DetectionJob.objects.create(
        project=project,
        detector=detector,
        options=options or {},
        total=images_pending(project=project),
    )
    if queue:
        task_enqueue(name=DETECTION_TASK, args=[job.pk])  # kept if the broker is down
    return job


def detection_job_run(
    *, job_id: int, then: Callable[[Project], object] | None = None
) -> DetectionJob:
    """Run a detection job to the end, then ``then(project)``; mark it done. Safe to run again.

    Images already detected are skipped, so a job that was killed (or redelivered after a
    worker died) continues where it stopped. Progress is saved after every batch. ``then`` is
    the next stage of the pipeline (``embeddings.pipeline`` passes the embedding of the new
    crops): it runs inside the job, so the job is done only when its crops are embedded, and
    its failure fails the job.
    """
    job = DetectionJob.objects.select_related("project").get(pk=job_id)
    if job.status == DetectionJob.Status.DONE:
        return job
    project = job.project
    job.status, job.started_at = DetectionJob.Status.RUNNING, job.started_at or timezone.now()
    job.worker = worker_current()
    job.total = job.done + job.failed + images_pending(project=project)
    job.save(update_fields=["status", "started_at", "worker", "total"])
    try:
        for root in image_roots_pending(project=project):
            detector = detector_for_root(
                project=project, name=job.detector, root=root, options=job.options
            )
            detections_run(
                project=project, detector=detector, root=root, progress=_job_progress(job)
            )
        if then is not None:
            then(project)
    except Exception as exc:
        job.status, job.error = DetectionJob.Status.FAILED, f"{type(exc).__name__}: {exc}"
        job.save(update_fields=["status", "error"])
        raise
    job.status, job.finished_at = DetectionJob.Status.DONE, timezone.now()
    job.save(update_fields=["status", "finished_at"])
    return job


def _job_progress(job: DetectionJob) -> Callable[[DetectionReport, int], None]:
    """Fold each batch's report into the job row: done, failed, crops and the first problems."""
    base_done, base_failed, base_crops = job.done, job.failed, job.crops
    base_problems = list(job.problems)

    def update(report: DetectionReport, remaining: int) -> None:
        job.done = base_done + report.images_done
        job.failed = base_failed + len(report.problems)
        job.crops = base_crops + report.crops
        job.problems = (base_problems + [list(p) for p in report.problems])[:MAX_PROBLEMS_KEPT]
        job.save(update_fields=["done", "failed", "crops", "problems", "updated_at"])

    return update
