"""POST /api/v1/projects/{slug}/imports and GET .../jobs/{id}: imports asked for through the API
(admins), from an allowed bucket or a folder under the import roots, as the browser does."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from annotator.api.services import api_token_create
from detector.import_jobs import image_import_run
from detector.models import ImageImport
from projects.models import Image, Job, Project
from projects.services import project_create
from tests.conftest import SMALL_SEQUENCES
from tests.s3 import S3Storage

pytestmark = pytest.mark.django_db


def _bearer(user: User) -> Client:
    _, key = api_token_create(user=user, name="test")
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def _post(client: Client, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def bucket(s3_storage: S3Storage, sample_dir: Path, settings: Any) -> str:
    """An allowed bucket with the small folder's 15 images under ``cams/``."""
    name = f"traps-{uuid.uuid4().hex[:10]}"
    client = s3_storage.client()
    client.create_bucket(Bucket=name)
    for seq in SMALL_SEQUENCES:
        for path in sorted((sample_dir / "images" / seq).iterdir()):
            client.put_object(Bucket=name, Key=f"cams/{seq}/{path.name}", Body=path.read_bytes())
    settings.TRAPWISE_IMPORT_BUCKETS = [name]
    return name


def test_an_admin_queues_a_bucket_import_and_follows_its_job(
    project: Project, admin_user: User, bucket: str
) -> None:
    client = _bearer(admin_user)
    url = f"/api/v1/projects/{project.slug}/imports"
    response = _post(client, url, {"source": f"s3://{bucket}/cams"})
    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get(pk=body["job_id"])
    assert job.kind == Job.Kind.IMPORT and body["total"] == 15 and body["status"] == "queued"
    assert body["status_url"].endswith(f"/api/v1/projects/{project.slug}/jobs/{job.pk}")
    record = ImageImport.objects.get(job=job)
    assert record.folder == f"s3://{bucket}/cams" and record.created_by == admin_user
    image_import_run(import_id=record.pk)  # what the worker does with the queued task
    status = client.get(body["status_url"]).json()
    assert status["kind"] == "import" and status["status"] == "done"
    assert (status["done"], status["total"]) == (15, 15) and status["error"] == ""
    assert Image.objects.filter(project=project, path__startswith=f"s3://{bucket}/").count() == 15


def test_only_admins_import_and_see_jobs(
    project: Project, admin_user: User, volunteer: User, outsider: User, bucket: str
) -> None:
    url = f"/api/v1/projects/{project.slug}/imports"
    # A role without the right gets the API's usual 404 (as for rounds), not a 403.
    assert _post(_bearer(volunteer), url, {"source": f"s3://{bucket}/cams"}).status_code == 404
    assert _post(_bearer(outsider), url, {"source": f"s3://{bucket}/cams"}).status_code == 404
    assert not Job.objects.exists()
    admin = _bearer(admin_user)
    job_id = _post(admin, url, {"source": f"s3://{bucket}/cams"}).json()["job_id"]
    job_url = f"/api/v1/projects/{project.slug}/jobs/{job_id}"
    assert _bearer(volunteer).get(job_url).status_code == 404
    assert _bearer(outsider).get(job_url).status_code == 404
    assert admin.get(f"/api/v1/projects/{project.slug}/jobs/{job_id + 1000}").status_code == 404
    # Another project's job is not this project's, even to an admin of both.
    other = project_create(name="Other traps", created_by=admin_user, seed=1)
    other_job = Job.objects.create(project=other, kind=Job.Kind.IMPORT)
    assert admin.get(f"/api/v1/projects/{project.slug}/jobs/{other_job.pk}").status_code == 404
    assert admin.get(f"/api/v1/projects/{other.slug}/jobs/{other_job.pk}").status_code == 200


def test_bad_sources_are_400_and_record_nothing(
    project: Project, admin_user: User, bucket: str, settings: Any
) -> None:
    client = _bearer(admin_user)
    url = f"/api/v1/projects/{project.slug}/imports"
    cases = [
        ({"source": "s3://not-allowed-bucket/cams"}, "is not one imports may read"),
        ({"source": f"s3://{bucket}/empty"}, "holds no images"),
        ({"source": "/etc"}, "no import roots are set"),
        ({"source": "relative/folder"}, "not an absolute path"),
        ({"source": ""}, "give the folder"),
        ({"source": f"s3://{bucket}/cams", "coco": "s3://other/x.json"}, "not one imports"),
        ({"source": f"s3://{bucket}/cams", "coco": f"s3://{bucket}/x.json"}, "no such object"),
    ]
    for body, message in cases:
        response = _post(client, url, body)
        assert response.status_code == 400, (body, response.content)
        assert message in response.json()["detail"], response.json()
    assert not Job.objects.exists() and not ImageImport.objects.exists()


def test_a_folder_under_the_import_roots_is_imported(
    project: Project, admin_user: User, small_folder: Path, settings: Any, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(small_folder, root / "traps")
    settings.TRAPWISE_IMPORT_ROOTS = [root]
    client = _bearer(admin_user)
    url = f"/api/v1/projects/{project.slug}/imports"
    outside = _post(client, url, {"source": str(small_folder)})
    assert (
        outside.status_code == 400
        and "outside the allowed import roots" in outside.json()["detail"]
    )
    response = _post(
        client,
        url,
        {"source": str(root / "traps"), "coco": str(root / "traps" / "annotations.json")},
    )
    assert response.status_code == 202, response.content
    record = ImageImport.objects.get(job_id=response.json()["job_id"])
    assert record.folder == str((root / "traps").resolve()) and record.coco.endswith(
        "annotations.json"
    )
