"""Export files built as background jobs (``annotator.export_jobs``), locally and on S3.

The data are the labelled scenario of ``test_exports`` (with capture times, so that Camtrap DP
can be made); jobs are run in the test's process (``export_file_run``, as the task does) unless
a test says otherwise.
"""

from __future__ import annotations

import io
import json
import os
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from annotator import export_jobs
from annotator.api.services import api_token_create
from annotator.camtrapdp import CamtrapDpError, PackageOptions
from annotator.export_jobs import (
    EXPORT_TASK,
    ExportError,
    export_file_delete,
    export_file_run,
    export_job_create,
)
from annotator.exports_coco import export_coco_json
from annotator.models import ExportFile, ExportFormat
from annotator.tasks import export_file_task
from projects.models import Image, Job, Project, QueuedTask
from projects.storage import stored_exists, stored_list, stored_open, stored_write
from tests.annotator.test_camtrapdp import camtrap_dp_errors, give_times, unpack
from tests.annotator.test_exports import Scenario, build_scenario
from tests.s3 import S3Storage

pytestmark = pytest.mark.django_db

OPTIONS = PackageOptions(latitude=38.6, longitude=-92.1, utc_offset="-05:00")


@pytest.fixture
def scenario(ingested_project: Project, admin_user: User, volunteer: User) -> Scenario:
    give_times(ingested_project)
    return build_scenario(ingested_project, admin_user, volunteer)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _bearer(user: User) -> Client:
    _, key = api_token_create(user=user, name="test")
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def _built(project: Project, format: str, user: User | None = None) -> ExportFile:
    """An export recorded without queueing, then run as the task runs it."""
    options = OPTIONS if format == ExportFormat.CAMTRAP_DP else None
    record = export_job_create(
        project=project, format=format, created_by=user, options=options, queue=False
    )
    done = export_file_run(export_id=record.pk)
    assert done is not None
    return done


def _stored_bytes(record: ExportFile) -> bytes:
    with stored_open(kind="exports", name=record.name) as handle:
        return handle.read()


def _download(response: Any) -> bytes:
    return b"".join(response.streaming_content)


# --- building -------------------------------------------------------------------------------


def test_camtrap_dp_job_builds_a_valid_package_locally(
    scenario: Scenario, ecologist: User, tmp_path: Path
) -> None:
    record = _built(scenario.project, ExportFormat.CAMTRAP_DP, ecologist)
    job = Job.objects.get(pk=record.job_id)
    assert (job.kind, job.status, job.error) == (Job.Kind.EXPORT, Job.Status.DONE, "")
    # Progress counted every image twice (media, then the events' observations).
    assert job.done == job.total == 2 * Image.objects.filter(project=scenario.project).count()
    data = _stored_bytes(record)
    assert record.size == len(data) > 0
    assert record.options["latitude"] == 38.6
    assert record.name.startswith(f"{scenario.project.pk}/")
    assert record.name.endswith(f"/{scenario.project.slug}-camtrap-dp.zip")
    # The predictions in it are the scenario's classifier's.
    assert record.classifier_id == scenario.classifier.pk
    assert record.classifier_number == scenario.classifier.number
    assert camtrap_dp_errors(unpack(data, tmp_path / "package")) == []

    response = _client(ecologist).get(
        reverse("export_file_download", args=[scenario.project.slug, record.pk])
    )
    assert response.status_code == 200
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="{scenario.project.slug}-camtrap-dp.zip"'
    )
    assert _download(response) == data


def test_coco_and_csv_jobs_hold_what_the_direct_exports_hold(
    scenario: Scenario, ecologist: User
) -> None:
    project = scenario.project
    coco = json.loads(_stored_bytes(_built(project, ExportFormat.COCO)))
    direct = json.loads("".join(export_coco_json(project=project)))
    for key in ("images", "annotations", "categories"):
        assert coco[key] == direct[key]
    client = _client(ecologist)
    for format, view in [
        (ExportFormat.CROPS_CSV, "export_csv"),
        (ExportFormat.IMAGES_CSV, "export_images_csv"),
        (ExportFormat.EVENTS_CSV, "export_events_csv"),
    ]:
        record = _built(project, format)
        assert record.job.status == Job.Status.DONE
        body = _download(client.get(reverse(view, args=[project.slug])))
        assert _stored_bytes(record) == body, format


def test_the_job_is_queued_on_the_cpu_queue_and_the_task_builds_it(
    scenario: Scenario, ecologist: User
) -> None:
    record = export_job_create(
        project=scenario.project, format=ExportFormat.COCO, created_by=ecologist
    )
    queued = QueuedTask.objects.get(name=EXPORT_TASK)
    assert queued.args == [record.pk]
    assert record.job.status == Job.Status.QUEUED
    size = export_file_task(record.pk)
    assert size > 0 and ExportFile.objects.get(pk=record.pk).size == size
    assert Job.objects.get(pk=record.job_id).status == Job.Status.DONE


def test_running_twice_gives_one_file(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    project = scenario.project
    record = _built(project, ExportFormat.CAMTRAP_DP)
    data = _stored_bytes(record)

    def never(**kwargs: Any) -> None:
        raise AssertionError("a published file must not be built again")

    monkeypatch.setattr(export_jobs, "camtrap_dp_write", never)
    # A redelivered message: the job is done, nothing happens.
    assert export_file_run(export_id=record.pk) is not None
    # A worker that died after publishing, before finishing its job: the file is kept.
    Job.objects.filter(pk=record.job_id).update(status=Job.Status.RUNNING)
    again = export_file_run(export_id=record.pk)
    assert again is not None and again.job.status == Job.Status.DONE
    assert again.size == len(data)
    assert stored_list(kind="exports", prefix=str(project.pk)) == [record.name.split("/", 1)[1]]
    assert _stored_bytes(record) == data


def test_a_failed_build_publishes_nothing_and_a_rerun_finishes_it(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = export_job_create(project=scenario.project, format=ExportFormat.COCO, queue=False)

    def broken(**kwargs: Any) -> Any:
        yield '{"info": '
        raise OSError("disk full")

    monkeypatch.setattr(export_jobs, "export_coco_json", broken)
    with pytest.raises(OSError, match="disk full"):
        export_file_run(export_id=record.pk)
    job = Job.objects.get(pk=record.job_id)
    assert job.status == Job.Status.FAILED and "disk full" in job.error
    assert not stored_exists(kind="exports", name=record.name)
    monkeypatch.undo()
    done = export_file_run(export_id=record.pk)
    assert done is not None and done.job.status == Job.Status.DONE
    assert json.loads(_stored_bytes(done))["images"]


def test_camtrap_dp_refusals_record_nothing_or_fail_the_job(scenario: Scenario) -> None:
    project = scenario.project
    with pytest.raises(CamtrapDpError, match="no deployment"):
        export_job_create(project=project, format=ExportFormat.CAMTRAP_DP, options=PackageOptions())
    with pytest.raises(ExportError, match="unknown export format"):
        export_job_create(project=project, format="pdf")
    with pytest.raises(ExportError, match="package options"):
        export_job_create(project=project, format=ExportFormat.CAMTRAP_DP)
    assert not ExportFile.objects.exists() and not Job.objects.filter(kind="export").exists()
    # Recorded while valid, then an image lost its capture time before the job ran.
    record = export_job_create(
        project=project, format=ExportFormat.CAMTRAP_DP, options=OPTIONS, queue=False
    )
    Image.objects.filter(project=project).filter(pk=project.images.first().pk).update(  # type: ignore[union-attr]
        taken_at=None
    )
    export_file_run(export_id=record.pk)
    job = Job.objects.get(pk=record.job_id)
    assert job.status == Job.Status.FAILED and "no capture time" in job.error
    assert not stored_exists(kind="exports", name=record.name)


# --- S3 ----------------------------------------------------------------------------------------


def test_on_s3_the_file_lands_under_exports_and_downloads_through_a_signed_url(
    scenario: Scenario, s3_storage: S3Storage, ecologist: User, tmp_path: Path
) -> None:
    project = scenario.project
    record = _built(project, ExportFormat.CAMTRAP_DP, ecologist)
    assert s3_storage.keys() == [f"exports/{record.name}"]
    stored = (
        s3_storage.client()
        .get_object(Bucket=s3_storage.bucket, Key=f"exports/{record.name}")["Body"]
        .read()
    )
    assert record.size == len(stored)
    assert camtrap_dp_errors(unpack(stored, tmp_path / "package")) == []
    # The worker keeps no copy: the file is downloaded from the bucket, never read back here.
    assert [p for p in s3_storage.cache.rglob("*") if p.is_file()] == []

    response = _client(ecologist).get(
        reverse("export_file_download", args=[project.slug, record.pk])
    )
    assert response.status_code == 302
    url = response["Location"]
    assert url.startswith(s3_storage.endpoint.url) and "Signature=" in url
    with urllib.request.urlopen(url) as answer:  # noqa: S310 - the loopback moto server
        assert answer.read() == stored
        assert f"{project.slug}-camtrap-dp.zip" in answer.headers["Content-Disposition"]

    # The API's download goes through the same role check and the same redirect.
    api = _bearer(ecologist)
    detail = api.get(f"/api/v1/projects/{project.slug}/exports/{record.pk}").json()
    answer_api = api.get(detail["download_url"])
    assert answer_api.status_code == 302
    with urllib.request.urlopen(answer_api["Location"]) as answer:  # noqa: S310
        assert answer.read() == stored

    # Deleting removes it from the bucket.
    export_file_delete(export_file=ExportFile.objects.get(pk=record.pk))
    assert s3_storage.keys() == []


def test_on_s3_a_coco_job_run_twice_leaves_one_object(
    scenario: Scenario, s3_storage: S3Storage
) -> None:
    record = _built(scenario.project, ExportFormat.COCO)
    Job.objects.filter(pk=record.job_id).update(status=Job.Status.RUNNING)
    export_file_run(export_id=record.pk)
    assert s3_storage.keys("exports/") == [f"exports/{record.name}"]
    assert json.loads(_stored_bytes(record))["images"]


# --- roles, deletion -------------------------------------------------------------------------


def test_only_admins_and_ecologists_start_and_download_only_admins_delete(
    scenario: Scenario, admin_user: User, ecologist: User, volunteer: User, outsider: User
) -> None:
    project = scenario.project
    record = _built(project, ExportFormat.COCO)
    slug = project.slug
    start = reverse("export_job_start", args=[slug])
    download = reverse("export_file_download", args=[slug, record.pk])
    delete = reverse("export_file_delete", args=[slug, record.pk])
    for user in (volunteer, outsider):
        client = _client(user)
        assert client.post(start, {"format": "coco"}).status_code == 404
        assert client.get(download).status_code == 404
        assert client.post(delete).status_code == 404
        api = _bearer(user)
        assert (
            api.post(
                f"/api/v1/projects/{slug}/exports",
                {"format": "coco"},
                content_type="application/json",
            ).status_code
            == 404
        )
        assert api.get(f"/api/v1/projects/{slug}/exports/{record.pk}").status_code == 404
        assert api.get(f"/api/v1/projects/{slug}/exports/{record.pk}/file").status_code == 404
    anonymous = Client().get(download)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert ExportFile.objects.count() == 1
    # Ecologists build and download, but do not delete.
    assert _client(ecologist).post(delete).status_code == 404
    response = _client(ecologist).post(start, {"format": "images-csv"})
    assert response.status_code == 302
    assert ExportFile.objects.filter(format="images-csv", created_by=ecologist).count() == 1
    # An admin deletes: the stored file, the record and its job.
    response = _client(admin_user).post(delete)
    assert response.status_code == 302
    assert not ExportFile.objects.filter(pk=record.pk).exists()
    assert not Job.objects.filter(pk=record.job_id).exists()
    assert not stored_exists(kind="exports", name=record.name)


def test_a_file_being_built_cannot_be_deleted_nor_downloaded(
    scenario: Scenario, admin_user: User
) -> None:
    record = export_job_create(project=scenario.project, format=ExportFormat.COCO, queue=False)
    with pytest.raises(ExportError, match="still being built"):
        export_file_delete(export_file=record)
    url = reverse("export_file_download", args=[scenario.project.slug, record.pk])
    assert _client(admin_user).get(url).status_code == 404
    assert ExportFile.objects.filter(pk=record.pk).exists()


# --- the page -----------------------------------------------------------------------------


def test_the_exports_page_shows_progress_then_the_download_link(
    scenario: Scenario, ecologist: User, admin_user: User
) -> None:
    project = scenario.project
    url = reverse("project_exports", args=[project.slug])
    response = _client(ecologist).post(
        reverse("export_job_start", args=[project.slug]), {"format": "coco"}, follow=True
    )
    assert "being built" in response.content.decode()
    record = ExportFile.objects.get()
    Job.objects.filter(pk=record.job_id).update(status=Job.Status.RUNNING, done=15, total=60)
    page = _client(ecologist).get(url).content.decode()
    assert f'id="export-file-{record.pk}" data-status="running"' in page
    assert '<progress max="100" value="25">' in page and "25%" in page
    assert 'http-equiv="refresh"' in page  # it reloads itself while a file is being built
    download = reverse("export_file_download", args=[project.slug, record.pk])
    assert download not in page
    assert "Delete" not in page  # ecologists do not delete

    export_file_run(export_id=record.pk)
    page = _client(ecologist).get(url).content.decode()
    assert 'data-status="done"' in page and download in page
    assert f"classifier v{scenario.classifier.number}" in page
    assert 'http-equiv="refresh"' not in page
    assert "Delete" in _client(admin_user).get(url).content.decode()


def test_large_projects_export_coco_and_camtrap_dp_only_as_files(
    scenario: Scenario, ecologist: User, settings: Any
) -> None:
    project = scenario.project
    slug = project.slug
    client = _client(ecologist)
    assert 'href="/p/' in client.get(reverse("project_exports", args=[slug])).content.decode()
    settings.TRAPWISE_EXPORT_DIRECT_MAX_IMAGES = project.images.count() - 1
    page = client.get(reverse("project_exports", args=[slug])).content.decode()
    assert reverse("export_coco", args=[slug]) not in page
    for name in ("export_coco", "export_camtrap_dp"):
        response = client.get(reverse(name, args=[slug]))
        assert response.status_code == 302
        assert response["Location"] == reverse("project_exports", args=[slug])
    form = client.get(reverse("camtrap_dp_form", args=[slug])).content.decode()
    assert f'action="{reverse("export_job_start", args=[slug])}"' in form
    # The form's post queues the package; a missing location is the form again (400).
    data = {
        "format": "camtrap-dp",
        "utc_offset": "-05:00",
        "sampling_design": "opportunistic",
        "capture_method": "activityDetection",
        "data_license": "CC-BY-4.0",
        "media_license": "CC-BY-4.0",
    }
    start = reverse("export_job_start", args=[slug])
    refused = client.post(start, data)
    assert refused.status_code == 400 and "no deployment" in refused.content.decode()
    assert not ExportFile.objects.exists()
    response = client.post(start, {**data, "latitude": "38.6", "longitude": "-92.1"})
    assert response.status_code == 302
    record = ExportFile.objects.get()
    assert (record.format, record.options["utc_offset"]) == ("camtrap-dp", "-05:00")


# --- the API ------------------------------------------------------------------------------


def test_api_queues_an_export_and_reports_its_progress_and_download(
    scenario: Scenario, ecologist: User, tmp_path: Path
) -> None:
    project = scenario.project
    api = _bearer(ecologist)
    base = f"/api/v1/projects/{project.slug}/exports"
    response = api.post(
        base,
        {"format": "camtrap-dp", "latitude": 38.6, "longitude": -92.1, "utc_offset": "-05:00"},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["download_url"], body["progress"]) == ("queued", None, 0.0)
    assert QueuedTask.objects.get(name=EXPORT_TASK).args == [body["id"]]
    export_file_task(body["id"])
    detail = api.get(f"{base}/{body['id']}").json()
    assert (detail["status"], detail["progress"], detail["error"]) == ("done", 1.0, "")
    assert detail["classifier_version"] == scenario.classifier.number
    assert detail["download_url"].endswith(f"{base}/{body['id']}/file")
    answer = api.get(detail["download_url"])
    assert answer.status_code == 200
    data = _download(answer)
    assert len(data) == detail["size"]
    assert camtrap_dp_errors(unpack(data, tmp_path / "package")) == []
    assert [e["id"] for e in api.get(base).json()] == [body["id"]]


def test_api_refuses_what_cannot_be_exported(scenario: Scenario, ecologist: User) -> None:
    api = _bearer(ecologist)
    base = f"/api/v1/projects/{scenario.project.slug}/exports"
    refused = api.post(base, {"format": "camtrap-dp"}, content_type="application/json")
    assert refused.status_code == 400 and "no deployment" in refused.json()["detail"]
    half = api.post(
        base, {"format": "camtrap-dp", "latitude": 3.0}, content_type="application/json"
    )
    assert half.status_code == 400
    assert api.post(base, {"format": "pdf"}, content_type="application/json").status_code == 422
    bad_offset = {"format": "camtrap-dp", "latitude": 3, "longitude": 3, "utc_offset": "5"}
    assert api.post(base, bad_offset, content_type="application/json").status_code == 422
    assert api.get(f"{base}/999999").status_code == 404
    assert not ExportFile.objects.exists()


def test_the_zip_is_written_straight_to_the_stored_file(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package goes to the local file ``stored_write`` yields, not to a buffer in memory."""
    targets: list[Any] = []
    real = export_jobs.camtrap_dp_write

    def spy(**kwargs: Any) -> None:
        targets.append(kwargs["out"])
        real(**kwargs)

    monkeypatch.setattr(export_jobs, "camtrap_dp_write", spy)
    record = _built(scenario.project, ExportFormat.CAMTRAP_DP)
    assert len(targets) == 1 and not isinstance(targets[0], io.BytesIO)
    assert Path(targets[0].name).name == record.name.rsplit("/", 1)[1]
    with zipfile.ZipFile(io.BytesIO(_stored_bytes(record))) as archive:
        assert "datapackage.json" in archive.namelist()


def test_the_writers_report_progress_chunk_by_chunk(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both writers count every image twice and report as they go, ending at the total."""
    from annotator import exports
    from annotator.camtrapdp import camtrap_dp_write

    monkeypatch.setattr(exports, "EXPORT_CHUNK", 4)  # 15 images: several chunks per pass
    n = Image.objects.filter(project=scenario.project).count()
    coco: list[tuple[int, int]] = []
    "".join(export_coco_json(project=scenario.project, progress=lambda d, t: coco.append((d, t))))
    package: list[tuple[int, int]] = []
    camtrap_dp_write(
        project=scenario.project,
        options=OPTIONS,
        out=io.BytesIO(),
        progress=lambda d, t: package.append((d, t)),
    )
    for calls in (coco, package):
        done = [d for d, _ in calls]
        assert {t for _, t in calls} == {2 * n}
        assert done == sorted(done) and done[-1] == 2 * n
        assert len(done) >= 6 and done[0] < n  # reported while writing, not only at the end


def test_on_s3_a_big_export_goes_up_in_parts(s3_storage: S3Storage) -> None:
    """Publishing an export is django-storages' ``upload_fileobj`` with boto3's default transfer
    settings: a file above 8 MiB is a multipart upload (its ETag says how many parts)."""
    content = os.urandom(9 * 1024 * 1024)
    with stored_write(kind="exports", name="1/big/big.zip") as local, open(local, "wb") as out:
        out.write(content)
    head = s3_storage.client().head_object(Bucket=s3_storage.bucket, Key="exports/1/big/big.zip")
    assert head["ContentLength"] == len(content)
    assert head["ETag"].strip('"').endswith("-2")  # two parts: 8 MiB and 1 MiB
