"""The deployments page: admins add, edit, delete and upload deployments (a CSV, the same
service as ``manage.py import_deployments``); ecologists may look. Others get 404.

A refused change re-renders the page with HTTP 400 and the reason and changes nothing; a
change redirects back to the page (post/redirect/get).
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotator.forms_deployments import DeploymentCsvForm, DeploymentForm
from annotator.selectors import project_get_for_user
from projects.models import EXPORTERS, Deployment, Project, Role
from projects.selectors_deployments import (
    deployment_get,
    deployments_with_counts,
    images_without_deployment,
)
from projects.services_deployments import (
    DeploymentCsvError,
    deployment_create,
    deployment_delete,
    deployment_update,
    deployments_import,
)

ADMIN_ONLY = (Role.ADMIN,)


def _page(
    request: HttpRequest,
    project: Project,
    role: str,
    *,
    error: str = "",
    add_form: DeploymentForm | None = None,
    csv_form: DeploymentCsvForm | None = None,
) -> HttpResponse:
    if error:
        messages.error(request, error)
    context = {
        "project": project,
        "role": role,
        "page": "deployments",
        "can_export": role in EXPORTERS,
        "can_read_metrics": role in EXPORTERS,
        "deployments": deployments_with_counts(project=project),
        "loose": images_without_deployment(project=project),
        "add_form": add_form or DeploymentForm(),
        "csv_form": csv_form or DeploymentCsvForm(),
    }
    return render(
        request, "annotator/project_deployments.html", context, status=400 if error else 200
    )


@login_required
@require_GET
def deployments(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    return _page(request, project, role)


def _page_change(
    request: HttpRequest,
    slug: str,
    *,
    form: DeploymentForm | DeploymentCsvForm,
    refused: str,
    change: Callable[[Project], str],
) -> HttpResponse:
    """The shape of every change on the page: admin only, validate ``form``, apply ``change``
    (which returns the success message), or re-render with ``refused`` and the reason (HTTP
    400, nothing changed)."""
    project, role = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    forms = {"add_form": form} if isinstance(form, DeploymentForm) else {"csv_form": form}
    if not form.is_valid():
        return _page(request, project, role, error=f"{refused}: {form.errors.as_text()}", **forms)
    try:
        message = change(project)
    except DeploymentCsvError as exc:
        return _page(request, project, role, error=f"{refused}: {exc}", **forms)
    messages.success(request, message)
    return redirect("deployments", slug=slug)


@login_required
@require_POST
def deployment_add_view(request: HttpRequest, slug: str) -> HttpResponse:
    form = DeploymentForm(request.POST)

    def change(project: Project) -> str:
        deployment = deployment_create(project=project, fields=form.fields_value())
        return f"Deployment {deployment.deployment_id!r} added."

    return _page_change(request, slug, form=form, refused="Deployment not added", change=change)


@login_required
@require_POST
def deployments_upload_view(request: HttpRequest, slug: str) -> HttpResponse:
    form = DeploymentCsvForm(request.POST, request.FILES)

    def change(project: Project) -> str:
        report = deployments_import(project=project, text=form.text())
        return (
            f"{report.created} deployment(s) added, {report.updated} updated; "
            f"{report.images_assigned} image(s) are in a deployment."
        )

    return _page_change(request, slug, form=form, refused="Nothing imported", change=change)


def _deployment(project: Project, deployment_pk: int) -> Deployment:
    try:
        return deployment_get(project=project, deployment_pk=deployment_pk)
    except Deployment.DoesNotExist:
        raise Http404("No such deployment") from None


@login_required
@require_http_methods(["GET", "POST"])
def deployment_edit_view(request: HttpRequest, slug: str, deployment_pk: int) -> HttpResponse:
    project, role = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    deployment = _deployment(project, deployment_pk)
    form = DeploymentForm.of(deployment)
    status, error = 200, ""
    if request.method == "POST":
        form = DeploymentForm(request.POST)
        if form.is_valid():
            try:
                deployment_update(
                    project=project, deployment_pk=deployment.pk, fields=form.fields_value()
                )
            except DeploymentCsvError as exc:
                error = str(exc)
            else:
                messages.success(
                    request, f"Deployment {form.cleaned_data['deployment_id']!r} saved."
                )
                return redirect("deployments", slug=slug)
        status = 400
    context = {
        "project": project,
        "role": role,
        "deployment": deployment,
        "form": form,
        "error": error,
    }
    return render(request, "annotator/deployment_edit.html", context, status=status)


@login_required
@require_POST
def deployment_delete_view(request: HttpRequest, slug: str, deployment_pk: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    try:
        name = deployment_delete(project=project, deployment_pk=deployment_pk)
    except Deployment.DoesNotExist:
        raise Http404("No such deployment") from None
    messages.success(request, f"Deployment {name!r} deleted; its images and labels stay.")
    return redirect("deployments", slug=slug)
