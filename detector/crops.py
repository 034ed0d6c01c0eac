"""Cut detection boxes out of images (the classifier sees crops, not whole frames)."""

from __future__ import annotations

import math
import numbers

from PIL import Image

from detector.base import Box, DetectorError

__all__ = ["box_to_pixels", "crop_box"]

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


def crop_box(image: Image.Image, box: Box, *, padding: float = 0.1) -> Image.Image:
    """Return the RGB crop of ``box`` from ``image``, padded and clipped to the frame.

    Each side is extended by ``padding`` times the box size along that axis (width
    for left/right, height for top/bottom), giving the classifier some context; the
    result is clipped to the image, so boxes at the border get less padding there.

    Raises:
        DetectorError (a ValueError): negative or non-finite padding, or a box that
        covers no pixel of the image.
    """
    if (
        isinstance(padding, bool)
        or not isinstance(padding, numbers.Real)
        or not math.isfinite(padding)
    ):
        raise DetectorError(f"padding must be a finite number, got {padding!r}")
    if padding < 0:
        raise DetectorError(f"padding must be >= 0, got {padding}")
    padded = Box(
        x=box.x - padding * box.w,
        y=box.y - padding * box.h,
        w=box.w * (1 + 2 * padding),
        h=box.h * (1 + 2 * padding),
        confidence=box.confidence,
        category=box.category,
    )
    rect = box_to_pixels(padded, image.width, image.height)
    return image.crop(rect).convert("RGB")
