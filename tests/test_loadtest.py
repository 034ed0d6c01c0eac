"""The load test's own parts (benchmarks/loadtest.py): what it measures and how it counts.

The figures of `make loadtest` are timings, kept out of the tests; these tests check that its
percentiles, error rate and exactly-once accounting are right, and that its simulated
volunteers (double clicks and retries included) drive the real API as it claims. The last test
runs the whole load test for a few seconds on PostgreSQL and Redis, when both are there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from activelearn.services import round_start
from annotator.api.services import api_token_create
from benchmarks.loadtest import SAMPLE_IMAGES, stored_by_key
from benchmarks.loadtest_clients import ClientPlan, Recorder, volunteer_run
from benchmarks.loadtest_measure import (
    NEXT,
    NEXT_EMPTY,
    RESUBMIT,
    SUBMIT,
    LoadTestError,
    Sample,
    error_rate,
    exactly_once,
    latency_summary,
    summarise,
)
from benchmarks.loadtest_servers import services_check
from projects.models import Project, Role
from projects.services import membership_set

# --- percentiles, error rate, summary ------------------------------------------------------------


def test_latency_summary_gives_count_percentiles_and_max_in_milliseconds() -> None:
    seconds = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert latency_summary(seconds) == {"n": 100, "p50_ms": 50.5, "p95_ms": 95.05, "max_ms": 100.0}


def test_latency_summary_of_one_request_and_of_none() -> None:
    assert latency_summary([0.25]) == {"n": 1, "p50_ms": 250.0, "p95_ms": 250.0, "max_ms": 250.0}
    assert latency_summary([]) == {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}


def test_error_rate_counts_every_answer_outside_2xx_and_no_answer() -> None:
    samples = [Sample(NEXT, 0.01, 200), Sample(SUBMIT, 0.01, 201)]
    samples += [Sample(SUBMIT, 0.01, 400), Sample(NEXT, 0.01, 0)]  # refused; no answer at all
    assert error_rate(samples) == 0.5
    assert error_rate([]) == 0.0


def test_summarise_keeps_phases_and_kinds_apart_and_times_only_answered_requests() -> None:
    samples = [
        Sample(NEXT, 0.010, 200, "baseline"),
        Sample(NEXT, 0.020, 200, "load"),
        Sample(NEXT, 0.040, 200, "load"),
        Sample(NEXT, 5.000, 0, "load"),  # a timeout: an error, not a latency
        Sample(NEXT_EMPTY, 0.005, 200, "load"),
        Sample(SUBMIT, 0.030, 201, "load"),
        Sample(RESUBMIT, 0.030, 201, "load"),
    ]
    load = summarise(samples, phase="load")
    assert load["requests"] == 6 and load["errors"] == 1
    assert load["error_rate"] == pytest.approx(1 / 6)
    assert load["statuses"] == {"0": 1, "200": 3, "201": 2}
    assert load["latency"][NEXT] == {"n": 2, "p50_ms": 30.0, "p95_ms": 39.0, "max_ms": 40.0}
    assert load["latency"][NEXT_EMPTY]["n"] == 1
    assert load["latency"][SUBMIT]["n"] == 1 and load["latency"][RESUBMIT]["n"] == 1
    baseline = summarise(samples, phase="baseline")
    assert baseline["requests"] == 1 and baseline["latency"][NEXT]["p50_ms"] == 10.0


# --- exactly once ---------------------------------------------------------------------------------


def test_exactly_once_when_every_acknowledged_key_has_its_one_row() -> None:
    accounting = exactly_once(
        acknowledged={"a:1": 10, "b:2": 11}, stored={"a:1": [10], "b:2": [11]}
    )
    assert (accounting.labels_submitted, accounting.labels_stored) == (2, 2)
    assert (accounting.labels_lost, accounting.labels_duplicated) == (0, 0)
    assert accounting.labels_unacknowledged == 0


def test_exactly_once_finds_lost_duplicated_and_unacknowledged_labels() -> None:
    accounting = exactly_once(
        acknowledged={"a:1": 10, "b:2": 11, "c:3": 12, "d:4": 13},
        stored={
            "a:1": [10],
            "b:2": [11, 17],  # stored twice
            # c:3 missing: lost
            "d:4": [99],  # another row than the one the server answered: lost as well
            "e:5": [20],  # stored, but its request never got an answer
        },
    )
    assert accounting.labels_submitted == 4
    assert accounting.labels_stored == 2
    assert accounting.labels_lost == 2
    assert accounting.labels_duplicated == 1
    assert accounting.labels_unacknowledged == 1


# --- the simulated volunteers against the real API ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_volunteers_double_clicking_and_retrying_store_each_label_exactly_once(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    django_user_model: type[User],
    live_server: object,
) -> None:
    project = ingested_project
    round_start(project=project, user=admin_user, size=project.crops.count())
    second = django_user_model.objects.create_user("val")
    membership_set(project=project, user=second, role=Role.VOLUNTEER)
    recorder = Recorder()
    plans = [
        ClientPlan(
            base_url=str(live_server),
            slug=project.slug,
            token=api_token_create(user=user, name="load")[1],
            species=dict(project.species.values_list("name", "id")),
            truth={},  # no truth: every answer is a species drawn at random
            think=(0.0, 0.0),
            # Every submission is sent twice: half at once (double click), half after the
            # answer (a retry).
            double_click_share=0.5,
            retry_share=0.5,
            mistake_share=0.0,
            seed=seed,
            timeout_s=30.0,
        )
        for seed, user in enumerate((volunteer, second))
    ]
    threads = [
        threading.Thread(
            target=volunteer_run,
            args=(plan, recorder),
            kwargs={"stop": threading.Event(), "cycles": 4},
        )
        for plan in plans
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert recorder.failures == []
    kinds = [s.kind for s in recorder.samples]
    assert kinds.count(SUBMIT) == 8 and kinds.count(RESUBMIT) == 8
    assert all(s.status == 201 for s in recorder.samples if s.kind in (SUBMIT, RESUBMIT))
    assert recorder.resubmits_inconsistent == 0
    stored, votes_duplicated, _ = stored_by_key(slug=project.slug)
    accounting = exactly_once(acknowledged=recorder.acknowledged, stored=stored)
    assert accounting.labels_submitted == accounting.labels_stored == 8
    assert accounting.labels_lost == accounting.labels_duplicated == 0
    assert accounting.labels_unacknowledged == 0
    assert votes_duplicated == 0


# --- the whole load test, briefly -----------------------------------------------------------------


@pytest.mark.integration
def test_a_short_load_test_on_postgresql_and_redis_writes_its_figures(tmp_path: Path) -> None:
    """3 volunteers for 5 s on the bundled sample, with gunicorn, a worker and a fresh database.

    About two minutes on a busy 2-core machine (setting the project up is most of it), so it
    runs only when asked: TRAPWISE_TEST_LOADTEST=1.
    """
    if os.environ.get("TRAPWISE_TEST_LOADTEST") != "1":
        pytest.skip("a two-minute run of the whole load test; TRAPWISE_TEST_LOADTEST=1 runs it")
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the load test runs on PostgreSQL and Redis (CI has both)")
    try:
        services_check(
            postgres="postgresql://postgres@127.0.0.1:5432", redis_url="redis://127.0.0.1:6379/14"
        )
    except LoadTestError as exc:
        pytest.skip(str(exc))
    command = [sys.executable, "-m", "benchmarks.loadtest", "--volunteers=3", "--duration=5"]
    command += ["--baseline-cycles=5", f"--images={SAMPLE_IMAGES}"]
    process = subprocess.Popen(
        command,
        cwd=settings.BASE_DIR,
        env={**os.environ, "TRAPWISE_BENCH_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]
    result = json.loads((tmp_path / "loadtest.json").read_text())
    for field in ("name", "unit", "value", "baseline_name", "baseline", "ratio", "params"):
        assert field in result
    assert result["params"]["volunteers"] == 3
    assert result["error_rate"] == 0
    assert result["labels_submitted"] == result["labels_stored"] > 0
    assert result["labels_lost"] == result["labels_duplicated"] == 0
    assert result["next_p95_ms"] > 0 and result["submit_p95_ms"] > 0
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = %s", (f"trapwise_load_{process.pid}",)
        ).fetchall()
    assert left == [], "the load test's database was not dropped"
