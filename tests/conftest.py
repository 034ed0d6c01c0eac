"""Shared fixtures: the three users every role test needs, and a small real project."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from annotator.demo import SAMPLE_DIR
from annotator.models import Project, Role
from detector.models import Crop

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _isolated_files(settings: object, tmp_path: Path) -> Iterator[None]:
    """Crops, embeddings and classifiers of each test go to its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"  # type: ignore[attr-defined]
    settings.TRAPWISE_DATA_DIR = tmp_path / "data"  # type: ignore[attr-defined]
    yield


@pytest.fixture
def admin_user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("ada", password=PASSWORD)


@pytest.fixture
def volunteer(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("vic", password=PASSWORD)


@pytest.fixture
def ecologist(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("eco", password=PASSWORD)


@pytest.fixture
def outsider(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("oscar", password=PASSWORD)


@pytest.fixture
def sample_dir() -> Path:
    """The bundled demo sample: 69 real missouri-dev images in 10 sequences, 68 boxes."""
    return SAMPLE_DIR


@pytest.fixture
def project(admin_user: User, volunteer: User, ecologist: User) -> Project:
    """An empty project with an admin, a volunteer and an ecologist (the outsider is no member)."""
    from annotator.services import membership_set, project_create

    project = project_create(
        name="Test traps", created_by=admin_user, seed=7, backbone="efficientnet_lite0"
    )
    membership_set(project=project, user=volunteer, role=Role.VOLUNTEER)
    membership_set(project=project, user=ecologist, role=Role.ECOLOGIST)
    return project


SMALL_SEQUENCES = ("Red_Fox/SEQ75179", "Agouti/SEQ75520")


@pytest.fixture
def small_folder(tmp_path: Path, sample_dir: Path) -> Path:
    """Two real sequences of the sample (15 images, 11 boxes) with the sample's COCO file."""
    import shutil

    folder = tmp_path / "traps"
    for seq in SMALL_SEQUENCES:
        shutil.copytree(sample_dir / "images" / seq, folder / "images" / seq)
    shutil.copy(sample_dir / "annotations.json", folder / "annotations.json")
    return folder


@pytest.fixture
def ingested_project(project: Project, small_folder: Path) -> Project:
    """``project`` with the small folder imported, boxes cropped and crops embedded."""
    from annotator.services import folder_ingest

    folder_ingest(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    return project


def label_by_truth(project: Project, user: User, crops: Iterable[Crop]) -> None:
    """Label ``crops`` of the small folder with their true species (fox or agouti)."""
    from activelearn.services import label_submit

    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    for crop in crops:
        species = fox if "Red_Fox" in crop.image.file_name else agouti
        label_submit(
            project=project, crop_id=crop.pk, user=user, kind="species", species_id=species.pk
        )


CHROMIUM = os.environ.get("TRAPWISE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A headless-Chromium page (Playwright's sync API); skips without Chromium/playwright."""
    from django.db import connection, connections

    if not shutil.which(CHROMIUM):
        pytest.skip(
            f"headless Chromium not found at {CHROMIUM}: `apt-get install chromium` "
            "(.ci/run does) or set TRAPWISE_CHROMIUM"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing"
    )
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # around it are still synchronous, so Django's async guard must be told.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # The live server's request threads must not keep connections open past the test, or the
    # test database cannot be dropped afterwards (PostgreSQL).
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()
            # ORM calls made while Playwright's loop runs get a connection of their own
            # context; close it too, for the same reason.
            connections.close_all()


def browser_login(page: Any, live_server: Any, user: User) -> None:
    """Log ``user`` in through the login form (every fixture user's password is PASSWORD)."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
