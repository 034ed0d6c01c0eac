"""Bad numbers and oversized requests on the API: a 4xx in the API's ``{"detail": ...}`` shape.

The request-size limits are Django's (DATA_UPLOAD_MAX_MEMORY_SIZE,
DATA_UPLOAD_MAX_NUMBER_FIELDS); they are attacked over HTTP on the live server, as a client
would, for the API (JSON 413) and for the web pages (Django's 400 page).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client

from activelearn.models import Label, Round
from annotator.api.api import NEXT_SKIP_MAX
from annotator.api.services import api_token_create
from projects.models import Project

API = "/api/v1"
# Small limits keep the oversized requests small; the handling is the same as at the defaults.
MAX_BODY = 20_000
MAX_FIELDS = 100


def _token(user: User) -> str:
    return api_token_create(user=user, name="bounds")[1]


@pytest.fixture
def small_limits(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = MAX_FIELDS


def _assert_detail(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail


@pytest.mark.django_db(transaction=True)
def test_an_oversized_api_body_is_413_json_and_stores_nothing(
    live_server: Any, project: Project, admin_user: User, small_limits: None
) -> None:
    body = {"crop_id": 1, "kind": "unknown", "padding": "x" * MAX_BODY}
    response = requests.post(
        f"{live_server.url}{API}/projects/{project.slug}/labels",
        data=json.dumps(body),
        headers={
            "Authorization": f"Bearer {_token(admin_user)}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    _assert_detail(response, 413, f"at most {MAX_BODY} bytes")
    assert not Label.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_too_many_api_query_parameters_is_413_json(
    live_server: Any, project: Project, admin_user: User, small_limits: None
) -> None:
    query = "&".join(f"skip={i}" for i in range(1, MAX_FIELDS + 2))
    response = requests.get(
        f"{live_server.url}{API}/projects/{project.slug}/next?{query}",
        headers={"Authorization": f"Bearer {_token(admin_user)}"},
        timeout=30,
    )
    _assert_detail(response, 413, f"at most {MAX_FIELDS} parameters")


@pytest.mark.django_db(transaction=True)
def test_oversized_web_requests_get_a_400_page(live_server: Any, small_limits: None) -> None:
    # Anyone can post to the login page (with the CSRF cookie it hands out): the limits hold
    # before any login.
    url = f"{live_server.url}/accounts/login/"
    session = requests.Session()
    session.get(url, timeout=30)
    token = {"csrfmiddlewaretoken": session.cookies["csrftoken"]}
    too_big = session.post(url, data={**token, "username": "x" * MAX_BODY}, timeout=30)
    fields = [*token.items(), *((f"f{i}", "1") for i in range(MAX_FIELDS))]
    too_many = session.post(url, data=fields, timeout=30)
    for response in (too_big, too_many):
        assert response.status_code == 400
        assert "Traceback" not in response.text and "Bad Request" in response.text


@pytest.mark.django_db
def test_more_skips_than_allowed_are_422(project: Project, admin_user: User) -> None:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {_token(admin_user)}")
    url = f"{API}/projects/{project.slug}/next"
    allowed = client.get(url, {"skip": list(range(1, NEXT_SKIP_MAX + 1))})
    assert allowed.status_code == 200
    refused = client.get(url, {"skip": list(range(1, NEXT_SKIP_MAX + 2))})
    assert refused.status_code == 422 and "skip" in refused.json()["detail"]


@pytest.mark.django_db
def test_bad_numbers_in_api_requests_are_422(project: Project, admin_user: User) -> None:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {_token(admin_user)}")
    base = f"{API}/projects/{project.slug}"
    gets = [
        f"{base}/crops/١٢/file",
        f"{base}/images/{2**63}/file",
        f"{base}/next?limit=١",
        f"{base}/next?skip={2**64}",
        f"{base}/crops?cursor=١٢",
        f"{base}/crops?limit={2**64}",
    ]
    for url in gets:
        response = client.get(url)
        assert response.status_code == 422, url
        assert isinstance(response.json()["detail"], str)
    posts: list[tuple[str, dict[str, Any]]] = [
        ("rounds", {"strategy": "species", "target_species_id": 2**64}),
        ("rounds", {"size": 2**64}),
        ("labels", {"crop_id": "١٢", "kind": "unknown"}),
        ("labels", {"crop_id": 1, "kind": "species", "species_id": 1, "attributes": [2**64]}),
        ("labels", {"crop_id": 1, "kind": "species", "species_id": 1, "attributes": [1] * 51}),
    ]
    for path, body in posts:
        response = client.post(f"{base}/{path}", json.dumps(body), content_type="application/json")
        assert response.status_code == 422, (path, body, response.content)
        assert isinstance(response.json()["detail"], str)
    assert not Round.objects.exists() and not Label.objects.exists()
