"""Invitation links attacked over HTTP on a real server, as an outsider would: guessing tokens,
and reusing a single-use link with a second account."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User

from projects.invitations import invitation_create
from projects.models import Invitation, Membership, Project, Role
from tests.conftest import PASSWORD, session_login

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 30
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _csrf(session: requests.Session, url: str) -> str:
    """The CSRF token of the form at ``url`` (which also sets the CSRF cookie)."""
    match = CSRF.search(session.get(url, timeout=TIMEOUT).text)
    assert match is not None, url
    return match.group(1)


def _sign_up(base: str, invite: str, username: str) -> requests.Session:
    """A new account made through the invitation link's sign-up, as a browser would."""
    browser = requests.Session()
    assert browser.get(f"{base}{invite}", timeout=TIMEOUT).status_code == 200
    signup = f"{base}/accounts/signup/?next={invite}"
    answer = browser.post(
        signup,
        data={
            "username": username,
            "email": f"{username}@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "next": invite,
            "csrfmiddlewaretoken": _csrf(browser, signup),
        },
        headers={"Referer": signup},
        timeout=TIMEOUT,
        allow_redirects=False,
    )
    assert answer.status_code == 302 and answer.headers["Location"] == invite, answer.text[:500]
    return browser


def _accept(browser: requests.Session, base: str, invite: str) -> requests.Response:
    return browser.post(
        f"{base}{invite}",
        data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": f"{base}{invite}"},
        timeout=TIMEOUT,
        allow_redirects=False,
    )


def test_guessed_tokens_are_404_and_tell_nothing(
    live_server: Any, project: Project, admin_user: User, outsider: User
) -> None:
    """Random tokens, and near misses of a real one, are 404 to a stranger and to a logged-in
    outsider, by GET and by POST (with a valid CSRF token), with the same page each time; the
    real link still works afterwards."""
    base = live_server.url
    _, token = invitation_create(
        project=project, created_by=admin_user, role=Role.ADMIN, days=7, max_uses=1
    )
    near = [token[:-1], token + "A", token.swapcase(), token[1:] + token[0], token[:20]]
    guesses = [secrets.token_urlsafe(32) for _ in range(40)] + near
    stranger = requests.Session()
    outsider_session = session_login(base, outsider)
    pages: set[bytes] = set()
    for session in (stranger, outsider_session):
        csrf = _csrf(session, f"{base}/accounts/login/")
        for guess in guesses:
            url = f"{base}/invite/{guess}/"
            got = session.get(url, timeout=TIMEOUT, allow_redirects=False)
            posted = session.post(
                url,
                data={"csrfmiddlewaretoken": csrf},
                headers={"Referer": url},
                timeout=TIMEOUT,
                allow_redirects=False,
            )
            assert (got.status_code, posted.status_code) == (404, 404), guess
            pages.add(got.content.replace(guess.encode(), b"TOKEN"))
            assert project.name.encode() not in got.content + posted.content
    assert len(pages) == 1  # one page for every wrong token: nothing to tell them apart
    # Nobody joined, and the admin link was not spent.
    assert not Membership.objects.filter(project=project, user=outsider).exists()
    assert Invitation.objects.get().uses == 0
    assert stranger.get(f"{base}/invite/{token}/", timeout=TIMEOUT).status_code == 200


def test_a_used_single_use_link_cannot_be_reused_by_a_second_account(
    live_server: Any, project: Project, admin_user: User, outsider: User
) -> None:
    base = live_server.url
    _, token = invitation_create(
        project=project, created_by=admin_user, role=Role.VOLUNTEER, days=7, max_uses=1
    )
    invite = f"/invite/{token}/"
    first = _sign_up(base, invite, "first")
    joined = _accept(first, base, invite)
    assert joined.status_code == 302 and joined.headers["Location"] == f"/p/{project.slug}/"
    # A second person with the same link: as an existing account ...
    second = session_login(base, outsider)
    page = second.get(f"{base}{invite}", timeout=TIMEOUT)
    assert page.status_code == 410 and "used up" in page.text
    refused = _accept(second, base, invite)
    assert refused.status_code == 410 and "used up" in refused.text
    assert not Membership.objects.filter(project=project, user=outsider).exists()
    # ... or as a stranger hoping to sign up with it: sign-up stays closed.
    stranger = requests.Session()
    assert stranger.get(f"{base}{invite}", timeout=TIMEOUT).status_code == 410
    closed = stranger.get(f"{base}/accounts/signup/", timeout=TIMEOUT)
    assert "Sign-up is by invitation" in closed.text and 'name="password1"' not in closed.text
    signup = f"{base}/accounts/signup/"
    match = CSRF.search(stranger.get(f"{base}/accounts/login/", timeout=TIMEOUT).text)
    assert match is not None
    stranger.post(
        signup,
        data={
            "username": "third",
            "email": "third@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "csrfmiddlewaretoken": match.group(1),
        },
        headers={"Referer": signup},
        timeout=TIMEOUT,
    )
    assert not User.objects.filter(username="third").exists()
    assert Invitation.objects.get().uses == 1
    volunteers = Membership.objects.filter(project=project, role=Role.VOLUNTEER)
    assert sorted(volunteers.values_list("user__username", flat=True)) == ["first", "vic"]


def test_accepting_without_a_csrf_token_is_refused(
    live_server: Any, project: Project, admin_user: User, outsider: User
) -> None:
    base = live_server.url
    _, token = invitation_create(
        project=project, created_by=admin_user, role=Role.VOLUNTEER, days=7, max_uses=1
    )
    session = session_login(base, outsider)
    refused = session.post(f"{base}/invite/{token}/", timeout=TIMEOUT, allow_redirects=False)
    assert refused.status_code == 403
    assert not Membership.objects.filter(project=project, user=outsider).exists()
    assert Invitation.objects.get().uses == 0
