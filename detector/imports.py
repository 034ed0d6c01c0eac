"""Importing a folder of images into a project: each file decoded once, upright sizes, capture
times and cameras from EXIF, sequence ids from a COCO Camera Traps file or inferred."""

from __future__ import annotations

import hashlib
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.db import transaction
from PIL import Image as PILImage

from detector.coco import CocoError, CocoMetadata, coco_metadata_read
from detector.crops import upright_size
from projects.image_source import (
    image_source_list,
    image_source_open,
    is_remote,
    json_source_read,
    s3_location_join,
    s3_location_split,
)
from projects.import_roots import IMAGE_SUFFIXES, FolderImportError, import_path_check
from projects.locks import project_lock
from projects.models import Image, Project, TimeSource
from projects.safe_files import UnsafeFileError, file_open_regular
from projects.sequences import (
    BurstFrame,
    FrameInfo,
    bursts_infer,
    exif_camera_and_time,
    grey_thumbnail,
    sequences_infer,
)
from projects.services import (
    SpeciesError,
    species_ensure,
    species_name_check,
    text_control_characters,
)
from projects.services_deployments import images_deployments_assign

# Called as progress(done, total) with the files looked at so far and the files to look at.
ImportProgress = Callable[[int, int], None]


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def images_import(
    *,
    project: Project,
    folder: Path | str,
    coco: Path | str | None = None,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Add each image under ``folder`` (recursive; jpg, jpeg, png) not yet in ``project``.

    ``folder`` may be an ``s3://bucket/prefix`` string: its image objects are listed and read
    by streaming (nothing is copied to disk), and recorded with ``Image.path`` the object's
    ``s3://bucket/key`` and ``file_name`` the key relative to the prefix. The import roots do
    not apply to a bucket (``image_import_create`` checks TRAPWISE_IMPORT_BUCKETS for the
    browser and the API); a missing bucket, missing credentials or a prefix that holds no
    image raise FolderImportError before anything is written. ``coco`` may be in a bucket too.

    With ``coco``, a COCO Camera Traps file supplies sequence ids, frame numbers and species
    names. Images it gives no sequence id are grouped into capture events by camera and EXIF
    time. Width and height are those of the upright image (EXIF orientation applied), as
    boxes are relative to it.

    A folder or COCO file outside the import roots (``import_path_check``), a missing folder
    or a bad COCO file (``coco_metadata_read``, then ``_metadata_check``: what the database
    could not store) raise FolderImportError/CocoError before anything is written. Files
    that are unreadable, truncated, decompression bombs, not regular files (a named pipe or a
    device: never opened), or (after following symlinks) outside the import roots are
    reported and skipped; the rest of the folder goes on.

    The images are decoded first and written after, all in one transaction with the species
    and the capture events: an import that fails part-way writes nothing.

    ``progress(done, total)`` is called before each file (files looked at so far, of the
    image files found) and once at the end with ``done == total``; the images are written
    after that last call.
    """
    remote = is_remote(folder)
    if remote:
        keys = remote_images_list(prefix_url=str(folder))
    else:
        folder = import_path_check(path=Path(folder), what="the image folder")
        if not folder.is_dir():
            raise FolderImportError(f"{folder} is not a folder")
    metadata, species = _coco_read(coco)
    report = ImportReport()
    known = set(Image.objects.filter(project=project).values_list("path", flat=True))
    new: list[_NewImage] = []
    if remote:
        total = len(keys)
        for number, key in enumerate(keys):
            if progress is not None:
                progress(number, total)
            location = s3_location_join(str(folder), key)
            if location in known:
                report.already_present += 1
                continue
            image = _remote_image_read(
                location=location, file_name=key, metadata=metadata, report=report
            )
            if image is not None:
                new.append(image)
    else:
        assert isinstance(folder, Path)
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        total = len(paths)
        for number, path in enumerate(paths):
            if progress is not None:
                progress(number, total)
            if path.is_dir():
                continue  # a folder named like an image: rglob walks into it
            if str(path) in known:
                report.already_present += 1
                continue
            image = _image_read(folder=folder, path=path, metadata=metadata, report=report)
            if image is not None:
                new.append(image)
    if progress is not None:
        progress(total, total)
    with transaction.atomic():
        project_lock(project_id=project.pk)  # one import into a project at a time
        if metadata is not None:
            species_ensure(project=project, names=species)
        # Another import may have added some of them since ``known`` was read.
        taken = _paths_present(project=project, paths=[n.path for n in new])
        report.already_present += len(taken)
        new = [n for n in new if n.path not in taken]
        bursts = _bursts_infer(new)
        Image.objects.bulk_create(
            (n.image(project=project, burst=bursts.get(n.path, "")) for n in new),
            batch_size=_WRITE_BATCH,
        )
        report.added = len(new)
        if report.added:
            # New images join their deployment and get its clock correction.
            images_deployments_assign(project=project)
            images_sequences_infer(project=project)
    return report


def remote_images_list(*, prefix_url: str) -> list[str]:
    """The image keys under ``s3://bucket/prefix``, relative to the prefix, in order.

    Raises:
        FolderImportError: a malformed location, a missing bucket, no credentials, S3 out of
        reach, or a prefix that holds no image; nothing imported.
    """
    keys = [key for key, _ in image_source_list(prefix_url=prefix_url)]
    if not keys:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise FolderImportError(f"{prefix_url} holds no images ({suffixes}); nothing imported")
    return keys


def _coco_read(coco: Path | str | None) -> tuple[CocoMetadata | None, list[str]]:
    """(metadata, checked species names) of the COCO file ``coco`` (a path inside the import
    roots, or an ``s3://`` object), or (None, []) without one.

    Raises:
        FolderImportError: outside the roots, or an object that cannot be read.
        CocoError: a bad file (``coco_metadata_read``, ``_metadata_check``).
    """
    if coco is None:
        return None, []
    if is_remote(coco):
        try:
            s3_location_split(str(coco))
            raw = json_source_read(str(coco))
        except (ValueError, OSError) as exc:
            raise FolderImportError(f"the COCO file: {exc}; nothing imported") from exc
        source = Path(str(coco))  # only names it in messages
        metadata = coco_metadata_read(source, raw=raw)
    else:
        source = import_path_check(path=Path(coco), what="the COCO file")
        metadata = coco_metadata_read(source)
    return metadata, _metadata_check(metadata, source=source)


# Untimed frames of one camera join a burst while their counters follow on, they look alike
# (projects.sequences.similarity) and the pair does not jump against the pairs around it (two
# triggers of one view: projects.sequences.burst_jumps); a burst stops at BURST_MAX_FRAMES.
# Measured on missouri-dev and the bundled sample (benchmarks/README.md, Offline detector):
# 15 frames measured best on both (missouri-dev 0.917, sample 0.919 untimed; 20 and 30 within
# 0.01), 10 joins parts of two triggers more often.
BURST_MIN_SIMILARITY = 0.9
BURST_MAX_FRAMES = 15


def _bursts_infer(new: list[_NewImage]) -> dict[str, str]:
    """{path: burst id} for the new images that have neither a time nor a sequence id: the
    bursts that file counters and similar frames suggest (``projects.sequences.bursts_infer``)."""
    untimed = [
        BurstFrame(key=n.path, camera=n.camera, name=n.file_name, thumb=n.thumb)
        for n in new
        if n.thumb is not None
    ]
    return bursts_infer(untimed, min_similarity=BURST_MIN_SIMILARITY, max_frames=BURST_MAX_FRAMES)


# Image.path and Image.file_name are CharField(max_length=1000).
_PATH_MAX = 1000
# Image.seq_id is a CharField(max_length=200); frame_num an IntegerField (32 bits everywhere).
_SEQ_ID_MAX = 200
# Image.camera is a CharField(max_length=300): the folder, then EXIF make, model and serial.
_CAMERA_MAX = 300
_FRAME_NUM_MAX = 2**31 - 1
_WRITE_BATCH = 1000


def _paths_present(*, project: Project, paths: list[str]) -> set[str]:
    """Which of ``paths`` the project has, asked _WRITE_BATCH at a time (SQLite caps the
    parameters of one query)."""
    present: set[str] = set()
    for start in range(0, len(paths), _WRITE_BATCH):
        batch = paths[start : start + _WRITE_BATCH]
        rows = Image.objects.filter(project=project, path__in=batch)
        present.update(rows.values_list("path", flat=True))
    return present


def _metadata_check(metadata: CocoMetadata, *, source: Path) -> list[str]:
    """The COCO file's species names, cleaned (``species_name_check``), once every species
    name, seq_id and frame_num is known to fit the database.

    Raises:
        CocoError: naming the file and each entry at fault (up to 10): a species name that
        is too long or has control characters, a seq_id longer than 200 characters or with
        control characters, a frame_num over 2**31 - 1.
    """
    problems: list[str] = []
    species: list[str] = []
    for name in metadata.species:
        try:
            species.append(species_name_check(name))
        except SpeciesError as exc:
            problems.append(f"category {name[:40]!r}: {exc}")
    for file_name, meta in metadata.by_file.items():
        if len(meta.seq_id) > _SEQ_ID_MAX:
            problems.append(f"{file_name}: seq_id longer than {_SEQ_ID_MAX} characters")
        bad = text_control_characters(meta.seq_id)
        if bad:
            problems.append(f"{file_name}: seq_id has control characters ({', '.join(bad)})")
        if meta.frame_num is not None and meta.frame_num > _FRAME_NUM_MAX:
            problems.append(f"{file_name}: frame_num {meta.frame_num} over {_FRAME_NUM_MAX}")
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise CocoError(f"{source}: nothing imported: " + "; ".join(problems[:10]) + more)
    return species


@dataclass(frozen=True, slots=True)
class _NewImage:
    """An image decoded and ready to be written (small: a big folder waits in memory)."""

    path: str
    file_name: str
    width: int
    height: int
    seq_id: str
    frame_num: int | None
    camera: str
    taken_at: datetime | None
    time_source: str
    # projects.sequences.grey_thumbnail, kept only for frames without time and sequence id.
    thumb: np.ndarray | None

    def image(self, *, project: Project, burst: str = "") -> Image:
        """The row to insert; ``burst`` is the inferred burst of an image with neither a time
        nor a sequence id (``_bursts_infer``), else empty."""
        # Camera clocks have no time zone: a naive clock time is kept as it is, labelled UTC;
        # an aware one (EXIF offset, COCO with offset) is already UTC.
        taken = self.taken_at
        if taken is not None and taken.tzinfo is None:
            taken = taken.replace(tzinfo=UTC)
        return Image(
            project=project,
            path=self.path,
            file_name=self.file_name,
            width=self.width,
            height=self.height,
            seq_id=self.seq_id or _db_text(burst, max_length=_SEQ_ID_MAX),
            seq_source="metadata" if self.seq_id else ("burst" if burst else ""),
            frame_num=self.frame_num,
            camera=self.camera,
            taken_at=taken,
            camera_taken_at=taken,
            time_source=self.time_source,
        )


def _remote_image_read(
    *, location: str, file_name: str, metadata: CocoMetadata | None, report: ImportReport
) -> _NewImage | None:
    """The object at ``location`` (``s3://bucket/key``), streamed and decoded once; None (and
    a line in ``report``) if it is refused."""
    if len(location) > _PATH_MAX:
        report.problems.append((file_name, f"path longer than {_PATH_MAX} characters"))
        return None
    try:
        s3_location_split(location)  # a key with empty, "." or ".." segments has two spellings
        handle = image_source_open(location)
    except (ValueError, OSError) as exc:
        report.problems.append((file_name, f"cannot be read: {exc}"))
        return None
    return _image_decode(
        handle=handle, path=location, file_name=file_name, metadata=metadata, report=report
    )


def _image_read(
    *, folder: Path, path: Path, metadata: CocoMetadata | None, report: ImportReport
) -> _NewImage | None:
    """The image at ``path``, decoded once; None (and a line in ``report``) if it is refused."""
    file_name = path.relative_to(folder).as_posix()
    if len(str(path)) > _PATH_MAX:
        report.problems.append((file_name, f"path longer than {_PATH_MAX} characters"))
        return None
    try:
        import_path_check(path=path, what="the file")
    except FolderImportError as exc:
        # A symlink inside the folder that points elsewhere: skipped, the rest goes on.
        report.problems.append((file_name, str(exc).removesuffix("; nothing imported")))
        return None
    try:
        # A named pipe or a device named like an image is refused unopened: reading a pipe
        # would block the import forever.
        handle = file_open_regular(path)
    except UnsafeFileError as exc:
        report.problems.append((file_name, f"skipped: {exc}"))
        return None
    except OSError as exc:
        report.problems.append((file_name, f"cannot be read: {exc}"))
        return None
    return _image_decode(
        handle=handle, path=str(path), file_name=file_name, metadata=metadata, report=report
    )


def _image_decode(
    *,
    handle: BinaryIO,
    path: str,
    file_name: str,
    metadata: CocoMetadata | None,
    report: ImportReport,
) -> _NewImage | None:
    """The open image ``handle`` (closed here) decoded once, to be recorded as ``path``; None
    (and a line in ``report``) if it is refused."""
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
                meta = metadata.by_file.get(file_name) if metadata is not None else None
                untimed = taken_at is None and (meta is None or meta.taken_at is None)
                thumb = (
                    grey_thumbnail(np.asarray(img.convert("L"), dtype=np.float32))
                    if untimed and not (meta and meta.seq_id)
                    else None
                )
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        report.problems.append((file_name, f"refused, could be a decompression bomb: {exc}"))
        return None
    except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
        # Mostly OSError (UnidentifiedImageError, truncated data), but image plugins raise
        # assorted types (SyntaxError, struct.error, ValueError ...): one bad file must not
        # stop the rest of the folder.
        report.problems.append((file_name, f"not a readable image: {exc}"))
        return None
    if meta is not None and meta.taken_at is not None:
        taken_at, source = meta.taken_at, TimeSource.COCO
    elif taken_at is not None:
        source = TimeSource.EXIF_OFFSET if taken_at.tzinfo is not None else TimeSource.EXIF
    else:
        source = TimeSource.NONE
    return _NewImage(
        path=path,
        file_name=file_name,
        width=width,
        height=height,
        seq_id=meta.seq_id if meta else "",
        frame_num=meta.frame_num if meta else None,
        camera=_db_text(camera, max_length=_CAMERA_MAX),
        taken_at=taken_at,
        time_source=str(source),
        thumb=thumb,
    )


def _db_text(text: str, *, max_length: int) -> str:
    """``text`` as a CharField of ``max_length`` can hold it: control characters (EXIF strings
    may carry NULs, which PostgreSQL refuses) dropped, and a longer text cut, ending in a hash
    of the whole, so two long texts that differ only past the cut stay two."""
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cs"))
    if len(text) <= max_length:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{text[: max_length - 9]}~{digest}"


def images_sequences_infer(*, project: Project) -> int:
    """Give every image without imported sequence id or inferred burst (``_bursts_infer``) a
    capture event from camera + time gaps.

    Recomputed over all such images of the project, so events that span two imports join up.
    Returns the number of images whose sequence id changed.
    """
    images = list(
        Image.objects.filter(project=project)
        .exclude(seq_source__in=("metadata", "burst"))
        .order_by("id")
    )
    events = sequences_infer(
        (FrameInfo(key=str(i.pk), camera=i.camera, taken_at=i.taken_at) for i in images),
        gap_seconds=project.sequence_gap_seconds,
    )
    # "<camera>#<n>" outgrows seq_id's 200 characters when the camera (its folder) is long.
    fitted = {key: _db_text(event, max_length=_SEQ_ID_MAX) for key, event in events.items()}
    changed = [i for i in images if i.seq_id != fitted[str(i.pk)]]
    for image in changed:
        image.seq_id, image.seq_source = fitted[str(image.pk)], "time"
    Image.objects.bulk_update(changed, ["seq_id", "seq_source"], batch_size=1000)
    return len(changed)
