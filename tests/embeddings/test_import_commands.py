"""import_images and create_project from the command line, errors included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from detector.models import Crop, Detection
from projects.models import Image, Project

pytestmark = pytest.mark.django_db


def test_create_then_import(
    admin_user: User, small_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command(
        "create_project",
        "Lake Traps",
        "--admin",
        admin_user.username,
        "--backbone",
        "efficientnet_lite0",
    )
    call_command(
        "import_images",
        "lake-traps",
        str(small_folder),
        "--coco",
        str(small_folder / "annotations.json"),
    )
    out = capsys.readouterr().out
    assert "images: 15 added" in out and "11 crops" in out and "version 1" in out
    assert Project.objects.get(slug="lake-traps").crops.count() == 11


def test_unknown_project_lists_known_ones(project: Project, small_folder: Path) -> None:
    with pytest.raises(CommandError, match="known: test-traps"):
        call_command("import_images", "nope", str(small_folder))


def test_bad_megadetector_json_is_a_command_error(project: Project, small_folder: Path) -> None:
    bad = small_folder / "md.json"
    bad.write_text('{"info": {"format_version": "9.9"}, "images": []}')
    with pytest.raises(CommandError, match="unsupported MegaDetector format_version '9.9'"):
        call_command("import_images", project.slug, str(small_folder), "--megadetector", str(bad))
    assert not Image.objects.exists()  # the file is read before anything is written


def test_missing_weights_is_a_command_error(project: Project, small_folder: Path) -> None:
    project.backbone, project.backbone_weights = "resnet50", "/nonexistent/resnet50.pth"
    project.save()
    with pytest.raises(CommandError, match="resnet50.pth"):
        call_command(
            "import_images",
            project.slug,
            str(small_folder),
            "--coco",
            str(small_folder / "annotations.json"),
        )


def _md(path: Path, images: list[dict[str, Any]], version: str = "1.4") -> Path:
    path.write_text(
        json.dumps(
            {
                "info": {"format_version": version},
                "detection_categories": {"1": "animal"},
                "images": images,
            }
        )
    )
    return path


def _agouti(small_folder: Path) -> list[str]:
    folder = small_folder / "images" / "Agouti" / "SEQ75520"
    return [p.relative_to(small_folder).as_posix() for p in sorted(folder.glob("*.JPG"))]


def test_bad_files_and_boxes_are_listed_and_the_rest_imported(
    project: Project, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (small_folder / "notes.jpg").write_text("not an image")
    (small_folder / "empty.jpg").write_bytes(b"")
    names = _agouti(small_folder)

    def det(bbox: list[float]) -> dict[str, Any]:
        return {"category": "1", "conf": 0.9, "bbox": bbox}

    md = _md(
        tmp_path / "md.json",
        [
            {"file": names[0], "detections": [det([1.2, 0.1, 0.2, 0.2])]},  # wholly outside
            {"file": names[1], "detections": [det([0.3, 0.3, 0.0, 0.2])]},  # zero width
            {"file": names[2], "detections": [det([0.9, 0.5, 0.3, 0.2])]},  # partly: clipped
            *({"file": n, "detections": [det([0.2, 0.2, 0.3, 0.3])]} for n in names[3:]),
        ],
    )
    call_command("import_images", project.slug, str(small_folder), "--megadetector", str(md))
    captured = capsys.readouterr()
    assert "images: 15 added" in captured.out
    err = captured.err
    assert "skipped notes.jpg: not a readable image" in err
    assert "skipped empty.jpg: not a readable image" in err
    assert f"skipped {names[0]}: detector failed:" in err and "lies outside the [0, 1] frame" in err
    assert f"skipped {names[1]}: detector failed:" in err and "positive width and height" in err
    # Not in the file: the Red_Fox frames are reported, not guessed empty.
    not_listed = 15 - len(names)
    assert not_listed > 0 and err.count("has no result for image") == not_listed
    assert f"{2 + 2 + not_listed} item(s) skipped; the rest was imported" in err
    for name in names[:2]:
        image = Image.objects.get(file_name=name)
        assert image.detected_at is None and not image.detections.exists()
        assert image.detection_failure  # recorded on the image, which stays undetected
    clipped = Detection.objects.get(image__file_name=names[2])
    assert clipped.x == 0.9 and clipped.x + clipped.w == pytest.approx(1.0)
    assert Crop.objects.count() == len(names) - 2


def test_import_outside_the_roots_is_a_command_error(
    project: Project, small_folder: Path, tmp_path: Path, settings: Any
) -> None:
    settings.TRAPWISE_IMPORT_ROOTS = [small_folder / "images"]
    coco = str(small_folder / "annotations.json")
    with pytest.raises(CommandError, match="the COCO file .* outside the allowed import roots"):
        call_command("import_images", project.slug, str(small_folder / "images"), "--coco", coco)
    with pytest.raises(CommandError, match="the image folder .* outside the allowed import roots"):
        call_command("import_images", project.slug, str(small_folder / "images" / ".."))
    assert not Image.objects.exists() and not project.species.exists()
    call_command("import_images", project.slug, str(small_folder / "images"))
    with pytest.raises(CommandError, match="the detections file .* outside the allowed"):
        call_command("detect", project.slug, "--detector", "coco", "--file", coco)
    assert not Detection.objects.exists()


def test_megadetector_entries_with_missing_fields_are_all_listed(
    project: Project, small_folder: Path, tmp_path: Path
) -> None:
    names = _agouti(small_folder)
    md = _md(
        tmp_path / "md.json",
        [
            {"file": names[0], "detections": []},
            {"detections": []},  # no file
            {"file": names[2], "detections": [{"category": "1", "bbox": [0.1, 0.1, 0.2, 0.2]}]},
            {"file": names[3]},  # no detections (and no failure)
        ],
    )
    with pytest.raises(CommandError) as exc:
        call_command("import_images", project.slug, str(small_folder), "--megadetector", str(md))
    message = str(exc.value)
    assert "3 bad image entries" in message
    assert "images[1]: missing required field 'file'" in message
    assert f"images[2] ({names[2]}) detection 0: missing required field 'conf'" in message
    assert f"images[3] ({names[3]}): missing required field 'detections'" in message
    assert not Image.objects.exists()


def test_coco_with_unknown_category_ids_is_a_command_error(
    project: Project, small_folder: Path
) -> None:
    coco = small_folder / "annotations.json"
    doc = json.loads(coco.read_text())
    doc["annotations"][0]["category_id"] = 99
    doc["annotations"][3]["category_id"] = 99
    doc["annotations"][5]["category_id"] = "fox"
    coco.write_text(json.dumps(doc))
    for extra in ([], ["--no-boxes"]):
        with pytest.raises(CommandError) as exc:
            call_command(
                "import_images", project.slug, str(small_folder), "--coco", str(coco), *extra
            )
        message = str(exc.value)
        assert "3 annotation(s) name a category_id that is not in 'categories'" in message
        assert "99 in annotations[0, 3]; 'fox' in annotations[5]" in message
    assert not Image.objects.exists() and not project.species.exists()
