"""Image and crop files over real HTTP: a file swapped for a link, a linked folder or a pipe
after the import is never served, through the web pages or the API.

The attacker here can write into an imported folder (or the media folder) and is a member of
the project; the server is pytest-django's live server, asked over HTTP with ``requests``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import LazySettings
from django.contrib.auth.models import User

from annotator.api.services import api_token_create
from detector.imported import ImportedDetector
from detector.imports import images_import
from detector.models import Crop
from detector.services import detections_run
from projects.import_roots import image_read_roots
from projects.models import Image, Project
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

# A look-alike of a key file, split so that the secret scan of the repository passes.
SECRET = b"-----BEGIN " + b"PRIVATE KEY----- not for volunteers"


@pytest.fixture
def cut_project(project: Project, small_folder: Path) -> Project:
    """``project`` with the small folder imported and its crops cut (no embedding needed)."""
    coco = small_folder / "annotations.json"
    images_import(project=project, folder=small_folder, coco=coco)
    detections_run(project=project, detector=ImportedDetector.from_coco_camera_traps(coco))
    assert project.crops.exists()
    return project


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A secret file outside every imported folder and outside MEDIA_ROOT."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.key").write_bytes(SECRET)
    return folder / "secret.key"


@pytest.fixture
def session(live_server: Any, volunteer: User) -> Iterator[requests.Session]:
    """A volunteer logged in through the login form of the live server."""
    browser = requests.Session()
    login = f"{live_server.url}/accounts/login/"
    page = browser.get(login, timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None
    answer = browser.post(
        login,
        data={
            "username": volunteer.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": token.group(1),
        },
        headers={"Referer": login},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:500]
    yield browser
    browser.close()


@pytest.fixture
def api(volunteer: User) -> requests.Session:
    """The volunteer's API client: a bearer token, no session cookie."""
    _, key = api_token_create(user=volunteer, name="files test")
    client = requests.Session()
    client.headers["Authorization"] = f"Bearer {key}"
    return client


Fetch = Callable[[str, int], requests.Response]


@pytest.fixture
def fetch(live_server: Any, session: requests.Session, api: requests.Session) -> Any:
    """``fetch(kind, id)`` for kind in image/crop (web pages) and api-image/api-crop."""

    def get(kind: str, pk: int, slug: str) -> requests.Response:
        base = live_server.url
        url = {
            "image": f"{base}/p/{slug}/images/{pk}",
            "crop": f"{base}/p/{slug}/crops/{pk}.jpg",
            "api-image": f"{base}/api/v1/projects/{slug}/images/{pk}/file",
            "api-crop": f"{base}/api/v1/projects/{slug}/crops/{pk}/file",
        }[kind]
        client = api if kind.startswith("api-") else session
        return client.get(url, timeout=30, allow_redirects=False)

    return get


def _refused_like_missing(fetch: Any, kind: str, pk: int, slug: str, missing: int) -> None:
    """The answer for ``pk`` is a 404 without the secret, the same as for a missing file."""
    answer = fetch(kind, pk, slug)
    assert answer.status_code == 404, (kind, answer.status_code)
    assert SECRET not in answer.content
    assert b"PRIVATE KEY" not in answer.content
    gone = fetch(kind, missing, slug)
    assert gone.status_code == 404
    assert answer.content == gone.content  # nothing tells the attacker why


def _two_images(project: Project) -> tuple[Image, Image]:
    first, second = project.images.order_by("id")[:2]
    return first, second


def test_a_regular_image_and_crop_still_serve(cut_project: Project, fetch: Any) -> None:
    image = cut_project.images.order_by("id").first()
    crop = cut_project.crops.order_by("id").first()
    assert image is not None and crop is not None
    for kind in ("image", "api-image"):
        answer = fetch(kind, image.pk, cut_project.slug)
        assert answer.status_code == 200, kind
        assert answer.content == Path(image.path).read_bytes()
        assert answer.headers["Content-Type"] == "image/jpeg"
    for kind in ("crop", "api-crop"):
        answer = fetch(kind, crop.pk, cut_project.slug)
        assert answer.status_code == 200, kind
        assert answer.headers["Content-Type"] == "image/jpeg"
        assert answer.content[:2] == b"\xff\xd8"


def test_an_image_replaced_by_a_link_to_a_secret_is_404(
    cut_project: Project, fetch: Any, secret: Path
) -> None:
    image, missing = _two_images(cut_project)
    Path(image.path).unlink()
    Path(image.path).symlink_to(secret)
    Path(missing.path).unlink()
    for kind in ("image", "api-image"):
        _refused_like_missing(fetch, kind, image.pk, cut_project.slug, missing.pk)


def test_an_image_replaced_by_a_link_to_etc_passwd_is_404(cut_project: Project, fetch: Any) -> None:
    image = cut_project.images.order_by("id").first()
    assert image is not None
    Path(image.path).unlink()
    Path(image.path).symlink_to("/etc/passwd")
    for kind in ("image", "api-image"):
        answer = fetch(kind, image.pk, cut_project.slug)
        assert answer.status_code == 404 and b"root:" not in answer.content


def test_an_image_whose_folder_became_a_link_is_404(
    cut_project: Project, fetch: Any, secret: Path
) -> None:
    """The image's folder replaced by a link to a folder outside, holding a file of the
    image's name with the secret in it."""
    image = cut_project.images.order_by("id").first()
    assert image is not None
    folder = Path(image.path).parent
    (secret.parent / Path(image.path).name).write_bytes(SECRET)
    shutil.rmtree(folder)
    folder.symlink_to(secret.parent, target_is_directory=True)
    missing = cut_project.images.exclude(path__startswith=f"{folder}/").first()
    assert missing is not None
    Path(missing.path).unlink()
    for kind in ("image", "api-image"):
        _refused_like_missing(fetch, kind, image.pk, cut_project.slug, missing.pk)


def test_an_image_replaced_by_a_fifo_is_404_at_once(cut_project: Project, fetch: Any) -> None:
    """A named pipe would hold the request (and a server thread) forever if it were opened."""
    image, missing = _two_images(cut_project)
    Path(image.path).unlink()
    os.mkfifo(image.path)
    Path(missing.path).unlink()
    for kind in ("image", "api-image"):
        _refused_like_missing(fetch, kind, image.pk, cut_project.slug, missing.pk)


def test_a_crop_replaced_by_a_link_to_a_secret_is_404(
    cut_project: Project, fetch: Any, secret: Path, settings: LazySettings
) -> None:
    crop, missing = cut_project.crops.order_by("id")[:2]
    path = Path(settings.MEDIA_ROOT) / crop.file
    path.unlink()
    path.symlink_to(secret)
    (Path(settings.MEDIA_ROOT) / missing.file).unlink()
    for kind in ("crop", "api-crop"):
        _refused_like_missing(fetch, kind, crop.pk, cut_project.slug, missing.pk)


def test_a_crop_folder_replaced_by_a_link_is_404(
    cut_project: Project, fetch: Any, secret: Path, settings: LazySettings
) -> None:
    crop = Crop.objects.filter(project=cut_project).order_by("id").first()
    assert crop is not None
    path = Path(settings.MEDIA_ROOT) / crop.file
    (secret.parent / path.name).write_bytes(SECRET)
    shutil.rmtree(path.parent)
    path.parent.symlink_to(secret.parent, target_is_directory=True)
    for kind in ("crop", "api-crop"):
        answer = fetch(kind, crop.pk, cut_project.slug)
        assert answer.status_code == 404 and SECRET not in answer.content


def test_an_image_whose_folder_left_the_import_roots_is_404(
    cut_project: Project, fetch: Any, small_folder: Path, tmp_path: Path, settings: LazySettings
) -> None:
    """With TRAPWISE_IMPORT_ROOTS set, an image is served only while its import folder lies
    inside them (the roots may have changed since the import)."""
    image = cut_project.images.order_by("id").first()
    assert image is not None
    settings.TRAPWISE_IMPORT_ROOTS = [small_folder]
    assert fetch("image", image.pk, cut_project.slug).status_code == 200
    settings.TRAPWISE_IMPORT_ROOTS = [tmp_path / "elsewhere"]
    for kind in ("image", "api-image"):
        assert fetch(kind, image.pk, cut_project.slug).status_code == 404


def test_image_read_roots_is_the_import_folder_inside_the_roots(
    tmp_path: Path, settings: LazySettings
) -> None:
    path = f"{tmp_path}/traps/images/cam/a.jpg"
    settings.TRAPWISE_IMPORT_ROOTS = []
    assert image_read_roots(path=path, file_name="images/cam/a.jpg") == [tmp_path / "traps"]
    settings.TRAPWISE_IMPORT_ROOTS = [tmp_path]
    assert image_read_roots(path=path, file_name="images/cam/a.jpg") == [tmp_path / "traps"]
    settings.TRAPWISE_IMPORT_ROOTS = [tmp_path / "other"]
    assert image_read_roots(path=path, file_name="images/cam/a.jpg") == []
    settings.TRAPWISE_IMPORT_ROOTS = []
    for file_name in ("", "b.jpg", "../cam/a.jpg", "/images/cam/a.jpg"):
        assert image_read_roots(path=path, file_name=file_name) == [], file_name
