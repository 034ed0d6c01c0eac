"""The dashboard's job list: time left, stalled jobs, detection jobs beside the others."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator.jobs import (
    duration_text,
    jobs_active_for_project,
    rate_estimate,
    seconds_left_estimate,
)
from detector.models import DetectionJob
from projects.jobs import job_start
from projects.models import Job, Project

pytestmark = pytest.mark.django_db


def test_seconds_left_is_elapsed_per_unit_times_units_left() -> None:
    now = timezone.now()
    started = now - timedelta(seconds=100)
    # 25 units in 100 s: 4 s a unit, 75 units to go.
    assert seconds_left_estimate(started_at=started, done=25, total=100, now=now) == 300.0
    assert seconds_left_estimate(started_at=started, done=100, total=100, now=now) == 0.0
    assert seconds_left_estimate(started_at=started, done=0, total=100, now=now) is None
    assert seconds_left_estimate(started_at=None, done=5, total=100, now=now) is None


def test_rate_is_units_per_second_since_the_start() -> None:
    now = timezone.now()
    started = now - timedelta(seconds=8)
    assert rate_estimate(started_at=started, done=20, now=now) == 2.5
    assert rate_estimate(started_at=started, done=0, now=now) is None
    assert rate_estimate(started_at=None, done=3, now=now) is None
    assert rate_estimate(started_at=now, done=3, now=now) is None


def test_duration_text() -> None:
    assert duration_text(None) == ""
    assert duration_text(0.2) == "about 1 s left"
    assert duration_text(42) == "about 42 s left"
    assert duration_text(185) == "about 3 min left"
    assert duration_text(2 * 3600 + 5 * 60) == "about 2 h 5 min left"


def test_active_jobs_include_running_detection_with_time_left(project: Project) -> None:
    now = timezone.now()
    DetectionJob.objects.create(project=project, detector="old", status="done", total=1, done=1)
    detection = DetectionJob.objects.create(
        project=project,
        detector="offline",
        status="running",
        total=100,
        done=20,
        failed=5,
        crops=40,
        started_at=now - timedelta(seconds=50),
        worker="gpu@box-1",
    )
    job = job_start(project=project, kind=Job.Kind.EMBEDDING, total=200)
    Job.objects.filter(pk=job.pk).update(started_at=now - timedelta(seconds=10), done=50)
    active = jobs_active_for_project(project=project)
    assert [(j.id, j.kind, j.done, j.total) for j in active] == [
        (f"detection-{detection.pk}", "detection", 25, 100),
        (f"job-{job.pk}", "embedding", 50, 200),
    ]
    # 25 images in 50 s: 2 s an image, 75 to go; 50 crops in 10 s, 150 to go.
    assert active[0].seconds_left == pytest.approx(150, abs=2)
    assert active[1].seconds_left == pytest.approx(30, abs=1)
    assert active[1].percent == 25.0
    assert active[0].detail == "offline detector, 40 crops, 5 problems"
    payload = active[1].as_json()
    assert payload["percent"] == 25.0 and payload["time_left"] == "about 30 s left"
    assert active[0].rate == pytest.approx(0.5, rel=0.05)
    assert payload["rate"] == pytest.approx(5.0, rel=0.05)
    # Which worker runs it: detection's, and none for a job started outside a worker.
    assert active[0].as_json()["worker"] == "gpu@box-1" and payload["worker"] == ""


def test_stalled_job_is_flagged(project: Project) -> None:
    job = job_start(project=project, kind=Job.Kind.EMBEDDING, total=10)
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    (progress,) = jobs_active_for_project(project=project)
    assert progress.stalled
