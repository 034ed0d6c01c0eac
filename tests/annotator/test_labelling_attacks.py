"""Attacks on the labelling queue (issue 16), over HTTP against a live server, as a volunteer
with a token or a browser would make them: holding a whole round, voting on crops never
served, replaying another project's idempotency key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.utils import timezone

from activelearn.models import Consensus, CropClaim, Label, Round
from activelearn.services import labels_import, round_start
from annotator.api.services import api_token_create
from projects.models import Project, Role
from projects.services import membership_set, project_create
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 3
TIMEOUT = 30
NOT_YOURS = "is not yours to label now: ask for the next crop"


@dataclass
class World:
    base: str
    project: Project
    open_round: Round
    decided: int  # labelled and decided before the round
    closed: int  # the crop of a closed round
    inactive: int  # deactivated by the project's thresholds
    unoffered: int  # in the open round, served to no one
    second: User


@pytest.fixture
def world(
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    django_user_model: type[User],
    settings: Any,
) -> World:
    settings.TRAPWISE_CLAIMS_PER_USER = CAP
    project = ingested_project
    second = django_user_model.objects.create_user("val", password=PASSWORD)
    membership_set(project=project, user=second, role=Role.VOLUNTEER)
    crops = list(project.crops.order_by("id").values_list("id", flat=True))
    labels_import(project=project, crop_ids=crops[:1], user=admin_user, kind="unknown")
    closed_round = round_start(project=project, user=admin_user, strategy="random", size=1)
    (closed,) = closed_round.items.values_list("crop_id", flat=True)
    labels_import(project=project, crop_ids=[closed], user=admin_user, kind="unknown")
    closed_round.refresh_from_db()
    assert closed_round.status == Round.Status.CLOSED
    inactive = next(c for c in crops[1:] if c != closed)
    project.crops.filter(pk=inactive).update(active=False)
    open_round = round_start(project=project, user=admin_user, strategy="random", size=6)
    order = list(open_round.items.order_by("position").values_list("crop_id", flat=True))
    assert inactive not in order
    return World(
        base=live_server.url,
        project=project,
        open_round=open_round,
        decided=crops[0],
        closed=closed,
        inactive=inactive,
        unoffered=order[-1],
        second=second,
    )


def _api(user: User) -> requests.Session:
    _, key = api_token_create(user=user, name="attack")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    return http


def _browser(base: str, username: str) -> requests.Session:
    """A logged-in browser session (the login form, with its CSRF token)."""
    browser = requests.Session()
    browser.get(f"{base}/accounts/login/", timeout=TIMEOUT)
    response = browser.post(
        f"{base}/accounts/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200 and username in response.text
    return browser


def _form_post(browser: requests.Session, url: str, data: dict[str, Any]) -> requests.Response:
    return browser.post(
        url,
        data={**data, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": url},
        timeout=TIMEOUT,
    )


def _next(http: requests.Session, world: World, **params: Any) -> list[int]:
    response = http.get(
        f"{world.base}/api/v1/projects/{world.project.slug}/next", params=params, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    return [int(c["crop_id"]) for c in response.json()["crops"]]


def _live_claims(world: World, user: User) -> set[int]:
    return set(
        CropClaim.objects.filter(
            round=world.open_round, user=user, expires_at__gt=timezone.now()
        ).values_list("crop_id", flat=True)
    )


def _state() -> tuple[list[Any], list[Any]]:
    return list(Label.objects.order_by("id").values()), list(Consensus.objects.values())


def test_next_skipping_the_held_crops_never_holds_more_than_the_cap(
    world: World, volunteer: User
) -> None:
    attacker, other = _api(volunteer), _api(world.second)
    seen: list[int] = []
    for _ in range(3):  # the round's 6 crops, and once more
        served = _next(attacker, world, limit=50, skip=seen)
        assert len(served) <= CAP
        assert len(_live_claims(world, volunteer)) <= CAP
        seen += served
    assert len(set(seen)) == world.open_round.items.count()
    # The crops passed over went back to the queue: another volunteer is still served.
    assert len(_next(other, world, limit=CAP)) == CAP


def test_an_admin_opening_the_grid_holds_no_more_than_the_cap(
    world: World, admin_user: User
) -> None:
    admin = _browser(world.base, admin_user.username)
    page = admin.get(f"{world.base}/p/{world.project.slug}/label/grid/", timeout=TIMEOUT)
    assert page.status_code == 200
    assert len(_live_claims(world, admin_user)) == CAP
    assert len(_next(_api(world.second), world, limit=CAP)) == CAP


def _others(world: World, held_by_second: int) -> dict[str, int]:
    return {
        "decided": world.decided,
        "closed round": world.closed,
        "inactive": world.inactive,
        "never offered": world.unoffered,
        "held by another volunteer": held_by_second,
    }


def test_the_api_refuses_a_vote_on_a_crop_not_served(world: World, volunteer: User) -> None:
    attacker = _api(volunteer)
    (held_by_second,) = _next(_api(world.second), world)
    before = _state()
    url = f"{world.base}/api/v1/projects/{world.project.slug}/labels"
    for case, crop_id in _others(world, held_by_second).items():
        response = attacker.post(
            url,
            json={"crop_id": crop_id, "kind": "not_animal", "idempotency_key": uuid.uuid4().hex},
            timeout=TIMEOUT,
        )
        assert response.status_code == 400, case
        assert f"crop {crop_id} {NOT_YOURS}" in response.json()["detail"], case
    assert _state() == before
    # What the volunteer was served is theirs to label.
    (served,) = _next(attacker, world)
    response = attacker.post(url, json={"crop_id": served, "kind": "unknown"}, timeout=TIMEOUT)
    assert response.status_code == 201, response.text


def test_the_label_page_refuses_a_vote_on_a_crop_not_served(world: World, volunteer: User) -> None:
    attacker = _browser(world.base, volunteer.username)
    (held_by_second,) = _next(_api(world.second), world)
    url = f"{world.base}/p/{world.project.slug}/label/"
    assert attacker.get(url, timeout=TIMEOUT).status_code == 200  # serves the attacker a crop
    before = _state()
    for case, crop_id in _others(world, held_by_second).items():
        response = _form_post(attacker, url, {"crop_id": crop_id, "choice": "not_animal"})
        assert response.status_code == 400, case
        assert f"crop {crop_id} {NOT_YOURS}" in response.text, case
    assert _state() == before


def test_a_grid_post_of_crops_not_shown_is_refused(world: World, volunteer: User) -> None:
    attacker = _browser(world.base, volunteer.username)
    every_crop = list(world.project.crops.order_by("id").values_list("id", flat=True))
    before = _state()
    response = _form_post(
        attacker,
        f"{world.base}/p/{world.project.slug}/label/grid/",
        {"crop_ids": every_crop, "choice": "not_animal"},
    )
    assert response.status_code == 200  # back on the grid page, with the reason
    assert "Nothing labelled: crop " in response.text and NOT_YOURS in response.text
    assert _state() == before


def test_an_idempotency_key_is_not_replayed_in_another_project(
    world: World, volunteer: User, admin_user: User
) -> None:
    other = project_create(name="Other traps", created_by=admin_user, seed=1)
    membership_set(project=other, user=volunteer, role=Role.VOLUNTEER)
    http = _api(volunteer)
    (crop_id,) = _next(http, world)
    body: dict[str, Any] = {"crop_id": crop_id, "kind": "unknown", "idempotency_key": "once"}
    first = http.post(
        f"{world.base}/api/v1/projects/{world.project.slug}/labels", json=body, timeout=TIMEOUT
    )
    assert first.status_code == 201, first.text
    again = http.post(f"{world.base}/api/v1/projects/{other.slug}/labels", json=body, timeout=30)
    assert again.status_code == 400, again.text
    assert f"crop {crop_id} is not part of project 'Other traps'" in again.json()["detail"]
    assert Label.objects.filter(user=volunteer).count() == 1
