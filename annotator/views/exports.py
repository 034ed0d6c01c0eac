"""Ecologists' exports: CSV at crop, image and event level, COCO Camera Traps and Camtrap DP.

Admins and ecologists only; anyone else gets 404. Every export streams (or, for the Camtrap DP
zip, is spooled to a temporary file), so memory stays constant whatever the project's size.
A project above ``TRAPWISE_EXPORT_DIRECT_MAX_IMAGES`` images gets COCO and Camtrap DP only as
export files built in the background (``annotator.export_jobs``), listed on the exports page.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotator.camtrapdp import (
    CAPTURE_METHODS,
    LICENSES,
    SAMPLING_DESIGNS,
    CamtrapDpError,
    PackageOptions,
    camtrap_dp_check,
    camtrap_dp_write,
)
from annotator.csvsafe import csv_safe_row
from annotator.export_jobs import (
    ExportError,
    export_direct_allowed,
    export_download_name,
    export_file_delete,
    export_job_create,
)
from annotator.exports import (
    EVENT_HEADER,
    EXPORT_HEADER,
    IMAGE_HEADER,
    export_crop_rows,
    export_event_rows,
    export_image_rows,
)
from annotator.exports_coco import export_coco_json
from annotator.file_responses import export_file_response
from annotator.forms import FloatField, IntegerField
from annotator.models import ExportFormat
from annotator.selectors import project_get_for_user, project_metrics_report
from annotator.selectors_exports import export_file_get
from annotator.views._common import request_user
from projects.models import EXPORTERS, Project, Role

# The CSV tables: header and row generator, by the name in the URL's file name.
CSV_TABLES: dict[str, tuple[list[str], Callable[..., Iterable[list[object]]]]] = {
    "crops": (EXPORT_HEADER, export_crop_rows),
    "images": (IMAGE_HEADER, export_image_rows),
    "events": (EVENT_HEADER, export_event_rows),
}


@login_required
@require_GET
def export_table_csv(request: HttpRequest, slug: str, table: str) -> StreamingHttpResponse:
    """One of ``CSV_TABLES`` as ``<slug>-<table>.csv``: one row per crop, image or event."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    header, rows = CSV_TABLES[table]
    return _csv_response(header, rows(project=project), f"{slug}-{table}.csv")


@login_required
@require_GET
def export_metrics(request: HttpRequest, slug: str) -> JsonResponse:
    """``<slug>-metrics.json``: the latest classifier's metrics and the effort estimate."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    response = JsonResponse(
        project_metrics_report(project=project), json_dumps_params={"indent": 2}
    )
    response["Content-Disposition"] = f'attachment; filename="{slug}-metrics.json"'
    return response


@login_required
@require_GET
def export_coco(request: HttpRequest, slug: str) -> HttpResponseBase:
    """COCO Camera Traps JSON, the format ``import_images --coco`` reads; a large project is
    sent to the exports page to build it as a file."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    if not export_direct_allowed(project=project):
        return _too_large(request, project)
    response = StreamingHttpResponse(
        export_coco_json(project=project), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{slug}-coco.json"'
    return response


class CamtrapDpForm(forms.Form):
    """What a Camtrap DP package requires and Trapwise does not store: the study's metadata,
    and a location for the images without a deployment (deployments have their own)."""

    latitude = FloatField(
        min_value=-90,
        max_value=90,
        required=False,
        help_text="Decimal degrees (WGS84), for the images without a deployment only.",
    )
    longitude = FloatField(
        min_value=-180,
        max_value=180,
        required=False,
        help_text="Decimal degrees (WGS84), for the images without a deployment only.",
    )
    coordinate_uncertainty = IntegerField(
        min_value=1,
        # Half the Earth's circumference: any larger radius says nothing.
        max_value=20_000_000,
        required=False,
        label="Uncertainty (m)",
        help_text="Radius around that point holding every camera.",
    )
    utc_offset = forms.RegexField(
        regex=r"^[+-](0\d|1[0-4]):[0-5]\d$",
        initial="+00:00",
        label="Camera clocks' UTC offset",
        help_text="For example -05:00. Camera clocks store no time zone.",
        error_messages={"invalid": "Give the offset as +hh:mm or -hh:mm, e.g. -05:00."},
    )
    sampling_design = forms.ChoiceField(
        choices=[(d, d) for d in SAMPLING_DESIGNS], initial="opportunistic"
    )
    capture_method = forms.ChoiceField(
        choices=[(m, m) for m in CAPTURE_METHODS], initial="activityDetection"
    )
    data_license = forms.ChoiceField(
        choices=[(k, v) for k, v in LICENSES.items()], initial="CC-BY-4.0"
    )
    media_license = forms.ChoiceField(
        choices=[(k, v) for k, v in LICENSES.items()], initial="CC-BY-4.0"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (data.get("latitude") is None) != (data.get("longitude") is None):
            raise forms.ValidationError("Give both the latitude and the longitude, or neither.")
        return data

    def options(self) -> PackageOptions:
        data = self.cleaned_data
        return PackageOptions(
            latitude=data["latitude"],
            longitude=data["longitude"],
            coordinate_uncertainty=data["coordinate_uncertainty"],
            utc_offset=data["utc_offset"],
            sampling_design=data["sampling_design"],
            capture_method=data["capture_method"],
            data_license=data["data_license"],
            media_license=data["media_license"],
        )


@login_required
@require_GET
def camtrap_dp_form(request: HttpRequest, slug: str) -> HttpResponse:
    """The form that asks for the project's location before the Camtrap DP download."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    return _camtrap_page(request, project, CamtrapDpForm(), status=200)


@login_required
@require_GET
def export_camtrap_dp(request: HttpRequest, slug: str) -> HttpResponseBase:
    """The Camtrap DP 1.0 zip; without a valid location, the form again with why (400); a
    large project is sent to the exports page."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    if not export_direct_allowed(project=project):
        return _too_large(request, project)
    form = CamtrapDpForm(request.GET)
    if not form.is_valid():
        return _camtrap_page(request, project, form, status=400)
    try:
        camtrap_dp_check(project=project, options=form.options())
    except CamtrapDpError as exc:
        return _camtrap_page(request, project, form, status=400, error=str(exc))
    # A temporary file, not memory: the zip needs a seekable target, and it is deleted when
    # the response closes it.
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it
    try:
        camtrap_dp_write(project=project, options=form.options(), out=spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return FileResponse(
        spool,
        as_attachment=True,
        filename=f"{slug}-camtrap-dp.zip",
        content_type="application/zip",
    )


@login_required
@require_POST
def export_job_start(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue an export file (``format``; Camtrap DP with the package form's fields), then
    back to the exports page, which shows its progress. A refused one: why, nothing queued."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    format = request.POST.get("format", "")
    options = None
    form = CamtrapDpForm(request.POST)
    if format == ExportFormat.CAMTRAP_DP:
        if not form.is_valid():
            return _camtrap_page(request, project, form, status=400)
        options = form.options()
    try:
        export_job_create(
            project=project, format=format, created_by=request_user(request), options=options
        )
    except CamtrapDpError as exc:
        return _camtrap_page(request, project, form, status=400, error=str(exc))
    except ExportError as exc:
        messages.error(request, f"Export not started: {exc}")
    else:
        label = ExportFormat(format).label
        messages.success(request, f"{label}: the file is being built; it is listed below.")
    return redirect("project_exports", slug=slug)


@login_required
@require_GET
def export_file_download(request: HttpRequest, slug: str, export_id: int) -> HttpResponseBase:
    """A finished export file: a redirect to a signed URL (S3) or the file itself (local).
    404 for one not finished (or failed), as for anyone but admins and ecologists."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    export_file = export_file_get(project=project, export_id=export_id)
    if export_file.job.status != export_file.job.Status.DONE:
        raise Http404("This export file is not ready")
    return export_file_response(
        name=export_file.name, download_name=export_download_name(export_file=export_file)
    )


@login_required
@require_POST
def export_file_delete_view(request: HttpRequest, slug: str, export_id: int) -> HttpResponse:
    """Delete an export file (project admins): its stored file, its record and its job."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    export_file = export_file_get(project=project, export_id=export_id)
    try:
        export_file_delete(export_file=export_file)
    except ExportError as exc:
        messages.error(request, f"Not deleted: {exc}")
    else:
        messages.success(request, "Export file deleted.")
    return redirect("project_exports", slug=slug)


def _too_large(request: HttpRequest, project: Project) -> HttpResponse:
    messages.info(
        request,
        f"{project.name} has more than {settings.TRAPWISE_EXPORT_DIRECT_MAX_IMAGES} images: "
        "build the export as a file below; it is listed here when ready.",
    )
    return redirect("project_exports", slug=project.slug)


def _camtrap_page(
    request: HttpRequest, project: Project, form: CamtrapDpForm, *, status: int, error: str = ""
) -> HttpResponse:
    return render(
        request,
        "annotator/exports/camtrap_dp.html",
        {
            "project": project,
            "form": form,
            "error": error,
            "direct": export_direct_allowed(project=project),
        },
        status=status,
    )


def _csv_response(
    header: list[str], rows: Iterable[list[object]], filename: str
) -> StreamingHttpResponse:
    def lines() -> Iterator[str]:
        buffer = _LineBuffer()
        writer = csv.writer(buffer)
        writer.writerow(header)
        yield buffer.pop()
        for row in rows:
            writer.writerow(csv_safe_row(row))
            yield buffer.pop()

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class _LineBuffer:
    """A file-like sink for csv.writer that hands back what was written since the last pop."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def pop(self) -> str:
        text, self._parts = "".join(self._parts), []
        return text
