"""Background jobs' progress: the writes (start, advance, finish); the dashboard reads them in
``annotator.jobs``.

Embedding builds, fine-tuning, retraining and crop re-derivation report here through a ``Job``
row (with the problems it went on without); detection keeps its own ``DetectionJob`` and is
shown next to them. Workers call ``job_advance`` after every batch; it writes at most about
once a second (or per 1% of the work), so reporting costs nothing next to the work itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from celery import current_task
from django.utils import timezone

from projects.models import Job, Project

# job_advance writes when this much time has passed since its last write ...
ADVANCE_MIN_SECONDS = 1.0
# ... or when this share of the total has been done since.
ADVANCE_MIN_SHARE = 0.01

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


def worker_current() -> str:
    """The Celery node name (e.g. ``gpu@host``) of the worker whose task runs this code; "" outside
    a worker (a command in the foreground, a test, a task applied eagerly)."""
    task = current_task  # a proxy: false when no task runs in this thread
    if not task or task.request.is_eager or task.request.called_directly:
        return ""
    return str(task.request.hostname or "")


def job_start(*, project: Project, kind: str, total: int, detail: str = "") -> Job:
    """Record a job of ``kind`` (a ``Job.Kind``) that starts now with ``total`` work units, run
    by ``worker_current()``.

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
        worker=worker_current(),
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


# Problems kept on a job row (the count of all of them goes into its detail).
MAX_PROBLEMS_KEPT = 200


def job_problems_record(
    *, job_id: int, problems: Sequence[tuple[str, str]], detail: str = ""
) -> None:
    """Keep the first ``MAX_PROBLEMS_KEPT`` (item, reason) pairs on the job, for the dashboard;
    ``detail`` (e.g. "2 images with problems") replaces the job's detail when given."""
    fields: dict[str, object] = {
        "problems": [[str(item), str(reason)] for item, reason in problems[:MAX_PROBLEMS_KEPT]],
        "updated_at": timezone.now(),
    }
    if detail:
        fields["detail"] = detail[:300]
    Job.objects.filter(pk=job_id).update(**fields)


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

    def problems(self, problems: Sequence[tuple[str, str]], detail: str = "") -> None:
        """Record what the job skipped (``job_problems_record``)."""
        job_problems_record(job_id=self.job.pk, problems=problems, detail=detail)

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


def job_resume(*, job: Job) -> JobTracker:
    """A job recorded earlier as queued (an import, an export), marked running now by
    ``worker_current()`` and wrapped in a ``JobTracker``. A job run again keeps its first
    ``started_at``; its old error is cleared."""
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING,
        started_at=job.started_at or timezone.now(),
        worker=worker_current(),
        error="",
    )
    return JobTracker(job)


def job_track(*, project: Project, kind: str, total: int, detail: str = "") -> JobTracker:
    """``job_start`` wrapped in a ``JobTracker``, for ``with`` blocks."""
    return JobTracker(job_start(project=project, kind=kind, total=total, detail=detail))
