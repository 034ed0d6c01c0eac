"""Writes for projects, members, species and images."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from annotator.coco import CocoMetadata, coco_metadata_read
from annotator.models import Image, Membership, Project, Role, Species
from annotator.sequences import FrameInfo, exif_camera_and_time, sequences_infer
from detector.base import DetectorError
from detector.imported import ImportedDetector
from detector.models import DetectionJob
from detector.selectors import image_roots_pending, images_pending
from detector.services import (
    DETECTORS,
    MAX_PROBLEMS_KEPT,
    DeriveReport,
    DetectionReport,
    crops_rederive,
    detections_run,
    detector_for_root,
)
from embeddings.services import embedding_version_build, embeddings_sync

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


class FolderImportError(ValueError):
    """An import that cannot start (bad folder or metadata file). Nothing was changed."""


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def project_create(
    *,
    name: str,
    created_by: User | None,
    seed: int = 0,
    backbone: str = "resnet50",
    backbone_weights: str = "imagenet",
    embedding_checkpoint: str = "",
    round_size: int = 100,
) -> Project:
    """Create a project; its creator becomes its admin.

    ``embedding_checkpoint`` starts the project from a trained embedding (e.g. one made by
    ``pretrain_embedding`` on other camera-trap data, as the paper's did) instead of the
    backbone's ImageNet weights with a random head.
    """
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            slug=slugify(name)[:200] or "project",
            seed=seed,
            backbone=backbone,
            backbone_weights=backbone_weights,
            embedding_checkpoint=str(Path(embedding_checkpoint).resolve())
            if embedding_checkpoint
            else "",
            round_size=round_size,
            created_by=created_by,
        )
        if created_by is not None:
            membership_set(project=project, user=created_by, role=Role.ADMIN)
    return project


def membership_set(*, project: Project, user: User, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``project`` (create or change)."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def species_ensure(*, project: Project, names: list[str]) -> list[Species]:
    """Add the species in ``names`` that the project lacks; return all of them in order."""
    existing = {s.name.lower(): s for s in project.species.all()}
    position = len(existing)
    for name in names:
        if name.lower() not in existing:
            existing[name.lower()] = Species.objects.create(
                project=project, name=name, position=position
            )
            position += 1
    return list(project.species.all())


def images_import(*, project: Project, folder: Path, coco: Path | None = None) -> ImportReport:
    """Add each image under ``folder`` (recursive; jpg, jpeg, png) not yet in ``project``.

    With ``coco``, a COCO Camera Traps file supplies sequence ids, frame numbers and species
    names. Images it gives no sequence id are grouped into capture events by camera and EXIF
    time. Unreadable files are reported and skipped; the rest of the folder goes on.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FolderImportError(f"{folder} is not a folder")
    metadata = coco_metadata_read(coco) if coco is not None else None
    if metadata is not None:
        species_ensure(project=project, names=metadata.species)
    report = ImportReport()
    known = set(Image.objects.filter(project=project).values_list("path", flat=True))
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if str(path) in known:
            report.already_present += 1
            continue
        _image_add(project=project, folder=folder, path=path, metadata=metadata, report=report)
    if report.added:
        images_sequences_infer(project=project)
    return report


def _image_add(
    *,
    project: Project,
    folder: Path,
    path: Path,
    metadata: CocoMetadata | None,
    report: ImportReport,
) -> None:
    file_name = path.relative_to(folder).as_posix()
    try:
        with warnings.catch_warnings():
            # Refuse decompression bombs outright instead of only warning about them.
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as img:
                width, height = img.size
                camera, taken_at = exif_camera_and_time(img, file_name=file_name)
    except (
        OSError,
        UnidentifiedImageError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ) as exc:
        report.problems.append((file_name, f"not a readable image: {exc}"))
        return
    meta = metadata.by_file.get(file_name) if metadata is not None else None
    Image.objects.create(
        project=project,
        path=str(path),
        file_name=file_name,
        width=width,
        height=height,
        seq_id=meta.seq_id if meta and meta.seq_id else "",
        seq_source="metadata" if meta and meta.seq_id else "",
        frame_num=meta.frame_num if meta else None,
        camera=camera,
        # Camera clocks have no time zone: the clock time is kept as it is, labelled UTC.
        taken_at=taken_at.replace(tzinfo=UTC) if taken_at else None,
    )
    report.added += 1


def images_sequences_infer(*, project: Project) -> int:
    """Give every image without imported sequence id a capture event from camera + time gaps.

    Recomputed over all such images of the project, so events that span two imports join up.
    Returns the number of images whose sequence id changed.
    """
    images = list(
        Image.objects.filter(project=project).exclude(seq_source="metadata").order_by("id")
    )
    events = sequences_infer(
        (FrameInfo(key=str(i.pk), camera=i.camera, taken_at=i.taken_at) for i in images),
        gap_seconds=project.sequence_gap_seconds,
    )
    changed = [i for i in images if i.seq_id != events[str(i.pk)]]
    for image in changed:
        image.seq_id, image.seq_source = events[str(image.pk)], "time"
    Image.objects.bulk_update(changed, ["seq_id", "seq_source"], batch_size=1000)
    return len(changed)


@dataclass
class IngestReport:
    images: ImportReport
    detection: DetectionReport | None
    embedding_version: int | None


def folder_ingest(
    *,
    project: Project,
    folder: Path,
    coco: Path | None = None,
    megadetector: Path | None = None,
    boxes: bool = True,
) -> IngestReport:
    """Import a folder, take its boxes from ``coco`` or ``megadetector`` JSON, crop and embed.

    With ``boxes=False`` the COCO file gives sequences and species only; the images then wait
    for ``detect``. Every step only adds what is new, so running it again changes nothing.
    """
    if coco is not None and megadetector is not None:
        raise FolderImportError("give boxes from either --coco or --megadetector, not both")
    images = images_import(project=project, folder=folder, coco=coco)
    detector = _imported_detector(coco=coco, megadetector=megadetector) if boxes else None
    detection = detections_run(project=project, detector=detector) if detector else None
    version = embeddings_sync(project=project) if project.crops.exists() else None
    return IngestReport(
        images=images,
        detection=detection,
        embedding_version=version.number if version is not None else None,
    )


def _imported_detector(*, coco: Path | None, megadetector: Path | None) -> ImportedDetector | None:
    if megadetector is not None:
        return ImportedDetector.from_megadetector_json(megadetector)
    if coco is not None:
        return ImportedDetector.from_coco_camera_traps(coco)
    return None


def detection_job_create(
    *, project: Project, detector: str, options: dict[str, str] | None = None, queue: bool = True
) -> DetectionJob:
    """Record a detection job for the project's undetected images; queue it for the worker.

    With ``queue=False`` the caller runs it (``detection_job_run``), e.g. a command in a terminal.
    """
    if detector not in DETECTORS:
        raise DetectorError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    job = DetectionJob.objects.create(
        project=project,
        detector=detector,
        options=options or {},
        total=images_pending(project=project),
    )
    if queue:
        from annotator.tasks import detection_job_task

        transaction.on_commit(lambda: detection_job_task.delay(job.pk))
    return job


def detection_job_run(*, job_id: int) -> DetectionJob:
    """Run a detection job to the end, then embed the new crops. Safe to run again.

    Images already detected are skipped, so a job that was killed (or redelivered after a
    worker died) continues where it stopped. Progress is saved after every batch.
    """
    job = DetectionJob.objects.select_related("project").get(pk=job_id)
    if job.status == DetectionJob.Status.DONE:
        return job
    project = job.project
    job.status, job.started_at = DetectionJob.Status.RUNNING, job.started_at or timezone.now()
    job.total = job.done + job.failed + images_pending(project=project)
    job.save(update_fields=["status", "started_at", "total"])
    try:
        for root in image_roots_pending(project=project):
            detector = detector_for_root(
                project=project, name=job.detector, root=root, options=job.options
            )
            detections_run(
                project=project, detector=detector, root=root, progress=_job_progress(job)
            )
        embeddings_sync(project=project)
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


def project_thresholds_update(
    *,
    project: Project,
    detection_threshold: float,
    min_box_pixels: int,
    crop_padding: float,
    queue: bool = True,
) -> DeriveReport | None:
    """Change the thresholds; crops are then re-derived from the stored boxes (no detector).

    With ``queue`` (the web app) the re-derivation runs in the worker; without, here, and its
    report is returned.
    """
    if not 0.0 <= detection_threshold <= 1.0 or not 0.0 <= crop_padding <= 1.0:
        raise ValueError("the detection threshold and the crop padding must lie in [0, 1]")
    project.detection_threshold = detection_threshold
    project.min_box_pixels = min_box_pixels
    project.crop_padding = crop_padding
    project.save(update_fields=["detection_threshold", "min_box_pixels", "crop_padding"])
    if queue:
        from annotator.tasks import project_crops_refresh_task

        transaction.on_commit(lambda: project_crops_refresh_task.delay(project.pk))
        return None
    return project_crops_refresh(project_id=project.pk)


def project_crops_refresh(*, project_id: int) -> DeriveReport:
    """Re-derive crops from stored boxes with the current thresholds; re-embed what changed.

    New crops join the current embedding version; recut crops (a changed padding) make the
    current vectors stale, so a new embedding version is built and switched to. Running it
    twice changes nothing the second time.
    """
    project = Project.objects.get(pk=project_id)
    report = crops_rederive(project=project)
    if report.recut:
        embedding_version_build(project=project)
    elif report.created:
        embeddings_sync(project=project)
    return report
