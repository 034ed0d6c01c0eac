"""Helpers shared by the view modules."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest

from projects.models import Role

LABELLERS = (Role.ADMIN, Role.VOLUNTEER)
EXPORTERS = (Role.ADMIN, Role.ECOLOGIST)


def request_user(request: HttpRequest) -> User:
    """The logged-in user; every view that calls this is behind login_required."""
    assert isinstance(request.user, User)
    return request.user
