"""The admin's pages for a project's members (and their roles), its species and attributes.

Every view is admin-only (others get 404). A refused change re-renders the page with HTTP 400
and the reason, and changes nothing; a change redirects back to the page (post/redirect/get).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotator.forms import (
    AttributeForm,
    MemberAddForm,
    MemberRoleForm,
    SpeciesMergeForm,
    SpeciesNameForm,
)
from annotator.models import Project, Role
from annotator.selectors import members_list, project_get_for_user, species_list_with_counts
from annotator.services import (
    AttributeChangeError,
    MemberError,
    SpeciesError,
    attribute_add,
    attribute_remove,
    attribute_update,
    member_add,
    member_remove,
    member_role_change,
    species_add,
    species_merge,
    species_rename,
)
from annotator.views._common import request_user

ADMIN_ONLY = (Role.ADMIN,)


def _members_page(
    request: HttpRequest,
    project: Project,
    *,
    error: str = "",
    add_form: MemberAddForm | None = None,
) -> HttpResponse:
    if error:
        messages.error(request, error)
    context = {
        "project": project,
        "role": Role.ADMIN,
        "members": members_list(project=project),
        "add_form": add_form or MemberAddForm(),
        "roles": Role.choices,
    }
    return render(request, "annotator/members.html", context, status=400 if error else 200)


@login_required
@require_GET
def members(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    return _members_page(request, project)


@login_required
@require_POST
def member_add_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        return _members_page(
            request, project, error=f"Member not added: {form.errors.as_text()}", add_form=form
        )
    try:
        membership = member_add(project=project, **form.cleaned_data)
    except MemberError as exc:
        return _members_page(request, project, error=f"Member not added: {exc}", add_form=form)
    messages.success(
        request, f"{membership.user.username} added as {membership.get_role_display()}."
    )
    return redirect("members", slug=slug)


@login_required
@require_POST
def member_role_view(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _members_page(request, project, error=f"Role not changed: {form.errors.as_text()}")
    try:
        membership = member_role_change(
            project=project, membership_id=membership_id, role=form.cleaned_data["role"]
        )
    except MemberError as exc:
        return _members_page(request, project, error=f"Role not changed: {exc}")
    messages.success(request, f"{membership.user.username} is now {membership.get_role_display()}.")
    # Demoting oneself ends one's access to this page: go back to the project instead.
    if membership.user_id == request_user(request).pk and membership.role != Role.ADMIN:
        return redirect("project_detail", slug=slug)
    return redirect("members", slug=slug)


@login_required
@require_POST
def member_remove_view(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    try:
        user = member_remove(project=project, membership_id=membership_id)
    except MemberError as exc:
        return _members_page(request, project, error=f"Member not removed: {exc}")
    messages.success(request, f"{user.username} removed; their labels stay.")
    if user.pk == request_user(request).pk:
        return redirect("project_list")
    return redirect("members", slug=slug)


def _species_page(request: HttpRequest, project: Project, *, error: str = "") -> HttpResponse:
    if error:
        messages.error(request, error)
    context = {
        "project": project,
        "role": Role.ADMIN,
        "species": species_list_with_counts(project=project),
        "add_form": SpeciesNameForm(),
        "attributes": list(project.attributes.all()),
        "attribute_form": AttributeForm(),
    }
    return render(request, "annotator/species.html", context, status=400 if error else 200)


@login_required
@require_GET
def species(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    return _species_page(request, project)


@login_required
@require_POST
def species_add_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = SpeciesNameForm(request.POST)
    if not form.is_valid():
        return _species_page(request, project, error=f"Species not added: {form.errors.as_text()}")
    try:
        added = species_add(project=project, name=form.cleaned_data["name"])
    except SpeciesError as exc:
        return _species_page(request, project, error=f"Species not added: {exc}")
    messages.success(request, f"Species {added.name!r} added.")
    return redirect("species", slug=slug)


@login_required
@require_POST
def species_rename_view(request: HttpRequest, slug: str, species_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = SpeciesNameForm(request.POST)
    if not form.is_valid():
        return _species_page(
            request, project, error=f"Species not renamed: {form.errors.as_text()}"
        )
    try:
        renamed = species_rename(
            project=project, species_id=species_id, name=form.cleaned_data["name"]
        )
    except SpeciesError as exc:
        return _species_page(request, project, error=f"Species not renamed: {exc}")
    messages.success(request, f"Species renamed to {renamed.name!r}; its labels follow.")
    return redirect("species", slug=slug)


@login_required
@require_POST
def species_merge_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = SpeciesMergeForm(request.POST)
    if not form.is_valid():
        return _species_page(request, project, error=f"Species not merged: {form.errors.as_text()}")
    try:
        report = species_merge(
            project=project,
            source_id=form.cleaned_data["source"],
            target_id=form.cleaned_data["target"],
        )
    except SpeciesError as exc:
        return _species_page(request, project, error=f"Species not merged: {exc}")
    messages.success(
        request,
        f"{report.source!r} merged into {report.target.name!r}: {report.labels} labels moved"
        + ("; the classifier is being retrained." if report.labels else "."),
    )
    return redirect("species", slug=slug)


# Attributes live on the species page: both are the vocabulary volunteers label with.


@login_required
@require_POST
def attribute_add_view(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = AttributeForm(request.POST)
    if not form.is_valid():
        return _species_page(
            request, project, error=f"Attribute not added: {form.errors.as_text()}"
        )
    try:
        added = attribute_add(project=project, **form.cleaned_data)
    except AttributeChangeError as exc:
        return _species_page(request, project, error=f"Attribute not added: {exc}")
    messages.success(request, f"Attribute {added.name!r} added (key {added.key}).")
    return redirect("species", slug=slug)


@login_required
@require_POST
def attribute_update_view(request: HttpRequest, slug: str, attribute_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = AttributeForm(request.POST)
    if not form.is_valid():
        return _species_page(
            request, project, error=f"Attribute not changed: {form.errors.as_text()}"
        )
    try:
        changed = attribute_update(project=project, attribute_id=attribute_id, **form.cleaned_data)
    except AttributeChangeError as exc:
        return _species_page(request, project, error=f"Attribute not changed: {exc}")
    messages.success(request, f"Attribute saved: {changed.name!r} (key {changed.key}).")
    return redirect("species", slug=slug)


@login_required
@require_POST
def attribute_remove_view(request: HttpRequest, slug: str, attribute_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    try:
        name = attribute_remove(project=project, attribute_id=attribute_id)
    except AttributeChangeError as exc:
        return _species_page(request, project, error=f"Attribute not removed: {exc}")
    messages.success(request, f"Attribute {name!r} removed.")
    return redirect("species", slug=slug)
