"""Capture events from camera and time when the import has no sequence ids. Django-free."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from PIL import Image as PILImage

EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 36867
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
    The time is EXIF DateTimeOriginal (else DateTime), naive as cameras write it.
    """
    exif = image.getexif()
    ifd = exif.get_ifd(EXIF_IFD)
    parts = [str(PurePosixPath(file_name).parent)]
    parts += [str(v).strip() for v in (exif.get(MAKE), exif.get(MODEL), ifd.get(BODY_SERIAL)) if v]
    raw = ifd.get(DATETIME_ORIGINAL) or exif.get(DATETIME)
    return " ".join(parts), _exif_time(raw)


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
