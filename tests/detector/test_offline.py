"""Tests for detector.offline: background subtraction per capture sequence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.base import Box, Detector, DetectorError, UnknownFileError
from detector.evaluation import iou
from detector.offline import (
    OfflineDetector,
    OfflineParams,
    frames_order,
    sequence_boxes,
    window_bounds,
    window_boxes,
)

SAMPLE = Path(__file__).resolve().parents[2] / "annotator" / "fixtures" / "missouri-sample"

# Synthetic frames: 320 x 240, a 40 x 40 bright square moving right 50 px per frame.
WIDTH, HEIGHT, BLOB = 320, 240, 40


def blob_box(i: int) -> Box:
    """True normalised box of the blob in synthetic frame i."""
    x, y = 30 + 50 * i, 100
    return Box(
        x=x / WIDTH,
        y=y / HEIGHT,
        w=BLOB / WIDTH,
        h=BLOB / HEIGHT,
        confidence=1.0,
        category="animal",
    )


def synthetic_sequence(
    folder: Path,
    *,
    n: int = 6,
    with_blob: int = 5,
    suffix: str = "png",
    seed: int = 0,
    leaves: bool = False,
) -> dict[str, str]:
    """Write n frames of a static textured background with per-frame noise; the blob is
    drawn on the first ``with_blob`` frames; with ``leaves``, a patch away from the blob
    changes at random in every frame (wind in vegetation). Return file -> sequence key."""
    rng = np.random.default_rng(seed)
    background = rng.uniform(60, 140, size=(HEIGHT // 8, WIDTH // 8))
    texture = np.kron(background, np.ones((8, 8)))  # blocky fixed texture
    files: dict[str, str] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        frame = texture + rng.normal(0, 3, size=texture.shape)
        if i < with_blob:
            b = blob_box(i)
            x0, y0 = round(b.x * WIDTH), round(b.y * HEIGHT)
            frame[y0 : y0 + BLOB, x0 : x0 + BLOB] = 230
        if leaves:
            frame[20:80, 240:300] = rng.uniform(40, 160, size=(60, 60))
        name = f"{folder.name}/frame_{i:02d}.{suffix}"
        Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).convert("RGB").save(
            folder.parent / name
        )
        files[name] = folder.name
    return files


def sample_sequence(seq_id: str) -> tuple[dict[str, str], dict[str, list[Box]]]:
    """Files of one bundled sample sequence (-> seq_id) and their true boxes."""
    doc = json.loads((SAMPLE / "annotations.json").read_text())
    images = {im["id"]: im for im in doc["images"] if im["seq_id"] == seq_id}
    truth: dict[str, list[Box]] = {im["file_name"]: [] for im in images.values()}
    for ann in doc["annotations"]:
        im = images.get(ann["image_id"])
        if im is not None and ann.get("bbox"):
            x, y, w, h = ann["bbox"]
            W, H = im["width"], im["height"]
            truth[im["file_name"]].append(Box(x / W, y / H, w / W, h / H, 1.0, "animal"))
    return {f: seq_id for f in truth}, truth


def hit(pred: Box, true: Box) -> bool:
    """IoU > 0.3 or the predicted box's centre inside the true box."""
    cx, cy = pred.x + pred.w / 2, pred.y + pred.h / 2
    inside = true.x <= cx <= true.x + true.w and true.y <= cy <= true.y + true.h
    return iou(pred, true) > 0.3 or inside


# --- protocol and parameters -----------------------------------------------------------------


def test_is_a_detector_with_versioned_params(tmp_path: Path) -> None:
    det = OfflineDetector(root=tmp_path, sequences={})
    assert isinstance(det, Detector)
    assert det.name == "offline-background"
    assert det.version.startswith("2.0 ")
    other = OfflineDetector(root=tmp_path, sequences={}, params=OfflineParams(z_high=9.0))
    assert other.version != det.version
    assert OfflineDetector(root=tmp_path, sequences={}).version == det.version


@pytest.mark.parametrize(
    "kwargs", [{"min_frames": 2}, {"z_low": 5.0, "z_high": 4.0}, {"bar_top": 0.6}, {"work_size": 8}]
)
def test_params_reject_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(DetectorError):
        OfflineParams(**kwargs)  # type: ignore[arg-type]


def test_unknown_file_raises_before_any_work(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "seq")
    det = OfflineDetector(root=tmp_path, sequences=files)
    with pytest.raises(UnknownFileError, match="not in any known"):
        det.detect([next(iter(files)), "seq/missing.png"])
    with pytest.raises(KeyError):
        det.detect(["other.png"])
    with pytest.raises(DetectorError, match="single string"):
        det.detect("seq/frame_00.png")


# --- synthetic sequence ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_synthetic_blob_found_and_empty_frame_empty(tmp_path: Path, suffix: str) -> None:
    files = synthetic_sequence(tmp_path / "seq", suffix=suffix)
    det = OfflineDetector(root=tmp_path, sequences=files)
    results = det.detect(list(files))
    assert [r.file for r in results] == list(files)
    for i, result in enumerate(results[:5]):
        assert result.failure is None
        assert len(result.boxes) == 1, result.boxes
        assert iou(result.boxes[0], blob_box(i)) > 0.6
        assert 0.5 < result.boxes[0].confidence <= 1.0
        assert result.boxes[0].category == "animal"
    assert results[5].boxes == () and results[5].failure is None


def test_vegetation_moving_in_every_frame_is_damped(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "seq", leaves=True)
    results = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    for i, result in enumerate(results[:5]):
        assert len(result.boxes) == 1 and iou(result.boxes[0], blob_box(i)) > 0.6
    assert results[5].boxes == ()


def test_static_sequence_gives_no_boxes(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "seq", with_blob=0)
    results = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    assert all(r.boxes == () and r.failure is None for r in results)


def test_one_darker_frame_is_not_an_animal(tmp_path: Path) -> None:
    # Infrared flash or auto-exposure: one frame of the burst much darker and flatter.
    files = synthetic_sequence(tmp_path / "seq", with_blob=0)
    dark = tmp_path / list(files)[2]
    arr = np.asarray(Image.open(dark), dtype=np.float32)
    Image.fromarray(np.clip(arr * 0.7 + 10, 0, 255).astype(np.uint8)).save(dark)
    results = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    assert all(r.boxes == () for r in results)


def test_changing_info_bars_are_ignored(tmp_path: Path) -> None:
    # The camera burns a clock into black bars at the top and bottom: it changes every frame.
    files = synthetic_sequence(tmp_path / "seq", with_blob=0)
    for i, name in enumerate(files):
        arr = np.array(Image.open(tmp_path / name))
        arr[:7], arr[-9:] = 0, 0  # bars of about 3 % at the top, 4 % at the bottom
        for k in range(4):  # "digits" that change between frames
            x = 40 + 50 * k + 9 * i
            arr[1:6, x : x + 30] = 255
            arr[-8:-2, x : x + 30] = 255
        Image.fromarray(arr).save(tmp_path / name)
    results = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    assert all(r.boxes == () for r in results)
    unmasked = OfflineParams(bar_top=0.0, bar_bottom=0.0)
    results = OfflineDetector(root=tmp_path, sequences=files, params=unmasked).detect(list(files))
    assert any(r.boxes for r in results)  # the test scene does trigger without the mask


def test_deterministic_and_independent_of_request(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "seq")
    det = OfflineDetector(root=tmp_path, sequences=files)
    whole = det.detect(list(files))
    assert det.detect(list(files)) == whole
    one = list(files)[2]
    assert det.detect([one, one]) == [whole[2], whole[2]]
    # Backslashes and "./" name the same file.
    assert det.detect(["./" + one.replace("/", "\\")]) == [whole[2]]


def test_two_sequences_are_modelled_separately(tmp_path: Path) -> None:
    a = synthetic_sequence(tmp_path / "a", seed=1)
    b = synthetic_sequence(tmp_path / "b", seed=2, with_blob=0)
    det = OfflineDetector(root=tmp_path, sequences={**a, **b})
    results = det.detect([*b, *a])
    assert all(r.boxes == () for r in results[: len(b)])
    assert all(len(r.boxes) == 1 for r in results[len(b) : len(b) + 5])


# --- short sequences and broken files ---------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2])
def test_too_short_sequence_is_a_documented_failure(tmp_path: Path, n: int) -> None:
    files = synthetic_sequence(tmp_path / "seq", n=n, with_blob=n)
    results = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    for r in results:
        assert r.boxes == ()
        assert r.failure is not None and "at least 3 readable frames" in r.failure
        assert f"has {n}" in r.failure


def test_broken_files_fail_alone(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "seq", suffix="jpg")
    good = tmp_path / "seq" / "frame_00.jpg"
    (tmp_path / "seq" / "empty.jpg").write_bytes(b"")
    (tmp_path / "seq" / "text.jpg").write_text("not an image at all")
    (tmp_path / "seq" / "truncated.jpg").write_bytes(good.read_bytes()[:600])
    broken = ["seq/empty.jpg", "seq/text.jpg", "seq/truncated.jpg", "seq/missing.jpg"]
    det = OfflineDetector(root=tmp_path, sequences={**files, **dict.fromkeys(broken, "seq")})
    results = det.detect([*broken, *files])
    for r in results[:4]:
        assert r.boxes == ()
        assert r.failure is not None and "cannot read image" in r.failure
    clean = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    assert results[4:] == clean  # the broken frames neither crash nor change the others
    assert sum(len(r.boxes) == 1 for r in clean[:5]) == 5


def test_broken_frames_can_leave_too_few(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "seq", n=2, with_blob=1)
    (tmp_path / "seq" / "bad.png").write_bytes(b"\x89PNG garbage")
    det = OfflineDetector(root=tmp_path, sequences={**files, "seq/bad.png": "seq"})
    results = det.detect(["seq/bad.png", *files])
    assert "cannot read image" in (results[0].failure or "")
    assert all("has 2" in (r.failure or "") for r in results[1:])


@pytest.mark.parametrize("limit", [50_000, 20_000])  # warning (1x-2x limit) and error (> 2x)
def test_decompression_bomb_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    files = synthetic_sequence(tmp_path / "seq", n=3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)  # 320 x 240 = 76,800 pixels
    results = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    for r in results:
        assert r.failure is not None and "too many pixels" in r.failure


# --- real frames -------------------------------------------------------------------------------


def test_real_moving_ocelot_found_on_most_frames() -> None:
    files, truth = sample_sequence("SEQ75294")  # night IR, ocelot walking across, 10 frames
    results = OfflineDetector(root=SAMPLE, sequences=files).detect(list(files))
    found = sum(
        any(hit(b, t) for b in r.boxes if b.confidence >= 0.1 for t in truth[r.file])
        for r in results
    )
    assert found >= 8, [r.boxes for r in results]


def test_real_agouti_frames_and_empty_frames() -> None:
    files, truth = sample_sequence("SEQ75520")  # agouti in frames 1-6, gone in 7-10
    results = OfflineDetector(root=SAMPLE, sequences=files).detect(list(files))
    with_animal = [r for r in results if truth[r.file]]
    empty = [r for r in results if not truth[r.file]]
    assert len(with_animal) == 6 and len(empty) == 4
    found = sum(any(hit(b, t) for b in r.boxes for t in truth[r.file]) for r in with_animal)
    assert found >= 4
    assert sum(bool(r.boxes) for r in empty) <= 1


@pytest.mark.parametrize("kind", ["exif6", "exif8", "sixteen"])
def test_turned_and_16_bit_frames_give_upright_boxes(tmp_path: Path, kind: str) -> None:
    """Boxes are relative to the upright image (as MegaDetector's), whatever the file holds."""
    files = synthetic_sequence(tmp_path / "seq", suffix="png")
    stored_as = {"exif6": Image.Transpose.ROTATE_90, "exif8": Image.Transpose.ROTATE_270}
    odd: dict[str, str] = {}
    for name in files:
        with Image.open(tmp_path / name) as frame:
            grey = frame.convert("L")
        target = f"odd/{Path(name).name}"
        (tmp_path / "odd").mkdir(exist_ok=True)
        if kind == "sixteen":
            Image.fromarray(np.asarray(grey).astype(np.uint16) * 257).save(tmp_path / target)
        else:
            exif = Image.Exif()
            exif[0x0112] = int(kind[-1])
            grey.transpose(stored_as[kind]).save(tmp_path / target, exif=exif)
        odd[target] = "odd"
    plain = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    turned = OfflineDetector(root=tmp_path, sequences=odd).detect(list(odd))
    assert sum(len(r.boxes) for r in plain) >= 5
    for a, b in zip(plain, turned, strict=True):
        assert b.failure is None and len(a.boxes) == len(b.boxes)
        for box_a, box_b in zip(a.boxes, b.boxes, strict=True):
            assert iou(box_a, box_b) > 0.8


# --- neighbouring frames: untimed folders and single-frame triggers -------------------------


def _window_brute(alike: list[bool], *, index: int, k: int) -> tuple[int, int]:
    """The block of min(2k + 1, run length) frames of index's run (frames joined through
    alike pairs) containing index whose farthest frame from index is nearest."""
    run = {index}
    for step in (-1, 1):
        j = index
        while 0 <= j + step <= len(alike) and alike[min(j, j + step)]:
            j += step
            run.add(j)
    lo, hi = min(run), max(run) + 1
    size = min(2 * k + 1, hi - lo)
    blocks = [(a, a + size) for a in range(lo, hi - size + 1) if a <= index < a + size]
    return min(blocks, key=lambda b: max(index - b[0], b[1] - 1 - index))


@pytest.mark.parametrize("seed", range(60))
def test_window_bounds_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    alike = [bool(v) for v in rng.random(n - 1) < 0.75]
    k = int(rng.integers(1, 4))
    for index in range(n):
        assert window_bounds(alike, index=index, k=k) == _window_brute(alike, index=index, k=k)


def test_frames_order_by_time_else_by_counter() -> None:
    t = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    files = ["c/IMG_10.JPG", "c/IMG_9.JPG", "c/IMG_0011.JPG"]
    assert frames_order(files, times={}) == ["c/IMG_9.JPG", "c/IMG_10.JPG", "c/IMG_0011.JPG"]
    times: dict[str, datetime | None] = {
        "c/IMG_10.JPG": t,
        "c/IMG_9.JPG": t + timedelta(seconds=5),
        "c/IMG_0011.JPG": (t - timedelta(hours=1)).replace(tzinfo=None),  # naive, as UTC
    }
    assert frames_order(files, times=times) == ["c/IMG_0011.JPG", "c/IMG_10.JPG", "c/IMG_9.JPG"]
    times["c/IMG_9.JPG"] = None  # one untimed frame: the camera goes by file order
    assert frames_order(files, times=times)[0] == "c/IMG_9.JPG"


def test_window_boxes_is_the_sequence_result_of_that_frame(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "seq", n=5, with_blob=2)
    stack = np.stack(
        [np.asarray(Image.open(tmp_path / f).convert("L"), dtype=np.float32) for f in files]
    )
    whole = sequence_boxes(stack, params=OfflineParams())
    assert [window_boxes(stack, index=i, params=OfflineParams()) for i in range(5)] == whole
    with pytest.raises(DetectorError):
        window_boxes(stack, index=5, params=OfflineParams())


def test_untimed_single_frames_are_detected_like_their_burst(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "cam", n=8, with_blob=5)
    as_burst = OfflineDetector(root=tmp_path, sequences=files).detect(list(files))
    alone = OfflineDetector(root=tmp_path, sequences={f: f for f in files})
    results = alone.detect(list(files))
    # Within the window (8 frames on each side) the neighbours are the whole burst.
    assert results == as_burst
    assert all(len(r.boxes) == 1 and r.failure is None for r in results[:5])
    assert all(r.boxes == () for r in results[5:])
    one = list(files)[3]
    assert alone.detect([one]) == [results[3]]  # independent of what else is asked


def test_neighbours_of_another_view_are_not_background(tmp_path: Path) -> None:
    a = synthetic_sequence(tmp_path / "a", n=5, with_blob=5, seed=1)
    b = synthetic_sequence(tmp_path / "b", n=5, with_blob=0, seed=2)
    files = [*a, *b]
    # One camera, untimed, each frame alone: a's frames come first in file order, then b's.
    det = OfflineDetector(
        root=tmp_path, sequences={f: f for f in files}, cameras=dict.fromkeys(files, "cam")
    )
    results = det.detect(files)
    alone_a = OfflineDetector(root=tmp_path, sequences=dict.fromkeys(a, "a")).detect(list(a))
    assert results[:5] == alone_a
    assert all(r.boxes == () and r.failure is None for r in results[5:])


def test_too_few_frames_of_a_camera_say_what_would_help(tmp_path: Path) -> None:
    files = synthetic_sequence(tmp_path / "cam", n=2, with_blob=1)
    results = OfflineDetector(root=tmp_path, sequences={f: f for f in files}).detect(list(files))
    for r in results:
        assert r.boxes == () and r.failure is not None
        assert "'cam'" in r.failure and "has 2" in r.failure
        for hint in ("capture times", "COCO", "seq_id", "MegaDetector"):
            assert hint in r.failure
