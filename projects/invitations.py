"""Invitations: links that let people join a project with a role (issue 18).

An admin makes an invitation (``invitation_create``) and hands out its link; whoever opens it
signs up or logs in and accepts it (``invitation_accept``); an admin may revoke it
(``invitation_revoke``). The link's token is a 256-bit random secret; only its SHA-256 is
stored and looked up, so the database holds nothing that lets anyone join, and a look-up by
the hash of a secret this long leaks nothing that a timing attack could use (no constant-time
comparison of the secret itself is needed: the secret is never compared).

Someone already a member who accepts an invitation keeps their role, whatever the
invitation's: roles are not ordered (a volunteer labels, an ecologist exports), and a shared
link must neither demote anyone nor quietly promote them; admins change roles on the members
page. Their acceptance is recorded but spends none of the invitation's uses.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from projects.locks import invitation_lock, invitation_lock_by_id
from projects.models import Invitation, InvitationUse, Membership, Project, Role

# Bytes of randomness in a token (43 URL-safe characters).
TOKEN_BYTES = 32
# What a token looks like; anything else is refused before the database is asked.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{20,100}")
INVITATION_DAYS_MAX = 90
INVITATION_USES_MAX = 1000


class InvitationError(ValueError):
    """An invitation was not made, accepted or revoked; the message says why. Nothing was
    changed."""


def invitation_token_hash(token: str) -> str:
    """The stored form of ``token``: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_problem(invitation: Invitation, *, now: datetime | None = None) -> str | None:
    """Why ``invitation`` cannot be accepted (revoked, expired, used up), or None if it can."""
    now = now or timezone.now()
    if invitation.revoked_at is not None:
        return "this invitation was revoked"
    if invitation.expires_at <= now:
        return "this invitation has expired"
    if invitation.uses >= invitation.max_uses:
        return "this invitation has been used up"
    return None


def invitation_get(*, token: str) -> Invitation | None:
    """The invitation (with its project) whose link carries ``token``, usable or not; None for
    a token that matches none (or is not shaped like one)."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    return (
        Invitation.objects.select_related("project")
        .filter(token_hash=invitation_token_hash(token))
        .first()
    )


def invitation_create(
    *, project: Project, created_by: User | None, role: str, days: int, max_uses: int
) -> tuple[Invitation, str]:
    """Make an invitation to ``project`` as ``role``, valid for ``days`` days and ``max_uses``
    acceptances. Returns it and its token: the token is not stored, so this is the only time
    the link can be shown.

    Raises:
        InvitationError: an unknown role, ``days`` outside 1..INVITATION_DAYS_MAX or
        ``max_uses`` outside 1..INVITATION_USES_MAX. Nothing is made.
    """
    if role not in Role.values:
        raise InvitationError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    if not 1 <= days <= INVITATION_DAYS_MAX:
        raise InvitationError(f"an invitation lasts 1 to {INVITATION_DAYS_MAX} days, not {days}")
    if not 1 <= max_uses <= INVITATION_USES_MAX:
        raise InvitationError(
            f"an invitation allows 1 to {INVITATION_USES_MAX} uses, not {max_uses}"
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invitation = Invitation.objects.create(
        project=project,
        role=role,
        token_hash=invitation_token_hash(token),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(days=days),
        max_uses=max_uses,
    )
    return invitation, token


@dataclass(frozen=True)
class InvitationAccepted:
    """The outcome of ``invitation_accept``: the user's membership, and whether this (or an
    earlier acceptance of the same invitation) made them a member (False: they were one
    already and kept their role)."""

    membership: Membership
    joined: bool


def invitation_accept(*, token: str, user: User) -> InvitationAccepted:
    """Make ``user`` a member of the invitation's project with its role, spending one use.

    The invitation's row is locked (``projects.locks.invitation_lock``), so concurrent
    acceptances of a single-use link make one member. Accepting an invitation one accepted
    before changes nothing and answers as the first time did. A member already keeps their
    role and spends no use (see the module's docstring).

    Raises:
        InvitationError: no invitation has this token; it was revoked, has expired or is used
        up; or the user accepted it before and has since left the project (or was removed):
        a new invitation is needed then. Nothing is changed.
    """
    with transaction.atomic():
        invitation = (
            invitation_lock(token_hash=invitation_token_hash(token))
            if TOKEN_PATTERN.fullmatch(token)
            else None
        )
        if invitation is None:
            raise InvitationError("there is no such invitation")
        membership = Membership.objects.filter(project=invitation.project, user=user).first()
        earlier = InvitationUse.objects.filter(invitation=invitation, user=user).first()
        if earlier is not None:
            if membership is None:
                raise InvitationError(
                    "you are no longer a member of this project; ask its admin for a new invitation"
                )
            return InvitationAccepted(membership=membership, joined=earlier.joined)
        problem = invitation_problem(invitation)
        if problem:
            raise InvitationError(problem)
        if membership is not None:
            InvitationUse.objects.create(invitation=invitation, user=user, joined=False)
            return InvitationAccepted(membership=membership, joined=False)
        membership = Membership.objects.create(
            project=invitation.project, user=user, role=invitation.role
        )
        invitation.uses += 1
        invitation.save(update_fields=["uses"])
        InvitationUse.objects.create(invitation=invitation, user=user, joined=True)
    return InvitationAccepted(membership=membership, joined=True)


def invitation_revoke(*, project: Project, invitation_id: int) -> Invitation:
    """Revoke the invitation ``invitation_id`` of ``project``: its link stops working at once;
    the members it made stay. Revoking a revoked invitation changes nothing.

    Raises:
        InvitationError: the project has no such invitation.
    """
    with transaction.atomic():
        invitation = invitation_lock_by_id(project_id=project.pk, invitation_id=invitation_id)
        if invitation is None:
            raise InvitationError(
                f"invitation {invitation_id} is not one of project {project.name!r}'s"
            )
        if invitation.revoked_at is None:
            invitation.revoked_at = timezone.now()
            invitation.save(update_fields=["revoked_at"])
    return invitation
