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
from annotator.models import Project
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_round(ingested_project: Project, admin_user: User) -> Round:
    return round_start(project=ingested_project, user=admin_user, strategy="k_center", size=5)


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        assert client.login(username=user.username, password=PASSWORD)
    return client


def _urls(project: Project) -> dict[str, str]:
    crop = project.crops.first()
    assert crop is not None
    slug = project.slug
    return {
        "detail": reverse("project_detail", args=[slug]),
        "label": reverse("label", args=[slug]),
        "export": reverse("export_csv", args=[slug]),
        "crop": reverse("crop_file", args=[slug, crop.pk]),
        "image": reverse("image_file", args=[slug, crop.image_id]),
    }


# Expected GET status per role; 404 (not 403) hides a project from people outside it.
EXPECTED_GET = {
    "admin": {"detail": 200, "label": 200, "export": 200, "crop": 200, "image": 200},
    "volunteer": {"detail": 200, "label": 200, "export": 404, "crop": 200, "image": 200},
    "ecologist": {"detail": 200, "label": 404, "export": 200, "crop": 200, "image": 200},
    "outsider": {"detail": 404, "label": 404, "export": 404, "crop": 404, "image": 404},
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


def test_label_for_crop_of_other_project_is_refused(
    open_round: Round, ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from annotator.services import membership_set, project_create

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


def test_admin_queues_detection(
    project: Project, small_folder: Any, admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    from annotator.services import images_import
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
