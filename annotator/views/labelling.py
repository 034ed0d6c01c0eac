"""The volunteers' labelling pages."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from activelearn.selectors import (
    prediction_for_crop,
    round_next_crop,
    round_open_get,
    round_progress,
)
from activelearn.services import (
    LabelError,
    label_submit,
)
from annotator.forms import (
    SKIP,
    LabelForm,
)
from annotator.selectors import (
    project_get_for_user,
)
from annotator.views._common import LABELLERS, request_user
from detector.models import Crop


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
                user=request_user(request),
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
