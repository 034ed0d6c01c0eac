"""Load test: simulated volunteers label through the API of a real server (`make loadtest`).

Everything runs on loopback: gunicorn (sync workers, ``2 x cores + 1``, the app preloaded) on
a fresh PostgreSQL database (``trapwise_load_<pid>``, dropped at the end), a Celery worker on
Redis (db 14, a gpu and a cpu queue of its own, both read by that one worker) that retrains
the classifier whenever a round closes, and this process, which sets the project up, then
plays the volunteers and an admin.

The project is built as ``make demo`` builds its own (EfficientNet-Lite0, imported COCO boxes,
crops, embeddings), from ``../shared/data/missouri-dev`` (748 images, 637 crops) when it is
there, else from the bundled sample (203 crops). Every crop takes ``--votes-per-crop`` votes
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
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._result import BENCH_DIR, result_write
from benchmarks.loadtest_clients import ClientPlan, Recorder, admin_run, volunteer_run
from benchmarks.loadtest_measure import (
    GOAL_P95_MS,
    NEXT,
    NEXT_EMPTY,
    RESUBMIT,
    SUBMIT,
    Accounting,
    LoadTestError,
    exactly_once,
    summarise,
)
from benchmarks.loadtest_servers import (
    ROOT,
    CpuSampler,
    admin_sql,
    backend_pids,
    child_pids,
    free_port,
    process_running,
    server_wait_ready,
    services_check,
)

DEV_IMAGES = ROOT.parent / "shared" / "data" / "missouri-dev"
SAMPLE_IMAGES = ROOT / "annotator" / "fixtures" / "missouri-sample"
WORK = BENCH_DIR / "loadtest"

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
    from embeddings.pipeline import folder_ingest
    from projects.models import Role
    from projects.services import membership_set, project_create

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
        # Both kinds of work on this run's own queues; its one worker reads them both.
        "TRAPWISE_GPU_QUEUE": f"{queue}-gpu",
        "TRAPWISE_CPU_QUEUE": f"{queue}-cpu",
        "MEDIA_ROOT": str((WORK / "media").resolve()),
        "TRAPWISE_DATA_DIR": str((WORK / "data").resolve()),
        "DEBUG": "0",  # as in production: DEBUG keeps every query of a request in memory
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    admin_sql(args.postgres, f'CREATE DATABASE "{database}"')
    try:
        return _run_on(args, env=env, database=database, queue=queue)
    finally:
        with suppress(Exception):
            from django.db import connections

            connections.close_all()
        admin_sql(args.postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        with suppress(Exception):
            import redis

            redis.Redis.from_url(args.redis).delete(f"{queue}-gpu", f"{queue}-cpu")


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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "benchmarks.loadtest_servers:warm_application()",
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
        f"--queues={queue}-gpu,{queue}-cpu",
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
        process_running(worker, env=env, log=WORK / "celery.log") as celery,
        process_running(gunicorn, env=env, log=WORK / "gunicorn.log") as server,
    ):
        started = time.perf_counter()
        server_wait_ready(url, setup.solo_token, server, WORK / "gunicorn.log")
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
                "gunicorn_workers": lambda: child_pids(server.pid),
                "postgresql_backends": backend_pids(args.postgres, database),
                "celery_worker": lambda: [celery.pid, *child_pids(celery.pid)],
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
