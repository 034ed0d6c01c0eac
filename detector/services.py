"""Detector stage, Django side: run a detector over a project's images, store boxes, cut crops."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image as PILImage

from annotator.models import Image, Project
from detector.base import Box, Detector, DetectorError, ImageDetections
from detector.crops import crop_box
from detector.models import Crop, Detection

logger = logging.getLogger(__name__)

BATCH_SIZE = 64


@dataclass
class DetectionReport:
    images_done: int = 0
    empty: int = 0
    crops: int = 0
    # (file name, reason) for every image that could not be processed; the rest went on.
    problems: list[tuple[str, str]] = field(default_factory=list)


def detections_run(*, project: Project, detector: Detector) -> DetectionReport:
    """Run ``detector`` on every image of ``project`` not yet detected; store boxes and crops.

    Each image is committed on its own, so a killed run resumes where it stopped and never
    processes an image twice.
    """
    report = DetectionReport()
    pending = Image.objects.filter(project=project, detected_at__isnull=True).order_by("id")
    batch: list[Image] = []
    for image in pending.iterator(chunk_size=BATCH_SIZE):
        batch.append(image)
        if len(batch) == BATCH_SIZE:
            _detect_batch(project=project, detector=detector, images=batch, report=report)
            batch = []
    if batch:
        _detect_batch(project=project, detector=detector, images=batch, report=report)
    return report


def _detect_batch(
    *, project: Project, detector: Detector, images: list[Image], report: DetectionReport
) -> None:
    for image in images:
        try:
            [result] = detector.detect([image.file_name])
        except (DetectorError, KeyError) as exc:
            report.problems.append((image.file_name, str(exc)))
            continue
        if result.failure is not None:
            report.problems.append((image.file_name, f"detector failed: {result.failure}"))
            continue
        try:
            n_crops = _image_store(project=project, image=image, detector=detector, result=result)
        except (OSError, ValueError, DetectorError) as exc:
            report.problems.append((image.file_name, f"cannot crop: {exc}"))
            continue
        report.images_done += 1
        report.crops += n_crops
        report.empty += n_crops == 0


def _image_store(
    *, project: Project, image: Image, detector: Detector, result: ImageDetections
) -> int:
    """Store one image's detections and crops in one transaction; return the number of crops."""
    version = f"{detector.name} {detector.version}"
    with transaction.atomic():
        detections = [
            Detection.objects.create(
                image=image,
                x=box.x,
                y=box.y,
                w=box.w,
                h=box.h,
                confidence=box.confidence,
                category=box.category,
                detector_version=version,
            )
            for box in result.boxes
        ]
        kept = [d for d in detections if _is_animal(d, threshold=project.detection_threshold)]
        if kept:
            _crops_write(project=project, image=image, detections=kept)
        image.detected_at = timezone.now()
        image.detector_version = version
        image.count = len(kept)
        image.is_empty = not kept
        image.save(update_fields=["detected_at", "detector_version", "count", "is_empty"])
    return len(kept)


def _is_animal(detection: Detection, *, threshold: float) -> bool:
    return detection.category == "animal" and detection.confidence >= threshold


def _crops_write(*, project: Project, image: Image, detections: Iterable[Detection]) -> None:
    out_dir = Path(settings.MEDIA_ROOT) / "crops" / str(project.pk)
    out_dir.mkdir(parents=True, exist_ok=True)
    with PILImage.open(image.path) as source:
        source.load()
        for det in detections:
            box = Box(
                x=det.x, y=det.y, w=det.w, h=det.h, confidence=det.confidence, category=det.category
            )
            crop = crop_box(source, box, padding=project.crop_padding)
            relative = Path("crops") / str(project.pk) / f"{det.pk}.jpg"
            crop.save(Path(settings.MEDIA_ROOT) / relative, format="JPEG", quality=90)
            Crop.objects.create(
                project=project,
                image=image,
                detection=det,
                file=relative.as_posix(),
                padding=project.crop_padding,
            )
