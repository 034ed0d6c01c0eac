"""Reads of the detector stage: pending images, job progress, counts per capture event."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone

from annotator.models import Image, Project
from detector.models import DetectionJob


def images_pending(*, project: Project) -> int:
    """Images of ``project`` that no detector has processed yet."""
    return Image.objects.filter(project=project, detected_at__isnull=True).count()


def image_roots_pending(*, project: Project) -> list[Path]:
    """The import folders that hold the project's undetected images."""
    roots = set()
    pending = Image.objects.filter(project=project, detected_at__isnull=True)
    for path, file_name in pending.values_list("path", "file_name").iterator(chunk_size=5000):
        roots.add(Path(path[: len(path) - len(file_name)]))
    return sorted(roots)


@dataclass(frozen=True)
class JobProgress:
    job: DetectionJob
    done: int
    total: int
    rate: float | None  # images per second since the job started
    seconds_left: float | None


def detection_job_latest(*, project: Project) -> JobProgress | None:
    """Progress of the project's newest detection job, with rate and time left."""
    job = DetectionJob.objects.filter(project=project).order_by("-created_at", "-id").first()
    if job is None:
        return None
    rate = seconds_left = None
    if job.started_at is not None and job.done:
        end = job.finished_at or timezone.now()
        elapsed = max((end - job.started_at).total_seconds(), 1e-6)
        rate = job.done / elapsed
        seconds_left = max(job.total - job.done - job.failed, 0) / rate
    return JobProgress(job=job, done=job.done, total=job.total, rate=rate,
                       seconds_left=seconds_left)


def event_counts(*, project: Project) -> dict[str, int]:
    """Count per capture event: the maximum image count over its frames (the paper's rule)."""
    counts: dict[str, int] = defaultdict(int)
    rows = Image.objects.filter(project=project, count__isnull=False).exclude(seq_id="")
    for seq_id, count in rows.values_list("seq_id", "count").iterator(chunk_size=5000):
        counts[seq_id] = max(counts[seq_id], count or 0)
    return dict(counts)
