"""The field guide: decided crops of a species that volunteers agreed on, to compare with."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotator.forms import FieldGuideForm
from annotator.selectors import project_get_for_user
from annotator.selectors_labels import FIELD_GUIDE_MIN_AGREEMENT, field_guide_examples
from projects.models import LABELLERS


@login_required
@require_GET
def field_guide(request: HttpRequest, slug: str) -> HttpResponse:
    """``?species=<id>``: examples of that species; without it, the species to choose from.
    For the members who label (a 404 for the others); 400 for a species not the project's."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=LABELLERS)
    form = FieldGuideForm(request.GET, project=project)
    if not form.is_valid():
        return HttpResponse(
            f"Field guide: {form.errors.as_text()}",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    species = form.cleaned_data["species"]
    return render(
        request,
        "annotator/field_guide.html",
        {
            "project": project,
            "form": form,
            "chosen": species,
            "examples": field_guide_examples(project=project, species=species)
            if species is not None
            else [],
            "min_agreement": FIELD_GUIDE_MIN_AGREEMENT,
        },
    )
