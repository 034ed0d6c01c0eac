"""The admin's dashboard in headless Chromium: start a round, watch it progress live, manage
members and merge two species."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label, Round
from activelearn.services import label_submit
from annotator.models import Membership, Project
from tests.annotator.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import shutil

    from django.db import connection, connections

    if not shutil.which(CHROMIUM):
        pytest.skip(
            f"headless Chromium not found at {CHROMIUM}: `apt-get install chromium` "
            "(.ci/run does) or set TRAPWISE_CHROMIUM"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing"
    )
    # The ORM calls the test makes around Playwright's event loop are synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # The live server's threads must not keep connections open past the test (PostgreSQL).
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()
            # ORM calls made while Playwright's loop runs get a connection of their own
            # context; close it, or the test database cannot be dropped (PostgreSQL).
            connections.close_all()


def _log_in(page: Any, live_server: Any, user: User) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_admin_starts_a_round_and_sees_it_progress_live(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    page = browser_page
    _log_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/")
    page.wait_for_selector("text=No round is open")
    page.select_option("select[name=strategy]", "k_center")
    page.fill("input[name=size]", "3")
    with page.expect_navigation():
        page.click("button:has-text('Start round')")
    page.wait_for_selector("text=Round 1 started.")
    assert page.locator("#round-progress").inner_text().startswith("Round 1 (k-Center greedy)")
    assert page.locator("#round-count").inner_text() == "0 / 3"
    started = Round.objects.get(project=ingested_project)
    assert (started.strategy, started.size, started.items.count()) == ("k_center", 3, 3)

    # A volunteer labels one crop (straight in the database); the page was not reloaded when
    # its polling shows the new count.
    page.evaluate("window.notReloaded = true")
    first = started.items.order_by("position").first()
    assert first is not None
    species = ingested_project.species.get(name="agouti")
    label_submit(
        project=ingested_project,
        crop_id=first.crop_id,
        user=volunteer,
        kind="species",
        species_id=species.pk,
    )
    page.wait_for_function(
        "document.getElementById('round-count').textContent === '1 / 3'", timeout=15_000
    )
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("[data-count=labelled]").inner_text() == "1"


def test_admin_adds_a_member_and_merges_species(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    outsider: User,
) -> None:
    page = browser_page
    _log_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/")
    with page.expect_navigation():
        page.click("text=Members and roles")
    page.fill("#member-add input[name=username]", outsider.username)
    page.select_option("#member-add select[name=role]", "volunteer")
    with page.expect_navigation():
        page.click("#member-add button[type=submit]")
    page.wait_for_selector(f"text={outsider.username} added as Volunteer.")
    assert Membership.objects.get(project=ingested_project, user=outsider).role == "volunteer"

    page.goto(f"{live_server.url}/p/{ingested_project.slug}/species/")
    page.fill("#species-add input[name=name]", "fox")
    with page.expect_navigation():
        page.click("#species-add button[type=submit]")
    page.wait_for_selector("text=Species 'fox' added.")
    fox = ingested_project.species.get(name="fox")
    red_fox = ingested_project.species.get(name="red fox")
    crop = ingested_project.crops.first()
    assert crop is not None
    label_submit(
        project=ingested_project, crop_id=crop.pk, user=volunteer, kind="species", species_id=fox.pk
    )
    page.reload()
    page.select_option("#species-merge select[name=source]", label="fox")
    page.select_option("#species-merge select[name=target]", label="red fox")
    with page.expect_navigation():
        page.click("#species-merge button[type=submit]")
    page.wait_for_selector("text='fox' merged into 'red fox': 1 labels moved")
    assert not ingested_project.species.filter(name="fox").exists()
    label = Label.objects.get(crop=crop)
    assert label.species == red_fox
    assert page.locator("#species tbody tr").count() == ingested_project.species.count()
