"""Import: recursive, metadata from COCO, new files only, bad files reported and skipped."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from detector.base import DetectorError
from detector.coco import CocoError
from detector.imports import images_import
from detector.models import Detection
from embeddings.pipeline import folder_ingest
from projects.import_roots import FolderImportError
from projects.models import Image, Project

pytestmark = pytest.mark.django_db


def test_import_reads_metadata_and_species(project: Project, small_folder: Path) -> None:
    report = images_import(
        project=project, folder=small_folder, coco=small_folder / "annotations.json"
    )
    assert (report.added, report.already_present, report.problems) == (15, 0, [])
    image = Image.objects.get(file_name="images/Agouti/SEQ75520/SEQ75520_IMG_0003.JPG")
    assert (image.seq_id, image.frame_num, image.width, image.height) == ("SEQ75520", 3, 640, 640)
    assert Path(image.path).is_absolute()
    assert project.species.count() == 10 and project.species.filter(name="agouti").exists()


def test_reimport_adds_only_what_is_new(
    project: Project, small_folder: Path, sample_dir: Path
) -> None:
    images_import(project=project, folder=small_folder)
    ocelot = "Ocelot/SEQ75294"  # one sequence: 10 images, 10 boxes
    shutil.copytree(sample_dir / "images" / ocelot, small_folder / "images" / ocelot)
    report = images_import(project=project, folder=small_folder)
    assert (report.added, report.already_present) == (10, 15)
    assert Image.objects.filter(project=project).count() == 25


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size: a decompression bomb costs nothing to make."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_bad_files_are_reported_and_the_rest_goes_on(project: Project, small_folder: Path) -> None:
    """Every broken file is listed with its reason; the good ones are imported, nothing else."""
    real = next((small_folder / "images").rglob("*.JPG")).read_bytes()
    bad = small_folder / "bad"
    bad.mkdir()
    (bad / "notes.jpg").write_text("this is not an image")
    (bad / "empty.png").write_bytes(b"")
    (bad / "noise.jpeg").write_bytes(random.Random(0).randbytes(5000))
    (bad / "truncated.jpg").write_bytes(real[: len(real) // 2])  # the header is intact
    (bad / "corrupt.jpg").write_bytes(real[:600] + b"\x00" * 100 + real[700:5000])
    (bad / "bomb.png").write_bytes(_png_header(20_000, 20_000))  # > 2x Pillow's limit: error
    (bad / "big.png").write_bytes(_png_header(10_000, 10_000))  # 1x-2x the limit: a warning
    (bad / "folder.jpg").mkdir()  # a folder named like an image is no file at all
    report = images_import(project=project, folder=small_folder)
    problems = dict(report.problems)
    assert set(problems) == {
        "bad/notes.jpg",
        "bad/empty.png",
        "bad/noise.jpeg",
        "bad/truncated.jpg",
        "bad/corrupt.jpg",
        "bad/bomb.png",
        "bad/big.png",
    }
    assert "truncated" in problems["bad/truncated.jpg"]
    for name in ("bad/notes.jpg", "bad/empty.png", "bad/noise.jpeg"):
        assert problems[name].startswith("not a readable image: cannot identify image file")
    for name in ("bad/bomb.png", "bad/big.png"):
        assert "decompression bomb" in problems[name]
    assert (report.added, report.already_present) == (15, 0)
    assert Image.objects.count() == 15 and not Image.objects.filter(file_name__startswith="bad/")
    again = images_import(project=project, folder=small_folder)  # still refused, nothing added
    assert (again.added, again.already_present, len(again.problems)) == (0, 15, 7)


class Hung(Exception):
    """Raised by the alarm: the import blocked instead of finishing."""


def test_a_fifo_named_like_an_image_is_reported_without_hanging(
    project: Project, small_folder: Path
) -> None:
    """A named pipe with no writer blocks whoever opens it for reading: the import must skip
    it unopened. The alarm turns a hang into a failure."""
    os.mkfifo(small_folder / "images" / "x.jpg")

    def hung(signum: int, frame: object) -> None:
        raise Hung("the import blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        report = images_import(project=project, folder=small_folder)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    problems = dict(report.problems)
    assert set(problems) == {"images/x.jpg"}
    assert "not a regular file but a named pipe (FIFO)" in problems["images/x.jpg"]
    assert report.added == 15 and not Image.objects.filter(file_name="images/x.jpg").exists()


def test_missing_folder_changes_nothing(project: Project, tmp_path: Path) -> None:
    with pytest.raises(FolderImportError, match="not a folder"):
        images_import(project=project, folder=tmp_path / "nowhere")
    assert not Image.objects.exists()


def test_both_box_sources_refused(project: Project, small_folder: Path) -> None:
    with pytest.raises(FolderImportError, match="either"):
        folder_ingest(
            project=project,
            folder=small_folder,
            coco=small_folder / "a.json",
            megadetector=small_folder / "b.json",
        )
    assert not Image.objects.exists()


def test_ingest_twice_changes_nothing(ingested_project: Project, small_folder: Path) -> None:
    counts = (ingested_project.images.count(), ingested_project.crops.count())
    again = folder_ingest(
        project=ingested_project, folder=small_folder, coco=small_folder / "annotations.json"
    )
    assert again.images.added == 0 and again.detection is not None
    assert again.detection.images_done == 0
    assert (ingested_project.images.count(), ingested_project.crops.count()) == counts


def test_decompression_bomb_is_refused(
    project: Project, small_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage

    # Any real image is a "bomb" once the limit is below its pixel count (640 × 640).
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100_000)
    report = images_import(project=project, folder=small_folder)
    assert report.added == 0 and len(report.problems) == 15
    assert "decompression bomb" in report.problems[0][1].lower()
    assert not Image.objects.exists()


# --- Import roots (TRAPWISE_IMPORT_ROOTS) --------------------------------------------------


def _state(project: Project) -> tuple[int, int, int]:
    return Image.objects.count(), project.species.count(), Detection.objects.count()


def test_folder_outside_the_import_roots_is_refused(
    project: Project, small_folder: Path, tmp_path: Path, settings: Any
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link").symlink_to(small_folder, target_is_directory=True)
    settings.TRAPWISE_IMPORT_ROOTS = [allowed]
    before = _state(project)
    for folder in (small_folder, allowed / ".." / small_folder.name, allowed / "link"):
        with pytest.raises(FolderImportError, match="outside the allowed import roots") as exc:
            folder_ingest(project=project, folder=folder, coco=small_folder / "annotations.json")
        assert str(small_folder) in str(exc.value)  # names where it really lies
    assert _state(project) == before == (0, 0, 0)


def test_json_outside_the_import_roots_is_refused(
    project: Project, small_folder: Path, tmp_path: Path, settings: Any
) -> None:
    settings.TRAPWISE_IMPORT_ROOTS = [small_folder / "images"]
    outside = small_folder / "annotations.json"
    for what, coco, md in (("COCO", outside, None), ("MegaDetector", None, outside)):
        with pytest.raises(FolderImportError, match=f"the {what} file .* outside the allowed"):
            folder_ingest(
                project=project, folder=small_folder / "images", coco=coco, megadetector=md
            )
    assert _state(project) == (0, 0, 0)


def test_symlinked_file_pointing_outside_the_roots_is_skipped(
    project: Project, small_folder: Path, tmp_path: Path, settings: Any
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = next((small_folder / "images").rglob("*.JPG"))
    shutil.copy(secret, outside / "secret.jpg")
    (small_folder / "images" / "leak.jpg").symlink_to(outside / "secret.jpg")
    (small_folder / "images" / "inside.jpg").symlink_to(secret)  # a link within the roots
    (small_folder / "images" / "loop.jpg").symlink_to(small_folder / "images" / "loop.jpg")
    settings.TRAPWISE_IMPORT_ROOTS = [small_folder]
    report = images_import(project=project, folder=small_folder)
    problems = dict(report.problems)
    assert set(problems) == {"images/leak.jpg", "images/loop.jpg"}
    assert "outside the allowed import roots" in problems["images/leak.jpg"]
    assert str(outside / "secret.jpg") in problems["images/leak.jpg"]
    assert report.added == 16 and Image.objects.filter(file_name="images/inside.jpg").exists()


def test_without_roots_the_import_follows_links_anywhere(
    project: Project, small_folder: Path, tmp_path: Path, settings: Any
) -> None:
    """Unset TRAPWISE_IMPORT_ROOTS: no restriction (only operators run the import)."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(next((small_folder / "images").rglob("*.JPG")), outside / "far.jpg")
    (small_folder / "images" / "far.jpg").symlink_to(outside / "far.jpg")
    settings.TRAPWISE_IMPORT_ROOTS = []
    report = images_import(project=project, folder=small_folder / "images" / "..")
    assert (report.added, report.problems) == (16, [])


# --- Duplicate file names -------------------------------------------------------------------


def test_same_name_in_two_folders_stays_two_images(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "cams"
    first, second = sorted((small_folder / "images" / "Agouti").rglob("*.JPG"))[:2]
    for cam, source in (("cam1", first), ("cam2", second)):
        (folder / cam).mkdir(parents=True)
        shutil.copy(source, folder / cam / "IMG_0001.JPG")
    md = tmp_path / "md.json"
    md.write_text(
        json.dumps(
            {
                "info": {"format_version": "1.4"},
                "detection_categories": {"1": "animal"},
                "images": [
                    {
                        "file": "cam1\\IMG_0001.JPG",
                        "detections": [
                            {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]}
                        ],
                    },
                    {
                        "file": "cam2/IMG_0001.JPG",
                        "detections": [
                            {"category": "1", "conf": 0.8, "bbox": [0.5, 0.5, 0.3, 0.3]}
                        ],
                    },
                ],
            }
        )
    )
    report = folder_ingest(project=project, folder=folder, megadetector=md)
    assert (report.images.added, report.images.problems) == (2, [])
    boxes = dict(Detection.objects.values_list("image__file_name", "x"))
    assert boxes == {"cam1/IMG_0001.JPG": 0.1, "cam2/IMG_0001.JPG": 0.5}
    # The same folder again, spelt differently (via ".." or a link): nothing new.
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    for spelling in (folder / "cam1" / "..", tmp_path / "link"):
        again = folder_ingest(project=project, folder=spelling, megadetector=md)
        assert (again.images.added, again.images.already_present) == (0, 2)
    assert (Image.objects.count(), Detection.objects.count()) == (2, 2)


def test_megadetector_file_listing_an_image_twice_changes_nothing(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    name = "images/Agouti/SEQ75520/SEQ75520_IMG_0001.JPG"
    md = tmp_path / "md.json"
    md.write_text(
        json.dumps(
            {
                "info": {"format_version": "1.4"},
                "detection_categories": {"1": "animal"},
                "images": [
                    {"file": name, "detections": []},
                    {"file": "images/Red_Fox/x.JPG", "detections": []},
                    {"file": name.replace("/", "\\"), "detections": []},
                    {"file": "./images/Red_Fox/x.JPG", "detections": []},
                ],
            }
        )
    )
    with pytest.raises(DetectorError) as exc:
        folder_ingest(project=project, folder=small_folder, megadetector=md)
    message = str(exc.value)
    assert "2 bad image entries" in message
    assert f"images[2]: image '{name}' appears more than once" in message
    assert "images[3]: image 'images/Red_Fox/x.JPG' appears more than once" in message
    assert _state(project) == (0, 0, 0)


# --- COCO values: checked whole before anything is written -----------------------------------


def _coco_folder(small_folder: Path, tmp_path: Path, images: list[dict[str, Any]]) -> Path:
    """A folder holding a real picture at each images[].file_name; the COCO file beside it."""
    picture = next((small_folder / "images").rglob("*.JPG"))
    folder = tmp_path / "coco-folder"
    for entry in images:
        target = folder / entry["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(picture, target)
    return folder


def _coco(tmp_path: Path, images: list[dict[str, Any]], names: list[Any]) -> Path:
    """A COCO file listing ``images`` (640 x 640, ids 1, 2, ...) and one category per name.

    Written with json.dumps, which writes float("nan") and float("inf") as the non-standard
    literals NaN and Infinity that some tools emit.
    """
    document = {
        "images": [
            {"id": i + 1, "width": 640, "height": 640, **entry} for i, entry in enumerate(images)
        ],
        "annotations": [],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(names)],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    return path


def test_paths_starting_with_a_dot_keep_their_metadata(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    """ ".hidden/x.jpg" is a folder named .hidden, not "hidden/x.jpg"; "./y.jpg" is y.jpg."""
    images = [
        {"file_name": ".hidden/x.jpg", "seq_id": "S1", "frame_num": 2},
        {"file_name": "..dots/z.jpg", "seq_id": "S2", "frame_num": 1},
        {"file_name": "y.jpg", "seq_id": "S3", "frame_num": 0},
    ]
    folder = _coco_folder(small_folder, tmp_path, images)
    images[2]["file_name"] = "./y.jpg"
    images_import(project=project, folder=folder, coco=_coco(tmp_path, images, ["fox"]))
    got = {i.file_name: (i.seq_id, i.seq_source, i.frame_num) for i in Image.objects.all()}
    assert got == {
        ".hidden/x.jpg": ("S1", "metadata", 2),
        "..dots/z.jpg": ("S2", "metadata", 1),
        "y.jpg": ("S3", "metadata", 0),
    }


def test_a_null_seq_id_is_no_sequence_not_one_called_none(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    images: list[dict[str, Any]] = [
        {"file_name": "a.jpg", "seq_id": None, "frame_num": None},
        {"file_name": "b.jpg", "seq_id": None},
        {"file_name": "c.jpg", "seq_id": "  "},
    ]
    folder = _coco_folder(small_folder, tmp_path, images)
    images_import(project=project, folder=folder, coco=_coco(tmp_path, images, ["fox"]))
    rows = list(Image.objects.values_list("seq_id", "seq_source", "frame_num"))
    # Each image gets an event, as an image without a seq_id does: here untimed and without
    # file counters, so a burst of its own.
    assert len({seq for seq, _, _ in rows}) == 3
    assert all(seq != "None" and source == "burst" and frame is None for seq, source, frame in rows)


def test_coco_categories_map_to_species_by_scientific_or_common_name(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    """A category naming a species by its scientific name or one of its common names
    (case-insensitively) is that species, not a duplicate."""
    from projects.services_taxonomy import species_import

    species_import(
        project=project,
        text="scientific_name,common_name,rank,parent\n"
        "Vulpes vulpes,red fox;renard,species,\nDasyprocta punctata,agouti,species,\n",
    )
    images = [{"file_name": "a.jpg"}]
    folder = _coco_folder(small_folder, tmp_path, images)
    coco = _coco(tmp_path, images, ["VULPES VULPES", "Renard", "Agouti", "paca"])
    images_import(project=project, folder=folder, coco=coco)
    assert list(project.species.values_list("name", flat=True)) == ["red fox", "agouti", "paca"]


def test_species_names_are_stripped(project: Project, small_folder: Path, tmp_path: Path) -> None:
    images = [{"file_name": "a.jpg"}]
    folder = _coco_folder(small_folder, tmp_path, images)
    coco = _coco(tmp_path, images, ["  red   fox ", "Agouti", "", "agouti"])
    images_import(project=project, folder=folder, coco=coco)
    assert list(project.species.values_list("name", flat=True)) == ["red fox", "Agouti"]


def _counts(project: Project) -> tuple[int, int]:
    return Image.objects.filter(project=project).count(), project.species.count()


@pytest.mark.parametrize(
    ("image", "names", "message"),
    [
        ({"frame_num": float("nan")}, ["fox"], r"images\[1\] \(b\.jpg\): frame_num .* got nan"),
        ({"frame_num": float("inf")}, ["fox"], r"\(b\.jpg\): frame_num .* got inf"),
        ({"frame_num": -1}, ["fox"], r"\(b\.jpg\): frame_num must be a whole number >= 0"),
        ({"frame_num": 2.5}, ["fox"], r"\(b\.jpg\): frame_num must be a whole number >= 0"),
        ({"frame_num": 2**40}, ["fox"], r"b\.jpg: frame_num 1099511627776 over 2147483647"),
        ({"frame_num": 2**63}, ["fox"], r"b\.jpg: frame_num 9223372036854775808 over"),
        ({"seq_id": float("nan")}, ["fox"], r"\(b\.jpg\): seq_id must be a string, .* got nan"),
        ({"seq_id": "s" * 201}, ["fox"], r"b\.jpg: seq_id longer than 200 characters"),
        ({"seq_id": "S\x00"}, ["fox"], r"b\.jpg: seq_id has control characters \(\\x00\)"),
        ({}, ["fox", None], r"categories\[1\] \(id 2\): name must be a string, got None"),
        ({}, ["fox", "x" * 201], r"category 'x+': a species name has at most 200 characters"),
        ({}, ["fox", "bell\x07"], r"category 'bell\\x07': .*control characters \(\\x07\)"),
        ({}, ["fox", "red\nfox"], r"category 'red\\nfox': .*control characters \(\\n\)"),
    ],
)
def test_a_bad_coco_value_is_refused_whole_and_changes_nothing(
    project: Project,
    small_folder: Path,
    tmp_path: Path,
    image: dict[str, Any],
    names: list[Any],
    message: str,
) -> None:
    """The first image is fine; the second (or a category) is not. Nothing is written, not
    even the first image or the good species, and the error names the entry at fault."""
    images = [{"file_name": "a.jpg", "seq_id": "S1"}, {"file_name": "b.jpg", **image}]
    folder = _coco_folder(small_folder, tmp_path, images)
    coco = _coco(tmp_path, images, names)
    before = _counts(project)
    with pytest.raises(CocoError, match=message):
        folder_ingest(project=project, folder=folder, coco=coco)
    assert _counts(project) == before == (0, 0)
    assert not Detection.objects.exists()


def test_the_command_reports_a_bad_coco_file_and_writes_nothing(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    from django.core.management import CommandError, call_command

    images: list[dict[str, Any]] = [
        {"file_name": "a.jpg"},
        {"file_name": "b.jpg", "frame_num": float("inf")},
    ]
    folder = _coco_folder(small_folder, tmp_path, images)
    coco = _coco(tmp_path, images, ["fox"])
    with pytest.raises(CommandError, match=r"\(b\.jpg\): frame_num must be a whole number"):
        call_command("import_images", project.slug, str(folder), "--coco", str(coco))
    assert _counts(project) == (0, 0)


def test_an_import_that_fails_part_way_writes_nothing(
    project: Project, small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The species, the images and their events are written in one transaction."""
    from detector import imports

    def broken(*, project: Project) -> int:
        assert Image.objects.filter(project=project).count() == 15  # written, not committed
        raise RuntimeError("database went away")

    monkeypatch.setattr(imports, "images_sequences_infer", broken)
    with pytest.raises(RuntimeError, match="database went away"):
        images_import(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    assert _counts(project) == (0, 0)


def test_deep_folders_fit_the_camera_and_sequence_fields(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    """The camera is the image's folder (300 characters at most in the database) and an
    inferred event "<camera>#<n>" (200): deep folders are cut, ending in a hash, so two
    folders that differ only past the cut stay two cameras; PostgreSQL refused them before."""
    picture = next((small_folder / "images").rglob("*.JPG"))
    folder = tmp_path / "deep"
    deep = Path("a" * 200) / ("b" * 150)
    for leaf in ("one", "two"):
        (folder / deep / leaf).mkdir(parents=True)
        shutil.copy(picture, folder / deep / leaf / "x.jpg")
    report = images_import(project=project, folder=folder)
    assert (report.added, report.problems) == (2, [])
    rows = list(Image.objects.values_list("camera", "seq_id"))
    assert all(len(camera) <= 300 and len(seq) <= 200 for camera, seq in rows)
    assert len({camera for camera, _ in rows}) == 2 and len({seq for _, seq in rows}) == 2


# --- capture times (issue 18, item 6) -----------------------------------------------------------


def _times() -> dict[str, tuple[Any, ...]]:
    """file name -> (taken_at, camera_taken_at, time_source) of every image."""
    fields = ("file_name", "taken_at", "camera_taken_at", "time_source")
    return {r[0]: r[1:] for r in Image.objects.values_list(*fields)}


def test_coco_datetime_is_the_capture_time(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    images: list[dict[str, Any]] = [
        {"file_name": "a.jpg", "datetime": "2021-06-01 10:00:00"},
        {"file_name": "b.jpg", "datetime": "2021-06-01T10:00:05+02:00"},
        {"file_name": "c.jpg"},
    ]
    folder = _coco_folder(small_folder, tmp_path, images)
    images_import(project=project, folder=folder, coco=_coco(tmp_path, images, ["fox"]))
    rows = _times()
    a = datetime(2021, 6, 1, 10, 0, tzinfo=UTC)
    assert rows["a.jpg"] == (a, a, "coco")
    b = datetime(2021, 6, 1, 8, 0, 5, tzinfo=UTC)
    assert rows["b.jpg"] == (b, b, "coco")
    assert rows["c.jpg"] == (None, None, "")  # the picture copied has no EXIF either


def test_exif_times_with_and_without_offset(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    for name, offset in [("IMG_0001.JPG", "-05:00"), ("IMG_0002.JPG", None)]:
        image = PILImage.new("RGB", (64, 48), (90, 120, 60))
        exif = image.getexif()
        exif.get_ifd(0x8769)[36867] = "2021:06:01 10:00:00"
        if offset:
            exif.get_ifd(0x8769)[36881] = offset
        image.save(folder / name, exif=exif)
    images_import(project=project, folder=tmp_path)
    rows = _times()
    utc = datetime(2021, 6, 1, 15, 0, tzinfo=UTC)
    assert rows["cam/IMG_0001.JPG"] == (utc, utc, "exif_offset")
    naive = datetime(2021, 6, 1, 10, 0, tzinfo=UTC)  # the camera's clock, labelled UTC
    assert rows["cam/IMG_0002.JPG"] == (naive, naive, "exif")
