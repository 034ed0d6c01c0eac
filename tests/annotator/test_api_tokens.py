"""API tokens: creation and hashing, revocation, authentication, the page and the command."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotator.api.selectors import api_token_for_key
from annotator.api.services import (
    ApiTokenError,
    api_token_create,
    api_token_revoke,
    api_token_used,
)
from annotator.models import ApiToken
from projects.models import Project
from tests.conftest import hold

pytestmark = pytest.mark.django_db

PROJECTS = "/api/v1/projects"


def _bearer(key: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def test_create_stores_only_the_hash(volunteer: User) -> None:
    token, key = api_token_create(user=volunteer, name="  field laptop  ")
    row = ApiToken.objects.get(pk=token.pk)
    assert key.startswith("tw_") and len(key) > 40
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.prefix == key[:10] and row.name == "field laptop" and row.last_used_at is None
    # The raw key is in no column of the row.
    stored = [str(v) for v in ApiToken.objects.filter(pk=token.pk).values().get().values()]
    assert not any(key in value for value in stored)
    _, other = api_token_create(user=volunteer, name="second")
    assert other != key and ApiToken.objects.filter(user=volunteer).count() == 2


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_bad_name_creates_nothing(volunteer: User, name: str) -> None:
    with pytest.raises(ApiTokenError):
        api_token_create(user=volunteer, name=name)
    assert not ApiToken.objects.exists()


def test_revoke_only_own_token(volunteer: User, outsider: User) -> None:
    token, key = api_token_create(user=volunteer, name="script")
    with pytest.raises(ApiTokenError, match="no token"):
        api_token_revoke(user=outsider, token_id=token.pk)
    assert api_token_for_key(key=key) is not None
    api_token_revoke(user=volunteer, token_id=token.pk)
    assert api_token_for_key(key=key) is None
    assert not ApiToken.objects.exists()
    with pytest.raises(ApiTokenError):
        api_token_revoke(user=volunteer, token_id=token.pk)


def test_last_used_is_written_at_most_once_a_minute(volunteer: User) -> None:
    token, _ = api_token_create(user=volunteer, name="script")
    start = timezone.now()
    api_token_used(token=token, at=start)
    api_token_used(token=token, at=start + timedelta(seconds=59))
    token.refresh_from_db()
    assert token.last_used_at == start
    api_token_used(token=token, at=start + timedelta(seconds=61))
    token.refresh_from_db()
    assert token.last_used_at == start + timedelta(seconds=61)


def test_valid_token_authenticates_and_records_use(volunteer: User, project: Project) -> None:
    token, key = api_token_create(user=volunteer, name="script")
    response = _bearer(key).get(PROJECTS)
    assert response.status_code == 200
    assert response.json() == [{"slug": project.slug, "name": project.name, "role": "volunteer"}]
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer nonsense", "Token {key}", "Basic {key}", "Bearer {key}x"],
)
def test_bad_or_missing_token_is_401(volunteer: User, project: Project, header: str | None) -> None:
    _, key = api_token_create(user=volunteer, name="script")
    client = Client() if header is None else Client(HTTP_AUTHORIZATION=header.format(key=key))
    for response in (
        client.get(PROJECTS),
        client.get(f"{PROJECTS}/{project.slug}"),
        client.post(f"{PROJECTS}/{project.slug}/labels", {}, content_type="application/json"),
    ):
        assert response.status_code == 401
        assert "Not authenticated" in response.json()["detail"]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_and_inactive_user_are_401(volunteer: User, project: Project) -> None:
    token, key = api_token_create(user=volunteer, name="script")
    assert _bearer(key).get(PROJECTS).status_code == 200
    volunteer.is_active = False
    volunteer.save()
    assert _bearer(key).get(PROJECTS).status_code == 401
    volunteer.is_active = True
    volunteer.save()
    api_token_revoke(user=volunteer, token_id=token.pk)
    assert _bearer(key).get(PROJECTS).status_code == 401


def test_session_auth_reads_and_writes_need_csrf(
    ingested_project: Project, volunteer: User
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(volunteer)
    response = client.get(PROJECTS)
    assert response.status_code == 200 and response.json()[0]["role"] == "volunteer"
    crop = ingested_project.crops.order_by("id").first()
    assert crop is not None
    url = f"{PROJECTS}/{ingested_project.slug}/labels"
    body = {"crop_id": crop.pk, "kind": "unknown"}
    refused = client.post(url, body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert not crop.labels.exists()
    hold(ingested_project, volunteer, [crop.pk])
    # The page's JavaScript sends the CSRF cookie's value back in a header.
    client.get(reverse("api_tokens"))
    csrf = client.cookies["csrftoken"].value
    accepted = client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == 201
    assert crop.labels.get().user == volunteer


def test_bearer_writes_need_no_csrf(ingested_project: Project, volunteer: User) -> None:
    _, key = api_token_create(user=volunteer, name="script")
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {key}")
    crop = ingested_project.crops.order_by("id").first()
    assert crop is not None
    hold(ingested_project, volunteer, [crop.pk])
    response = client.post(
        f"{PROJECTS}/{ingested_project.slug}/labels",
        {"crop_id": crop.pk, "kind": "not_animal"},
        content_type="application/json",
    )
    assert response.status_code == 201


# The tokens page.


def _logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_tokens_page_needs_login() -> None:
    response = Client().get(reverse("api_tokens"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_tokens_page_creates_shows_key_once_and_revokes(volunteer: User, outsider: User) -> None:
    api_token_create(user=outsider, name="oscar's secret script")
    client = _logged_in(volunteer)
    page = client.get(reverse("api_tokens"))
    assert page.status_code == 200 and "You have no tokens" in page.text
    assert "oscar" not in page.text

    created = client.post(reverse("api_tokens"), {"name": "camera laptop"})
    assert created.status_code == 200
    token = ApiToken.objects.get(user=volunteer)
    key = created.text.split('id="new-key"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert api_token_for_key(key=key) == token
    assert "shown only once" in created.text

    again = client.get(reverse("api_tokens"))
    assert key not in again.text
    assert "camera laptop" in again.text and token.prefix in again.text
    assert _bearer(key).get(PROJECTS).status_code == 200

    revoked = client.post(reverse("api_token_revoke", args=[token.pk]), follow=True)
    assert "revoked" in revoked.text and "You have no tokens" in revoked.text
    assert _bearer(key).get(PROJECTS).status_code == 401


def test_tokens_page_refuses_blank_name_and_others_tokens(volunteer: User, outsider: User) -> None:
    client = _logged_in(volunteer)
    refused = client.post(reverse("api_tokens"), {"name": "   "})
    assert refused.status_code == 400 and "Token not created" in refused.text
    assert not ApiToken.objects.filter(user=volunteer).exists()
    theirs, _ = api_token_create(user=outsider, name="theirs")
    response = client.post(reverse("api_token_revoke", args=[theirs.pk]), follow=True)
    assert "Token not revoked" in response.text
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
    assert client.get(reverse("api_token_revoke", args=[theirs.pk])).status_code == 405


def test_nav_links_to_tokens_page(volunteer: User) -> None:
    page = _logged_in(volunteer).get(reverse("project_list"))
    assert f'href="{reverse("api_tokens")}"' in page.text


# The management command.


def test_command_create_list_revoke(volunteer: User, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("api_token", "create", volunteer.username, "--name", "headless box")
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    token = ApiToken.objects.get(user=volunteer)
    assert token.name == "headless box" and api_token_for_key(key=key) == token
    assert _bearer(key).get(PROJECTS).status_code == 200

    call_command("api_token", "list", volunteer.username)
    listing = capsys.readouterr().out
    assert f"{token.pk}\t{token.prefix}…\theadless box" in listing and key not in listing

    call_command("api_token", "revoke", volunteer.username, str(token.pk))
    assert "revoked token" in capsys.readouterr().out
    assert not ApiToken.objects.exists()
    call_command("api_token", "list", volunteer.username)
    assert "no API tokens" in capsys.readouterr().out


def test_command_errors(volunteer: User, outsider: User) -> None:
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("api_token", "list", "nobody")
    with pytest.raises(CommandError, match="needs a name"):
        call_command("api_token", "create", volunteer.username, "--name", " ")
    theirs, _ = api_token_create(user=outsider, name="theirs")
    with pytest.raises(CommandError, match="no token"):
        call_command("api_token", "revoke", volunteer.username, str(theirs.pk))
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
