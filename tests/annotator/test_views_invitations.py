"""The invitation pages: the members page makes and revokes links, /invite/<token>/ lets people
sign up or log in and join; and the accounts around them (sign-up closed without an
invitation, password reset by e-mail)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotator.accounts import INVITATION_SESSION_KEY
from projects.invitations import invitation_create
from projects.models import Invitation, Membership, Project, Role
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LINK = re.compile(r'id="invitation-link" value="(http://testserver/invite/([\w-]+)/)"')


def _client(user: User | None = None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _invite(project: Project, admin: User, *, role: str = Role.VOLUNTEER, uses: int = 1) -> str:
    """A fresh invitation's path, /invite/<token>/."""
    _, token = invitation_create(
        project=project, created_by=admin, role=role, days=7, max_uses=uses
    )
    return reverse("invitation", kwargs={"token": token})


def test_admin_makes_an_invitation_and_sees_its_link_once(
    project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    url = reverse("invitation_create", args=[project.slug])
    made = client.post(url, {"role": Role.VOLUNTEER, "days": 3, "max_uses": 25})
    assert made.status_code == 200 and made["Cache-Control"].startswith("max-age=0")
    match = LINK.search(made.text)
    assert match, made.text
    invitation = Invitation.objects.get()
    assert (invitation.role, invitation.max_uses, invitation.created_by) == (
        Role.VOLUNTEER,
        25,
        admin_user,
    )
    # The members page lists it (uses, expiry) but can no longer show the link.
    page = client.get(reverse("members", args=[project.slug]))
    assert "0 of 25" in page.text and match.group(2) not in page.text
    assert f'data-invitation="{invitation.pk}"' in page.text
    # The link opens the invitation page.
    opened = _client().get(match.group(1).removeprefix("http://testserver"))
    assert opened.status_code == 200
    assert "Test traps" in opened.text and "Volunteer" in opened.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"role": "owner", "days": 7, "max_uses": 1}, "Select a valid choice"),
        ({"role": "volunteer", "days": 0, "max_uses": 1}, "greater than or equal to 1"),
        ({"role": "volunteer", "days": 7, "max_uses": 5000}, "less than or equal to 1000"),
    ],
)
def test_a_bad_invitation_form_is_400_and_makes_nothing(
    project: Project, admin_user: User, data: dict[str, object], message: str
) -> None:
    response = _client(admin_user).post(reverse("invitation_create", args=[project.slug]), data)
    assert response.status_code == 400 and message in response.text
    assert not Invitation.objects.exists()


def test_admin_revokes_an_invitation_and_its_link_stops_working(
    project: Project, admin_user: User, outsider: User
) -> None:
    path = _invite(project, admin_user)
    invitation = Invitation.objects.get()
    client = _client(admin_user)
    revoked = client.post(
        reverse("invitation_revoke", args=[project.slug, invitation.pk]), follow=True
    )
    assert "Invitation revoked" in revoked.text
    assert f'data-invitation="{invitation.pk}"' not in revoked.text
    gone = _client(outsider).get(path)
    assert gone.status_code == 410 and "this invitation was revoked" in gone.text
    refused = _client(outsider).post(path)
    assert refused.status_code == 410
    assert not Membership.objects.filter(project=project, user=outsider).exists()


@pytest.mark.parametrize("who", ["volunteer", "ecologist", "outsider"])
def test_only_admins_make_or_revoke_invitations(
    who: str, project: Project, admin_user: User, volunteer: User, ecologist: User, outsider: User
) -> None:
    user = {"volunteer": volunteer, "ecologist": ecologist, "outsider": outsider}[who]
    _invite(project, admin_user)
    invitation = Invitation.objects.get()
    client = _client(user)
    made = client.post(
        reverse("invitation_create", args=[project.slug]),
        {"role": Role.ADMIN, "days": 7, "max_uses": 1},
    )
    revoked = client.post(reverse("invitation_revoke", args=[project.slug, invitation.pk]))
    assert made.status_code == revoked.status_code == 404
    assert list(Invitation.objects.values_list("pk", "revoked_at")) == [(invitation.pk, None)]


def test_an_admin_cannot_revoke_another_projects_invitation(
    project: Project, admin_user: User, django_user_model: type[User]
) -> None:
    from projects.services import project_create

    other_admin = django_user_model.objects.create_user("otto", password=PASSWORD)
    other = project_create(name="Other traps", created_by=other_admin)
    _invite(other, other_admin)
    invitation = Invitation.objects.get()
    response = _client(admin_user).post(
        reverse("invitation_revoke", args=[project.slug, invitation.pk])
    )
    assert response.status_code == 400 and "is not one of project" in response.text
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_a_wrong_token_is_a_plain_404(project: Project, admin_user: User) -> None:
    path = _invite(project, admin_user)
    token = path.split("/")[2]
    anonymous = _client()
    answers = []
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "x" * 43, "short"):
        response = anonymous.get(reverse("invitation", kwargs={"token": wrong}))
        assert response.status_code == 404
        answers.append(response.content.replace(wrong.encode(), b"TOKEN"))
        assert b"Test traps" not in response.content
    assert len(set(answers)) == 1
    assert INVITATION_SESSION_KEY not in anonymous.session


def test_a_visitor_signs_up_through_the_link_and_joins(project: Project, admin_user: User) -> None:
    path = _invite(project, admin_user, role=Role.VOLUNTEER)
    visitor = _client()
    # Without an invitation, sign-up is closed.
    closed = visitor.get(reverse("account_signup"))
    assert "Sign-up is by invitation" in closed.text
    page = visitor.get(path)
    assert page.status_code == 200 and "Sign up" in page.text
    signup_url = f"{reverse('account_signup')}?next={path}"
    form = visitor.get(signup_url)
    assert form.status_code == 200 and 'name="username"' in form.text
    signed = visitor.post(
        reverse("account_signup"),
        {
            "username": "newbie",
            "email": "newbie@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "next": path,
        },
    )
    assert signed.status_code == 302 and signed["Location"] == path, signed.content[:2000]
    newbie = User.objects.get(username="newbie")
    assert newbie.email == "newbie@example.org"
    assert not Membership.objects.filter(user=newbie).exists()  # not before accepting
    accepted = visitor.post(path)
    assert accepted.status_code == 302
    assert accepted["Location"] == reverse("project_detail", args=[project.slug])
    assert Membership.objects.get(project=project, user=newbie).role == Role.VOLUNTEER
    assert visitor.get(reverse("label", args=[project.slug])).status_code == 200


def test_a_logged_out_accept_goes_to_login_and_a_user_logs_in_and_joins(
    project: Project, admin_user: User, outsider: User
) -> None:
    path = _invite(project, admin_user, role=Role.ECOLOGIST)
    visitor = _client()
    refused = visitor.post(path)
    assert refused.status_code == 302 and refused["Location"].startswith(reverse("login"))
    assert not Membership.objects.filter(project=project, user=outsider).exists()
    logged = visitor.post(
        f"{reverse('login')}?next={path}",
        {"username": outsider.username, "password": PASSWORD, "next": path},
    )
    assert logged.status_code == 302 and logged["Location"] == path
    assert "Accept and join as oscar" in visitor.get(path).text
    visitor.post(path)
    assert Membership.objects.get(project=project, user=outsider).role == Role.ECOLOGIST


def test_a_member_who_accepts_keeps_their_role(
    project: Project, admin_user: User, volunteer: User
) -> None:
    path = _invite(project, admin_user, role=Role.ADMIN)
    client = _client(volunteer)
    assert "You are a member already, as Volunteer" in client.get(path).text
    answer = client.post(path, follow=True)
    assert "your role stays" in answer.text
    assert Membership.objects.get(project=project, user=volunteer).role == Role.VOLUNTEER


def test_an_expired_link_says_so_and_opens_no_sign_up(project: Project, admin_user: User) -> None:
    path = _invite(project, admin_user)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    visitor = _client()
    page = visitor.get(path)
    assert page.status_code == 410 and "this invitation has expired" in page.text
    assert "Sign up" not in page.text
    assert "Sign-up is by invitation" in visitor.get(reverse("account_signup")).text


def test_a_link_that_expires_after_opening_closes_sign_up_again(
    project: Project, admin_user: User
) -> None:
    path = _invite(project, admin_user)
    visitor = _client()
    visitor.get(path)
    assert 'name="password1"' in visitor.get(reverse("account_signup")).text
    Invitation.objects.update(revoked_at=timezone.now())
    assert "Sign-up is by invitation" in visitor.get(reverse("account_signup")).text


def test_open_sign_up_setting_opens_it_to_all(settings: object) -> None:
    settings.TRAPWISE_OPEN_SIGNUP = True  # type: ignore[attr-defined]
    assert 'name="password1"' in _client().get(reverse("account_signup")).text


def test_password_reset_sends_a_mail_whose_link_sets_a_new_password(
    django_user_model: type[User],
) -> None:
    django_user_model.objects.create_user("rita", email="rita@example.org", password=PASSWORD)
    client = _client()
    sent = client.post(reverse("account_reset_password"), {"email": "rita@example.org"})
    assert sent.status_code == 302 and sent["Location"] == reverse("account_reset_password_done")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["rita@example.org"]
    body = str(mail.outbox[0].body)
    match = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", body)
    assert match, body
    # The mail's link hides its key in the session and redirects to a key-less address.
    opened = client.get(match.group(1))
    assert opened.status_code == 302
    form_url = opened["Location"]
    assert 'name="password1"' in client.get(form_url).text
    new = "a-new-longer-passphrase"
    done = client.post(form_url, {"password1": new, "password2": new})
    assert done.status_code == 302
    assert done["Location"] == reverse("account_reset_password_from_key_done")
    # The link works once; the new password logs in, the old one no longer does.
    assert "invalid" in Client().get(match.group(1), follow=True).text
    assert Client().post(reverse("login"), {"username": "rita", "password": new}).status_code == 302
    old = Client().post(reverse("login"), {"username": "rita", "password": PASSWORD})
    assert old.status_code == 200


def test_a_reset_for_an_unknown_address_sends_nothing_and_answers_alike() -> None:
    response = _client().post(reverse("account_reset_password"), {"email": "who@example.org"})
    assert response.status_code == 302 and response["Location"] == reverse(
        "account_reset_password_done"
    )
    # allauth mails unknown addresses only when ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS is on (default:
    # it says "no account"); nothing must reach anyone else.
    assert all(message.to == ["who@example.org"] for message in mail.outbox)
