"""The empties check (is there an animal in this detector-empty image?) and the box page
(draw, redraw or drop an image's boxes; admins correct its event's counts)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from activelearn.selectors_empties import (
    count_corrections,
    empty_check_next,
    empty_checks_summary,
    empty_checks_unboxed,
)
from activelearn.services.empties import (
    CheckError,
    count_correct,
    empty_check_answer,
    empty_sample_draw,
)
from annotator.forms_empties import SKIP, YES, BoxForm, CountForm, EmptyAnswerForm, SampleForm
from annotator.selectors import project_get_for_user
from annotator.views._common import request_user
from detector.models import Detection
from detector.services import BoxError, box_drop
from embeddings.pipeline import box_draw_and_embed
from projects.models import LABELLERS, Image, Role
from projects.sequences import capture_event

SKIPPED = "empties-skipped"


def _refused(what: str, reason: str) -> HttpResponse:
    # Plain text: the reason may quote what was sent, never to run as HTML.
    return HttpResponse(f"{what}: {reason}", status=400, content_type="text/plain; charset=utf-8")


def _form_errors(form: Form) -> str:
    return "; ".join(
        f"{field}: {error['message']}"
        for field, errors in form.errors.get_json_data().items()
        for error in errors
    )


@login_required
@require_GET
def empties(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    check = empty_check_next(project=project, skip=request.session.get(SKIPPED, []))
    rate, waiting = empty_checks_summary(project=project)
    return render(
        request,
        "annotator/empties.html",
        {
            "project": project,
            "role": role,
            "check": check,
            "rate": rate,
            "waiting": waiting,
            "unboxed": empty_checks_unboxed(project=project),
            "sample_form": SampleForm() if role == Role.ADMIN else None,
        },
    )


@login_required
@require_POST
def empty_answer(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    form = EmptyAnswerForm(request.POST)
    if not form.is_valid():
        return _refused("Answer refused", _form_errors(form))
    if form.cleaned_data["answer"] == SKIP:
        skipped = request.session.get(SKIPPED, [])
        request.session[SKIPPED] = [*skipped, form.cleaned_data["check_id"]]
        return redirect("empties", slug=project.slug)
    try:
        check = empty_check_answer(
            project=project,
            check_id=form.cleaned_data["check_id"],
            user=request_user(request),
            has_animal=form.cleaned_data["answer"] == YES,
        )
    except CheckError as exc:
        return _refused("Answer refused", str(exc))
    if check.has_animal:
        messages.info(request, "Thank you. Now drag a box around each animal the detector missed.")
        url = reverse("image_boxes", args=[project.slug, check.image_id])
        return redirect(f"{url}?from=empties")
    return redirect("empties", slug=project.slug)


@login_required
@require_POST
def empty_sample_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = SampleForm(request.POST)
    if not form.is_valid():
        return _refused("Sample refused", _form_errors(form))
    try:
        drawn = empty_sample_draw(
            project=project, user=request_user(request), size=form.cleaned_data["size"]
        )
    except CheckError as exc:
        return _refused("Sample refused", str(exc))
    messages.success(request, f"{len(drawn)} detector-empty images added to the check sample.")
    return redirect("empties", slug=project.slug)


@login_required
@require_GET
def image_boxes(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    project, role = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    image = get_object_or_404(Image, project=project, pk=image_id)
    boxes = list(
        Detection.objects.filter(image=image, dropped_at__isnull=True)
        .select_related("crop", "drawn_by")
        .order_by("id")
    )
    # Boxes that are crops now: what the volunteers label and the counts come from.
    shown = [b for b in boxes if getattr(b, "crop", None) is not None and b.crop.active]
    event = capture_event(seq_id=image.seq_id, image_id=image.pk)
    return render(
        request,
        "annotator/crop_boxes.html",
        {
            "project": project,
            "role": role,
            "image": image,
            "boxes": [_rect(b) for b in shown],
            "from_empties": request.GET.get("from") == "empties",
            "focus": request.GET.get("crop", ""),
            "event": event,
            "corrections": count_corrections(project=project).get(event, {}),
            "species": project.species.all() if role == Role.ADMIN else [],
        },
    )


def _rect(box: Detection) -> dict[str, object]:
    """A box as the page draws it: percent of the image, and who drew it."""
    return {
        "id": box.pk,
        "crop_id": box.crop.pk,
        "left": box.x * 100,
        "top": box.y * 100,
        "width": box.w * 100,
        "height": box.h * 100,
        "source": box.drawn_by.get_username() if box.drawn_by else box.detector_version,
        "human": box.drawn_by_id is not None,
    }


@login_required
@require_POST
def box_add_view(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    image = get_object_or_404(Image, project=project, pk=image_id)
    form = BoxForm(request.POST)
    if not form.is_valid():
        return _refused("Box refused", _form_errors(form))
    data = form.cleaned_data
    replaces = None
    if data["replaces"] is not None:
        replaces = Detection.objects.filter(image=image, pk=data["replaces"]).first()
        if replaces is None:
            return _refused("Box refused", "that box is not on this image")
    try:
        box_draw_and_embed(
            image=image,
            user=request_user(request),
            x=data["x"],
            y=data["y"],
            w=data["w"],
            h=data["h"],
            replaces=replaces,
        )
    except BoxError as exc:
        return _refused("Box refused", str(exc))
    messages.success(request, "Box redrawn." if replaces else "Box added: it becomes a crop.")
    return redirect("image_boxes", slug=project.slug, image_id=image.pk)


@login_required
@require_POST
def box_drop_view(
    request: HttpRequest, slug: str, image_id: int, detection_id: int
) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    image = get_object_or_404(Image, project=project, pk=image_id)
    detection = get_object_or_404(Detection, image=image, pk=detection_id)
    try:
        box_drop(detection=detection, user=request_user(request))
    except BoxError as exc:
        return _refused("Drop refused", str(exc))
    messages.success(request, "Box dropped: its crop leaves the count (its labels are kept).")
    return redirect("image_boxes", slug=project.slug, image_id=image.pk)


@login_required
@require_POST
def count_correct_view(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    image = get_object_or_404(Image, project=project, pk=image_id)
    form = CountForm(request.POST)
    if not form.is_valid():
        return _refused("Count refused", _form_errors(form))
    try:
        count_correct(
            project=project,
            user=request_user(request),
            event=capture_event(seq_id=image.seq_id, image_id=image.pk),
            species_id=form.cleaned_data["species_id"],
            count=form.cleaned_data["count"],
        )
    except CheckError as exc:
        return _refused("Count refused", str(exc))
    messages.success(request, "Event count corrected: the exports carry it, marked corrected.")
    return redirect("image_boxes", slug=project.slug, image_id=image.pk)
