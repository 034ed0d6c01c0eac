"""Attributes in headless Chromium: a volunteer ticks one with its key, then labels with 1."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label
from activelearn.services import round_start
from projects.models import Project
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_volunteer_ticks_attributes_with_their_keys(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    first = open_round.items.order_by("position").first()
    assert first is not None
    eating = ingested_project.attributes.get(name="eating")
    standing = ingested_project.attributes.get(name="standing")
    page = browser_page
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/label/")
    page.wait_for_selector(f"text=Crop {first.crop_id}")
    box = page.locator(f'input[data-attribute-key="{eating.key}"]')
    assert not box.is_checked()
    page.keyboard.press(eating.key)
    assert box.is_checked()
    # Pressed twice, a key unticks again; a click ticks too, and keys still work after it.
    page.keyboard.press(standing.key)
    page.keyboard.press(standing.key)
    page.click(f'label:has(input[data-attribute-key="{standing.key}"])')
    assert page.locator(f'input[data-attribute-key="{standing.key}"]').is_checked()
    species = ingested_project.species.order_by("position", "name").first()
    assert species is not None
    with page.expect_navigation():
        page.keyboard.press("1")
    page.wait_for_selector("text=My labels today: 1")
    label = Label.objects.get()
    assert (label.crop_id, label.species, label.user) == (first.crop_id, species, volunteer)
    assert label.attributes == sorted([eating.pk, standing.pk])
    # The next crop starts with every toggle off.
    assert page.locator("#attributes input:checked").count() == 0
