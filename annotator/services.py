"""Writes for projects, members, species and images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from annotator.coco import CocoMetadata, coco_metadata_read
from annotator.models import Image, Membership, Project, Role, Species
from detector.imported import ImportedDetector
from detector.services import DetectionReport, detections_run
from embeddings.services import embeddings_sync

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
    round_size: int = 100,
) -> Project:
    """Create a project; its creator becomes its admin."""
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            slug=slugify(name)[:200] or "project",
            seed=seed,
            backbone=backbone,
            backbone_weights=backbone_weights,
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
    names. Unreadable files are reported and skipped; the rest of the folder goes on.
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
        with PILImage.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError, PILImage.DecompressionBombError) as exc:
        report.problems.append((file_name, f"not a readable image: {exc}"))
        return
    meta = metadata.by_file.get(file_name) if metadata is not None else None
    Image.objects.create(
        project=project,
        path=str(path),
        file_name=file_name,
        width=width,
        height=height,
        seq_id=meta.seq_id if meta else "",
        frame_num=meta.frame_num if meta else None,
    )
    report.added += 1


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
) -> IngestReport:
    """Import a folder, take its boxes from ``coco`` or ``megadetector`` JSON, crop and embed.

    Every step only adds what is new, so running it again on the same folder changes nothing.
    """
    if coco is not None and megadetector is not None:
        raise FolderImportError("give boxes from either --coco or --megadetector, not both")
    images = images_import(project=project, folder=folder, coco=coco)
    detector = _imported_detector(coco=coco, megadetector=megadetector)
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
