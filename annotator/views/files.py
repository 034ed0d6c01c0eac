"""Crop and image files, served to project members only (``annotator.file_responses``)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from annotator.file_responses import crop_file_response, image_file_response
from annotator.selectors import project_get_for_user
from detector.models import Crop
from projects.models import Image


@login_required
@require_GET
def crop_file(request: HttpRequest, slug: str, crop_id: int) -> HttpResponseBase:
    project, _ = project_get_for_user(slug=slug, user=request.user)
    crop = get_object_or_404(Crop, project=project, pk=crop_id)
    return crop_file_response(crop=crop)


@login_required
@require_GET
def image_file(request: HttpRequest, slug: str, image_id: int) -> HttpResponseBase:
    project, _ = project_get_for_user(slug=slug, user=request.user)
    image = get_object_or_404(Image, project=project, pk=image_id)
    return image_file_response(image=image)
