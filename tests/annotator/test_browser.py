"""The labelling page in headless Chromium: a volunteer labels a crop with a hotkey."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label, Round
from activelearn.services import round_start
from detector.models import Crop
from projects.models import Project
from tests.conftest import PASSWORD, browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The zoom's transform origin on the full image, in percent of its size.
ZOOM_ORIGIN_PERCENT = """() => {
  const boxed = document.querySelector("#zoom-frame .boxed");
  const size = boxed.getBoundingClientRect();
  const [x, y] = getComputedStyle(boxed).transformOrigin.split(" ").map(parseFloat);
  return [x / size.width * 100, y / size.height * 100];
}"""


def test_volunteer_labels_with_hotkey(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=3)
    first = open_round.items.order_by("position").first()
    assert first is not None
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", volunteer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/label/")
    page.wait_for_selector(f"text=Crop {first.crop_id}")
    assert page.locator("#crop-image").evaluate("img => img.naturalWidth") > 0
    # The box is drawn where the detection is, and the zoom centres on it: both without a
    # style attribute, which the Content-Security-Policy refuses (label.js sets the centre).
    detection = Crop.objects.get(pk=first.crop_id).detection
    line = page.locator("#zoom-frame svg.box rect.box-line")
    assert [float(line.get_attribute(a) or "nan") for a in ("x", "y", "width", "height")] == (
        pytest.approx(
            [detection.x * 100, detection.y * 100, detection.w * 100, detection.h * 100], abs=0.001
        )
    )
    page.evaluate("async () => await document.getElementById('full-image').decode()")
    origin = page.evaluate(ZOOM_ORIGIN_PERCENT)
    centre = [(detection.x + detection.w / 2) * 100, (detection.y + detection.h / 2) * 100]
    assert origin == pytest.approx(centre, abs=0.5)
    species = ingested_project.species.order_by("position", "name").first()
    assert species is not None
    with page.expect_navigation():
        page.keyboard.press("1")
    page.wait_for_selector("text=What is in this crop?")
    label = Label.objects.get()
    assert (label.crop_id, label.species, label.user) == (first.crop_id, species, volunteer)
    assert Round.objects.get().status == Round.Status.OPEN


def test_type_ahead_then_undo_with_keys(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    first = open_round.items.order_by("position").first()
    assert first is not None
    agouti = ingested_project.species.get(name="agouti")
    page = browser_page
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/label/")
    page.wait_for_selector(f"text=Crop {first.crop_id}")
    page.keyboard.press("/")
    page.keyboard.type("agou")
    # Only matching species stay visible, and the first match is marked.
    assert page.locator("#species-list button:visible").count() == 1
    assert page.locator("#species-list button.first-match").inner_text() == "agouti"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    label = Label.objects.get()
    assert (label.crop_id, label.species, label.undone_at) == (first.crop_id, agouti, None)
    page.wait_for_selector("text=My labels today: 1")
    assert page.locator("#crop-image").get_attribute("alt") != f"Crop {first.crop_id}"
    with page.expect_navigation():
        page.keyboard.press("z")
    page.wait_for_selector(f"text=Undone: agouti on crop {first.crop_id}")
    # The undone crop is shown again, to be labelled anew; the label row is kept.
    assert page.locator("#crop-image").get_attribute("alt") == f"Crop {first.crop_id}"
    label.refresh_from_db()
    assert label.undone_at is not None and Label.objects.count() == 1
    page.wait_for_selector("text=My labels today: 0")


def test_grid_batch_label_with_click_and_shift_click(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    from activelearn.models import Consensus

    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=8)
    fox = ingested_project.species.get(name="red fox")
    page = browser_page
    browser_login(page, live_server, volunteer)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/label/grid/")
    tiles = page.locator(".tile")
    assert tiles.count() == 8
    shown = [int(t.get_attribute("data-crop")) for t in tiles.all()]
    assert sorted(shown) == sorted(open_round.items.values_list("crop_id", flat=True))
    tiles.nth(1).click()
    tiles.nth(4).click(modifiers=["Shift"])  # selects tiles 1 to 4
    tiles.nth(6).click()
    tiles.nth(6).click()  # and unselects 6 again
    page.wait_for_selector("text=4 selected")
    page.select_option("#grid-choice", f"species:{fox.pk}")
    with page.expect_navigation():
        page.click("#grid-submit")
    page.wait_for_selector("text=Labelled 4 crops.")
    done = set(
        Consensus.objects.filter(species=fox, status="done").values_list("crop_id", flat=True)
    )
    assert done == set(shown[1:5])
    assert set(Label.objects.values_list("user__username", flat=True)) == {volunteer.username}
    # The labelled crops have left the grid; the other four are still offered.
    assert page.locator(".tile").count() == 4


# Names of elements reaching past the window's right edge: the failure message of the fit test.
WIDE_ELEMENTS = """Array.from(document.querySelectorAll('*'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .map(e => e.tagName + '.' + e.className).slice(0, 8).join(' ')"""


@pytest.mark.parametrize("width,height", [(1366, 768), (768, 1024)], ids=["laptop", "tablet"])
def test_labelling_page_fits_laptop_and_tablet(
    width: int,
    height: int,
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    page = browser_page
    page.set_viewport_size({"width": width, "height": height})
    browser_login(page, live_server, volunteer)
    for path in ("label/", "label/grid/"):
        page.goto(f"{live_server.url}/p/{ingested_project.slug}/{path}")
        # No sideways scrolling, and the choices are large enough to tap.
        wide = page.evaluate(WIDE_ELEMENTS)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, wide
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/label/")
    box = page.locator("button[data-key='n']").bounding_box()
    assert box is not None and box["height"] >= 44 and box["x"] + box["width"] <= width
    assert page.locator("#crop-image").bounding_box()["width"] > width / 4
