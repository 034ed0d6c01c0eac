"""The admin's page of other tools' predictions: import a file, see what was imported."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotator.forms_predictions import PredictionsImportForm
from annotator.selectors import project_get_for_user
from annotator.views._common import request_user
from detector.selectors_external import external_models
from detector.services_external import ExternalImportError, external_predictions_import
from projects.models import Project, Role


def _page(
    request: HttpRequest, project: Project, form: PredictionsImportForm, status: int = 200
) -> HttpResponse:
    context = {"project": project, "form": form, "models": external_models(project=project)}
    return render(request, "annotator/predictions.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def predictions(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    if request.method != "POST":
        return _page(request, project, PredictionsImportForm())
    form = PredictionsImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, f"Nothing imported: {form.errors.as_text()}")
        return _page(request, project, form, status=400)
    upload = form.cleaned_data["file"]
    try:
        result = external_predictions_import(
            project=project,
            raw=upload.read(),
            source_file=upload.name or "upload.json",
            format=form.cleaned_data["format"],
            name=form.cleaned_data["name"] or None,
            version=form.cleaned_data["version"] or None,
            user=request_user(request),
            create_species=form.cleaned_data["create_species"],
        )
    except ExternalImportError as exc:
        messages.error(request, f"Nothing imported: {exc}")
        return _page(request, project, form, status=400)
    verb = "Replaced" if result.replaced else "Imported"
    messages.success(
        request,
        f"{verb} {result.model.name} {result.model.version}: {result.predictions} predictions "
        f"on {result.images} images, {len(result.mapped)} labels matched to species"
        + (f"; species added: {', '.join(result.created)}" if result.created else "")
        + (f"; {len(result.problems)} problems listed below" if result.problems else "")
        + ".",
    )
    return redirect("predictions", slug=slug)
