"""The demo set-up is complete and can run any number of times."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from activelearn.models import Round
from annotator.demo import DEMO_PROJECT
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from projects.models import Membership, Project

pytestmark = pytest.mark.django_db


def test_demo_setup_twice(
    settings: object,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    monkeypatch.setenv("TRAPWISE_ADMIN_PASSWORD", "demo-admin-pw-1")
    call_command("demo_setup")
    first = capsys.readouterr().out
    assert "admin" in first and "Round 1 opened" in first
    # The login-throttling backend (django-axes) needs the request, as the login view gives it.
    request = RequestFactory().post("/accounts/login/")
    assert authenticate(request, username="admin", password="demo-admin-pw-1") is not None
    project = Project.objects.get(name=DEMO_PROJECT)
    assert project.images.count() == 69 and Crop.objects.count() == 68
    assert Membership.objects.filter(project=project).count() == 3
    first_round = Round.objects.get()
    assert first_round.items.count() == 68
    # The strategy printed is the one stored (the rule's choice), with the rule's reason.
    assert (
        f"Round 1 opened, strategy {first_round.get_strategy_display()} "
        f"({first_round.strategy}): {first_round.strategy_reason}." in first
    )
    assert EmbeddingVersion.objects.get().backbone == "efficientnet_lite0"

    call_command("demo_setup")
    second = capsys.readouterr().out
    assert "passwords are in" in second and "opened" not in second
    assert (
        Project.objects.count(),
        Crop.objects.count(),
        Round.objects.count(),
        EmbeddingVersion.objects.count(),
    ) == (1, 68, 1, 1)


def test_demo_project_has_a_new_projects_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo asks for nothing but its seed: it gets the defaults a new project gets."""
    from annotator import demo
    from projects.services import project_create

    monkeypatch.setattr(demo, "folder_ingest", lambda **kwargs: None)
    monkeypatch.setattr(demo, "round_start", lambda **kwargs: Round(number=1))
    passwords = dict.fromkeys(demo.DEMO_USERS, "pw-demo-123")
    made = demo.demo_ensure(passwords=passwords).project
    plain = project_create(name="Plain", created_by=None)
    skip = {"id", "name", "slug", "seed", "created_by_id", "created_at"}
    fields = [f.attname for f in Project._meta.concrete_fields if f.attname not in skip]
    assert made.backbone == "efficientnet_lite0"
    assert {f: getattr(made, f) for f in fields} == {f: getattr(plain, f) for f in fields}


def test_demo_setup_prints_the_strategy_the_round_has(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: object
) -> None:
    """Whatever the rule chose is printed; nothing names a strategy the round does not have."""
    from annotator.demo import DemoReport
    from annotator.management.commands import demo_setup

    settings.VAR_DIR = "/nonexistent"  # type: ignore[attr-defined]
    opened = Round(number=1, strategy="random", strategy_reason="no labels yet")
    project = Project(name=DEMO_PROJECT)
    monkeypatch.setattr(
        demo_setup, "demo_ensure", lambda **kwargs: DemoReport(project=project, first_round=opened)
    )
    call_command("demo_setup")
    out = capsys.readouterr().out
    assert "Round 1 opened, strategy Random (random): no labels yet." in out
    assert "k-Center" not in out
