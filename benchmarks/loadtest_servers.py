"""The load test's servers and what it reads off them: gunicorn and Celery processes, CPU
seconds from /proc, and the PostgreSQL and Redis it needs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchmarks.loadtest_measure import LoadTestError

ROOT = Path(__file__).resolve().parent.parent

# --- the servers ------------------------------------------------------------------------------


def warm_application() -> Any:
    """The WSGI application with every URL's view imported: gunicorn's ``--preload`` target.

    Loading the URLs in the master imports the views (and torch, which the active-learning
    services need) once, before the workers fork, so that no volunteer's request pays for it.
    """
    from django.urls import get_resolver

    from annotator.wsgi import application

    get_resolver().url_patterns  # noqa: B018 - imports every view module
    return application


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process_running(command: list[str], *, env: Mapping[str, str], log: Path) -> Iterator[Any]:
    """Run ``command`` in a process group of its own; stop the whole group on the way out."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
        )
        try:
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            break
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)
    # Children the group leader left behind (gunicorn's workers, if the master died first).
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def server_wait_ready(url: str, token: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LoadTestError(f"gunicorn exited ({process.returncode}):\n{_tail(log)}")
        with suppress(requests.RequestException):
            answer = requests.get(
                f"{url}/api/v1/projects", headers={"Authorization": f"Bearer {token}"}, timeout=5
            )
            if answer.status_code == 200:
                return
        time.sleep(0.5)
    raise LoadTestError(f"gunicorn did not answer within 120 s:\n{_tail(log)}")


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


# --- CPU accounting (Linux /proc; skipped elsewhere) --------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers, Celery's pool)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class CpuSampler:
    """CPU seconds spent by groups of processes while it runs, sampled twice a second.

    A process that exits between two samples loses at most half a second of its CPU (the
    database's backends come and go with CONN_MAX_AGE). ``pids`` returns each group's current
    processes.
    """

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.first: dict[str, dict[int, float]] = {name: {} for name in groups}
        self.last: dict[str, dict[int, float]] = {name: {} for name in groups}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, pids in self.groups.items():
            with suppress(Exception):  # a sampling failure must not end the load test
                for pid in pids():
                    seconds = _cpu_seconds(pid)
                    if seconds is not None:
                        self.first[name].setdefault(pid, seconds)
                        self.last[name][pid] = seconds

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()

    def seconds(self) -> dict[str, float]:
        """CPU seconds per group between the first and the last sample.

        A process first seen after the start counts from its first sample: the CPU it spent
        before that (a new database backend's start-up) is not counted.
        """
        return {
            name: round(
                sum(last - self.first[name][pid] for pid, last in self.last[name].items()), 2
            )
            for name in self.groups
        }


def backend_pids(postgres: str, database: str) -> Callable[[], list[int]]:
    """The PostgreSQL backend processes serving ``database`` (local server only)."""
    import psycopg

    def pids() -> list[int]:
        with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchall()
        return [int(row[0]) for row in rows]

    return pids


# --- PostgreSQL and Redis -----------------------------------------------------------------------


def services_check(*, postgres: str, redis_url: str) -> None:
    """LoadTestError naming the missing service and how to start it, if one is unreachable."""
    import psycopg
    import redis

    try:
        psycopg.connect(f"{postgres}/postgres", connect_timeout=5).close()
    except psycopg.Error as exc:
        raise LoadTestError(
            f"PostgreSQL is not reachable at {postgres} ({exc}). Start it (e.g. "
            "`pg_ctlcluster --skip-systemctl-redirect 15 main start`, as .ci/run does) or point "
            "--postgres at a server whose user may create databases."
        ) from exc
    try:
        redis.Redis.from_url(redis_url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        raise LoadTestError(
            f"Redis is not reachable at {redis_url} ({exc}). Start it (e.g. `redis-server "
            "--daemonize yes --bind 127.0.0.1 --port 6379`, as .ci/run does) or give --redis."
        ) from exc


def admin_sql(postgres: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]  # our own identifiers, never user input
