"""Accounts through django-allauth: who may sign up, and the login form's field name.

Sign-up is open to everyone only with ``TRAPWISE_OPEN_SIGNUP``; otherwise only to a visitor
who opened a usable invitation link in this session (``annotator.views.invitations``), so
that an invitation is the way in.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from django.conf import settings
from django.http import HttpRequest

from projects.invitations import invitation_problem
from projects.models import Invitation

# The session key holding the id of the usable invitation the visitor opened last.
INVITATION_SESSION_KEY = "trapwise_invitation_id"


def session_invitation_remember(request: HttpRequest, invitation: Invitation) -> None:
    """Remember that this session opened ``invitation``'s link (which opens sign-up)."""
    request.session[INVITATION_SESSION_KEY] = invitation.pk


class AccountAdapter(DefaultAccountAdapter):
    """allauth's adapter, with sign-up open only by invitation (unless TRAPWISE_OPEN_SIGNUP)."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """True with TRAPWISE_OPEN_SIGNUP, or when this session opened an invitation link that
        is still usable (not revoked, expired or used up)."""
        if settings.TRAPWISE_OPEN_SIGNUP:
            return True
        invitation_id = request.session.get(INVITATION_SESSION_KEY)
        if not isinstance(invitation_id, int):
            return False
        invitation = Invitation.objects.filter(pk=invitation_id).first()
        return invitation is not None and invitation_problem(invitation) is None


class LoginForm(AllauthLoginForm):
    """allauth's login form, its user-name field posted as ``username`` (as Django's login
    form did): django-axes reads the user name of a failed login from that field
    (AXES_USERNAME_FORM_FIELD), and password managers and scripts keep working."""

    def add_prefix(self, field_name: str) -> str:
        if field_name == "login":
            return "username"
        return super().add_prefix(field_name)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["login"].label = "User name"
        self.fields["login"].widget.attrs.pop("placeholder", None)
        self.fields["password"].widget.attrs.pop("placeholder", None)
