"""Labelling through a database restart and a broker outage, with real servers.

Each test starts its own servers (a private PostgreSQL or Redis on a port of its own, a Django
server, a Celery worker) and stops them itself; the machine's shared servers are not touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User

from activelearn.models import ClassifierVersion, Label, Prediction, Round
from activelearn.services import round_start
from annotator.api.services import api_token_create
from annotator.middleware import DATABASE_UNAVAILABLE
from projects.models import Job, Project, QueuedTask
from tests.conftest import PASSWORD
from tests.processes import (
    PrivatePostgres,
    app_env,
    celery_worker_start,
    free_port,
    process_stop,
    redis_server_start,
    wait_for,
    web_server_start,
    worker_queues_env,
)

pytestmark = pytest.mark.integration

# Only to detect a request that hangs, not a speed goal.
HANG_S = 10


class Volunteer:
    """Labels the open round of a project through the JSON API, as a client would: a fresh
    idempotency key per label, the same key again when retrying."""

    def __init__(self, *, base: str, slug: str, token: str) -> None:
        self.base, self.slug = base, slug
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        # crop id -> idempotency key of every label the server acknowledged (201).
        self.acknowledged: dict[int, str] = {}

    def next_crop(self) -> requests.Response:
        return self.http.get(f"{self.base}/api/v1/projects/{self.slug}/next", timeout=HANG_S)

    def label(self, crop_id: int, species_id: int, key: str) -> requests.Response:
        body: dict[str, Any] = {"crop_id": crop_id, "kind": "species", "species_id": species_id}
        response = self.http.post(
            f"{self.base}/api/v1/projects/{self.slug}/labels",
            json={**body, "idempotency_key": key},
            timeout=HANG_S,
        )
        if response.status_code == 201:
            self.acknowledged[crop_id] = key
        return response

    def label_next(self, truth: dict[int, int]) -> int | None:
        """Label the next crop served with its true species; its id, or None when none is left."""
        response = self.next_crop()
        assert response.status_code == 200, response.text
        crops = response.json()["crops"]
        if not crops:
            return None
        crop_id = int(crops[0]["crop_id"])
        labelled = self.label(crop_id, truth[crop_id], uuid.uuid4().hex)
        assert labelled.status_code == 201, labelled.text
        return crop_id


def _browser_login(base: str) -> requests.Session:
    """A volunteer's browser session (login form with its CSRF token)."""
    browser = requests.Session()
    browser.get(f"{base}/accounts/login/", timeout=HANG_S)
    response = browser.post(
        f"{base}/accounts/login/",
        data={
            "username": "vic",
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=HANG_S,
    )
    assert response.status_code == 200 and "vic" in response.text
    return browser


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(port=free_port())
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.remove()


def test_postgres_restart_during_labelling_fails_cleanly_and_resumes(
    private_postgres: PrivatePostgres, small_folder: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": private_postgres.url,
        "TRAPWISE_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "TRAPWISE_DATA_DIR": str(tmp_path / "data"),
        "CELERY_BROKER_URL": "filesystem://",
        **worker_queues_env(f"trapwise-test-{uuid.uuid4().hex[:8]}"),
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=settings.BASE_DIR, env=env, check=True)
    script = f"from tests.processes import labelling_project_setup as s; s({str(small_folder)!r})"
    setup = subprocess.run(
        [*manage, "shell", "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    project = json.loads(setup.stdout.strip().splitlines()[-1])
    truth = {int(crop): species for crop, species in project["truth"].items()}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "web.log"
    web = web_server_start(port=port, log=log, env=env)
    try:
        volunteer = Volunteer(base=base, slug=project["slug"], token=project["token"])
        browser = _browser_login(base)
        label_page = f"{base}/p/{project['slug']}/label/"
        assert browser.get(label_page, timeout=HANG_S).status_code == 200
        for _ in range(3):
            assert volunteer.label_next(truth) is not None
        # The crop the volunteer is looking at when the database goes (a vote needs a claim).
        pending = int(volunteer.next_crop().json()["crops"][0]["crop_id"])

        private_postgres.stop()
        served = volunteer.next_crop()
        assert served.status_code == 503, served.text
        assert served.json() == {"detail": DATABASE_UNAVAILABLE}
        assert served.headers["Retry-After"]
        retry_key = uuid.uuid4().hex
        refused = volunteer.label(pending, truth[pending], retry_key)
        assert refused.status_code == 503 and refused.json()["detail"] == DATABASE_UNAVAILABLE
        page = browser.get(label_page, timeout=HANG_S)
        assert page.status_code == 503 and "text/html" in page.headers["Content-Type"]
        assert "The database is unavailable" in page.text and "Traceback" not in page.text

        private_postgres.start()
        # The client retries the refused label with its key; then labelling goes on.
        assert volunteer.label(pending, truth[pending], retry_key).status_code == 201
        assert browser.get(label_page, timeout=HANG_S).status_code == 200
        while volunteer.label_next(truth) is not None:
            pass
    finally:
        process_stop(web)
        print(log.read_text()[-3000:])

    assert set(volunteer.acknowledged) == set(truth)
    import psycopg

    with psycopg.connect(private_postgres.url) as db:
        rows = db.execute(
            "SELECT crop_id, client_key FROM activelearn_label l JOIN auth_user u "
            "ON u.id = l.user_id WHERE u.username = 'vic'"
        ).fetchall()
        (status,) = db.execute("SELECT status FROM activelearn_round").fetchone() or ("",)
    # Every acknowledged label is stored exactly once, and nothing else is.
    assert sorted(rows) == sorted(
        (crop, f"{key}:{crop}") for crop, key in volunteer.acknowledged.items()
    )
    assert status == Round.Status.CLOSED


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    folder = tmp_path / "redis"
    server: dict[str, Any] = {
        "port": port,
        "folder": folder,
        "process": redis_server_start(port=port, folder=folder),
    }
    try:
        yield server
    finally:
        process_stop(server["process"])


@pytest.mark.django_db(transaction=True)
def test_broker_down_labelling_goes_on_and_the_retrain_runs_when_it_is_back(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    private_redis: dict[str, Any],
    worker_queue: str,
    tmp_path: Path,
) -> None:
    project = ingested_project
    round_ = round_start(project=project, user=admin_user, strategy="random", size=100)
    fox, agouti = project.species.get(name="red fox").pk, project.species.get(name="agouti").pk
    truth = {
        item.crop_id: fox if "Red_Fox" in item.crop.image.file_name else agouti
        for item in round_.items.select_related("crop__image")
    }
    _, token = api_token_create(user=volunteer, name="faults")
    env = app_env(
        CELERY_BROKER_URL=f"redis://127.0.0.1:{private_redis['port']}/0",
        **worker_queues_env(worker_queue),
        TRAPWISE_TASK_REQUEUE_SECONDS="1",
        TRAPWISE_VAR_DIR=str(tmp_path / "var"),
    )
    port = free_port()
    web = web_server_start(port=port, log=tmp_path / "web.log", env=env)
    worker = celery_worker_start(queue=worker_queue, log=tmp_path / "worker.log", env=env)
    try:
        client = Volunteer(base=f"http://127.0.0.1:{port}", slug=project.slug, token=token)
        for _ in range(len(truth) - 1):
            assert client.label_next(truth) is not None

        process_stop(private_redis["process"])
        started = time.monotonic()
        last = client.label_next(truth)  # closes the round, which queues the retrain
        assert time.monotonic() - started < HANG_S, "labelling hung on the dead broker"
        assert last is not None and client.label_next(truth) is None

        assert Label.objects.filter(project=project).count() == len(truth)
        assert Round.objects.get(pk=round_.pk).status == Round.Status.CLOSED
        waiting = QueuedTask.objects.get()
        assert waiting.name == "activelearn.tasks.classifier_retrain_task"
        assert waiting.args == [project.pk] and waiting.published_at is None
        assert waiting.error and waiting.attempts == 1
        # Nothing ran in the web process instead: no retrain job, no classifier.
        assert not Job.objects.filter(kind=Job.Kind.RETRAIN).exists()
        assert not ClassifierVersion.objects.exists()

        private_redis["process"] = redis_server_start(
            port=private_redis["port"], folder=private_redis["folder"]
        )
        classifier = wait_for(
            lambda: ClassifierVersion.objects.filter(project=project).first(),
            what="the retrain to run once the broker is back",
            process=worker,
        )
        assert Prediction.objects.filter(classifier=classifier).count() == len(truth)
        wait_for(lambda: not QueuedTask.objects.exists(), what="the task to be marked finished")
    finally:
        process_stop(worker)
        process_stop(web)
        print((tmp_path / "web.log").read_text()[-2000:])
        print((tmp_path / "worker.log").read_text()[-4000:])
