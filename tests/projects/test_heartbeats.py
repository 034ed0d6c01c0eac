"""Worker heartbeats: a task whose worker is gone for good is queued again by another worker,
never one whose worker still beats, and once however many workers look at the same moment."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from activelearn import tasks
from projects import outbox_signals, taskqueue
from projects.heartbeats import Heartbeat, worker_heartbeat_write
from projects.models import QueuedTask, WorkerHeartbeat
from projects.taskqueue import task_enqueue, tasks_requeue
from tests.projects.conftest import FakeBroker

pytestmark = pytest.mark.django_db(transaction=True)

LOST = timedelta(minutes=5)


def _started(*, arg: int, worker: str, at: datetime, broker: FakeBroker) -> QueuedTask:
    """A retrain task on the broker, taken by ``worker`` at ``at``."""
    with transaction.atomic():
        record = task_enqueue(name=tasks.classifier_retrain_task.name, args=[arg])
    QueuedTask.objects.filter(pk=record.pk).update(started_at=at, worker=worker)
    broker.sent.clear()
    return record


def _beat(*, node: str, at: datetime) -> None:
    WorkerHeartbeat.objects.create(node=node, seen_at=at, started_at=at - timedelta(hours=1))


def test_a_task_of_a_worker_that_stopped_beating_is_queued_again(broker: FakeBroker) -> None:
    now = timezone.now()
    record = _started(arg=1, worker="gpu@gone", at=now - timedelta(minutes=20), broker=broker)
    _beat(node="gpu@gone", at=now - LOST - timedelta(seconds=5))
    assert tasks_requeue(grace=timedelta(0), lost_after=LOST) == 1
    assert broker.sent == [(1,)]
    record.refresh_from_db()
    assert (record.started_at, record.worker) == (None, "")
    assert record.published_at is not None and record.published_at >= now
    # Queued once: it now waits on the broker for a living worker.
    assert tasks_requeue(grace=timedelta(0), lost_after=LOST) == 0
    assert broker.sent == [(1,)]


def test_a_task_of_a_worker_that_still_beats_is_left_alone(broker: FakeBroker) -> None:
    """Fine-tuning runs for hours: a long start is no sign of death while the worker beats."""
    now = timezone.now()
    record = _started(arg=1, worker="gpu@busy", at=now - timedelta(hours=5), broker=broker)
    _beat(node="gpu@busy", at=now - LOST + timedelta(seconds=30))
    assert tasks_requeue(grace=timedelta(0), lost_after=LOST) == 0
    assert broker.sent == []
    record.refresh_from_db()
    assert record.worker == "gpu@busy" and record.started_at is not None


def test_a_worker_without_a_heartbeat_row_is_lost_only_after_the_lost_time(
    broker: FakeBroker,
) -> None:
    """Workers from before heartbeats, or shut down with a task unfinished, have no row."""
    now = timezone.now()
    old = _started(arg=1, worker="cpu@old", at=now - LOST - timedelta(seconds=5), broker=broker)
    young = _started(arg=2, worker="cpu@new", at=now - timedelta(seconds=30), broker=broker)
    # A foreground run (``task_run``: the bare host name) belongs to a command, not a worker.
    here = _started(arg=3, worker="box", at=now - timedelta(hours=1), broker=broker)
    assert tasks_requeue(grace=timedelta(0), lost_after=LOST) == 1
    assert broker.sent == [(1,)]
    assert QueuedTask.objects.get(pk=old.pk).worker == ""
    assert QueuedTask.objects.get(pk=young.pk).worker == "cpu@new"
    assert QueuedTask.objects.get(pk=here.pk).worker == "box"


def test_only_the_lost_workers_tasks_go_brute_force(broker: FakeBroker) -> None:
    """Every combination of beat (fresh, stale, none) and start (recent, old) against the rule
    written out in Python."""
    now = timezone.now()
    beats = {"fresh": now - timedelta(seconds=10), "stale": now - LOST - timedelta(seconds=1)}
    starts = {"recent": now - timedelta(seconds=10), "old": now - LOST - timedelta(minutes=1)}
    expected = set()
    for arg, (beat, start) in enumerate(
        (b, s) for b in ("fresh", "stale", "none") for s in ("recent", "old")
    ):
        node = f"w{arg}@host"
        if beat != "none":
            _beat(node=node, at=beats[beat])
        _started(arg=arg, worker=node, at=starts[start], broker=broker)
        if beat == "stale" or (beat == "none" and start == "old"):
            expected.add((arg,))
    assert tasks_requeue(grace=timedelta(0), lost_after=LOST) == len(expected) == 3
    assert set(broker.sent) == expected and len(broker.sent) == 3


def _requeue_after_another_worker(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """One requeue pass into which another worker's whole pass falls, between the first's
    read of the records and its claim of the first one; returns both passes' counts."""
    real_claim = taskqueue.queued_task_claim
    other: list[int] = []

    def claim_after_another_worker(**kwargs: Any) -> bool:
        if not other:
            other.append(-1)  # the other pass claims for real
            other[0] = tasks_requeue(grace=timedelta(0), lost_after=LOST)
        return real_claim(**kwargs)

    monkeypatch.setattr(taskqueue, "queued_task_claim", claim_after_another_worker)
    return tasks_requeue(grace=timedelta(0), lost_after=LOST), other[0]


def test_a_record_changed_after_it_was_read_is_not_queued_again(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers read the same lost record; the second to claim it finds it changed (the
    first queued it again) and publishes nothing."""
    now = timezone.now()
    _started(arg=1, worker="gpu@gone", at=now - timedelta(hours=1), broker=broker)
    assert _requeue_after_another_worker(monkeypatch) == (0, 1)
    assert broker.sent == [(1,)]


def test_a_waiting_task_read_by_two_workers_is_queued_once(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a task that never reached the broker: its record stays unpublished while
    claimed, so the compare must catch the other's publish."""
    QueuedTask.objects.create(name=tasks.classifier_retrain_task.name, args=[4])  # unpublished
    assert _requeue_after_another_worker(monkeypatch) == (0, 1)
    assert broker.sent == [(4,)]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks between connections: PostgreSQL"
)
def test_two_workers_requeuing_at_the_same_moment_publish_once(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads (two connections) read the lost record, meet, then claim at once: the
    second waits for the first's row lock, finds the record changed and publishes nothing."""
    now = timezone.now()
    _started(arg=1, worker="gpu@gone", at=now - timedelta(hours=1), broker=broker)
    broker.delay = 0.3  # the first holds its claim while it publishes
    real_claim = taskqueue.queued_task_claim
    both_read = threading.Barrier(2, timeout=10)

    def claim_together(**kwargs: Any) -> bool:
        both_read.wait()
        return real_claim(**kwargs)

    monkeypatch.setattr(taskqueue, "queued_task_claim", claim_together)
    counts: list[int] = []
    errors: list[BaseException] = []

    def requeue() -> None:
        try:
            counts.append(tasks_requeue(grace=timedelta(0), lost_after=LOST))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=requeue) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert errors == []
    assert sorted(counts) == [0, 1]
    assert broker.sent == [(1,)]


def test_the_heartbeat_thread_beats_while_the_main_thread_is_busy() -> None:
    heartbeat = Heartbeat(node="gpu@box", interval=0.05, queues=["gpu"])
    assert heartbeat.beat()
    first = WorkerHeartbeat.objects.get(node="gpu@box")
    assert (first.queues, first.started_at) == ("gpu", heartbeat.started_at)
    heartbeat.start()
    try:
        seen = first.seen_at
        deadline = time.monotonic() + 2
        while seen <= first.seen_at and time.monotonic() < deadline:
            busy_until = time.monotonic() + 0.2
            while time.monotonic() < busy_until:  # a task computing, holding the GIL
                sum(range(1000))
            seen = WorkerHeartbeat.objects.get(node="gpu@box").seen_at
    finally:
        heartbeat.stop()
    assert seen > first.seen_at
    assert not heartbeat.is_alive()
    assert WorkerHeartbeat.objects.count() == 1


def test_a_failing_beat_is_logged_and_the_next_one_tries_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from projects import heartbeats

    calls: list[str] = []

    def flaky(**kwargs: Any) -> WorkerHeartbeat:
        calls.append(kwargs["node"])
        if len(calls) <= 2:
            raise RuntimeError("the database is down")
        return worker_heartbeat_write(**kwargs)

    monkeypatch.setattr(heartbeats, "worker_heartbeat_write", flaky)
    heartbeat = Heartbeat(node="cpu@box", interval=0.02)
    assert heartbeat.beat() is False  # logged, not raised
    heartbeat.start()
    try:
        deadline = time.monotonic() + 2
        while not WorkerHeartbeat.objects.filter(node="cpu@box").exists():
            assert time.monotonic() < deadline, "the thread never beat again"
            time.sleep(0.02)
    finally:
        heartbeat.stop()
    assert "could not write the heartbeat of cpu@box" in caplog.text


class FakeTimer:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def call_repeatedly(self, seconds: float, fun: object) -> None:
        self.calls.append(seconds)


def test_a_ready_worker_beats_and_a_clean_shutdown_removes_its_heartbeat(
    broker: FakeBroker, settings: Any
) -> None:
    from celery import current_app

    settings.TRAPWISE_WORKER_HEARTBEAT_SECONDS = 60
    consumer: Any = type("Consumer", (), {})()
    consumer.hostname, consumer.app, consumer.timer = "gpu@box", current_app, FakeTimer()
    outbox_signals._tasks_requeue_on_start(sender=consumer)
    try:
        assert WorkerHeartbeat.objects.filter(node="gpu@box").exists()  # before the first task
        heartbeat = outbox_signals._heartbeat
        assert heartbeat is not None and heartbeat.is_alive() and heartbeat.daemon
    finally:
        outbox_signals._heartbeat_stop()
    assert not heartbeat.is_alive() and outbox_signals._heartbeat is None
    assert not WorkerHeartbeat.objects.exists()
