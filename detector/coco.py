"""The importer's view of a COCO Camera Traps file: sequences, frames and species names.

Django-free. Reading and checking the file is ``detector.cct``'s (one reader for every use of
the format); this module only shapes what the import needs from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from detector.cct import CctError, cct_read

__all__ = ["CocoError", "CocoMetadata", "ImageMeta", "coco_datetime", "coco_metadata_read"]

# The name the importer and import_images catch; the reader's error is the one class.
CocoError = CctError


@dataclass(frozen=True)
class ImageMeta:
    seq_id: str
    frame_num: int | None
    # The file's ``datetime``: aware (UTC) when it carries an offset, else naive camera time.
    taken_at: datetime | None = None


@dataclass(frozen=True)
class CocoMetadata:
    by_file: dict[str, ImageMeta]  # keyed by file_name, forward slashes, relative
    species: list[str]  # category names in id order


def coco_datetime(value: object, *, where: str) -> datetime | None:
    """An image's COCO Camera Traps ``datetime`` ("2019-05-01 22:15:03", ISO 8601 with "T"
    and an optional offset, or EXIF's "2019:05:01 22:15:03"): aware in UTC when it has an
    offset, else naive; None when absent, null or blank.

    Raises:
        CocoError: a value that is not such a time, naming ``where``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 10 and text[4] == ":" and text[7] == ":":
            text = text[:4] + "-" + text[5:7] + "-" + text[8:]  # EXIF's date separators
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment.astimezone(UTC) if moment.tzinfo is not None else moment
    raise CocoError(
        f"{where}: datetime must be a date and time like 2019-05-01 22:15:03, got {value!r}"
    )


def coco_metadata_read(path: Path, *, raw: bytes | None = None) -> CocoMetadata:
    """Read ``path`` (``detector.cct.cct_read``; ``annotations`` may be missing); ``raw``: its
    bytes, read by the caller (a file in a bucket), ``path`` then only names it.

    Raises:
        CocoError (``detector.cct.CctError``): naming what is missing or malformed; a file
        whose annotations name a category (or image) it does not list is refused whole.
    """
    document = cct_read(Path(path), optional=("annotations",), raw=raw)
    return CocoMetadata(
        by_file={
            image.file_name: ImageMeta(
                seq_id=image.seq_id,
                frame_num=image.frame_num,
                taken_at=coco_datetime(
                    image.record.get("datetime"), where=f"{path}: {image.file_name}"
                ),
            )
            for image in document.images
        },
        species=[c.name for c in document.categories_by_id() if c.name],
    )
