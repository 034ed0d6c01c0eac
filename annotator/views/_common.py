"""Helpers shared by the view modules."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


def request_user(request: HttpRequest) -> User:
    """The logged-in user; every view that calls this is behind login_required."""
    assert isinstance(request.user, User)
    return request.user
