"""Create, list and revoke a user's API tokens: how a headless client gets a key."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotator.api.selectors import api_tokens_list
from annotator.api.services import ApiTokenError, api_token_create, api_token_revoke


class Command(BaseCommand):
    help = (
        "Manage a user's API tokens. `create USER --name NAME` prints the key once "
        "(only its hash is stored); `list USER`; `revoke USER TOKEN_ID`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = actions.add_parser("create", help="create a token and print its key once")
        create.add_argument("username")
        create.add_argument("--name", required=True, help="what uses the token")
        listing = actions.add_parser("list", help="list the user's tokens (never their keys)")
        listing.add_argument("username")
        revoke = actions.add_parser("revoke", help="revoke a token: its key stops working")
        revoke.add_argument("username")
        revoke.add_argument("token_id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        user = _user(options["username"])
        try:
            if options["action"] == "create":
                self._create(user, name=options["name"])
            elif options["action"] == "list":
                self._list(user)
            else:
                token = api_token_revoke(user=user, token_id=options["token_id"])
                self.stdout.write(f"revoked token {options['token_id']} {token.name!r}")
        except ApiTokenError as exc:
            raise CommandError(str(exc)) from exc

    def _create(self, user: User, *, name: str) -> None:
        token, key = api_token_create(user=user, name=name)
        self.stdout.write(f"created token {token.pk} {token.name!r} for {user.username}")
        self.stdout.write("key (shown only now; send as 'Authorization: Bearer <key>'):")
        self.stdout.write(key)

    def _list(self, user: User) -> None:
        tokens = list(api_tokens_list(user=user))
        if not tokens:
            self.stdout.write(f"{user.username} has no API tokens")
        for t in tokens:
            used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
            created = t.created_at.isoformat(timespec="seconds")
            self.stdout.write(f"{t.pk}\t{t.prefix}…\t{t.name}\tcreated {created}\tlast used {used}")


def _user(username: str) -> User:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}; create it with createsuperuser")
    assert isinstance(user, User)
    return user
