"""The project page and the admin's actions on it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from activelearn.selectors import (
    attribute_metrics_get,
    classifier_latest,
    classifier_metrics_get,
    confusion_matrix_get,
    learning_curve_get,
)
from activelearn.selectors_audit import audit_estimate_get, classifier_rejected_get
from activelearn.selectors_empties import empty_checks_summary
from activelearn.services import (
    FinetuneError,
    LabelError,
    RoundError,
    SettingsError,
    classifier_retrain_request,
    embedding_finetune_queue,
    finetune_interval,
    project_learning_update,
    round_start,
    round_strategy_choice,
)
from annotator.forms import (
    DetectionStartForm,
    LearningSettingsForm,
    RoundStartForm,
    ThresholdsForm,
)
from annotator.jobs import jobs_active_for_project, jobs_recent_for_project
from annotator.selectors import (
    effort_saved_estimate,
    label_counts_chart,
    project_get_for_user,
    project_list_for_user,
    project_live_status,
    project_status,
    species_rare_get,
)
from annotator.selectors_labels import anchoring_get, label_seconds_measured
from annotator.views._common import request_user
from detector.base import DetectorError
from detector.jobs import detection_job_create
from detector.selectors import detection_job_latest
from embeddings.pipeline import project_thresholds_update
from embeddings.selectors import embedding_versions_list
from projects.models import EXPORTERS, LABELLERS, Role


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    memberships = project_list_for_user(user=request.user)
    return render(request, "annotator/project_list.html", {"memberships": memberships})


@login_required
@require_GET
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """The project page; admins also get jobs, plots and the controls of the pipeline."""
    project, role = project_get_for_user(slug=slug, user=request.user)
    is_admin = role == Role.ADMIN
    status = project_status(project=project)
    classifier = classifier_latest(project=project)
    missed, _ = empty_checks_summary(project=project)
    context = {
        "project": project,
        "role": role,
        "status": status,
        "round_form": RoundStartForm(project=project, initial={"size": project.round_size}),
        "strategy_auto": round_strategy_choice(project=project),
        "finetune_every": finetune_interval(
            finetune_every=project.finetune_every,
            n_crops=status.embedding.n_crops if status.embedding else 0,
        ),
        "learning_form": LearningSettingsForm(
            initial={
                "first_round_strategy": project.first_round_strategy,
                "target_accuracy": round(project.target_accuracy * 100, 2),
                "seconds_per_image": project.seconds_per_image,
                "class_balance": project.class_balance,
                "ensemble_size": project.ensemble_size,
                "audit_share": round(project.audit_share * 100, 2),
            }
        ),
        "classifier": classifier,
        "metrics": classifier_metrics_get(project=project, classifier=classifier)
        if is_admin
        else None,
        "rare_species": species_rare_get(project=project, classifier=classifier)
        if is_admin
        else None,
        "effort": effort_saved_estimate(
            project=project,
            counts=status.pipeline,
            measured=label_seconds_measured(project=project),
            missed=missed,
        ),
        "anchoring": anchoring_get(project=project) if is_admin else None,
        "rate": missed,
        "learning_curve": learning_curve_get(project=project) if is_admin else None,
        "audit": audit_estimate_get(project=project) if is_admin else None,
        "rejected": classifier_rejected_get(project=project) if is_admin else None,
        "label_counts": label_counts_chart(project=project) if is_admin else None,
        "confusion": confusion_matrix_get(project=project) if is_admin else None,
        "attribute_metrics": attribute_metrics_get(project=project, classifier=classifier)
        if is_admin
        else None,
        "jobs": jobs_active_for_project(project=project) if is_admin else [],
        "recent_jobs": jobs_recent_for_project(project=project) if is_admin else [],
        "detection": detection_job_latest(project=project),
        "embedding_versions": embedding_versions_list(project=project),
        "detection_form": DetectionStartForm(),
        "thresholds_form": ThresholdsForm(
            initial={
                "detection_threshold": project.detection_threshold,
                "min_box_pixels": project.min_box_pixels,
                "crop_padding": project.crop_padding,
                "crop_shape": project.crop_shape,
            }
        ),
        "can_label": role in LABELLERS,
        "can_export": role in EXPORTERS,
    }
    return render(request, "annotator/project_detail.html", context)


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
    form = RoundStartForm(request.POST, project=project)
    if not form.is_valid():
        messages.error(request, f"Round not started: {form.errors.as_text()}")
        return redirect("project_detail", slug=slug)
    try:
        new_round = round_start(project=project, user=request_user(request), **form.cleaned_data)
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
