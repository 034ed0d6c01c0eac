"""A Detector backed by detections computed elsewhere and read from a file.

Two sources are supported:

* MegaDetector batch output (https://lila.science/megadetector-output-format),
  format versions 1.0 to 1.6: normalised ``[x, y, w, h]`` boxes with confidences.
* COCO Camera Traps annotations (the LILA format): absolute pixel ``[x, y, w, h]``
  boxes, converted here to normalised boxes with confidence 1.0 and category
  "animal". An annotation without ``bbox`` means "no box" for its image.

File paths are kept as the source writes them (relative to the folder the source
describes), with backslashes turned into forward slashes and "./" removed; absolute
paths and paths escaping the folder ("..") are rejected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import posixpath
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detector.base import (
    CATEGORIES,
    Box,
    DetectorError,
    ImageDetections,
    UnknownFileError,
    box_validate,
)

__all__ = [
    "SUPPORTED_MEGADETECTOR_VERSIONS",
    "ImportedDetector",
    "coco_box",
    "normalise_relpath",
]

logger = logging.getLogger(__name__)

# Versions whose detection fields (file, detections[].category/conf/bbox, failure,
# detection_categories) this module reads; later versions only add fields, but are
# refused until checked.
# 1.5 and 1.6 add optional fields (classifications, detector metadata) beside the ones read here.
SUPPORTED_MEGADETECTOR_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def normalise_relpath(path: str) -> str:
    """Return ``path`` as a clean relative POSIX path ("a\\b" -> "a/b", "./a" -> "a").

    Raises:
        DetectorError: empty, absolute (including Windows drive / UNC), or escaping
        the folder with "..".
    """
    if not isinstance(path, str) or not path.strip():
        raise DetectorError(f"image path must be a non-empty string, got {path!r}")
    text = path.replace("\\", "/")
    if text.startswith("/") or _WINDOWS_DRIVE.match(text):
        raise DetectorError(
            f"image path must be relative to the image folder, got absolute path {path!r}"
        )
    clean = posixpath.normpath(text)
    if clean == ".." or clean.startswith("../") or clean == ".":
        raise DetectorError(f"image path must stay inside the image folder, got {path!r}")
    return clean


def _read_json(path: Path) -> tuple[Any, str]:
    """Parse the JSON file at ``path``; return (document, "<name>@sha256:<12 hex>")."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DetectorError(f"cannot read detections file {path}: {exc}") from exc
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DetectorError(f"{path} is not valid JSON: {exc}") from exc
    return document, f"{path.name}@sha256:{hashlib.sha256(raw).hexdigest()[:12]}"


def _require(
    mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, where: str
) -> Any:
    """Return ``mapping[key]`` if present and of ``kind``; else raise DetectorError."""
    if key not in mapping:
        raise DetectorError(f"{where}: missing required field {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DetectorError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _bbox_numbers(bbox: object, *, where: str) -> tuple[float, float, float, float]:
    """Return a 4-number bbox list as floats or raise DetectorError."""
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DetectorError(f"{where}: bbox must be a list of 4 numbers, got {bbox!r}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in bbox):
        raise DetectorError(f"{where}: bbox must be a list of 4 numbers, got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return x, y, w, h


def _checked_box(box: Box, *, where: str) -> Box:
    """box_validate with the location of the offending box in the message."""
    try:
        return box_validate(box)
    except DetectorError as exc:
        raise DetectorError(f"{where}: {exc}") from exc


def _md_format_version(document: Mapping[str, Any], *, source: Path) -> str:
    """The MegaDetector format version of ``document``, checked against the supported ones.

    A file with no ``info`` block at all (but an ``images`` list) is read as 1.0, the
    original layout. A present ``info`` must carry a supported ``format_version``.
    """
    if "info" not in document:
        return "1.0"
    info = document["info"]
    version = info.get("format_version") if isinstance(info, dict) else None
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    if version not in SUPPORTED_MEGADETECTOR_VERSIONS:
        supported = ", ".join(SUPPORTED_MEGADETECTOR_VERSIONS)
        raise DetectorError(
            f"{source}: unsupported MegaDetector format_version {version!r}; "
            f"supported versions: {supported}"
        )
    return str(version)


def _md_categories(document: Mapping[str, Any], *, source: Path) -> dict[str, str]:
    """detection_categories as id -> one of CATEGORIES (names lower-cased)."""
    raw = _require(document, "detection_categories", dict, where=str(source))
    categories: dict[str, str] = {}
    for cat_id, name in raw.items():
        label = name.strip().lower() if isinstance(name, str) else name
        if label not in CATEGORIES:
            raise DetectorError(
                f"{source}: detection category {cat_id!r} is {name!r}; "
                f"expected one of {', '.join(CATEGORIES)}"
            )
        categories[str(cat_id)] = label
    return categories


def _md_image(
    entry: object, *, categories: Mapping[str, str], where: str
) -> tuple[ImageDetections, int]:
    """Parse one ``images[]`` entry; return (detections, number of skipped boxes).

    Detections whose category id is not in detection_categories are skipped, as
    the format specification says to treat them as "no detection".
    """
    if not isinstance(entry, dict):
        raise DetectorError(f"{where}: image entry must be an object")
    file = normalise_relpath(_require(entry, "file", str, where=where))
    where = f"{where} ({file})"
    if "frame_rate" in entry:
        raise DetectorError(f"{where}: video results are not supported")
    failure = entry.get("failure")
    if failure is not None:
        return ImageDetections(file=file, boxes=(), failure=str(failure)), 0
    raw_detections = _require(entry, "detections", list, where=where)
    boxes: list[Box] = []
    skipped = 0
    for i, det in enumerate(raw_detections):
        det_where = f"{where} detection {i}"
        if not isinstance(det, dict):
            raise DetectorError(f"{det_where}: detection must be an object")
        category = categories.get(str(_require(det, "category", (str, int), where=det_where)))
        if category is None:
            skipped += 1
            continue
        conf = float(_require(det, "conf", numbers.Real, where=det_where))
        try:
            x, y, w, h = _bbox_numbers(det.get("bbox"), where=det_where)
            box = Box(x=x, y=y, w=w, h=h, confidence=conf, category=category)
            boxes.append(_checked_box(box, where=det_where))
        except DetectorError as exc:
            # A bad box fails its image, reported per item; the other images go on.
            return ImageDetections(file=file, boxes=(), failure=str(exc)), skipped
    return ImageDetections(file=file, boxes=tuple(boxes)), skipped


def _coco_images(document: Mapping[str, Any], *, source: Path) -> dict[Any, dict[str, Any]]:
    """COCO CT ``images`` as id -> image record, checking ids and file names are unique."""
    images: dict[Any, dict[str, Any]] = {}
    files: set[str] = set()
    for i, image in enumerate(_require(document, "images", list, where=str(source))):
        where = f"{source} images[{i}]"
        if not isinstance(image, dict):
            raise DetectorError(f"{where}: image entry must be an object")
        image_id = _require(image, "id", (str, int), where=where)
        file = normalise_relpath(_require(image, "file_name", str, where=where))
        if image_id in images:
            raise DetectorError(f"{where}: duplicate image id {image_id!r}")
        if file in files:
            raise DetectorError(f"{where}: duplicate file_name {file!r}")
        files.add(file)
        images[image_id] = {**image, "file_name": file}
    return images


def _coco_category_ids_check(document: Mapping[str, Any], *, source: Path) -> None:
    """DetectorError listing annotations whose category_id is not in ``categories``.

    Only checked when the file has a ``categories`` list (boxes need no species); such a
    file is refused as a whole, as its species list is incomplete.
    """
    categories = document.get("categories")
    annotations = document.get("annotations")
    if not isinstance(categories, list) or not isinstance(annotations, list):
        return
    known = {repr(c.get("id")) for c in categories if isinstance(c, dict)}
    problem = coco_unknown_category_ids(annotations, known)
    if problem:
        raise DetectorError(f"{source}: {problem}")


def coco_unknown_category_ids(annotations: object, known: set[str]) -> str | None:
    """Why some annotations name a category_id not among the categories, or None if none do.

    ``known`` holds the categories' ids written by ``repr``: the string "1" is not the number
    1, and an unhashable id is reported, not a crash. The message lists each unknown id with
    the annotations that name it.
    """
    if not isinstance(annotations, list):
        return "'annotations' must be a list"
    unknown: dict[str, list[int]] = {}
    for i, ann in enumerate(annotations):
        if isinstance(ann, dict) and "category_id" in ann and repr(ann["category_id"]) not in known:
            unknown.setdefault(repr(ann["category_id"]), []).append(i)
    if not unknown:
        return None
    listed = "; ".join(
        f"{cat} in annotations[{_listed([str(i) for i in where], limit=10, sep=', ')}]"
        for cat, where in unknown.items()
    )
    return (
        f"{sum(map(len, unknown.values()))} annotation(s) name a category_id "
        f"that is not in 'categories': {listed}"
    )


def _listed(items: Sequence[str], limit: int = 20, sep: str = "; ") -> str:
    """The first ``limit`` items joined with ``sep``, and how many more there are."""
    shown = sep.join(items[:limit])
    return shown + (f"{sep}and {len(items) - limit} more" if len(items) > limit else "")


def coco_box(image: Mapping[str, Any], bbox: object, *, where: str) -> Box:
    """Convert an absolute pixel COCO bbox to a normalised, validated Box.

    ``image`` is the COCO image record (its ``width`` and ``height`` normalise the box);
    ``where`` prefixes error messages. Raises DetectorError for a bad size or box.
    """
    width = _require(image, "width", numbers.Real, where=f"{where} image")
    height = _require(image, "height", numbers.Real, where=f"{where} image")
    if width <= 0 or height <= 0:
        raise DetectorError(f"{where}: image size must be positive, got {width}x{height}")
    x, y, w, h = _bbox_numbers(bbox, where=where)
    box = Box(
        x=x / width, y=y / height, w=w / width, h=h / height, confidence=1.0, category="animal"
    )
    return _checked_box(box, where=where)


class ImportedDetector:
    """A Detector answering from detections loaded from a file (no model is run).

    Build it with ``from_megadetector_json`` or ``from_coco_camera_traps``.

    Attributes:
        name: "megadetector-json" or "coco-camera-traps" (or as constructed).
        version: "<source file name>@sha256:<first 12 hex digits>" of the source.
        source_detector: model name recorded in the source, if any (MegaDetector
            ``info.detector``), else None.
        skipped_detections: detections ignored because their category id is not in
            ``detection_categories`` (MegaDetector only; 0 otherwise).
    """

    def __init__(
        self,
        *,
        name: str,
        version: str,
        images: Sequence[ImageDetections],
        source_detector: str | None = None,
        skipped_detections: int = 0,
    ) -> None:
        """Index ``images`` by file; raise DetectorError on a duplicate file."""
        self.name = name
        self.version = version
        self.source_detector = source_detector
        self.skipped_detections = skipped_detections
        self._by_file: dict[str, ImageDetections] = {}
        for item in images:
            if item.file in self._by_file:
                raise DetectorError(f"{version}: image {item.file!r} appears more than once")
            self._by_file[item.file] = item

    @property
    def files(self) -> tuple[str, ...]:
        """Every file this detector has a result for, in source order."""
        return tuple(self._by_file)

    @property
    def failures(self) -> dict[str, str]:
        """file -> failure message for images the source detector could not process."""
        return {f: d.failure for f, d in self._by_file.items() if d.failure is not None}

    def detect(self, files: Sequence[str]) -> list[ImageDetections]:
        """Return the stored detections for ``files``, one per file, same order.

        Paths are normalised like the source's (backslashes, "./"). Failed images
        are returned with ``failure`` set and no boxes.

        Raises:
            UnknownFileError (DetectorError and KeyError): a file not in the source.
            DetectorError: ``files`` is a single string, or a path is absolute/invalid.
        """
        if isinstance(files, str):
            raise DetectorError("detect() takes a sequence of paths, not a single string")
        out: list[ImageDetections] = []
        for requested in files:
            key = normalise_relpath(requested)
            try:
                out.append(self._by_file[key])
            except KeyError:
                raise UnknownFileError(
                    f"{self.name} {self.version} has no result for image {key!r}"
                ) from None
        return out

    @classmethod
    def from_megadetector_json(cls, path: Path) -> ImportedDetector:
        """Load MegaDetector batch output (format 1.0 to 1.6).

        All detections are kept whatever their confidence; thresholding is the
        caller's choice. A file without an ``info`` block is read as format 1.0.

        Raises:
            DetectorError: unreadable/invalid JSON, unsupported format version (the
            message lists the supported ones), missing fields, category names other
            than animal/person/vehicle, video entries, duplicate files. Bad image
            entries are all listed in one message (``images[i]: why``). An invalid box
            (outside the frame, zero size, not 4 numbers) fails its image only.
        """
        path = Path(path)
        document, version = _read_json(path)
        if not isinstance(document, dict) or not isinstance(document.get("images"), list):
            raise DetectorError(f"{path}: not MegaDetector output (no 'images' list)")
        _md_format_version(document, source=path)
        categories = _md_categories(document, source=path)
        images: list[ImageDetections] = []
        skipped = 0
        errors: list[str] = []
        seen: set[str] = set()
        for i, entry in enumerate(document["images"]):
            where = f"images[{i}]"
            try:
                item, n_skipped = _md_image(entry, categories=categories, where=where)
            except DetectorError as exc:
                errors.append(str(exc))  # every bad entry is listed, not only the first
                continue
            if item.file in seen:
                errors.append(f"{where}: image {item.file!r} appears more than once")
                continue
            seen.add(item.file)
            images.append(item)
            skipped += n_skipped
        if errors:
            raise DetectorError(f"{path}: {len(errors)} bad image entries: {_listed(errors)}")
        if skipped:
            logger.warning("%s: ignored %d detections with unlisted category ids", path, skipped)
        info = document.get("info")
        model = info.get("detector") if isinstance(info, dict) else None
        return cls(
            name="megadetector-json",
            version=version,
            images=images,
            source_detector=str(model) if model is not None else None,
            skipped_detections=skipped,
        )

    @classmethod
    def from_coco_camera_traps(cls, path: Path) -> ImportedDetector:
        """Load boxes from a COCO Camera Traps annotation file.

        Every box becomes category "animal" with confidence 1.0, normalised by its
        image's width/height. Images with only bbox-less annotations, or with no
        annotation at all, get no boxes. Species categories are not read here.

        Raises:
            DetectorError: unreadable/invalid JSON, missing fields, duplicate image
            ids or file names, an annotation whose image_id is not in ``images``, or
            (when the file lists ``categories``) whose category_id is not in them.
            An invalid box (outside the frame, zero size, not numbers, an image without
            positive width/height) fails its image only: ``failure`` says why.
        """
        path = Path(path)
        document, version = _read_json(path)
        if not isinstance(document, dict):
            raise DetectorError(
                f"{path}: not a COCO Camera Traps file (top level is not an object)"
            )
        images = _coco_images(document, source=path)
        _coco_category_ids_check(document, source=path)
        boxes: dict[Any, list[Box]] = {image_id: [] for image_id in images}
        failures: dict[Any, str] = {}
        for i, ann in enumerate(_require(document, "annotations", list, where=str(path))):
            where = f"{path} annotations[{i}]"
            if not isinstance(ann, dict):
                raise DetectorError(f"{where}: annotation must be an object")
            image_id = _require(ann, "image_id", (str, int), where=where)
            if image_id not in images:
                raise DetectorError(f"{where}: image_id {image_id!r} is not in 'images'")
            if ann.get("bbox") is not None:
                try:
                    boxes[image_id].append(coco_box(images[image_id], ann["bbox"], where=where))
                except DetectorError as exc:
                    # A bad box fails its image, reported per item; the others go on.
                    failures.setdefault(image_id, str(exc))
        detections = [
            ImageDetections(file=image["file_name"], boxes=(), failure=failures[image_id])
            if image_id in failures
            else ImageDetections(file=image["file_name"], boxes=tuple(boxes[image_id]))
            for image_id, image in images.items()
        ]
        return cls(name="coco-camera-traps", version=version, images=detections)
