"""An admin invites a volunteer by link; the volunteer signs up in another browser and labels
(issue 18's "Done when")."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label
from activelearn.services import round_start
from projects.models import Membership, Project, Role
from tests.conftest import PASSWORD, browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_invites_a_volunteer_who_signs_up_and_labels(
    browser_page: Any, live_server: Any, ingested_project: Project, admin_user: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    first = open_round.items.order_by("position").first()
    assert first is not None
    page = browser_page
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/members/")
    page.select_option("#invitation-create select[name=role]", "volunteer")
    page.fill("#invitation-create input[name=days]", "3")
    page.fill("#invitation-create input[name=max_uses]", "1")
    with page.expect_navigation():
        page.click("#invitation-create button[type=submit]")
    link = page.input_value("#invitation-link")
    assert link.startswith(f"{live_server.url}/invite/")
    assert page.locator("#open-invitations").inner_text().count("0 of 1") == 1

    # The volunteer: a browser of their own (no cookies shared with the admin's).
    volunteer_context = page.context.browser.new_context()
    try:
        guest = volunteer_context.new_page()
        guest.goto(link)
        guest.wait_for_selector(f"text=You are invited to {ingested_project.name}")
        with guest.expect_navigation():
            guest.click("#invitation a:has-text('Sign up')")
        guest.fill("#signup input[name=username]", "vera")
        guest.fill("#signup input[name=email]", "vera@example.org")
        guest.fill("#signup input[name=password1]", PASSWORD)
        guest.fill("#signup input[name=password2]", PASSWORD)
        with guest.expect_navigation():
            guest.click("#signup button[type=submit]")
        assert guest.url == link  # back on the invitation, logged in
        with guest.expect_navigation():
            guest.click("text=Accept and join as vera")
        assert guest.url == f"{live_server.url}/p/{ingested_project.slug}/"
        guest.wait_for_selector(f"text=Welcome to {ingested_project.name}")
        vera = User.objects.get(username="vera")
        assert Membership.objects.get(project=ingested_project, user=vera).role == Role.VOLUNTEER

        guest.goto(f"{live_server.url}/p/{ingested_project.slug}/label/")
        guest.wait_for_selector("text=What is in this crop?")
        with guest.expect_navigation():
            guest.keyboard.press("1")
        guest.wait_for_selector("text=What is in this crop?")
        label = Label.objects.get(user=vera)
        species = ingested_project.species.order_by("position", "name").first()
        assert label.species == species
        assert label.crop_id in set(open_round.items.values_list("crop_id", flat=True))
    finally:
        volunteer_context.close()

    # The admin sees the link used up: no longer among the open invitations.
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/members/")
    assert page.locator("#open-invitations").count() == 0
    assert "vera" in page.locator("#members").inner_text()
