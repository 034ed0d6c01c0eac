from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from detector.external import FORMATS
from detector.services_external import ExternalImportError, external_predictions_import
from projects.management.commands._common import project_by_name


class Command(BaseCommand):
    help = (
        "Import another tool's species predictions: MegaDetector batch output with "
        "classifications (MegaDetector classifiers, SpeciesNet via run_md_and_speciesnet, "
        "AddaxAI) or SpeciesNet's predictions JSON. They are shown on the label page as "
        "suggestions beside Trapwise's own. Importing the same name and version replaces it."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # --version names the model's version here, as the other tools say it; Django's own
        # --version (its release) gives way.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project slug or name")
        parser.add_argument("file", type=Path, help="the tool's JSON file")
        parser.add_argument("--format", choices=("auto", *FORMATS), default="auto")
        parser.add_argument("--name", help="the model's name (default: as the file says)")
        parser.add_argument("--version", dest="model_version", help="the model's version")
        parser.add_argument(
            "--create-species",
            action="store_true",
            help="add the tool's labels that match no species of the project as species",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_name(options["project"])
        path: Path = options["file"]
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            result = external_predictions_import(
                project=project,
                raw=raw,
                source_file=path.name,
                format=options["format"],
                name=options["name"],
                version=options["model_version"],
                create_species=options["create_species"],
            )
        except ExternalImportError as exc:
            raise CommandError(str(exc)) from exc
        model = result.model
        verb = "replaced" if result.replaced else "imported"
        self.stdout.write(
            f"{verb} {model.name} {model.version}: {result.predictions} predictions on "
            f"{result.images} images; {len(result.mapped)} labels mapped to species"
        )
        if result.created:
            self.stdout.write(f"species added: {', '.join(result.created)}")
        for problem in result.problems:
            self.stderr.write(f"  problem: {problem}")
