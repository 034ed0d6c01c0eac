"""Invitations: making, accepting (limits, expiry, revocation, idempotence) and revoking."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from projects import invitations as invitation_services
from projects.invitations import (
    InvitationError,
    invitation_accept,
    invitation_create,
    invitation_get,
    invitation_revoke,
    invitation_token_hash,
)
from projects.models import Invitation, InvitationUse, Membership, Project, Role
from projects.services import member_remove, project_create


def _state(project: Project) -> tuple[object, ...]:
    """Everything an acceptance may change: members, invitations' uses, acceptance records."""
    return (
        sorted(Membership.objects.filter(project=project).values_list("user__username", "role")),
        sorted(Invitation.objects.filter(project=project).values_list("pk", "uses", "revoked_at")),
        sorted(InvitationUse.objects.values_list("invitation_id", "user__username", "joined")),
    )


def _make(
    project: Project, admin: User, *, role: str = Role.VOLUNTEER, days: int = 7, uses: int = 1
) -> tuple[Invitation, str]:
    return invitation_create(project=project, created_by=admin, role=role, days=days, max_uses=uses)


@pytest.fixture
def newcomers(django_user_model: type[User]) -> list[User]:
    return [django_user_model.objects.create_user(f"new{n}", password="x") for n in range(4)]


@pytest.mark.django_db
def test_create_stores_only_the_hash_of_a_long_random_token(
    project: Project, admin_user: User
) -> None:
    invitation, token = _make(project, admin_user)
    other, other_token = _make(project, admin_user)
    assert len(token) >= 43 and token != other_token
    assert invitation.token_hash == invitation_token_hash(token) != token
    assert not Invitation.objects.filter(token_hash=token).exists()
    assert invitation_get(token=token) == invitation
    assert invitation.expires_at - timezone.now() == pytest.approx(
        timedelta(days=7), abs=timedelta(seconds=30)
    )
    assert (invitation.uses, invitation.max_uses, invitation.revoked_at) == (0, 1, None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "days", "max_uses", "message"),
    [
        ("owner", 7, 1, "unknown role 'owner'"),
        (Role.VOLUNTEER, 0, 1, "1 to 90 days, not 0"),
        (Role.VOLUNTEER, 91, 1, "1 to 90 days, not 91"),
        (Role.VOLUNTEER, 7, 0, "1 to 1000 uses, not 0"),
        (Role.VOLUNTEER, 7, 1001, "1 to 1000 uses, not 1001"),
    ],
)
def test_create_refuses_bad_input_and_makes_nothing(
    project: Project, admin_user: User, role: str, days: int, max_uses: int, message: str
) -> None:
    with pytest.raises(InvitationError, match=message):
        invitation_create(
            project=project, created_by=admin_user, role=role, days=days, max_uses=max_uses
        )
    assert not Invitation.objects.exists()


@pytest.mark.django_db
def test_accept_joins_with_the_role_and_twice_is_the_same(
    project: Project, admin_user: User, newcomers: list[User]
) -> None:
    invitation, token = _make(project, admin_user, role=Role.ECOLOGIST)
    first = invitation_accept(token=token, user=newcomers[0])
    assert first.joined and (first.membership.user, first.membership.role) == (
        newcomers[0],
        Role.ECOLOGIST,
    )
    before = _state(project)
    # Used up now, but the same person accepting again gets the same answer and changes nothing.
    again = invitation_accept(token=token, user=newcomers[0])
    assert again == first
    assert _state(project) == before
    invitation.refresh_from_db()
    assert invitation.uses == 1


@pytest.mark.django_db
def test_a_single_use_invitation_makes_one_member(
    project: Project, admin_user: User, newcomers: list[User]
) -> None:
    _, token = _make(project, admin_user)
    invitation_accept(token=token, user=newcomers[0])
    before = _state(project)
    with pytest.raises(InvitationError, match="this invitation has been used up"):
        invitation_accept(token=token, user=newcomers[1])
    assert _state(project) == before


@pytest.mark.django_db
def test_a_drive_invitation_takes_max_uses_people(
    project: Project, admin_user: User, newcomers: list[User]
) -> None:
    invitation, token = _make(project, admin_user, uses=3)
    for user in newcomers[:3]:
        assert invitation_accept(token=token, user=user).joined
    before = _state(project)
    with pytest.raises(InvitationError, match="used up"):
        invitation_accept(token=token, user=newcomers[3])
    assert _state(project) == before
    invitation.refresh_from_db()
    assert invitation.uses == 3 and invitation.acceptances.count() == 3


@pytest.mark.django_db
def test_expired_and_revoked_invitations_refuse_and_change_nothing(
    project: Project, admin_user: User, newcomers: list[User]
) -> None:
    expired, expired_token = _make(project, admin_user, days=1, uses=5)
    Invitation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    revoked, revoked_token = _make(project, admin_user, uses=5)
    invitation_revoke(project=project, invitation_id=revoked.pk)
    before = _state(project)
    with pytest.raises(InvitationError, match="this invitation has expired"):
        invitation_accept(token=expired_token, user=newcomers[0])
    with pytest.raises(InvitationError, match="this invitation was revoked"):
        invitation_accept(token=revoked_token, user=newcomers[0])
    for token in ("no-such-token-at-all-here", "x", "../../etc/passwd", expired_token.upper()):
        with pytest.raises(InvitationError, match="there is no such invitation"):
            invitation_accept(token=token, user=newcomers[0])
        assert invitation_get(token=token) is None
    assert _state(project) == before


@pytest.mark.django_db
def test_a_member_keeps_their_role_and_spends_no_use(
    project: Project, admin_user: User, volunteer: User
) -> None:
    invitation, token = _make(project, admin_user, role=Role.ADMIN)
    accepted = invitation_accept(token=token, user=volunteer)
    assert not accepted.joined and accepted.membership.role == Role.VOLUNTEER
    assert Membership.objects.get(project=project, user=volunteer).role == Role.VOLUNTEER
    invitation.refresh_from_db()
    assert invitation.uses == 0  # still usable by someone new
    # An admin accepting a volunteer link is not demoted either.
    _, token = _make(project, admin_user)
    assert invitation_accept(token=token, user=admin_user).membership.role == Role.ADMIN


@pytest.mark.django_db
def test_someone_removed_after_accepting_cannot_rejoin_with_the_same_link(
    project: Project, admin_user: User, newcomers: list[User]
) -> None:
    _, token = _make(project, admin_user, uses=5)
    membership = invitation_accept(token=token, user=newcomers[0]).membership
    member_remove(project=project, membership_id=membership.pk)
    before = _state(project)
    with pytest.raises(InvitationError, match="no longer a member"):
        invitation_accept(token=token, user=newcomers[0])
    assert _state(project) == before


@pytest.mark.django_db
def test_revoke_is_per_project_and_idempotent(
    project: Project, admin_user: User, newcomers: list[User]
) -> None:
    invitation, token = _make(project, admin_user, uses=2)
    other = project_create(name="Other traps", created_by=admin_user)
    with pytest.raises(InvitationError, match="is not one of project 'Other traps'"):
        invitation_revoke(project=other, invitation_id=invitation.pk)
    invitation.refresh_from_db()
    assert invitation.revoked_at is None
    invitation_accept(token=token, user=newcomers[0])
    revoked = invitation_revoke(project=project, invitation_id=invitation.pk)
    assert revoked.revoked_at is not None
    assert invitation_revoke(project=project, invitation_id=invitation.pk).revoked_at == (
        revoked.revoked_at
    )
    # The member it made stays.
    assert Membership.objects.filter(project=project, user=newcomers[0]).exists()


@pytest.mark.django_db(transaction=True)
def test_two_people_accepting_a_single_use_link_at_once_on_postgresql_make_one_member(
    project: Project, admin_user: User, newcomers: list[User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced race: a barrier lets both acceptances ask for the invitation's row at the same
    moment, and the winner then waits before writing; without the row lock both would read
    ``uses == 0`` and both join."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises them)")
    _, token = _make(project, admin_user)
    real = invitation_services.invitation_lock
    barrier = threading.Barrier(2, timeout=30)

    def held(*, token_hash: str) -> Invitation | None:
        barrier.wait()
        invitation = real(token_hash=token_hash)
        time.sleep(0.5)  # long enough for the other to read the row, were it not locked
        return invitation

    monkeypatch.setattr(invitation_services, "invitation_lock", held)
    outcomes: list[str] = []

    def accept(user: User) -> None:
        try:
            invitation_accept(token=token, user=user)
            outcomes.append("joined")
        except InvitationError as exc:
            outcomes.append(str(exc))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=accept, args=(user,)) for user in newcomers[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["joined", "this invitation has been used up"]
    assert Invitation.objects.get().uses == 1
    joined = Membership.objects.filter(project=project, user__in=newcomers[:2])
    assert joined.count() == 1
