"""Every view, walked as each role: admin, volunteer, ecologist, outsider and anonymous."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from activelearn.models import Label, Round
from activelearn.services import round_start
from projects.models import Project
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_round(ingested_project: Project, admin_user: User) -> Round:
    return round_start(project=ingested_project, user=admin_user, strategy="k_center", size=5)


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _urls(project: Project) -> dict[str, str]:
    crop = project.crops.first()
    assert crop is not None
    slug = project.slug
    return {
        "detail": reverse("project_detail", args=[slug]),
        "rounds": reverse("project_rounds", args=[slug]),
        "model": reverse("project_model", args=[slug]),
        "data": reverse("project_data", args=[slug]),
        "settings": reverse("project_settings", args=[slug]),
        "exports": reverse("project_exports", args=[slug]),
        "label": reverse("label", args=[slug]),
        "export": reverse("export_csv", args=[slug]),
        "crop": reverse("crop_file", args=[slug, crop.pk]),
        "image": reverse("image_file", args=[slug, crop.image_id]),
    }


# Expected GET status per role; 404 (not 403) hides a project from people outside it.
EXPECTED_GET = {
    "admin": {
        "detail": 200,
        "rounds": 200,
        "model": 200,
        "data": 200,
        "settings": 200,
        "exports": 200,
        "label": 200,
        "export": 200,
        "crop": 200,
        "image": 200,
    },
    "volunteer": {
        "detail": 200,
        "rounds": 200,
        "model": 404,
        "data": 404,
        "settings": 404,
        "exports": 404,
        "label": 200,
        "export": 404,
        "crop": 200,
        "image": 200,
    },
    "ecologist": {
        "detail": 200,
        "rounds": 200,
        "model": 200,
        "data": 404,
        "settings": 404,
        "exports": 200,
        "label": 404,
        "export": 200,
        "crop": 200,
        "image": 200,
    },
    "outsider": {
        "detail": 404,
        "rounds": 404,
        "model": 404,
        "data": 404,
        "settings": 404,
        "exports": 404,
        "label": 404,
        "export": 404,
        "crop": 404,
        "image": 404,
    },
}


@pytest.mark.parametrize("role", list(EXPECTED_GET))
def test_get_every_view_as_role(
    role: str,
    open_round: Round,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    outsider: User,
) -> None:
    user = {
        "admin": admin_user,
        "volunteer": volunteer,
        "ecologist": ecologist,
        "outsider": outsider,
    }[role]
    client = _client(user)
    for name, url in _urls(ingested_project).items():
        response = client.get(url)
        assert response.status_code == EXPECTED_GET[role][name], (role, name, url)


def test_anonymous_is_sent_to_login(ingested_project: Project) -> None:
    client = Client()
    for url in [reverse("project_list"), *_urls(ingested_project).values()]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_project_list_shows_only_member_projects(
    ingested_project: Project, volunteer: User, outsider: User
) -> None:
    assert ingested_project.name in _client(volunteer).get(reverse("project_list")).text
    assert ingested_project.name not in _client(outsider).get(reverse("project_list")).text


@pytest.mark.parametrize("role,status", [("volunteer", 404), ("ecologist", 404), ("outsider", 404)])
def test_only_admin_starts_rounds(
    role: str,
    status: int,
    ingested_project: Project,
    volunteer: User,
    ecologist: User,
    outsider: User,
) -> None:
    user = {"volunteer": volunteer, "ecologist": ecologist, "outsider": outsider}[role]
    url = reverse("round_start", args=[ingested_project.slug])
    response = _client(user).post(url, {"strategy": "random", "size": 3})
    assert response.status_code == status
    assert not Round.objects.filter(project=ingested_project).exists()


def test_admin_starts_round_from_project_page(ingested_project: Project, admin_user: User) -> None:
    client = _client(admin_user)
    url = reverse("round_start", args=[ingested_project.slug])
    response = client.post(url, {"strategy": "random", "size": 4}, follow=True)
    assert "Round 1 started" in response.text
    created = Round.objects.get(project=ingested_project)
    assert (created.strategy, created.items.count()) == ("random", 4)
    assert "0 / 4" in response.text
    again = client.post(url, {"strategy": "k_center", "size": 4}, follow=True)
    assert "already open" in again.text
    assert Round.objects.filter(project=ingested_project).count() == 1


def test_automatic_strategy_applies_the_rule_and_says_why(
    ingested_project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    page = client.get(reverse("project_rounds", args=[ingested_project.slug]))
    assert 'value="auto" selected' in page.text  # the form's default: the rule
    assert "Automatic now picks <b>random</b>" in page.text  # no round yet: first-round setting
    # A small project's automatic fine-tune interval is the floor, 200 labels.
    data = client.get(reverse("project_data", args=[ingested_project.slug]))
    assert "Fine-tuned every 200 new labels (auto: scales with the crops)" in data.text
    url = reverse("round_start", args=[ingested_project.slug])
    client.post(url, {"strategy": "auto", "size": 2}, follow=True)
    created = Round.objects.get(project=ingested_project)
    assert created.strategy == ingested_project.first_round_strategy
    assert "first-round strategy" in created.strategy_reason


def test_bad_round_form_changes_nothing(ingested_project: Project, admin_user: User) -> None:
    url = reverse("round_start", args=[ingested_project.slug])
    response = _client(admin_user).post(url, {"strategy": "greedy", "size": 0}, follow=True)
    assert "Round not started" in response.text
    assert not Round.objects.exists()


def test_outsider_cannot_label(
    open_round: Round, ingested_project: Project, outsider: User
) -> None:
    crop = open_round.items.first().crop  # type: ignore[union-attr]
    response = _client(outsider).post(
        reverse("label", args=[ingested_project.slug]),
        {"crop_id": crop.pk, "choice": "unknown"},
    )
    assert response.status_code == 404
    assert not Label.objects.exists()


def test_volunteer_labels_and_skips(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    items = list(open_round.items.order_by("position"))
    page = client.get(url)
    assert f"Crop {items[0].crop_id}" in page.text
    species = ingested_project.species.get(name="red fox")
    client.post(url, {"crop_id": items[0].crop_id, "choice": f"species:{species.pk}"})
    client.post(url, {"crop_id": items[1].crop_id, "choice": "skip"})
    page = client.get(url)
    assert f"Crop {items[2].crop_id}" in page.text
    label = Label.objects.get()
    assert (label.crop_id, label.species, label.user, label.round) == (
        items[0].crop_id,
        species,
        volunteer,
        open_round,
    )


def test_skipped_crops_are_remembered_once_each_and_boundedly(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    from annotator.views.labelling import SKIPPED_MAX

    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    first = open_round.items.order_by("position")[0].crop_id
    for _ in range(3):
        client.post(url, {"crop_id": first, "choice": "skip"})
    key = f"skipped-{open_round.pk}"
    assert client.session[key] == [first]
    for crop_id in range(1, SKIPPED_MAX + 50):
        client.post(url, {"crop_id": crop_id, "choice": "skip"})
    skipped = client.session[key]
    assert len(skipped) == SKIPPED_MAX and skipped[-1] == SKIPPED_MAX + 49
    assert not Label.objects.exists()


def test_label_for_crop_of_other_project_is_refused(
    open_round: Round, ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from projects.services import membership_set, project_create

    other = project_create(name="Other", created_by=admin_user)
    membership_set(project=other, user=volunteer, role="volunteer")
    crop = open_round.items.first().crop  # type: ignore[union-attr]
    response = _client(volunteer).post(
        reverse("label", args=[other.slug]), {"crop_id": crop.pk, "choice": "unknown"}
    )
    assert response.status_code == 400
    assert "not part of project" in response.text
    assert not Label.objects.exists()


def test_label_with_unknown_species_is_refused(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    crop = open_round.items.first().crop  # type: ignore[union-attr]
    url = reverse("label", args=[ingested_project.slug])
    for choice in ("species:999999", "species:abc", "lion"):
        response = _client(volunteer).post(url, {"crop_id": crop.pk, "choice": choice})
        assert response.status_code == 400, choice
    assert not Label.objects.exists()


@pytest.mark.parametrize("role", ["volunteer", "ecologist", "outsider"])
def test_only_admin_runs_detection_or_changes_thresholds(
    role: str, ingested_project: Project, volunteer: User, ecologist: User, outsider: User
) -> None:
    user = {"volunteer": volunteer, "ecologist": ecologist, "outsider": outsider}[role]
    client = _client(user)
    slug = ingested_project.slug
    assert (
        client.post(reverse("detection_start", args=[slug]), {"detector": "offline"}).status_code
        == 404
    )
    response = client.post(
        reverse("thresholds_update", args=[slug]),
        {"detection_threshold": 0.9, "min_box_pixels": 8, "crop_padding": 0.1},
    )
    assert response.status_code == 404
    ingested_project.refresh_from_db()
    assert ingested_project.detection_threshold == 0.2


def test_admin_changes_thresholds_from_project_page(
    ingested_project: Project, admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client(admin_user)
    url = reverse("thresholds_update", args=[ingested_project.slug])
    bad = client.post(
        url, {"detection_threshold": 2, "min_box_pixels": 8, "crop_padding": 0.1}, follow=True
    )
    assert "Thresholds not changed" in bad.text
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            url,
            {"detection_threshold": 0.9, "min_box_pixels": 8, "crop_padding": 0.1},
            follow=True,
        )
    assert "Thresholds saved" in response.text and len(callbacks) == 1
    ingested_project.refresh_from_db()
    assert ingested_project.detection_threshold == 0.9
    assert 'name="crop_shape"' in response.text
    assert ingested_project.crop_shape == "box"  # not posted: kept
    bad_shape = client.post(
        url,
        {"detection_threshold": 0.9, "min_box_pixels": 8, "crop_padding": 0.1, "crop_shape": "x"},
        follow=True,
    )
    assert "Thresholds not changed" in bad_shape.text
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(
            url,
            {
                "detection_threshold": 0.9,
                "min_box_pixels": 8,
                "crop_padding": 0.25,
                "crop_shape": "square",
            },
        )
    assert len(callbacks) == 1  # the recut + re-embed job is queued
    ingested_project.refresh_from_db()
    assert (ingested_project.crop_shape, ingested_project.crop_padding) == ("square", 0.25)


def test_admin_queues_detection(
    project: Project, small_folder: Any, admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    from detector.imports import images_import
    from detector.models import DetectionJob

    images_import(project=project, folder=small_folder)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _client(admin_user).post(
            reverse("detection_start", args=[project.slug]), {"detector": "offline"}, follow=True
        )
    assert "Detection queued for 15 images" in response.text and len(callbacks) == 1
    assert DetectionJob.objects.get().detector == "offline"
    text = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())
    assert "Latest job: offline, queued : 0 / 15 images" in text


@pytest.mark.parametrize("role", ["volunteer", "ecologist", "outsider"])
def test_only_admin_starts_finetuning(
    role: str, ingested_project: Project, volunteer: User, ecologist: User, outsider: User
) -> None:
    from embeddings.models import EmbeddingVersion

    user = {"volunteer": volunteer, "ecologist": ecologist, "outsider": outsider}[role]
    url = reverse("embedding_finetune_start", args=[ingested_project.slug])
    assert _client(user).post(url).status_code == 404
    assert EmbeddingVersion.objects.count() == 1


def test_admin_finetune_button_explains_refusal(
    ingested_project: Project, admin_user: User
) -> None:
    url = reverse("embedding_finetune_start", args=[ingested_project.slug])
    response = _client(admin_user).post(url, follow=True)
    assert "Fine-tuning not started: fine-tuning needs labels of at least two species" in (
        response.text
    )
    assert "v1 (in use)" in response.text


def test_only_admin_changes_learning_settings(
    ingested_project: Project, volunteer: User, ecologist: User, outsider: User, admin_user: User
) -> None:
    url = reverse("learning_settings", args=[ingested_project.slug])
    data = {"first_round_strategy": "k_center", "target_accuracy": "90"}
    for user in (volunteer, ecologist, outsider):
        assert _client(user).post(url, data).status_code == 404
    ingested_project.refresh_from_db()
    assert ingested_project.target_accuracy == pytest.approx(0.966)
    response = _client(admin_user).post(url, data, follow=True)
    assert "Active-learning settings saved." in response.content.decode()
    ingested_project.refresh_from_db()
    assert ingested_project.target_accuracy == pytest.approx(0.90)
    assert ingested_project.first_round_strategy == "k_center"
    bad = _client(admin_user).post(url, {**data, "target_accuracy": "120"}, follow=True)
    assert "Settings not saved" in bad.content.decode()
    ingested_project.refresh_from_db()
    assert ingested_project.target_accuracy == pytest.approx(0.90)


def test_project_page_shows_classifier_and_learning_curve(
    ingested_project: Project, admin_user: User, volunteer: User, ecologist: User
) -> None:
    from activelearn.services import classifier_retrain

    slug = ingested_project.slug
    html = _client(admin_user).get(reverse("project_model", args=[slug])).text
    assert "No classifier yet" in html
    settings_page = _client(admin_user).get(reverse("project_settings", args=[slug])).text
    assert 'value="random" selected' in settings_page  # first round: the project's setting
    label_by_truth(ingested_project, volunteer, ingested_project.crops.select_related("image"))
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    text = _client(admin_user).get(reverse("project_model", args=[slug])).text
    assert 'id="cv-accuracy"' in text and "<svg" in text and 'id="learning-curve"' in text
    assert f"<td>{classifier.n_labels}</td>" in text
    # Ecologists read the model page too, learning curve included; volunteers do not.
    eco = _client(ecologist).get(reverse("project_model", args=[slug])).text
    assert 'id="cv-accuracy"' in eco and 'id="learning-curve"' in eco
    assert _client(volunteer).get(reverse("project_model", args=[slug])).status_code == 404


def _csv_rows(response: Any) -> list[dict[str, str]]:
    import csv
    import io

    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_export_marks_auto_accepted_and_event_predictions(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from activelearn.models import ClassifierVersion, EventPrediction
    from activelearn.services import classifier_retrain

    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops[:6])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    ClassifierVersion.objects.filter(pk=classifier.pk).update(threshold=0.0)
    response = _client(admin_user).get(reverse("export_csv", args=[ingested_project.slug]))
    rows = _csv_rows(response)
    labelled = {c.pk for c in crops[:6]}
    for row in rows:
        human = int(row["crop_id"]) in labelled
        assert row["auto_accepted"] == ("0" if human else "1")
        event = EventPrediction.objects.get(classifier=classifier, event=row["event_id"])
        assert row["event_machine_label"] == event.species.name
    ClassifierVersion.objects.filter(pk=classifier.pk).update(threshold=None)
    response = _client(admin_user).get(reverse("export_csv", args=[ingested_project.slug]))
    rows = _csv_rows(response)
    assert {row["auto_accepted"] for row in rows} == {"0"}


def test_admin_retrains_on_demand(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: Any,
) -> None:
    from activelearn import tasks
    from activelearn.services import labels_import

    queued: list[int] = []
    monkeypatch.setattr(tasks.classifier_retrain_task, "delay", queued.append)
    url = reverse("classifier_retrain_start", args=[ingested_project.slug])
    assert _client(volunteer).post(url).status_code == 404
    refused = _client(admin_user).post(url, follow=True)
    assert "nothing to train on yet" in refused.content.decode() and not queued
    crop = ingested_project.crops.first()
    assert crop is not None
    labels_import(
        project=ingested_project,
        crop_ids=[crop.pk],
        user=volunteer,
        kind="species",
        species_id=ingested_project.species.get(name="red fox").pk,
    )
    with django_capture_on_commit_callbacks(execute=True):
        done = _client(admin_user).post(url, follow=True)
    assert "Retraining queued" in done.content.decode()
    assert queued == [ingested_project.pk]
