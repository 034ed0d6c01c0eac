"""COCO Camera Traps: the one reader of the LILA annotation format (Django-free).

The format (https://lila.science/faq#cct): a JSON object with ``images`` (id, file_name,
width, height, optional seq_id and frame_num), ``annotations`` (image_id, optional
category_id and pixel ``bbox`` [x, y, w, h]) and ``categories`` (id, name), plus any other
keys (info, licenses, ...).

``cct_read`` parses and checks a file once into a frozen ``CctDocument``; every use of the
format takes what it needs from that: the importer's sequences, frames and species
(``detector.coco``), ``ImportedDetector.from_coco_camera_traps``'s boxes (and through it the
detector evaluation's truth), ``embeddings.cocodata.coco_crops``' labelled crops and
``activelearn.experiment.coco_split``'s pool/test split.

A file is refused as a whole (``CctError``, naming the entry at fault by its index) when:

* it is not readable JSON, or not an object with the lists its caller needs (``images``
  always; ``annotations`` and ``categories`` unless the caller names them optional);
* an image is not an object, has no string file_name, a file_name that is not a clean
  relative path (``detector.base.normalise_relpath``), an id that is not a string or an
  integer, a seq_id that is not a string, an integer or null, or a frame_num that is not a
  whole number >= 0 or null (NaN, Infinity, 2.5, -1 are refused; 3.0 and "3" are 3); or two
  images share a file_name or an id. A null or blank seq_id means "no sequence": the image
  is its own (``CctImage.sequence``), never a sequence named "None";
* a category is not an object with an id (string or integer) and a string name;
* an annotation is not an object, has no image_id, an image_id or category_id that is not a
  string or an integer, or names an image (or, when the file lists categories, a category)
  that the file does not list. Such a file is refused whole, not in part: its species list
  (or image list) is incomplete, so any species or count read from it would be wrong.

Image sizes and boxes are not checked here: a bad one (NaN and Infinity included) fails only
the boxes of its image (``cct_box``), as every detection source reports box problems per image.
JSON's non-standard NaN and Infinity literals are read as Python reads them, so they are
refused wherever a number is read (above) and pass through the fields no reader uses.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias

from detector.base import Box, DetectorError, bbox_numbers, box_validate, normalise_relpath

__all__ = [
    "CCT_LISTS",
    "CctAnnotation",
    "CctCategory",
    "CctDocument",
    "CctError",
    "CctId",
    "CctImage",
    "cct_box",
    "cct_parse",
    "cct_read",
]

# The top-level lists of the format, in the order messages name them.
CCT_LISTS: tuple[str, ...] = ("images", "annotations", "categories")

# Ids (of images and categories) are strings or integers; 1 and "1" are different ids.
CctId: TypeAlias = str | int


class CctError(DetectorError):
    """The file is not COCO Camera Traps JSON that Trapwise can read; nothing of it is used.

    A DetectorError, so a ValueError. ``detector.coco.CocoError`` and
    ``embeddings.cocodata.CocoCropsError`` are other names of this class, so every
    ``except`` written for the readers this one replaced still catches it.
    """


@dataclass(frozen=True)
class CctImage:
    """One entry of ``images``.

    Attributes:
        index: position in the file's ``images`` list.
        id: the image's id, or None if the entry has none (no annotation can name it).
        file_name: relative POSIX path, normalised (``normalise_relpath``), unique in the file.
        seq_id: capture sequence as a string; "" when absent or null.
        frame_num: position in the sequence, or None when absent or null.
        record: the entry as in the file (read-only; width and height are read from it by
            ``cct_box``, and a split writes it back out unchanged).
    """

    index: int
    id: CctId | None
    file_name: str
    seq_id: str
    frame_num: int | None
    record: Mapping[str, Any]

    @property
    def sequence(self) -> str:
        """The capture sequence the image belongs to: its seq_id, else the image alone
        (its id, else its file_name)."""
        if self.seq_id:
            return self.seq_id
        return str(self.id) if self.id is not None else self.file_name


@dataclass(frozen=True)
class CctCategory:
    """One entry of ``categories``: ``name`` is stripped of surrounding spaces (may be "")."""

    id: CctId
    name: str
    record: Mapping[str, Any]


@dataclass(frozen=True)
class CctAnnotation:
    """One entry of ``annotations``.

    Attributes:
        index: position in the file's ``annotations`` list.
        id: the annotation's id as a string, or None when it has none.
        image_index: position in ``CctDocument.images`` of the image it names.
        category_id: the category it names (one the file lists, when it lists any), or None.
        bbox: the ``bbox`` value as in the file, None when absent or null ("no box");
            ``cct_box`` checks and converts it.
        record: the entry as in the file (read-only).
    """

    index: int
    id: str | None
    image_index: int
    category_id: CctId | None
    bbox: object | None
    record: Mapping[str, Any]


@dataclass(frozen=True)
class CctDocument:
    """A checked COCO Camera Traps file (see the module docstring for what is checked).

    Attributes:
        source: where it came from (the file's path), as messages name it.
        sha256: hex digest of the file's bytes; "" when parsed from an object (``cct_parse``).
        images, annotations: the entries in file order (annotations () when the file has
            none and the caller allowed that).
        categories: the entries in file order, or None when the file has no ``categories``
            list (allowed only where the caller names it optional: a boxes-only file).
        record: the top-level object as in the file (read-only), every key kept.
    """

    source: str
    sha256: str
    images: tuple[CctImage, ...]
    annotations: tuple[CctAnnotation, ...]
    categories: tuple[CctCategory, ...] | None
    record: Mapping[str, Any]

    def categories_by_id(self) -> list[CctCategory]:
        """The categories sorted by id (integer ids before string ones); [] if none listed.

        This order is the species order of the importer and the label order of the crops.
        """
        return sorted(self.categories or (), key=lambda c: (isinstance(c.id, str), c.id))


def cct_read(
    path: Path, *, optional: Collection[str] = (), raw: bytes | None = None
) -> CctDocument:
    """Read and check the COCO Camera Traps file at ``path``.

    Args:
        path: the JSON file.
        optional: which of "annotations" and "categories" may be missing or null ("images"
            never may): a missing optional ``annotations`` reads as none, a missing optional
            ``categories`` as None (and category ids are then not checked).
        raw: the file's bytes, already read by the caller (a file in a bucket); ``path``
            then only names it in messages.

    Raises:
        CctError: naming ``path`` and what is wrong (see the module docstring).
    """
    path = Path(path)
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CctError(f"{path}: cannot read COCO Camera Traps JSON: {exc}") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CctError(
            f"{path}: cannot read COCO Camera Traps JSON: not valid JSON: {exc}"
        ) from exc
    return cct_parse(
        data, source=str(path), optional=optional, sha256=hashlib.sha256(raw).hexdigest()
    )


def cct_parse(
    data: object, *, source: str, optional: Collection[str] = (), sha256: str = ""
) -> CctDocument:
    """Check an already parsed COCO Camera Traps object, as ``cct_read`` does a file.

    ``source`` names it in messages; ``sha256`` is recorded as given. The entries are
    copied (one level deep), so later changes to ``data`` do not reach the document.

    Raises:
        CctError: naming ``source`` and what is wrong (see the module docstring).
        ValueError: ``optional`` names something other than "annotations"/"categories".
    """
    unknown = set(optional) - {"annotations", "categories"}
    if unknown:
        raise ValueError(f"only 'annotations' and 'categories' may be optional, got {unknown}")
    required = [key for key in CCT_LISTS if key not in optional]
    if not isinstance(data, dict):
        raise CctError(
            f"{source}: not COCO Camera Traps JSON "
            f"(needs {_and(required)} lists; its top level is not an object)"
        )
    if not all(isinstance(data.get(key), list) for key in required):
        raise CctError(f"{source}: not COCO Camera Traps JSON (needs {_and(required)} lists)")
    # An optional list that is null reads as absent.
    for key in optional:
        if data.get(key) is not None and not isinstance(data[key], list):
            raise CctError(f"{source}: {key!r} must be a list")
    listed = data.get("categories")
    categories = _categories(listed, source=source) if listed is not None else None
    images = _images(data["images"], source=source)
    annotations = _annotations(
        data.get("annotations") or [], images=images, categories=categories, source=source
    )
    return CctDocument(
        source=source,
        sha256=sha256,
        images=images,
        annotations=annotations,
        categories=categories,
        record=MappingProxyType(dict(data)),
    )


def cct_box(image: CctImage, bbox: object, *, where: str) -> Box:
    """An annotation's pixel ``bbox`` [x, y, w, h] on ``image`` as a normalised Box.

    The box is divided by the image's width and height, validated and clipped to the frame
    (``box_validate``); its category is "animal" and its confidence 1.0 (a person drew it).

    Raises:
        DetectorError (not CctError: a bad box fails only its image's boxes), prefixed with
        ``where``: the image has no positive numeric width and height, or the box is not 4
        numbers, has no area, or lies outside the frame.
    """
    width = _size(image.record, "width", where=where)
    height = _size(image.record, "height", where=where)
    if width <= 0 or height <= 0:
        raise DetectorError(f"{where}: image size must be positive, got {width:g}x{height:g}")
    x, y, w, h = bbox_numbers(bbox, where=where)
    box = Box(
        x=x / width, y=y / height, w=w / width, h=h / height, confidence=1.0, category="animal"
    )
    return box_validate(box, where=where)


def _size(record: Mapping[str, Any], key: str, *, where: str) -> float:
    """The image's ``width`` or ``height`` as a number; DetectorError if missing or not one."""
    if key not in record:
        raise DetectorError(f"{where} image: missing required field {key!r}")
    value = record[key]
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise DetectorError(
            f"{where} image: field {key!r} has the wrong type ({type(value).__name__})"
        )
    if not math.isfinite(value):
        raise DetectorError(f"{where} image: field {key!r} must be a finite number, got {value}")
    return float(value)


def _is_id(value: object) -> bool:
    """Whether ``value`` can be an id: a string or an integer (a bool is neither here)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _frame_num(value: object, *, where: str) -> int | None:
    """An image's frame_num: None when absent or null, else a whole number >= 0.

    3, 3.0 (as pandas writes integers beside missing values) and "3" are frame 3; anything
    else (NaN, Infinity, 2.5, -1, true, "two") is refused rather than guessed at: a frame
    number orders the frames of a sequence, and a wrong one reorders them silently.
    """
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 0:
        raise CctError(f"{where}: frame_num must be a whole number >= 0 or null, got {value!r}")
    return number


def _seq_id(value: object, *, where: str) -> str:
    """An image's seq_id as a string; "" (no sequence) when absent, null or blank.

    A string or an integer; anything else (NaN, 1.5, true, a list) is refused, as its text
    ("nan", "True") would join unrelated images into one capture event.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise CctError(f"{where}: seq_id must be a string, an integer or null, got {value!r}")


def _categories(entries: list[Any], *, source: str) -> tuple[CctCategory, ...]:
    categories: list[CctCategory] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry or "name" not in entry:
            raise CctError(f"{source}: categories[{i}] needs an id and a name")
        if not _is_id(entry["id"]):
            raise CctError(
                f"{source}: categories[{i}]: id must be a string or an integer, got {entry['id']!r}"
            )
        if not isinstance(entry["name"], str):
            raise CctError(
                f"{source}: categories[{i}] (id {entry['id']!r}): name must be a string, "
                f"got {entry['name']!r}"
            )
        name = entry["name"].strip()
        categories.append(
            CctCategory(id=entry["id"], name=name, record=MappingProxyType(dict(entry)))
        )
    return tuple(categories)


def _images(entries: list[Any], *, source: str) -> tuple[CctImage, ...]:
    images: list[CctImage] = []
    files: dict[str, int] = {}
    ids: dict[CctId, int] = {}
    duplicate_files: list[str] = []
    duplicate_ids: list[str] = []
    for i, entry in enumerate(entries):
        where = f"{source}: images[{i}]"
        if not isinstance(entry, dict):
            raise CctError(f"{where} must be an object")
        if "file_name" not in entry:
            raise CctError(f"{where} has no file_name")
        try:
            file_name = normalise_relpath(entry["file_name"])
        except DetectorError as exc:
            raise CctError(f"{where}: {exc}") from exc
        image_id = entry.get("id")
        if image_id is not None and not _is_id(image_id):
            raise CctError(f"{where}: id must be a string or an integer, got {image_id!r}")
        named = f"{where} ({file_name})"
        frame_num = _frame_num(entry.get("frame_num"), where=named)
        seq_id = _seq_id(entry.get("seq_id"), where=named)
        # Every entry is checked before duplicates are reported, so that all are named at once.
        if file_name in files:
            duplicate_files.append(file_name)
        files.setdefault(file_name, i)
        if image_id is not None:
            if image_id in ids:
                duplicate_ids.append(repr(image_id))
            ids.setdefault(image_id, i)
        images.append(
            CctImage(
                index=i,
                id=image_id,
                file_name=file_name,
                seq_id=seq_id,
                frame_num=frame_num,
                record=MappingProxyType(dict(entry)),
            )
        )
    if duplicate_files:
        raise CctError(
            f"{source}: duplicate file_name in 'images', "
            f"file_name listed more than once: {_listed(duplicate_files)}"
        )
    if duplicate_ids:
        raise CctError(
            f"{source}: duplicate image id in 'images', "
            f"id listed more than once: {_listed(duplicate_ids)}"
        )
    return tuple(images)


def _annotations(
    entries: list[Any],
    *,
    images: Sequence[CctImage],
    categories: Sequence[CctCategory] | None,
    source: str,
) -> tuple[CctAnnotation, ...]:
    image_at = {image.id: image.index for image in images if image.id is not None}
    known_categories = {c.id for c in categories} if categories is not None else None
    unknown_images: dict[CctId, list[int]] = {}
    unknown_categories: dict[CctId | None, list[int]] = {}
    annotations: list[CctAnnotation] = []
    for i, entry in enumerate(entries):
        where = f"{source}: annotations[{i}]"
        if not isinstance(entry, dict):
            raise CctError(f"{where} must be an object")
        if "image_id" not in entry:
            raise CctError(f"{where} has no image_id")
        image_id, category_id = entry["image_id"], entry.get("category_id")
        for field, value in (("image_id", image_id), ("category_id", category_id)):
            if value is not None and not _is_id(value):
                raise CctError(f"{where}: {field} must be a string or an integer, got {value!r}")
        if image_id not in image_at:
            unknown_images.setdefault(image_id, []).append(i)
        # An absent category_id names nothing; a present one, null included, must be listed.
        listed = known_categories is None or category_id in known_categories
        if "category_id" in entry and not listed:
            unknown_categories.setdefault(category_id, []).append(i)
        annotations.append(
            CctAnnotation(
                index=i,
                id=str(entry["id"]) if entry.get("id") is not None else None,
                image_index=image_at.get(image_id, -1),
                category_id=category_id,
                bbox=entry.get("bbox"),
                record=MappingProxyType(dict(entry)),
            )
        )
    if unknown_images or unknown_categories:
        raise CctError(
            f"{source}: annotations refer to an unknown image or category: "
            + "; ".join(_unknown_references(unknown_categories, unknown_images))
        )
    return tuple(annotations)


def _unknown_references(
    categories: Mapping[CctId | None, list[int]], images: Mapping[CctId, list[int]]
) -> list[str]:
    """What the annotations name that the file does not list: each id with where it is named."""
    parts: list[str] = []
    if categories:
        listed = "; ".join(
            f"{category_id!r} in annotations[{_listed([str(i) for i in where], sep=', ')}]"
            for category_id, where in categories.items()
        )
        parts.append(
            f"{sum(map(len, categories.values()))} annotation(s) name a category_id "
            f"that is not in 'categories': {listed}"
        )
    parts += [
        f"image_id {image_id!r} is not in 'images' "
        f"(annotations[{_listed([str(i) for i in where], sep=', ')}])"
        for image_id, where in list(images.items())[:10]
    ]
    if len(images) > 10:
        parts.append(f"and {len(images) - 10} more unknown image ids")
    return parts


def _listed(items: Sequence[str], *, limit: int = 10, sep: str = ", ") -> str:
    """The first ``limit`` items joined with ``sep``, and how many more there are."""
    shown = sep.join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _and(names: Sequence[str]) -> str:
    """The names quoted and joined: 'a'; 'a' and 'b'; 'a', 'b' and 'c'."""
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
