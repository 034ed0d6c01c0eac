"""Capture events from camera + EXIF time when the import has no sequence ids."""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from detector.imports import images_import
from projects.models import Image, Project
from projects.sequences import (
    JUMP_FLOOR,
    JUMP_HALF,
    THUMB_SIDE,
    BurstFrame,
    FrameInfo,
    burst_jumps,
    bursts_infer,
    counters_consecutive,
    exif_camera_and_time,
    grey_thumbnail,
    natural_key,
    sequences_infer,
    similarity,
)

T0 = datetime(2026, 5, 1, 22, 15, 0)


def test_gaps_split_events_per_camera() -> None:
    frames = [
        FrameInfo("a1", "cam A", T0),
        FrameInfo("a2", "cam A", T0 + timedelta(seconds=2)),
        FrameInfo("a3", "cam A", T0 + timedelta(seconds=62 + 2)),  # > 60 s after a2
        FrameInfo("b1", "cam B", T0 + timedelta(seconds=1)),  # same time, other camera
        FrameInfo("x", "cam A", None),
    ]
    events = sequences_infer(frames, gap_seconds=60)
    assert events["a1"] == events["a2"] == "cam A#1"
    assert events["a3"] == "cam A#2"
    assert events["b1"] == "cam B#1"
    assert events["x"] not in {events["a1"], events["a3"]}


def test_exactly_the_gap_stays_in_the_event() -> None:
    frames = [FrameInfo("1", "c", T0), FrameInfo("2", "c", T0 + timedelta(seconds=60))]
    assert len(set(sequences_infer(frames, gap_seconds=60).values())) == 1


def _jpeg_with_exif(path: Path, when: datetime, model: str) -> None:
    image = PILImage.new("RGB", (64, 48), (90, 120, 60))
    exif = image.getexif()
    exif[271], exif[272] = "Reconyx", model
    exif.get_ifd(0x8769)[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif)


def test_exif_camera_and_time(tmp_path: Path) -> None:
    path = tmp_path / "site3" / "IMG_0001.JPG"
    _jpeg_with_exif(path, T0, "HC600")
    with PILImage.open(path) as img:
        camera, taken = exif_camera_and_time(img, file_name="site3/IMG_0001.JPG")
    assert camera == "site3 Reconyx HC600" and taken == T0


@pytest.mark.django_db
def test_import_without_sequence_ids_uses_time(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "traps"
    for i, seconds in enumerate([0, 1, 2, 300, 301]):
        _jpeg_with_exif(folder / "site1" / f"IMG_{i}.JPG", T0 + timedelta(seconds=seconds), "HC600")
    _jpeg_with_exif(folder / "site2" / "IMG_0.JPG", T0, "HC600")
    images_import(project=project, folder=folder)
    seqs = dict(Image.objects.values_list("file_name", "seq_id"))
    assert len({seqs[f"site1/IMG_{i}.JPG"] for i in range(3)}) == 1
    assert seqs["site1/IMG_3.JPG"] == seqs["site1/IMG_4.JPG"] != seqs["site1/IMG_0.JPG"]
    assert seqs["site2/IMG_0.JPG"] not in {seqs["site1/IMG_0.JPG"], seqs["site1/IMG_3.JPG"]}
    assert set(Image.objects.values_list("seq_source", flat=True)) == {"time"}


@pytest.mark.django_db
def test_imported_sequence_ids_win(project: Project, small_folder: Path) -> None:
    images_import(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    assert set(Image.objects.values_list("seq_source", flat=True)) == {"metadata"}
    assert Image.objects.filter(seq_id="SEQ75179").count() == 5


# --- capture times with an offset ----------------------------------------------------------


def test_exif_offset_gives_an_aware_utc_time(tmp_path: Path) -> None:
    path = tmp_path / "site3" / "IMG_0001.JPG"
    image = PILImage.new("RGB", (64, 48), (90, 120, 60))
    exif = image.getexif()
    exif.get_ifd(0x8769)[36867] = T0.strftime("%Y:%m:%d %H:%M:%S")
    exif.get_ifd(0x8769)[36881] = "+02:00"
    path.parent.mkdir(parents=True)
    image.save(path, exif=exif)
    with PILImage.open(path) as img:
        _, taken = exif_camera_and_time(img, file_name="site3/IMG_0001.JPG")
    assert taken == (T0 - timedelta(hours=2)).replace(tzinfo=UTC)


@pytest.mark.parametrize("offset", ["", "2:00", "+25:00", "+02:60", "Z"])
def test_a_malformed_exif_offset_leaves_the_camera_time(tmp_path: Path, offset: str) -> None:
    path = tmp_path / "IMG_0001.JPG"
    image = PILImage.new("RGB", (64, 48))
    exif = image.getexif()
    exif.get_ifd(0x8769)[36867] = T0.strftime("%Y:%m:%d %H:%M:%S")
    exif.get_ifd(0x8769)[36881] = offset
    image.save(path, exif=exif)
    with PILImage.open(path) as img:
        assert exif_camera_and_time(img, file_name="IMG_0001.JPG")[1] == T0


# --- file order and bursts without times -----------------------------------------------------


def test_natural_key_orders_camera_counters() -> None:
    names = ["IMG_10.JPG", "IMG_9.JPG", "img_0100.jpg", "RCNX0042.JPG", "IMG_0011.JPG", "a"]
    assert sorted(names, key=natural_key) == [
        "a",
        "IMG_9.JPG",
        "IMG_10.JPG",
        "IMG_0011.JPG",
        "img_0100.jpg",
        "RCNX0042.JPG",
    ]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("100RECNX/RCNX0042.JPG", "100RECNX/RCNX0043.JPG", True),
        ("IMG_0009.JPG", "IMG_0010.JPG", True),
        ("IMG_0009.JPG", "IMG_0011.JPG", False),  # a file missing between
        ("IMG_0009.JPG", "PIC_0010.JPG", False),
        ("100RECNX/RCNX0042.JPG", "101RECNX/RCNX0043.JPG", False),
        ("IMG_0001a.JPG", "IMG_0002b.JPG", False),
        ("cover.jpg", "cover.jpg", False),
    ],
)
def test_counters_consecutive(a: str, b: str, expected: bool) -> None:
    assert counters_consecutive(a, b) is expected


def _thumb(value: float) -> np.ndarray:
    """A thumbnail whose similarity with ``_thumb(v)`` is ``cos`` of the angle between them."""
    base = np.zeros((THUMB_SIDE, THUMB_SIDE), dtype=np.float32)
    base[::2] = 1.0
    other = np.zeros_like(base)
    other[:, ::2] = 1.0
    mix = np.cos(value) * (base - base.mean()) + np.sin(value) * (other - other.mean())
    return grey_thumbnail(mix)


def _jumps_brute(dissimilarity: list[float], *, ratio: float) -> list[bool]:
    """Pair i jumps when above JUMP_FLOOR and above ``ratio`` times the median of the pairs
    j != i with |i - j| <= JUMP_HALF."""
    out = []
    for i, value in enumerate(dissimilarity):
        around = [d for j, d in enumerate(dissimilarity) if j != i and abs(i - j) <= JUMP_HALF]
        out.append(
            len(around) > 0 and value > JUMP_FLOOR and value > ratio * statistics.median(around)
        )
    return out


def _bursts_brute(
    frames: list[BurstFrame], *, min_similarity: float, max_frames: int, jump_ratio: float
) -> set:
    """Bursts by the rule's words: sort each camera's frames by name; a frame starts a new
    burst unless its counter follows the previous one's, they look alike, the pair does not
    jump and the burst is not full. Returns the set of bursts as frozensets of keys."""
    found: list[list[str]] = []
    for camera in sorted({f.camera for f in frames}):
        mine = sorted((f for f in frames if f.camera == camera), key=lambda f: natural_key(f.name))
        gaps = [1 - similarity(a.thumb, b.thumb) for a, b in zip(mine, mine[1:], strict=False)]
        jumps = _jumps_brute(gaps, ratio=jump_ratio)
        for i, frame in enumerate(mine):
            prev = mine[i - 1] if i else None
            if (
                prev is not None
                and counters_consecutive(prev.name, frame.name)
                and similarity(prev.thumb, frame.thumb) >= min_similarity
                and not jumps[i - 1]
                and len(found[-1]) < max_frames
            ):
                found[-1].append(frame.key)
            else:
                found.append([frame.key])
    return {frozenset(b) for b in found}


@pytest.mark.parametrize("seed", range(40))
def test_bursts_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    counters = np.sort(rng.choice(np.arange(1, 14), size=n, replace=False))
    frames = [
        BurstFrame(
            key=f"k{i}",
            camera=str(rng.choice(["A", "B"])),
            name=f"IMG_{c:04d}.JPG",
            thumb=_thumb(float(rng.choice([0.0, 0.02, 0.05, 0.3, 1.4]))),
        )
        for i, c in enumerate(rng.permutation(counters))
    ]
    max_frames = int(rng.integers(1, 5))
    ratio = float(rng.choice([2.0, 50.0, 1e9]))
    got = bursts_infer(frames, min_similarity=0.8, max_frames=max_frames, jump_ratio=ratio)
    groups: dict[str, set[str]] = {}
    for key, burst in got.items():
        groups.setdefault(burst, set()).add(key)
    brute = _bursts_brute(frames, min_similarity=0.8, max_frames=max_frames, jump_ratio=ratio)
    assert {frozenset(g) for g in groups.values()} == brute


@pytest.mark.parametrize("seed", range(30))
def test_burst_jumps_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gaps = [float(g) for g in rng.choice([0.0, 1e-4, 1e-3, 0.05, 0.3], size=rng.integers(0, 12))]
    for ratio in (1.0, 10.0, 50.0):
        assert burst_jumps(gaps, ratio=ratio) == _jumps_brute(gaps, ratio=ratio)


def test_two_triggers_of_one_view_are_two_bursts() -> None:
    """Frames of one trigger nearly identical, the next trigger of the same view a little
    different (light moved): still alike (similarity >= 0.8), yet split at the jump."""
    angles = [0.0, 0.002, 0.0, 0.002, 0.0, 0.2, 0.202, 0.2, 0.202, 0.2]
    frames = [
        BurstFrame(str(i), "cam", f"IMG_{i + 1:04d}.JPG", _thumb(a)) for i, a in enumerate(angles)
    ]
    assert min(similarity(a.thumb, b.thumb) for a, b in itertools.pairwise(frames)) >= 0.8
    bursts = bursts_infer(frames, min_similarity=0.8, max_frames=20)
    assert set(bursts.values()) == {"cam#burst:IMG_0001.JPG", "cam#burst:IMG_0006.JPG"}
    joined = bursts_infer(frames, min_similarity=0.8, max_frames=20, jump_ratio=1e9)
    assert set(joined.values()) == {"cam#burst:IMG_0001.JPG"}


def test_burst_ids_name_the_camera_and_first_file() -> None:
    frames = [
        BurstFrame("2", "cam", "d/IMG_0002.JPG", _thumb(0.0)),
        BurstFrame("1", "cam", "d/IMG_0001.JPG", _thumb(0.0)),
        BurstFrame("3", "cam", "d/IMG_0003.JPG", _thumb(1.4)),  # another view
    ]
    bursts = bursts_infer(frames, min_similarity=0.8, max_frames=10)
    assert bursts == {
        "1": "cam#burst:IMG_0001.JPG",
        "2": "cam#burst:IMG_0001.JPG",
        "3": "cam#burst:IMG_0003.JPG",
    }


def test_similarity_of_views() -> None:
    rng = np.random.default_rng(0)
    view = rng.uniform(0, 255, (60, 80)).astype(np.float32)
    brighter = 1.3 * view + 20
    other = rng.uniform(0, 255, (60, 80)).astype(np.float32)
    assert similarity(grey_thumbnail(view), grey_thumbnail(brighter)) > 0.99
    # Trimming biases unrelated views upwards (about 0.5): still below the thresholds in use.
    assert similarity(grey_thumbnail(view), grey_thumbnail(other)) < 0.7
    assert not grey_thumbnail(np.full((60, 80), 7.0, dtype=np.float32)).any()


@pytest.mark.django_db
def test_import_of_an_untimed_folder_infers_bursts(project: Project, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    views = [rng.uniform(0, 255, (48, 64, 3)) for _ in range(2)]
    folder = tmp_path / "cam"
    folder.mkdir()
    # IMG_0001-0003 one view, IMG_0004-0005 another, IMG_0007 the first again after a gap.
    for counter, view in [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (7, 0)]:
        pixels = views[view] + rng.normal(0, 2, views[view].shape)
        PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            folder / f"IMG_{counter:04d}.JPG"
        )
    images_import(project=project, folder=tmp_path)
    rows = dict(Image.objects.values_list("file_name", "seq_id"))
    assert rows["cam/IMG_0001.JPG"] == rows["cam/IMG_0002.JPG"] == rows["cam/IMG_0003.JPG"]
    assert rows["cam/IMG_0004.JPG"] == rows["cam/IMG_0005.JPG"] != rows["cam/IMG_0003.JPG"]
    assert rows["cam/IMG_0007.JPG"] not in (rows["cam/IMG_0001.JPG"], rows["cam/IMG_0005.JPG"])
    assert set(Image.objects.values_list("seq_source", "time_source")) == {("burst", "")}
