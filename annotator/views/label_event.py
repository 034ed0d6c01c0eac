"""The event label page: a capture event's frames and crops, one answer for all its crops.

In an event round (``Round.unit`` "event") volunteers are served whole capture events; one key
labels every crop of the event (``labels_event_submit``: one decision, undone together). "These
differ" drops to labelling that event's crops one by one on the same page.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from activelearn.models import Round, RoundUnit
from activelearn.selectors import audit_crop_ids, crop_suggestions
from activelearn.selectors_events import event_frames
from activelearn.services import (
    LabelError,
    crop_claim_release,
    event_claim_next,
    labels_event_submit,
    labels_submit,
)
from annotator.forms_events import DIFFER, EventLabelForm
from annotator.selectors import project_get_for_user
from annotator.views._common import request_user
from annotator.views.labelling import _progress_context, _refused, _skipped_key
from detector.models import Crop
from detector.selectors_external import external_suggestions
from projects.models import LABELLERS, Project


def _split_key(round_: Round) -> str:
    """Session key of the crops whose events the volunteer split ("these differ")."""
    return f"event-split-{round_.pk}"


@login_required
@require_http_methods(["GET", "POST"])
def label_event(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    open_round = _event_round(project)
    if request.method == "POST":
        if open_round is None:
            return _refused("no event round is open: label crop by crop")
        return _event_post(request, project=project, open_round=open_round)
    context = _progress_context(request, project=project, open_round=open_round)
    if open_round is None:
        return render(request, "annotator/label_event.html", context)
    crops = event_claim_next(
        round_=open_round,
        user=request_user(request),
        skipped=request.session.get(_skipped_key(open_round), []),
    )
    split = set(request.session.get(_split_key(open_round), []))
    if crops and all(c.pk in split for c in crops):
        crops, context["per_crop"] = crops[:1], True
    if crops:
        context |= _event_context(project=project, crops=crops, species=context["species"])
    return render(request, "annotator/label_event.html", context)


def _event_round(project: Project) -> Round | None:
    """The project's open round when it is an event round."""
    return Round.objects.filter(
        project=project, status=Round.Status.OPEN, unit=RoundUnit.EVENT
    ).first()


def _event_post(request: HttpRequest, *, project: Project, open_round: Round) -> HttpResponse:
    form = EventLabelForm(request.POST)
    if not form.is_valid():
        return _refused(form.errors.as_text())
    data, user = form.cleaned_data, request_user(request)
    crop_ids: list[int] = data["crop_ids"]
    if data["kind"] == DIFFER:
        key = _split_key(open_round)
        request.session[key] = sorted({*request.session.get(key, []), *crop_ids})
        return redirect("label_event", slug=project.slug)
    if data["kind"] == "skip":
        key = _skipped_key(open_round)
        request.session[key] = [*request.session.get(key, []), *crop_ids]
        for crop_id in crop_ids:
            crop_claim_release(round_=open_round, user=user, crop_id=crop_id)
        return redirect("label_event", slug=project.slug)
    # A crop of a split event is a plain vote; an event's crops are one decision.
    split = set(request.session.get(_split_key(open_round), []))
    store = labels_submit if set(crop_ids) <= split else labels_event_submit
    try:
        store(
            project=project,
            crop_ids=crop_ids,
            user=user,
            kind=data["kind"],
            species_id=data["species_id"],
            idempotency_key=data["idempotency_key"],
            attributes=data["attributes"],
        )
    except LabelError as exc:
        return _refused(str(exc))
    return redirect("label_event", slug=project.slug)


def _event_context(*, project: Project, crops: list[Crop], species: list[Any]) -> dict[str, Any]:
    # Stored crop probabilities are already pooled over the event (activelearn.events), so
    # the first crop's suggestions are the event's.
    suggestions = crop_suggestions(project=project, crops=crops[:1], species=species)
    # Other tools' predictions for the first crop, as a help: the event's answer does not
    # record the suggestions shown. None when an audit crop is among them.
    audited = audit_crop_ids(project=project, crop_ids=[c.pk for c in crops])
    external = [] if audited else external_suggestions(crops=crops[:1])[crops[0].pk]
    return {
        "external": [(s, None) for s in external],
        "crops": crops,
        "crop_ids": [c.pk for c in crops],
        "frames": event_frames(image=crops[0].image),
        "event_name": crops[0].image.seq_id or crops[0].image.file_name,
        "suggestions": suggestions[crops[0].pk],
    }
