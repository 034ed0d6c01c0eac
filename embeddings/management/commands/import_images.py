from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from detector.base import DetectorError
from detector.coco import CocoError
from embeddings.model import WeightsUnavailableError
from embeddings.pipeline import IngestReport, folder_ingest
from projects.image_source import is_remote
from projects.import_roots import FolderImportError
from projects.management.commands._common import project_by_name


def _location(text: str) -> Path | str:
    """A command-line location: an ``s3://`` string as given (a Path would fold its "//"),
    else a Path."""
    return text if is_remote(text) else Path(text)


class Command(BaseCommand):
    help = (
        "Import a folder of camera-trap images (recursively: jpg, jpeg, png) into a project, "
        "take boxes from COCO Camera Traps or MegaDetector JSON, cut crops and embed them. "
        "Re-importing a folder adds only what is new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or name")
        parser.add_argument(
            "folder",
            type=_location,
            help="a folder, or s3://bucket/prefix (its images are read from the bucket and stay "
            "there; endpoint and region from AWS_S3_ENDPOINT_URL / AWS_S3_REGION_NAME)",
        )
        parser.add_argument(
            "--coco",
            type=_location,
            help="COCO Camera Traps JSON (a path or s3://bucket/key): sequences, frame numbers, "
            "species names and boxes",
        )
        parser.add_argument("--megadetector", type=Path, help="MegaDetector batch-output JSON")
        parser.add_argument(
            "--no-boxes",
            action="store_true",
            help="take sequences and species from --coco but not its boxes; run `detect` next",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_name(options["project"])
        self.project_slug = project.slug
        try:
            report = folder_ingest(
                project=project,
                folder=options["folder"],
                coco=options["coco"],
                megadetector=options["megadetector"],
                boxes=not options["no_boxes"],
            )
        except (FolderImportError, CocoError, DetectorError, WeightsUnavailableError) as exc:
            raise CommandError(str(exc)) from exc
        self._print(report)

    def _print(self, report: IngestReport) -> None:
        images = report.images
        self.stdout.write(f"images: {images.added} added, {images.already_present} already there")
        problems = list(images.problems)
        if report.detection is not None:
            det = report.detection
            self.stdout.write(
                f"detection: {det.images_done} images, {det.empty} empty, {det.crops} crops"
            )
            problems += det.problems
        else:
            self.stdout.write(f"next: python manage.py detect {self.project_slug}")
        if report.embedding_version is not None:
            self.stdout.write(f"embeddings: version {report.embedding_version} covers every crop")
        for file_name, reason in problems:
            self.stderr.write(f"  skipped {file_name}: {reason}")
        if problems:
            self.stderr.write(f"{len(problems)} item(s) skipped; the rest was imported")
