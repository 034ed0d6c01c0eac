"""Detection on real images: boxes stored raw, crops cut, empty flags and counts set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from PIL import Image as PILImage

from detector.base import Box
from detector.crops import crop_box
from detector.evaluation import coco_truth_read, detector_evaluate
from detector.imported import ImportedDetector
from detector.imports import images_import
from detector.models import Crop, Detection
from detector.selectors import detections_by_file
from detector.services import crops_rederive, detections_run, detector_for_root
from projects.models import Image, Project
from projects.services import project_create

pytestmark = pytest.mark.django_db


def _megadetector_json(path: Path, files: list[str]) -> Path:
    """Batch output: a sure box, a doubtful box and a person on the first file; nothing else."""
    images: list[dict[str, object]] = [{"file": f, "detections": []} for f in files]
    images[0]["detections"] = [
        {"category": "1", "conf": 0.9, "bbox": [0.1, 0.2, 0.3, 0.4]},
        {"category": "1", "conf": 0.05, "bbox": [0.5, 0.5, 0.1, 0.1]},
        {"category": "2", "conf": 0.95, "bbox": [0.6, 0.1, 0.2, 0.2]},
    ]
    path.write_text(
        json.dumps(
            {
                "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt"},
                "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
                "images": images,
            }
        )
    )
    return path


def test_coco_boxes_become_crops_counts_and_empty_flags(
    project: Project, small_folder: Path
) -> None:
    images_import(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    detector = ImportedDetector.from_coco_camera_traps(small_folder / "annotations.json")
    report = detections_run(project=project, detector=detector)
    images = Image.objects.filter(project=project)
    assert report.images_done == images.count() == 15
    assert report.crops == Crop.objects.count() == 11
    assert report.empty == images.filter(is_empty=True).count() == 4
    assert sum(i.count or 0 for i in images) == 11
    crop = Crop.objects.select_related("detection").first()
    assert crop is not None
    with PILImage.open(Path(settings.MEDIA_ROOT) / crop.file) as img:
        assert img.size[0] > 10 and img.size[1] > 10


def test_run_twice_processes_nothing_twice(project: Project, small_folder: Path) -> None:
    images_import(project=project, folder=small_folder)
    detector = ImportedDetector.from_coco_camera_traps(small_folder / "annotations.json")
    detections_run(project=project, detector=detector)
    again = detections_run(project=project, detector=detector)
    assert again.images_done == 0
    assert Detection.objects.count() == 11


def test_megadetector_threshold_and_categories(project: Project, small_folder: Path) -> None:
    images_import(project=project, folder=small_folder)
    files = sorted(Image.objects.values_list("file_name", flat=True))
    md = ImportedDetector.from_megadetector_json(
        _megadetector_json(small_folder / "md.json", files)
    )
    report = detections_run(project=project, detector=md)
    first = Image.objects.get(file_name=files[0])
    # All three boxes are kept raw; only the animal above the 0.2 threshold becomes a crop.
    assert first.detections.count() == 3
    assert (first.count, first.is_empty, first.crops.count()) == (1, False, 1)
    assert report.crops == 1 and report.empty == len(files) - 1
    assert "md.json@sha256:" in first.detector_version


def test_images_unknown_to_the_detector_are_reported(project: Project, small_folder: Path) -> None:
    images_import(project=project, folder=small_folder)
    files = sorted(Image.objects.values_list("file_name", flat=True))
    md = ImportedDetector.from_megadetector_json(
        _megadetector_json(small_folder / "md.json", files[:3])
    )
    report = detections_run(project=project, detector=md)
    assert report.images_done == 3
    assert len(report.problems) == len(files) - 3
    assert Image.objects.filter(detected_at__isnull=True).count() == len(files) - 3


def _coco_detected(project: Project, folder: Path) -> None:
    images_import(project=project, folder=folder)
    detections_run(
        project=project, detector=ImportedDetector.from_megadetector_json(_graded_json(folder))
    )


def _graded_json(folder: Path) -> Path:
    """One box per image, with confidences 0.05, 0.15, … so thresholds have something to cut."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.JPG"))
    images = [
        {
            "file": f,
            "detections": [
                {
                    "category": "1",
                    "conf": round(0.05 + 0.1 * (i % 10), 2),
                    "bbox": [0.2, 0.2, 0.3, 0.3],
                }
            ],
        }
        for i, f in enumerate(files)
    ]
    path = folder / "graded.json"
    path.write_text(
        json.dumps(
            {
                "info": {"format_version": "1.4"},
                "detection_categories": {"1": "animal"},
                "images": images,
            }
        )
    )
    return path


def test_threshold_change_rederives_without_detector(
    project: Project, small_folder: Path, admin_user: User
) -> None:
    from activelearn.models import Label

    _coco_detected(project, small_folder)
    confidences = [round(0.05 + 0.1 * (i % 10), 2) for i in range(15)]
    active = Crop.objects.filter(active=True)
    assert active.count() == sum(c >= 0.2 for c in confidences) == 11
    labelled = active.order_by("detection__confidence").first()
    assert labelled is not None
    Label.objects.create(project=project, crop=labelled, user=admin_user, kind="unknown")
    detections_before = Detection.objects.count()

    project.detection_threshold = 0.6
    project.save()
    report = crops_rederive(project=project)
    assert Detection.objects.count() == detections_before  # the detector did not run
    assert active.count() == sum(c >= 0.6 for c in confidences) == 4
    assert report.deactivated == 11 - 4 and report.created == 0
    labelled.refresh_from_db()
    assert not labelled.active and labelled.labels.count() == 1  # deactivated, label kept
    empty = Image.objects.filter(project=project, is_empty=True).count()
    assert empty == 15 - active.count()

    project.detection_threshold = 0.0
    project.save()
    report = crops_rederive(project=project)
    assert report.created == 4 and Crop.objects.filter(active=True).count() == 15
    assert not Image.objects.filter(is_empty=True).exists()


def test_min_box_size_and_padding(project: Project, small_folder: Path) -> None:
    _coco_detected(project, small_folder)
    project.min_box_pixels = 200  # boxes are 0.3 × 640 = 192 px
    project.save()
    crops_rederive(project=project)
    assert not Crop.objects.filter(active=True).exists()
    project.min_box_pixels, project.crop_padding = 8, 0.3
    project.save()
    report = crops_rederive(project=project)
    assert report.recut == 11 and report.activated == 11
    crop = Crop.objects.filter(active=True).first()
    assert crop is not None and crop.padding == 0.3
    with PILImage.open(Path(settings.MEDIA_ROOT) / crop.file) as img:
        assert img.size == (308, 308)  # 192 px + 30% on each side, rounded outwards


def test_square_shape_recuts_square_crops(project: Project, small_folder: Path) -> None:
    _coco_detected(project, small_folder)
    Detection.objects.update(w=0.15)  # 96 x 192 px boxes: a box crop would be 144 x 288
    project.crop_shape, project.crop_padding = "square", 0.25
    project.save()
    report = crops_rederive(project=project)
    assert report.recut == 11 and report.created == 0
    crop = Crop.objects.filter(active=True).first()
    assert crop is not None and (crop.padding, crop.shape) == (0.25, "square")
    with PILImage.open(Path(settings.MEDIA_ROOT) / crop.file) as img:
        assert img.size == (288, 288)  # the longer box side, 192 px, x 1.5
    assert crops_rederive(project=project).recut == 0


def test_failed_crop_leaves_nothing_behind(
    project: Project, small_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detector import services

    images_import(project=project, folder=small_folder)
    real_crop_box = services.crop_box
    calls = {"n": 0}

    def failing_second_crop(*args: object, **kwargs: object) -> PILImage.Image:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_crop_box(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services, "crop_box", failing_second_crop)
    files = sorted(Image.objects.values_list("file_name", flat=True))
    md = _megadetector_json(small_folder / "md.json", files)
    doc = json.loads(md.read_text())
    doc["images"][0]["detections"][1]["conf"] = 0.8  # two crops on the first image
    md.write_text(json.dumps(doc))
    report = detections_run(project=project, detector=ImportedDetector.from_megadetector_json(md))
    assert report.problems and "disk full" in report.problems[0][1]
    first = Image.objects.get(file_name=files[0])
    assert first.detected_at is None and not first.detections.exists()
    assert not Crop.objects.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "crops").rglob("*.jpg"))


def _unusual_folder(folder: Path, sample: Path) -> dict[str, PILImage.Image]:
    """Valid but unusual images made from one real frame; returns name -> upright RGB truth."""
    folder.mkdir()
    with PILImage.open(sample) as real:
        rgb = real.convert("RGB")
    grey = rgb.convert("L")
    truth: dict[str, PILImage.Image] = {}
    rgb.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    truth["cmyk.jpg"] = rgb
    grey.save(folder / "grey.jpg", quality=95)
    truth["grey.jpg"] = grey.convert("RGB")
    sixteen = PILImage.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    sixteen.save(folder / "sixteen.png")
    truth["sixteen.png"] = grey.convert("RGB")
    # Portrait-turned camera: the file holds the picture turned, EXIF says how to turn it back.
    upright = rgb.crop((0, 0, 640, 400))
    for orientation, stored_as in (
        (6, PILImage.Transpose.ROTATE_90),
        (8, PILImage.Transpose.ROTATE_270),
    ):
        exif = PILImage.Exif()
        exif[0x0112] = orientation
        upright.transpose(stored_as).save(
            folder / f"turned{orientation}.jpg", quality=95, exif=exif
        )
        truth[f"turned{orientation}.jpg"] = upright
    return truth


def test_unusual_images_import_and_crop_like_megadetector_sees_them(
    project: Project, tmp_path: Path, sample_dir: Path
) -> None:
    """CMYK, greyscale, 16-bit and EXIF-turned images: RGB crops of the upright picture.

    MegaDetector runs exif_transpose before detecting, so its boxes are relative to the
    upright image: the stored size and the crop must be too.
    """
    sample = next((sample_dir / "images" / "Agouti").rglob("*.JPG"))
    truth = _unusual_folder(tmp_path / "odd", sample)
    bbox = [0.25, 0.25, 0.5, 0.5]
    md = tmp_path / "md.json"
    md.write_text(
        json.dumps(
            {
                "info": {"format_version": "1.4"},
                "detection_categories": {"1": "animal"},
                "images": [
                    {"file": name, "detections": [{"category": "1", "conf": 0.9, "bbox": bbox}]}
                    for name in truth
                ],
            }
        )
    )
    imported = images_import(project=project, folder=tmp_path / "odd")
    assert (imported.added, imported.problems) == (5, [])
    sizes = dict(Image.objects.values_list("file_name", "width"))
    heights = dict(Image.objects.values_list("file_name", "height"))
    assert sizes["turned6.jpg"] == sizes["turned8.jpg"] == 640  # upright: landscape again
    assert heights["turned6.jpg"] == heights["turned8.jpg"] == 400
    report = detections_run(project=project, detector=ImportedDetector.from_megadetector_json(md))
    assert (report.images_done, report.crops, report.problems) == (5, 5, [])
    box = Box(x=0.25, y=0.25, w=0.5, h=0.5, confidence=0.9, category="animal")
    for crop in Crop.objects.select_related("image"):
        with PILImage.open(Path(settings.MEDIA_ROOT) / crop.file) as stored:
            assert stored.mode == "RGB", crop.image.file_name
            got = np.asarray(stored, dtype=np.float32)
        expected = np.asarray(
            crop_box(truth[crop.image.file_name], box, padding=project.crop_padding),
            dtype=np.float32,
        )
        assert got.shape == expected.shape, crop.image.file_name
        # JPEG re-encoding moves pixels a little; a wrong turn or a clipped 16-bit image
        # moves them by tens of grey levels.
        assert np.abs(got - expected).mean() < 6, crop.image.file_name
    wrong_turn = np.asarray(
        crop_box(truth["turned6.jpg"].transpose(PILImage.Transpose.ROTATE_180), box), np.float32
    )
    with PILImage.open(
        Path(settings.MEDIA_ROOT) / Crop.objects.get(image__file_name="turned6.jpg").file
    ) as c:
        assert np.abs(np.asarray(c, dtype=np.float32) - wrong_turn).mean() > 15


# --- a plain folder without times (issue 18, "Done when") --------------------------------------


def _pixels_only_copy(source: Path, target: Path) -> None:
    """Re-save ``source``'s pixels as a JPEG at ``target``: no EXIF, no time, no camera."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with PILImage.open(source) as img:
        PILImage.fromarray(np.asarray(img.convert("RGB"))).save(target, quality=95)


def _image_accuracy(project: Project, truth: dict[str, list[Box]]) -> tuple[float, int]:
    """(image-level accuracy at confidence 0.1, images with a failure) of ``project``."""
    predicted = detections_by_file(project=project, min_box_pixels=project.min_box_pixels)
    metrics = detector_evaluate(truth=truth, predicted=predicted, threshold=0.1)
    assert metrics.image_accuracy is not None
    return metrics.image_accuracy, project.images.exclude(detection_failure="").count()


@pytest.mark.django_db
def test_untimed_folder_is_detected_as_well_as_with_its_sequence_ids(
    admin_user: User, sample_dir: Path, tmp_path: Path
) -> None:
    """The bundled sample (209 real frames, 21 sequences) twice: with its COCO file (sequence
    ids), and stripped to pixels in one camera folder, counters in time order, as a camera
    without EXIF (or software that dropped it) writes them."""
    doc = json.loads((sample_dir / "annotations.json").read_text())
    images = sorted(doc["images"], key=lambda i: (str(i["seq_id"]), i["frame_num"]))
    truth = coco_truth_read(sample_dir / "annotations.json")
    with_ids, untimed = tmp_path / "with_ids", tmp_path / "untimed"
    renamed: dict[str, str] = {}
    for n, image in enumerate(images, start=1):
        _pixels_only_copy(sample_dir / image["file_name"], with_ids / image["file_name"])
        name = f"DCIM/100CAMRA/IMG_{n:04d}.JPG"
        _pixels_only_copy(sample_dir / image["file_name"], untimed / name)
        renamed[name] = image["file_name"]
    coco = with_ids / "annotations.json"
    coco.write_text((sample_dir / "annotations.json").read_text())

    given = project_create(name="Given", created_by=admin_user, seed=1)
    given.min_box_pixels = 8
    given.save()
    images_import(project=given, folder=with_ids, coco=coco)
    detections_run(
        project=given,
        detector=detector_for_root(project=given, name="offline", root=with_ids, options={}),
    )
    plain = project_create(name="Plain", created_by=admin_user, seed=1)
    images_import(project=plain, folder=untimed)
    assert set(plain.images.values_list("time_source", flat=True)) == {""}
    assert plain.images.values("seq_id").distinct().count() > 1  # bursts, not one per image
    detections_run(
        project=plain,
        detector=detector_for_root(project=plain, name="offline", root=untimed, options={}),
    )
    accuracy_given, failed_given = _image_accuracy(given, truth)
    accuracy_plain, failed_plain = _image_accuracy(
        plain, {name: truth[original] for name, original in renamed.items()}
    )
    assert failed_given == 0 and failed_plain <= 5
    assert accuracy_given > 0.85
    # Before issue 18 every untimed image failed (no boxes at all); the issue asks for the
    # accuracy with sequence ids within 2 points (measured 0.904 both ways: benchmarks/README.md).
    assert accuracy_plain > 0.8
    gap = accuracy_given - accuracy_plain
    assert gap <= 0.02, f"untimed {accuracy_plain:.3f} vs with sequence ids {accuracy_given:.3f}"
