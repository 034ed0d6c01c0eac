"""Audit crops are shown like any other crop but without machine suggestions: on the labelling
page, the grid and the API's next crops; the live prediction is stored at first offer."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from activelearn.models import AuditPrediction, CropClaim, Prediction, Round, RoundCrop
from activelearn.services import classifier_retrain, round_start
from annotator.api.services import api_token_create
from projects.models import Project
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained_round(ingested_project: Project, admin_user: User, volunteer: User) -> Round:
    """A classifier trained on six labelled crops, and an open round of the other five whose
    first crop (position 0) is the only audit crop."""
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, admin_user, crops[:6])
    assert classifier_retrain(project_id=ingested_project.pk) is not None
    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=5)
    round_.items.update(is_audit=False)
    round_.items.filter(position=0).update(is_audit=True)
    return round_


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shown_crop(html: str) -> int:
    return int(re.search(r'name="crop_id" value="(\d+)"', html).group(1))  # type: ignore[union-attr]


def test_label_page_of_an_audit_crop_carries_no_suggestion(
    trained_round: Round, ingested_project: Project, volunteer: User
) -> None:
    audit = RoundCrop.objects.get(round=trained_round, is_audit=True)
    assert Prediction.objects.filter(crop_id=audit.crop_id).exists()  # one to hide
    page = _client(volunteer).get(reverse("label", args=[ingested_project.slug]))
    assert _shown_crop(page.text) == audit.crop_id
    assert "Machine suggests" not in page.text
    assert 'class="confidence"' not in page.text
    assert all(s.source != "machine" for s in page.context["suggestions"])
    # Shown like a crop the machine has not seen: the project's frequent species.
    assert "Frequent in this project" in page.text
    # Its first offer stored the live classifier's machine label, once.
    stored = AuditPrediction.objects.get(round=trained_round, crop_id=audit.crop_id)
    prediction = Prediction.objects.get(crop_id=audit.crop_id, classifier=stored.classifier)
    assert stored.species_id == prediction.species_id
    assert stored.confidence == pytest.approx(prediction.confidence)
    assert stored.strategy == "random"
    _client(volunteer).get(reverse("label", args=[ingested_project.slug]))
    assert AuditPrediction.objects.count() == 1


def test_label_page_of_a_strategy_crop_still_suggests(
    trained_round: Round, ingested_project: Project, volunteer: User
) -> None:
    trained_round.items.update(is_audit=False)  # the control: the same crop, not audited
    page = _client(volunteer).get(reverse("label", args=[ingested_project.slug]))
    assert "Machine suggests" in page.text
    assert not AuditPrediction.objects.exists()


def test_grid_and_api_show_audit_crops_without_prediction(
    trained_round: Round, ingested_project: Project, volunteer: User
) -> None:
    audit = RoundCrop.objects.get(round=trained_round, is_audit=True).crop_id
    grid = _client(volunteer).get(reverse("label_grid", args=[ingested_project.slug]))
    groups = {item["crop"].pk: g["name"] for g in grid.context["groups"] for item in g["items"]}
    assert groups[audit] == "No prediction yet"
    assert any(name != "No prediction yet" for crop, name in groups.items() if crop != audit)
    _, key = api_token_create(user=volunteer, name="test")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    api.get("/api/v1/projects")  # the token's last use is recorded once, not per request
    AuditPrediction.objects.all().delete()  # the API's offer stores it again
    CropClaim.objects.all().delete()
    with CaptureQueriesContext(connection) as queries:
        served = api.get(f"/api/v1/projects/{ingested_project.slug}/next?limit=5").json()
    # An audit crop among them costs a fixed few queries more than test_api's bound of 16: the
    # pending audit crops, the live classifier, its predictions and one insert.
    assert len(queries) <= 16 + 4
    assert AuditPrediction.objects.filter(crop_id=audit).count() == 1
    cards = {c["crop_id"]: c["suggestions"] for c in served["crops"]}
    assert cards[audit] == []
    assert all(cards[c] for c in cards if c != audit)


def test_admin_sets_the_audit_share_in_percent(project: Project, admin_user: User) -> None:
    url = reverse("learning_settings", args=[project.slug])
    client = _client(admin_user)
    page = client.get(reverse("project_settings", args=[project.slug])).text
    assert 'name="audit_share" value="10.0"' in page
    base = {"first_round_strategy": "random", "target_accuracy": 95}
    client.post(url, {**base, "audit_share": 25})
    project.refresh_from_db()
    assert project.audit_share == pytest.approx(0.25)
    response = client.post(url, {**base, "audit_share": 60}, follow=True)
    assert "Settings not saved" in response.text
    project.refresh_from_db()
    assert project.audit_share == pytest.approx(0.25)
