from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from activelearn.camtrapdp_import import CamtrapDpImportError, camtrap_dp_import


class Command(BaseCommand):
    help = (
        "Create a project from a Camera Trap Data Package (Camtrap DP 1.0, a folder or a zip): "
        "its deployments, species, images (media filePath relative to the package, or absolute "
        "under TRAPWISE_IMPORT_ROOTS) and people's labels. A package with any problem creates "
        "nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the new project's name")
        parser.add_argument("package", type=Path, help="the package folder or zip")
        parser.add_argument(
            "--admin", required=True, help="user name of the project admin (author of the labels)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["admin"]).first()
        if user is None:
            raise CommandError(f"no user {options['admin']!r}; create it with createsuperuser")
        try:
            report = camtrap_dp_import(name=options["name"], source=options["package"], admin=user)
        except CamtrapDpImportError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"created project {report.project.name!r} (slug {report.project.slug}): "
            f"{report.deployments} deployment(s), {report.species} species, {report.images} "
            f"image(s), {report.boxes} box(es), {report.labels} label(s)"
        )
        if report.deployment_mismatches:
            self.stdout.write(
                f"{report.deployment_mismatches} image(s) kept the package's deployment although "
                "their folder and time point to another"
            )
        for file_name, why in report.problems:
            self.stdout.write(f"problem: {file_name}: {why}")
