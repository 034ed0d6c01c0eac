"""Reads of the detector stage: pending images, job progress, counts per capture event."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone

from detector.base import Box
from detector.models import Detection, DetectionJob
from projects.image_source import is_remote
from projects.models import Image, Project


def images_pending(*, project: Project) -> int:
    """Images of ``project`` that no detector has processed yet."""
    return Image.objects.filter(project=project, detected_at__isnull=True).count()


def images_detected(*, project: Project) -> int:
    """Images of ``project`` that a detector has processed (those crops are derived from)."""
    return Image.objects.filter(project=project, detected_at__isnull=False).count()


def image_roots_pending(*, project: Project) -> list[Path | str]:
    """The import folders that hold the project's undetected images: a Path for a folder on
    this machine, the ``s3://bucket/prefix`` string (no trailing slash) for a bucket's prefix
    (a Path would fold its "//")."""
    roots: set[Path | str] = set()
    pending = Image.objects.filter(project=project, detected_at__isnull=True)
    for path, file_name in pending.values_list("path", "file_name").iterator(chunk_size=5000):
        folder = path[: len(path) - len(file_name)]
        roots.add(folder.rstrip("/") if is_remote(folder) else Path(folder))
    return sorted(roots, key=str)


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
    return JobProgress(
        job=job, done=job.done, total=job.total, rate=rate, seconds_left=seconds_left
    )


def event_counts(*, project: Project) -> dict[str, int]:
    """Count per capture event: the maximum image count over its frames (the paper's rule)."""
    counts: dict[str, int] = defaultdict(int)
    rows = Image.objects.filter(project=project, count__isnull=False).exclude(seq_id="")
    for seq_id, count in rows.values_list("seq_id", "count").iterator(chunk_size=5000):
        counts[seq_id] = max(counts[seq_id], count or 0)
    return dict(counts)


def detections_by_file(*, project: Project, min_box_pixels: int = 0) -> dict[str, list[Box]]:
    """Stored animal boxes of every detected image, keyed by file name (all confidences).

    Boxes smaller than ``min_box_pixels`` on either side are left out, as they are for crops.
    """
    result: dict[str, list[Box]] = {}
    images = Image.objects.filter(project=project, detected_at__isnull=False)
    sizes = {}
    for pk, file_name, width, height in images.values_list("pk", "file_name", "width", "height"):
        result[file_name] = []
        sizes[pk] = (file_name, width, height)
    rows = Detection.objects.filter(image__project=project, category="animal").values_list(
        "image_id", "x", "y", "w", "h", "confidence"
    )
    for image_id, x, y, w, h, confidence in rows.iterator(chunk_size=5000):
        file_name, width, height = sizes[image_id]
        if w * width >= min_box_pixels and h * height >= min_box_pixels:
            result[file_name].append(
                Box(x=x, y=y, w=w, h=h, confidence=confidence, category="animal")
            )
    return result
