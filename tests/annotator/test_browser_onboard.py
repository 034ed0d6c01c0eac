"""A site user starts a project in headless Chromium: creates it, picks a folder of the import
roots in the folder browser, starts the import, and watches the job go from queued to done
(with its image count) without reloading, while a real Celery worker runs it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from playwright.sync_api import expect

from detector.models import ImageImport
from projects.models import Image, Job, Membership, Project, Role
from tests.conftest import browser_login
from tests.processes import app_env, celery_worker_start, process_stop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IMAGES = 6


@pytest.fixture
def import_root(settings: Any, tmp_path: Path, sample_dir: Path) -> Path:
    """An import root with ``cams/fox``: a copy of a few of the sample's images."""
    root = tmp_path / "roots"
    folder = root / "cams" / "fox"
    folder.mkdir(parents=True)
    for image in sorted((sample_dir / "images" / "Red_Fox").rglob("*.JPG"))[:IMAGES]:
        shutil.copy(image, folder / image.name)
    (root / "empty").mkdir()
    settings.TRAPWISE_IMPORT_ROOTS = [root]
    return root


def test_site_user_creates_a_project_and_imports_a_folder_with_progress(
    browser_page: Any,
    live_server: Any,
    outsider: User,
    import_root: Path,
    worker_queue: str,
    tmp_path: Path,
) -> None:
    outsider.user_permissions.add(Permission.objects.get(codename="add_project"))
    page = browser_page
    browser_login(page, live_server, outsider)
    with page.expect_navigation():
        page.click("#project-new-link")
    page.fill("input[name=name]", "Fox cams")
    # Boxes would come from an imported file: none is given, so nothing detects afterwards and
    # the worker only imports.
    page.select_option("select[name=detector]", "imported")
    page.fill("input[name=detection_threshold]", "0.3")
    with page.expect_navigation():
        page.click("button:has-text('Create project')")
    project = Project.objects.get(name="Fox cams")
    assert Membership.objects.get(project=project, user=outsider).role == Role.ADMIN
    assert (project.detector, project.detection_threshold) == ("imported", 0.3)
    assert page.url.endswith(f"/p/{project.slug}/import/")
    expect(page.locator("text=Project Fox cams created")).to_be_visible()

    # The folder browser: the root's folders with their image counts, then one level down.
    expect(page.locator("#folders")).to_contain_text(f"cams {IMAGES} images")
    with page.expect_navigation():
        page.click("#folders a:has-text('cams')")
    with page.expect_navigation():
        page.click("#folders a:has-text('fox')")
    expect(page.locator("#folder-here")).to_contain_text(f"{IMAGES} images in it and below")
    with page.expect_navigation():
        page.click("button:has-text('Import this folder')")
    expect(page.locator("text=Import of fox queued.")).to_be_visible()
    # Queued: no worker runs yet, so the job waits in the running list with its progress.
    running = page.locator("#jobs [data-job]")
    expect(running).to_contain_text("Importing images")
    expect(running).to_contain_text("queued")
    expect(running).to_contain_text(f"0 / {IMAGES} (0%)")
    expect(running.locator("progress")).to_have_attribute("max", str(IMAGES))
    record = ImageImport.objects.get(project=project)
    assert Path(record.folder) == (import_root / "cams" / "fox").resolve()

    page.evaluate("window.notReloaded = true")
    log = tmp_path / "worker.log"
    worker = celery_worker_start(
        queue=worker_queue,
        log=log,
        env=app_env(TRAPWISE_IMPORT_ROOTS=str(settings.TRAPWISE_IMPORT_ROOTS[0])),
    )
    try:
        # dashboard.js polls status.json: the finished job moves to the recent list, counted.
        done = page.locator("#recent-jobs [data-job]").first
        expect(done).to_contain_text("Importing images", timeout=120_000)
        expect(done).to_contain_text("done")
        expect(done).to_contain_text(f"{IMAGES} / {IMAGES}")
        expect(done).to_contain_text(f"{IMAGES} images added, 0 already there")
        expect(page.locator("#jobs")).to_contain_text("Nothing is running.")
    finally:
        process_stop(worker)
        print(log.read_text()[-3000:])
    assert page.evaluate("window.notReloaded") is True
    job = Job.objects.get(pk=record.job_id)
    assert (job.status, job.done, job.total) == (Job.Status.DONE, IMAGES, IMAGES)
    assert Image.objects.filter(project=project).count() == IMAGES
