"""Capture events from camera + EXIF time when the import has no sequence ids."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image as PILImage

from detector.imports import images_import
from projects.models import Image, Project
from projects.sequences import FrameInfo, exif_camera_and_time, sequences_infer

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
