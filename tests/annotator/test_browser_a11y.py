"""Accessibility and the Content-Security-Policy, page by page, in headless Chromium.

axe-core (npm, installed by `make test` from package-lock.json) checks each page as the role
that uses it, with data on it; a serious or critical violation fails the test. The page runs
under the app's real Content-Security-Policy, and any violation the browser reports fails too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.services import classifier_retrain, label_submit, round_start
from annotator.api.services import api_token_create
from projects.models import Project, Role
from tests.annotator.external_world import with_external
from tests.conftest import PASSWORD, browser_login, label_by_truth, serve

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")

# Collects the browser's CSP violation events from the first moment of each page. An init
# script runs before the page's own and is not subject to the page's policy.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline")
    + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


@pytest.fixture
def axe_page(browser_page: Any) -> Any:
    """``browser_page`` with axe-core loaded into every page it opens."""
    if not AXE.exists():
        pytest.skip(
            f"axe-core is not installed ({AXE.relative_to(REPO)} is missing): run "
            "`npm ci --no-audit --no-fund` in the repository root (`make test` does)"
        )
    # An init script, not add_script_tag: an injected inline <script> would itself be refused
    # by the page's script-src 'self', which is the point of the policy.
    browser_page.add_init_script(path=str(AXE))
    return browser_page


def _csp_watch(page: Any) -> list[str]:
    """Starts collecting ``page``'s CSP violations: the list fills with the browser's console
    reports; the events are read from ``window.__cspViolations`` on each page."""
    page.add_init_script(CSP_LISTENER)
    console: list[str] = []
    page.on(
        "console",
        lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return console


def _describe(violations: list[dict[str, Any]]) -> str:
    """axe's violations as readable lines: rule, impact, help, and where (up to 5 nodes)."""
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    at {', '.join(node['target'])}: {node['failureSummary']}")
            lines.append(f"       {node['html'][:200]}")
    return "\n".join(lines)


def _a11y_and_csp_check(page: Any, url: str, console: list[str]) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.wait_for_load_state("load")
    result = page.evaluate("async () => JSON.stringify(await axe.run(document))")
    violations = [v for v in json.loads(result)["violations"] if v["impact"] in BLOCKING]
    events = page.evaluate("window.__cspViolations")
    assert not violations, f"axe on {url}:\n{_describe(violations)}"
    assert not events and not console, f"CSP violations on {url}: {events} {console}"


def _with_round(project: Project, admin_user: User, volunteer: User) -> None:
    """What the labelling and review pages show: an open round, a labelled crop (so an undo)
    and a dispute to review (two votes that disagree)."""
    project.votes_per_crop = 2
    project.save(update_fields=["votes_per_crop"])
    open_round = round_start(project=project, user=admin_user, strategy="random", size=6)
    crop_id = open_round.items.order_by("position").values_list("crop_id", flat=True)[0]
    fox, agouti = project.species.get(name="red fox"), project.species.get(name="agouti")
    for user, species in ((volunteer, fox), (admin_user, agouti)):
        serve(project, user, [crop_id])
        label_submit(
            project=project, crop_id=crop_id, user=user, kind="species", species_id=species.pk
        )


def _with_deployments(project: Project, admin: User, volunteer: User) -> None:
    """Two deployments holding the small project's images (the list shows counts)."""
    from projects.services_deployments import deployments_import

    deployments_import(
        project=project,
        text="deploymentID,latitude,longitude,deploymentStart,deploymentEnd,folder\n"
        "fox,1,2,2000-01-01T00:00:00Z,2030-01-01T00:00:00Z,images/Red_Fox\n"
        "agouti,1,2,2000-01-01T00:00:00Z,2030-01-01T00:00:00Z,images/Agouti\n",
    )


def _with_classifier(project: Project, admin_user: User, volunteer: User) -> None:
    """What the admin's project page shows at its fullest: every crop labelled and a trained
    classifier, so its metrics, the learning curve, label counts and the confusion matrix."""
    label_by_truth(project, volunteer, project.crops.select_related("image"))
    assert classifier_retrain(project_id=project.pk) is not None


def _with_event_round(project: Project, admin_user: User, volunteer: User) -> None:
    """What the event label page shows: an open event round, one event answered (an undo)
    and the next event's crops and frames."""
    from activelearn.services import event_claim_next, labels_event_submit

    open_round = round_start(project=project, user=admin_user, size=2, unit="event")
    crop_ids = [c.pk for c in event_claim_next(round_=open_round, user=volunteer)]
    fox = project.species.get(name="red fox")
    labels_event_submit(
        project=project, crop_ids=crop_ids, user=volunteer, kind="species", species_id=fox.pk
    )


def _with_empty_sample(project: Project, admin_user: User, volunteer: User) -> None:
    """What the empties page shows: a check sample with one answer (so a rate)."""
    from activelearn.services.empties import empty_check_answer, empty_sample_draw

    checks = empty_sample_draw(project=project, user=admin_user, size=3, seed=1)
    empty_check_answer(project=project, check_id=checks[0].pk, user=volunteer, has_animal=False)


def _with_external_round(project: Project, admin_user: User, volunteer: User) -> None:
    """The label page with other tools' predictions (README "Existing AI output")."""
    round_start(project=project, user=admin_user, strategy="random", size=3)
    with_external(project)


# The token of the invitation that _with_invitation makes (a test's own, so the path is known).
A11Y_INVITATION = "a11y-invitation-token-000000000000000000000"


def _with_invitation(project: Project, admin_user: User, volunteer: User) -> None:
    """What the invitation page and the members page's open invitations show."""
    from datetime import timedelta

    from django.utils import timezone

    from projects.invitations import invitation_token_hash
    from projects.models import Invitation

    Invitation.objects.create(
        project=project,
        role=Role.VOLUNTEER,
        token_hash=invitation_token_hash(A11Y_INVITATION),
        created_by=admin_user,
        expires_at=timezone.now() + timedelta(days=7),
        max_uses=20,
    )


# page -> (who looks at it, its path, the data it needs: none, "round", "event_round",
# "empties" or "classifier"); {slug} is the project's, {species} its first species, {image} the
# first image with a box. Importing takes a while, so only the pages that show crops get them.
PAGES: dict[str, tuple[Role | None, str, str]] = {
    "login": (None, "/accounts/login/", ""),
    "signup_closed": (None, "/accounts/signup/", ""),
    "password_reset": (None, "/accounts/password/reset/", ""),
    "invitation": (None, f"/invite/{A11Y_INVITATION}/", "invitation"),
    "password_change": (Role.VOLUNTEER, "/accounts/password/change/", ""),
    "email": (Role.VOLUNTEER, "/accounts/email/", ""),
    "logout": (Role.VOLUNTEER, "/accounts/logout/", ""),
    "members-invitations": (Role.ADMIN, "/p/{slug}/members/", "invitation"),
    "project": (Role.ADMIN, "/p/{slug}/", "classifier"),
    "rounds": (Role.ADMIN, "/p/{slug}/rounds/", "round"),
    "model": (Role.ADMIN, "/p/{slug}/model/", "classifier"),
    "model-ecologist": (Role.ECOLOGIST, "/p/{slug}/model/", "classifier"),
    "data": (Role.ADMIN, "/p/{slug}/data/", ""),
    "settings": (Role.ADMIN, "/p/{slug}/settings/", ""),
    "exports": (Role.ECOLOGIST, "/p/{slug}/exports/", ""),
    "label": (Role.VOLUNTEER, "/p/{slug}/label/", "round"),
    "grid": (Role.VOLUNTEER, "/p/{slug}/label/grid/", "round"),
    "label_event": (Role.VOLUNTEER, "/p/{slug}/label/event/", "event_round"),
    "review": (Role.ADMIN, "/p/{slug}/review/", "round"),
    "members": (Role.ADMIN, "/p/{slug}/members/", ""),
    "species": (Role.ADMIN, "/p/{slug}/species/", ""),
    "deployments": (Role.ADMIN, "/p/{slug}/deployments/", "deployments"),
    "deployment_edit": (Role.ADMIN, "/p/{slug}/deployments/{deployment}/edit/", "deployments"),
    "tokens": (Role.ADMIN, "/account/tokens/", ""),
    "export": (Role.ECOLOGIST, "/p/{slug}/export/camtrap-dp/", ""),
    "field_guide": (Role.VOLUNTEER, "/p/{slug}/guide/?species={species}", "classifier"),
    "empties": (Role.VOLUNTEER, "/p/{slug}/empties/", "empties"),
    # {image}: the first image with a box; the admin also sees the count correction.
    "boxes": (Role.ADMIN, "/p/{slug}/images/{image}/boxes/", "empties"),
    "explore": (Role.ECOLOGIST, "/p/{slug}/explore/", "classifier"),
    "explore_crop": (Role.ECOLOGIST, "/p/{slug}/explore/crops/{crop}/", "classifier"),
    "project_new": (Role.ADMIN, "/projects/new/", ""),
    "import": (Role.ADMIN, "/p/{slug}/import/?path=cams", ""),
    "predictions": (Role.ADMIN, "/p/{slug}/predictions/", "external"),
    "label_external": (Role.VOLUNTEER, "/p/{slug}/label/", "external_round"),
}


def _with_create_permission(project: Project, admin_user: User, request: Any) -> None:
    """The new-project page is for users with the site permission."""
    from django.contrib.auth.models import Permission

    admin_user.user_permissions.add(Permission.objects.get(codename="add_project"))


def _with_import_jobs(project: Project, admin_user: User, request: Any) -> None:
    """What the import page shows at its fullest: a root with folders and a COCO file, a
    queued import and a finished one with problems."""
    from detector.import_jobs import image_import_create, image_import_run

    root = request.getfixturevalue("tmp_path") / "roots"
    for rel in ("cams/fox/a.jpg", "cams/owl/b.jpg", "cams/coco.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"not an image")
    request.getfixturevalue("settings").TRAPWISE_IMPORT_ROOTS = [root]
    done = image_import_create(project=project, folder=root / "cams", queue=False)
    image_import_run(import_id=done.pk)
    image_import_create(project=project, folder=root / "cams" / "fox", queue=False)


# Pages whose data needs no imported images: page -> setup(project, admin user, request).
LIGHT_SETUPS = {"project_new": _with_create_permission, "import": _with_import_jobs}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_has_no_serious_axe_violation_nor_csp_violation(
    name: str,
    request: pytest.FixtureRequest,
    axe_page: Any,
    live_server: Any,
    project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
) -> None:
    role, path, data = PAGES[name]
    if name in LIGHT_SETUPS:
        LIGHT_SETUPS[name](project, admin_user, request)
    if data == "invitation":
        _with_invitation(project, admin_user, volunteer)
    elif data:
        request.getfixturevalue("ingested_project")
        setup = {
            "round": _with_round,
            "event_round": _with_event_round,
            "classifier": _with_classifier,
            "empties": _with_empty_sample,
            "external": lambda project, *_: with_external(project),
            "external_round": _with_external_round,
            "deployments": _with_deployments,
        }
        setup[data](project, admin_user, volunteer)
    api_token_create(user=admin_user, name="camera-sync")
    page = axe_page
    console = _csp_watch(page)
    users = {Role.ADMIN: admin_user, Role.VOLUNTEER: volunteer, Role.ECOLOGIST: ecologist}
    if role is not None:
        browser_login(page, live_server, users[role])
    # {species}: the project's first species (the field guide shows its examples); {image}: the
    # first image with a box; {crop}: the project's first crop (the explore page's crop view).
    species = project.species.order_by("pk").values_list("pk", flat=True).first()
    image = project.crops.values_list("image_id", flat=True).first()
    crop = project.crops.order_by("id").values_list("id", flat=True).first() or 1
    deployment = project.deployments.values_list("pk", flat=True).first() or 1
    url = live_server.url + path.format(
        slug=project.slug, species=species, image=image, crop=crop, deployment=deployment
    )
    _a11y_and_csp_check(page, url, console)


def test_django_admin_and_api_docs_work_under_the_policy(
    browser_page: Any, live_server: Any, django_user_model: type[User]
) -> None:
    """Neither needs a relaxed policy: Django's admin has no inline script or style, and
    django-ninja serves Swagger UI from its own static files (no CDN); the page renders the
    API and opens an operation without one CSP violation."""
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    page = browser_page
    console = _csp_watch(page)
    seen = []
    page.goto(f"{live_server.url}/api/v1/docs")
    title = page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert title is not None and title.inner_text().startswith("Trapwise API")
    page.locator(".opblock-summary").first.click()
    page.wait_for_selector(".opblock.is-open")
    seen.append(("docs", page.evaluate("window.__cspViolations")))
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    for path in (
        "/admin/",
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        "/admin/projects/project/add/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200, path
        seen.append((path, page.evaluate("window.__cspViolations")))
    assert all(not events for _, events in seen) and not console, (seen, console)
