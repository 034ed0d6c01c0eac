"""Reads of the export files built in the background (``annotator.export_jobs``)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from annotator.models import ExportFile
from projects.models import Project

# Export files the exports page lists (the newest).
EXPORT_FILES_SHOWN = 50


def export_file_list(*, project: Project) -> list[ExportFile]:
    """The project's newest export files, newest first, with their jobs and authors."""
    rows: QuerySet[ExportFile] = ExportFile.objects.filter(project=project).select_related(
        "job", "created_by", "project"
    )
    return list(rows[:EXPORT_FILES_SHOWN])


def export_file_get(*, project: Project, export_id: int) -> ExportFile:
    """The project's export file ``export_id``; Http404 for another project's or none."""
    return get_object_or_404(
        ExportFile.objects.select_related("job", "project", "created_by"),
        project=project,
        pk=export_id,
    )


def export_file_progress(*, export_file: ExportFile) -> float:
    """The share of its job done, 0 to 1 (1 once done; the total is an estimate for CSVs)."""
    job = export_file.job
    if job.status == job.Status.DONE:
        return 1.0
    if job.total <= 0:
        return 0.0
    return min(job.done / job.total, 1.0)
