"""Cut detection boxes out of images (the classifier sees crops, not whole frames).

Boxes are relative to the *upright* image: the file's pixels turned by its EXIF
``Orientation`` tag, as MegaDetector (which runs ``exif_transpose`` before detecting) and web
browsers (which show the image turned) see it. ``image_upright`` and ``upright_size`` give that
image and its size; ``image_rgb`` turns any mode (16-bit greyscale included) into 8-bit RGB.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from detector.base import Box, DetectorError

__all__ = [
    "CROP_SHAPES",
    "ImageOpener",
    "box_to_pixels",
    "crop_box",
    "crop_rect",
    "exif_orientation",
    "image_load",
    "image_rgb",
    "image_upright",
    "upright_size",
]

# EXIF Orientation tag (0x0112) values that swap width and height (a quarter turn).
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_ORIENTATION_TAG = 0x0112
# The transposition that makes an image upright, per Orientation value (as ImageOps does).
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(image: Image.Image) -> int:
    """The EXIF Orientation of ``image`` (1 = upright) read from its header; 1 if absent/bad."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make the image unusable
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of ``image`` once turned upright, from the header (no decoding)."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in _SWAPS_AXES else (width, height)


def image_upright(image: Image.Image, *, orientation: int | None = None) -> Image.Image:
    """``image`` turned by its EXIF Orientation (or ``orientation``), as boxes expect.

    Pass ``orientation`` (read from the file before ``draft``/``convert`` lost the EXIF
    block) to turn a derived image; without it the image's own EXIF is read.
    """
    if orientation is None:
        upright = ImageOps.exif_transpose(image)
        return upright if upright is not None else image
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def image_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, whatever its mode (L, P, RGBA, CMYK, 16-bit greyscale ...).

    PIL's own conversion clips 16-bit greyscale (``I;16``, ``I``) at 255, which turns a
    normal 16-bit PNG white; here such values are scaled down by 256 instead.
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image).astype(np.uint32) >> 8
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


# Opens an image by its name relative to a detector's root and returns it as a binary file
# (the caller closes it), for images that are not files on this machine (an S3 bucket). The
# Django side supplies it (``projects.image_source``), so detectors stay Django-free. Raises
# OSError when the image is missing or unreadable.
ImageOpener = Callable[[str], BinaryIO]


def image_load(path: Path | BinaryIO) -> Image.Image:
    """The image at ``path`` (or in the open binary file ``path``) decoded in full (a
    truncated file fails here, not later), turned upright and in 8-bit RGB: what a detector
    or an embedding network sees.

    Raises OSError, ValueError or Pillow's DecompressionBombError for a file that is not a
    readable image; callers wrap them in their own error.
    """
    with Image.open(path) as image:
        image.load()
        return image_rgb(image_upright(image))


# Tolerance when snapping normalised coordinates to pixels: 0.1 * 640 is
# 64.00000000000001 in floating point and must not grow the box by a whole pixel.
_SNAP_EPS = 1e-6


def box_to_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel rectangle (x0, y0, x1, y1) covering ``box`` in a ``width`` x ``height`` image.

    x0/y0 are floored and x1/y1 ceiled, so the rectangle contains the whole box
    (exclusive end, as PIL ``crop`` expects), then clipped to the image.

    Raises:
        DetectorError (a ValueError): non-positive image size, or a box that covers
        no pixel of the image (outside the frame or zero size).
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise DetectorError(f"image {name} must be a positive integer, got {value!r}")
    x0 = max(0, math.floor(box.x * width + _SNAP_EPS))
    y0 = max(0, math.floor(box.y * height + _SNAP_EPS))
    x1 = min(int(width), math.ceil((box.x + box.w) * width - _SNAP_EPS))
    y1 = min(int(height), math.ceil((box.y + box.h) * height - _SNAP_EPS))
    if x1 <= x0 or y1 <= y0:
        raise DetectorError(f"box {box} covers no pixel of a {width}x{height} image")
    return x0, y0, x1, y1


# Crop geometries (``Project.crop_shape``): "box" pads each side by a fraction of the box's own
# size along that axis (the crop keeps the box's aspect ratio); "square" cuts a square around the
# box, so the network's squash-resize to its square input does not distort the animal.
CROP_SHAPES: tuple[str, ...] = ("box", "square")


def _padding_check(padding: float) -> None:
    if (
        isinstance(padding, bool)
        or not isinstance(padding, numbers.Real)
        or not math.isfinite(padding)
    ):
        raise DetectorError(f"padding must be a finite number, got {padding!r}")
    if padding < 0:
        raise DetectorError(f"padding must be >= 0, got {padding}")


def _square_span(start: int, end: int, side: int, size: int) -> tuple[int, int]:
    """[a, a + min(side, size)) around [start, end) on an axis of ``size`` pixels.

    Centred on the box (an odd surplus puts the extra pixel after it), then shifted back
    inside the frame; it still contains the box since the box lies inside the frame.
    """
    span = min(side, size)
    a = start - (span - (end - start)) // 2
    a = max(0, min(a, size - span))
    return a, a + span


def crop_rect(
    box: Box, width: int, height: int, *, padding: float = 0.1, shape: str = "box"
) -> tuple[int, int, int, int]:
    """The pixel rectangle (x0, y0, x1, y1), exclusive end, that ``crop_box`` cuts.

    ``box``: each side extended by ``padding`` times the box size along that axis, then
    clipped to the frame (boxes at the border get less context there).

    ``square``: side = the longer side of the box's pixel rectangle (``box_to_pixels``)
    times ``1 + 2 * padding``, rounded up to whole pixels; centred on the box and, at a
    border, shifted back inside the frame instead of clipped, so the crop keeps its size and
    real context replaces the context lost outside the frame (no invented pixels). Only a
    square larger than the frame along an axis spans that whole axis (the crop is then
    narrower than square there). The box is always wholly inside the rectangle.

    Raises:
        DetectorError (a ValueError): negative or non-finite padding, an unknown shape, a
        non-positive image size or a box that covers no pixel of the image.
    """
    _padding_check(padding)
    if shape not in CROP_SHAPES:
        raise DetectorError(f"crop shape must be one of {', '.join(CROP_SHAPES)}, got {shape!r}")
    if shape == "box":
        padded = Box(
            x=box.x - padding * box.w,
            y=box.y - padding * box.h,
            w=box.w * (1 + 2 * padding),
            h=box.h * (1 + 2 * padding),
            confidence=box.confidence,
            category=box.category,
        )
        return box_to_pixels(padded, width, height)
    x0, y0, x1, y1 = box_to_pixels(box, width, height)
    side = math.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * padding) - _SNAP_EPS)
    left, right = _square_span(x0, x1, side, int(width))
    top, bottom = _square_span(y0, y1, side, int(height))
    return left, top, right, bottom


def crop_box(
    image: Image.Image, box: Box, *, padding: float = 0.1, shape: str = "box"
) -> Image.Image:
    """Return the 8-bit RGB crop of ``box`` from ``image``, with context (``crop_rect``).

    ``image`` must already be upright (``image_upright``), since boxes are relative to it.
    ``shape`` is "box" (each side padded by ``padding`` times the box size along that axis,
    clipped to the frame) or "square" (see ``crop_rect``).

    Raises:
        DetectorError (a ValueError): negative or non-finite padding, an unknown shape or a
        box that covers no pixel of the image.
    """
    rect = crop_rect(box, image.width, image.height, padding=padding, shape=shape)
    return image_rgb(image.crop(rect))
