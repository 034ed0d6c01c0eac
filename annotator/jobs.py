"""The dashboard's reads of background jobs: ``Job`` rows (embedding, retraining, fine-tuning,
written by ``projects.jobs``) and detection's ``DetectionJob`` rows, side by side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from detector.models import DetectionJob
from projects.models import Job, Project

# A running job not heard from for this long is shown as stalled (its worker may have died).
STALLED_AFTER = timedelta(minutes=30)
# Finished jobs in the dashboard's "recent jobs" list.
RECENT_JOBS = 5


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
    # What the job went on without: (file name, reason) pairs, the first ones only.
    problems: tuple[tuple[str, str], ...] = ()
    # Units done per second so far, while it runs (images per second for imports).
    rate: float | None = None
    # The Celery node name of the worker that ran it (e.g. "gpu@host"); "" before it starts or
    # when it ran in the foreground.
    worker: str = ""

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
            "rate": None if self.rate is None else round(self.rate, 2),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "detail": self.detail,
            "error": self.error,
            "stalled": self.stalled,
            "problems": [list(problem) for problem in self.problems],
            "worker": self.worker,
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
    problems: list[list[str]],
    worker: str,
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
        problems=tuple((str(p[0]), str(p[1])) for p in problems if len(p) == 2),
        rate=rate_estimate(started_at=started_at, done=done, now=now)
        if status == "running"
        else None,
        worker=worker,
    )


def rate_estimate(*, started_at: datetime | None, done: int, now: datetime) -> float | None:
    """Units done per second since the start; None before any unit or a measurable time."""
    if started_at is None or done <= 0:
        return None
    elapsed = (now - started_at).total_seconds()
    return done / elapsed if elapsed > 0 else None


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
        problems=job.problems,
        worker=job.worker,
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
        problems=job.problems,
        worker=job.worker,
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
