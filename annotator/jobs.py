"""Background jobs' progress: writes (start, advance, finish) and the dashboard's reads.

Embedding builds, fine-tuning and retraining report here through a ``Job`` row; detection
keeps its own ``DetectionJob`` (with its problem list) and is shown next to them. Workers
call ``job_advance`` after every batch; it writes at most about once a second (or per 1% of
the work), so reporting costs nothing next to the work itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from django.utils import timezone

from annotator.models import Job, Project
from detector.models import DetectionJob

# job_advance writes when this much time has passed since its last write ...
ADVANCE_MIN_SECONDS = 1.0
# ... or when this share of the total has been done since.
ADVANCE_MIN_SHARE = 0.01
# A running job not heard from for this long is shown as stalled (its worker may have died).
STALLED_AFTER = timedelta(minutes=30)
# Finished jobs in the dashboard's "recent jobs" list.
RECENT_JOBS = 5

# Monotonic clock; tests replace it to check the throttling without sleeping.
_clock: Callable[[], float] = time.monotonic


@dataclass
class _Written:
    """What job_advance last wrote for a job in this process: when, done and total."""

    at: float
    done: int
    total: int


_written: dict[int, _Written] = {}
_written_lock = threading.Lock()


def job_start(*, project: Project, kind: str, total: int, detail: str = "") -> Job:
    """Record a job of ``kind`` (a ``Job.Kind``) that starts now with ``total`` work units.

    Call it outside any long transaction: the dashboard reads the row from other connections.
    """
    if kind not in Job.Kind.values:
        raise ValueError(f"unknown job kind {kind!r}; choose one of {', '.join(Job.Kind.values)}")
    job = Job.objects.create(
        project=project,
        kind=kind,
        status=Job.Status.RUNNING,
        total=max(int(total), 0),
        detail=detail[:300],
        started_at=timezone.now(),
    )
    with _written_lock:
        _written[job.pk] = _Written(at=_clock(), done=0, total=job.total)
    return job


def job_advance(*, job_id: int, done: int, total: int | None = None, detail: str = "") -> bool:
    """Report that ``done`` units (of ``total``, when it changed) are finished.

    Cheap to call after every batch: the row is written only when ``ADVANCE_MIN_SECONDS``
    have passed since this process last wrote it, ``ADVANCE_MIN_SHARE`` of the total has been
    done since, the total or the detail changed, or the job reached its total. Returns whether
    it wrote.
    """
    done = max(int(done), 0)
    now = _clock()
    with _written_lock:
        last = _written.get(job_id)
        new_total = max(int(total), 0) if total is not None else None
        if last is None:  # first report in this process (e.g. a worker that took over)
            due = True
        else:
            known_total = last.total if new_total is None else new_total
            due = (
                detail != ""
                or known_total != last.total
                or now - last.at >= ADVANCE_MIN_SECONDS
                or (known_total > 0 and done - last.done >= ADVANCE_MIN_SHARE * known_total)
                or (known_total > 0 and done >= known_total > last.done)
            )
        if not due:
            return False
        base_total = last.total if last is not None else 0
        _written[job_id] = _Written(
            at=now, done=done, total=new_total if new_total is not None else base_total
        )
    fields: dict[str, object] = {"done": done, "updated_at": timezone.now()}
    if new_total is not None:
        fields["total"] = new_total
    if detail:
        fields["detail"] = detail[:300]
    Job.objects.filter(pk=job_id).update(**fields)
    return True


def job_finish(*, job_id: int, error: str = "") -> None:
    """Mark the job done (all units done) or, with an ``error``, failed with that message."""
    with _written_lock:
        _written.pop(job_id, None)
    now = timezone.now()
    if error:
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.FAILED, error=error, finished_at=now, updated_at=now
        )
    else:
        job = Job.objects.filter(pk=job_id).only("total", "done").first()
        if job is None:
            return
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.DONE, done=max(job.total, job.done), finished_at=now, updated_at=now
        )


class JobTracker:
    """A running job as a context manager: ``advance`` it; an exception fails it.

    ``with job_track(...) as job: ... job.advance(done, total)``. Leaving the block normally
    finishes the job; an exception records ``Type: message`` as its error and propagates.
    ``advance`` has the plain ``(done, total)`` signature of the ML code's progress callbacks.
    """

    def __init__(self, job: Job) -> None:
        self.job = job

    def advance(self, done: int, total: int | None = None) -> None:
        job_advance(job_id=self.job.pk, done=done, total=total)

    def step(self, done: int, detail: str) -> None:
        """Report a named step (e.g. "cross-validating, fold 2 of 5"); always written."""
        job_advance(job_id=self.job.pk, done=done, detail=detail)

    def __enter__(self) -> JobTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            job_finish(job_id=self.job.pk)
        else:
            job_finish(job_id=self.job.pk, error=f"{exc_type.__name__}: {exc}"[:5000])


def job_track(*, project: Project, kind: str, total: int, detail: str = "") -> JobTracker:
    """``job_start`` wrapped in a ``JobTracker``, for ``with`` blocks."""
    return JobTracker(job_start(project=project, kind=kind, total=total, detail=detail))


# --- Reads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    """One job as the dashboard shows it. ``seconds_left`` is elapsed / done x remaining."""

    id: str  # "job-<pk>" or "detection-<pk>": unique across both tables
    kind: str
    label: str
    status: str
    done: int
    total: int
    percent: float | None
    started_at: datetime | None
    finished_at: datetime | None
    seconds_left: float | None
    detail: str
    error: str
    stalled: bool

    @property
    def time_left(self) -> str:
        """``seconds_left`` for people: "about 3 min left"; empty when unknown."""
        return duration_text(self.seconds_left)

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "status": self.status,
            "done": self.done,
            "total": self.total,
            "percent": None if self.percent is None else round(self.percent, 1),
            "seconds_left": None if self.seconds_left is None else round(self.seconds_left),
            "time_left": self.time_left,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "detail": self.detail,
            "error": self.error,
            "stalled": self.stalled,
        }


def duration_text(seconds: float | None) -> str:
    """ "about 40 s left", "about 3 min left", "about 2 h 5 min left"; "" for None."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"about {max(round(seconds), 1)} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


def seconds_left_estimate(
    *, started_at: datetime | None, done: int, total: int, now: datetime
) -> float | None:
    """Time left at the rate so far: elapsed / done x (total - done); None before any unit."""
    if started_at is None or done <= 0 or total <= 0:
        return None
    elapsed = max((now - started_at).total_seconds(), 0.0)
    return elapsed / done * max(total - done, 0)


def _progress(
    *,
    id_: str,
    kind: str,
    label: str,
    status: str,
    done: int,
    total: int,
    started_at: datetime | None,
    finished_at: datetime | None,
    updated_at: datetime | None,
    detail: str,
    error: str,
    now: datetime,
) -> JobProgress:
    running = status in ("queued", "running")
    return JobProgress(
        id=id_,
        kind=kind,
        label=label,
        status=status,
        done=done,
        total=total,
        percent=min(100.0 * done / total, 100.0) if total > 0 else None,
        started_at=started_at,
        finished_at=finished_at,
        seconds_left=seconds_left_estimate(started_at=started_at, done=done, total=total, now=now)
        if status == "running"
        else None,
        detail=detail,
        error=error,
        stalled=running
        and started_at is not None
        and updated_at is not None
        and now - updated_at > STALLED_AFTER,
    )


def _job_progress(job: Job, now: datetime) -> JobProgress:
    return _progress(
        id_=f"job-{job.pk}",
        kind=job.kind,
        label=job.get_kind_display(),
        status=job.status,
        done=job.done,
        total=job.total,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        detail=job.detail,
        error=job.error,
        now=now,
    )


def _detection_progress(job: DetectionJob, now: datetime) -> JobProgress:
    problems = f", {job.failed} problems" if job.failed else ""
    return _progress(
        id_=f"detection-{job.pk}",
        kind="detection",
        label="Detection",
        status=job.status,
        # Images that failed are finished too: they count toward the time left.
        done=job.done + job.failed,
        total=job.total,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        detail=f"{job.detector} detector, {job.crops} crops{problems}",
        error=job.error,
        now=now,
    )


_ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING)


def jobs_active_for_project(*, project: Project) -> list[JobProgress]:
    """Queued and running jobs of the project, oldest first, with the latest detection job
    when it is queued or running. Two queries."""
    now = timezone.now()
    jobs = Job.objects.filter(project=project, status__in=_ACTIVE).order_by("created_at", "id")
    result = [_job_progress(job, now) for job in jobs]
    detection = DetectionJob.objects.filter(project=project).order_by("-created_at", "-id").first()
    if detection is not None and detection.status in _ACTIVE:
        result.insert(0, _detection_progress(detection, now))
    return result


def jobs_recent_for_project(*, project: Project, limit: int = RECENT_JOBS) -> list[JobProgress]:
    """The ``limit`` most recently finished (done or failed) jobs, detection included, newest
    first. Two queries."""
    now = timezone.now()
    finished = (Job.Status.DONE, Job.Status.FAILED)
    jobs = [
        _job_progress(j, now)
        for j in Job.objects.filter(project=project, status__in=finished).order_by(
            "-finished_at", "-id"
        )[:limit]
    ]
    detections = [
        _detection_progress(j, now)
        for j in DetectionJob.objects.filter(project=project, status__in=finished).order_by(
            "-created_at", "-id"
        )[:limit]
    ]
    merged = jobs + detections
    merged.sort(key=lambda p: p.finished_at or p.started_at or now, reverse=True)
    return merged[:limit]
