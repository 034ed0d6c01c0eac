"""The projects app's commands: create_project, allow_project_creation."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from projects.models import Project

pytestmark = pytest.mark.django_db


def test_create_project_gives_a_colliding_name_the_next_free_slug(
    admin_user: User, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("Fox traps", "fox-traps", "Fox Traps!"):  # three names, one slugify result
        call_command("create_project", name, "--admin", admin_user.username)
    assert list(Project.objects.order_by("id").values_list("slug", flat=True)) == [
        "fox-traps",
        "fox-traps-2",
        "fox-traps-3",
    ]
    assert "(slug fox-traps-3)" in capsys.readouterr().out


def test_create_project_non_latin_names_get_distinct_usable_slugs(admin_user: User) -> None:
    from django.urls import reverse

    for name in ("Лисы", "狐狸", "ثعلب"):
        call_command("create_project", name, "--admin", admin_user.username)
    slugs = list(Project.objects.order_by("id").values_list("slug", flat=True))
    assert slugs == ["project", "project-2", "project-3"]
    for slug in slugs:  # every one works in the URLs (ASCII <slug:slug>)
        assert reverse("project_detail", args=[slug]) == f"/p/{slug}/"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "a project needs a name"),
        (["x" * 201], "a project name has at most 200 characters, this one 201"),
        (["Bad\x00name"], r"a project name cannot contain control characters \(\\x00\)"),
        (["Tab\tname"], r"a project name cannot contain control characters \(\\t\)"),
        (["Dup"], "there is a project called 'Dup' already"),
        (["Seeded", "--seed", "-1"], "the seed must be between 0 and"),
        (["Seeded", "--seed", str(2**31)], "the seed must be between 0 and"),
    ],
)
def test_create_project_bad_input_is_a_command_error_and_changes_nothing(
    admin_user: User, args: list[str], message: str
) -> None:
    call_command("create_project", "Dup", "--admin", admin_user.username)
    before = list(Project.objects.values_list("pk", flat=True))
    with pytest.raises(CommandError, match=f"project not created: {message}"):
        call_command("create_project", *args, "--admin", admin_user.username)
    assert list(Project.objects.values_list("pk", flat=True)) == before


def test_allow_project_creation_grants_and_revokes_the_site_permission(outsider: User) -> None:
    out = io.StringIO()
    call_command("allow_project_creation", outsider.username, stdout=out)
    assert "oscar may now create projects" in out.getvalue()
    assert User.objects.get(pk=outsider.pk).has_perm("projects.add_project")
    call_command("allow_project_creation", outsider.username, "--revoke", stdout=out)
    assert not User.objects.get(pk=outsider.pk).has_perm("projects.add_project")
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("allow_project_creation", "nobody")


def test_import_species_creates_and_reports(
    project: Project, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from projects.models import Species

    path = tmp_path / "species.csv"
    path.write_text(
        "scientific_name,common_name,rank,parent\nRodentia,rodent,order,\n"
        "Mus musculus,house mouse;mouse,species,Rodentia\n",
        encoding="utf-8",
    )
    call_command("import_species", project.slug, str(path))
    assert "2 species created, 0 updated in project test-traps" in capsys.readouterr().out
    mouse = Species.objects.get(project=project, name="house mouse")
    assert mouse.parent is not None and mouse.parent.name == "rodent"


def test_import_species_refuses_a_bad_file_and_changes_nothing(
    project: Project, tmp_path: Any
) -> None:
    from projects.models import Species

    path = tmp_path / "species.csv"
    path.write_text(
        "scientific_name,common_name,rank,parent\nRodentia,rodent,order,\nMus,mouse,tribe,\n",
        encoding="utf-8",
    )
    with pytest.raises(CommandError, match="nothing imported: line 3: unknown rank 'tribe'"):
        call_command("import_species", project.slug, str(path))
    assert not Species.objects.filter(project=project).exists()
    with pytest.raises(CommandError, match="no file at"):
        call_command("import_species", project.slug, str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="no project 'nope'"):
        call_command("import_species", "nope", str(path))
