"""Read the metadata of a COCO Camera Traps file: sequences, frames and species names.

Django-free. Boxes are read by ``detector.imported``; this module reads what the import needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detector.imported import coco_unknown_category_ids


class CocoError(ValueError):
    """The file is not COCO Camera Traps JSON that Trapwise can read."""


@dataclass(frozen=True)
class ImageMeta:
    seq_id: str
    frame_num: int | None


@dataclass(frozen=True)
class CocoMetadata:
    by_file: dict[str, ImageMeta]  # keyed by file_name, forward slashes, relative
    species: list[str]  # category names in id order


def coco_metadata_read(path: Path) -> CocoMetadata:
    """Parse ``path``; raise CocoError naming what is missing or malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CocoError(f"{path}: cannot read COCO Camera Traps JSON: {exc}") from exc
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise CocoError(f"{path}: not COCO Camera Traps JSON (needs 'images' and 'categories')")
    if not isinstance(data["images"], list) or not isinstance(data["categories"], list):
        raise CocoError(f"{path}: 'images' and 'categories' must be lists")
    by_file: dict[str, ImageMeta] = {}
    duplicates: list[str] = []
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "file_name" not in entry:
            raise CocoError(f"{path}: images[{i}] has no file_name")
        frame = entry.get("frame_num")
        file_name = _normalise(entry["file_name"])
        if file_name in by_file:
            duplicates.append(file_name)
        try:
            by_file[file_name] = ImageMeta(
                seq_id=str(entry.get("seq_id", "")),
                frame_num=int(frame) if frame is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise CocoError(f"{path}: images[{i}] has a bad frame_num {frame!r}") from exc
    if duplicates:
        raise CocoError(f"{path}: file_name listed more than once: {_listed(duplicates)}")
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        species = [str(c["name"]).strip() for c in categories]
    except (KeyError, TypeError) as exc:
        raise CocoError(f"{path}: every category needs an id and a name") from exc
    _category_ids_check(data.get("annotations", []), {repr(c["id"]) for c in categories}, path=path)
    return CocoMetadata(by_file=by_file, species=[s for s in species if s])


def _category_ids_check(annotations: object, known: set[str], *, path: Path) -> None:
    """CocoError listing the annotations whose category_id is not among the categories.

    Such a file is refused as a whole (nothing is imported): its species list is incomplete,
    so any species or count read from it would be wrong.
    """
    problem = coco_unknown_category_ids(annotations, known)
    if problem:
        raise CocoError(f"{path}: {problem}")


def _listed(items: list[str], limit: int = 10) -> str:
    """The first ``limit`` items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _normalise(file_name: str) -> str:
    return PurePosixPath(str(file_name).replace("\\", "/")).as_posix().lstrip("./")
