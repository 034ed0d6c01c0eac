from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.management.commands._common import project_by_name
from projects.services_deployments import DeploymentCsvError, deployments_import


class Command(BaseCommand):
    help = (
        "Create or update (by deploymentID) a project's deployments from a CSV with Camtrap DP's "
        "deployment columns (deploymentID, locationName, latitude, longitude, "
        "coordinateUncertainty, deploymentStart, deploymentEnd, cameraID) plus folder and "
        "clockOffset (±hh:mm), then assign the images to them by folder and time. A file with "
        "any problem changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug or name")
        parser.add_argument("csv_file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_name(options["project"])
        path: Path = options["csv_file"]
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            report = deployments_import(project=project, text=text)
        except DeploymentCsvError as exc:
            raise CommandError(f"{path}: nothing imported: {exc}") from exc
        self.stdout.write(
            f"{report.created} deployment(s) created, {report.updated} updated; "
            f"{report.images_assigned} image(s) in a deployment ({report.images_changed} changed)"
        )
