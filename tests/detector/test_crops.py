"""Tests for detector.crops: pixel geometry, padding, clipping, EXIF orientation and modes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.base import Box, DetectorError
from detector.crops import (
    box_to_pixels,
    crop_box,
    crop_rect,
    exif_orientation,
    image_load,
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


def _square_reference(
    b: Box, width: int, height: int, padding: float
) -> tuple[int, set[tuple[int, int, int, int]]]:
    """Brute force: every rectangle of the square's size that lies in the frame and contains
    the box's pixels; returns the best distance of its centre to the box's and those at it."""
    xs = [x for x in range(width) if x + 1 > b.x * width + 1e-6 and x < (b.x + b.w) * width - 1e-6]
    ys = [
        y for y in range(height) if y + 1 > b.y * height + 1e-6 and y < (b.y + b.h) * height - 1e-6
    ]
    longer = max(len(xs), len(ys))
    side = next(
        s for s in range(1, 10 * max(width, height)) if s >= longer * (1 + 2 * padding) - 1e-6
    )
    sx, sy = min(side, width), min(side, height)
    centre = (xs[0] + xs[-1] + 1, ys[0] + ys[-1] + 1)  # twice the box centre, in pixels
    best, rects = 10**9, set[tuple[int, int, int, int]]()
    for a in range(width - sx + 1):
        for c in range(height - sy + 1):
            if not (a <= xs[0] and xs[-1] < a + sx and c <= ys[0] and ys[-1] < c + sy):
                continue
            distance = abs(2 * a + sx - centre[0]) + abs(2 * c + sy - centre[1])
            if distance < best:
                best, rects = distance, set()
            if distance == best:
                rects.add((a, c, a + sx, c + sy))
    return best, rects


def test_square_crop_matches_brute_force_on_tiny_images() -> None:
    """Random boxes, many touching or crossing the border: the square is the brute force's
    nearest-centred in-frame rectangle of side min(ceil(longer * (1 + 2p)), frame), and its
    pixels are the source's."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(400):
        width, height = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        x0, y0 = rng.uniform(-0.3, 1.0, size=2)
        w, h = rng.uniform(0.01, 1.2, size=2)
        if rng.random() < 0.3:  # snap to the frame's edges
            x0, w = (0.0, w) if rng.random() < 0.5 else (1.0 - w, w)
        b = box(float(x0), float(y0), float(w), float(h))
        padding = float(rng.choice([0.0, 0.1, 0.25, 0.5]))
        try:
            rect = crop_rect(b, width, height, padding=padding, shape="square")
        except DetectorError:
            with pytest.raises(DetectorError):
                box_to_pixels(b, width, height)
            continue
        _, rects = _square_reference(b, width, height, padding)
        assert rect in rects, (b, width, height, padding, rect, rects)
        img = coordinate_image(width, height)
        crop = np.asarray(crop_box(img, b, padding=padding, shape="square"))
        left, top, right, bottom = rect
        assert np.array_equal(crop, np.asarray(img)[top:bottom, left:right])
        checked += 1
    assert checked > 200


def test_square_crop_at_border_shifts_inside() -> None:
    img = coordinate_image(200, 100)
    # 20 x 40 px box at the left edge: side 40 * 1.5 = 60, shifted to start at x = 0.
    assert crop_rect(box(0.0, 0.3, 0.1, 0.4), 200, 100, padding=0.25, shape="square") == (
        0,
        20,
        60,
        80,
    )
    # Wider than the frame is tall: spans the whole height, stays 120 px wide.
    crop = crop_box(img, box(0.3, 0.1, 0.4, 0.5), padding=0.25, shape="square")
    assert crop.size == (120, 100)
    # Box shape is unchanged by the new argument.
    assert crop_box(img, box(0.4, 0.4, 0.2, 0.2), padding=0.1, shape="box").size == (48, 24)


def test_crop_shape_rejected() -> None:
    img = coordinate_image(20, 20)
    with pytest.raises(DetectorError, match="crop shape"):
        crop_box(img, box(0.1, 0.1, 0.5, 0.5), shape="round")


def test_image_load_reads_an_open_file_as_it_reads_a_path(tmp_path: Path) -> None:
    """Images in a bucket reach detectors as binary file objects (``ImageOpener``)."""
    pixels = np.random.default_rng(0).integers(0, 255, (30, 40), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="L")
    exif = image.getexif()
    exif[0x0112] = 6  # a quarter turn: the loaded image must be upright
    path = tmp_path / "frame.jpg"
    image.save(path, exif=exif)
    from_path = image_load(path)
    from_file = image_load(io.BytesIO(path.read_bytes()))
    assert from_file.mode == "RGB" and from_file.size == (30, 40) == from_path.size
    assert np.array_equal(np.asarray(from_file), np.asarray(from_path))
    with pytest.raises(OSError):
        image_load(io.BytesIO(b"not an image"))
