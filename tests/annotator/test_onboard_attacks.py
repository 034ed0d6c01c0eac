"""Attacks on the browser imports, over HTTP against a live server, as a project admin who wants
files from outside the import roots: a folder outside them, ``..``, a symbolic link out of them,
a zip with ``../`` members or a link member, an upload larger than the limit. Each is refused
with a clear error, and nothing is recorded, imported or written outside."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from detector.models import ImageImport
from projects.import_roots import upload_root
from projects.models import Image, Job, Project
from tests.conftest import session_login
from tests.detector.test_uploads import jpeg_bytes, zip_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(settings: Any, tmp_path: Path, small_folder: Path) -> dict[str, Path]:
    """A root holding ``cam`` (2 images) and links out of it; ``outside`` holds the real small
    folder (15 images and its COCO file)."""
    root = tmp_path / "root"
    (root / "cam").mkdir(parents=True)
    sample = sorted(small_folder.rglob("*.JPG"))
    for image in sample[:2]:
        (root / "cam" / image.name).write_bytes(image.read_bytes())
    (root / "escape").symlink_to(small_folder, target_is_directory=True)
    (root / "cam" / "coco.json").symlink_to(small_folder / "annotations.json")
    settings.TRAPWISE_IMPORT_ROOTS = [root]
    return {"root": root, "outside": small_folder}


def _nothing_imported() -> None:
    assert not ImageImport.objects.exists()
    assert not Job.objects.exists()
    assert not Image.objects.exists()


def _post_folder(session: Any, base: str, slug: str, data: dict[str, str]) -> str:
    response = session.post(
        f"{base}/p/{slug}/import/folder/",
        data={**data, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=30,
    )
    assert response.status_code == 200  # followed the redirect back to the import page
    return html.unescape(response.text)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"root": "0", "path": "../outside"}, "is not a folder below an import root"),
        ({"root": "0", "path": "cam/../.."}, "is not a folder below an import root"),
        ({"root": "0", "path": "/"}, "is not a folder below an import root"),
        ({"root": "1", "path": ""}, "there is no import root number 1"),
        ({"root": "0", "path": "escape"}, "leads outside the import root"),
        ({"root": "0", "path": "escape/images"}, "leads outside the import root"),
        ({"root": "0", "path": "cam", "coco": "cam/coco.json"}, "leads outside the import root"),
    ],
)
def test_folders_outside_the_roots_are_refused(
    live_server: Any,
    project: Project,
    admin_user: User,
    world: dict[str, Path],
    data: dict[str, str],
    reason: str,
) -> None:
    session = session_login(live_server.url, admin_user)
    text = _post_folder(session, live_server.url, project.slug, data)
    assert "Import not started" in text and reason in text
    _nothing_imported()


def test_the_folder_browser_does_not_step_out_nor_list_links(
    live_server: Any, project: Project, admin_user: User, world: dict[str, Path]
) -> None:
    session = session_login(live_server.url, admin_user)
    url = f"{live_server.url}/p/{project.slug}/import/"
    top = html.unescape(session.get(url, timeout=30).text)
    assert "cam</a>" in top and "escape" not in top
    for path in ("..", "escape", "/etc"):
        text = html.unescape(session.get(url, params={"path": path}, timeout=30).text)
        assert 'id="folder-error"' in text and "Import this folder" not in text
        assert "annotations.json" not in text and "SEQ75179" not in text


def _upload(session: Any, base: str, slug: str, files: list[tuple[str, bytes]]) -> Any:
    return session.post(
        f"{base}/p/{slug}/import/upload/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        files=[("files", (name, data)) for name, data in files],
        timeout=60,
    )


def _uploads_empty() -> None:
    assert not [p for p in upload_root().rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (
            zip_bytes({"ok.jpg": jpeg_bytes(), "../../escape.jpg": jpeg_bytes()}),
            "leads outside the upload folder",
        ),
        (
            zip_bytes({"ok.jpg": jpeg_bytes(), "/tmp/escape.jpg": jpeg_bytes()}),
            "leads outside the upload folder",
        ),
        (
            zip_bytes({"ok.jpg": jpeg_bytes()}, links={"cam/link.jpg": "/etc/passwd"}),
            "is a symbolic link",
        ),
    ],
)
def test_zips_with_members_leading_out_or_links_are_refused(
    live_server: Any,
    project: Project,
    admin_user: User,
    settings: Any,
    tmp_path: Path,
    archive: bytes,
    reason: str,
) -> None:
    session = session_login(live_server.url, admin_user)
    response = _upload(session, live_server.url, project.slug, [("cams.zip", archive)])
    text = html.unescape(response.text)
    assert response.status_code == 400 and "Upload refused" in text and reason in text
    _nothing_imported()
    _uploads_empty()
    data_dir = Path(settings.TRAPWISE_DATA_DIR)
    assert not list(data_dir.rglob("escape.jpg")) and not list(tmp_path.rglob("escape.jpg"))


def test_a_too_large_upload_is_refused_before_it_is_read(
    live_server: Any, project: Project, admin_user: User, settings: Any
) -> None:
    settings.TRAPWISE_UPLOAD_MAX_BYTES = 1024
    session = session_login(live_server.url, admin_user)
    big = b"\xff\xd8" + b"\0" * (2 * 1024 * 1024)  # over the limit and the form's slack
    response = _upload(session, live_server.url, project.slug, [("big.jpg", big)])
    assert response.status_code == 413
    assert "Upload refused: it is larger than" in html.unescape(response.text)
    _nothing_imported()
    _uploads_empty()


def test_a_good_upload_is_accepted_for_contrast(
    live_server: Any, project: Project, admin_user: User
) -> None:
    """The same requests with harmless content are accepted: the refusals above are real."""
    session = session_login(live_server.url, admin_user)
    response = _upload(
        session,
        live_server.url,
        project.slug,
        [("cams.zip", zip_bytes({"cam/ok.jpg": jpeg_bytes()}))],
    )
    assert response.status_code == 200 and "its import is queued" in response.text
    record = ImageImport.objects.get(project=project)
    assert [p.name for p in Path(record.folder).rglob("*.jpg")] == ["ok.jpg"]
