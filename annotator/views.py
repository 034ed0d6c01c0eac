"""Thin views: check the role, validate with a form, call one service or selector, render."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from activelearn.selectors import (
    classifier_latest,
    learning_curve_get,
    prediction_for_crop,
    round_next_crop,
    round_open_get,
    round_progress,
)
from activelearn.services import (
    FinetuneError,
    LabelError,
    RoundError,
    SettingsError,
    classifier_retrain_request,
    embedding_finetune_queue,
    label_submit,
    project_learning_update,
    round_start,
    round_strategy_default,
)
from annotator.csvsafe import csv_safe_row
from annotator.forms import (
    SKIP,
    DetectionStartForm,
    LabelForm,
    LearningSettingsForm,
    RoundStartForm,
    ThresholdsForm,
)
from annotator.models import Image, Role
from annotator.selectors import (
    EXPORT_HEADER,
    export_crop_rows,
    project_get_for_user,
    project_list_for_user,
    project_status,
)
from annotator.services import detection_job_create, project_thresholds_update
from detector.base import DetectorError
from detector.models import Crop
from detector.selectors import detection_job_latest
from embeddings.selectors import embedding_versions_list

LABELLERS = (Role.ADMIN, Role.VOLUNTEER)
EXPORTERS = (Role.ADMIN, Role.ECOLOGIST)


def _user(request: HttpRequest) -> User:
    """The logged-in user; every view that calls this is behind login_required."""
    assert isinstance(request.user, User)
    return request.user


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    memberships = project_list_for_user(user=request.user)
    return render(request, "annotator/project_list.html", {"memberships": memberships})


@login_required
@require_GET
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get_for_user(slug=slug, user=request.user)
    context = {
        "project": project,
        "role": role,
        "status": project_status(project=project),
        "round_form": RoundStartForm(
            initial={
                "size": project.round_size,
                "strategy": round_strategy_default(project=project),
            }
        ),
        "learning_form": LearningSettingsForm(
            initial={
                "first_round_strategy": project.first_round_strategy,
                "target_accuracy": round(project.target_accuracy * 100, 2),
            }
        ),
        "classifier": classifier_latest(project=project),
        "learning_curve": learning_curve_get(project=project) if role == Role.ADMIN else None,
        "detection": detection_job_latest(project=project),
        "embedding_versions": embedding_versions_list(project=project),
        "detection_form": DetectionStartForm(),
        "thresholds_form": ThresholdsForm(
            initial={
                "detection_threshold": project.detection_threshold,
                "min_box_pixels": project.min_box_pixels,
                "crop_padding": project.crop_padding,
            }
        ),
        "can_label": role in LABELLERS,
        "can_export": role in EXPORTERS,
    }
    return render(request, "annotator/project_detail.html", context)


@login_required
@require_POST
def learning_settings_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = LearningSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Settings not saved: {form.errors.as_text()}")
        return redirect("project_detail", slug=slug)
    try:
        project_learning_update(project=project, **form.cleaned_data)
    except SettingsError as exc:
        messages.error(request, f"Settings not saved: {exc}")
    else:
        messages.success(request, "Active-learning settings saved.")
    return redirect("project_detail", slug=slug)


@login_required
@require_POST
def round_start_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = RoundStartForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Round not started: {form.errors.as_text()}")
        return redirect("project_detail", slug=slug)
    try:
        new_round = round_start(project=project, user=_user(request), **form.cleaned_data)
    except RoundError as exc:
        messages.error(request, f"Round not started: {exc}")
    else:
        messages.success(request, f"Round {new_round.number} started.")
    return redirect("project_detail", slug=slug)


@login_required
@require_POST
def detection_start(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = DetectionStartForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Detection not started: {form.errors.as_text()}")
        return redirect("project_detail", slug=slug)
    try:
        job = detection_job_create(project=project, detector=form.cleaned_data["detector"])
    except DetectorError as exc:
        messages.error(request, f"Detection not started: {exc}")
    else:
        messages.success(request, f"Detection queued for {job.total} images.")
    return redirect("project_detail", slug=slug)


@login_required
@require_POST
def embedding_finetune_start(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    try:
        with transaction.atomic():
            version = embedding_finetune_queue(project=project, force=True)
    except FinetuneError as exc:
        messages.error(request, f"Fine-tuning not started: {exc}")
    else:
        if version is None:
            messages.error(request, "Fine-tuning not started: the project has no embedding yet")
        else:
            messages.success(request, f"Fine-tuning embedding v{version.number} ({version.mode}).")
    return redirect("project_detail", slug=slug)


@login_required
@require_POST
def classifier_retrain_start(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    try:
        with transaction.atomic():
            classifier_retrain_request(project=project)
    except LabelError as exc:
        messages.error(request, f"Retraining not started: {exc}")
    else:
        messages.success(request, "Retraining queued: the page shows the new version when done.")
    return redirect("project_detail", slug=slug)


@login_required
@require_POST
def thresholds_update(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = ThresholdsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Thresholds not changed: {form.errors.as_text()}")
        return redirect("project_detail", slug=slug)
    project_thresholds_update(project=project, **form.cleaned_data)
    messages.success(request, "Thresholds saved; crops are being re-derived from the stored boxes.")
    return redirect("project_detail", slug=slug)


@login_required
@require_http_methods(["GET", "POST"])
def label(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    open_round = round_open_get(project=project)
    skipped_key = f"skipped-{open_round.pk}" if open_round else "skipped"
    if request.method == "POST":
        form = LabelForm(request.POST)
        if not form.is_valid():
            return HttpResponse(f"Label refused: {form.errors.as_text()}", status=400)
        if form.cleaned_data["kind"] == SKIP:
            request.session[skipped_key] = [
                *request.session.get(skipped_key, []),
                form.cleaned_data["crop_id"],
            ]
            return redirect("label", slug=slug)
        try:
            label_submit(
                project=project,
                crop_id=form.cleaned_data["crop_id"],
                user=_user(request),
                kind=form.cleaned_data["kind"],
                species_id=form.cleaned_data["species_id"],
            )
        except LabelError as exc:
            return HttpResponse(f"Label refused: {exc}", status=400)
        return redirect("label", slug=slug)
    crop = (
        round_next_crop(round_=open_round, skipped=request.session.get(skipped_key, []))
        if open_round
        else None
    )
    context: dict[str, Any] = {
        "project": project,
        "round": open_round,
        "crop": crop,
        "progress": round_progress(round_=open_round) if open_round else (0, 0),
    }
    if crop is not None:
        context |= _label_context(project_species=list(project.species.all()), crop=crop)
    return render(request, "annotator/label.html", context)


HOTKEYS = "123456789abcdefghijklmopqrtvwxyz"  # n, u and s are kept for the fixed choices


def _label_context(*, project_species: list[Any], crop: Crop) -> dict[str, Any]:
    choices = [
        {"value": f"species:{s.pk}", "name": s.name, "key": HOTKEYS[i] if i < len(HOTKEYS) else ""}
        for i, s in enumerate(project_species)
    ]
    det = crop.detection
    return {
        "choices": choices,
        "form": LabelForm(initial={"crop_id": crop.pk}),
        "box": {
            "left": det.x * 100,
            "top": det.y * 100,
            "width": det.w * 100,
            "height": det.h * 100,
        },
        "prediction": prediction_for_crop(crop=crop),
    }


@login_required
@require_GET
def export_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)

    def lines() -> Iterator[str]:
        buffer = _LineBuffer()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_HEADER)
        yield buffer.pop()
        for row in export_crop_rows(project=project):
            writer.writerow(csv_safe_row(row))
            yield buffer.pop()

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-crops.csv"'
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
