from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from detector.base import DetectorError
from detector.evaluation import coco_truth_read, detector_evaluate
from detector.selectors import detections_by_file
from projects.management.commands._common import project_by_name


class Command(BaseCommand):
    help = (
        "Score the project's stored detections against ground-truth COCO Camera Traps boxes: "
        "empty-vs-animal accuracy, precision and recall per image, box precision and recall at "
        "IoU 0.5, counts exact and within one bin (1-10, 11-50, 51+)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or name")
        parser.add_argument("--truth", type=Path, required=True, help="COCO Camera Traps JSON")
        parser.add_argument("--threshold", type=float, help="default: the project's threshold")
        parser.add_argument("--json", type=Path, help="also write the figures to this file")

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_name(options["project"])
        threshold = options["threshold"]
        if threshold is None:
            threshold = project.detection_threshold
        try:
            truth = coco_truth_read(options["truth"])
        except DetectorError as exc:
            raise CommandError(str(exc)) from exc
        predicted = detections_by_file(project=project, min_box_pixels=project.min_box_pixels)
        scored = {f: boxes for f, boxes in truth.items() if f in predicted}
        if not scored:
            raise CommandError(
                "no image of the truth file has been detected in this project (file names must "
                "match the import's relative paths)"
            )
        metrics = detector_evaluate(truth=scored, predicted=predicted, threshold=threshold)
        record = {
            **metrics.to_dict(),
            "min_box_pixels": project.min_box_pixels,
            "detectors": sorted(
                set(
                    project.images.exclude(detector_version="").values_list(
                        "detector_version", flat=True
                    )
                )
            ),
            "images_in_truth_not_detected": len(truth) - len(scored),
        }
        for key, value in record.items():
            self.stdout.write(f"{key:>30}: {value}")
        if options["json"]:
            options["json"].write_text(json.dumps(record, indent=2) + "\n")
