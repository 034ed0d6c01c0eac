"""Explore and verify in headless Chromium: an ecologist filters to one species' auto-accepted
crops, corrects two, undoes it, corrects them again and confirms the rest of the page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from activelearn.models import Consensus, Label, LabelOrigin
from projects.models import Project, Species
from tests.annotator.explore_world import explore_world
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_ecologist_corrects_two_auto_accepted_crops_and_confirms_the_rest(
    browser_page: Any, live_server: Any, project: Project, ecologist: User
) -> None:
    _, crops = explore_world(project, n=20)
    fox = Species.objects.get(project=project, name="red fox")
    agouti = Species.objects.get(project=project, name="agouti")
    # Foxes are the even crops; auto-accepted from confidence 0.8 (0.5 + 0.49 i / 19).
    auto_foxes = [c.pk for i, c in enumerate(crops) if i % 2 == 0 and 0.5 + 0.49 * i / 19 >= 0.8]
    assert len(auto_foxes) >= 4
    page = browser_page
    browser_login(page, live_server, ecologist)
    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.click("a#explore-link")
    page.locator("#filters summary").click()
    page.select_option("select[name=species]", str(fox.pk))
    page.check("input[name=source][value=auto]")
    with page.expect_navigation():
        page.click("#filter-form button[type=submit]")
    cards = page.locator("#crops li.explore-card")
    expect(cards).to_have_count(len(auto_foxes))
    assert [int(x) for x in cards.evaluate_all("els => els.map(e => e.dataset.crop)")] == (
        auto_foxes
    )

    # Two of them are agoutis: tick them, correct them.
    wrong = auto_foxes[:2]
    for crop_id in wrong:
        page.check(f"input[name=crop][value='{crop_id}']")
    page.select_option("#correct-species", str(agouti.pk))
    with page.expect_navigation():
        page.click("#action-correct")
    expect(page.locator(".message")).to_contain_text("2 crops verified")
    # The filters hold: the corrected crops are no longer auto-accepted foxes.
    expect(cards).to_have_count(len(auto_foxes) - 2)
    labels = Label.objects.filter(crop_id__in=wrong)
    assert {(lab.origin, lab.user_id, lab.species_id) for lab in labels} == {
        (LabelOrigin.VERIFIED, ecologist.pk, agouti.pk)
    }

    # Undo brings them back as they were; correcting again decides them.
    with page.expect_navigation():
        page.locator("#decisions button", has_text="Undo").first.click()
    expect(page.locator(".message")).to_contain_text("undone")
    expect(cards).to_have_count(len(auto_foxes))
    assert not Consensus.objects.filter(crop_id__in=wrong).exists()
    for crop_id in wrong:
        page.check(f"input[name=crop][value='{crop_id}']")
    page.select_option("#correct-species", str(agouti.pk))
    with page.expect_navigation():
        page.click("#action-correct")
    expect(cards).to_have_count(len(auto_foxes) - 2)

    # The rest are foxes: one click confirms every crop on the page.
    with page.expect_navigation():
        page.click("#action-confirm-page")
    expect(page.locator("#crops")).to_contain_text("No crops match these filters.")
    done = dict(
        Consensus.objects.filter(crop_id__in=auto_foxes, status="done").values_list(
            "crop_id", "species_id"
        )
    )
    assert done == {c: (agouti.pk if c in wrong else fox.pk) for c in auto_foxes}

    # A crop's own page: its image with every box, and who decided it.
    page.goto(f"{live_server.url}/p/{project.slug}/explore/crops/{wrong[0]}/")
    expect(page.locator("svg rect")).to_have_count(2)
    expect(page.locator("#labels")).to_contain_text(ecologist.username)
    expect(page.locator("#labels")).to_contain_text("Checked on the explore page")
