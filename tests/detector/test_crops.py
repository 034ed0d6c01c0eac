"""Tests for detector.crops: pixel geometry, padding and clipping."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detector.base import Box, DetectorError
from detector.crops import box_to_pixels, crop_box


def box(x: float, y: float, w: float, h: float) -> Box:
    return Box(x=x, y=y, w=w, h=h, confidence=1.0, category="animal")


def coordinate_image(width: int, height: int) -> Image.Image:
    """RGB image whose pixel (x, y) holds (x, y, 0), to check where a crop came from."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[..., 0] = np.arange(width)[None, :]
    arr[..., 1] = np.arange(height)[:, None]
    return Image.fromarray(arr, mode="RGB")


def test_box_to_pixels_exact() -> None:
    assert box_to_pixels(box(0.1, 0.2, 0.5, 0.25), 640, 480) == (64, 96, 384, 216)


def test_box_to_pixels_covers_fractional_pixels() -> None:
    # 0.101 * 100 = 10.1 -> floor 10; (0.101 + 0.2) * 100 = 30.1 -> ceil 31.
    assert box_to_pixels(box(0.101, 0.101, 0.2, 0.2), 100, 100) == (10, 10, 31, 31)


def test_box_to_pixels_clips_and_rejects() -> None:
    assert box_to_pixels(box(-0.2, 0.9, 0.5, 0.5), 100, 50) == (0, 45, 30, 50)
    with pytest.raises(DetectorError, match="no pixel"):
        box_to_pixels(box(1.2, 0.1, 0.1, 0.1), 100, 100)
    with pytest.raises(DetectorError, match="positive integer"):
        box_to_pixels(box(0.1, 0.1, 0.1, 0.1), 0, 100)


def test_crop_padding() -> None:
    img = coordinate_image(200, 100)
    # Box 40 x 20 px at (80, 40); 10% padding adds 4 px left/right and 2 px top/bottom.
    crop = crop_box(img, box(0.4, 0.4, 0.2, 0.2), padding=0.1)
    assert crop.size == (48, 24)
    arr = np.asarray(crop)
    assert (int(arr[0, 0, 0]), int(arr[0, 0, 1])) == (76, 38)
    assert (int(arr[-1, -1, 0]), int(arr[-1, -1, 1])) == (123, 61)
    assert crop_box(img, box(0.4, 0.4, 0.2, 0.2), padding=0.0).size == (40, 20)


def test_crop_clipped_at_border() -> None:
    img = coordinate_image(200, 100)
    # Box touches the top-left corner: padding there is cut off by the frame.
    crop = crop_box(img, box(0.0, 0.0, 0.1, 0.2), padding=0.5)
    assert crop.size == (30, 30)  # 0..20+10 px wide, 0..20+10 px tall
    arr = np.asarray(crop)
    assert (int(arr[0, 0, 0]), int(arr[0, 0, 1])) == (0, 0)
    # Bottom-right corner box.
    crop = crop_box(img, box(0.9, 0.8, 0.1, 0.2), padding=0.5)
    assert crop.size == (30, 30)
    assert tuple(int(v) for v in np.asarray(crop)[-1, -1, :2]) == (199, 99)


def test_crop_returns_rgb() -> None:
    grey = Image.new("L", (50, 50), color=128)
    crop = crop_box(grey, box(0.2, 0.2, 0.4, 0.4))
    assert crop.mode == "RGB"
    rgba = Image.new("RGBA", (50, 50))
    assert crop_box(rgba, box(0.2, 0.2, 0.4, 0.4)).mode == "RGB"


def test_crop_rejects_bad_padding() -> None:
    img = coordinate_image(20, 20)
    with pytest.raises(DetectorError, match="padding"):
        crop_box(img, box(0.2, 0.2, 0.4, 0.4), padding=-0.1)
