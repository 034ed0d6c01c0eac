"""Crops through the storage layer, and crop and image files handed to whatever serves them
cheapest: signed redirects to the bucket (``TRAPWISE_STORAGE=s3``, images imported from
``s3://``), ``X-Accel-Redirect`` to nginx (``TRAPWISE_INTERNAL_REDIRECT``), else streamed.
"""

from __future__ import annotations

import io
import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from detector.imported import ImportedDetector
from detector.imports import images_import
from detector.models import Crop
from detector.services import crops_rederive, detections_run
from projects.models import Image, Project
from tests.s3 import S3Storage

pytestmark = pytest.mark.django_db


def _cut(project: Project, folder: Path) -> list[Crop]:
    coco = folder / "annotations.json"
    images_import(project=project, folder=folder, coco=coco)
    detections_run(project=project, detector=ImportedDetector.from_coco_camera_traps(coco))
    crops = list(Crop.objects.filter(project=project).order_by("id"))
    assert crops
    return crops


@pytest.fixture
def api_key(volunteer: User) -> str:
    from annotator.api.services import api_token_create

    return api_token_create(user=volunteer, name="files")[1]


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _urls(project: Project, crop: Crop) -> list[str]:
    return [
        reverse("crop_file", kwargs={"slug": project.slug, "crop_id": crop.pk}),
        f"/api/v1/projects/{project.slug}/crops/{crop.pk}/file",
    ]


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - the loopback server
        return bytes(answer.read())


def _max_age(response: Any) -> int:
    parts = dict(part.strip().partition("=")[::2] for part in response["Cache-Control"].split(","))
    assert "private" in parts
    return int(parts["max-age"])


def test_detection_writes_crops_into_the_bucket_only(
    s3_storage: S3Storage, project: Project, small_folder: Path
) -> None:
    crops = _cut(project, small_folder)
    keys = s3_storage.keys()
    assert sorted(f"media/{crop.file}" for crop in crops) == keys
    assert all(key.startswith(f"media/crops/{project.pk}/") for key in keys)
    assert not Path(settings.MEDIA_ROOT).exists()  # nothing local
    body = s3_storage.client().get_object(Bucket=s3_storage.bucket, Key=keys[0])["Body"].read()
    with PILImage.open(io.BytesIO(body)) as image:
        assert image.format == "JPEG" and image.width > 0


def test_member_is_redirected_to_a_signed_url_that_serves_the_crop(
    s3_storage: S3Storage, project: Project, small_folder: Path, volunteer: User, api_key: str
) -> None:
    crop = _cut(project, small_folder)[0]
    stored = s3_storage.client().get_object(Bucket=s3_storage.bucket, Key=f"media/{crop.file}")
    expected = stored["Body"].read()
    web, api = _urls(project, crop)
    for response in (
        _client(volunteer).get(web),
        Client().get(api, headers={"Authorization": f"Bearer {api_key}"}),
    ):
        assert response.status_code == 302
        location = response["Location"]
        assert location.startswith(f"{s3_storage.endpoint.url}/{s3_storage.bucket}/media/")
        assert "Signature" in location or "X-Amz-Signature" in location
        assert 0 < _max_age(response) < settings.TRAPWISE_STORAGE_URL_EXPIRY
        assert _download(location) == expected  # the signature really opens the object
        query = parse_qs(urlsplit(location).query)
        expires = query.get("X-Amz-Expires") or query.get("Expires")
        assert expires is not None


def test_a_crops_url_is_reused_for_half_its_lifetime(
    s3_storage: S3Storage,
    project: Project,
    small_folder: Path,
    volunteer: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from annotator import file_responses

    crop = _cut(project, small_folder)[0]
    web = _urls(project, crop)[0]
    client = _client(volunteer)
    start = time.time()
    expiry = settings.TRAPWISE_STORAGE_URL_EXPIRY
    monkeypatch.setattr(file_responses, "_clock", lambda: start)
    first = client.get(web)
    assert _max_age(first) == expiry // 2
    # Later in the window: the same URL (browsers cache the crop), cacheable only until the
    # window ends, so a cached redirect never outlives the signature.
    monkeypatch.setattr(file_responses, "_clock", lambda: start + expiry // 2 - 10)
    again = client.get(web)
    assert again["Location"] == first["Location"] and _max_age(again) == 10
    assert _download(again["Location"])[:2] == b"\xff\xd8"  # a JPEG
    # After the window: signed anew (botocore's own clock dates the signature), cacheable for
    # the whole window again.
    monkeypatch.setattr(file_responses, "_clock", lambda: start + expiry // 2 + 1)
    later = client.get(web)
    assert _max_age(later) == expiry // 2
    assert _download(later["Location"])[:2] == b"\xff\xd8"


def test_outsider_gets_404_and_no_url(
    s3_storage: S3Storage, project: Project, small_folder: Path, outsider: User
) -> None:
    crop = _cut(project, small_folder)[0]
    web, api = _urls(project, crop)
    response = _client(outsider).get(web)
    assert response.status_code == 404
    assert "Location" not in response and s3_storage.bucket.encode() not in response.content
    from annotator.api.services import api_token_create

    _, key = api_token_create(user=outsider, name="outsider")
    refused = Client().get(api, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 404 and "Location" not in refused


def test_a_recut_writes_a_new_name_and_deletes_the_old_file_after_commit(
    s3_storage: S3Storage,
    project: Project,
    small_folder: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    before = {crop.pk: crop.file for crop in _cut(project, small_folder)}
    project.crop_padding = 0.3
    project.save()
    with django_capture_on_commit_callbacks(execute=True):
        report = crops_rederive(project=project)
    assert report.recut == len(before)
    after = dict(Crop.objects.values_list("pk", "file"))
    assert after.keys() == before.keys()
    assert not set(after.values()) & set(before.values())  # every cut under a new name
    assert s3_storage.keys() == sorted(f"media/{name}" for name in after.values())


def test_a_failed_recut_keeps_the_old_files_and_leaves_no_new_one(
    project: Project,
    small_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from detector import services

    before = {crop.pk: crop.file for crop in _cut(project, small_folder)}
    media = Path(settings.MEDIA_ROOT)
    real_crop_box = services.crop_box
    calls = {"n": 0}

    def failing_second_crop(*args: object, **kwargs: object) -> PILImage.Image:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_crop_box(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services, "crop_box", failing_second_crop)
    project.crop_padding = 0.3
    project.save()
    with django_capture_on_commit_callbacks(execute=True):
        report = crops_rederive(project=project)
    assert report.problems and "disk full" in report.problems[0][1]
    failed = {crop.pk: crop.file for crop in Crop.objects.filter(pk__in=before)}
    unchanged = [pk for pk in before if failed[pk] == before[pk]]
    assert unchanged  # the image that failed kept its rows and their files
    files_after = {path.relative_to(media).as_posix() for path in media.rglob("*.jpg")}
    # The old files of the failed image are kept, the replaced ones of the others deleted,
    # and the failed image's new cuts were taken back: every file has its row.
    assert files_after == set(failed.values())
    assert len(unchanged) < len(before)  # the other images were recut


def test_internal_redirect_names_the_checked_file(
    project: Project, small_folder: Path, volunteer: User, settings: Any
) -> None:
    settings.TRAPWISE_INTERNAL_REDIRECT = "/_protected/"
    crop = _cut(project, small_folder)[0]
    for url in _urls(project, crop)[:1]:
        response = _client(volunteer).get(url)
        assert response.status_code == 200
        assert response["X-Accel-Redirect"] == f"/_protected/{crop.file}"
        assert response["Content-Type"] == "image/jpeg"
        assert response.content == b""


def test_internal_redirect_still_refuses_what_escapes_media_root(
    project: Project, small_folder: Path, volunteer: User, settings: Any, tmp_path: Path
) -> None:
    settings.TRAPWISE_INTERNAL_REDIRECT = "/_protected/"
    crops = _cut(project, small_folder)
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"not for volunteers")
    media = Path(settings.MEDIA_ROOT)
    # A row naming a file outside MEDIA_ROOT, and a crop file swapped for a link out of it.
    Crop.objects.filter(pk=crops[0].pk).update(file=os.path.relpath(secret, media))
    linked = media / crops[1].file
    linked.unlink()
    linked.symlink_to(secret)
    client = _client(volunteer)
    for crop in crops[:2]:
        response = client.get(_urls(project, crop)[0])
        assert response.status_code == 404
        assert "X-Accel-Redirect" not in response
        assert b"not for volunteers" not in response.content


def test_without_internal_redirect_crops_are_streamed(
    project: Project, small_folder: Path, volunteer: User
) -> None:
    crop = _cut(project, small_folder)[0]
    response = _client(volunteer).get(_urls(project, crop)[0])
    assert response.status_code == 200 and "X-Accel-Redirect" not in response
    assert response.getvalue() == (Path(settings.MEDIA_ROOT) / crop.file).read_bytes()


def _s3_image(project: Project, s3_storage: S3Storage, sample: Path) -> tuple[Image, bytes]:
    body = sample.read_bytes()
    key = "imports/cam1/frame 1.jpg"
    s3_storage.client().put_object(Bucket=s3_storage.bucket, Key=key, Body=body)
    image = Image.objects.create(
        project=project,
        path=f"s3://{s3_storage.bucket}/{key}",
        file_name="cam1/frame 1.jpg",
        width=640,
        height=480,
    )
    return image, body


def test_an_image_in_a_bucket_is_redirected_to_a_presigned_url(
    s3_storage: S3Storage, project: Project, sample_dir: Path, volunteer: User, outsider: User
) -> None:
    sample = next((sample_dir / "images").rglob("*.JPG"))
    image, body = _s3_image(project, s3_storage, sample)
    url = reverse("image_file", kwargs={"slug": project.slug, "image_id": image.pk})
    response = _client(volunteer).get(url)
    assert response.status_code == 302
    assert 0 < _max_age(response) < settings.TRAPWISE_STORAGE_URL_EXPIRY
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in response["Location"]  # SigV4
    assert _download(response["Location"]) == body
    refused = _client(outsider).get(url)
    assert refused.status_code == 404 and "Location" not in refused


def test_a_malformed_bucket_location_is_missing(
    s3_storage: S3Storage, project: Project, volunteer: User
) -> None:
    image = Image.objects.create(
        project=project, path="s3://only-a-bucket", file_name="x.jpg", width=1, height=1
    )
    url = reverse("image_file", kwargs={"slug": project.slug, "image_id": image.pk})
    assert _client(volunteer).get(url).status_code == 404


def test_image_source_url_is_none_for_a_local_path() -> None:
    from projects.image_source import image_source_url

    assert image_source_url(location="/srv/traps/cam1/frame.jpg") is None
    with pytest.raises(ValueError):
        image_source_url(location="s3://bucket/")


def test_embedding_reads_crops_from_the_bucket_with_an_empty_cache(
    s3_storage: S3Storage, project: Project, small_folder: Path
) -> None:
    from embeddings.selectors import embedding_vectors_load
    from embeddings.services import embedding_version_build

    crops = _cut(project, small_folder)
    shutil.rmtree(s3_storage.cache, ignore_errors=True)  # a worker that cut nothing itself
    version = embedding_version_build(project=project)
    ids, vectors = embedding_vectors_load(version=version)
    assert sorted(ids.tolist()) == [crop.pk for crop in crops]
    assert np.isfinite(vectors).all()
    cached = sorted(
        p.relative_to(s3_storage.cache / "crops").as_posix()
        for p in (s3_storage.cache / "crops").rglob("*.jpg")
    )
    assert cached == sorted(crop.file for crop in crops)
    assert not Path(settings.MEDIA_ROOT).exists()


def test_a_missing_stored_crop_fails_the_embedding_by_name(
    s3_storage: S3Storage, project: Project, small_folder: Path
) -> None:
    from embeddings.services import embedding_version_build

    crops = _cut(project, small_folder)
    s3_storage.client().delete_object(Bucket=s3_storage.bucket, Key=f"media/{crops[0].file}")
    shutil.rmtree(s3_storage.cache, ignore_errors=True)
    with pytest.raises(ValueError, match=crops[0].file):
        embedding_version_build(project=project)
