"""Reads of the import page: the folder browser's listing and the import jobs."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from annotator.jobs import JobProgress, jobs_active_for_project, jobs_recent_for_project
from projects.import_roots import FolderImportError, FolderListing, import_folder_list
from projects.models import Project


@dataclass(frozen=True)
class ImportPage:
    """What the import page shows: whether the web may import folders (roots set), the folder
    shown (or why none), the upload limit and the jobs, live."""

    roots_set: bool
    listing: FolderListing | None
    error: str
    upload_max_bytes: int
    jobs: list[JobProgress]
    recent_jobs: list[JobProgress]
    # TRAPWISE_IMPORT_BUCKETS: the buckets an s3://bucket/prefix import may read ((): none).
    buckets: tuple[str, ...] = ()


def import_page_get(*, project: Project, root: int, path: str) -> ImportPage:
    """The import page for folder ``path`` of configured root ``root``; a folder that cannot be
    shown (outside the roots, missing) gives the error instead of a listing."""
    roots_set = bool(settings.TRAPWISE_IMPORT_ROOTS)
    listing, error = None, ""
    if roots_set:
        try:
            listing = import_folder_list(root=root, path=path)
        except FolderImportError as exc:
            error = str(exc)
    return ImportPage(
        roots_set=roots_set,
        listing=listing,
        error=error,
        upload_max_bytes=settings.TRAPWISE_UPLOAD_MAX_BYTES,
        jobs=jobs_active_for_project(project=project),
        recent_jobs=jobs_recent_for_project(project=project),
        buckets=tuple(sorted(settings.TRAPWISE_IMPORT_BUCKETS)),
    )
