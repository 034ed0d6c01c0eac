"""detect and evaluate_detector from the command line, errors included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from projects.models import Project

pytestmark = pytest.mark.django_db


def test_detect_then_evaluate(
    project: Project, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

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
