"""A volunteer checks the detector's empties in headless Chromium: answers the sample, finds
an animal, drags its box on the image; the box becomes a crop with human provenance, cut and
queued for embedding, then embedded by the task the worker runs."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import expect

from activelearn.models import EmptyCheck
from activelearn.services.empties import empty_sample_draw
from detector.models import Crop, Detection
from embeddings.models import EmbeddingVersion
from embeddings.pipeline import CROPS_EMBED_TASK, project_crops_embed
from embeddings.selectors import embedding_vectors_load
from projects.models import Image, Project, QueuedTask
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _drag(page: Any, selector: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag with the mouse from ``start`` to ``end`` (fractions of the element's box)."""
    box = page.locator(selector).bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"], steps=4)
    page.mouse.move(box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"], steps=4)
    page.mouse.up()


def test_volunteer_answers_the_empties_and_draws_a_missed_animal(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    project = ingested_project
    empties = Image.objects.filter(project=project, is_empty=True)
    assert empties.count() >= 2
    checks = empty_sample_draw(project=project, user=admin_user, size=2, seed=5)
    first, second = checks
    crops_before = Crop.objects.filter(project=project).count()
    page = browser_page
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{project.slug}/empties/")
    expect(page.locator("#missed-rate-none")).to_be_visible()
    # First image: no animal.
    with page.expect_navigation():
        page.click("#answer-no")
    # Second image: an animal the detector missed; the box page opens.
    with page.expect_navigation():
        page.click("#answer-yes")
    assert f"/images/{second.image_id}/boxes/" in page.url
    expect(page.locator("#box-image")).to_be_visible()
    _drag(page, "#box-image", (0.2, 0.3), (0.6, 0.7))
    expect(page.locator("#box-w")).not_to_have_value("")
    with page.expect_navigation():
        page.click("#box-save")
    expect(page.locator("#box-list li")).to_have_count(1)
    assert "drawn by vic" in page.locator("#box-list").inner_text()

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.has_animal, first.answered_by_id) == (False, volunteer.pk)
    assert (second.has_animal, second.answered_by_id) == (True, volunteer.pk)
    detection = Detection.objects.get(image_id=second.image_id)
    assert detection.drawn_by_id == volunteer.pk and detection.drawn_at is not None
    assert detection.detector_version == Detection.HUMAN
    assert detection.x == pytest.approx(0.2, abs=0.02) and detection.w == pytest.approx(
        0.4, abs=0.02
    )
    assert detection.y == pytest.approx(0.3, abs=0.02) and detection.h == pytest.approx(
        0.4, abs=0.02
    )
    crop = Crop.objects.get(detection=detection)
    assert crop.active and crop.project_id == project.pk
    assert Crop.objects.filter(project=project).count() == crops_before + 1
    image = Image.objects.get(pk=second.image_id)
    assert (image.is_empty, image.count) == (False, 1)
    # The crop file is cut, and its embedding is queued through the outbox.
    assert (settings.MEDIA_ROOT / crop.file).is_file()
    assert QueuedTask.objects.filter(name=CROPS_EMBED_TASK, args=[project.pk]).exists()
    # What the worker runs: the crop joins the current embedding version.
    version = EmbeddingVersion.objects.filter(project=project).latest("number")
    ids, _ = embedding_vectors_load(version=version)
    assert crop.pk not in ids.tolist()
    assert project_crops_embed(project_id=project.pk) == version.number
    version.refresh_from_db()
    ids, _ = embedding_vectors_load(version=version)
    assert crop.pk in ids.tolist()
    # The dashboard block counts the answers: 1 missed of 2 checked.
    page.goto(f"{live_server.url}/p/{project.slug}/empties/")
    expect(page.locator("#missed-rate")).to_have_text("0.500")
    assert EmptyCheck.objects.filter(project=project, has_animal__isnull=True).count() == 0


def test_box_is_wrong_from_the_label_page_redraws_by_drag_and_drop_removes(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    from activelearn.services import round_start

    project = ingested_project
    round_start(project=project, user=admin_user, strategy="random", size=3)
    page = browser_page
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{project.slug}/label/")
    crop_id = int(page.locator("#crop-image").get_attribute("alt").split()[-1])  # "Crop <id>"
    crop = Crop.objects.select_related("detection").get(pk=crop_id)
    with page.expect_navigation():
        page.click("#box-wrong")
    assert f"/images/{crop.image_id}/boxes/?crop={crop_id}" in page.url
    n_boxes = page.locator("#box-list li").count()
    page.click(f"#box-{crop.detection_id} .box-redraw")
    expect(page.locator("#draw-title")).to_contain_text("Redraw")
    _drag(page, "#box-image", (0.1, 0.1), (0.3, 0.4))
    expect(page.locator("#box-replaces")).to_have_value(str(crop.detection_id))
    with page.expect_navigation():
        page.click("#box-save")
    expect(page.locator("#box-list li")).to_have_count(n_boxes)  # one replaced by another
    old = Detection.objects.get(pk=crop.detection_id)
    assert old.dropped_by_id == volunteer.pk
    new = Detection.objects.get(replaces=old)
    assert new.drawn_by_id == volunteer.pk and new.crop.active
    # Drop the new box: no animal there.
    with page.expect_navigation():
        page.click(f"#drop-{new.pk}")
    expect(page.locator("#box-list li")).to_have_count(n_boxes - 1)
    new.refresh_from_db()
    assert new.dropped_by_id == volunteer.pk
    assert Image.objects.get(pk=crop.image_id).count == n_boxes - 1
