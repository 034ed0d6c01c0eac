"""Crop and image files, served to project members only."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from annotator.selectors import (
    project_get_for_user,
)
from detector.models import Crop
from projects.models import Image


@login_required
@require_GET
def crop_file(request: HttpRequest, slug: str, crop_id: int) -> FileResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user)
    crop = get_object_or_404(Crop, project=project, pk=crop_id)
    return _file_response(Path(settings.MEDIA_ROOT) / crop.file)


@login_required
@require_GET
def image_file(request: HttpRequest, slug: str, image_id: int) -> FileResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user)
    image = get_object_or_404(Image, project=project, pk=image_id)
    return _file_response(Path(image.path))


def _file_response(path: Path) -> FileResponse:
    if not path.is_file():
        raise Http404("File missing on the server")
    return FileResponse(path.open("rb"))
