"""The demo set-up is complete, can run any number of times, and shows the loop."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import RequestFactory

from activelearn.models import Prediction, Round
from activelearn.selectors_audit import audit_estimate_get
from activelearn.services import classifier_retrain, crop_claim_next, label_submit, round_start
from annotator.demo import DEMO_PROJECT, SAMPLE_DIR
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
    # The sample: 209 images, 203 boxes; the first round takes the project's round size.
    assert project.images.count() == 209 and Crop.objects.count() == 203
    assert Membership.objects.filter(project=project).count() == 3
    first_round = Round.objects.get()
    assert first_round.items.count() == project.round_size == 100
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
    ) == (1, 203, 1, 1)


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


def _truth_by_file() -> dict[str, str]:
    """COCO species name of every image file of the sample (labels are per sequence)."""
    coco = json.loads((SAMPLE_DIR / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    return {files[a["image_id"]]: names[a["category_id"]] for a in coco["annotations"]}


@pytest.mark.integration
def test_demo_round_one_by_truth_gives_real_accuracy_and_a_second_round(
    settings: object, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop a demo user walks: label round 1 (here by the truth, as a volunteer claiming
    crop after crop), retrain, open round 2. Every species has two capture events, so the
    cross-validation (folds grouped by event) reads a real accuracy, the suggestions on the
    crops left are mostly right, round 2 has crops with audit crops among them, and their
    labels give an audited accuracy."""
    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    for name in ("ADMIN", "VOLUNTEER", "ECOLOGIST"):
        monkeypatch.setenv(f"TRAPWISE_{name}_PASSWORD", "demo-pw-1234")
    call_command("demo_setup")
    project = Project.objects.get(name=DEMO_PROJECT)
    volunteer, admin = (User.objects.get(username=n) for n in ("volunteer", "admin"))
    truth = _truth_by_file()
    species = {s.name: s.pk for s in project.species.all()}

    def label(crops: list[Crop]) -> None:
        for crop in crops:
            label_submit(
                project=project,
                crop_id=crop.pk,
                user=volunteer,
                kind="species",
                species_id=species[truth[crop.image.file_name]],
            )

    first = Round.objects.get(project=project)
    while crops := crop_claim_next(round_=first, user=volunteer, limit=25):
        label(crops)
    first.refresh_from_db()
    assert first.status == Round.Status.CLOSED

    classifier = classifier_retrain(project_id=project.pk)
    assert classifier is not None and classifier.n_labels == 100
    assert classifier.cv_n_splits >= 2
    assert classifier.cv_accuracy is not None and 0 < classifier.cv_accuracy <= 1
    labelled = set(first.items.values_list("crop_id", flat=True))
    rest = (
        Prediction.objects.filter(classifier=classifier)
        .exclude(crop_id__in=labelled)
        .select_related("species", "crop__image")
    )
    right = [p.species.name == truth[p.crop.image.file_name] for p in rest]
    assert len(right) == 103 and sum(right) >= 0.8 * len(right)  # measured: 102 of 103

    second = round_start(project=project, user=admin, size=project.round_size)
    assert second.number == 2 and second.items.count() == 100
    audit = [i.crop_id for i in second.items.filter(is_audit=True)]
    assert len(audit) == 10
    # Serving stores the audit crops' machine labels; a volunteer holds 25 crops at a time.
    while offered := crop_claim_next(round_=second, user=volunteer, limit=25):
        label(offered)
    estimate = audit_estimate_get(project=project)
    assert estimate is not None and estimate.overall.n == 10
    assert estimate.overall.accuracy is not None and 0 < estimate.overall.accuracy <= 1
