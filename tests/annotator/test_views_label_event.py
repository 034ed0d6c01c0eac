"""The event label page and the round form's unit: refusals change nothing."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from activelearn.models import Label, Round, RoundUnit
from activelearn.services import event_claim_next, round_start
from projects.models import Project

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shown(html: str) -> list[int]:
    return [int(v) for v in re.findall(r'name="crop_ids" value="(\d+)"', html)]


def test_an_event_answer_is_refused_unless_the_voter_holds_every_crop(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    open_round = round_start(project=project, user=admin_user, size=2, unit="event")
    theirs = [c.pk for c in event_claim_next(round_=open_round, user=admin_user)]
    fox = project.species.get(name="red fox")
    url = reverse("label_event", args=[project.slug])
    client = _client(volunteer)
    response = client.post(url, {"crop_ids": theirs, "choice": f"species:{fox.pk}"})
    assert response.status_code == 400
    assert "not yours to label" in response.content.decode()
    # Held crops of the volunteer's own event plus one of another's: refused whole.
    mine = _shown(client.get(url).content.decode())
    assert mine and not set(mine) & set(theirs)
    response = client.post(url, {"crop_ids": [*mine, theirs[0]], "choice": f"species:{fox.pk}"})
    assert response.status_code == 400
    for bad in ({"crop_ids": mine, "choice": "species:x"}, {"crop_ids": ["a"], "choice": "n"}):
        assert client.post(url, bad).status_code == 400
    assert not Label.objects.exists()
    # The page's own answer is taken.
    assert client.post(url, {"crop_ids": mine, "choice": "unknown"}).status_code == 302
    assert Label.objects.filter(user=volunteer, origin="event").count() == len(mine)


def test_the_event_page_without_an_event_round_says_so(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    client = _client(volunteer)
    url = reverse("label_event", args=[ingested_project.slug])
    assert "No event round is open" in client.get(url).content.decode()
    assert client.post(url, {"crop_ids": [1], "choice": "unknown"}).status_code == 400
    # The crop page is not redirected in a crop round.
    assert client.get(reverse("label", args=[ingested_project.slug])).status_code == 200


def test_outsiders_get_no_event_page(ingested_project: Project, outsider: User) -> None:
    url = reverse("label_event", args=[ingested_project.slug])
    assert _client(outsider).get(url).status_code == 404


def test_the_round_form_and_the_api_start_event_rounds(
    ingested_project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    client.post(
        reverse("round_start", args=[ingested_project.slug]),
        {"strategy": "auto", "size": 1, "unit": "event"},
    )
    first = Round.objects.get()
    assert (first.unit, first.strategy) == (RoundUnit.EVENT, "k_center")
    assert first.items.values("crop__image__seq_id").distinct().count() == 1
    first.status = Round.Status.CLOSED
    first.save()
    token_client = _client(admin_user)
    response = token_client.post(
        f"/api/v1/projects/{ingested_project.slug}/rounds",
        {"size": 1, "unit": "event"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["unit"] == "event"
    bad = token_client.post(
        f"/api/v1/projects/{ingested_project.slug}/rounds",
        {"size": 1, "unit": "frame"},
        content_type="application/json",
    )
    assert bad.status_code in (400, 422)
