"""A Trapwise cluster on loopback for ``make cluster-test``: an S3 endpoint (moto's standalone
server), gunicorn, a ``gpu`` and a ``cpu`` Celery worker, on the machine's PostgreSQL (a fresh
database of the run's own) and Redis.

Every Trapwise process gets folders of its own (TRAPWISE_VAR_DIR, TRAPWISE_CACHE_DIR, MEDIA_ROOT,
TRAPWISE_DATA_DIR), so that they share nothing but the database, the broker and the bucket, as
on separate machines. Each process runs in a process group of its own, which ``Cluster.close``
ends (SIGTERM, then SIGKILL) whatever happened; each writes a log that ``Cluster.logs`` returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from tests.processes import free_port, port_open

T = TypeVar("T")

# The machine's servers (as `.ci/run` starts them); the variables point elsewhere.
POSTGRES_URL = os.environ.get("TRAPWISE_CLUSTER_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
# Database 12: `.ci/run`'s suite uses 15, the full suite run locally 13.
REDIS_URL = os.environ.get("TRAPWISE_CLUSTER_REDIS", "redis://127.0.0.1:6379/12")
# Credentials of the loopback S3 server (moto accepts any).
ACCESS_KEY = "trapwise-cluster"
SIGNING_KEY = "trapwise-cluster-secret"
REGION = "us-east-1"
# The most the whole scenario may take; every wait gets what is left of it.
TOTAL_S = float(os.environ.get("TRAPWISE_CLUSTER_TIMEOUT", "420"))
# Lines of each process's log shown when the scenario fails.
LOG_LINES = 80


class Deadline:
    """What is left of the run's time; ``wait`` polls within it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def wait(
        self,
        check: Callable[[], T | None],
        *,
        what: str,
        timeout: float | None = None,
        interval: float = 0.3,
        alive: Callable[[], None] | None = None,
    ) -> T:
        """Poll ``check`` until it returns something truthy; fail naming ``what`` when the
        timeout (or the run's time) is over, or when ``alive`` raises (a process died)."""
        end = min(self.end, time.monotonic() + (timeout if timeout is not None else 1e9))
        while True:
            value = check()
            if value:
                return value
            if alive is not None:
                alive()
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(interval)


@dataclass
class Process:
    """One process of the cluster: how to start it again, and its log."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"--- start {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=settings.BASE_DIR,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own group, so that a kill reaches whatever it started too.
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the whole group, as a machine that dies; reaped."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after 20 s; reaped. Safe to call twice."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=20)
        self.signal_group(signal.SIGKILL)  # stragglers of the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=20)

    def tail(self, lines: int = LOG_LINES) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """The run's servers and Trapwise processes, their settings and the database's name."""

    root: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    deadline: Deadline = field(default_factory=lambda: Deadline(TOTAL_S))
    processes: dict[str, Process] = field(default_factory=dict)
    s3_url: str = ""
    bucket: str = ""
    web_url: str = ""
    database: str = ""

    # --- the run's names ------------------------------------------------------------------

    @property
    def queues(self) -> dict[str, str]:
        """The run's own queue per kind of work, so that nothing else on the broker mixes in."""
        return {kind: f"cluster-{self.run}-{kind}" for kind in ("gpu", "cpu")}

    def node(self, name: str) -> str:
        """The Celery node name of the worker ``name`` (the same after a restart)."""
        return f"{name}-{self.run}@cluster"

    @property
    def database_url(self) -> str:
        parts = urlsplit(POSTGRES_URL)
        return urlunsplit(parts._replace(path=f"/{self.database}"))

    def env(self, name: str) -> dict[str, str]:
        """The environment of Trapwise process ``name``: the shared servers, folders its own."""
        home = self.root / name
        env = {
            key: value
            for key, value in os.environ.items()
            # The test process's own settings must not leak into the cluster's.
            if not key.startswith(("TRAPWISE_", "AWS_", "CELERY_", "DATABASE_", "MEDIA_ROOT"))
        }
        env.update(
            {
                "PYTHONPATH": str(settings.BASE_DIR),
                "DJANGO_SETTINGS_MODULE": "annotator.settings",
                "SECRET_KEY": f"cluster-{self.run}-not-secret",
                "DATABASE_URL": self.database_url,
                "CELERY_BROKER_URL": REDIS_URL,
                "TRAPWISE_VAR_DIR": str(home / "var"),
                "TRAPWISE_CACHE_DIR": str(home / "cache"),
                "MEDIA_ROOT": str(home / "media"),
                "TRAPWISE_DATA_DIR": str(home / "data"),
                "TRAPWISE_STORAGE": "s3",
                "TRAPWISE_S3_BUCKET": self.bucket,
                # The bucket that API imports may read (s3://bucket/prefix).
                "TRAPWISE_IMPORT_BUCKETS": self.bucket,
                "AWS_S3_ENDPOINT_URL": self.s3_url,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SIGNING_KEY,
                "AWS_DEFAULT_REGION": REGION,
                "TRAPWISE_GPU_QUEUE": self.queues["gpu"],
                "TRAPWISE_CPU_QUEUE": self.queues["cpu"],
                "TRAPWISE_TASK_REQUEUE_SECONDS": "5",
                # Beats often enough for a replacement worker with a short lost time
                # (test_cluster's third phase) to tell the living from the dead.
                "TRAPWISE_WORKER_HEARTBEAT_SECONDS": "2",
                # Two cores: one thread per process keeps the processes from starving each other.
                "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for folder in ("var", "cache", "media", "data"):
            (home / folder).mkdir(parents=True, exist_ok=True)
        return env

    # --- processes --------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        process = Process(name=name, argv=argv, env=env, log=self.root / f"{name}.log")
        self.processes[name] = process
        process.start()
        return process

    def alive(self, *names: str) -> Callable[[], None]:
        """A check that fails, naming the process, when one of ``names`` has exited."""

        def check() -> None:
            for name in names:
                process = self.processes[name]
                if not process.running:
                    code = process.popen.returncode if process.popen else None
                    raise AssertionError(f"{name} exited ({code}):\n{process.tail(30)}")

        return check

    def manage(self, *args: str, name: str = "cli", timeout: float = 300) -> str:
        """Run ``manage.py args`` as a process of its own; its output (fails on an error)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=self.env(name),
            capture_output=True,
            text=True,
            timeout=min(timeout, max(self.deadline.left(), 1)),
        )
        with (self.root / f"{name}.log").open("a") as log:
            log.write(f"--- manage.py {' '.join(args)}\n{result.stdout}{result.stderr}")
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr[-3000:]}"
        return result.stdout

    def s3_start(self) -> None:
        port = free_port()
        binary = Path(sys.executable).with_name("moto_server")
        self.start("s3", [str(binary), "-H", "127.0.0.1", "-p", str(port)], dict(os.environ))
        self.s3_url = f"http://127.0.0.1:{port}"
        self.deadline.wait(
            lambda: port_open(port), what="moto_server", timeout=60, alive=self.alive("s3")
        )
        self.bucket = f"trapwise-cluster-{self.run}"
        self.s3().create_bucket(Bucket=self.bucket)

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SIGNING_KEY,
            region_name=REGION,
        )

    def keys(self, prefix: str) -> list[str]:
        pages = (
            self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def database_create(self) -> None:
        import psycopg

        self.database = f"trapwise_cluster_{self.run}"
        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.database}")

    def database_drop(self) -> None:
        import psycopg

        if not self.database:
            return
        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of ``query`` on the cluster's database (for what the API does not show)."""
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return list(conn.execute(query, params).fetchall())

    def web_start(self) -> None:
        port = free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "gunicorn", "annotator.wsgi:application"]
        argv += ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "120"]
        self.start("web", argv, self.env("web"))
        self.deadline.wait(
            lambda: port_open(port), what="gunicorn", timeout=120, alive=self.alive("web")
        )

    def worker_start(
        self, kind: str, *, name: str = "", env: dict[str, str] | None = None
    ) -> Process:
        """The worker of queue ``kind`` called ``name`` (``kind`` by default: its process, node
        name and folders), with ``env`` on top of the cluster's; started again under the same
        node name, with the same folders, if it ran before: a worker restarted on its machine.
        """
        name = name or kind
        argv = [sys.executable, "-m", "celery", "-A", "annotator", "worker", "--pool=solo"]
        argv += ["-Q", self.queues[kind], "-n", self.node(name), "--loglevel=INFO"]
        argv += ["--without-gossip", "--without-mingle"]
        previous = self.processes.get(name)
        if previous is not None:
            previous.start()
            return previous
        return self.start(name, argv, {**self.env(name), **(env or {})})

    def worker_ready(self, name: str, *, since: int = 0) -> None:
        """Wait for the worker ``name``'s "ready" line (after byte ``since`` of its log)."""
        log = self.processes[name].log
        self.deadline.wait(
            lambda: b" ready." in log.read_bytes()[since:],
            what=f"the {name} worker to be ready",
            timeout=120,
            alive=self.alive(name),
        )

    def close(self) -> None:
        """Stop every process (the web first, the S3 server last), drop the database, and
        empty the run's queues on the broker."""
        order = ["web", "gpu", "cpu"] + [
            n for n in self.processes if n not in ("web", "gpu", "cpu", "s3")
        ]
        for name in [*order, "s3"]:
            if name in self.processes:
                self.processes[name].stop()
        with contextlib.suppress(Exception):
            self.database_drop()
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for queue in self.queues.values():
                client.delete(queue)
            # The killed worker's unacknowledged message, which Redis would otherwise restore
            # to a queue no one reads after the visibility timeout.
            for tag, payload in client.hgetall("unacked").items():
                if json.loads(payload)[-1] in self.queues.values():
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)

    def logs(self) -> str:
        return (
            "\n\n".join(
                f"===== {name} ({p.log}) =====\n{p.tail()}" for name, p in self.processes.items()
            )
            + "\n\n"
            + "\n".join(
                f"===== {log.name} =====\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-LOG_LINES:])
                for log in sorted(self.root.glob("cli*.log"))
            )
        )

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """Print every process's log when the block fails (pytest shows it with the failure)."""
        try:
            yield
        except BaseException:
            self.diagnose()
            print(self.logs())
            raise

    def diagnose(self) -> None:
        """Into the logs: every running worker's threads (Celery's SIGUSR1 handler writes their
        stacks) and the database's sessions, what each runs or waits for."""
        for kind in ("gpu", "cpu"):
            process = self.processes.get(kind)
            if process is not None and process.running and process.popen is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.popen.pid, signal.SIGUSR1)
        time.sleep(2)
        with contextlib.suppress(Exception), (self.root / "cli-database.log").open("a") as log:
            for row in self.sql(
                "SELECT pid, state, wait_event_type, wait_event, left(query, 200) "
                "FROM pg_stat_activity WHERE datname = current_database()"
            ):
                log.write(f"{row}\n")


def project_setup(sample_species: str) -> None:
    """Run inside ``manage.py shell`` on the cluster's database: the admin ``ada``, the
    volunteer ``vic``, a project with the offline detector and the species named in
    ``sample_species`` (comma-separated), and an API token for each; prints them as JSON."""
    from django.contrib.auth.models import User

    from annotator.api.services import api_token_create
    from projects.models import ProjectDetector, Role
    from projects.services import membership_set, project_create, species_ensure

    admin = User.objects.create_user("ada", password="correct-horse-battery")
    volunteer = User.objects.create_user("vic", password="correct-horse-battery")
    project = project_create(
        name="Cluster traps", created_by=admin, seed=7, backbone="efficientnet_lite0"
    )
    project.detector = ProjectDetector.OFFLINE
    project.save(update_fields=["detector"])
    membership_set(project=project, user=volunteer, role=Role.VOLUNTEER)
    species = species_ensure(project=project, names=sample_species.split(","))
    _, admin_key = api_token_create(user=admin, name="cluster admin")
    _, volunteer_key = api_token_create(user=volunteer, name="cluster volunteer")
    print(
        json.dumps(
            {
                "slug": project.slug,
                "admin": admin_key,
                "volunteer": volunteer_key,
                "species": {s.name: s.pk for s in species},
            }
        )
    )
