"""A Detector backed by detections computed elsewhere and read from a file.

Two sources are supported:

* MegaDetector batch output (https://lila.science/megadetector-output-format),
  format versions 1.0 to 1.6: normalised ``[x, y, w, h]`` boxes with confidences.
* COCO Camera Traps annotations (the LILA format), read and checked by ``detector.cct``:
  absolute pixel ``[x, y, w, h]`` boxes, converted there (``cct_box``) to normalised
  boxes with confidence 1.0 and category "animal". An annotation without ``bbox``
  means "no box" for its image.

File paths are kept as the source writes them (relative to the folder the source
describes), with backslashes turned into forward slashes and "./" removed; absolute
paths and paths escaping the folder ("..") are rejected (``detector.base.normalise_relpath``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detector.base import (
    CATEGORIES,
    Box,
    DetectorError,
    ImageDetections,
    UnknownFileError,
    bbox_numbers,
    box_validate,
    normalise_relpath,
)
from detector.cct import cct_box, cct_read

__all__ = [
    "SUPPORTED_MEGADETECTOR_VERSIONS",
    "ImportedDetector",
    "normalise_relpath",  # moved to detector.base; still importable from here
]

logger = logging.getLogger(__name__)

# Versions whose detection fields (file, detections[].category/conf/bbox, failure,
# detection_categories) this module reads; later versions only add fields, but are
# refused until checked.
# 1.5 and 1.6 add optional fields (classifications, detector metadata) beside the ones read here.
SUPPORTED_MEGADETECTOR_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")


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
            x, y, w, h = bbox_numbers(det.get("bbox"), where=det_where)
            box = Box(x=x, y=y, w=w, h=h, confidence=conf, category=category)
            boxes.append(box_validate(box, where=det_where))
        except DetectorError as exc:
            # A bad box fails its image, reported per item; the other images go on.
            return ImageDetections(file=file, boxes=(), failure=str(exc)), skipped
    return ImageDetections(file=file, boxes=tuple(boxes)), skipped


def _listed(items: Sequence[str], limit: int = 20, sep: str = "; ") -> str:
    """The first ``limit`` items joined with ``sep``, and how many more there are."""
    shown = sep.join(items[:limit])
    return shown + (f"{sep}and {len(items) - limit} more" if len(items) > limit else "")


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
    def from_coco_camera_traps(cls, path: Path, *, raw: bytes | None = None) -> ImportedDetector:
        """Load boxes from a COCO Camera Traps annotation file (``detector.cct.cct_read``;
        ``raw``: its bytes, read by the caller, e.g. from a bucket).

        Every box becomes category "animal" with confidence 1.0, normalised by its
        image's width/height. Images with only bbox-less annotations, or with no
        annotation at all, get no boxes. Species categories are not read here, and a
        boxes-only file may leave them out.

        Raises:
            CctError (a DetectorError): whatever ``cct_read`` refuses (unreadable or invalid
            JSON, no 'images' or 'annotations' list, missing fields, duplicate image ids or
            file names, an annotation whose image_id is not in ``images`` or, when the file
            lists ``categories``, whose category_id is not in them). An invalid box (outside
            the frame, zero size, not numbers, an image without positive width/height)
            fails its image only: ``failure`` says why.
        """
        path = Path(path)
        document = cct_read(path, optional=("categories",), raw=raw)
        boxes: list[list[Box]] = [[] for _ in document.images]
        failures: dict[int, str] = {}  # image position -> why its boxes are unusable
        for ann in document.annotations:
            if ann.bbox is None:
                continue
            image = document.images[ann.image_index]
            try:
                box = cct_box(image, ann.bbox, where=f"{path} annotations[{ann.index}]")
            except DetectorError as exc:
                # A bad box fails its image, reported per item; the others go on.
                failures.setdefault(ann.image_index, str(exc))
                continue
            boxes[ann.image_index].append(box)
        detections = [
            ImageDetections(file=image.file_name, boxes=(), failure=failures[image.index])
            if image.index in failures
            else ImageDetections(file=image.file_name, boxes=tuple(boxes[image.index]))
            for image in document.images
        ]
        version = f"{path.name}@sha256:{document.sha256[:12]}"
        return cls(name="coco-camera-traps", version=version, images=detections)
