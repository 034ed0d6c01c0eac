"""In headless Chromium: a label records the suggestions shown, the one picked and the seconds
spent; the brightness and contrast keys change the picture's filter; the field guide opens."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label
from activelearn.selectors import crop_suggestions
from activelearn.services import round_start
from detector.models import Crop
from projects.models import Project
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _label_page(page: Any, live_server: Any, project: Project, admin: User, volunteer: User) -> int:
    """A round of 3 is opened and ``volunteer`` is on the label page; returns the crop shown."""
    from playwright.sync_api import expect

    open_round = round_start(project=project, user=admin, strategy="random", size=3)
    first = open_round.items.order_by("position").first()
    assert first is not None
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{project.slug}/label/")
    expect(page.get_by_text(f"Crop {first.crop_id} ·")).to_be_visible()
    return first.crop_id


def test_volunteer_labels_after_some_seconds_and_the_label_records_them(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    crop_id = _label_page(page, live_server, ingested_project, admin_user, volunteer)
    crop = Crop.objects.get(pk=crop_id)
    species = list(ingested_project.species.all())
    offered = [
        s.species_id
        for s in crop_suggestions(project=ingested_project, crops=[crop], species=species)[crop.pk]
    ]
    assert len(offered) >= 2
    page.wait_for_timeout(2500)
    with page.expect_navigation():
        page.keyboard.press("2")
    expect(page.get_by_text("My labels today: 1")).to_be_visible()
    label = Label.objects.get()
    assert (label.crop_id, label.species_id) == (crop_id, offered[1])
    assert (label.suggestions, label.suggestion_rank) == (offered, 2)
    assert label.seconds is not None and 2.4 <= label.seconds < 120


def test_brightness_and_contrast_keys_change_the_picture(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    _label_page(page, live_server, ingested_project, admin_user, volunteer)
    image = page.locator("#crop-image")
    expect(image).to_have_css("filter", "none")
    page.keyboard.press("]")
    expect(image).to_have_css("filter", re.compile(r"brightness\(1\.25\)"))
    expect(page.locator("#full-image")).to_have_css("filter", re.compile(r"brightness\(1\.25\)"))
    page.keyboard.press(".")
    expect(image).to_have_css("filter", "brightness(1.25) contrast(1.25)")
    expect(page.locator("#image-levels")).to_have_text("Brightness 125% · contrast 125%")
    # The levels stay for the next crop of the tab; = resets them.
    page.reload()
    expect(page.locator("#crop-image")).to_have_css("filter", "brightness(1.25) contrast(1.25)")
    page.keyboard.press("=")
    expect(page.locator("#crop-image")).to_have_css("filter", "none")
    # The buttons do the same as the keys; no label was sent by any of them.
    page.get_by_role("button", name="[ Darker").click()
    expect(page.locator("#crop-image")).to_have_css("filter", re.compile(r"brightness\(0\.75\)"))
    assert not Label.objects.exists()
