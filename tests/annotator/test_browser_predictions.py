"""In headless Chromium: an admin uploads a MegaDetector file with classifications and a
SpeciesNet file on the predictions page; a volunteer then sees both tools' predictions for the
crop being labelled, each named with its source, and labels with one of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label
from activelearn.services import round_start
from detector.models import Crop, ExternalModel
from projects.models import Project
from tests.annotator.external_world import MD_NAME, SN_VERSION, megadetector_file, speciesnet_file
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_imported_predictions_show_on_the_label_page_and_label_with_their_source(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    project = ingested_project
    project.species.filter(name="agouti").update(scientific_name="Dasyprocta punctata")
    page = browser_page
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{project.slug}/data/")
    with page.expect_navigation():
        page.click("#external-link a")
    for name, document in (
        ("md.json", megadetector_file(project)),
        ("speciesnet.json", speciesnet_file(project)),
    ):
        path = tmp_path / name
        path.write_text(json.dumps(document))
        page.set_input_files("#predictions-import input[type=file]", str(path))
        with page.expect_navigation():
            page.click("#predictions-import button[type=submit]")
        expect(page.locator(".message.success").first).to_contain_text("Imported")
    expect(page.locator("#external-models tbody tr")).to_have_count(2)
    assert ExternalModel.objects.filter(project=project).count() == 2

    open_round = round_start(project=project, user=admin_user, strategy="random", size=3)
    first = open_round.items.order_by("position").first()
    assert first is not None
    crop = Crop.objects.select_related("image").get(pk=first.crop_id)
    species = project.species.get(name="red fox" if "Red_Fox" in crop.image.file_name else "agouti")
    page.context.clear_cookies()
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{project.slug}/label/")
    expect(page.get_by_text(f"Crop {crop.pk} ·")).to_be_visible()
    block = page.locator("#external-suggestions")
    expect(block).to_contain_text("Other tools suggest")
    md_button = block.locator("button", has_text=MD_NAME).first
    expect(md_button).to_contain_text(species.name)
    expect(block.locator("button", has_text=f"SpeciesNet {SN_VERSION}").first).to_contain_text(
        species.name
    )
    rank = int(md_button.get_attribute("data-rank") or 0)
    with page.expect_navigation():
        md_button.click()
    label = Label.objects.get(crop=crop)
    assert (label.species_id, label.suggestion_rank) == (species.pk, rank)
    assert label.suggestions is not None and label.suggestions[rank - 1] == species.pk
