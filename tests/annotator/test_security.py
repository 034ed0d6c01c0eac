"""Security checks across the whole site (issue 7).

* Every URL the project routes is classified in ``URL_TABLE`` (which roles may use it, and with
  which methods); a URL name missing from the table fails the test, so every new page must be
  classified. Each URL is then requested as an anonymous user, an outsider, a volunteer, an
  ecologist and an admin of a real project, with GET and with POST.
* Every view that accepts a POST refuses one without a CSRF token (403) and changes nothing.
* ``manage.py check --deploy`` finds nothing under the production settings.
* No secret (private key, SECRET_KEY literal, AWS key, password) is committed.
* Every page carries the Content-Security-Policy, in development and in production, and no
  template holds what it refuses (inline scripts, on*= handlers, style attributes).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from annotator.models import ApiToken
from projects.models import Membership, Project, Role, Species
from tests.conftest import PASSWORD, session_login

REPO = Path(__file__).resolve().parents[2]

ADMIN = frozenset({Role.ADMIN})
LABELLERS = frozenset({Role.ADMIN, Role.VOLUNTEER})
EXPORTERS = frozenset({Role.ADMIN, Role.ECOLOGIST})
MEMBERS = frozenset(Role)
# Not a project page: every logged-in user may use it (it acts on the user's own data only).
ANY_USER = "any logged-in user"
# Not a project page: only users with the site permission projects.add_project (none of the
# role users has it); everyone else is refused with 403.
SITE_CREATORS = "users with the site permission projects.add_project"

Access = frozenset[str] | str | None


@dataclass(frozen=True)
class Rule:
    """Who may use a URL: per method, the project roles allowed, ANY_USER, or None (405)."""

    get: Access
    post: Access
    api: bool = False


# Every named URL of the project. A new URL must be added here (the test fails otherwise).
URL_TABLE: dict[str, Rule] = {
    "project_list": Rule(get=ANY_USER, post=None),
    "api_tokens": Rule(get=ANY_USER, post=ANY_USER),
    "api_token_revoke": Rule(get=None, post=ANY_USER),
    "project_new": Rule(get=SITE_CREATORS, post=SITE_CREATORS),
    "project_import": Rule(get=ADMIN, post=None),
    "import_folder_start": Rule(get=None, post=ADMIN),
    "import_upload": Rule(get=None, post=ADMIN),
    "import_bucket_start": Rule(get=None, post=ADMIN),
    "project_detail": Rule(get=MEMBERS, post=None),
    "project_rounds": Rule(get=MEMBERS, post=None),
    "project_model": Rule(get=EXPORTERS, post=None),
    "project_data": Rule(get=ADMIN, post=None),
    "predictions": Rule(get=ADMIN, post=ADMIN),
    "project_settings": Rule(get=ADMIN, post=None),
    "project_exports": Rule(get=EXPORTERS, post=None),
    "project_status_json": Rule(get=ADMIN, post=None),
    "members": Rule(get=ADMIN, post=None),
    "invitation_create": Rule(get=None, post=ADMIN),
    "invitation_revoke": Rule(get=None, post=ADMIN),
    "member_role": Rule(get=None, post=ADMIN),
    "member_remove": Rule(get=None, post=ADMIN),
    "species": Rule(get=ADMIN, post=None),
    "species_add": Rule(get=None, post=ADMIN),
    "species_rename": Rule(get=None, post=ADMIN),
    "species_merge": Rule(get=None, post=ADMIN),
    "species_taxonomy": Rule(get=None, post=ADMIN),
    "species_import": Rule(get=None, post=ADMIN),
    "deployments": Rule(get=EXPORTERS, post=None),
    "deployment_add": Rule(get=None, post=ADMIN),
    "deployments_upload": Rule(get=None, post=ADMIN),
    "deployment_edit": Rule(get=ADMIN, post=ADMIN),
    "deployment_delete": Rule(get=None, post=ADMIN),
    "attribute_add": Rule(get=None, post=ADMIN),
    "attribute_update": Rule(get=None, post=ADMIN),
    "attribute_remove": Rule(get=None, post=ADMIN),
    "round_start": Rule(get=None, post=ADMIN),
    "learning_settings": Rule(get=None, post=ADMIN),
    "classifier_retrain_start": Rule(get=None, post=ADMIN),
    "detection_start": Rule(get=None, post=ADMIN),
    "thresholds_update": Rule(get=None, post=ADMIN),
    "embedding_finetune_start": Rule(get=None, post=ADMIN),
    "label": Rule(get=LABELLERS, post=LABELLERS),
    "label_grid": Rule(get=LABELLERS, post=LABELLERS),
    "label_undo": Rule(get=None, post=LABELLERS),
    "label_event": Rule(get=LABELLERS, post=LABELLERS),
    # Volunteers explore only when the admin allows it (off here, the default).
    "explore": Rule(get=EXPORTERS, post=None),
    "explore_crop": Rule(get=EXPORTERS, post=None),
    "explore_verify": Rule(get=None, post=EXPORTERS),
    "explore_undo": Rule(get=None, post=EXPORTERS),
    "explore_settings": Rule(get=None, post=ADMIN),
    "field_guide": Rule(get=LABELLERS, post=None),
    "review": Rule(get=ADMIN, post=ADMIN),
    "consensus_settings": Rule(get=None, post=ADMIN),
    "export_csv": Rule(get=EXPORTERS, post=None),
    "export_images_csv": Rule(get=EXPORTERS, post=None),
    "export_events_csv": Rule(get=EXPORTERS, post=None),
    "export_coco": Rule(get=EXPORTERS, post=None),
    "export_metrics": Rule(get=EXPORTERS, post=None),
    "camtrap_dp_form": Rule(get=EXPORTERS, post=None),
    "export_camtrap_dp": Rule(get=EXPORTERS, post=None),
    "export_job_start": Rule(get=None, post=EXPORTERS),
    "export_file_download": Rule(get=EXPORTERS, post=None),
    "export_file_delete": Rule(get=None, post=ADMIN),
    "crop_file": Rule(get=MEMBERS, post=None),
    "image_file": Rule(get=MEMBERS, post=None),
    "empties": Rule(get=LABELLERS, post=None),
    "empty_answer": Rule(get=None, post=LABELLERS),
    "empty_sample": Rule(get=None, post=ADMIN),
    "image_boxes": Rule(get=LABELLERS, post=None),
    "box_add": Rule(get=None, post=LABELLERS),
    "box_drop": Rule(get=None, post=LABELLERS),
    # django-allauth's pages for a logged-in user's own account (its password and addresses).
    "account_email": Rule(get=ANY_USER, post=ANY_USER),
    "account_change_password": Rule(get=ANY_USER, post=ANY_USER),
    "account_set_password": Rule(get=ANY_USER, post=ANY_USER),
    "account_reauthenticate": Rule(get=ANY_USER, post=ANY_USER),
    "count_correct": Rule(get=None, post=ADMIN),
    # The JSON API. rounds_list and round_create share one path (GET and POST).
    "api-v1:projects_list": Rule(get=ANY_USER, post=None, api=True),
    "api-v1:project_detail": Rule(get=MEMBERS, post=None, api=True),
    "api-v1:species_list": Rule(get=MEMBERS, post=None, api=True),
    "api-v1:attributes_list": Rule(get=MEMBERS, post=None, api=True),
    "api-v1:rounds_list": Rule(get=MEMBERS, post=ADMIN, api=True),
    "api-v1:round_create": Rule(get=MEMBERS, post=ADMIN, api=True),
    "api-v1:next_crops": Rule(get=LABELLERS, post=None, api=True),
    "api-v1:label_create": Rule(get=None, post=LABELLERS, api=True),
    "api-v1:label_undo_latest": Rule(get=None, post=LABELLERS, api=True),
    "api-v1:crops_page": Rule(get=EXPORTERS, post=None, api=True),
    "api-v1:crop_file": Rule(get=MEMBERS, post=None, api=True),
    "api-v1:image_file": Rule(get=MEMBERS, post=None, api=True),
    # exports_list and export_create share one path (GET and POST).
    "api-v1:exports_list": Rule(get=EXPORTERS, post=EXPORTERS, api=True),
    "api-v1:export_create": Rule(get=EXPORTERS, post=EXPORTERS, api=True),
    "api-v1:export_detail": Rule(get=EXPORTERS, post=None, api=True),
    "api-v1:export_file": Rule(get=EXPORTERS, post=None, api=True),
    "api-v1:import_create": Rule(get=None, post=ADMIN, api=True),
    "api-v1:job_detail": Rule(get=ADMIN, post=None, api=True),
    "api-v1:retrain_request": Rule(get=None, post=ADMIN, api=True),
}

# URLs left out of the walk, each public or protected by design by Django or django-ninja.
SKIPPED: dict[str, str] = {
    "login": "django-allauth's login page: public by design (throttled by django-axes)",
    "logout": "django-allauth's logout: a confirmation page, POST acts on the caller's session",
    "account_login": "the same view as login (allauth's own name for it)",
    "account_logout": "the same view as logout (allauth's own name for it)",
    "account_inactive": "django-allauth's static 'account inactive' page: public",
    "account_signup": "public by design, open only by invitation (test_invitations_security.py)",
    "account_reset_password": "password reset by e-mail: public by design, rate-limited",
    "account_reset_password_done": "a static 'check your e-mail' page: public",
    "account_reset_password_from_key": "the reset mail's link: needs its key (tested)",
    "account_reset_password_from_key_done": "a static 'password changed' page: public",
    "account_email_verification_sent": "a static 'check your e-mail' page: public",
    "account_confirm_email": "the confirmation mail's link: needs its key",
    "account_confirm_login_code": "login by code is off: redirects to the login page",
    "account_request_reauthentication_code": "login by code is off",
    "account_confirm_reauthentication_code": "login by code is off",
    "invitation": "the invitation link: public by design, 404 for a wrong token (tested)",
    "api-v1:openapi-json": "the API's OpenAPI description: public documentation by design",
    "api-v1:openapi-view": "the API's Swagger page: public documentation by design",
    "api-v1:api-root": "django-ninja's API root: redirects to the public docs",
}
# Django's admin site checks is_staff itself; the whole namespace is skipped.
SKIPPED_NAMESPACES = {"admin": "Django's admin site: its own staff-only checks"}

ROLES = ("anonymous", "outsider", Role.VOLUNTEER, Role.ECOLOGIST, Role.ADMIN)


def _url_names() -> Iterator[str]:
    """Every URL name the project routes, namespaced ("api-v1:crop_file"), skipped ones out."""

    def walk(patterns: list[URLPattern | URLResolver], namespace: str) -> Iterator[str]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or ""
                if inner in SKIPPED_NAMESPACES:
                    continue
                full = ":".join(part for part in (namespace, inner) if part)
                yield from walk(pattern.url_patterns, full)
            else:
                assert pattern.name, f"URL pattern {pattern.pattern} has no name: name it"
                yield f"{namespace}:{pattern.name}" if namespace else pattern.name

    for name in walk(get_resolver().url_patterns, ""):
        if name not in SKIPPED:
            yield name


def test_every_url_is_classified() -> None:
    """A URL missing from URL_TABLE (or a stale entry) fails: every page states who may use it."""
    names = set(_url_names())
    assert names - URL_TABLE.keys() == set(), "classify these new URLs in URL_TABLE"
    assert URL_TABLE.keys() - names == set(), "these URL_TABLE entries no longer exist"


@dataclass
class World:
    project: Project
    users: dict[str, User]
    kwargs: dict[str, object]
    token: ApiToken


@pytest.fixture
def world(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    outsider: User,
    django_user_model: type[User],
) -> World:
    """The real small project, plus a spare member and an admin's token whose ids fill URLs
    (so that an admin's POST to "remove member" never removes one of the role users)."""
    from annotator.api.services import api_token_create
    from projects.services import membership_set

    project = ingested_project
    spare = django_user_model.objects.create_user("spare", password=PASSWORD)
    membership_set(project=project, user=spare, role=Role.VOLUNTEER)
    token, _ = api_token_create(user=admin_user, name="security walk")
    from projects.invitations import invitation_create

    invitation, _ = invitation_create(
        project=project, created_by=admin_user, role=Role.VOLUNTEER, days=7, max_uses=1
    )
    crop = project.crops.order_by("pk").first()  # type: ignore[attr-defined]
    assert crop is not None
    export_file = _export_file(project)
    kwargs = {
        "slug": project.slug,
        "crop_id": crop.pk,
        "image_id": crop.image_id,
        "detection_id": crop.detection_id,
        "species_id": project.species.order_by("pk").first().pk,  # type: ignore[union-attr]
        "attribute_id": project.attributes.order_by("pk").first().pk,  # type: ignore[union-attr]
        "membership_id": Membership.objects.get(project=project, user=spare).pk,
        "token_id": token.pk,
        "invitation_id": invitation.pk,
        "deployment_pk": _spare_deployment(project).pk,
        "export_id": export_file.pk,
        "job_id": export_file.job_id,
    }
    users = {
        "outsider": outsider,
        Role.VOLUNTEER: volunteer,
        Role.ECOLOGIST: ecologist,
        Role.ADMIN: admin_user,
    }
    return World(project=project, users=users, kwargs=kwargs, token=token)


def _spare_deployment(project: Project) -> Any:
    """A deployment whose id fills the deployment URLs (the admin's POST deletes it)."""
    from datetime import UTC, datetime

    from projects.models import Deployment

    start = datetime(2021, 1, 1, tzinfo=UTC)
    return Deployment.objects.create(
        project=project, deployment_id="spare", latitude=1, longitude=1, start=start, end=start
    )


def _export_file(project: Project) -> Any:
    """A finished export file whose id fills the export file URLs (the admin's POST deletes it)."""
    from annotator.export_jobs import export_file_run, export_job_create

    record = export_job_create(project=project, format="images-csv", queue=False)
    return export_file_run(export_id=record.pk)


def _reverse(name: str, world: World) -> str:
    """The URL of ``name`` for the world's project, its ids filling the URL's arguments."""
    return reverse(name, kwargs={k: world.kwargs[k] for k in _kwarg_names(name)})


def _kwarg_names(name: str) -> list[str]:
    """The URL's keyword arguments, read from its pattern."""
    for pattern_name, route in _routes():
        if pattern_name == name:
            return re.findall(r"<(?:\w+:)?(\w+)>", route)
    raise AssertionError(f"no route named {name}")


def _routes() -> Iterator[tuple[str, str]]:
    def walk(
        patterns: list[URLPattern | URLResolver], namespace: str, prefix: str
    ) -> Iterator[tuple[str, str]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or ""
                full = ":".join(part for part in (namespace, inner) if part)
                yield from walk(pattern.url_patterns, full, prefix + str(pattern.pattern))
            elif pattern.name:
                name = f"{namespace}:{pattern.name}" if namespace else pattern.name
                yield name, prefix + str(pattern.pattern)

    yield from walk(get_resolver().url_patterns, "", "")


def _request(
    client: Client, method: str, url: str, *, api: bool, body: dict[str, object]
) -> tuple[int, str]:
    """(status, location); an exception in the view is reported as status 500.

    API POSTs send a well-formed ``body``: django-ninja validates the body before the view runs
    (a malformed one is 422 for any slug, so it tells nothing), and the role check must be reached.
    """
    try:
        if method == "GET":
            response = client.get(url)
        elif api:
            response = client.post(url, data=json.dumps(body), content_type="application/json")
        else:
            response = client.post(url, data={})
        if response.streaming:
            # Streamed exports fail while streaming: read them to the end (which also closes
            # them; the test client closes the other responses itself).
            b"".join(response.streaming_content)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any exception is the 500 this test looks for
        return 500, f"{type(exc).__name__}: {exc}"
    return response.status_code, response.get("Location", "")


def _check(rule: Rule, method: str, role: str, status: int, location: str) -> str | None:
    """Why (status, location) is wrong for ``role`` on a URL with ``rule``, or None."""
    access = rule.get if method == "GET" else rule.post
    if status >= 500:
        return f"server error {status} {location}"
    if role == "anonymous":
        if rule.api:
            return None if status in (401, 405) else f"expected 401, got {status}"
        if status == 302 and location.startswith("/accounts/login/"):
            return None
        return f"expected a redirect to the login page, got {status} {location}"
    if access is None:
        # The method check runs before the membership check and answers 405 for any project
        # slug, so it tells an outsider nothing.
        return None if status == 405 else f"expected 405 (method not allowed), got {status}"
    if access == SITE_CREATORS:
        return None if status == 403 else f"expected 403 (no site permission), got {status}"
    allowed = access == ANY_USER or (role != "outsider" and role in access)
    if allowed:
        if status in (401, 403, 404, 405):
            return f"role is allowed, got {status}"
        return None
    return None if status == 404 else f"expected 404, got {status}"


def test_every_url_answers_each_role_as_classified(world: World) -> None:
    """Anonymous: login redirect (web) or 401 (API); outsider: 404; members: 404 outside their
    role's pages; never a server error. Admin goes last: their POSTs may change things."""
    failures: list[str] = []
    names = list(_url_names())
    # A well-formed label, export and import (the only API bodies with required fields; each
    # endpoint ignores the others' fields).
    body = {
        "crop_id": world.kwargs["crop_id"],
        "kind": "unknown",
        "format": "coco",
        "source": "s3://no-such-bucket/images",
    }
    for role in ROLES:
        client = Client()
        if role != "anonymous":
            client.force_login(world.users[role])
        for method in ("GET", "POST"):
            seen: set[str] = set()  # rounds_list and round_create share one URL
            for name in names:
                url = _reverse(name, world)
                if url in seen:
                    continue
                seen.add(url)
                rule = URL_TABLE[name]
                status, location = _request(client, method, url, api=rule.api, body=body)
                problem = _check(rule, method, role, status, location)
                if problem:
                    failures.append(f"{role:>9} {method:4} {url} ({name}): {problem}")
    # Nobody but its owner can revoke a token; the admin (its owner) came last.
    assert not ApiToken.objects.filter(pk=world.token.pk).exists()
    assert failures == [], "\n" + "\n".join(failures)


def test_token_revoke_by_another_user_keeps_the_token(world: World) -> None:
    """api_token_revoke is open to any user but acts on their own tokens only."""
    for role in ("outsider", Role.VOLUNTEER, Role.ECOLOGIST):
        client = Client()
        client.force_login(world.users[role])
        response = client.post(reverse("api_token_revoke", kwargs={"token_id": world.token.pk}))
        assert response.status_code == 302
        assert ApiToken.objects.filter(pk=world.token.pk).exists()


def test_project_pages_of_a_missing_project_are_404_as_for_an_outsider(world: World) -> None:
    """An outsider cannot tell an existing project from a missing one."""
    client = Client()
    client.force_login(world.users["outsider"])
    for name in ("project_detail", "label", "members", "export_csv", "api-v1:project_detail"):
        real = client.get(reverse(name, kwargs={"slug": world.project.slug}))
        missing = client.get(reverse(name, kwargs={"slug": "no-such-project"}))
        assert real.status_code == missing.status_code == 404, name


def test_every_post_view_refuses_a_post_without_csrf_token(world: World) -> None:
    """With CSRF checks on, a logged-in admin's POST without the token is refused (403) by every
    view that takes POSTs, web and API (session), and changes nothing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users[Role.ADMIN])
    posted = [name for name in _url_names() if URL_TABLE[name].post is not None]
    assert "species_add" in posted and "api-v1:label_create" in posted
    data = {"name": "csrf-probe", "username": "spare", "role": Role.ADMIN}
    for name in posted:
        url = _reverse(name, world)
        if URL_TABLE[name].api:
            response = client.post(url, data=json.dumps(data), content_type="application/json")
        else:
            response = client.post(url, data=data)
        assert response.status_code == 403, f"{name}: {response.status_code}"
    assert not Species.objects.filter(project=world.project, name="csrf-probe").exists()
    assert ApiToken.objects.filter(pk=world.token.pk).exists()
    assert not ApiToken.objects.filter(name="csrf-probe").exists()
    assert (
        Membership.objects.get(project=world.project, user__username="spare").role == Role.VOLUNTEER
    )


def test_check_deploy_finds_nothing_under_production_settings(tmp_path: Path) -> None:
    """Settings are read at import, so production runs in a process of its own."""
    env = {
        **os.environ,
        "TRAPWISE_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "example.org",
        "TRAPWISE_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "annotator.settings",
    }
    env.pop("DEBUG", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    env = {**os.environ, "TRAPWISE_ENV": "production", "TRAPWISE_VAR_DIR": str(tmp_path)}
    env.pop("SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


# Written in pieces so that this file does not match its own patterns.
_BEGIN = "-----" + "BEGIN"
SECRET_PATTERNS = {
    "private key": re.compile(_BEGIN + r" (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "SECRET_KEY literal": re.compile(r"SECRET_KEY\s*=\s*[rbf]?['\"]"),
    "AWS access key id": re.compile(r"\b(?:A" + r"KIA|A" + r"SIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key\s*[=:]\s*\S{20,}", re.IGNORECASE),
    "password literal": re.compile(
        r"\b\w*PASS" + r"WORD\w*\s*[=:]\s*['\"][^'\"\s]{4,}['\"]", re.IGNORECASE
    ),
    "password in a URL": re.compile(r"\b\w+://[^/\s:@'\"]+:[^/\s:@'\"{}<>]+@"),
}
# Explicit exceptions, each with its reason.
SECRET_ALLOWED = {
    ("tests/conftest.py", "password literal"): "the test users' shared PASSWORD fixture constant",
}
# Passwords of throwaway users in test and benchmark databases are not secrets.
SECRET_ALLOWED_PREFIXES = {("tests/", "password literal"), ("benchmarks/", "password literal")}
# Data files committed as-is (images, COCO JSON of the demo sample): not code, no secrets to find
# by these patterns, and large.
VENDORED_PREFIXES = ("annotator/fixtures/", "tests/data/")


def test_no_secret_is_committed() -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    found: list[str] = []
    scanned = 0
    for raw in files:
        path = raw.decode()
        if not path or path.startswith(VENDORED_PREFIXES) or not (REPO / path).is_file():
            continue
        content = (REPO / path).read_bytes()
        if b"\0" in content:
            continue  # binary
        text = content.decode("utf-8", errors="replace")
        scanned += 1
        for kind, pattern in SECRET_PATTERNS.items():
            if (path, kind) in SECRET_ALLOWED or any(
                path.startswith(prefix) and kind == allowed
                for prefix, allowed in SECRET_ALLOWED_PREFIXES
            ):
                continue
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path}:{line}: {kind}: {match.group(0)[:60]}")
    assert scanned > 50, "git ls-files found too few files: is this a checkout?"
    assert found == [], "\n" + "\n".join(found)


def test_secret_patterns_catch_what_they_are_for() -> None:
    """The scanner's patterns match real-looking secrets (so the scan above can fail)."""
    samples = {
        "private key": _BEGIN + " RSA PRIVATE KEY-----",
        # Samples are split like the patterns, so that this file passes its own scan.
        "SECRET_KEY literal": "SECRET_" + 'KEY = "django-insecure-abc"',
        "AWS access key id": "A" + "KIAIOSFODNN7EXAMPLE",
        "AWS secret key": "aws_secret_" + "access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
        "password literal": "DB_PASS" + 'WORD = "hunter22"',
        "password in a URL": "postgresql://trap:" + "s3cret@db.example.org/trapwise",
    }
    for kind, sample in samples.items():
        assert SECRET_PATTERNS[kind].search(sample), kind
    assert not SECRET_PATTERNS["password in a URL"].search("postgresql://postgres@127.0.0.1")


def _login_post(client: Client, username: str, password: str, address: str) -> Any:
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


@pytest.mark.django_db
def test_login_is_throttled_per_user_name_and_address(volunteer: User) -> None:
    """At AXES_FAILURE_LIMIT (5) failures one user name from one address is locked out,
    even with the right password; the same name from elsewhere, or another name, still works."""
    client = Client()
    for _ in range(4):
        assert _login_post(client, volunteer.username, "wrong", "10.0.0.1").status_code == 200
    assert _login_post(client, volunteer.username, "wrong", "10.0.0.1").status_code == 429
    locked = _login_post(client, volunteer.username, PASSWORD, "10.0.0.1")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text and volunteer.username in locked.text
    assert "_auth_user_id" not in client.session  # not logged in
    other_place = Client()
    assert _login_post(other_place, volunteer.username, PASSWORD, "10.0.0.2").status_code == 302
    assert other_place.session["_auth_user_id"] == str(volunteer.pk)


@pytest.mark.django_db
def test_a_success_resets_the_count_and_a_lockout_ends(volunteer: User) -> None:
    from axes.models import AccessAttempt
    from django.utils import timezone

    client = Client()
    for _ in range(4):
        _login_post(client, volunteer.username, "wrong", "10.0.0.3")
    assert _login_post(client, volunteer.username, PASSWORD, "10.0.0.3").status_code == 302
    assert not AccessAttempt.objects.exists()  # the count starts again
    client = Client()
    for _ in range(5):
        _login_post(client, volunteer.username, "wrong", "10.0.0.3")
    assert _login_post(client, volunteer.username, PASSWORD, "10.0.0.3").status_code == 429
    # 15 minutes later (the default cool-off) the lock is gone.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _login_post(client, volunteer.username, PASSWORD, "10.0.0.3").status_code == 302


def test_media_files_are_served_through_the_role_check_only(
    world: World, django_user_model: type[User]
) -> None:
    """No URL serves MEDIA_ROOT directly, and a member of one project cannot reach another
    project's crop or image through their own project's URLs."""
    from projects.services import membership_set, project_create

    crop = world.project.crops.order_by("pk").first()  # type: ignore[attr-defined]
    assert crop is not None
    member = Client()
    member.force_login(world.users[Role.VOLUNTEER])
    assert member.get(_reverse("crop_file", world)).status_code == 200
    assert member.get(f"/media/{crop.file}").status_code == 404
    assert member.get(f"/static/../media/{crop.file}").status_code == 404
    other = project_create(
        name="Other traps", created_by=django_user_model.objects.create_user("x")
    )
    membership_set(project=other, user=world.users[Role.VOLUNTEER], role=Role.VOLUNTEER)
    foreign = {"slug": other.slug, "crop_id": crop.pk, "image_id": crop.image_id}
    assert (
        member.get(
            reverse("crop_file", kwargs={k: foreign[k] for k in ("slug", "crop_id")})
        ).status_code
        == 404
    )
    assert (
        member.get(
            reverse("image_file", kwargs={k: foreign[k] for k in ("slug", "image_id")})
        ).status_code
        == 404
    )


# --- Content-Security-Policy ------------------------------------------------------------------

CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def _csp(response: Any) -> dict[str, str]:
    """The response's Content-Security-Policy header as {directive: sources}."""
    header = response.headers.get("Content-Security-Policy", "")
    parts = (d.strip().partition(" ") for d in header.split(";") if d.strip())
    return {name: value.strip() for name, _, value in parts}


@pytest.mark.django_db(transaction=True)
def test_every_page_carries_the_content_security_policy(
    live_server: Any, project: Project, admin_user: User
) -> None:
    """Over HTTP from a real server: pages for anyone and for a project admin, the API's docs
    and JSON, the Django admin's login and a 404 all carry the whole policy."""
    base = live_server.url
    anonymous = [
        "/accounts/login/",
        "/api/v1/docs",
        "/api/v1/openapi.json",
        "/admin/login/",
        "/no-such-page/",
    ]
    for path in anonymous:
        response = requests.get(f"{base}{path}", allow_redirects=False)
        assert _csp(response) == CSP_DIRECTIVES, (path, response.headers)
    session = session_login(base, admin_user)
    pages = ("project_detail", "project_rounds", "project_model", "project_data")
    for name in (*pages, "project_settings", "members", "species", "label", "label_grid", "review"):
        path = reverse(name, args=[project.slug])
        response = session.get(f"{base}{path}", allow_redirects=False)
        assert response.status_code == 200, path
        assert _csp(response) == CSP_DIRECTIVES, (path, response.headers)


@pytest.mark.django_db(transaction=True)
def test_production_serves_the_content_security_policy(tmp_path: Path) -> None:
    """A server started with TRAPWISE_ENV=production (behind a TLS proxy) sends the policy."""
    from tests.processes import app_env, free_port, process_stop, web_server_start

    port = free_port()
    env = app_env(
        TRAPWISE_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="127.0.0.1",
        TRAPWISE_VAR_DIR=str(tmp_path),
    )
    env.pop("DEBUG", None)
    server = web_server_start(port=port, log=tmp_path / "web.log", env=env)
    try:
        response = requests.get(
            f"http://127.0.0.1:{port}/accounts/login/",
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
            timeout=30,
        )
    finally:
        process_stop(server)
    assert response.status_code == 200, (tmp_path / "web.log").read_text()[-2000:]
    assert "Strict-Transport-Security" in response.headers  # production's settings indeed
    assert _csp(response) == CSP_DIRECTIVES


# What the policy refuses, as it would be written in a template or a script.
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
SCRIPT_BODY = re.compile(r"<script\b[^>]*>(.*?)</script>", re.IGNORECASE | re.DOTALL)
TAG = re.compile(r"<[a-zA-Z][^>]*>")
HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.IGNORECASE)
REFUSED_IN_TEMPLATES = {
    "an inline <script> (no src)": lambda text: INLINE_SCRIPT.findall(text),
    "a <script> with a body": lambda text: [b for b in SCRIPT_BODY.findall(text) if b.strip()],
    "an on*= event handler": lambda text: [t for t in TAG.findall(text) if HANDLER.search(t)],
    "a style attribute": lambda text: [t for t in TAG.findall(text) if STYLE_ATTRIBUTE.search(t)],
    "a <style> element": lambda text: re.findall(r"<style\b", text, re.IGNORECASE),
    "a javascript: URL": lambda text: re.findall(r"javascript:", text, re.IGNORECASE),
}
REFUSED_IN_SCRIPTS = re.compile(
    r"\beval\(|new Function\(|setAttribute\(\s*[\"'](style|on[a-z]+)[\"']|\.innerHTML\s*="
)


def _refusals(text: str) -> list[str]:
    return [
        f"{what}: {found[0][:120]!r}"
        for what, find in REFUSED_IN_TEMPLATES.items()
        if (found := find(text))
    ]


def test_no_template_holds_what_the_policy_refuses() -> None:
    """Scripts come from static/ files only, and styles from stylesheets: the policy's
    script-src 'self' and style-src 'self' would refuse the rest."""
    found = {}
    for path in sorted((REPO / "templates").rglob("*.html")):
        if refusals := _refusals(path.read_text()):
            found[str(path.relative_to(REPO))] = refusals
    for path in sorted((REPO / "static").rglob("*.js")):
        if match := REFUSED_IN_SCRIPTS.search(path.read_text()):
            found[str(path.relative_to(REPO))] = [f"eval, a handler or inline HTML: {match[0]!r}"]
    assert not found, found


def test_the_template_scan_finds_each_refused_kind() -> None:
    samples = {
        "an inline <script> (no src)": '<script type="module">',
        "a <script> with a body": '<script src="a.js">alert(1)</script>',
        "an on*= event handler": '<button type="button" onclick="go()">',
        "a style attribute": '<div class="a" style="color: red">',
        "a <style> element": "<style>p { color: red }</style>",
        "a javascript: URL": '<a href="javascript:go()">',
    }
    for kind, sample in samples.items():
        assert any(r.startswith(kind) for r in _refusals(sample)), kind
    assert _refusals('<script src="a.js" defer></script><p>one="two"</p>') == []
