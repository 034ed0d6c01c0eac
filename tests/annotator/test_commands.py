"""import_images and create_project from the command line, errors included."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from annotator.models import Project

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
    with pytest.raises(CommandError, match="unsupported MegaDetector format_version"):
        call_command("import_images", project.slug, str(small_folder), "--megadetector", str(bad))


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


def test_detect_then_evaluate(
    project: Project, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    coco = str(small_folder / "annotations.json")
    call_command("import_images", project.slug, str(small_folder), "--coco", coco, "--no-boxes")
    assert "next: python manage.py detect" in capsys.readouterr().out
    call_command("detect", project.slug, "--detector", "offline")
    out = capsys.readouterr().out
    assert "detection: 15 images" in out and "0 problems" in out
    report = tmp_path / "eval.json"
    call_command(
        "evaluate_detector",
        project.slug,
        "--truth",
        coco,
        "--threshold",
        "0.1",
        "--json",
        str(report),
    )
    figures = json.loads(report.read_text())
    for key in (
        "threshold",
        "image_accuracy",
        "image_precision",
        "image_recall",
        "box_precision_iou50",
        "box_recall_iou50",
        "count_exact",
        "count_within_1_bin",
    ):
        assert key in figures
    assert figures["threshold"] == 0.1 and figures["n_images"] == 15
    assert figures["image_accuracy"] >= 0.6  # the two sequences have clearly moving animals


def test_evaluate_needs_detected_images(project: Project, small_folder: Path) -> None:
    coco = str(small_folder / "annotations.json")
    call_command("import_images", project.slug, str(small_folder), "--coco", coco, "--no-boxes")
    with pytest.raises(CommandError, match="no image of the truth file has been detected"):
        call_command("evaluate_detector", project.slug, "--truth", coco)


def test_megadetector_without_weights_is_a_command_error(
    project: Project, small_folder: Path, settings: object
) -> None:
    settings.TRAPWISE_MEGADETECTOR_WEIGHTS = ""  # type: ignore[attr-defined]
    call_command("import_images", project.slug, str(small_folder))
    with pytest.raises(CommandError, match="MegaDetector needs weights"):
        call_command("detect", project.slug, "--detector", "megadetector")
