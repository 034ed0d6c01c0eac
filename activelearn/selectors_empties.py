"""Reads of the empties check: the next image to check, the missed-animal rate, the measured
empty accuracy that the effort estimate uses, and the corrected event counts."""

from __future__ import annotations

from django.db.models import Count, Q

from activelearn.empties import MissedRate, missed_rate
from activelearn.models import CountCorrection, EmptyCheck
from projects.models import Project


def empty_check_next(*, project: Project, skip: list[int] | None = None) -> EmptyCheck | None:
    """The oldest unanswered check of the sample (none skipped in this session), with its image."""
    checks = EmptyCheck.objects.filter(project=project, has_animal__isnull=True)
    if skip:
        checks = checks.exclude(pk__in=skip)
    return checks.select_related("image").order_by("id").first()


def empty_checks_summary(*, project: Project) -> tuple[MissedRate, int]:
    """(the missed-animal rate of the answered checks with its 95% interval, checks waiting)."""
    row = EmptyCheck.objects.filter(project=project).aggregate(
        checked=Count("id", filter=Q(has_animal__isnull=False)),
        missed=Count("id", filter=Q(has_animal=True)),
        waiting=Count("id", filter=Q(has_animal__isnull=True)),
    )
    return missed_rate(missed=row["missed"], checked=row["checked"]), row["waiting"]


def count_corrections(*, project: Project) -> dict[str, dict[str, int]]:
    """{capture event: {species name: corrected count}} of the project's admins' corrections."""
    out: dict[str, dict[str, int]] = {}
    rows = CountCorrection.objects.filter(project=project).values_list(
        "event", "species__name", "count"
    )
    for event, name, count in rows:
        out.setdefault(event, {})[name] = count
    return out


def empty_checks_unboxed(*, project: Project, limit: int = 20) -> list[EmptyCheck]:
    """Checks answered "an animal" whose image still has no box (the volunteer left before
    drawing it): the empties page lists them so that someone draws the box."""
    return list(
        EmptyCheck.objects.filter(project=project, has_animal=True, image__is_empty=True)
        .select_related("image")
        .order_by("id")[:limit]
    )
