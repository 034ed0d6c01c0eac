"""Load test: simulated volunteers label through the API of a real server (`make loadtest`).

Everything runs on loopback: gunicorn (sync workers, ``2 x cores + 1``, the app preloaded) on
a fresh PostgreSQL database (``trapwise_load_<pid>``, dropped at the end), a Celery worker on
Redis (db 14, a queue of its own) that retrains the classifier whenever a round closes, and
this process, which sets the project up, then plays the volunteers and an admin.

The project is built as ``make demo`` builds its own (EfficientNet-Lite0, imported COCO boxes,
crops, embeddings), from ``../shared/data/missouri-dev`` (748 images, 637 crops) when it is
there, else from the bundled sample (68 crops). Every crop takes ``--votes-per-crop`` votes
(5 by default, a citizen-science setting; the crops must outlast the run), rounds keep the
project's default size (100), and a simulated admin starts the next round (the product's
default strategy, k-Center) as soon as one closes, so volunteers label, rounds close, the
worker retrains and the next crops come with the classifier's suggestions, as in real use.

Each volunteer (a user with an API token) loops: ``GET next`` (one crop, claimed for them),
look at it for a think time drawn uniformly between ``--think-min`` and ``--think-max``
(seeded), ``POST labels`` with a fresh idempotency key (the crop's true species nine times in
ten, else another one). Some
submissions are sent twice on purpose, to prove that no label is stored twice: a double click
(a second copy at the same moment) and a retry (the same request again after the answer, as a
client whose answer was lost). Both copies must answer 201 with the same label.

Before the load, one volunteer alone labels ``--baseline-cycles`` crops without thinking: the
same requests on an unloaded server, the baseline. ``value`` is the worse p95 of next and submit
under load (goal 100 ms or less), ``baseline`` the same figure for the lone volunteer.

At the end the database is read: ``labels_submitted`` is the number of distinct acknowledged
submissions of both phases (idempotency keys answered 201), ``labels_stored`` how many of them
are stored with the label id the server answered, ``labels_lost`` the rest,
``labels_duplicated`` the rows beyond one per key, ``votes_duplicated`` the rows beyond one per
volunteer and crop (the queue must never offer a crop twice to the same person). Goal: 0 lost,
0 duplicated, no error.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust authentication) and Redis on
127.0.0.1:6379, as CI has them (``.ci/run`` shows how to start both); ``--postgres`` and
``--redis`` point elsewhere. The timings include the load generator itself and the worker's
retraining, on the same machine: pessimistic next to a server of its own. The CPU the server
spent per request (gunicorn's workers plus the database's backends, from /proc) is recorded
too, since it does not depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._result import BENCH_DIR, result_write

ROOT = Path(__file__).resolve().parent.parent
DEV_IMAGES = ROOT.parent / "shared" / "data" / "missouri-dev"
SAMPLE_IMAGES = ROOT / "annotator" / "fixtures" / "missouri-sample"
WORK = BENCH_DIR / "loadtest"
GOAL_P95_MS = 100.0
# Request kinds. "next" served a crop, "next_empty" found none to serve (every crop of the
# round is voted or held, or no round is open); "resubmit" is a deliberate second copy.
NEXT, NEXT_EMPTY, SUBMIT, RESUBMIT, ADMIN = "next", "next_empty", "submit", "resubmit", "admin"
VOLUNTEER_KINDS = (NEXT, NEXT_EMPTY, SUBMIT, RESUBMIT)


class LoadTestError(RuntimeError):
    """The load test cannot run; the message says what is missing and what to do."""


# --- pure parts: what is measured and how it is summed up (tests/test_loadtest.py) -----------


@dataclass(frozen=True)
class Sample:
    """One HTTP request: its kind, wall seconds (request sent to body read) and outcome."""

    kind: str
    seconds: float
    status: int  # 0 when no answer came (connection error, timeout)
    phase: str = "load"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p95 and max in milliseconds of ``seconds`` (None for an empty sequence).

    Percentiles are numpy's default (linear interpolation between the closest ranks).
    """
    if len(seconds) == 0:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def error_rate(samples: Sequence[Sample]) -> float:
    """Share of ``samples`` without a 2xx answer (0.0 when there are none)."""
    if not samples:
        return 0.0
    return sum(not s.ok for s in samples) / len(samples)


@dataclass(frozen=True)
class Accounting:
    """Acknowledged submissions against the rows the database holds for their keys."""

    labels_submitted: int  # distinct idempotency keys answered 201
    labels_stored: int  # of those, stored with the label id the server answered
    labels_lost: int  # acknowledged, but that label is not stored under the key
    labels_duplicated: int  # rows beyond one per key
    labels_unacknowledged: int  # keys stored that no answer acknowledged


def exactly_once(
    *, acknowledged: Mapping[str, int], stored: Mapping[str, Sequence[int]]
) -> Accounting:
    """Compare ``acknowledged`` (key -> label id answered) with ``stored`` (key -> ids of the
    rows stored under it). Exactly once: every acknowledged key has exactly its answered row.

    A key the client never saw acknowledged (its request failed) may still be stored: that is
    counted apart, neither lost nor duplicated.
    """
    kept = sum(1 for key, label_id in acknowledged.items() if label_id in stored.get(key, ()))
    return Accounting(
        labels_submitted=len(acknowledged),
        labels_stored=kept,
        labels_lost=len(acknowledged) - kept,
        labels_duplicated=sum(max(0, len(ids) - 1) for ids in stored.values()),
        labels_unacknowledged=sum(
            1 for key, ids in stored.items() if ids and key not in acknowledged
        ),
    )


def summarise(samples: Sequence[Sample], *, phase: str) -> dict[str, Any]:
    """Latency per request kind and the error rate of the volunteers' requests in ``phase``."""
    own = [s for s in samples if s.phase == phase]
    volunteer = [s for s in own if s.kind in VOLUNTEER_KINDS]
    by_kind = {
        kind: latency_summary([s.seconds for s in own if s.kind == kind and s.ok])
        for kind in (*VOLUNTEER_KINDS, ADMIN)
    }
    return {
        "requests": len(volunteer),
        "errors": sum(not s.ok for s in volunteer),
        "error_rate": error_rate(volunteer),
        "statuses": dict(sorted(Counter(str(s.status) for s in volunteer).items())),
        "latency": by_kind,
    }


# --- the simulated clients --------------------------------------------------------------------


@dataclass
class Recorder:
    """What the clients saw, shared by their threads."""

    samples: list[Sample] = field(default_factory=list)
    # client key (``<idempotency key>:<crop id>``, as stored) -> label id answered
    acknowledged: dict[str, int] = field(default_factory=dict)
    # second copies whose answer named another label than the first copy's
    resubmits_inconsistent: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def fail(self, message: str) -> None:
        with self.lock:
            if len(self.failures) < 20:
                self.failures.append(message)


def _timed(
    recorder: Recorder,
    kind: str | Callable[[Any], str],
    phase: str,
    send: Callable[[], Any],
) -> Any:
    """Send one request; record its latency and status; return the response (None if none).

    ``kind`` is the sample's kind, or a function of the response that names it.
    """
    start = time.perf_counter()
    try:
        response = send()
    except Exception as exc:  # any transport failure is an error of the run, not a crash
        name = kind if isinstance(kind, str) else kind(None)
        recorder.add(Sample(name, time.perf_counter() - start, 0, phase))
        recorder.fail(f"{name}: {type(exc).__name__}: {exc}")
        return None
    seconds = time.perf_counter() - start
    name = kind if isinstance(kind, str) else kind(response)
    recorder.add(Sample(name, seconds, response.status_code, phase))
    if not 200 <= response.status_code < 300:
        recorder.fail(f"{name}: HTTP {response.status_code} {response.text[:200]}")
    return response


def _next_kind(response: Any) -> str:
    """NEXT for an answer that served a crop (or an error), NEXT_EMPTY for an empty queue."""
    if response is not None and response.ok and not response.json().get("crops"):
        return NEXT_EMPTY
    return NEXT


@dataclass(frozen=True)
class ClientPlan:
    """How one simulated volunteer behaves."""

    base_url: str
    slug: str
    token: str
    species: Mapping[str, int]  # name -> species id
    truth: Mapping[str, str]  # image file name -> true species name
    think: tuple[float, float]
    double_click_share: float
    retry_share: float
    mistake_share: float
    seed: int
    timeout_s: float


def volunteer_run(
    plan: ClientPlan,
    recorder: Recorder,
    *,
    stop: threading.Event,
    phase: str = "load",
    cycles: int | None = None,
) -> None:
    """Label until ``stop`` is set (or ``cycles`` labels are acknowledged): next, think, submit."""
    import requests

    rng = random.Random(plan.seed)
    headers = {"Authorization": f"Bearer {plan.token}"}
    session, twin = requests.Session(), requests.Session()
    session.headers.update(headers)
    twin.headers.update(headers)
    api = f"{plan.base_url}/api/v1/projects/{plan.slug}"
    names = sorted(plan.species)

    def think() -> float:
        return rng.uniform(*plan.think)

    done = 0
    while not stop.is_set() and (cycles is None or done < cycles):
        response = _timed(
            recorder, _next_kind, phase, lambda: session.get(f"{api}/next", timeout=plan.timeout_s)
        )
        crops = response.json().get("crops", []) if response is not None and response.ok else []
        if not crops:
            stop.wait(think())  # nothing to label (or an error): look again a moment later
            continue
        card = crops[0]
        name = plan.truth.get(card["image_file"], "")
        if name not in plan.species or rng.random() < plan.mistake_share:
            name = rng.choice(names)
        payload = {
            "crop_id": card["crop_id"],
            "kind": "species",
            "species_id": plan.species[name],
            "idempotency_key": uuid.UUID(int=rng.getrandbits(128)).hex,
        }
        stop.wait(think())  # a volunteer that is stopped mid-thought still submits, then leaves
        answers = _submit(plan, recorder, session, twin, api, payload, rng, phase)
        if answers:
            done += 1


def _submit(
    plan: ClientPlan,
    recorder: Recorder,
    session: Any,
    twin: Any,
    api: str,
    payload: dict[str, Any],
    rng: random.Random,
    phase: str,
) -> list[int]:
    """POST one label, maybe twice on purpose; the label ids answered (all equal if good)."""

    def post(client: Any, kind: str) -> int | None:
        response = _timed(
            recorder,
            kind,
            phase,
            lambda: client.post(f"{api}/labels", json=payload, timeout=plan.timeout_s),
        )
        if response is None or response.status_code != 201:
            return None
        return int(response.json()["id"])

    draw = rng.random()
    answers: list[int | None]
    if draw < plan.double_click_share:
        second: list[int | None] = []
        copy = threading.Thread(target=lambda: second.append(post(twin, RESUBMIT)))
        copy.start()
        answers = [post(session, SUBMIT)]
        copy.join()
        answers += second
    elif draw < plan.double_click_share + plan.retry_share:
        answers = [post(session, SUBMIT)]
        answers.append(post(session, RESUBMIT))
    else:
        answers = [post(session, SUBMIT)]
    ids = [a for a in answers if a is not None]
    if ids:
        key = f"{payload['idempotency_key']}:{payload['crop_id']}"
        with recorder.lock:
            recorder.acknowledged[key] = ids[0]
            if len(set(ids)) > 1:
                recorder.resubmits_inconsistent += 1
    return ids


def admin_run(
    *, base_url: str, slug: str, token: str, recorder: Recorder, stop: threading.Event
) -> list[int]:
    """Start the next round (project defaults) whenever none is open; the rounds started."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    api = f"{base_url}/api/v1/projects/{slug}"
    started: list[int] = []
    while not stop.wait(1.0):
        status = _timed(recorder, ADMIN, "load", lambda: session.get(api, timeout=30))
        if status is None or not status.ok or status.json().get("open_round") is not None:
            continue
        created = _timed(
            recorder, ADMIN, "load", lambda: session.post(f"{api}/rounds", json={}, timeout=60)
        )
        if created is not None and created.status_code == 201:
            started.append(int(created.json()["number"]))
        elif created is not None and "labelled already" in created.text:
            break  # every crop has its votes: nothing left to start
    return started


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _process(command: list[str], *, env: Mapping[str, str], log: Path) -> Iterator[Any]:
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


def _wait_ready(url: str, token: str, process: subprocess.Popen[bytes], log: Path) -> None:
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


def _children(pid: int) -> list[int]:
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


def _backends(postgres: str, database: str) -> Callable[[], list[int]]:
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


def _admin_sql(postgres: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]  # our own identifiers, never user input


# --- the project ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    slug: str
    crops: int
    species: dict[str, int]
    truth: dict[str, str]
    admin_token: str
    solo_token: str
    volunteer_tokens: list[str]
    volunteer_ids: list[int]
    seconds: float


def _truth(images: Path) -> dict[str, str]:
    """Image file name -> species name, from the folder's COCO Camera Traps file."""
    coco = json.loads((images / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    return {files[a["image_id"]]: names[a["category_id"]] for a in coco["annotations"]}


def project_build(*, images: Path, volunteers: int, votes_per_crop: int, seed: int) -> Setup:
    """Migrate, then create the users, their tokens, the project and its first round."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from activelearn.services import project_consensus_update, round_start
    from annotator.api.services import api_token_create
    from annotator.services import folder_ingest, membership_set, project_create
    from projects.models import Role

    start = time.perf_counter()
    call_command("migrate", verbosity=0)
    admin = User.objects.create_user("load-admin")
    project = project_create(
        name="Load test",
        created_by=admin,
        seed=seed,
        backbone="efficientnet_lite0",
        backbone_weights="imagenet",
    )
    project_consensus_update(
        project=project,
        votes_per_crop=votes_per_crop,
        agreement_threshold=project.agreement_threshold,
    )
    folder_ingest(project=project, folder=images, coco=images / "annotations.json")
    round_start(project=project, user=admin, size=project.round_size)

    def user_with_token(username: str) -> tuple[User, str]:
        user = User.objects.create_user(username)
        membership_set(project=project, user=user, role=Role.VOLUNTEER)
        return user, api_token_create(user=user, name="loadtest")[1]

    tokens = [user_with_token(f"load-volunteer-{i:03d}") for i in range(volunteers)]
    return Setup(
        slug=project.slug,
        crops=project.crops.count(),
        species=dict(project.species.values_list("name", "id")),
        truth=_truth(images),
        admin_token=api_token_create(user=admin, name="loadtest")[1],
        solo_token=user_with_token("load-solo")[1],
        volunteer_tokens=[token for _, token in tokens],
        volunteer_ids=[user.pk for user, _ in tokens],
        seconds=time.perf_counter() - start,
    )


def stored_by_key(*, slug: str) -> tuple[dict[str, list[int]], int, dict[str, Any]]:
    """(client key -> label ids stored under it, votes duplicated, the project's end state)."""
    from django.db.models import Count

    from activelearn.models import ClassifierVersion, Label, Round
    from projects.models import Project

    project = Project.objects.get(slug=slug)
    labels = Label.objects.filter(project=project)
    stored: dict[str, list[int]] = {}
    for key, label_id in labels.values_list("client_key", "id"):
        stored.setdefault(key, []).append(label_id)
    per_vote = labels.values("user_id", "crop_id").annotate(n=Count("id")).filter(n__gt=1)
    votes_duplicated = sum(row["n"] - 1 for row in per_vote)
    state = {
        "label_rows": labels.count(),
        "rounds_closed": Round.objects.filter(project=project, status="closed").count(),
        "classifier_versions": ClassifierVersion.objects.filter(project=project).count(),
    }
    return stored, votes_duplicated, state


# --- the run ----------------------------------------------------------------------------------


def _phase(
    plans: Sequence[ClientPlan],
    recorder: Recorder,
    *,
    phase: str,
    seconds: float | None = None,
    cycles: int | None = None,
    admin: Callable[[threading.Event], Any] | None = None,
) -> float:
    """Run one client thread per plan until ``seconds`` pass (or each did ``cycles`` labels)."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=volunteer_run,
            args=(plan, recorder),
            kwargs={"stop": stop, "phase": phase, "cycles": cycles},
            daemon=True,
        )
        for plan in plans
    ]
    if admin is not None:
        threads.append(threading.Thread(target=admin, args=(stop,), daemon=True))
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        if seconds is not None:
            stop.wait(seconds)
        else:
            for thread in threads[: len(plans)]:
                thread.join()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    services_check(postgres=args.postgres, redis_url=args.redis)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    database = f"trapwise_load_{os.getpid()}"
    queue = f"trapwise-load-{os.getpid()}"
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.postgres}/{database}",
        "CELERY_BROKER_URL": args.redis,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "MEDIA_ROOT": str((WORK / "media").resolve()),
        "TRAPWISE_DATA_DIR": str((WORK / "data").resolve()),
        "DEBUG": "0",  # as in production: DEBUG keeps every query of a request in memory
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    _admin_sql(args.postgres, f'CREATE DATABASE "{database}"')
    try:
        return _run_on(args, env=env, database=database, queue=queue)
    finally:
        with suppress(Exception):
            from django.db import connections

            connections.close_all()
        _admin_sql(args.postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        with suppress(Exception):
            import redis

            redis.Redis.from_url(args.redis).delete(queue)


def _run_on(
    args: argparse.Namespace, *, env: Mapping[str, str], database: str, queue: str
) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    django.setup()
    from django.db import connections

    print(f"Setting up project on {database} from {args.images} ...", flush=True)
    setup = project_build(
        images=args.images,
        volunteers=args.volunteers,
        votes_per_crop=args.votes_per_crop,
        seed=args.seed,
    )
    connections.close_all()  # the servers own the database now
    print(f"  {setup.crops} crops, {len(setup.species)} species in {setup.seconds:.0f} s")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "benchmarks.loadtest:warm_application()",
        f"--bind=127.0.0.1:{port}",
        f"--workers={args.workers}",
        "--worker-class=sync",
        "--preload",
        "--timeout=120",
        "--backlog=2048",
    ]
    worker = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "annotator",
        "worker",
        "--pool=solo",
        f"--queues={queue}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    recorder = Recorder()
    think = (args.think_min, args.think_max)

    def plan(token: str, seed: int, think: tuple[float, float]) -> ClientPlan:
        return ClientPlan(
            base_url=url,
            slug=setup.slug,
            token=token,
            species=setup.species,
            truth=setup.truth,
            think=think,
            double_click_share=args.double_click_share,
            retry_share=args.retry_share,
            mistake_share=args.mistake_share,
            seed=seed,
            timeout_s=args.timeout,
        )

    with (
        _process(worker, env=env, log=WORK / "celery.log") as celery,
        _process(gunicorn, env=env, log=WORK / "gunicorn.log") as server,
    ):
        started = time.perf_counter()
        _wait_ready(url, setup.solo_token, server, WORK / "gunicorn.log")
        print(f"  gunicorn answers at {url} after {time.perf_counter() - started:.0f} s")
        print(f"Baseline: 1 volunteer, {args.baseline_cycles} labels without think time ...")
        baseline_s = _phase(
            [plan(setup.solo_token, args.seed, (0.0, 0.0))],
            recorder,
            phase="baseline",
            cycles=args.baseline_cycles,
        )
        print(f"Load: {args.volunteers} volunteers for {args.duration:.0f} s ...", flush=True)
        rounds: list[int] = []
        sampler = CpuSampler(
            {
                "gunicorn_workers": lambda: _children(server.pid),
                "postgresql_backends": _backends(args.postgres, database),
                "celery_worker": lambda: [celery.pid, *_children(celery.pid)],
                "load_generator": lambda: [os.getpid()],
            }
        )
        load_average_before = os.getloadavg()
        plans = [
            plan(token, args.seed * 1000 + 1 + i, think)
            for i, token in enumerate(setup.volunteer_tokens)
        ]
        with sampler:
            load_s = _phase(
                plans,
                recorder,
                phase="load",
                seconds=args.duration,
                admin=lambda stop: rounds.extend(
                    admin_run(
                        base_url=url,
                        slug=setup.slug,
                        token=setup.admin_token,
                        recorder=recorder,
                        stop=stop,
                    )
                ),
            )
        load_average_after = os.getloadavg()
        server_alive = server.poll() is None
    stored, votes_duplicated, state = stored_by_key(slug=setup.slug)
    accounting = exactly_once(acknowledged=recorder.acknowledged, stored=stored)
    baseline = summarise(recorder.samples, phase="baseline")
    load = summarise(recorder.samples, phase="load")
    return {
        "setup": setup,
        "baseline": baseline,
        "load": load,
        "accounting": accounting,
        "votes_duplicated": votes_duplicated,
        "resubmits_inconsistent": recorder.resubmits_inconsistent,
        "rounds_started": rounds,
        "state": state,
        "baseline_s": baseline_s,
        "load_s": load_s,
        "server_alive": server_alive,
        "failures": recorder.failures,
        "resubmits": sum(1 for s in recorder.samples if s.kind == RESUBMIT),
        "cpu_s": sampler.seconds(),
        "load_average": [round(x, 2) for x in (*load_average_before, *load_average_after)],
    }


def report_write(args: argparse.Namespace, outcome: dict[str, Any]) -> Path:
    """Print the summary table and write var/bench/loadtest.json."""
    load, baseline = outcome["load"], outcome["baseline"]
    accounting: Accounting = outcome["accounting"]
    setup: Setup = outcome["setup"]
    lat, base = load["latency"], baseline["latency"]
    value = max(lat[NEXT]["p95_ms"] or 0.0, lat[SUBMIT]["p95_ms"] or 0.0)
    baseline_value = max(base[NEXT]["p95_ms"] or 0.0, base[SUBMIT]["p95_ms"] or 0.0)
    submitted = lat[SUBMIT]["n"]
    extra = {
        "next_p50_ms": lat[NEXT]["p50_ms"],
        "next_p95_ms": lat[NEXT]["p95_ms"],
        "next_max_ms": lat[NEXT]["max_ms"],
        "submit_p50_ms": lat[SUBMIT]["p50_ms"],
        "submit_p95_ms": lat[SUBMIT]["p95_ms"],
        "submit_max_ms": lat[SUBMIT]["max_ms"],
        "error_rate": load["error_rate"],
        **asdict(accounting),
        "votes_duplicated": outcome["votes_duplicated"],
        "resubmits_inconsistent": outcome["resubmits_inconsistent"],
        "goal_met": value <= GOAL_P95_MS
        and load["error_rate"] == 0
        and accounting.labels_lost == 0
        and accounting.labels_duplicated == 0
        and outcome["votes_duplicated"] == 0
        and outcome["resubmits_inconsistent"] == 0,
    }
    params = {
        "volunteers": args.volunteers,
        "duration_s": args.duration,
        "load_wall_s": round(outcome["load_s"], 1),
        "think_s": [args.think_min, args.think_max],
        "double_click_share": args.double_click_share,
        "retry_share": args.retry_share,
        "mistake_share": args.mistake_share,
        "seed": args.seed,
        "images": str(args.images),
        "crops": setup.crops,
        "species": len(setup.species),
        "votes_per_crop": args.votes_per_crop,
        "round_size": 100,
        "setup_s": round(setup.seconds, 1),
        "server": f"gunicorn sync, {args.workers} workers, --preload, 127.0.0.1",
        "database": "PostgreSQL, CONN_MAX_AGE 60 (from settings), DEBUG 0",
        "broker": "Redis; one Celery worker (--pool=solo) retrains when a round closes",
        "client": "requests.Session per volunteer thread, in one process on the same machine",
        "baseline_cycles": args.baseline_cycles,
        "baseline_wall_s": round(outcome["baseline_s"], 1),
        "load": load,
        "baseline": baseline,
        "rounds_started_by_admin": outcome["rounds_started"],
        "resubmits_sent": outcome["resubmits"],
        "end_state": outcome["state"],
        "server_alive_at_end": outcome["server_alive"],
        # CPU seconds during the load phase, per group of processes (Linux /proc).
        "cpu_s": outcome["cpu_s"],
        "server_cpu_ms_per_request": round(
            1000
            * (outcome["cpu_s"]["gunicorn_workers"] + outcome["cpu_s"]["postgresql_backends"])
            / max(1, load["requests"]),
            2,
        ),
        # The machine's 1, 5 and 15 minute load averages before, then after the load phase
        # (other work on a shared machine shows here).
        "load_average": outcome["load_average"],
        "first_failures": outcome["failures"][:5],
    }
    path = result_write(
        name="loadtest",
        unit="ms",
        value=value,
        baseline_name="p95 of the same requests, 1 volunteer without think time (unloaded)",
        baseline=baseline_value,
        params=params,
        extra=extra,
    )
    rows = [
        ("", "n", "p50 ms", "p95 ms", "max ms"),
        *(
            (f"{phase} {kind}", *(str(s[k]) for k in ("n", "p50_ms", "p95_ms", "max_ms")))
            for phase, summary in (("baseline", baseline), ("load", load))
            for kind in (NEXT, SUBMIT)
            for s in [summary["latency"][kind]]
        ),
    ]
    print()
    for row in rows:
        print(f"{row[0]:<16}" + "".join(f"{cell:>10}" for cell in row[1:]))
    print(
        f"\nload: {load['requests']} volunteer requests ({submitted} labels submitted, "
        f"{lat[NEXT_EMPTY]['n']} empty queues), error rate {load['error_rate']:.4f}"
    )
    print(
        f"labels: {accounting.labels_submitted} acknowledged, {accounting.labels_stored} stored, "
        f"{accounting.labels_lost} lost, {accounting.labels_duplicated} duplicated "
        f"({outcome['resubmits']} deliberate second copies); "
        f"{outcome['votes_duplicated']} duplicated votes"
    )
    print(
        f"rounds started during the load: {outcome['rounds_started']}; "
        f"classifier versions: {outcome['state']['classifier_versions']}"
    )
    cpu = outcome["cpu_s"]
    print(
        f"CPU during the load: {cpu} s; server (gunicorn + PostgreSQL) "
        f"{params['server_cpu_ms_per_request']} ms per request; load average before/after "
        f"{outcome['load_average']}"
    )
    if outcome["failures"]:
        print("first failures:\n  " + "\n  ".join(outcome["failures"][:5]))
    verdict = "met" if extra["goal_met"] else "NOT met"
    print(f"goal (p95 <= {GOAL_P95_MS:.0f} ms, no error, none lost or duplicated): {verdict}")
    print(f"wrote {path}")
    return path


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__)
    parser.add_argument("--volunteers", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--think-min", type=float, default=1.0)
    parser.add_argument("--think-max", type=float, default=3.0)
    parser.add_argument("--double-click-share", type=float, default=0.05)
    parser.add_argument("--retry-share", type=float, default=0.05)
    parser.add_argument("--mistake-share", type=float, default=0.1)
    parser.add_argument("--baseline-cycles", type=int, default=60)
    parser.add_argument("--votes-per-crop", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--images",
        type=Path,
        default=DEV_IMAGES if (DEV_IMAGES / "annotations.json").exists() else SAMPLE_IMAGES,
        help="a folder with annotations.json (COCO Camera Traps with boxes)",
    )
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args(argv)
    if args.volunteers < 1 or args.duration <= 0 or not 0 <= args.think_min <= args.think_max:
        parser.error("need --volunteers >= 1, --duration > 0 and 0 <= --think-min <= --think-max")
    if not (args.images / "annotations.json").is_file():
        parser.error(f"{args.images} has no annotations.json (COCO Camera Traps with boxes)")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so that every finally block runs."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run(args)
    except LoadTestError as exc:
        sys.exit(f"loadtest: {exc}")
    report_write(args, outcome)


if __name__ == "__main__":
    main()
