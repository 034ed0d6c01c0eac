from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.management.commands._common import project_by_name
from projects.services_taxonomy import species_csv_decode, species_import
from projects.taxonomy import REQUIRED_COLUMNS, TaxonomyError


class Command(BaseCommand):
    help = (
        f"Create or update a project's species from a CSV with the columns "
        f"{', '.join(REQUIRED_COLUMNS)} (and optionally taxon_id). common_name may hold several "
        "names separated by ; or |; rank is species, genus, family, order or class; parent is "
        "another row's scientific_name or a species of the project. Rows match species by "
        "scientific name, then by name. A file with any problem changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug or name")
        parser.add_argument("file", type=Path, help="the species CSV (UTF-8)")

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_name(options["project"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"no file at {path}")
        try:
            report = species_import(
                project=project, text=species_csv_decode(data=path.read_bytes())
            )
        except TaxonomyError as exc:
            raise CommandError(f"nothing imported: {exc}") from exc
        self.stdout.write(
            f"{len(report.created)} species created, {len(report.updated)} updated "
            f"in project {project.slug}"
        )
