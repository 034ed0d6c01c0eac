"""The Makefile's worker commands: `make worker QUEUES=...` reads only the queues it is given,
and `make demo`'s worker (`make serve`) reads every queue."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _celery_line(*args: str, **environ: str) -> str:
    """The celery command `make -n ARGS` would run (nothing is run), with the queue names of
    ``environ`` only."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_QUEUE") and k != "QUEUES"}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=REPO,
        env={**env, **environ},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if "celery -A annotator worker" in line]
    assert len(lines) == 1, out
    return lines[0]


def test_make_worker_for_one_kind_reads_only_its_queue_and_is_named_after_it() -> None:
    line = _celery_line("worker", "QUEUES=gpu")
    assert " -Q gpu " in line and "gpu@%h" in line, line
    assert "cpu" not in line
    line = _celery_line("worker", "QUEUES=cpu")
    assert " -Q cpu " in line and "cpu@%h" in line and "gpu" not in line, line


def test_make_worker_reads_both_queues_by_default_under_their_configured_names() -> None:
    assert " -Q gpu,cpu " in _celery_line("worker")
    line = _celery_line("worker", TRAPWISE_GPU_QUEUE="site-gpu", TRAPWISE_CPU_QUEUE="site-cpu")
    assert " -Q site-gpu,site-cpu " in line, line


def test_the_demos_one_worker_reads_every_queue() -> None:
    assert " -Q gpu,cpu " in _celery_line("serve")
