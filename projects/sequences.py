"""Capture events from camera and time when the import has no sequence ids. Django-free."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image as PILImage

EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 36867
OFFSET_TIME_ORIGINAL = 36881
DATETIME = 306
MAKE, MODEL = 271, 272
BODY_SERIAL = 0xA431


@dataclass(frozen=True)
class FrameInfo:
    key: str  # any id of the frame (a file name, a primary key)
    camera: str
    taken_at: datetime | None


def capture_event(*, seq_id: str, image_id: int) -> str:
    """An image's capture event: its sequence id, or ``image-<pk>`` when it has none.

    One rule for every place that groups by event (detection backgrounds, event predictions,
    the export), so their keys always agree.
    """
    return seq_id or f"image-{image_id}"


def exif_camera_and_time(image: PILImage.Image, *, file_name: str) -> tuple[str, datetime | None]:
    """Camera id and capture time of an opened image.

    The camera is the image's folder plus the EXIF make, model and serial where present: one
    folder usually holds one deployment, and two cameras of one model differ by serial.
    The time is EXIF DateTimeOriginal (else DateTime): aware, in UTC, when
    OffsetTimeOriginal gives the clock's offset from UTC ("+02:00"), else naive as most
    cameras write it (their clocks have no time zone).
    """
    exif = image.getexif()
    ifd = exif.get_ifd(EXIF_IFD)
    parts = [str(PurePosixPath(file_name).parent)]
    parts += [str(v).strip() for v in (exif.get(MAKE), exif.get(MODEL), ifd.get(BODY_SERIAL)) if v]
    original = ifd.get(DATETIME_ORIGINAL)
    taken = _exif_time(original or exif.get(DATETIME))
    offset = _exif_offset(ifd.get(OFFSET_TIME_ORIGINAL)) if original else None
    if taken is not None and offset is not None:
        taken = taken.replace(tzinfo=timezone(offset)).astimezone(UTC)
    return " ".join(parts), taken


def _exif_offset(raw: object) -> timedelta | None:
    """An EXIF OffsetTime* value ("+02:00", "-05:30") as a timedelta; None if malformed."""
    if not isinstance(raw, str):
        return None
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", raw.strip().rstrip("\x00"))
    if match is None:
        return None
    hours, minutes = int(match.group(2)), int(match.group(3))
    if hours > 14 or minutes > 59:
        return None
    sign = 1 if match.group(1) == "+" else -1
    return sign * timedelta(hours=hours, minutes=minutes)


def _exif_time(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def sequences_infer(frames: Iterable[FrameInfo], *, gap_seconds: float) -> dict[str, str]:
    """Group frames into capture events: {frame key: sequence id}.

    Frames of one camera, sorted by time, start a new event when more than ``gap_seconds``
    passed since the previous frame. A frame without a time is an event of its own. Ids are
    ``"<camera>#<n>"`` with n counting from 1 per camera, so they are stable for a given set.
    """
    by_camera: dict[str, list[FrameInfo]] = defaultdict(list)
    result: dict[str, str] = {}
    for frame in frames:
        if frame.taken_at is None:
            result[frame.key] = f"{frame.camera}#untimed:{Path(frame.key).name}"
        else:
            by_camera[frame.camera].append(frame)
    for camera, group in by_camera.items():
        group.sort(key=lambda f: (f.taken_at, f.key))
        number, previous = 0, None
        for frame in group:
            assert frame.taken_at is not None
            if previous is None or (frame.taken_at - previous).total_seconds() > gap_seconds:
                number += 1
            result[frame.key] = f"{camera}#{number}"
            previous = frame.taken_at
    return result


# --- order and bursts of frames without times ------------------------------------------------

# Side of the similarity thumbnail; the info bars (camera id, time) are cut off first.
THUMB_SIDE = 24
_THUMB_BAR_TOP, _THUMB_BAR_BOTTOM = 0.05, 0.06
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key putting ``IMG_9`` before ``IMG_10`` (digit runs compare as numbers).

    Each part is (kind, number, text): kind 0 for digits, 1 for text, so keys of any two
    names compare without a type error; equal numbers written differently ("007", "7")
    fall back to the text.
    """
    parts = _DIGITS.split(name)
    return tuple(
        (0, int(part), part) if i % 2 else (1, 0, part.casefold())
        for i, part in enumerate(parts)
        if part
    )


def file_counter(name: str) -> tuple[str, int] | None:
    """(prefix, number) of a camera file name: the last digit run of the file's stem, and
    everything before it (folders included), e.g. ``"100RECNX/RCNX0042.JPG"`` ->
    ``("100RECNX/RCNX", 42)``; None when the stem has no digits."""
    path = PurePosixPath(name)
    runs = list(_DIGITS.finditer(path.stem))
    if not runs:
        return None
    last = runs[-1]
    prefix = str(path.parent / path.stem[: last.start()]) + "|" + path.stem[last.end() :]
    return prefix, int(last.group())


def counters_consecutive(a: str, b: str) -> bool:
    """True when file ``b`` is the next counter after file ``a`` (same prefix, number + 1)."""
    ca, cb = file_counter(a), file_counter(b)
    return ca is not None and cb is not None and ca[0] == cb[0] and cb[1] == ca[1] + 1


def grey_thumbnail(grey: np.ndarray) -> np.ndarray:
    """A (THUMB_SIDE, THUMB_SIDE) float32 summary of a greyscale frame for ``similarity``:
    info bars cut off, block-averaged, zero mean and unit spread (all zeros if flat)."""
    rows = grey.shape[0]
    top, bottom = round(_THUMB_BAR_TOP * rows), rows - round(_THUMB_BAR_BOTTOM * rows)
    body = np.asarray(grey, dtype=np.float32)[top:bottom]
    small = PILImage.fromarray(body, mode="F").resize(
        (THUMB_SIDE, THUMB_SIDE), PILImage.Resampling.BOX
    )
    thumb = np.asarray(small, dtype=np.float32)
    spread = float(thumb.std())
    if spread < 1e-3:
        return np.zeros_like(thumb)
    return (thumb - float(thumb.mean())) / spread


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Trimmed correlation of two ``grey_thumbnail``s in [-1, 1]: the correlation over the
    three quarters of the pixels that differ least, so an animal (even a large one near the
    lens) leaves one camera view near 1, while another view or day against night stays low.
    """
    gap = np.abs(a - b).ravel()
    keep = gap <= np.quantile(gap, 0.75)
    x, y = a.ravel()[keep], b.ravel()[keep]
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x @ x) * (y @ y)))
    if norm < 1e-9:
        return 0.0
    return float(np.clip((x @ y) / norm, -1.0, 1.0))


@dataclass(frozen=True)
class BurstFrame:
    """A frame without time: its key, camera, file name (relative) and ``grey_thumbnail``."""

    key: str
    camera: str
    name: str
    thumb: np.ndarray


# A pair of frames more unlike each other than JUMP_RATIO times the pairs around it (JUMP_HALF
# on each side) is a new trigger of the same view: within a burst the scene barely changes,
# between two triggers light and shadows move. Pairs nearly identical in absolute terms
# (dissimilarity under JUMP_FLOOR) never split. Measured on missouri-dev and the bundled
# sample (benchmarks/README.md, "Without times or sequence ids").
JUMP_RATIO, JUMP_FLOOR, JUMP_HALF = 50.0, 2e-4, 4


def burst_jumps(
    dissimilarity: Sequence[float], *, ratio: float = JUMP_RATIO, floor: float = JUMP_FLOOR
) -> list[bool]:
    """For each pair i of consecutive frames (``dissimilarity[i]`` = 1 - ``similarity``):
    True when it jumps, i.e. exceeds ``floor`` and ``ratio`` times the median of the up to
    ``JUMP_HALF`` pairs on each side of it (never when it has no neighbouring pairs)."""
    out = []
    for i, value in enumerate(dissimilarity):
        around = [
            *dissimilarity[max(0, i - JUMP_HALF) : i],
            *dissimilarity[i + 1 : i + 1 + JUMP_HALF],
        ]
        out.append(bool(around) and value > floor and value > ratio * float(np.median(around)))
    return out


def bursts_infer(
    frames: Iterable[BurstFrame],
    *,
    min_similarity: float,
    max_frames: int,
    jump_ratio: float = JUMP_RATIO,
) -> dict[str, str]:
    """Group untimed frames into bursts: {frame key: burst id}.

    Frames of one camera in file order (``natural_key``) stay in one burst while the file
    counter goes up by one, the frame looks like the one before (``similarity`` at least
    ``min_similarity``), the pair does not jump against the pairs around it
    (``burst_jumps`` with ``jump_ratio``: two triggers of one view) and the burst has fewer
    than ``max_frames`` frames. Ids are ``"<camera>#burst:<first file's name>"``, stable
    for a given set.
    """
    by_camera: dict[str, list[BurstFrame]] = defaultdict(list)
    for frame in frames:
        by_camera[frame.camera].append(frame)
    result: dict[str, str] = {}
    for camera, group in by_camera.items():
        group.sort(key=lambda f: (natural_key(f.name), f.key))
        alike = [similarity(a.thumb, b.thumb) for a, b in zip(group, group[1:], strict=False)]
        jumps = burst_jumps([1.0 - s for s in alike], ratio=jump_ratio)
        first, size = group[0], 0
        for i, frame in enumerate(group):
            joins = (
                i > 0
                and size < max_frames
                and counters_consecutive(group[i - 1].name, frame.name)
                and alike[i - 1] >= min_similarity
                and not jumps[i - 1]
            )
            if not joins:
                first, size = frame, 0
            size += 1
            result[frame.key] = f"{camera}#burst:{PurePosixPath(first.name).name}"
    return result
