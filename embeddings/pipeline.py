"""From images to embedded crops: a folder import with its boxes, a detection job followed by
embedding, and crops re-derived after a threshold change. Each step only adds what is new."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction

from detector.crops import CROP_SHAPES
from detector.imported import ImportedDetector
from detector.imports import ImportReport, images_import
from detector.jobs import detection_job_run
from detector.models import Detection, DetectionJob
from detector.selectors import images_detected
from detector.services import (
    DeriveReport,
    DetectionReport,
    box_draw,
    crops_rederive,
    detections_run,
)
from embeddings.services import embedding_version_build, embeddings_sync
from projects.image_source import is_remote, json_source_read
from projects.import_roots import FolderImportError, import_path_check
from projects.jobs import job_track
from projects.models import Image, Job, Project
from projects.taskqueue import task_enqueue

# The Celery task this module queues, by name (``embeddings.tasks`` defines it and imports
# this module). The name is the one it had in ``annotator.tasks``, so that tasks already in the
# outbox when a site upgrades still run.
CROPS_REFRESH_TASK = "annotator.tasks.project_crops_refresh_task"
# Embeds the crops the current embedding version lacks (a box a person drew).
CROPS_EMBED_TASK = "embeddings.tasks.project_crops_embed_task"


@dataclass
class IngestReport:
    images: ImportReport
    detection: DetectionReport | None
    embedding_version: int | None


def folder_ingest(
    *,
    project: Project,
    folder: Path | str,
    coco: Path | str | None = None,
    megadetector: Path | None = None,
    boxes: bool = True,
) -> IngestReport:
    """Import a folder, take its boxes from ``coco`` or ``megadetector`` JSON, crop and embed.

    With ``boxes=False`` the COCO file gives sequences and species only; the images then wait
    for ``detect``. Every step only adds what is new, so running it again changes nothing.
    The folder and the JSON files must lie inside the import roots (``import_path_check``),
    and the JSON files are read in full before anything is written: a bad file raises
    FolderImportError, CocoError or DetectorError and changes nothing.

    ``folder`` and ``coco`` may be ``s3://bucket/prefix`` strings (``images_import``): any
    bucket, as only server operators run this; the import roots apply to local paths only.
    """
    if coco is not None and megadetector is not None:
        raise FolderImportError("give boxes from either --coco or --megadetector, not both")
    if not is_remote(folder):
        import_path_check(path=Path(folder), what="the image folder")
    if megadetector is not None:
        megadetector = import_path_check(path=megadetector, what="the MegaDetector file")
    if coco is not None and not is_remote(coco):
        coco = import_path_check(path=Path(coco), what="the COCO file")
    # Read the box file before anything is written: a bad file changes nothing.
    detector = _imported_detector(coco=coco, megadetector=megadetector) if boxes else None
    images = images_import(project=project, folder=folder, coco=coco)
    detection = detections_run(project=project, detector=detector) if detector else None
    version = embeddings_sync(project=project) if project.crops.exists() else None
    return IngestReport(
        images=images,
        detection=detection,
        embedding_version=version.number if version is not None else None,
    )


def detection_job_run_and_embed(*, job_id: int) -> DetectionJob:
    """Run a detection job (``detector.jobs.detection_job_run``) and embed the crops it cut;
    the job is done once they are embedded. Safe to run again: what the worker runs."""
    return detection_job_run(job_id=job_id, then=lambda project: embeddings_sync(project=project))


def _imported_detector(
    *, coco: Path | str | None, megadetector: Path | None
) -> ImportedDetector | None:
    if megadetector is not None:
        return ImportedDetector.from_megadetector_json(megadetector)
    if coco is not None and is_remote(coco):
        try:
            raw = json_source_read(str(coco))
        except OSError as exc:
            raise FolderImportError(f"the COCO file: {exc}; nothing imported") from exc
        return ImportedDetector.from_coco_camera_traps(Path(str(coco)), raw=raw)
    if coco is not None:
        return ImportedDetector.from_coco_camera_traps(Path(coco))
    return None


def project_thresholds_update(
    *,
    project: Project,
    detection_threshold: float,
    min_box_pixels: int,
    crop_padding: float,
    crop_shape: str | None = None,
    queue: bool = True,
) -> DeriveReport | None:
    """Change the thresholds and the crop geometry; crops are then re-derived from the stored
    boxes (no detector): a changed padding or shape recuts and re-embeds every crop.

    ``crop_shape`` is "box" or "square" (``detector.crops.CROP_SHAPES``); None keeps the
    project's. With ``queue`` (the web app) the re-derivation runs in the worker; without,
    here, and its report is returned.

    Raises:
        ValueError: a threshold or padding outside [0, 1] or an unknown shape; nothing is saved.
    """
    if not 0.0 <= detection_threshold <= 1.0 or not 0.0 <= crop_padding <= 1.0:
        raise ValueError("the detection threshold and the crop padding must lie in [0, 1]")
    if crop_shape is not None and crop_shape not in CROP_SHAPES:
        raise ValueError(f"the crop shape must be one of {', '.join(CROP_SHAPES)}")
    project.detection_threshold = detection_threshold
    project.min_box_pixels = min_box_pixels
    project.crop_padding = crop_padding
    if crop_shape is not None:
        project.crop_shape = crop_shape
    project.save(
        update_fields=["detection_threshold", "min_box_pixels", "crop_padding", "crop_shape"]
    )
    if queue:
        task_enqueue(name=CROPS_REFRESH_TASK, args=[project.pk])
        return None
    return project_crops_refresh(project_id=project.pk)


def project_crops_refresh(*, project_id: int) -> DeriveReport:
    """Re-derive crops from stored boxes with the current thresholds; re-embed what changed.

    New crops join the current embedding version; recut crops (a changed geometry) make the
    current vectors stale, so a new embedding version is built and switched to. Running it
    twice changes nothing the second time.

    Recorded as a "crops" job on the dashboard. An image that cannot be cut (its file missing
    or unreadable) is a problem listed on the job, the other images and the embedding go on,
    and its old crops stay; running it again (e.g. saving the thresholds again once the file
    is back) cuts what is left.
    """
    project = Project.objects.get(pk=project_id)
    total = images_detected(project=project)
    with job_track(
        project=project,
        kind=Job.Kind.CROPS,
        total=total,
        detail="re-deriving crops from the stored boxes",
    ) as job:
        report = crops_rederive(project=project, progress=job.advance)
        if report.problems:
            job.problems(
                report.problems,
                detail=f"{len(report.problems)} of {total} images could not be cut (their "
                "old crops stay): save the thresholds again once their files are back",
            )
        if report.recut:
            embedding_version_build(project=project)
        elif report.created:
            embeddings_sync(project=project)
    return report


def box_draw_and_embed(
    *,
    image: Image,
    user: User,
    x: float,
    y: float,
    w: float,
    h: float,
    replaces: Detection | None = None,
) -> Detection:
    """A box a person drew (``detector.services.box_draw``): its crop is cut now and its
    embedding is queued for the worker (``CROPS_EMBED_TASK``, through the outbox, in the same
    transaction), after which the crop enters the loop like any other. Raises BoxError,
    writing nothing, for a bad box."""
    with transaction.atomic():
        detection = box_draw(image=image, user=user, x=x, y=y, w=w, h=h, replaces=replaces)
        task_enqueue(name=CROPS_EMBED_TASK, args=[image.project_id])
    return detection


def project_crops_embed(*, project_id: int) -> int | None:
    """Embed the project's crops that its current embedding version lacks (version 1 is built
    when there is none); return the version's number, None without crops. Safe to run twice."""
    project = Project.objects.get(pk=project_id)
    if not project.crops.exists():
        return None
    return embeddings_sync(project=project).number
