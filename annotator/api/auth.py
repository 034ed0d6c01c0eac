"""How the API knows who is calling: a personal token, or the browser's session."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from annotator.api.selectors import api_token_for_key
from annotator.api.services import api_token_used


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <key>`` with a key from the tokens page or ``manage.py api_token``.

    No CSRF check: a browser never sends this header on its own.
    """

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        api_token = api_token_for_key(key=token.strip())
        if api_token is None or not api_token.user.is_active:
            return None
        api_token_used(token=api_token)
        return api_token.user


class BrowserSessionAuth(SessionAuth):
    """The logged-in browser session, so that the site's own JavaScript can use the API.

    Writes need Django's CSRF token (the X-CSRFToken header), as for a form. The check runs
    only when a session cookie is sent: a script with a wrong token and no cookie gets 401
    (not authenticated), not a confusing CSRF failure.
    """

    def _get_key(self, request: HttpRequest) -> str | None:
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if key is None:
            return None
        return super().authenticate(request, key)
