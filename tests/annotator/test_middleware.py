"""A database that is down answers 503 "try again" (HTML, or JSON under /api/), not a 500."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import InterfaceError, OperationalError
from django.test import Client

from annotator.api import api as api_module
from annotator.middleware import DATABASE_UNAVAILABLE
from annotator.views import project as project_views

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _database_down(*args: object, **kwargs: object) -> None:
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


def test_a_page_answers_503_with_a_message(
    volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(project_views, "project_list_for_user", _database_down)
    response = _client(volunteer).get("/")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html")
    assert DATABASE_UNAVAILABLE in response.text and "Traceback" not in response.text


def test_the_api_answers_503_json(volunteer: User, monkeypatch: pytest.MonkeyPatch) -> None:
    def closed(*args: object, **kwargs: object) -> None:
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(api_module, "project_list_for_user", closed)
    response = _client(volunteer).get("/api/v1/projects")
    assert response.status_code == 503 and response.json() == {"detail": DATABASE_UNAVAILABLE}


def test_other_errors_are_not_disguised(volunteer: User, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(project_views, "project_list_for_user", bug)
    assert _client(volunteer).get("/").status_code == 500
