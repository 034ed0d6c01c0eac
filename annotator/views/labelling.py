"""The volunteers' labelling pages (one crop, or a grid) and the admin's review of disputes."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from activelearn.models import Round, RoundUnit
from activelearn.selectors import (
    audit_crop_ids,
    consensus_review_list,
    crop_suggestions,
    label_last_get,
    labels_today_count,
    round_open_get,
    round_progress,
    sequence_frames,
)
from activelearn.services import (
    LabelError,
    SettingsError,
    crop_claim_next,
    crop_claim_release,
    label_review,
    label_submit,
    label_undo,
    labels_submit,
    project_consensus_update,
)
from activelearn.services.labels import SUGGESTIONS_MAX
from annotator.forms import (
    SKIP,
    ConsensusSettingsForm,
    GridLabelForm,
    LabelForm,
    ReviewForm,
    suggestions_sign,
)
from annotator.numbers import SKIP_MAX
from annotator.selectors import project_get_for_user
from annotator.views._common import request_user
from detector.models import Crop
from detector.selectors_external import ExternalSuggestion, external_suggestions
from projects.models import LABELLERS, Project, Role, Species

# Crops on one grid page: the paper's interface showed a screenful for batch labelling.
GRID_SIZE = 25


# The most crops the labelling page remembers as skipped in a round, per browser session.
SKIPPED_MAX = SKIP_MAX


def _skipped_key(round_: Round | None) -> str:
    return f"skipped-{round_.pk}" if round_ else "skipped"


@login_required
@require_http_methods(["GET", "POST"])
def label(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    open_round = round_open_get(project=project)
    if request.method == "POST":
        return _label_post(request, project=project, open_round=open_round)
    if open_round is not None and open_round.unit == RoundUnit.EVENT:
        return redirect("label_event", slug=project.slug)  # served event by event
    crops = (
        crop_claim_next(
            round_=open_round,
            user=request_user(request),
            skipped=request.session.get(_skipped_key(open_round), []),
        )
        if open_round
        else []
    )
    context = _progress_context(request, project=project, open_round=open_round)
    if crops:
        context |= _crop_context(project=project, crop=crops[0], species=context["species"])
    return render(request, "annotator/label.html", context)


def _label_post(
    request: HttpRequest, *, project: Project, open_round: Round | None
) -> HttpResponse:
    form = LabelForm(request.POST)
    if not form.is_valid():
        return _refused(
            "; ".join(
                error["message"] if field == "__all__" else f"{field}: {error['message']}"
                for field, errors in form.errors.get_json_data().items()
                for error in errors
            )
        )
    crop_id = form.cleaned_data["crop_id"]
    if form.cleaned_data["kind"] == SKIP:
        key = _skipped_key(open_round)
        # The newest SKIPPED_MAX distinct ids, so that posting skips cannot grow the session
        # without bound.
        kept = [c for c in request.session.get(key, []) if c != crop_id]
        request.session[key] = [*kept, crop_id][-SKIPPED_MAX:]
        if open_round is not None:
            crop_claim_release(round_=open_round, user=request_user(request), crop_id=crop_id)
        return redirect("label", slug=project.slug)
    try:
        label_submit(
            project=project,
            crop_id=crop_id,
            user=request_user(request),
            kind=form.cleaned_data["kind"],
            species_id=form.cleaned_data["species_id"],
            idempotency_key=form.cleaned_data["idempotency_key"],
            attributes=form.cleaned_data["attributes"],
            suggestions=form.cleaned_data["suggestions"],
            suggestion_rank=form.cleaned_data["suggestion_rank"],
            seconds=form.cleaned_data["seconds"],
        )
    except LabelError as exc:
        return _refused(str(exc))
    return redirect("label", slug=project.slug)


def _refused(reason: str) -> HttpResponse:
    # Plain text: the reason quotes what was sent (and project names), never to run as HTML.
    return HttpResponse(
        f"Label refused: {reason}", status=400, content_type="text/plain; charset=utf-8"
    )


@login_required
@require_POST
def label_undo_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    try:
        undone = label_undo(project=project, user=request_user(request))
    except LabelError as exc:
        messages.error(request, f"Nothing undone: {exc}")
    else:
        what = undone.species.name if undone.species else undone.get_kind_display()
        closed = undone.round is not None and undone.round.status == Round.Status.CLOSED
        then = (
            "Its round has closed, so it goes back to the pool for a later round."
            if closed
            else "Label it again."
        )
        messages.success(request, f"Undone: {what} on crop {undone.crop_id}. {then}")
    back = "label_grid" if request.POST.get("next") == "grid" else "label"
    return redirect(back, slug=slug)


def _progress_context(
    request: HttpRequest, *, project: Project, open_round: Round | None
) -> dict[str, Any]:
    user = request_user(request)
    return {
        "project": project,
        "round": open_round,
        "progress": round_progress(round_=open_round) if open_round else (0, 0),
        "today": labels_today_count(project=project, user=user),
        "last_label": label_last_get(project=project, user=user),
        "species": list(project.species.all()),
        # Toggles on the page, one hotkey each (Attribute.key).
        "attributes": list(project.attributes.all()),
        "submission_key": uuid.uuid4().hex,
    }


def _crop_context(*, project: Project, crop: Crop, species: list[Species]) -> dict[str, Any]:
    det = crop.detection
    suggestions = crop_suggestions(project=project, crops=[crop], species=species)[crop.pk]
    shown = [s.species_id for s in suggestions]
    external = _external_shown(project=project, crop=crop, shown=shown)
    return {
        "crop": crop,
        "form": LabelForm(initial={"crop_id": crop.pk}),
        "suggestions": suggestions,
        "external": external,
        "suggestions_signed": suggestions_sign(crop_id=crop.pk, species_ids=shown),
        "frames": sequence_frames(image=crop.image),
        "box": {
            "left": det.x * 100,
            "top": det.y * 100,
            "width": det.w * 100,
            "height": det.h * 100,
            # The zoom is centred on the box.
            "cx": (det.x + det.w / 2) * 100,
            "cy": (det.y + det.h / 2) * 100,
        },
    }


def _external_shown(
    *, project: Project, crop: Crop, shown: list[int]
) -> list[tuple[ExternalSuggestion, int | None]]:
    """Other tools' suggestions for ``crop`` with the place of their species in the signed
    list, which they extend (``shown``, changed in place): a label taken from one records it
    like Trapwise's own. None on audit crops, shown without any machine's suggestion."""
    if audit_crop_ids(project=project, crop_ids=[crop.pk]):
        return []
    out: list[tuple[ExternalSuggestion, int | None]] = []
    for suggestion in external_suggestions(crops=[crop])[crop.pk]:
        sid = suggestion.species_id
        if sid is not None and sid not in shown and len(shown) < SUGGESTIONS_MAX:
            shown.append(sid)
        out.append((suggestion, shown.index(sid) + 1 if sid in shown else None))
    return out


@login_required
@require_http_methods(["GET", "POST"])
def label_grid(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    open_round = round_open_get(project=project)
    if request.method == "POST":
        form = GridLabelForm(request.POST)
        if not form.is_valid():
            messages.error(request, f"Nothing labelled: {form.errors.as_text()}")
            return redirect("label_grid", slug=slug)
        crop_ids = form.cleaned_data["crop_ids"]
        shown = _grid_shown(project=project, crop_ids=crop_ids)
        seconds = form.cleaned_data["seconds"]
        try:
            stored = labels_submit(
                project=project,
                crop_ids=crop_ids,
                user=request_user(request),
                kind=form.cleaned_data["kind"],
                species_id=form.cleaned_data["species_id"],
                idempotency_key=form.cleaned_data["idempotency_key"],
                attributes=form.cleaned_data["attributes"],
                suggestions=shown,
                suggestion_rank=1
                if shown and form.cleaned_data["species_id"] == shown[0]
                else None,
                seconds=None if seconds is None or not crop_ids else seconds / len(crop_ids),
            )
        except LabelError as exc:
            messages.error(request, f"Nothing labelled: {exc}")
        else:
            messages.success(request, f"Labelled {len(stored)} crops.")
        return redirect("label_grid", slug=slug)
    crops = (
        crop_claim_next(
            round_=open_round,
            user=request_user(request),
            skipped=request.session.get(_skipped_key(open_round), []),
            limit=GRID_SIZE,
        )
        if open_round
        else []
    )
    context = _progress_context(request, project=project, open_round=open_round)
    context["groups"] = _grid_groups(crops=crops, project=project, species=context["species"])
    return render(request, "annotator/label_grid.html", context)


def _grid_shown(*, project: Project, crop_ids: list[int]) -> list[int] | None:
    """The grid's suggestion for the selected crops, as the server offers it (the heading of
    their group: the machine's top species, or none), when they all share one; else None."""
    crops = list(Crop.objects.filter(project=project, pk__in=crop_ids))
    if not crops:
        return None
    species = list(project.species.all())
    offered = {
        tuple(s.species_id for s in top if s.source == "machine")
        for top in crop_suggestions(project=project, crops=crops, species=species, k=1).values()
    }
    return list(offered.pop()) if len(offered) == 1 else None


def _grid_groups(
    *, crops: list[Crop], project: Project, species: list[Species]
) -> list[dict[str, Any]]:
    """Crops grouped by their predicted species (most crops first), as the paper's grid."""
    suggestions = crop_suggestions(project=project, crops=crops, species=species, k=1)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for crop in crops:
        top = suggestions[crop.pk][0] if suggestions[crop.pk] else None
        machine = top is not None and top.source == "machine"
        name = top.name if machine and top else "No prediction yet"
        groups[name].append(
            {"crop": crop, "probability": top.probability if machine and top else None}
        )
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [{"name": name, "items": items} for name, items in ordered]


@login_required
@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    if request.method == "POST":
        form = ReviewForm(request.POST)
        if not form.is_valid():
            messages.error(request, f"Review not saved: {form.errors.as_text()}")
            return redirect("review", slug=slug)
        try:
            label_review(
                project=project,
                crop_id=form.cleaned_data["crop_id"],
                user=request_user(request),
                kind=form.cleaned_data["kind"],
                species_id=form.cleaned_data["species_id"],
            )
        except LabelError as exc:
            messages.error(request, f"Review not saved: {exc}")
        else:
            messages.success(request, f"Crop {form.cleaned_data['crop_id']} decided.")
        return redirect("review", slug=slug)
    return render(
        request,
        "annotator/review.html",
        {
            "project": project,
            "disputes": consensus_review_list(project=project),
            "species": list(project.species.all()),
        },
    )


@login_required
@require_POST
def consensus_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = ConsensusSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Consensus settings not saved: {form.errors.as_text()}")
        return redirect("project_settings", slug=slug)
    try:
        n = project_consensus_update(project=project, **form.cleaned_data)
    except SettingsError as exc:
        messages.error(request, f"Consensus settings not saved: {exc}")
    else:
        messages.success(request, f"Consensus settings saved; {n} labelled crops re-decided.")
    return redirect("project_settings", slug=slug)
