"""The load test's measurements: request kinds, samples, latency summaries, error rate and
the exactly-once accounting of labels (pure; tests/test_loadtest.py checks them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GOAL_P95_MS = 100.0
# Request kinds. "next" served a crop, "next_empty" found none to serve (every crop of the
# round is voted or held, or no round is open); "resubmit" is a deliberate second copy.
NEXT, NEXT_EMPTY, SUBMIT, RESUBMIT, ADMIN = "next", "next_empty", "submit", "resubmit", "admin"
VOLUNTEER_KINDS = (NEXT, NEXT_EMPTY, SUBMIT, RESUBMIT)


class LoadTestError(RuntimeError):
    """The load test cannot run; the message says what is missing and what to do."""


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
