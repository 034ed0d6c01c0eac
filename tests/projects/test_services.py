"""Projects, members and species: the ground writes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from projects.models import Membership, Project, Role
from projects.services import membership_set, project_create, species_ensure

pytestmark = pytest.mark.django_db


def test_project_create_makes_creator_admin(admin_user: User) -> None:
    project = project_create(name="Serengeti Season 12", created_by=admin_user)
    assert project.slug == "serengeti-season-12"
    assert Membership.objects.get(project=project, user=admin_user).role == Role.ADMIN


def _settings(project: Project) -> dict[str, object]:
    """Every setting of a project: its concrete fields but identity, owner and time."""
    skip = {"id", "name", "slug", "description", "seed", "created_by", "created_at"}
    return {
        f.attname: getattr(project, f.attname)
        for f in Project._meta.concrete_fields
        if f.attname not in skip and f.attname != "created_by_id"
    }


def test_project_created_with_no_options_gets_best_offline_config(admin_user: User) -> None:
    """No options: EfficientNet-Lite0 (no download), the box crop padded 0.1 (measured best
    on missouri-dev), and every other setting the model's default; the command agrees."""
    project = project_create(name="Defaults", created_by=admin_user)
    project.refresh_from_db()
    assert (project.backbone, project.backbone_weights) == ("efficientnet_lite0", "imagenet")
    assert (project.crop_shape, project.crop_padding) == ("box", 0.1)
    assert project.embedding_checkpoint == ""
    defaults = {
        f.attname: f.get_default()
        for f in Project._meta.concrete_fields
        if f.attname in _settings(project)
    }
    assert _settings(project) == defaults
    call_command("create_project", "From the command", "--admin", admin_user.username)
    assert _settings(Project.objects.get(slug="from-the-command")) == _settings(project)


def test_membership_set_changes_role_and_refuses_unknown(project: Project, volunteer: User) -> None:
    membership_set(project=project, user=volunteer, role=Role.ECOLOGIST)
    assert Membership.objects.get(project=project, user=volunteer).role == Role.ECOLOGIST
    with pytest.raises(ValueError, match="unknown role"):
        membership_set(project=project, user=volunteer, role="owner")


def test_species_ensure_is_case_insensitive(project: Project) -> None:
    species_ensure(project=project, names=["Agouti", "ocelot"])
    species_ensure(project=project, names=["agouti", "Paca"])
    assert [s.name for s in project.species.all()] == ["Agouti", "ocelot", "Paca"]
