"""Shared fixtures: the three users every role test needs, and a small real project."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import ClassifierVersion
from annotator.demo import SAMPLE_DIR
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from projects.models import Project, Role
from tests.s3 import s3_server, s3_storage  # noqa: F401 - fixtures for every test module

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
    """The bundled demo sample: 209 real missouri-dev images in 21 sequences, 203 boxes."""
    return SAMPLE_DIR


@pytest.fixture
def project(admin_user: User, volunteer: User, ecologist: User) -> Project:
    """An empty project with an admin, a volunteer and an ecologist (the outsider is no member)."""
    from projects.services import membership_set, project_create

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
    from embeddings.pipeline import folder_ingest

    folder_ingest(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    return project


def label_by_truth(project: Project, user: User, crops: Iterable[Crop]) -> None:
    """Label ``crops`` of the small folder with their true species (fox or agouti), as
    ``user``'s votes but not through the labelling queue (``labels_import``: no claims)."""
    from activelearn.services import labels_import

    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    for crop in crops:
        species = fox if "Red_Fox" in crop.image.file_name else agouti
        labels_import(
            project=project, crop_ids=[crop.pk], user=user, kind="species", species_id=species.pk
        )


def serve(project: Project, user: User, crop_ids: Iterable[int]) -> None:
    """Claim ``crop_ids`` of the open round for ``user``, as if the queue had served them
    (a vote through ``label_submit`` counts only on a crop its user holds)."""
    from activelearn.selectors import round_open_get
    from activelearn.services.claims import claims_create

    open_round = round_open_get(project=project)
    assert open_round is not None, "a vote needs an open round"
    claims_create(round_=open_round, user=user, crop_ids=list(crop_ids))


def hold(project: Project, user: User, crop_ids: Iterable[int]) -> None:
    """``user`` holds ``crop_ids``: an open round taking every crop of ``project`` is started if
    none is open, then the crops are served to ``user`` (a vote needs a claim)."""
    from activelearn.selectors import round_open_get
    from activelearn.services import round_start

    if round_open_get(project=project) is None:
        round_start(
            project=project, user=project.created_by, strategy="random", size=project.crops.count()
        )
    serve(project, user, crop_ids)


@pytest.fixture
def worker_queue() -> Iterator[str]:
    """Celery queues of the test's own, named after the name this yields (one per kind of work,
    ``tests.processes.worker_queues``): what the test queues goes only to workers it starts."""
    from django.conf import settings

    from annotator.celery import app
    from tests.processes import worker_queues

    queue = f"trapwise-test-{uuid.uuid4().hex[:8]}"
    queues = worker_queues(queue)
    routes, default = app.conf.task_routes, app.conf.task_default_queue
    # Through update(), which makes the app rebuild its router (an assignment would not).
    app.conf.update(
        task_routes={
            name: {"queue": queues[kind]} for name, kind in settings.TRAPWISE_TASK_KINDS.items()
        },
        task_default_queue=queues["cpu"],
    )
    try:
        yield queue
    finally:
        app.conf.update(task_routes=routes, task_default_queue=default)


@pytest.fixture
def celery_worker_process(worker_queue: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker on the configured broker and the test database, on ``worker_queue``."""
    from tests.processes import celery_worker_start, process_stop

    log = tmp_path / "worker.log"
    worker = celery_worker_start(queue=worker_queue, log=log)
    try:
        yield worker
    finally:
        process_stop(worker)
        print(log.read_text()[-3000:])


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


def session_login(base_url: str, user: User) -> Any:
    """A ``requests`` session logged in as ``user`` through the login form of the server at
    ``base_url`` (a live_server's url), as a browser would: for tests that attack over HTTP."""
    import requests

    session = requests.Session()
    session.get(f"{base_url}/accounts/login/")
    login = session.post(
        f"{base_url}/accounts/login/",
        data={
            "username": user.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        allow_redirects=False,
    )
    assert login.status_code == 302, login.text
    return session


@pytest.fixture
def foreign(admin_user: User, volunteer: User) -> tuple[Project, Any, Crop]:
    """A second project, run by the same admin with the same volunteer: (project, species, crop).

    For refusals: a label naming its crop or its species in the first project must fail.
    """
    from detector.models import Detection
    from projects.models import Image, Species
    from projects.services import membership_set, project_create

    other = project_create(name="Foreign traps", created_by=admin_user)
    membership_set(project=other, user=volunteer, role=Role.VOLUNTEER)
    species = Species.objects.create(project=other, name="wolf", position=0)
    image = Image.objects.create(
        project=other, path="/foreign/a.jpg", file_name="a.jpg", width=64, height=64
    )
    detection = Detection.objects.create(
        image=image, x=0.1, y=0.1, w=0.5, h=0.5, confidence=0.9, detector_version="test"
    )
    crop = Crop.objects.create(
        project=other, image=image, detection=detection, file="crops/foreign.jpg", padding=0.1
    )
    return other, species, crop


def classifier_by_hand(
    project: Project, *, threshold: float | None, number: int = 1
) -> ClassifierVersion:
    """A READY classifier version on the project's embedding (its predictions are set by hand)."""
    embedding = EmbeddingVersion.objects.filter(project=project).latest("number")
    return ClassifierVersion.objects.create(
        project=project,
        number=number,
        embedding_version=embedding,
        last_label_id=0,
        n_labels=0,
        n_classes=2,
        seed=0,
        path=f"classifiers/test{number}",
        threshold=threshold,
    )
