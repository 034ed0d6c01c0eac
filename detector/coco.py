"""The importer's view of a COCO Camera Traps file: sequences, frames and species names.

Django-free. Reading and checking the file is ``detector.cct``'s (one reader for every use of
the format); this module only shapes what the import needs from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detector.cct import CctError, cct_read

__all__ = ["CocoError", "CocoMetadata", "ImageMeta", "coco_metadata_read"]

# The name the importer and import_images catch; the reader's error is the one class.
CocoError = CctError


@dataclass(frozen=True)
class ImageMeta:
    seq_id: str
    frame_num: int | None


@dataclass(frozen=True)
class CocoMetadata:
    by_file: dict[str, ImageMeta]  # keyed by file_name, forward slashes, relative
    species: list[str]  # category names in id order


def coco_metadata_read(path: Path) -> CocoMetadata:
    """Read ``path`` (``detector.cct.cct_read``; ``annotations`` may be missing).

    Raises:
        CocoError (``detector.cct.CctError``): naming what is missing or malformed; a file
        whose annotations name a category (or image) it does not list is refused whole.
    """
    document = cct_read(Path(path), optional=("annotations",))
    return CocoMetadata(
        by_file={
            image.file_name: ImageMeta(seq_id=image.seq_id, frame_num=image.frame_num)
            for image in document.images
        },
        species=[c.name for c in document.categories_by_id() if c.name],
    )
