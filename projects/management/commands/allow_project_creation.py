from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.services import project_creator_set


class Command(BaseCommand):
    help = (
        "Let a user create projects in the browser (the site permission projects.add_project, "
        "also grantable in the Django admin); --revoke takes it back."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--revoke", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        project_creator_set(user=user, allowed=not options["revoke"])
        verb = "may no longer" if options["revoke"] else "may now"
        self.stdout.write(f"{user.username} {verb} create projects in the browser")
