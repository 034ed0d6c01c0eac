"""Images that stay in an S3 bucket: imported from s3://bucket/prefix (listed and streamed, never
copied to disk), detected and cropped from there, through the command, the import job and the
browser; bad buckets and prefixes refused with nothing recorded."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from detector.crops import upright_size
from detector.import_jobs import image_import_create, image_import_run
from detector.imports import images_import
from detector.jobs import detection_job_create, detection_job_run
from detector.models import Crop, DetectionJob, ImageImport
from detector.offline import OfflineDetector
from projects.image_source import (
    image_source_list,
    image_source_open,
    is_remote,
    s3_location_split,
)
from projects.import_roots import FolderImportError
from projects.models import Image, Job, Project
from projects.services import project_create
from tests.conftest import SMALL_SEQUENCES
from tests.s3 import S3Storage

pytestmark = pytest.mark.django_db


def _bucket_with_images(s3: S3Storage, sample_dir: Path) -> tuple[str, dict[str, Path]]:
    """A new bucket holding the small folder's 15 images under ``cams/`` (and, as decoys, a
    text file under ``cams/`` and an image under ``cams2/``, outside the prefix); returns
    the bucket and {key relative to cams/: the local original}."""
    client = s3.client()
    bucket = f"traps-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    uploaded: dict[str, Path] = {}
    for seq in SMALL_SEQUENCES:
        for path in sorted((sample_dir / "images" / seq).iterdir()):
            relative = f"{seq}/{path.name}"
            client.put_object(Bucket=bucket, Key=f"cams/{relative}", Body=path.read_bytes())
            uploaded[relative] = path
    client.put_object(Bucket=bucket, Key="cams/readme.txt", Body=b"not an image")
    client.put_object(
        Bucket=bucket, Key="cams2/other.jpg", Body=next(iter(uploaded.values())).read_bytes()
    )
    return bucket, uploaded


@pytest.fixture
def bucket(s3_storage: S3Storage, sample_dir: Path) -> tuple[str, dict[str, Path]]:
    return _bucket_with_images(s3_storage, sample_dir)


def test_locations_are_split_with_clear_errors() -> None:
    assert s3_location_split("s3://b/cams/x.jpg") == ("b", "cams/x.jpg")
    assert s3_location_split("s3://b") == ("b", "")
    assert is_remote("s3://b/x") and not is_remote("/data/s3:/b") and not is_remote(Path("s3://b"))
    for bad in ("/local/path", "s3:///key", "s3://b/a//c.jpg", "s3://b/a/../c.jpg"):
        with pytest.raises(ValueError, match="s3://|segments|bucket"):
            s3_location_split(bad)


def test_import_from_a_prefix_records_s3_paths_and_sizes(
    project: Project,
    admin_user: User,
    bucket: tuple[str, dict[str, Path]],
    small_folder: Path,
    tmp_path: Path,
) -> None:
    name, uploaded = bucket
    before = set(tmp_path.rglob("*"))
    report = images_import(project=project, folder=f"s3://{name}/cams")
    assert report.added == 15 and report.problems == []
    rows = {i.file_name: i for i in Image.objects.filter(project=project)}
    assert set(rows) == set(uploaded)  # neither the text file nor cams2/ came in
    for relative, original in uploaded.items():
        image = rows[relative]
        assert image.path == f"s3://{name}/cams/{relative}"
        with PILImage.open(original) as img:
            assert (image.width, image.height) == upright_size(img)
    # What the import reads from a file (sizes, camera, time, inferred events) is the same for
    # the same frames imported from a local folder.
    local = project_create(name="Local twin", created_by=admin_user, seed=7)
    images_import(project=local, folder=small_folder / "images")
    fields = ("file_name", "width", "height", "camera", "taken_at", "time_source")
    assert sorted(Image.objects.filter(project=local).values_list(*fields)) == sorted(
        Image.objects.filter(project=project).values_list(*fields)
    )
    # Nothing of the bucket was written to disk (no image file appeared anywhere under tmp).
    appeared = {p for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert not [p for p in appeared if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    # Importing again adds nothing.
    again = images_import(project=project, folder=f"s3://{name}/cams/")
    assert again.added == 0 and again.already_present == 15


def test_listing_and_opening_stream_the_objects(bucket: tuple[str, dict[str, Path]]) -> None:
    name, uploaded = bucket
    listed = dict(image_source_list(prefix_url=f"s3://{name}/cams"))
    assert listed == {k: p.stat().st_size for k, p in uploaded.items()}
    key, original = next(iter(uploaded.items()))
    with image_source_open(f"s3://{name}/cams/{key}") as handle:
        assert isinstance(handle, io.BytesIO)
        assert handle.read() == original.read_bytes()
    with pytest.raises(FileNotFoundError, match="no such object"):
        image_source_open(f"s3://{name}/cams/missing.jpg")


def test_offline_detection_reads_the_bucket_and_cuts_the_same_crops(
    project: Project,
    admin_user: User,
    bucket: tuple[str, dict[str, Path]],
    small_folder: Path,
) -> None:
    name, _ = bucket
    images_import(project=project, folder=f"s3://{name}/cams")
    job = detection_job_create(project=project, detector="offline", queue=False)
    job = detection_job_run(job_id=job.pk)
    assert job.status == DetectionJob.Status.DONE, job.error
    assert job.failed == 0 and job.problems == []
    assert Image.objects.filter(project=project, detected_at__isnull=True).count() == 0
    crops = Crop.objects.filter(project=project)
    assert crops.count() > 0
    # The same frames imported from a local folder give the same boxes, image by image.
    local = project_create(name="Local twin", created_by=admin_user, seed=7)
    images_import(project=local, folder=small_folder / "images")
    local_job = detection_job_create(project=local, detector="offline", queue=False)
    detection_job_run(job_id=local_job.pk)

    def boxes(p: Project) -> dict[str, list[tuple[float, ...]]]:
        return {
            i.file_name: sorted((d.x, d.y, d.w, d.h) for d in i.detections.all())
            for i in Image.objects.filter(project=p).prefetch_related("detections")
        }

    assert boxes(project) == boxes(local)
    assert crops.count() == Crop.objects.filter(project=local).count()
    # A crop can be cut again from the bucket (re-derivation reads the source image).
    from detector.services import crops_rederive

    project.crop_padding = 0.3
    project.save(update_fields=["crop_padding"])
    report = crops_rederive(project=project)
    assert report.problems == [] and report.recut == crops.count()


def test_the_offline_detector_takes_an_opener(bucket: tuple[str, dict[str, Path]]) -> None:
    name, uploaded = bucket
    files = sorted(uploaded)
    sequences = {f: f.rsplit("/", 1)[0] for f in files}
    opened: list[str] = []

    def opener(relative: str) -> Any:
        opened.append(relative)
        return image_source_open(f"s3://{name}/cams/{relative}")

    remote = OfflineDetector(root=Path("unused"), sequences=sequences, opener=opener)
    folder = next(iter(uploaded.values())).parents[2]
    local = OfflineDetector(root=folder, sequences=sequences)
    assert remote.detect(files) == local.detect(files)
    assert sorted(set(opened)) == files


def test_a_missing_bucket_or_an_empty_prefix_records_nothing(
    project: Project, bucket: tuple[str, dict[str, Path]], settings: Any
) -> None:
    name, _ = bucket
    with pytest.raises(FolderImportError, match="no such bucket"):
        images_import(project=project, folder="s3://no-such-bucket-here/cams")
    with pytest.raises(FolderImportError, match="holds no images"):
        images_import(project=project, folder=f"s3://{name}/nothing-here")
    settings.TRAPWISE_IMPORT_BUCKETS = [name, "no-such-bucket-here"]
    with pytest.raises(FolderImportError, match="no such bucket"):
        image_import_create(project=project, folder="s3://no-such-bucket-here/cams", queue=False)
    with pytest.raises(FolderImportError, match="holds no images"):
        image_import_create(project=project, folder=f"s3://{name}/empty", queue=False)
    with pytest.raises(FolderImportError, match="no such object"):
        images_import(project=project, folder=f"s3://{name}/cams", coco=f"s3://{name}/missing.json")
    assert not Image.objects.filter(project=project).exists()
    assert not Job.objects.filter(project=project).exists()
    assert not ImageImport.objects.exists()


def test_no_credentials_is_a_clear_error(
    project: Project,
    bucket: tuple[str, dict[str, Path]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    name, _ = bucket
    for variable in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(FolderImportError, match="no S3 credentials"):
        images_import(project=project, folder=f"s3://{name}/cams")
    assert not Image.objects.filter(project=project).exists()


def test_import_job_from_a_bucket_hands_on_to_detection(
    project: Project,
    admin_user: User,
    bucket: tuple[str, dict[str, Path]],
    settings: Any,
    sample_dir: Path,
    s3_storage: S3Storage,
) -> None:
    name, uploaded = bucket
    # A COCO file in the bucket gives the sequences (its names relative to the prefix).
    coco = json.loads((sample_dir / "annotations.json").read_text())
    for entry in coco["images"]:
        entry["file_name"] = entry["file_name"].removeprefix("images/")
    s3_storage.client().put_object(
        Bucket=name, Key="meta/annotations.json", Body=json.dumps(coco).encode()
    )
    settings.TRAPWISE_IMPORT_BUCKETS = [name]
    record = image_import_create(
        project=project,
        folder=f"s3://{name}/cams",
        coco=f"s3://{name}/meta/annotations.json",
        created_by=admin_user,
        queue=False,
    )
    assert record.job.total == 15 and record.folder == f"s3://{name}/cams"
    image_import_run(import_id=record.pk)
    job = Job.objects.get(pk=record.job.pk)
    assert job.status == Job.Status.DONE, job.error
    assert "15 images added" in job.detail and "detection queued" in job.detail
    images = Image.objects.filter(project=project)
    assert images.count() == 15
    assert all(i.seq_source == "metadata" for i in images)  # seq_ids from the bucket's COCO file
    detection = DetectionJob.objects.get(project=project)
    detection = detection_job_run(job_id=detection.pk)
    assert detection.status == DetectionJob.Status.DONE and detection.failed == 0
    assert Crop.objects.filter(project=project).exists()


def test_the_command_imports_a_prefix(
    project: Project, bucket: tuple[str, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = bucket
    call_command("import_images", project.slug, f"s3://{name}/cams")
    assert "images: 15 added" in capsys.readouterr().out
    assert (
        Image.objects.filter(project=project, path__startswith=f"s3://{name}/cams/").count() == 15
    )


def test_the_browser_imports_only_from_allowed_buckets(
    project: Project, admin_user: User, bucket: tuple[str, dict[str, Path]], settings: Any
) -> None:
    name, _ = bucket
    client = Client()
    client.force_login(admin_user)
    url = reverse("import_bucket_start", args=[project.slug])
    settings.TRAPWISE_IMPORT_BUCKETS = []
    page = client.get(reverse("project_import", args=[project.slug]))
    assert b"TRAPWISE_IMPORT_BUCKETS" in page.content
    response = client.post(url, {"source": f"s3://{name}/cams"}, follow=True)
    assert b"is not one imports may read" in response.content
    settings.TRAPWISE_IMPORT_BUCKETS = ["another-bucket"]
    response = client.post(url, {"source": f"s3://{name}/cams"}, follow=True)
    assert b"is not one imports may read" in response.content
    response = client.post(url, {"source": "/etc"}, follow=True)
    assert b"s3://bucket/prefix" in response.content
    assert not ImageImport.objects.exists() and not Job.objects.exists()
    settings.TRAPWISE_IMPORT_BUCKETS = [name]
    assert (
        b'id="bucket-import-form"'
        in client.get(reverse("project_import", args=[project.slug])).content
    )
    client.post(url, {"source": f"s3://{name}/cams"})
    record = ImageImport.objects.get(project=project)
    assert record.folder == f"s3://{name}/cams" and record.job.total == 15
