"""An ecologist downloads every export from the project page in headless Chromium.

Each downloaded file is parsed and checked against the database: the same crops, images,
events, boxes and labels, and a Camtrap DP package that validates.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Q

from detector.models import Crop
from projects.models import Image, Project
from tests.annotator.test_camtrapdp import camtrap_dp_errors, give_times, read_csv, unpack
from tests.annotator.test_exports import Scenario, build_scenario
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _download(page: Any, link: Any, folder: Path) -> tuple[str, Path]:
    with page.expect_download() as info:
        link.click()
    download = info.value
    target = folder / download.suggested_filename
    download.save_as(target)
    return download.suggested_filename, target


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_ecologist_downloads_every_export(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    tmp_path: Path,
) -> None:
    give_times(ingested_project)
    scenario: Scenario = build_scenario(ingested_project, admin_user, volunteer)
    project, crops, slug = scenario.project, scenario.crops, scenario.project.slug
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", ecologist.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/p/{slug}/exports/")
    exports = page.locator("#exports")
    assert exports.locator("a").count() == 6

    name, path = _download(page, exports.get_by_role("link", name="Crops CSV"), tmp_path)
    assert name == f"{slug}-crops.csv"
    rows = _csv(path)
    exported = Crop.objects.filter(project=project).filter(
        Q(active=True) | Q(consensus__isnull=False)
    )
    assert {int(r["crop_id"]) for r in rows} == set(exported.values_list("pk", flat=True))
    f1 = next(r for r in rows if r["crop_id"] == str(crops["F1"].pk))
    assert (f1["human_label"], f1["consensus_status"], f1["labelled_by"]) == (
        "red fox",
        "done",
        volunteer.username,
    )
    assert (f1["machine_label"], f1["final_label"], f1["label_source"]) == (
        "agouti",
        "red fox",
        "human",
    )

    name, path = _download(page, exports.get_by_role("link", name="Images CSV"), tmp_path)
    assert name == f"{slug}-images.csv"
    images = {int(r["image_id"]): r for r in _csv(path)}
    assert set(images) == set(Image.objects.filter(project=project).values_list("pk", flat=True))
    assert (images[crops["F2"].image_id]["species"], images[crops["F2"].image_id]["counts"]) == (
        "red fox",
        "2",
    )
    empty = set(Image.objects.filter(project=project, is_empty=True).values_list("pk", flat=True))
    assert {i for i, r in images.items() if r["is_empty"] == "1"} == empty

    name, path = _download(page, exports.get_by_role("link", name="Events CSV"), tmp_path)
    assert name == f"{slug}-events.csv"
    events = {r["event_id"]: r for r in _csv(path)}
    seqs = set(Image.objects.filter(project=project).values_list("seq_id", flat=True))
    assert set(events) == seqs
    assert (events["SEQ75179"]["species"], events["SEQ75179"]["counts"]) == ("red fox", "2")

    name, path = _download(
        page, exports.get_by_role("link", name="COCO Camera Traps JSON"), tmp_path
    )
    assert name == f"{slug}-coco.json"
    coco = json.loads(path.read_text())
    assert {i["file_name"] for i in coco["images"]} == set(
        Image.objects.filter(project=project).values_list("file_name", flat=True)
    )
    boxed = {a["id"] for a in coco["annotations"] if "bbox" in a}
    animals = exported.exclude(pk=crops["A2"].pk)  # people said A2 is not an animal
    assert boxed == {f"crop-{pk}" for pk in animals.values_list("pk", flat=True)}

    name, path = _download(page, exports.get_by_role("link", name="Metrics JSON"), tmp_path)
    assert name == f"{slug}-metrics.json"
    report = json.loads(path.read_text())
    assert report["project"] == slug
    assert report["effort_saved"]["empty_images"] == len(empty)

    exports.get_by_role("link", name="Camtrap DP package").click()
    page.wait_for_selector("#camtrap-form")
    page.fill("input[name=latitude]", "38.6")
    page.fill("input[name=longitude]", "-92.1")
    page.fill("input[name=utc_offset]", "-05:00")
    name, path = _download(
        page, page.get_by_role("button", name="Download Camtrap DP (zip)"), tmp_path
    )
    assert name == f"{slug}-camtrap-dp.zip"
    folder = unpack(path.read_bytes(), tmp_path / "camtrap")
    assert camtrap_dp_errors(folder) == []
    assert {m["mediaID"] for m in read_csv(folder / "media.csv")} == {str(i) for i in images}
    observed = {o["observationID"] for o in read_csv(folder / "observations.csv")}
    assert {f"crop-{pk}" for pk in animals.values_list("pk", flat=True)} <= observed
