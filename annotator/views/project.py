"""The project page and the admin's actions on it."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from activelearn.services import (
    FinetuneError,
    LabelError,
    RoundError,
    SettingsError,
    classifier_retrain_request,
    embedding_finetune_queue,
    project_learning_update,
    round_start,
)
from annotator.export_jobs import FILE_FORMATS, export_direct_allowed
from annotator.forms import (
    DetectionStartForm,
    LearningSettingsForm,
    RoundStartForm,
    ThresholdsForm,
)
from annotator.selectors import project_get_for_user, project_list_for_user, project_live_status
from annotator.selectors_exports import export_file_list, export_file_progress
from annotator.selectors_pages import (
    project_data_get,
    project_model_get,
    project_overview_get,
    project_rounds_get,
)
from annotator.views._common import request_user
from detector.base import DetectorError
from detector.jobs import detection_job_create
from embeddings.pipeline import project_thresholds_update
from projects.models import EXPORTERS, LABELLERS, Project, Role


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    memberships = project_list_for_user(user=request.user)
    return render(request, "annotator/project_list.html", {"memberships": memberships})


# Who reads which page (the navigation shows each role its own): the overview and the rounds
# are every member's, the model and metrics also the ecologists', the rest the admins'.
METRICS_READERS = (Role.ADMIN, Role.ECOLOGIST)
ADMIN_ONLY = (Role.ADMIN,)


def _project_page(
    request: HttpRequest, *, project: Project, role: str, page: str, **context: object
) -> HttpResponse:
    """Render ``annotator/project_<page>.html`` with what every project page needs: the
    project, the user's role and the current page (for the shared navigation)."""
    return render(
        request,
        f"annotator/project_{page}.html",
        {
            "project": project,
            "role": role,
            "page": page,
            "can_label": role in LABELLERS,
            "can_export": role in EXPORTERS,
            "can_read_metrics": role in METRICS_READERS,
            **context,
        },
    )


@login_required
@require_GET
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """The overview: counts, the open round, the three numbers that matter, effort saved;
    admins also get the background jobs."""
    project, role = project_get_for_user(slug=slug, user=request.user)
    overview = project_overview_get(project=project, with_jobs=role == Role.ADMIN)
    return _project_page(request, project=project, role=role, page="overview", view=overview)


@login_required
@require_GET
def project_rounds(request: HttpRequest, slug: str) -> HttpResponse:
    """Rounds and labelling: the open round, the vote counts, the rounds; admins start one."""
    project, role = project_get_for_user(slug=slug, user=request.user)
    return _project_page(
        request,
        project=project,
        role=role,
        page="rounds",
        view=project_rounds_get(project=project),
        round_form=RoundStartForm(project=project, initial={"size": project.round_size}),
    )


@login_required
@require_GET
def project_model(request: HttpRequest, slug: str) -> HttpResponse:
    """Model and metrics, for admins and ecologists."""
    project, role = project_get_for_user(slug=slug, user=request.user, roles=METRICS_READERS)
    return _project_page(
        request, project=project, role=role, page="model", view=project_model_get(project=project)
    )


@login_required
@require_GET
def project_data(request: HttpRequest, slug: str) -> HttpResponse:
    """Data and detection (the admin's): images, detection, thresholds, embedding."""
    project, role = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    return _project_page(
        request,
        project=project,
        role=role,
        page="data",
        view=project_data_get(project=project),
        detection_form=DetectionStartForm(),
        thresholds_form=ThresholdsForm(
            initial={
                "detection_threshold": project.detection_threshold,
                "min_box_pixels": project.min_box_pixels,
                "crop_padding": project.crop_padding,
                "crop_shape": project.crop_shape,
            }
        ),
    )


@login_required
@require_GET
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """Settings (the admin's): active learning, votes and consensus, members and species."""
    project, role = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    return _project_page(
        request,
        project=project,
        role=role,
        page="settings",
        learning_form=LearningSettingsForm(
            initial={
                "first_round_strategy": project.first_round_strategy,
                "target_accuracy": round(project.target_accuracy * 100, 2),
                "seconds_per_image": project.seconds_per_image,
                "class_balance": project.class_balance,
                "ensemble_size": project.ensemble_size,
                "audit_share": round(project.audit_share * 100, 2),
            }
        ),
    )


@login_required
@require_GET
def project_exports(request: HttpRequest, slug: str) -> HttpResponse:
    """The exports, for admins and ecologists."""
    project, role = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)
    files = export_file_list(project=project)
    return _project_page(
        request,
        project=project,
        role=role,
        page="exports",
        export_files=[(f, round(100 * export_file_progress(export_file=f))) for f in files],
        # While a file is being built the page reloads itself to show its progress.
        exports_active=any(f.job.status in ("queued", "running") for f in files),
        direct_exports=export_direct_allowed(project=project),
        file_formats=FILE_FORMATS,
        max_direct=settings.TRAPWISE_EXPORT_DIRECT_MAX_IMAGES,
    )


@login_required
@require_GET
def project_status_json(request: HttpRequest, slug: str) -> JsonResponse:
    """What the admin's dashboard polls: pipeline counts, round progress and active jobs."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    response = JsonResponse(project_live_status(project=project))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def learning_settings_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = LearningSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Settings not saved: {form.errors.as_text()}")
        return redirect("project_settings", slug=slug)
    try:
        project_learning_update(project=project, **form.cleaned_data)
    except SettingsError as exc:
        messages.error(request, f"Settings not saved: {exc}")
    else:
        messages.success(request, "Active-learning settings saved.")
    return redirect("project_settings", slug=slug)


@login_required
@require_POST
def round_start_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = RoundStartForm(request.POST, project=project)
    if not form.is_valid():
        messages.error(request, f"Round not started: {form.errors.as_text()}")
        return redirect("project_rounds", slug=slug)
    try:
        new_round = round_start(project=project, user=request_user(request), **form.cleaned_data)
    except RoundError as exc:
        messages.error(request, f"Round not started: {exc}")
    else:
        messages.success(request, f"Round {new_round.number} started.")
    return redirect("project_rounds", slug=slug)


@login_required
@require_POST
def detection_start(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = DetectionStartForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Detection not started: {form.errors.as_text()}")
        return redirect("project_data", slug=slug)
    try:
        job = detection_job_create(project=project, detector=form.cleaned_data["detector"])
    except DetectorError as exc:
        messages.error(request, f"Detection not started: {exc}")
    else:
        messages.success(request, f"Detection queued for {job.total} images.")
    return redirect("project_data", slug=slug)


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
    return redirect("project_data", slug=slug)


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
    return redirect("project_model", slug=slug)


@login_required
@require_POST
def thresholds_update(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=(Role.ADMIN,))
    form = ThresholdsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Thresholds not changed: {form.errors.as_text()}")
        return redirect("project_data", slug=slug)
    project_thresholds_update(project=project, **form.cleaned_data)
    messages.success(request, "Thresholds saved; crops are being re-derived from the stored boxes.")
    return redirect("project_data", slug=slug)
