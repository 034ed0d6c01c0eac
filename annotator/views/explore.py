"""Explore and verify: every crop as a thumbnail, filtered and keyset-paged; admins and
ecologists confirm or correct many at once (a recorded, undoable decision). Volunteers may look,
read-only, when the project's admin allows it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from activelearn.models import Label
from activelearn.selectors import classifier_latest
from activelearn.selectors_explore import (
    CursorError,
    explore_page,
    image_boxes,
    images_untimed_count,
    verify_decisions_recent,
)
from activelearn.services import LabelError
from activelearn.services.verify import crops_verify, explore_volunteers_set, verification_undo
from annotator.forms_explore import (
    SOURCE_LABELS,
    ExploreFilterForm,
    ExploreSettingsForm,
    VerifyForm,
    VerifyUndoForm,
    form_errors_text,
)
from annotator.selectors import project_get_for_user
from annotator.views._common import request_user
from detector.models import Crop
from projects.models import EXPORTERS, Project, Role

# Thumbnails per page.
PAGE_SIZE = 60


def _explore_project(request: HttpRequest, slug: str) -> tuple[Project, str]:
    """The project and the caller's role; volunteers only where the admin lets them (else,
    like outsiders, a 404)."""
    project, role = project_get_for_user(slug=slug, user=request.user)
    if role == Role.VOLUNTEER and not project.explore_volunteers:
        raise Http404("No such project")
    return project, role


def _refused(request: HttpRequest, project: Project, reason: str) -> HttpResponse:
    return render(
        request,
        "annotator/explore_refused.html",
        {"project": project, "reason": reason},
        status=400,
    )


@login_required
@require_GET
def explore(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = _explore_project(request, slug)
    form = ExploreFilterForm(request.GET, project=project)
    if not form.is_valid():
        return _refused(request, project, f"Filters not applied: {form_errors_text(form)}")
    classifier = classifier_latest(project=project)
    try:
        page = explore_page(
            project=project,
            filters=form.filters(),
            classifier=classifier,
            sort=form.sort_order(),
            cursor=form.cleaned_data.get("cursor") or "",
            limit=PAGE_SIZE,
        )
    except CursorError as exc:
        return _refused(request, project, f"Page not shown: {exc}")
    species = list(project.species.all())
    names = {s.pk: s.name for s in species}
    query = request.GET.copy()
    query.pop("cursor", None)
    next_url = ""
    if page.next_cursor is not None:
        next_query = query.copy()
        next_query["cursor"] = page.next_cursor
        next_url = f"?{next_query.urlencode()}"
    can_verify = role in EXPORTERS
    cards = [
        {
            "crop": crop,
            "species": names.get(crop.final_species_id, ""),  # type: ignore[attr-defined]
            "source": crop.final_source,  # type: ignore[attr-defined]
            "confidence": crop.final_confidence,  # type: ignore[attr-defined]
            "machine": names.get(crop.machine_species_id, ""),  # type: ignore[attr-defined]
        }
        for crop in page.crops
    ]
    return render(
        request,
        "annotator/explore.html",
        {
            "project": project,
            "role": role,
            "form": form,
            "cards": cards,
            "next_url": next_url,
            "first_url": f"?{query.urlencode()}" if form.cleaned_data.get("cursor") else "",
            "back": query.urlencode(),
            "species": species,
            "source_labels": SOURCE_LABELS,
            "can_verify": can_verify,
            "is_admin": role == Role.ADMIN,
            "classifier": classifier,
            "decisions": verify_decisions_recent(project=project) if can_verify else [],
            "untimed_count": images_untimed_count(project=project),
        },
    )


def _back(slug: str, query: str) -> HttpResponse:
    url = reverse("explore", args=[slug])
    return redirect(f"{url}?{query}" if query else url)


@login_required
@require_POST
def explore_verify(request: HttpRequest, slug: str) -> HttpResponse:
    """Confirm, correct or mark not an animal the crops ticked (admins and ecologists)."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    form = VerifyForm(request.POST)
    if not form.is_valid():
        return _refused(request, project, f"Nothing verified: {form_errors_text(form)}")
    data = form.cleaned_data
    try:
        crops_verify(
            project=project,
            user=request_user(request),
            crop_ids=data["crop_ids"],
            action=data["action"],
            species_id=data.get("species"),
            classifier=classifier_latest(project=project),
        )
    except LabelError as exc:
        return _refused(request, project, f"Nothing verified: {exc}")
    n = len(data["crop_ids"])
    messages.success(
        request, f"{n} crop{'s' if n != 1 else ''} verified; undo it under Recent decisions."
    )
    return _back(slug, form.back_query())


@login_required
@require_POST
def explore_undo(request: HttpRequest, slug: str) -> HttpResponse:
    """Undo one verification decision (admins and ecologists)."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    form = VerifyUndoForm(request.POST)
    if not form.is_valid():
        return _refused(request, project, f"Nothing undone: {form_errors_text(form)}")
    try:
        n = verification_undo(project=project, decision=form.cleaned_data["decision"])
    except LabelError as exc:
        return _refused(request, project, f"Nothing undone: {exc}")
    messages.success(request, f"Verification of {n} crop{'s' if n != 1 else ''} undone.")
    query = QueryDict(form.cleaned_data.get("back") or "", mutable=True)
    query.pop("cursor", None)
    return _back(slug, query.urlencode())


@login_required
@require_POST
def explore_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """The admin lets volunteers look at the explore page, or stops them."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = ExploreSettingsForm(request.POST)
    if not form.is_valid():
        return _refused(request, project, f"Setting not saved: {form_errors_text(form)}")
    allowed = form.cleaned_data["explore_volunteers"]
    explore_volunteers_set(project=project, allowed=allowed)
    messages.success(
        request,
        "Volunteers may now explore (read-only)." if allowed else "Volunteers may not explore.",
    )
    return _back(slug, "")


@login_required
@require_GET
def explore_crop(request: HttpRequest, slug: str, crop_id: int) -> HttpResponse:
    """One crop's image with every box, and the crop's labels (who, when, how)."""
    project, role = _explore_project(request, slug)
    crop = get_object_or_404(Crop.objects.select_related("image"), project=project, pk=crop_id)
    boxes = image_boxes(crop=crop, classifier=classifier_latest(project=project))
    labels = Label.objects.filter(crop=crop).select_related("user", "species").order_by("-id")[:50]
    return render(
        request,
        "annotator/explore_crop.html",
        {
            "project": project,
            "crop": crop,
            "image": crop.image,
            "boxes": boxes,
            "labels": labels,
            "source_labels": SOURCE_LABELS,
            "role": role,
        },
    )
