"""Storing uploads: images kept, zips unpacked with their folders, everything else listed; a zip
that leads out, holds a link or is a bomb refuses the whole upload before a byte is extracted."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image as PILImage

from detector.uploads import UploadLimits, UploadRefused, upload_store

LIMITS = UploadLimits(max_bytes=10_000_000, max_members=50)


def jpeg_bytes(colour: int = 120) -> bytes:
    """A small real JPEG of one colour (also for the web tests)."""
    out = io.BytesIO()
    PILImage.new("RGB", (32, 24), (colour, 90, 40)).save(out, "JPEG")
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    """A zip of ``members`` (name: bytes) and symbolic-link members (name: target)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return out.getvalue()


def _received(tmp_path: Path, data: bytes) -> Path:
    folder = tmp_path / "received"
    folder.mkdir(exist_ok=True)
    path = folder / f"{len(list(folder.iterdir()))}.upload"
    path.write_bytes(data)
    return path


def test_images_and_a_zip_are_stored_the_rest_listed(tmp_path: Path) -> None:
    zipped = zip_bytes(
        {
            "cam1/IMG_0001.JPG": jpeg_bytes(10),
            "cam1/IMG_0002.jpg": jpeg_bytes(20),
            "cam1/notes.txt": b"field notes",
            "cam2/": b"",
            "cam2/IMG_0001.png": jpeg_bytes(30),
        }
    )
    files = [
        ("C:\\Users\\me\\single.jpg", _received(tmp_path, jpeg_bytes(40))),
        ("cams.zip", _received(tmp_path, zipped)),
        ("again.jpg", _received(tmp_path, jpeg_bytes(10))),  # the same bytes as cam1/IMG_0001.JPG
        ("table.csv", _received(tmp_path, b"a,b")),
    ]
    folder = tmp_path / "batch"
    stored = upload_store(folder=folder, files=files, limits=LIMITS)
    kept = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert kept == [
        "cams/cam1/IMG_0001.JPG",
        "cams/cam1/IMG_0002.jpg",
        "cams/cam2/IMG_0001.png",
        "single.jpg",
    ]
    assert stored.images == 4
    assert dict(stored.problems) == {
        "cams.zip/cam1/notes.txt": "not an image (jpg, jpeg, png): left out",
        "again.jpg": "duplicate of cams.zip/cam1/IMG_0001.JPG: left out",
        "table.csv": "not an image (jpg, jpeg, png) nor a zip",
    }
    assert not any((tmp_path / "received").iterdir())  # every received file moved or deleted


@pytest.mark.parametrize(
    "name",
    ["../escape.jpg", "cam/../../escape.jpg", "/etc/escape.jpg", "..\\escape.jpg", "C:x.jpg"],
)
def test_a_member_leading_out_refuses_thezip_bytes(tmp_path: Path, name: str) -> None:
    zipped = zip_bytes({"ok.jpg": jpeg_bytes(1), name: jpeg_bytes(2)})
    folder = tmp_path / "batch"
    with pytest.raises(UploadRefused, match="leads outside the upload folder"):
        upload_store(folder=folder, files=[("a.zip", _received(tmp_path, zipped))], limits=LIMITS)
    assert not any(folder.rglob("*.jpg"))
    assert not (tmp_path / "escape.jpg").exists()


def test_a_link_member_refuses_thezip_bytes(tmp_path: Path) -> None:
    zipped = zip_bytes({"ok.jpg": jpeg_bytes(1)}, links={"secret.jpg": "/etc/passwd"})
    folder = tmp_path / "batch"
    with pytest.raises(UploadRefused, match="is a symbolic link"):
        upload_store(folder=folder, files=[("a.zip", _received(tmp_path, zipped))], limits=LIMITS)
    assert not any(folder.rglob("*.jpg"))


def test_bombs_are_refused_by_members_and_by_bytes(tmp_path: Path) -> None:
    many = zip_bytes({f"{i}.jpg": b"x" for i in range(LIMITS.max_members + 1)})
    with pytest.raises(UploadRefused, match="more than 50"):
        upload_store(
            folder=tmp_path / "a", files=[("m.zip", _received(tmp_path, many))], limits=LIMITS
        )
    # 20 MB of zeros compress to a few kB: the announced size refuses it unread.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.jpg", b"\0" * 20_000_000)
    with pytest.raises(UploadRefused, match="would unpack to 20000000 bytes"):
        upload_store(
            folder=tmp_path / "b",
            files=[("z.zip", _received(tmp_path, out.getvalue()))],
            limits=LIMITS,
        )


def test_a_zip_lying_about_its_size_is_stopped_while_unpacking(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("big.jpg", b"\xff" * 5000)
    data = bytearray(out.getvalue())
    # Shrink the central directory's announced size to 10 bytes: the reader trusts it, so the
    # copy must not write more than that (zipfile stops there and finds the CRC wrong).
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    with pytest.raises(UploadRefused, match="cannot be unpacked|larger than it says"):
        upload_store(
            folder=tmp_path / "c",
            files=[("l.zip", _received(tmp_path, bytes(data)))],
            limits=LIMITS,
        )
    assert not any(p.stat().st_size > 10 for p in (tmp_path / "c").rglob("*.jpg"))


def test_too_many_bytes_in_all_is_refused(tmp_path: Path) -> None:
    small = UploadLimits(max_bytes=1000)
    with pytest.raises(UploadRefused, match="larger than 1000 bytes"):
        upload_store(
            folder=tmp_path / "d",
            files=[("big.jpg", _received(tmp_path, b"\xff" * 2000))],
            limits=small,
        )


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadRefused, match="not a readable zip"):
        upload_store(
            folder=tmp_path / "e", files=[("x.zip", _received(tmp_path, b"PK nope"))], limits=LIMITS
        )
