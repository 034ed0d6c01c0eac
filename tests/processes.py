"""Real processes for the tests that need them: Celery workers, a web server, private Redis and
PostgreSQL servers, and a lock that freezes other processes' database writes.

Every server a test stops or kills is its own (own port, own folder under the test's tmp_path);
the machine's shared PostgreSQL and Redis are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import connection

T = TypeVar("T")

WAIT_S = 180


def database_url() -> str:
    """The URL of the test database, for processes the test starts."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{s['NAME']}"


def app_env(**extra: str) -> dict[str, str]:
    """The environment of a Trapwise process that shares the test's database and files."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "TRAPWISE_DATA_DIR": str(settings.TRAPWISE_DATA_DIR),
        **extra,
    }


def wait_for(
    check: Callable[[], T | None],
    *,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = WAIT_S,
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout or when
    ``process`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process died (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def worker_queues(base: str) -> dict[str, str]:
    """The test's own queue for each kind of work (``gpu``, ``cpu``), named after ``base``."""
    return {kind: f"{base}-{kind}" for kind in ("gpu", "cpu")}


def worker_queues_env(base: str) -> dict[str, str]:
    """The environment that routes a Trapwise process's tasks to ``worker_queues(base)``."""
    queues = worker_queues(base)
    return {"TRAPWISE_GPU_QUEUE": queues["gpu"], "TRAPWISE_CPU_QUEUE": queues["cpu"]}


def celery_worker_start(
    *,
    queue: str,
    log: Path,
    env: dict[str, str] | None = None,
    kinds: Sequence[str] = ("gpu", "cpu"),
) -> subprocess.Popen[bytes]:
    """A real ``--pool=solo`` worker reading the test's queues ``worker_queues(queue)`` of
    ``kinds`` (both by default, as ``make demo``'s worker does), named after them, so that a
    worker started again on the same queues is the same node (it takes over what the first
    left). It routes what it queues itself (an import queues detection) to the same queues."""
    queues = worker_queues(queue)
    name = queue if set(kinds) == set(queues) else "-".join([queue, *kinds])
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "annotator",
                "worker",
                "--pool=solo",
                "-Q",
                ",".join(queues[kind] for kind in kinds),
                "-n",
                f"{name}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=settings.BASE_DIR,
            env={**(env or app_env()), **worker_queues_env(queue)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def web_server_start(*, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Django's server (threaded, no autoreload) on 127.0.0.1:``port``, once it answers."""
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: port_open(port), what=f"the web server on port {port}", process=server)
    return server


def process_stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop ``process`` (one we started) and reap it."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_start(*, port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A private, diskless redis-server on ``port``; skips the test without the binary."""
    import pytest

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "redis.log").open("ab") as out:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
            + ["--save", "", "--appendonly", "no"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: port_open(port), what=f"redis-server on port {port}", process=server)
    return server


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb into a temporary folder, its own port).

    As root, the server runs as the ``postgres`` user (PostgreSQL refuses root).
    """

    def __init__(self, *, port: int) -> None:
        import pytest

        bindir = self._bindir()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.port = port
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None or not _user_exists("postgres"):
                pytest.skip("running as root without a postgres user to run PostgreSQL as")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        # Not under pytest's tmp_path: the postgres user must reach the folder.
        self.folder = Path(tempfile.mkdtemp(prefix="trapwise-pg-"))
        if self.run_as:
            shutil.chown(self.folder, "postgres")
        self.data = self.folder / "data"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @staticmethod
    def _bindir() -> Path | None:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        found = shutil.which("pg_ctl")
        if found:
            candidates.insert(0, Path(found).resolve().parent)
        return next((c for c in candidates if (c / "initdb").exists()), None)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.folder,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/trapwise"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self) -> None:
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE trapwise")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# Tables the workers write while they retrain or fine-tune.
WORKER_TABLES = (
    "annotator_job",
    "activelearn_classifierversion",
    "embeddings_embeddingversion",
)


@contextmanager
def database_writes_frozen() -> Iterator[Callable[[], bool]]:
    """Hold a write lock on the test database from a connection of its own, so that another
    process stops at its next write to ``WORKER_TABLES`` (on SQLite: at any write) until the
    block ends. Yields a check that says whether some other process is waiting for the lock
    (PostgreSQL only; on SQLite it cannot be seen, and answers True)."""
    if connection.vendor == "sqlite":
        raw = sqlite3.connect(connection.settings_dict["NAME"], timeout=30, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: True
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    import psycopg

    with psycopg.connect(database_url()) as locker:
        locker.execute(f"LOCK TABLE {', '.join(WORKER_TABLES)} IN EXCLUSIVE MODE")

        def waiting() -> bool:
            with psycopg.connect(database_url(), autocommit=True) as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()
            return bool(row and row[0])

        try:
            yield waiting
        finally:
            locker.rollback()


def labelling_project_setup(folder: str) -> None:
    """Run inside ``manage.py shell`` of a process on another database: a project from the
    small folder of ``folder``, embedded, with an open round of every crop, the volunteer
    ``vic`` (password ``PASSWORD``) and an API token; prints them as JSON on the last line."""
    import json

    from django.contrib.auth.models import User

    from activelearn.services import round_start
    from annotator.api.services import api_token_create
    from embeddings.pipeline import folder_ingest
    from projects.models import Role
    from projects.services import membership_set, project_create
    from tests.conftest import PASSWORD

    admin = User.objects.create_user("ada", password=PASSWORD)
    volunteer = User.objects.create_user("vic", password=PASSWORD)
    project = project_create(
        name="Fault traps", created_by=admin, seed=7, backbone="efficientnet_lite0"
    )
    membership_set(project=project, user=volunteer, role=Role.VOLUNTEER)
    root = Path(folder)
    folder_ingest(project=project, folder=root, coco=root / "annotations.json")
    round_ = round_start(project=project, user=admin, strategy="random", size=100)
    _, key = api_token_create(user=volunteer, name="faults")
    species = {s.name: s.pk for s in project.species.all()}
    truth = {
        item.crop_id: species["red fox" if "Red_Fox" in item.crop.image.file_name else "agouti"]
        for item in round_.items.select_related("crop__image")
    }
    print(json.dumps({"slug": project.slug, "token": key, "truth": truth}))
