"""The project's pages fit (issue 17, item 7): in headless Chromium at 1366x768, an admin
reads the overview and every sub-page of a realistic project (labelled crops, a classifier, an
open round, background jobs), each about two screens at most, through the shared navigation;
an ecologist reads the model and metrics but not the admin's pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from activelearn.services import classifier_retrain, round_start
from projects.models import Job, Project
from tests.conftest import browser_login, label_by_truth

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1366, "height": 768}
# About two screens: the document may be at most two viewport heights, plus a small margin
# (a line of text) for fonts that render a little taller than here.
MAX_HEIGHT = 2 * VIEWPORT["height"] + 40

# Navigation label -> path below /p/<slug>/, in the navigation's order.
ADMIN_PAGES = {
    "Overview": "",
    "Rounds and labelling": "rounds/",
    "Model and metrics": "model/",
    "Data and detection": "data/",
    "Settings": "settings/",
    "Deployments": "deployments/",
    "Exports": "exports/",
}
# What each page must show (so a page that fits because it is empty fails).
SHOWS = {
    "Overview": ("#headline-labels", "#headline-audit", "#headline-machine", "#jobs", "#round"),
    "Rounds and labelling": ("#round-start", "#rounds", "#votes", "#rare-species"),
    "Model and metrics": ("#cv-accuracy", "#metrics", "#learning-curve", "#confusion-plot"),
    "Data and detection": ("#detection", "#embedding"),
    "Settings": ("#learning-settings", "#consensus"),
    "Deployments": ("#deployments", "#deployment-add", "#deployments-upload"),
    "Exports": ("#exports",),
}


def _realistic(project: Project, admin_user: User, volunteer: User) -> None:
    """Labelled crops, a cross-validated classifier, an open round and background jobs, one
    of them failed with problems listed."""
    crops = list(project.crops.select_related("image").order_by("id"))
    label_by_truth(project, volunteer, crops[:-4])
    assert classifier_retrain(project_id=project.pk) is not None
    round_start(project=project, user=admin_user, strategy="random", size=2)
    now = timezone.now()
    Job.objects.create(
        project=project, kind=Job.Kind.EMBEDDING, status="running", total=40, done=12,
        started_at=now,
    )  # fmt: skip
    Job.objects.create(
        project=project, kind=Job.Kind.CROPS, status=Job.Status.DONE, total=3, done=3,
        started_at=now, finished_at=now,
        problems=[["cam1/a.jpg", "crops not cut: No such file or directory"]],
    )  # fmt: skip


def _height(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollHeight"))


def test_admin_reads_every_page_within_two_screens(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    _realistic(ingested_project, admin_user, volunteer)
    page = browser_page
    page.set_viewport_size(VIEWPORT)
    browser_login(page, live_server, admin_user)
    base = f"{live_server.url}/p/{ingested_project.slug}/"
    page.goto(base)
    heights = {}
    for name, path in ADMIN_PAGES.items():
        nav = page.get_by_role("navigation", name="Project pages")
        # The explore page (its own page, with its own filters) closes the navigation.
        assert nav.get_by_role("link").all_inner_texts() == [*ADMIN_PAGES, "Explore and verify"]
        with page.expect_navigation():
            nav.get_by_role("link", name=name, exact=True).click()
        assert page.url == base + path
        current = page.locator(".project-nav [aria-current=page]")
        assert current.count() == 1 and current.inner_text() == name
        for selector in SHOWS[name]:
            assert page.locator(selector).count() == 1, (name, selector)
        heights[name] = _height(page)
    print("document heights at 1366x768:", heights)
    too_tall = {name: h for name, h in heights.items() if h > MAX_HEIGHT}
    assert not too_tall, f"over {MAX_HEIGHT} px: {too_tall}"


def test_ecologist_reads_the_metrics_not_the_admin_pages(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
) -> None:
    _realistic(ingested_project, admin_user, volunteer)
    page = browser_page
    page.set_viewport_size(VIEWPORT)
    browser_login(page, live_server, ecologist)
    base = f"{live_server.url}/p/{ingested_project.slug}/"
    page.goto(base)
    nav = page.get_by_role("navigation", name="Project pages")
    assert nav.get_by_role("link").all_inner_texts() == [
        "Overview",
        "Rounds and labelling",
        "Model and metrics",
        "Deployments",
        "Exports",
        "Explore and verify",
    ]
    with page.expect_navigation():
        nav.get_by_role("link", name="Model and metrics").click()
    for selector in ("#cv-accuracy", "#metrics", "#learning-curve", "#glossary"):
        assert page.locator(selector).count() == 1, selector
    assert page.get_by_role("button", name="Retrain now").count() == 0  # the admin's
    assert _height(page) <= MAX_HEIGHT
    for path in ("data/", "settings/", "status.json"):
        response = page.goto(base + path)
        assert response is not None and response.status == 404, path
    # A volunteer labels; the metrics pages are not theirs.
    page.context.clear_cookies()
    browser_login(page, live_server, volunteer)
    response = page.goto(base + "model/")
    assert response is not None and response.status == 404
