"""Writes of the API package: personal API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from annotator.models import ApiToken

# Keys start with this, so that a leaked key is recognisable (and greppable) as a Trapwise key.
KEY_PREFIX = "tw_"
# Characters of the key kept in clear, so that a user can tell tokens apart.
PREFIX_LENGTH = 10
# last_used_at is written at most this often per token: one UPDATE per request would make every
# API call a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length or 100


class ApiTokenError(ValueError):
    """A token write was refused; the message says why. Nothing was changed."""


def api_key_hash(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored (the key itself never is)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row, and the raw key, which exists only in this return value.

    ``name`` (stripped) is required and at most 100 characters; ApiTokenError otherwise.
    """
    name = name.strip()
    if not name:
        raise ApiTokenError("a token needs a name, e.g. the script or machine that uses it")
    if "\x00" in name:
        raise ApiTokenError("a token name cannot contain NUL characters")
    if len(name) > NAME_MAX_LENGTH:
        raise ApiTokenError(f"a token name has at most {NAME_MAX_LENGTH} characters")
    # 32 random bytes: guessing is hopeless, so a plain hash (no salt, no slow KDF) is enough
    # and lets authentication find the token by an indexed lookup.
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, key_hash=api_key_hash(key), prefix=key[:PREFIX_LENGTH]
    )
    return token, key


def api_token_revoke(*, user: User, token_id: int) -> ApiToken:
    """Delete ``user``'s token ``token_id``; the key stops working at once.

    Returns the deleted token (without its primary key). ApiTokenError when ``user`` has no such
    token, which is also the answer for another user's token.
    """
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise ApiTokenError(f"you have no token {token_id}")
    token.delete()
    return token


def api_token_used(*, token: ApiToken, at: datetime | None = None) -> None:
    """Record that ``token`` was used, at most once per LAST_USED_RESOLUTION."""
    at = at or timezone.now()
    if token.last_used_at is not None and at - token.last_used_at < LAST_USED_RESOLUTION:
        return
    # An UPDATE of the one column, not save(): concurrent requests must not overwrite each other.
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=at)
    token.last_used_at = at
