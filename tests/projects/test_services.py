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


def test_project_create_slug_collision_gets_a_suffix_also_when_cut_to_the_limit(
    admin_user: User,
) -> None:
    long = "a" * 250  # the slug is cut to 200, then cut again to make room for "-2"
    first = project_create(name="Alpha " + long[:150], created_by=admin_user)
    second = project_create(name="alpha " + long[:150], created_by=admin_user)
    assert (first.slug, second.slug) == ("alpha-" + "a" * 150, "alpha-" + "a" * 150 + "-2")
    cut = [project_create(name=f"{'b' * 199}{c}", created_by=None) for c in "xyz"]
    assert [p.slug for p in cut] == ["b" * 199 + "x", "b" * 199 + "y", "b" * 199 + "z"]
    same = [
        project_create(name=n, created_by=None) for n in ("c" * 200, "C" * 200, "c" * 199 + "C")
    ]
    assert [len(p.slug) for p in same] == [200, 200, 200]
    assert same[1].slug == "c" * 198 + "-2" and same[2].slug == "c" * 198 + "-3"


def test_project_create_retries_when_another_creation_takes_the_slug_first(
    admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look-up and the insert are not one step: a creation between them takes the slug,
    the unique constraint refuses the insert, and the next free slug is taken instead."""
    from projects import services

    real = services.project_slug_free
    stale = iter(["otters"])  # what the look-up saw before the other project was saved

    def racing(*, name: str) -> str:
        return next(stale, None) or real(name=name)

    project_create(name="Otters", created_by=admin_user)  # the other creation
    monkeypatch.setattr(services, "project_slug_free", racing)
    project = project_create(name="OTTERS", created_by=admin_user)
    assert project.slug == "otters-2"
    assert Project.objects.count() == 2


def test_project_create_refuses_a_taken_name_without_a_trace(admin_user: User) -> None:
    from projects.models import Attribute
    from projects.services import ProjectError

    project_create(name="Serengeti", created_by=admin_user)
    counts = (Project.objects.count(), Membership.objects.count(), Attribute.objects.count())
    with pytest.raises(ProjectError, match="there is a project called 'Serengeti' already"):
        project_create(name=" Serengeti ", created_by=admin_user)
    after = (Project.objects.count(), Membership.objects.count(), Attribute.objects.count())
    assert after == counts


@pytest.mark.django_db(transaction=True)
def test_two_creations_at_once_on_postgresql_get_two_slugs(
    admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced race: both creations look the slug up before either inserts (a barrier holds
    them there); the database's unique constraint refuses the second insert, which retries."""
    import threading

    from django.db import connection

    from projects import services

    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises them)")
    real = services.project_slug_free
    barrier = threading.Barrier(2, timeout=30)
    waited: set[int] = set()

    def held(*, name: str) -> str:
        slug = real(name=name)
        if threading.get_ident() not in waited:  # only the first look-up of each thread
            waited.add(threading.get_ident())
            barrier.wait()
        return slug

    monkeypatch.setattr(services, "project_slug_free", held)
    errors: list[BaseException] = []

    def create(name: str) -> None:
        try:
            project_create(name=name, created_by=None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in ("Otters", "otters!")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(Project.objects.values_list("slug", flat=True)) == ["otters", "otters-2"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fox\x00", r"control characters \(\\x00\)"),
        ("red\tfox", r"control characters \(\\t\)"),
        ("x" * 201, "at most 200 characters"),
        ("   ", "a species needs a name"),
    ],
)
def test_species_names_with_control_characters_or_too_long_are_refused(
    project: Project, name: str, message: str
) -> None:
    from projects.services import SpeciesError, species_add

    with pytest.raises(SpeciesError, match=message):
        species_add(project=project, name=name)
    with pytest.raises(SpeciesError, match=message):
        species_ensure(project=project, names=["fine", name])
    assert not project.species.exists()


def test_project_create_takes_the_detector_and_thresholds(admin_user: User) -> None:
    project = project_create(
        name="Wetland",
        created_by=admin_user,
        detector="megadetector",
        detection_threshold=0.5,
        min_box_pixels=20,
    )
    assert (project.detector, project.detection_threshold, project.min_box_pixels) == (
        "megadetector",
        0.5,
        20,
    )
    assert project_create(name="Plain", created_by=admin_user).detector == "offline"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"detector": "yolo"}, "unknown detector 'yolo'"),
        ({"detection_threshold": 1.01}, "detection threshold lies in 0..1"),
        ({"detection_threshold": -0.1}, "detection threshold lies in 0..1"),
        ({"min_box_pixels": -1}, "minimum box size cannot be negative"),
    ],
)
def test_project_create_refuses_bad_detector_options(
    admin_user: User, options: dict[str, object], reason: str
) -> None:
    from projects.services import ProjectError

    with pytest.raises(ProjectError, match=reason):
        project_create(name="Bad", created_by=admin_user, **options)  # type: ignore[arg-type]
    assert not Project.objects.exists()


def test_project_creator_set_grants_and_takes_back(outsider: User) -> None:
    from projects.services import project_creator_set

    project_creator_set(user=outsider, allowed=True)
    assert User.objects.get(pk=outsider.pk).has_perm("projects.add_project")
    project_creator_set(user=outsider, allowed=False)
    assert not User.objects.get(pk=outsider.pk).has_perm("projects.add_project")
