"""Projects, members and species: the ground writes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from projects.models import Membership, Project, Role
from projects.services import membership_set, project_create, species_ensure

pytestmark = pytest.mark.django_db


def test_project_create_makes_creator_admin(admin_user: User) -> None:
    project = project_create(name="Serengeti Season 12", created_by=admin_user)
    assert project.slug == "serengeti-season-12"
    assert Membership.objects.get(project=project, user=admin_user).role == Role.ADMIN


def test_membership_set_changes_role_and_refuses_unknown(project: Project, volunteer: User) -> None:
    membership_set(project=project, user=volunteer, role=Role.ECOLOGIST)
    assert Membership.objects.get(project=project, user=volunteer).role == Role.ECOLOGIST
    with pytest.raises(ValueError, match="unknown role"):
        membership_set(project=project, user=volunteer, role="owner")


def test_species_ensure_is_case_insensitive(project: Project) -> None:
    species_ensure(project=project, names=["Agouti", "ocelot"])
    species_ensure(project=project, names=["agouti", "Paca"])
    assert [s.name for s in project.species.all()] == ["Agouti", "ocelot", "Paca"]
