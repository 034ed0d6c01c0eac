"""Helpers shared by the management commands."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db.models import Q

from projects.models import Project


def project_by_name(name: str) -> Project:
    """The project whose slug or name is ``name``, or a CommandError naming the known ones."""
    project = Project.objects.filter(Q(slug=name) | Q(name=name)).first()
    if project is None:
        known = ", ".join(Project.objects.values_list("slug", flat=True)) or "none yet"
        raise CommandError(
            f"no project {name!r} (known: {known}); create one with "
            "`python manage.py create_project NAME --admin USER`"
        )
    return project
