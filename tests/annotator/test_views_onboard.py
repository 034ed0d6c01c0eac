"""The onboarding pages: a new project for users with the site permission, imports for project
admins (a folder of the roots, or an upload), refused to everyone else."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotator.upload_handlers import LimitedTemporaryFileUploadHandler
from detector.import_jobs import IMPORT_TASK
from detector.models import ImageImport
from projects.models import Job, Membership, Project, ProjectDetector, QueuedTask, Role
from tests.detector.test_uploads import jpeg_bytes

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _creator(user: User) -> User:
    user.user_permissions.add(Permission.objects.get(codename="add_project"))
    return User.objects.get(pk=user.pk)  # a fresh object: permissions are cached per object


NEW = {
    "name": "Savanna cams",
    "backbone": "mobilenet_v2",
    "detector": ProjectDetector.IMPORTED,
    "detection_threshold": "0.35",
    "min_box_pixels": "12",
}


def test_a_user_with_the_site_permission_creates_a_project_and_is_its_admin(
    outsider: User,
) -> None:
    client = _client(_creator(outsider))
    assert 'id="project-new-link"' in client.get(reverse("project_list")).text
    page = client.get(reverse("project_new"))
    assert page.status_code == 200 and 'value="efficientnet_lite0" selected' in page.text
    response = client.post(reverse("project_new"), NEW)
    project = Project.objects.get(name="Savanna cams")
    assert response.status_code == 302
    assert response["Location"] == reverse("project_import", args=[project.slug])
    assert (project.backbone, project.detector) == ("mobilenet_v2", "imported")
    assert (project.detection_threshold, project.min_box_pixels) == (0.35, 12)
    assert Membership.objects.get(project=project).role == Role.ADMIN
    assert project.created_by == outsider


def test_superusers_may_create_projects(django_user_model: type[User]) -> None:
    root = django_user_model.objects.create_superuser("root", password="x" * 20)
    assert _client(root).post(reverse("project_new"), NEW).status_code == 302


@pytest.mark.parametrize(
    "change",
    [{"backbone": "vgg16"}, {"detector": "yolo"}, {"detection_threshold": "1.5"}, {"name": ""}],
)
def test_bad_input_creates_nothing(outsider: User, change: dict[str, str]) -> None:
    response = _client(_creator(outsider)).post(reverse("project_new"), {**NEW, **change})
    assert response.status_code == 400 and 'role="alert"' in response.text
    assert not Project.objects.exists()


def test_a_taken_name_is_a_clear_error(outsider: User, project: Project) -> None:
    response = _client(_creator(outsider)).post(
        reverse("project_new"), {**NEW, "name": project.name}
    )
    assert response.status_code == 400 and "already" in response.text
    assert Project.objects.count() == 1


def test_without_the_permission_creation_is_403_and_the_link_hidden(
    project: Project, admin_user: User, volunteer: User, outsider: User
) -> None:
    for user in (admin_user, volunteer, outsider):  # a project admin is no site creator
        client = _client(user)
        assert "project-new-link" not in client.get(reverse("project_list")).text
        assert client.get(reverse("project_new")).status_code == 403
        assert client.post(reverse("project_new"), NEW).status_code == 403
    assert Project.objects.count() == 1


@pytest.fixture
def root(settings: Any, tmp_path: Path, small_folder: Path) -> Path:
    base = tmp_path / "root"
    shutil.copytree(small_folder, base / "traps")
    settings.TRAPWISE_IMPORT_ROOTS = [base]
    return base


def test_the_import_page_browses_the_roots(project: Project, admin_user: User, root: Path) -> None:
    client = _client(admin_user)
    page = client.get(reverse("project_import", args=[project.slug]))
    assert page.status_code == 200
    assert "traps</a>" in page.text and "15 images" in page.text
    inner = client.get(reverse("project_import", args=[project.slug]), {"path": "traps"})
    assert "annotations.json" in inner.text and "Import this folder" in inner.text
    outside = client.get(reverse("project_import", args=[project.slug]), {"path": "../.."})
    assert outside.status_code == 200 and "not a folder below an import root" in outside.text
    assert "Import this folder" not in outside.text


def test_without_roots_the_page_says_how_and_offers_only_upload(
    project: Project, admin_user: User, settings: Any
) -> None:
    settings.TRAPWISE_IMPORT_ROOTS = []
    page = _client(admin_user).get(reverse("project_import", args=[project.slug]))
    assert 'id="no-roots"' in page.text and "TRAPWISE_IMPORT_ROOTS" in page.text
    assert "Import this folder" not in page.text and "Upload and import" in page.text
    response = _client(admin_user).post(
        reverse("import_folder_start", args=[project.slug]), {"root": "0", "path": ""}, follow=True
    )
    assert "Import not started" in response.text and "set TRAPWISE_IMPORT_ROOTS" in response.text
    assert not Job.objects.exists()


def test_admin_queues_a_folder_import(project: Project, admin_user: User, root: Path) -> None:
    response = _client(admin_user).post(
        reverse("import_folder_start", args=[project.slug]),
        {"root": "0", "path": "traps", "coco": "traps/annotations.json"},
        follow=True,
    )
    assert "Import of traps queued." in response.text
    record = ImageImport.objects.get(project=project)
    assert (record.folder, record.coco) == (
        str((root / "traps").resolve()),
        str((root / "traps" / "annotations.json").resolve()),
    )
    assert record.job.kind == Job.Kind.IMPORT and record.created_by == admin_user
    assert QueuedTask.objects.filter(name=IMPORT_TASK, args=[record.pk]).exists()
    # The job shows among the page's background jobs.
    assert "Importing images" in response.text


@pytest.mark.parametrize(
    "post",
    [
        {"root": "0", "path": "../"},
        {"root": "0", "path": "/etc"},
        {"root": "3", "path": ""},
        {"root": "0", "path": "traps", "coco": "../../etc/passwd"},
    ],
)
def test_folder_import_outside_the_roots_is_refused(
    project: Project, admin_user: User, root: Path, post: dict[str, str]
) -> None:
    response = _client(admin_user).post(
        reverse("import_folder_start", args=[project.slug]), post, follow=True
    )
    assert "Import not started" in response.text
    assert not ImageImport.objects.exists() and not Job.objects.exists()


def test_admin_uploads_image_files(project: Project, admin_user: User) -> None:
    files = [
        SimpleUploadedFile("a.jpg", jpeg_bytes(), "image/jpeg"),
        SimpleUploadedFile("b.txt", b"notes", "text/plain"),
    ]
    response = _client(admin_user).post(
        reverse("import_upload", args=[project.slug]), {"files": files}, follow=True
    )
    assert "Upload of 2 file(s) stored" in response.text
    record = ImageImport.objects.get(project=project)
    assert record.uploaded and record.problems == [
        ["b.txt", "not an image (jpg, jpeg, png) nor a zip"]
    ]
    assert [p.name for p in Path(record.folder).iterdir()] == ["a.jpg"]


def test_uploads_are_streamed_to_disk_by_the_limited_handler(
    project: Project, admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[int] = []
    original = LimitedTemporaryFileUploadHandler.new_file

    def record(self: LimitedTemporaryFileUploadHandler, *args: Any, **kwargs: Any) -> None:
        used.append(self.max_bytes)
        original(self, *args, **kwargs)

    monkeypatch.setattr(LimitedTemporaryFileUploadHandler, "new_file", record)
    _client(admin_user).post(
        reverse("import_upload", args=[project.slug]),
        {"files": [SimpleUploadedFile("a.jpg", jpeg_bytes(), "image/jpeg")]},
    )
    assert used and ImageImport.objects.exists()


def test_too_large_upload_is_413_and_stores_nothing(
    project: Project, admin_user: User, settings: Any
) -> None:
    settings.TRAPWISE_UPLOAD_MAX_BYTES = 1000
    big = SimpleUploadedFile("a.jpg", b"\xff" * 5000, "image/jpeg")
    # Under the Content-Length slack (the form's fields): the handler stops it while streaming.
    response = _client(admin_user).post(
        reverse("import_upload", args=[project.slug]), {"files": big}
    )
    assert response.status_code == 413 and "Upload refused" in response.text
    assert not ImageImport.objects.exists()


@pytest.mark.parametrize("role", ["volunteer", "ecologist", "outsider"])
def test_imports_are_refused_to_everyone_but_admins(
    project: Project, root: Path, role: str, request: pytest.FixtureRequest
) -> None:
    client = _client(request.getfixturevalue(role))
    assert client.get(reverse("project_import", args=[project.slug])).status_code == 404
    post = {"root": "0", "path": "traps"}
    assert client.post(reverse("import_folder_start", args=[project.slug]), post).status_code == 404
    upload = {"files": [SimpleUploadedFile("a.jpg", jpeg_bytes(), "image/jpeg")]}
    assert client.post(reverse("import_upload", args=[project.slug]), upload).status_code == 404
    assert not ImageImport.objects.exists()


def test_an_upload_without_csrf_token_is_refused(project: Project, admin_user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    upload = {"files": [SimpleUploadedFile("a.jpg", jpeg_bytes(), "image/jpeg")]}
    assert client.post(reverse("import_upload", args=[project.slug]), upload).status_code == 403
    assert not ImageImport.objects.exists()
