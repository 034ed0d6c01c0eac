"""The admin's pages for a project's members (their roles and invitations), its species and
attributes.

Every view is admin-only (others get 404). A refused change re-renders the page with HTTP 400
and the reason, and changes nothing; a change redirects back to the page (post/redirect/get),
except a new invitation, whose link is shown on the response itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from activelearn.services import attribute_remove, species_merge
from annotator.forms import (
    AttributeForm,
    InvitationForm,
    MemberRoleForm,
    SpeciesCsvForm,
    SpeciesMergeForm,
    SpeciesNameForm,
    SpeciesTaxonomyForm,
)
from annotator.selectors import (
    invitations_open,
    members_list,
    project_get_for_user,
    species_list_with_counts,
)
from annotator.views._common import request_user
from projects.invitations import InvitationError, invitation_create, invitation_revoke
from projects.models import Project, Role, TaxonRank
from projects.services import (
    AttributeChangeError,
    MemberError,
    SpeciesError,
    attribute_add,
    attribute_update,
    member_remove,
    member_role_change,
    species_add,
    species_rename,
)
from projects.services_taxonomy import (
    SPECIES_CSV_MAX_BYTES,
    species_csv_decode,
    species_import,
    species_taxonomy_set,
)
from projects.taxonomy import TaxonomyError

ADMIN_ONLY = (Role.ADMIN,)


def _members_page(
    request: HttpRequest,
    project: Project,
    *,
    error: str = "",
    invitation_form: InvitationForm | None = None,
    new_link: str = "",
) -> HttpResponse:
    if error:
        messages.error(request, error)
    context = {
        "project": project,
        "role": Role.ADMIN,
        "members": members_list(project=project),
        "invitations": invitations_open(project=project),
        "invitation_form": invitation_form or InvitationForm(),
        "new_link": new_link,
        "roles": Role.choices,
    }
    return render(request, "annotator/members.html", context, status=400 if error else 200)


@login_required
@require_GET
def members(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    return _members_page(request, project)


@never_cache
@login_required
@require_POST
def invitation_create_view(request: HttpRequest, slug: str) -> HttpResponse:
    """Make an invitation and show its link on this response only: the token is not stored
    (nor put in a message, which lives in the session), so it cannot be shown again."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        return _members_page(
            request,
            project,
            error=f"Invitation not made: {form.errors.as_text()}",
            invitation_form=form,
        )
    try:
        invitation, token = invitation_create(
            project=project,
            created_by=request_user(request),
            role=form.cleaned_data["role"],
            days=form.cleaned_data["days"],
            max_uses=form.cleaned_data["max_uses"],
        )
    except InvitationError as exc:
        return _members_page(
            request, project, error=f"Invitation not made: {exc}", invitation_form=form
        )
    link = request.build_absolute_uri(reverse("invitation", kwargs={"token": token}))
    messages.success(
        request,
        f"Invitation made: {invitation.get_role_display()}, {invitation.max_uses} use(s). "
        "Copy its link now; it is shown only once.",
    )
    return _members_page(request, project, new_link=link)


@login_required
@require_POST
def invitation_revoke_view(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    try:
        invitation_revoke(project=project, invitation_id=invitation_id)
    except InvitationError as exc:
        return _members_page(request, project, error=f"Invitation not revoked: {exc}")
    messages.success(request, "Invitation revoked; its link no longer works.")
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
    rows = species_list_with_counts(project=project)
    context = {
        "project": project,
        "role": Role.ADMIN,
        "species": rows,
        # Only a higher taxon can be a parent: a parent ranks above its child.
        "parents": [r.species for r in rows if r.species.rank != TaxonRank.SPECIES],
        "add_form": SpeciesNameForm(),
        "attributes": list(project.attributes.all()),
        "attribute_form": AttributeForm(),
        "ranks": TaxonRank.choices,
        "csv_form": SpeciesCsvForm(),
    }
    return render(request, "annotator/species.html", context, status=400 if error else 200)


@login_required
@require_GET
def species(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    return _species_page(request, project)


def _species_page_change(
    request: HttpRequest,
    slug: str,
    *,
    form: forms.Form | None,
    refused: str,
    change: Callable[[Project, dict[str, Any]], str],
) -> HttpResponse:
    """The shape of every change on the species page: admin only, validate ``form`` (if any),
    apply ``change`` (which returns the success message), or re-render with ``refused`` and
    the reason (HTTP 400, nothing changed)."""
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=ADMIN_ONLY)
    if form is not None and not form.is_valid():
        return _species_page(request, project, error=f"{refused}: {form.errors.as_text()}")
    try:
        message = change(project, form.cleaned_data if form is not None else {})
    except (SpeciesError, AttributeChangeError, TaxonomyError) as exc:
        return _species_page(request, project, error=f"{refused}: {exc}")
    messages.success(request, message)
    return redirect("species", slug=slug)


@login_required
@require_POST
def species_add_view(request: HttpRequest, slug: str) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        return f"Species {species_add(project=project, name=data['name']).name!r} added."

    return _species_page_change(
        request,
        slug,
        form=SpeciesNameForm(request.POST),
        refused="Species not added",
        change=change,
    )


@login_required
@require_POST
def species_rename_view(request: HttpRequest, slug: str, species_id: int) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        renamed = species_rename(project=project, species_id=species_id, name=data["name"])
        return f"Species renamed to {renamed.name!r}; its labels follow."

    return _species_page_change(
        request,
        slug,
        form=SpeciesNameForm(request.POST),
        refused="Species not renamed",
        change=change,
    )


@login_required
@require_POST
def species_merge_view(request: HttpRequest, slug: str) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        report = species_merge(project=project, source_id=data["source"], target_id=data["target"])
        return (
            f"{report.source!r} merged into {report.target.name!r}: {report.labels} labels moved"
            + ("; the classifier is being retrained." if report.labels else ".")
        )

    return _species_page_change(
        request,
        slug,
        form=SpeciesMergeForm(request.POST),
        refused="Species not merged",
        change=change,
    )


@login_required
@require_POST
def species_taxonomy_view(request: HttpRequest, slug: str, species_id: int) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        # The form's fields are the service's arguments, the parent's id by another name.
        changed = species_taxonomy_set(
            project=project, species_id=species_id, parent_id=data.pop("parent"), **data
        )
        return f"Taxonomy of {changed.name!r} saved."

    return _species_page_change(
        request,
        slug,
        form=SpeciesTaxonomyForm(request.POST),
        refused="Taxonomy not changed",
        change=change,
    )


@login_required
@require_POST
def species_import_view(request: HttpRequest, slug: str) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        # One byte over the limit is enough to refuse it; the rest is never read.
        text = species_csv_decode(data=data["file"].read(SPECIES_CSV_MAX_BYTES + 1))
        report = species_import(project=project, text=text)
        return (
            f"Species CSV imported: {len(report.created)} created, {len(report.updated)} updated."
        )

    return _species_page_change(
        request,
        slug,
        form=SpeciesCsvForm(request.POST, request.FILES),
        refused="Species CSV not imported",
        change=change,
    )


# Attributes live on the species page: both are the vocabulary volunteers label with.


@login_required
@require_POST
def attribute_add_view(request: HttpRequest, slug: str) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        added = attribute_add(project=project, **data)
        return f"Attribute {added.name!r} added (key {added.key})."

    return _species_page_change(
        request,
        slug,
        form=AttributeForm(request.POST),
        refused="Attribute not added",
        change=change,
    )


@login_required
@require_POST
def attribute_update_view(request: HttpRequest, slug: str, attribute_id: int) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        changed = attribute_update(project=project, attribute_id=attribute_id, **data)
        return f"Attribute saved: {changed.name!r} (key {changed.key})."

    return _species_page_change(
        request,
        slug,
        form=AttributeForm(request.POST),
        refused="Attribute not changed",
        change=change,
    )


@login_required
@require_POST
def attribute_remove_view(request: HttpRequest, slug: str, attribute_id: int) -> HttpResponse:
    def change(project: Project, data: dict[str, Any]) -> str:
        return (
            f"Attribute {attribute_remove(project=project, attribute_id=attribute_id)!r} removed."
        )

    return _species_page_change(
        request, slug, form=None, refused="Attribute not removed", change=change
    )
