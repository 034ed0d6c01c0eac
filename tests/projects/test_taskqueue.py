"""The task outbox: a task asked for is kept until it ran, whatever the broker does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction

from activelearn import tasks
from projects.models import QueuedTask
from projects.outbox_signals import _task_finished, _task_started
from projects.taskqueue import task_enqueue, tasks_requeue
from tests.projects.conftest import FakeBroker

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_task_is_queued_after_commit_and_kept_until_it_finished(broker: FakeBroker) -> None:
    with transaction.atomic():
        record = task_enqueue(name=tasks.classifier_retrain_task.name, args=[7])
        assert broker.sent == []  # not before the data it needs is committed
    assert broker.sent == [(7,)]
    record.refresh_from_db()
    assert record.published_at is not None and record.attempts == 1 and record.error == ""

    task: Any = tasks.classifier_retrain_task
    task.push_request(hostname="celery@box")  # as the worker does around a run
    try:
        _task_started(task_id="t1", task=task, args=(7,))
    finally:
        task.pop_request()
    record.refresh_from_db()
    assert record.started_at is not None and record.worker == "celery@box"
    _task_finished(task_id="t1")
    assert not QueuedTask.objects.exists()


def test_a_rolled_back_request_queues_nothing(broker: FakeBroker) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        task_enqueue(name=tasks.classifier_retrain_task.name, args=[7])
        raise RuntimeError("the request failed")
    assert broker.sent == [] and not QueuedTask.objects.exists()


def test_broker_down_keeps_the_task_and_a_worker_queues_it_later(broker: FakeBroker) -> None:
    broker.down = True
    with transaction.atomic():
        task_enqueue(name=tasks.classifier_retrain_task.name, args=[7])  # does not raise
    record = QueuedTask.objects.get()
    assert record.published_at is None and record.attempts == 1
    assert "Connection refused" in record.error
    # Still down: the worker's periodic pass tries, fails, keeps it.
    assert tasks_requeue(grace=timedelta(0)) == 0
    # Back: queued, once.
    broker.down = False
    assert (
        tasks_requeue(grace=timedelta(seconds=60)) == 0
    )  # too young: its request may be sending it
    assert tasks_requeue(grace=timedelta(0)) == 1
    assert broker.sent == [(7,)]
    record.refresh_from_db()
    assert record.published_at is not None and record.error == "" and record.attempts == 3
    assert tasks_requeue(grace=timedelta(0)) == 0


def test_a_restarted_worker_queues_again_only_what_it_had_started(broker: FakeBroker) -> None:
    with transaction.atomic():
        mine = task_enqueue(name=tasks.classifier_retrain_task.name, args=[1])
        other = task_enqueue(name=tasks.classifier_retrain_task.name, args=[2])
        waiting = task_enqueue(name=tasks.classifier_retrain_task.name, args=[3])
    now = mine.created_at
    QueuedTask.objects.filter(pk=mine.pk).update(started_at=now, worker="celery@a")
    QueuedTask.objects.filter(pk=other.pk).update(started_at=now, worker="celery@b")
    broker.sent.clear()
    # celery@a died mid-task and starts again: its task runs again; celery@b's is still
    # running elsewhere and the waiting one is on the broker already.
    assert tasks_requeue(worker="celery@a", grace=timedelta(0)) == 1
    assert broker.sent == [(1,)]
    mine.refresh_from_db()
    assert (mine.started_at, mine.worker) == (None, "")
    assert QueuedTask.objects.get(pk=waiting.pk).published_at is not None


def test_detection_and_crop_refresh_are_kept_while_the_broker_is_down(
    project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin's detection job and threshold change go through the outbox too."""
    from detector.jobs import detection_job_create
    from embeddings import tasks as pipeline_tasks
    from embeddings.pipeline import project_thresholds_update

    down = FakeBroker()
    down.down = True
    monkeypatch.setattr(pipeline_tasks.detection_job_task, "delay", down)
    monkeypatch.setattr(pipeline_tasks.project_crops_refresh_task, "delay", down)
    job = detection_job_create(project=project, detector="offline", queue=True)
    project_thresholds_update(
        project=project, detection_threshold=0.3, min_box_pixels=8, crop_padding=0.1, queue=True
    )
    kept = {(r.name, tuple(r.args)): r for r in QueuedTask.objects.all()}
    assert set(kept) == {
        (pipeline_tasks.detection_job_task.name, (job.pk,)),
        (pipeline_tasks.project_crops_refresh_task.name, (project.pk,)),
    }
    assert all(r.published_at is None and "Connection refused" in r.error for r in kept.values())


def test_a_worker_does_not_import_its_task_modules_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a worker (its loader initialised the task modules at start) queueing a task must not
    run the import again: it would set Django up again, whose logging setup silences the
    worker's log for good. Elsewhere (a web process) the first task queued imports them."""
    from celery import current_app

    from projects import taskqueue

    calls: list[str] = []
    monkeypatch.setattr(current_app.loader, "import_default_modules", lambda: calls.append("x"))
    monkeypatch.setattr(taskqueue, "_discovered", False)
    monkeypatch.setattr(current_app.loader, "worker_initialized", True, raising=False)
    assert tasks.RETRAIN_TASK in taskqueue._tasks()
    assert calls == []
    monkeypatch.setattr(taskqueue, "_discovered", False)
    monkeypatch.setattr(current_app.loader, "worker_initialized", False, raising=False)
    taskqueue._tasks()
    taskqueue._tasks()
    assert calls == ["x"]
