"""Species with a taxonomy in headless Chromium: an admin uploads a species CSV on the species
page and sees the hierarchy; a volunteer answers with a higher taxon on the labelling page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label
from activelearn.services import round_start
from projects.models import Project
from projects.services_taxonomy import species_import
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSV = (
    "scientific_name,common_name,rank,parent\n"
    "Rodentia,rodent,order,\n"
    "Dasyprocta punctata,agouti;Central American agouti,species,Rodentia\n"
    "Vulpes vulpes,red fox;renard,species,\n"
)


def test_admin_uploads_a_species_csv_and_sees_the_hierarchy(
    browser_page: Any, live_server: Any, ingested_project: Project, admin_user: User, tmp_path: Path
) -> None:
    page = browser_page
    csv_file = tmp_path / "species.csv"
    csv_file.write_text(CSV, encoding="utf-8")
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/species/")
    page.set_input_files("#species-import input[type=file]", str(csv_file))
    with page.expect_navigation():
        page.click("#species-import button[type=submit]")
    page.wait_for_selector("text=Species CSV imported: 1 created, 2 updated.")
    agouti = page.locator("#species tr[data-species='agouti']")
    assert agouti.locator("td.parent").inner_text() == "rodent"
    assert "Dasyprocta punctata" in agouti.inner_text()
    assert "Central American agouti" in agouti.inner_text()
    assert page.locator("#species tr[data-species='rodent']").get_attribute("data-rank") == "order"
    # The taxonomy form checks the hierarchy too: the rodent made a species would rank no
    # higher than the agouti below it, so the change is refused and nothing changes.
    rodent = page.locator("#species tr[data-species='rodent']")
    rodent.locator("summary").click()
    rodent.locator("select[name=rank]").select_option("species")
    with page.expect_navigation():
        rodent.locator("button:has-text('Save taxonomy')").click()
    page.wait_for_selector("text=Taxonomy not changed")
    assert "cannot have" in page.locator(".message").first.inner_text()
    assert ingested_project.species.get(name="rodent").rank == "order"


def test_volunteer_answers_with_a_higher_taxon(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    species_import(project=ingested_project, text=CSV)
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    first = open_round.items.order_by("position").first()
    assert first is not None
    page = browser_page
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/label/")
    page.wait_for_selector(f"text=Crop {first.crop_id}")
    rodent = page.locator("#species-list button", has_text="rodent")
    assert rodent.inner_text() == "rodent (order, if unsure)"
    # The search finds a species by its scientific name and other common names too.
    page.keyboard.press("/")
    page.keyboard.type("renard")
    assert page.locator("#species-list button.first-match").inner_text() == "red fox"
    page.fill("#species-search", "")
    page.keyboard.type("rodent")
    assert page.locator("#species-list button:visible").count() == 1
    with page.expect_navigation():
        page.keyboard.press("Enter")
    label = Label.objects.select_related("species").get()
    assert label.species is not None and label.crop_id == first.crop_id
    assert (label.species.name, label.species.rank) == ("rodent", "order")
