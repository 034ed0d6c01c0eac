"""Queues by kind of work: every task is routed to ``gpu`` or ``cpu`` (annotator/settings.py),
the outbox publishes to the routed queue, and a worker reading one kind takes only that kind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from activelearn.services import FINETUNE_TASK, RETRAIN_TASK
from annotator.celery import app
from annotator.export_jobs import EXPORT_TASK
from detector.import_jobs import IMPORT_TASK
from detector.jobs import DETECTION_TASK, detection_job_create
from detector.models import DetectionJob
from embeddings.pipeline import CROPS_EMBED_TASK, CROPS_REFRESH_TASK
from projects.models import Job, Project, QueuedTask
from projects.taskqueue import task_enqueue
from tests.processes import celery_worker_start, process_stop, wait_for, worker_queues

# The kind of work of each task, as the issue names them.
EXPECTED_KINDS = {
    DETECTION_TASK: "gpu",  # detection (and embedding its crops)
    CROPS_EMBED_TASK: "gpu",  # embedding
    FINETUNE_TASK: "gpu",  # fine-tuning and re-embedding
    RETRAIN_TASK: "cpu",  # retraining and prediction
    CROPS_REFRESH_TASK: "cpu",  # crop re-derivation
    IMPORT_TASK: "cpu",  # imports
    EXPORT_TASK: "cpu",  # export files
}


def _trapwise_tasks() -> set[str]:
    """Every task the worker registers, Celery's own (``celery.*``) aside."""
    app.loader.import_default_modules()  # as a worker does when it starts
    return {name for name in app.tasks if not name.startswith("celery.")}


def test_every_registered_task_has_a_route_and_every_route_a_task() -> None:
    tasks = _trapwise_tasks()
    assert tasks, "no task registered: the task modules were not found"
    unrouted = tasks - set(settings.TRAPWISE_TASK_KINDS)
    assert not unrouted, f"add these tasks to TRAPWISE_TASK_KINDS in settings: {sorted(unrouted)}"
    stale = set(settings.TRAPWISE_TASK_KINDS) - tasks
    assert not stale, f"TRAPWISE_TASK_KINDS names tasks that do not exist: {sorted(stale)}"
    assert set(settings.TRAPWISE_TASK_KINDS.values()) <= {"gpu", "cpu"}


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_the_router_sends_each_task_to_its_kinds_queue(name: str) -> None:
    queue = {"gpu": settings.TRAPWISE_GPU_QUEUE, "cpu": settings.TRAPWISE_CPU_QUEUE}
    assert settings.TRAPWISE_TASK_KINDS[name] == EXPECTED_KINDS[name]
    route = app.amqp.router.route({}, name)
    assert route["queue"].name == queue[EXPECTED_KINDS[name]]


def _settings_queues(**environ: str) -> list[str]:
    """The detection and retraining tasks' queues and the default queue, as settings read them
    in a fresh process whose environment has ``environ`` and no other queue names."""
    script = (
        "import annotator.settings as s; r = s.CELERY_TASK_ROUTES; "
        f"print(r[{DETECTION_TASK!r}]['queue'], r[{RETRAIN_TASK!r}]['queue'], "
        "s.CELERY_TASK_DEFAULT_QUEUE)"
    )
    env = {k: v for k, v in os.environ.items() if k not in QUEUE_VARIABLES}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env={**env, **environ},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


QUEUE_VARIABLES = ("TRAPWISE_GPU_QUEUE", "TRAPWISE_CPU_QUEUE")


def test_queue_names_come_from_the_environment() -> None:
    assert _settings_queues() == ["gpu", "cpu", "cpu"]
    assert _settings_queues(TRAPWISE_GPU_QUEUE="site-a-gpu", TRAPWISE_CPU_QUEUE="site-a-cpu") == [
        "site-a-gpu",
        "site-a-cpu",
        "site-a-cpu",
    ]


def _message_task(queue: str) -> str | None:
    """The task name of the next message on ``queue`` of the configured broker (taken off it),
    or None when the queue stays empty for a second."""
    with app.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue, no_ack=True)
        try:
            message = simple.get(timeout=1)
        except simple.Empty:
            return None
        finally:
            simple.close()
        return str(message.headers["task"])


@pytest.mark.django_db(transaction=True)
def test_the_outbox_publishes_to_the_routed_queue(project: Project, worker_queue: str) -> None:
    queues = worker_queues(worker_queue)
    task_enqueue(name=CROPS_EMBED_TASK, args=[project.pk])
    task_enqueue(name=RETRAIN_TASK, args=[project.pk])
    assert QueuedTask.objects.filter(published_at__isnull=False).count() == 2
    assert _message_task(queues["gpu"]) == CROPS_EMBED_TASK
    assert _message_task(queues["cpu"]) == RETRAIN_TASK
    assert _message_task(queues["gpu"]) is None and _message_task(queues["cpu"]) is None


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Workers a test starts; stopped and their logs shown after."""
    workers: list[subprocess.Popen[bytes]] = []
    yield workers
    for worker in workers:
        process_stop(worker)
    for log in sorted(tmp_path.glob("*.log")):
        print(log.name, log.read_text()[-3000:])


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_gpu_worker_leaves_cpu_work_to_a_cpu_worker_and_each_is_named_on_its_job(
    project: Project,
    worker_queue: str,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    gpu = celery_worker_start(queue=worker_queue, log=tmp_path / "gpu.log", kinds=("gpu",))
    started.append(gpu)
    # Queued first, so that a gpu worker that took any queue would meet it first.
    task_enqueue(name=CROPS_REFRESH_TASK, args=[project.pk])  # cpu: re-deriving crops
    detection = detection_job_create(project=project, detector="offline")  # gpu

    def detection_done() -> DetectionJob | None:
        # Failed counts too (a backbone's weights missing offline): the worker ran it.
        job = DetectionJob.objects.get(pk=detection.pk)
        finished = (DetectionJob.Status.DONE, DetectionJob.Status.FAILED)
        return job if job.status in finished else None

    ran = wait_for(detection_done, what="the gpu worker running detection", process=gpu)
    assert ran.worker.startswith(f"{worker_queue}-gpu@"), ran.worker
    # The gpu worker has run the task queued after the cpu one; the cpu one is still waiting.
    assert not Job.objects.filter(project=project, kind=Job.Kind.CROPS).exists()
    waiting = QueuedTask.objects.get(name=CROPS_REFRESH_TASK)
    assert waiting.published_at is not None and waiting.started_at is None

    cpu = celery_worker_start(queue=worker_queue, log=tmp_path / "cpu.log", kinds=("cpu",))
    started.append(cpu)
    crops = wait_for(
        lambda: Job.objects.filter(
            project=project, kind=Job.Kind.CROPS, status=Job.Status.DONE
        ).first(),
        what="the cpu worker re-deriving crops",
        process=cpu,
    )
    assert crops.worker.startswith(f"{worker_queue}-cpu@"), crops.worker
    wait_for(lambda: not QueuedTask.objects.exists(), what="the outbox emptied", process=cpu)
