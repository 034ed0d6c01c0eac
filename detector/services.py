"""Detector stage, Django side: run a detector over a project's images, store boxes, cut crops.

Raw boxes are stored as ``Detection`` rows; crops, empty flags and counts are derived from them
with the project's thresholds, so changing a threshold never runs the detector again.
"""

from __future__ import annotations

import io
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from PIL import Image as PILImage

from detector.base import Box, Detector, DetectorError, ImageDetections
from detector.crops import crop_box, image_upright
from detector.models import Crop, Detection
from projects.image_source import (
    image_source_open,
    is_remote,
    json_source_read,
    s3_location_join,
)
from projects.locks import image_lock
from projects.models import Image, Project
from projects.sequences import capture_event
from projects.storage import stored_delete, stored_put

logger = logging.getLogger(__name__)

BATCH_SIZE = 32
MAX_PROBLEMS_KEPT = 200


@dataclass
class DetectionReport:
    images_done: int = 0
    empty: int = 0
    crops: int = 0
    # (file name, reason) for every image that could not be processed; the rest went on.
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class DeriveReport:
    created: int = 0
    recut: int = 0
    activated: int = 0
    deactivated: int = 0
    # (file name, reason) for every image whose crops could not be cut (e.g. its file is
    # gone); its other changes were made, and the next re-derivation tries the cut again.
    problems: list[tuple[str, str]] = field(default_factory=list)


ProgressCallback = Callable[[DetectionReport, int], None]
# Files that cannot be cut into crops: unreadable or missing (OSError), undecodable
# (ValueError, SyntaxError from some image plugins), too large (DecompressionBombError).
CUT_ERRORS = (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError)


def detections_run(
    *,
    project: Project,
    detector: Detector,
    root: Path | str | None = None,
    progress: ProgressCallback | None = None,
) -> DetectionReport:
    """Run ``detector`` on every image of ``project`` not yet detected; store boxes and crops.

    Images go to the detector in batches; each image is committed on its own, so a killed run
    resumes where it stopped and never processes an image twice. ``progress(report, pending)``
    is called after every batch. With ``root``, only images under that folder (or
    ``s3://bucket/prefix``) are run.
    """
    report = DetectionReport()
    pending = Image.objects.filter(project=project, detected_at__isnull=True).order_by("id")
    if root is not None:
        pending = pending.filter(path__startswith=f"{root}/")
    remaining = pending.count()
    batch: list[Image] = []
    for image in pending.iterator(chunk_size=BATCH_SIZE):
        batch.append(image)
        if len(batch) == BATCH_SIZE:
            _detect_batch(project=project, detector=detector, images=batch, report=report)
            remaining -= len(batch)
            batch = []
            if progress is not None:
                progress(report, remaining)
    if batch:
        _detect_batch(project=project, detector=detector, images=batch, report=report)
        if progress is not None:
            progress(report, 0)
    return report


def _detect_batch(
    *, project: Project, detector: Detector, images: list[Image], report: DetectionReport
) -> None:
    results: list[ImageDetections | str]
    try:
        results = list(detector.detect([image.file_name for image in images]))
    except DetectorError:
        # One unknown file must not sink the batch: ask again image by image.
        results = [_detect_one(detector, image.file_name) for image in images]
    for image, result in zip(images, results, strict=True):
        if isinstance(result, str):
            _problem(report, image, result)
        elif result.failure is not None:
            _image_failure(image, result.failure)
            _problem(report, image, f"detector failed: {result.failure}")
        else:
            _image_store_or_report(
                project=project, image=image, detector=detector, result=result, report=report
            )


def _detect_one(detector: Detector, file_name: str) -> ImageDetections | str:
    try:
        [result] = detector.detect([file_name])
    except DetectorError as exc:
        return str(exc)
    return result


def _image_store_or_report(
    *,
    project: Project,
    image: Image,
    detector: Detector,
    result: ImageDetections,
    report: DetectionReport,
) -> None:
    try:
        n_crops = _image_store(project=project, image=image, detector=detector, result=result)
    except (OSError, ValueError, DetectorError) as exc:
        _problem(report, image, f"cannot crop: {exc}")
        return
    report.images_done += 1
    report.crops += n_crops
    report.empty += n_crops == 0


def _problem(report: DetectionReport, image: Image, reason: str) -> None:
    report.problems.append((image.file_name, reason))


def _image_failure(image: Image, reason: str) -> None:
    image.detection_failure = reason
    image.save(update_fields=["detection_failure"])


def _image_store(
    *, project: Project, image: Image, detector: Detector, result: ImageDetections
) -> int:
    """Store one image's detections and derive its crops in one transaction; return #crops."""
    version = f"{detector.name} {detector.version}"[:300]
    with transaction.atomic():
        Detection.objects.bulk_create(
            Detection(
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
        )
        image.detected_at = timezone.now()
        image.detector_version = version
        image.detection_failure = ""
        image.save(update_fields=["detected_at", "detector_version", "detection_failure"])
        _image_crops_derive(project=project, image=image, report=DeriveReport())
    return image.count or 0


def detection_kept(detection: Detection, *, project: Project, image: Image) -> bool:
    """Whether a stored box becomes a crop under the project's thresholds. A box a person
    dropped never does; one a person drew always does (a person's word beats a threshold)."""
    if detection.dropped_at is not None:
        return False
    if detection.drawn_by_id is not None:
        return True
    return (
        detection.category == "animal"
        and detection.confidence >= project.detection_threshold
        and detection.w * image.width >= project.min_box_pixels
        and detection.h * image.height >= project.min_box_pixels
    )


def crops_rederive(
    *, project: Project, progress: Callable[[int], None] | None = None
) -> DeriveReport:
    """Re-derive crops, empty flags and counts of every detected image from stored boxes.

    Crops whose box falls below the thresholds are deactivated, never deleted (labels on them
    stay); boxes that now pass get a crop (reactivated or cut); a changed geometry (padding or
    shape) recuts the crop file. Nothing runs the detector.

    Image by image, each in its own transaction: an image whose crops cannot be cut (its file
    missing or unreadable) keeps its old crops, is listed in ``report.problems``, and the
    rest go on; running it again cuts what is still to cut. ``progress(images_done)`` is
    called after every image.
    """
    report = DeriveReport()
    images = Image.objects.filter(project=project, detected_at__isnull=False).order_by("id")
    for done, image in enumerate(images.iterator(chunk_size=500), start=1):
        with transaction.atomic():
            _image_crops_derive(project=project, image=image, report=report, report_cut_errors=True)
        if progress is not None:
            progress(done)
    return report


def _image_crops_derive(
    *, project: Project, image: Image, report: DeriveReport, report_cut_errors: bool = False
) -> None:
    """Derive one image's crops, flags and count. A cut that fails raises (the caller's
    transaction undoes the image) or, with ``report_cut_errors``, is listed in ``report``
    while the image's other changes are kept."""
    detections = list(image.detections.select_related("crop").order_by("-confidence", "id"))
    kept = [d for d in detections if detection_kept(d, project=project, image=image)]
    kept_ids = {d.pk for d in kept}
    for det in detections:
        crop = getattr(det, "crop", None)
        if crop is not None and crop.active and det.pk not in kept_ids:
            crop.active = False
            crop.save(update_fields=["active"])
            report.deactivated += 1
    to_cut = [d for d in kept if _needs_cut(d, project=project)]
    if to_cut and not report_cut_errors:
        _crops_write(project=project, image=image, detections=to_cut, report=report)
    elif to_cut:
        cut = DeriveReport()
        try:
            with transaction.atomic():  # a savepoint: a failed cut leaves the old crops
                _crops_write(project=project, image=image, detections=to_cut, report=cut)
        except CUT_ERRORS as exc:
            report.problems.append((image.file_name, f"crops not cut: {exc}"))
            # The rows in memory may hold what the savepoint rolled back: read them again.
            kept = list(image.detections.select_related("crop").filter(pk__in=kept_ids))
        else:
            report.created += cut.created
            report.recut += cut.recut
    for det in kept:
        crop = getattr(det, "crop", None)
        if crop is not None and not crop.active:
            crop.active = True
            crop.save(update_fields=["active"])
            report.activated += 1
    image.count = len(kept)
    image.is_empty = not kept
    image.save(update_fields=["count", "is_empty"])


def _needs_cut(detection: Detection, *, project: Project) -> bool:
    """No crop yet, or one cut with another geometry than the project's."""
    crop = getattr(detection, "crop", None)
    return crop is None or (crop.padding, crop.shape) != (project.crop_padding, project.crop_shape)


def crop_name_new(*, project_id: int, detection_id: int) -> str:
    """A fresh name in the crops storage for a cut of ``detection_id``'s crop.

    Names are immutable (``projects.storage``): a recut is a new file under a new name, never
    new bytes under an old one, so no cache (a worker's, a browser's, a CDN's) can serve a
    stale cut. The random part makes every cut's name new, even when a rolled-back
    detection's primary key is given out again.
    """
    return f"crops/{project_id}/{detection_id}-{secrets.token_hex(4)}.jpg"


def _crops_write(
    *, project: Project, image: Image, detections: list[Detection], report: DeriveReport
) -> None:
    """Cut ``detections``' crops of ``image`` and publish each under a new name.

    The files replaced by recuts are deleted once the caller's transaction commits (a rolled
    back recut leaves the row pointing at its old file, which must stay); on an error the
    files already published here are deleted before it propagates.
    """
    written: list[str] = []
    replaced: list[str] = []
    try:
        # A local image through file_open_regular (one replaced by a named pipe must not block
        # the worker); an s3:// one streamed into memory.
        with image_source_open(image.path) as handle, PILImage.open(handle) as opened:
            opened.load()
            # Boxes are relative to the upright image (EXIF orientation applied), as stored.
            source = image_upright(opened)
            for det in detections:
                name = crop_name_new(project_id=project.pk, detection_id=det.pk)
                box = Box(
                    x=det.x,
                    y=det.y,
                    w=det.w,
                    h=det.h,
                    confidence=det.confidence,
                    category=det.category,
                )
                encoded = io.BytesIO()
                crop_box(source, box, padding=project.crop_padding, shape=project.crop_shape).save(
                    encoded, format="JPEG", quality=90
                )
                stored_put(kind="crops", name=name, content=encoded.getvalue())
                written.append(name)
                old = _crop_row_save(
                    project=project, image=image, det=det, name=name, report=report
                )
                if old is not None:
                    replaced.append(old)
    except BaseException:
        # The caller's transaction rolls the new rows back; take their files with them.
        for name in written:
            stored_delete(kind="crops", name=name)
        raise
    if replaced:
        transaction.on_commit(partial(_crop_files_delete, names=replaced))


def _crop_files_delete(*, names: list[str]) -> None:
    """Delete crop files no row points to any more; a failure is logged, never raised (the
    transaction that replaced them has committed, and an orphan file harms nobody)."""
    for name in names:
        try:
            stored_delete(kind="crops", name=name)
        except Exception:
            logger.exception("replaced crop file %s not deleted", name)


def _crop_row_save(
    *, project: Project, image: Image, det: Detection, name: str, report: DeriveReport
) -> str | None:
    """Point ``det``'s crop row (created if need be) at the new file ``name``; return the
    name of the file it pointed to before (None for a new row)."""
    crop = getattr(det, "crop", None)
    if crop is None:
        det.crop = Crop.objects.create(
            project=project,
            image=image,
            detection=det,
            file=name,
            padding=project.crop_padding,
            shape=project.crop_shape,
        )
        report.created += 1
        return None
    old = str(crop.file)
    crop.padding, crop.shape, crop.file = project.crop_padding, project.crop_shape, name
    crop.save(update_fields=["padding", "shape", "file"])
    report.recut += 1
    return old if old and old != name else None


class BoxError(ValueError):
    """A box a person drew or changed was refused; nothing was written."""


# Slack for a box drawn to the very edge: 0.1 + 0.9 is 1.0000000000000002 in floating point.
_EDGE_EPS = 1e-9


def box_check(*, image: Image, x: float, y: float, w: float, h: float) -> None:
    """Refuse a drawn box (normalised top-left x, y, width, height) that is not a finite,
    positive-size rectangle inside the image and at least one pixel each way."""
    values = {"x": x, "y": y, "w": w, "h": h}
    for name, value in values.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise BoxError(f"{name} must be a finite number, got {value!r}")
    if w <= 0 or h <= 0:
        raise BoxError("the box must have a positive width and height")
    if x < 0 or y < 0 or x + w > 1 + _EDGE_EPS or y + h > 1 + _EDGE_EPS:
        raise BoxError("the box must lie inside the image (coordinates between 0 and 1)")
    if w * image.width < 1 or h * image.height < 1:
        raise BoxError("the box must be at least one pixel wide and high")


def box_draw(
    *,
    image: Image,
    user: User,
    x: float,
    y: float,
    w: float,
    h: float,
    replaces: Detection | None = None,
) -> Detection:
    """Store a box a person drew on a detected ``image`` (an animal the detector missed, or a
    redraw of ``replaces``, which is then dropped) and cut its crop, in one transaction.

    The box is kept whatever the thresholds (``detection_kept``); the image's count and empty
    flag follow. The crop is not embedded here: the caller queues that (embeddings.pipeline).

    Raises:
        BoxError: a bad box (``box_check``), an image not yet detected or whose file cannot be
            cut, or ``replaces`` not a live box of this image; nothing is written.
    """
    box_check(image=image, x=x, y=y, w=w, h=h)
    if image.detected_at is None:
        raise BoxError("the image has not been through the detector yet")
    now = timezone.now()
    with transaction.atomic():
        image = image_lock(image_id=image.pk)
        if replaces is not None:
            _box_live(replaces, image=image)
            Detection.objects.filter(pk=replaces.pk).update(dropped_by=user, dropped_at=now)
        detection = Detection.objects.create(
            image=image,
            x=x,
            y=y,
            w=w,
            h=h,
            confidence=1.0,
            category="animal",
            detector_version=Detection.HUMAN,
            drawn_by=user,
            drawn_at=now,
            replaces=replaces,
        )
        try:
            _image_crops_derive(project=image.project, image=image, report=DeriveReport())
        except CUT_ERRORS as exc:
            # The transaction is undone: no box without its crop.
            raise BoxError(f"the image file cannot be cut: {exc}") from exc
    return detection


def box_drop(*, detection: Detection, user: User) -> None:
    """Drop a box that shows no animal: its crop is deactivated (kept, with its labels) and the
    image's count and empty flag follow. Raises BoxError, writing nothing, for a box already
    dropped."""
    with transaction.atomic():
        image = image_lock(image_id=detection.image_id)
        _box_live(detection, image=image)
        Detection.objects.filter(pk=detection.pk).update(dropped_by=user, dropped_at=timezone.now())
        _image_crops_derive(project=image.project, image=image, report=DeriveReport())


def _box_live(detection: Detection, *, image: Image) -> None:
    fresh = Detection.objects.filter(pk=detection.pk, image=image).first()
    if fresh is None:
        raise BoxError("that box is not on this image")
    if fresh.dropped_at is not None:
        raise BoxError("that box was already dropped or redrawn")


DETECTORS = ("offline", "megadetector", "megadetector-json", "coco")


def detector_for_root(
    *, project: Project, name: str, root: Path | str, options: dict[str, str]
) -> Detector:
    """Build the detector ``name`` for the images of ``project`` under ``root`` (a folder, or
    an ``s3://bucket/prefix`` whose images the detector then reads through
    ``projects.image_source.image_source_open``).

    offline: background model per capture sequence (no weights). megadetector: model weights
    from ``options["weights"]`` (a path or a model name) or TRAPWISE_MEGADETECTOR_WEIGHTS.
    megadetector-json / coco: boxes from the file in ``options["file"]``.
    """
    if name == "offline":
        from detector.offline import OfflineDetector

        sequences, cameras, times = _frames_under(project=project, root=root)
        return OfflineDetector(
            root=Path(root),
            sequences=sequences,
            cameras=cameras,
            times=times,
            opener=_opener(root),
        )
    if name == "megadetector":
        from detector.megadetector import MegaDetector

        weights = options.get("weights") or settings.TRAPWISE_MEGADETECTOR_WEIGHTS
        if not weights:
            raise DetectorError(
                "MegaDetector needs weights: pass --weights PATH (an MDv5a/MDv5b .pt file) or "
                "set TRAPWISE_MEGADETECTOR_WEIGHTS"
            )
        return MegaDetector(
            root=Path(root),
            weights=weights,
            device=options.get("device") or None,
            opener=_opener(root),
        )
    if name in ("megadetector-json", "coco"):
        from detector.imported import ImportedDetector

        if not options.get("file"):
            raise DetectorError(f"detector {name!r} needs the JSON file (--file)")
        if is_remote(options["file"]):
            if name != "coco":
                raise DetectorError(f"detector {name!r} reads its JSON file from this machine")
            try:
                raw = json_source_read(options["file"])
            except OSError as exc:
                raise DetectorError(f"cannot read the COCO file: {exc}") from exc
            return ImportedDetector.from_coco_camera_traps(Path(options["file"]), raw=raw)
        path = Path(options["file"])
        if name == "coco":
            return ImportedDetector.from_coco_camera_traps(path)
        return ImportedDetector.from_megadetector_json(path)
    raise DetectorError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def _opener(root: Path | str) -> Callable[[str], BinaryIO] | None:
    """For images in a bucket: the detector's reader of ``root``'s images by relative name."""
    if not is_remote(root):
        return None  # a local folder: the detector opens root / name itself, as it always has
    prefix = str(root)
    return lambda name: image_source_open(s3_location_join(prefix, name))


def _frames_under(
    *, project: Project, root: Path | str
) -> tuple[dict[str, str], dict[str, str], dict[str, datetime | None]]:
    """({file: capture event}, {file: camera}, {file: capture time}) for every image under
    ``root``, detected or not.

    The background of an event is modelled from all its frames, that of an image in a
    shorter event from its neighbours in its camera (the deployment where known, else the
    camera and folder of the import) ordered by time, else by file name.
    """
    rows = Image.objects.filter(project=project, path__startswith=f"{root}/")
    sequences: dict[str, str] = {}
    cameras: dict[str, str] = {}
    times: dict[str, datetime | None] = {}
    for pk, file_name, seq_id, camera, deployment, taken_at in rows.values_list(
        "pk", "file_name", "seq_id", "camera", "deployment_id", "taken_at"
    ):
        sequences[file_name] = capture_event(seq_id=seq_id, image_id=pk)
        if deployment is not None:
            cameras[file_name] = f"deployment:{deployment}"
        elif camera:
            cameras[file_name] = f"camera:{camera}"
        times[file_name] = taken_at
    return sequences, cameras, times
