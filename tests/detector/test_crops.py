"""Tests for detector.crops: pixel geometry, padding, clipping, EXIF orientation and modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.base import Box, DetectorError
from detector.crops import (
    box_to_pixels,
    crop_box,
    exif_orientation,
    image_rgb,
    image_upright,
    upright_size,
)


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


# --- Unusual images: EXIF orientation, CMYK, greyscale, 16-bit ---------------------------

# What the camera stored for an upright picture U, per EXIF Orientation: the file holds
# U turned the other way, and a viewer (or MegaDetector's exif_transpose) turns it back.
_STORED_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # camera turned clockwise: pixels stored turned left
    8: Image.Transpose.ROTATE_270,
}


def _exif_file(path: Path, upright: Image.Image, orientation: int) -> Path:
    """Save ``upright`` as the camera would with EXIF Orientation ``orientation`` (lossless)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright.transpose(_STORED_AS[orientation]).save(path, format="PNG", exif=exif)
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_boxes_are_relative_to_the_upright_image(tmp_path: Path, orientation: int) -> None:
    upright = coordinate_image(200, 100)
    path = _exif_file(tmp_path / f"o{orientation}.png", upright, orientation)
    with Image.open(path) as stored:
        assert exif_orientation(stored) == orientation
        assert upright_size(stored) == (200, 100)  # header only: no decoding needed
        stored.load()
        turned = image_upright(stored)
    assert turned.size == (200, 100)
    assert np.array_equal(np.asarray(turned.convert("RGB")), np.asarray(upright))
    crop = crop_box(turned, box(0.5, 0.2, 0.25, 0.5), padding=0.0)
    # The crop's top-left pixel is the upright image's pixel (100, 20), whatever the file held.
    assert crop.size == (50, 50)
    assert tuple(int(v) for v in np.asarray(crop)[0, 0, :2]) == (100, 20)


def test_orientation_applies_to_a_derived_image(tmp_path: Path) -> None:
    """The offline detector reads the tag, then turns its small grey copy with it."""
    upright = coordinate_image(200, 100)
    with Image.open(_exif_file(tmp_path / "o6.png", upright, 6)) as stored:
        orientation = exif_orientation(stored)
        grey = stored.convert("L")
    turned = image_upright(grey, orientation=orientation)
    assert np.array_equal(np.asarray(turned), np.asarray(upright.convert("L")))
    assert image_upright(grey, orientation=1) is grey


def test_missing_or_nonsense_orientation_is_upright(tmp_path: Path) -> None:
    plain = coordinate_image(30, 20)
    assert (exif_orientation(plain), upright_size(plain)) == (1, (30, 20))
    exif = Image.Exif()
    exif[0x0112] = 42  # not an orientation
    plain.save(tmp_path / "odd.png", exif=exif)
    with Image.open(tmp_path / "odd.png") as odd:
        assert (exif_orientation(odd), upright_size(odd)) == (1, (30, 20))


def test_crops_of_16_bit_greyscale_are_scaled_not_clipped() -> None:
    levels = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    sixteen = Image.fromarray(levels)
    assert sixteen.mode == "I;16"
    crop = np.asarray(crop_box(sixteen, box(0.0, 0.0, 1.0, 1.0), padding=0.0))
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    # PIL's own convert("RGB") would give 255 for every level above 255 (nearly all of them).
    assert np.array_equal(crop[..., 0], (levels >> 8).astype(np.uint8))
    assert np.array_equal(crop[..., 0], crop[..., 2])
    wide = Image.fromarray(levels.astype(np.int32))  # mode "I", as some PNG readers give
    assert wide.mode == "I" and np.array_equal(np.asarray(image_rgb(wide))[..., 1], crop[..., 1])


def test_cmyk_crops_are_rgb() -> None:
    rgb = coordinate_image(40, 40)
    crop = crop_box(rgb.convert("CMYK"), box(0.25, 0.25, 0.5, 0.5), padding=0.0)
    assert crop.mode == "RGB"
    assert np.array_equal(np.asarray(crop), np.asarray(rgb.crop((10, 10, 30, 30))))
