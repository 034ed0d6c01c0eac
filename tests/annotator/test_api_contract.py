"""The API keeps its own contract: schemathesis, run against the live API, finds nothing.

Schemathesis reads /api/v1/openapi.json and sends what the description allows (and what it
forbids), then checks every answer against it: no 5xx, only documented status codes, content
types and bodies, invalid requests refused, valid ones accepted, auth enforced. The fuzzer's
writes (labels, rounds) land in this test's database.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.services import round_start
from annotator.api.services import api_token_create
from projects.models import Project

pytestmark = pytest.mark.django_db(transaction=True)

# Cases per operation and phase: the whole run stays within a few minutes on two cores.
MAX_EXAMPLES = 30
SEED = 16


def test_schemathesis_finds_no_failure(
    live_server: Any, ingested_project: Project, admin_user: User, tmp_path: Path
) -> None:
    round_start(project=ingested_project, user=admin_user, strategy="random", size=5)
    _, key = api_token_create(user=admin_user, name="schemathesis")
    report = tmp_path / "report"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{live_server.url}/api/v1/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--header",
            f"Authorization: Bearer {key}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--generation-deterministic",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, output[-20000:]
    assert re.search(r"\d+ generated", output), output[-3000:]
