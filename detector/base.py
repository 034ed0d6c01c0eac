"""Detector interface and the detection data model.

Boxes follow the MegaDetector convention: normalised [0, 1] coordinates, top-left
corner plus width and height, origin at the image's top-left corner.
"""

from __future__ import annotations

import math
import numbers
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "CATEGORIES",
    "Box",
    "Detector",
    "DetectorError",
    "ImageDetections",
    "UnknownFileError",
    "bbox_numbers",
    "box_validate",
    "normalise_relpath",
]

# The three MegaDetector classes; every Box.category is one of these.
CATEGORIES: tuple[str, ...] = ("animal", "person", "vehicle")

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class DetectorError(ValueError):
    """Raised for invalid detections, unreadable detection files or unknown files."""


class WeightsUnavailableError(RuntimeError):
    """Requested pretrained weights (a detector's or a backbone's) could not be obtained; the
    message says how to fix it. Defined here, the lowest layer with model weights, so that
    commands can name it without importing the layer above (``embeddings.model`` re-exports
    it)."""


class UnknownFileError(DetectorError, KeyError):
    """A file was requested that the detector has no result for.

    Both a DetectorError (ValueError) and a KeyError, so either ``except`` works.
    """

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and add quotes.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Box:
    """One detection.

    Attributes:
        x, y: top-left corner, normalised to [0, 1] by image width / height.
        w, h: box width / height, normalised the same way.
        confidence: detector confidence in [0, 1] (1.0 for human annotations).
        category: one of CATEGORIES ("animal", "person", "vehicle").

    The constructor does not check values; ``box_validate`` does.
    """

    x: float
    y: float
    w: float
    h: float
    confidence: float
    category: str


@dataclass(frozen=True)
class ImageDetections:
    """All boxes for one image.

    Attributes:
        file: image path relative to the image folder, forward slashes.
        boxes: the boxes, in source order; empty means "processed, nothing found".
        failure: None if the image was processed; otherwise the detector's failure
            message (e.g. unreadable image), and ``boxes`` is empty but means
            "unknown", not "empty image".
    """

    file: str
    boxes: tuple[Box, ...]
    failure: str | None = None


@runtime_checkable
class Detector(Protocol):
    """Anything that yields boxes for image files.

    Attributes:
        name: short identifier of the detector kind (stable across runs).
        version: identifies the exact model or source, for provenance.
    """

    name: str
    version: str

    def detect(self, files: Sequence[str]) -> list[ImageDetections]:
        """Return one ImageDetections per requested file, in the same order.

        ``files`` are paths relative to the image folder (forward or back slashes).
        Raises UnknownFileError (a DetectorError and KeyError) for a file the
        detector knows nothing about.
        """
        ...


def _finite(value: object, *, name: str) -> float:
    """Return ``value`` as a finite float or raise DetectorError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DetectorError(f"box {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DetectorError(f"box {name} must be finite, got {value!r}")
    return float(value)


def box_validate(box: Box, *, where: str | None = None) -> Box:
    """Check a box and clip it to the frame.

    Returns a new Box whose extent is the intersection of ``box`` with [0, 1]^2.
    ``where`` (e.g. "images[3] detection 0"), when given, prefixes the error message.

    Raises:
        DetectorError (a ValueError): non-numeric or non-finite values, width or
        height <= 0, confidence outside [0, 1], unknown category, or a box that lies
        entirely outside the frame (nothing left after clipping).
    """
    if where is not None:
        try:
            return box_validate(box)
        except DetectorError as exc:
            raise DetectorError(f"{where}: {exc}") from exc
    x, y = _finite(box.x, name="x"), _finite(box.y, name="y")
    w, h = _finite(box.w, name="w"), _finite(box.h, name="h")
    confidence = _finite(box.confidence, name="confidence")
    if w <= 0 or h <= 0:
        raise DetectorError(f"box must have positive width and height, got w={w}, h={h}")
    if not 0.0 <= confidence <= 1.0:
        raise DetectorError(f"box confidence must be in [0, 1], got {confidence}")
    if box.category not in CATEGORIES:
        raise DetectorError(f"box category must be one of {CATEGORIES}, got {box.category!r}")
    cx, cw = _clip_span(x, w)
    cy, ch = _clip_span(y, h)
    if cw <= 0 or ch <= 0:
        raise DetectorError(f"box [{x}, {y}, {w}, {h}] lies outside the [0, 1] frame")
    return Box(x=cx, y=cy, w=cw, h=ch, confidence=confidence, category=box.category)


def _clip_span(start: float, size: float) -> tuple[float, float]:
    """Clip the interval [start, start + size] to [0, 1]; return (start, size).

    Values already inside are returned unchanged (recomputing end - start would
    add float rounding noise to every box).
    """
    if start < 0.0:
        size, start = size + start, 0.0
    if start + size > 1.0:
        size = 1.0 - start
    return start, size


def bbox_numbers(bbox: object, *, where: str) -> tuple[float, float, float, float]:
    """A source's ``[x, y, w, h]`` list as four floats (in whatever unit the source uses).

    Raises:
        DetectorError: prefixed with ``where``, unless ``bbox`` is a list of 4 real numbers
        (booleans are not numbers here).
    """
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DetectorError(f"{where}: bbox must be a list of 4 numbers, got {bbox!r}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in bbox):
        raise DetectorError(f"{where}: bbox must be a list of 4 numbers, got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return x, y, w, h


def normalise_relpath(path: str) -> str:
    """Return ``path`` as a clean relative POSIX path ("a\\b" -> "a/b", "./a" -> "a").

    Every detection source and annotation file names images this way (``ImageDetections.file``).

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
