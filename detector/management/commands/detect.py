from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from detector.base import DetectorError, WeightsUnavailableError
from detector.jobs import DETECTION_TASK, detection_job_create
from detector.models import DetectionJob
from detector.services import DETECTORS
from projects.management.commands._common import project_by_name
from projects.taskqueue import task_run


class Command(BaseCommand):
    help = (
        "Run a detector over the project's images that have none yet, cut crops and embed them. "
        "Resumable: a run that was stopped continues where it left off. Default detector: "
        "megadetector when TRAPWISE_MEGADETECTOR_WEIGHTS is set, else offline."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or name")
        parser.add_argument("--detector", choices=DETECTORS)
        parser.add_argument("--weights", help="MegaDetector weights: a .pt file or model name")
        parser.add_argument(
            "--device", help="torch device for MegaDetector (default: cuda if present)"
        )
        parser.add_argument("--file", help="the JSON file, for --detector megadetector-json/coco")
        parser.add_argument(
            "--queue", action="store_true", help="hand the job to the Celery worker and return"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_name(options["project"])
        name = options["detector"] or (
            "megadetector" if settings.TRAPWISE_MEGADETECTOR_WEIGHTS else "offline"
        )
        job_options = {k: options[k] for k in ("weights", "device", "file") if options[k]}
        try:
            job = detection_job_create(
                project=project, detector=name, options=job_options, queue=options["queue"]
            )
            if options["queue"]:
                self.stdout.write(f"detection job {job.pk} queued: {job.total} images ({name})")
                return
            self.stdout.write(f"detecting {job.total} images with {name} …")
            # The worker's task, run here: detection, then the embedding of the new crops
            # (``embeddings.pipeline``, an app above this one, so it is found by name).
            task_run(name=DETECTION_TASK, args=[job.pk])
            job.refresh_from_db()
        except (DetectorError, WeightsUnavailableError) as exc:
            raise CommandError(str(exc)) from exc
        self._report(job)

    def _report(self, job: DetectionJob) -> None:
        elapsed = (
            (job.finished_at - job.started_at).total_seconds()
            if job.finished_at and job.started_at
            else 0
        )
        rate = f", {job.done / elapsed:.1f} images/s" if elapsed > 0 else ""
        self.stdout.write(
            f"detection: {job.done} images, {job.crops} crops, {job.failed} problems{rate}"
        )
        for file_name, reason in job.problems:
            self.stderr.write(f"  skipped {file_name}: {reason}")
