"""Importing a folder of images into a project: each file decoded once, upright sizes, capture
times and cameras from EXIF, sequence ids from a COCO Camera Traps file or inferred."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from PIL import Image as PILImage

from detector.coco import CocoMetadata, coco_metadata_read
from detector.crops import upright_size
from projects.import_roots import FolderImportError, import_path_check
from projects.models import Image, Project
from projects.safe_files import UnsafeFileError, file_open_regular
from projects.sequences import FrameInfo, exif_camera_and_time, sequences_infer
from projects.services import species_ensure

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def images_import(*, project: Project, folder: Path, coco: Path | None = None) -> ImportReport:
    """Add each image under ``folder`` (recursive; jpg, jpeg, png) not yet in ``project``.

    With ``coco``, a COCO Camera Traps file supplies sequence ids, frame numbers and species
    names. Images it gives no sequence id are grouped into capture events by camera and EXIF
    time. Width and height are those of the upright image (EXIF orientation applied), as
    boxes are relative to it.

    A folder or COCO file outside the import roots (``import_path_check``), a missing folder
    or a bad COCO file raise FolderImportError/CocoError before anything is written. Files
    that are unreadable, truncated, decompression bombs, not regular files (a named pipe or a
    device: never opened), or (after following symlinks) outside the import roots are
    reported and skipped; the rest of the folder goes on.
    """
    folder = import_path_check(path=folder, what="the image folder")
    if not folder.is_dir():
        raise FolderImportError(f"{folder} is not a folder")
    if coco is not None:
        coco = import_path_check(path=coco, what="the COCO file")
    metadata = coco_metadata_read(coco) if coco is not None else None
    if metadata is not None:
        species_ensure(project=project, names=metadata.species)
    report = ImportReport()
    known = set(Image.objects.filter(project=project).values_list("path", flat=True))
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if path.is_dir():
            continue  # a folder named like an image: rglob walks into it
        if str(path) in known:
            report.already_present += 1
            continue
        _image_add(project=project, folder=folder, path=path, metadata=metadata, report=report)
    if report.added:
        images_sequences_infer(project=project)
    return report


# Image.path and Image.file_name are CharField(max_length=1000).
_PATH_MAX = 1000


def _image_add(
    *,
    project: Project,
    folder: Path,
    path: Path,
    metadata: CocoMetadata | None,
    report: ImportReport,
) -> None:
    file_name = path.relative_to(folder).as_posix()
    if len(str(path)) > _PATH_MAX:
        report.problems.append((file_name, f"path longer than {_PATH_MAX} characters"))
        return
    try:
        import_path_check(path=path, what="the file")
    except FolderImportError as exc:
        # A symlink inside the folder that points elsewhere: skipped, the rest goes on.
        report.problems.append((file_name, str(exc).removesuffix("; nothing imported")))
        return
    try:
        # A named pipe or a device named like an image is refused unopened: reading a pipe
        # would block the import forever.
        handle = file_open_regular(path)
    except UnsafeFileError as exc:
        report.problems.append((file_name, f"skipped: {exc}"))
        return
    except OSError as exc:
        report.problems.append((file_name, f"cannot be read: {exc}"))
        return
    try:
        with warnings.catch_warnings():
            # Refuse decompression bombs outright instead of only warning about them.
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with handle, PILImage.open(handle) as img:
                width, height = upright_size(img)
                camera, taken_at = exif_camera_and_time(img, file_name=file_name)
                # Decode it all, so a truncated or corrupt file is refused now rather than
                # when its crops are cut; a JPEG decodes at 1/8 scale (still every byte).
                img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        report.problems.append((file_name, f"refused, could be a decompression bomb: {exc}"))
        return
    except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
        # Mostly OSError (UnidentifiedImageError, truncated data), but image plugins raise
        # assorted types (SyntaxError, struct.error, ValueError ...): one bad file must not
        # stop the rest of the folder.
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
