"""Starting a project in the browser: a new project (for users with the site permission
``projects.add_project``), and the admin's imports (a folder of the import roots, or an
upload), which run as background jobs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotator.forms_onboard import (
    BucketImportForm,
    FolderBrowseForm,
    FolderImportForm,
    ProjectCreateForm,
)
from annotator.selectors import project_get_for_user
from annotator.selectors_import import import_page_get
from annotator.upload_handlers import LimitedTemporaryFileUploadHandler
from annotator.views._common import request_user
from annotator.views.project import ADMIN_ONLY, _project_page
from detector.import_jobs import image_import_create, image_import_request, image_upload_import
from detector.uploads import UploadRefused
from projects.import_roots import FolderImportError
from projects.models import Project
from projects.services import ProjectError, project_create

# The site permission that lets a user create projects (grant it in the Django admin).
CREATE_PERMISSION = "projects.add_project"
# An upload's request may carry this much besides its files (the form's fields, the
# multipart boundaries) before its Content-Length alone refuses it.
UPLOAD_FORM_SLACK = 1024 * 1024


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    """GET: the new-project form; POST: create it (the creator becomes its admin) and go to
    its import page. 403 without the site permission."""
    user = request_user(request)
    if not user.has_perm(CREATE_PERMISSION):
        raise PermissionDenied("creating projects needs the site permission projects.add_project")
    form = ProjectCreateForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound:
        if form.is_valid():
            try:
                project = project_create(created_by=user, **form.cleaned_data)
            except ProjectError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Project {project.name} created; import its images.")
                return redirect("project_import", slug=project.slug)
        status = 400
    return render(request, "annotator/project_new.html", {"form": form}, status=status)


def _import_page(
    request: HttpRequest, *, project: Project, role: str, error: str = "", status: int = 200
) -> HttpResponse:
    root, path = FolderBrowseForm(request.GET).place()
    response = _project_page(
        request,
        project=project,
        role=role,
        page="import",
        view=import_page_get(project=project, root=root, path=path),
        upload_error=error,
    )
    response.status_code = status
    return response


@login_required
@require_GET
def project_import(request: HttpRequest, slug: str) -> HttpResponse:
    """The admin's import page: the folder browser of the import roots, the upload form and
    the import jobs (kept live by dashboard.js)."""
    project, role = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    return _import_page(request, project=project, role=role)


def _import_page_url(slug: str, root: int, path: str) -> str:
    return f"{reverse('project_import', args=[slug])}?{urlencode({'root': root, 'path': path})}"


@login_required
@require_POST
def import_folder_start(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue the import of a folder (and its COCO file) picked in the folder browser."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = FolderImportForm(request.POST)
    if not form.is_valid():
        reasons = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"Import not started: {reasons}")
        return redirect("project_import", slug=slug)
    data = form.cleaned_data
    try:
        image_import_create(
            project=project,
            folder=data["folder_path"],
            coco=data["coco_path"],
            created_by=request_user(request),
        )
    except FolderImportError as exc:
        messages.error(request, f"Import not started: {exc}")
    else:
        messages.success(request, f"Import of {data['folder_path'].name or 'the root'} queued.")
    return redirect(_import_page_url(slug, data["root"] or 0, data["path"] or ""))


@login_required
@require_POST
def import_bucket_start(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue the import of an ``s3://bucket/prefix`` (its images stay in the bucket); the bucket
    must be one of TRAPWISE_IMPORT_BUCKETS."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = BucketImportForm(request.POST)
    if not form.is_valid():
        reasons = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"Import not started: {reasons}")
        return redirect("project_import", slug=slug)
    data = form.cleaned_data
    try:
        image_import_request(
            project=project,
            source=data["source"],
            coco=data["coco"],
            created_by=request_user(request),
        )
    except FolderImportError as exc:
        messages.error(request, f"Import not started: {exc}")
    else:
        messages.success(request, f"Import of {data['source']} queued.")
    return redirect("project_import", slug=slug)


@csrf_exempt  # the token is checked in _upload_checked, once the upload handler is set
@login_required
@require_POST
def import_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """Store an upload (a zip or image files) and queue its import.

    The role and the Content-Length are checked before a byte of the body is read; the body
    is then streamed to temporary files on disk by a handler that stops past the limit.
    """
    project, role = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    limit = settings.TRAPWISE_UPLOAD_MAX_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = limit + UPLOAD_FORM_SLACK + 1
    if length > limit + UPLOAD_FORM_SLACK:
        return _upload_refused(request, project, role, _too_large(limit), status=413)
    handler = LimitedTemporaryFileUploadHandler(request, max_bytes=limit)
    request.upload_handlers = [handler]
    return _upload_checked(request, project=project, role=role, handler=handler)


def _too_large(limit: int) -> str:
    return (
        f"Upload refused: it is larger than {limit // (1024 * 1024)} MB "
        "(TRAPWISE_UPLOAD_MAX_BYTES); nothing imported. Import large folders from the server's "
        "import roots instead."
    )


def _upload_refused(
    request: HttpRequest, project: Project, role: str, error: str, *, status: int
) -> HttpResponse:
    return _import_page(request, project=project, role=role, error=error, status=status)


@csrf_protect
def _upload_checked(
    request: HttpRequest,
    *,
    project: Project,
    role: str,
    handler: LimitedTemporaryFileUploadHandler,
) -> HttpResponse:
    files = request.FILES.getlist("files")
    if handler.exceeded:
        return _upload_refused(request, project, role, _too_large(handler.max_bytes), status=413)
    if not files:
        messages.error(request, "Upload refused: choose a zip or image files.")
        return redirect("project_import", slug=project.slug)
    # Every file is a TemporaryUploadedFile: the only handler writes to disk.
    received = [(f.name or "", Path(f.temporary_file_path())) for f in files]  # type: ignore[attr-defined]
    try:
        image_upload_import(
            project=project,
            files=received,
            created_by=request_user(request),
        )
    except (UploadRefused, FolderImportError) as exc:
        return _upload_refused(request, project, role, f"Upload refused: {exc}", status=400)
    messages.success(request, f"Upload of {len(files)} file(s) stored; its import is queued.")
    return redirect("project_import", slug=project.slug)
