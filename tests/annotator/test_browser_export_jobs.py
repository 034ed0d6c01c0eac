"""An ecologist of a large project builds a Camtrap DP package in the background, in headless
Chromium: asks for it on the package form, sees it queued on the exports page, and, while a
real Celery worker builds it, watches the page until its download link appears; the
downloaded package validates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from annotator.models import ExportFile
from projects.models import Job, Project
from tests.annotator.test_camtrapdp import camtrap_dp_errors, give_times, unpack
from tests.annotator.test_exports import build_scenario
from tests.conftest import browser_login
from tests.processes import celery_worker_start, process_stop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_ecologist_builds_a_camtrap_dp_file_and_downloads_it_when_done(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    worker_queue: str,
    settings: Any,
    tmp_path: Path,
) -> None:
    give_times(ingested_project)
    build_scenario(ingested_project, admin_user, volunteer)
    slug = ingested_project.slug
    # "Large": more images than may be exported in a request.
    settings.TRAPWISE_EXPORT_DIRECT_MAX_IMAGES = 10
    page = browser_page
    browser_login(page, live_server, ecologist)
    page.goto(f"{live_server.url}/p/{slug}/exports/")
    expect(page.locator("#exports")).to_contain_text("COCO Camera Traps JSON (built as a file")
    expect(page.locator("#export-files-none")).to_be_visible()
    with page.expect_navigation():
        page.click("#exports a:has-text('Camtrap DP package')")
    page.fill("input[name=latitude]", "38.6")
    page.fill("input[name=longitude]", "-92.1")
    page.fill("input[name=utc_offset]", "-05:00")
    with page.expect_navigation():
        page.click("button:has-text('Build the Camtrap DP file')")
    expect(page.locator("text=the file is being built")).to_be_visible()
    record = ExportFile.objects.get(project=ingested_project)
    row = page.locator(f"#export-file-{record.pk}")
    expect(row).to_contain_text("Camtrap DP package")
    expect(row).to_contain_text("queued")
    expect(row.locator("a:has-text('Download')")).to_have_count(0)

    log = tmp_path / "worker.log"
    worker = celery_worker_start(queue=worker_queue, log=log)
    try:
        # The page reloads itself while the file is being built, until the link shows.
        expect(row.locator("a:has-text('Download')")).to_be_visible(timeout=120_000)
    finally:
        process_stop(worker)
        print(log.read_text()[-3000:])
    expect(row).to_contain_text("done")
    with page.expect_download() as info:
        row.locator("a:has-text('Download')").click()
    download = info.value
    assert download.suggested_filename == f"{slug}-camtrap-dp.zip"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert camtrap_dp_errors(unpack(target.read_bytes(), tmp_path / "package")) == []
    assert Job.objects.get(pk=record.job_id).status == Job.Status.DONE
