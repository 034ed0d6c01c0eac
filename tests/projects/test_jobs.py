"""Job progress writes: throttled, finished or failed, and the jobs the pipeline reports."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from annotator.jobs import (
    jobs_active_for_project,
    jobs_recent_for_project,
)
from projects import jobs
from projects.jobs import job_advance, job_finish, job_start, job_track
from projects.models import Job, Project
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(jobs, "_clock", fake)
    return fake


def test_advance_writes_at_most_once_a_second_or_per_percent(
    project: Project, clock: FakeClock
) -> None:
    job = job_start(project=project, kind=Job.Kind.EMBEDDING, total=10_000, detail="all crops")
    assert (job.status, job.done, job.total, job.detail) == ("running", 0, 10_000, "all crops")
    assert job.started_at is not None
    # 99 units (under 1%) within the same second: no write.
    assert [job_advance(job_id=job.pk, done=d) for d in range(1, 100)] == [False] * 99
    job.refresh_from_db()
    assert job.done == 0
    # The 100th unit is 1% since the last write.
    assert job_advance(job_id=job.pk, done=100)
    job.refresh_from_db()
    assert job.done == 100
    assert not job_advance(job_id=job.pk, done=101)
    clock.now += 1.0  # a second later, one more unit is written
    assert job_advance(job_id=job.pk, done=102)
    # A changed total or detail is always written.
    assert job_advance(job_id=job.pk, done=103, total=20_000)
    assert job_advance(job_id=job.pk, done=104, detail="half")
    job.refresh_from_db()
    assert (job.done, job.total, job.detail) == (104, 20_000, "half")


def test_advance_always_writes_the_last_unit(project: Project, clock: FakeClock) -> None:
    job = job_start(project=project, kind=Job.Kind.EMBEDDING, total=1000)
    writes = sum(job_advance(job_id=job.pk, done=d) for d in range(1, 1001))
    # One write per 1% (ten units) and none in between, the clock standing still.
    assert writes == 100
    job.refresh_from_db()
    assert job.done == 1000


def test_finish_and_failure(project: Project) -> None:
    done = job_start(project=project, kind=Job.Kind.RETRAIN, total=9)
    job_advance(job_id=done.pk, done=3)
    job_finish(job_id=done.pk)
    done.refresh_from_db()
    assert (done.status, done.done, done.error) == ("done", 9, "")
    assert done.finished_at is not None

    with (
        pytest.raises(RuntimeError, match="disk full"),
        job_track(project=project, kind=Job.Kind.FINETUNE, total=10, detail="v2") as tracker,
    ):
        tracker.advance(4, 10)
        raise RuntimeError("disk full")
    failed = Job.objects.get(kind=Job.Kind.FINETUNE)
    assert (failed.status, failed.done, failed.error) == ("failed", 4, "RuntimeError: disk full")
    assert failed.finished_at is not None
    assert jobs_active_for_project(project=project) == []
    recent = jobs_recent_for_project(project=project)
    assert [(j.kind, j.status, j.error) for j in recent] == [
        ("finetune", "failed", "RuntimeError: disk full"),
        ("retrain", "done", ""),
    ]


def test_ingest_reports_an_embedding_job(ingested_project: Project) -> None:
    (job,) = Job.objects.filter(project=ingested_project)
    n_crops = ingested_project.crops.count()
    assert (job.kind, job.status, job.done, job.total) == ("embedding", "done", n_crops, n_crops)
    assert job.detail == "embedding every crop for v1"


def test_retrain_reports_its_steps(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn.services import classifier_retrain
    from activelearn.services.retrain import RETRAIN_STEPS

    steps: list[tuple[int, str]] = []
    real_advance = jobs.job_advance

    def spy(*, job_id: int, done: int, total: int | None = None, detail: str = "") -> bool:
        steps.append((done, detail))
        return real_advance(job_id=job_id, done=done, total=total, detail=detail)

    monkeypatch.setattr(jobs, "job_advance", spy)
    label_by_truth(ingested_project, volunteer, ingested_project.crops.select_related("image"))
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    job = Job.objects.get(project=ingested_project, kind=Job.Kind.RETRAIN)
    assert (job.status, job.done, job.total) == ("done", RETRAIN_STEPS, RETRAIN_STEPS)
    done = [d for d, _ in steps]
    assert done[:3] == [1, 2, 3] and done == sorted(done) and done[-1] == RETRAIN_STEPS - 1
    assert any("cross-validating: fold 2" in detail for _, detail in steps)
    assert steps[0][1] == f"classifier v1: training on {classifier.n_labels} labelled crops"


def test_failed_retrain_records_the_error(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn import classifier, services

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("out of memory while training")

    label_by_truth(ingested_project, volunteer, ingested_project.crops.select_related("image"))
    # The ensemble (activelearn.classifier.ensemble_train) looks the trainer up there.
    monkeypatch.setattr(classifier, "classifier_train", broken)
    with pytest.raises(MemoryError):
        services.classifier_retrain(project_id=ingested_project.pk)
    job = Job.objects.get(project=ingested_project, kind=Job.Kind.RETRAIN)
    assert job.status == "failed"
    assert job.error == "MemoryError: out of memory while training"


def test_finetune_reports_epochs_then_reembedding(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn.services import embedding_finetune_and_retrain
    from embeddings.selectors import embedding_version_current
    from embeddings.services import embedding_finetune_create

    reports: list[tuple[str, int, int | None]] = []
    real_advance = jobs.job_advance

    def spy(*, job_id: int, done: int, total: int | None = None, detail: str = "") -> bool:
        reports.append((Job.objects.get(pk=job_id).kind, done, total))
        return real_advance(job_id=job_id, done=done, total=total, detail=detail)

    monkeypatch.setattr(jobs, "job_advance", spy)
    label_by_truth(ingested_project, volunteer, ingested_project.crops.select_related("image"))
    parent = embedding_version_current(project=ingested_project)
    assert parent is not None
    ingested_project.finetune_epochs = 3
    ingested_project.save(update_fields=["finetune_epochs"])
    version = embedding_finetune_create(
        project=ingested_project, parent=parent, last_label_id=0, mode="head"
    )
    embedding_finetune_and_retrain(version_id=version.pk)
    epochs = [(done, total) for kind, done, total in reports if kind == "finetune"]
    assert epochs == [(1, 3), (2, 3), (3, 3)]
    finetune = Job.objects.get(project=ingested_project, kind=Job.Kind.FINETUNE)
    assert (finetune.status, finetune.done, finetune.total) == ("done", 3, 3)
    assert finetune.detail.startswith(f"v{version.number} from v{parent.number}, head mode")
    n_crops = ingested_project.crops.count()
    # The backbone features were computed once, when v1 was built (its PCA head is fitted on
    # them); head-only fine-tuning reads them from the cache instead of decoding every crop.
    build = Job.objects.get(project=ingested_project, detail="embedding every crop for v1")
    assert (build.kind, build.status, build.done) == ("embedding", "done", n_crops)
    assert not Job.objects.filter(
        project=ingested_project, detail__startswith="backbone features"
    ).exists()
    assert Job.objects.filter(project=ingested_project, kind=Job.Kind.RETRAIN, status="done")


def test_a_job_started_in_a_workers_task_records_the_worker(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn.tasks import classifier_retrain_task

    task: Any = classifier_retrain_task
    assert jobs.worker_current() == ""  # no task runs: a command in the foreground
    assert job_start(project=project, kind=Job.Kind.RETRAIN, total=1).worker == ""
    monkeypatch.setattr(jobs, "current_task", task)
    task.push_request(hostname="gpu@box-1", called_directly=False)  # as a worker runs it
    try:
        job = job_start(project=project, kind=Job.Kind.RETRAIN, total=1)
    finally:
        task.pop_request()
    assert Job.objects.get(pk=job.pk).worker == "gpu@box-1"
    task.push_request(hostname="box-1", is_eager=True, called_directly=False)  # task.apply()
    try:
        assert jobs.worker_current() == ""
    finally:
        task.pop_request()
