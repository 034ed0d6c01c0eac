"""The event label page in headless Chromium: a volunteer labels a capture event with one key,
splits one with "these differ", and undoes an event's answer with one key."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from activelearn.models import Label, LabelOrigin
from activelearn.services import round_start
from projects.models import Project
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _shown(page: Any) -> list[int]:
    return [
        int(v)
        for v in page.locator("input[name=crop_ids]").evaluate_all(
            "inputs => inputs.map(i => i.value)"
        )
    ]


def test_volunteer_labels_a_capture_event_with_one_key(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    project = ingested_project
    round_start(project=project, user=admin_user, size=2, unit="event")
    page = browser_page
    browser_login(page, live_server, volunteer)
    # The crop-by-crop page sends an event round's volunteers to the event page.
    page.goto(f"{live_server.url}/p/{project.slug}/label/")
    expect(page.locator("h1")).to_have_text("What is in this capture event?")
    shown = _shown(page)
    assert len(shown) > 1
    expect(page.locator("#event-crops img")).to_have_count(len(shown))
    assert page.locator(".event-frames img").count() >= 1
    species = project.species.order_by("position", "name").first()
    assert species is not None
    with page.expect_navigation():
        page.keyboard.press("1")
    labels = list(Label.objects.filter(user=volunteer))
    assert sorted(lab.crop_id for lab in labels) == sorted(shown)
    assert {(lab.species_id, lab.origin) for lab in labels} == {(species.pk, LabelOrigin.EVENT)}
    assert len({lab.decision for lab in labels}) == 1
    # The next event is shown; z undoes the whole first answer.
    expect(page.locator("#undo-form")).to_contain_text("on a whole event")
    second = _shown(page)
    assert second and not set(second) & set(shown)
    with page.expect_navigation():
        page.keyboard.press("z")
    assert not Label.objects.filter(user=volunteer, undone_at__isnull=True).exists()
    expect(page.locator("h1")).to_have_text("What is in this capture event?")
    assert sorted(_shown(page)) == sorted(shown)


def test_these_differ_labels_the_event_crop_by_crop(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    project = ingested_project
    round_start(project=project, user=admin_user, size=1, unit="event")
    page = browser_page
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{project.slug}/label/event/")
    event = _shown(page)
    with page.expect_navigation():
        page.keyboard.press("d")
    expect(page.locator("h1")).to_have_text("What is in this crop?")
    first = _shown(page)
    assert len(first) == 1 and first[0] in event
    with page.expect_navigation():
        page.keyboard.press("n")
    label = Label.objects.get(user=volunteer)
    assert (label.crop_id, label.kind, label.origin) == (first[0], "not_animal", LabelOrigin.VOTE)
    # Still one crop at a time, another crop of the same event.
    expect(page.locator("h1")).to_have_text("What is in this crop?")
    nxt = _shown(page)
    assert len(nxt) == 1 and nxt[0] in event and nxt != first
