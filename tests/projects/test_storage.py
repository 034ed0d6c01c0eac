"""The storage layer, on the local file system and on a loopback S3 server alike."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from projects.storage import (
    stored_delete,
    stored_exists,
    stored_folder_local,
    stored_folder_write,
    stored_list,
    stored_local,
    stored_open,
    stored_put,
    stored_url,
    stored_write,
)
from projects.storage_cache import MARKER
from tests.s3 import S3Storage


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> S3Storage | None:
    if request.param == "s3":
        return request.getfixturevalue("s3_storage")  # type: ignore[no-any-return]
    return None


def test_written_file_reads_back_and_is_listed(backend: S3Storage | None) -> None:
    with stored_write(kind="data", name="projects/1/model.bin") as path:
        path.write_bytes(b"weights")
    assert stored_exists(kind="data", name="projects/1/model.bin")
    with stored_open(kind="data", name="projects/1/model.bin") as handle:
        assert handle.read() == b"weights"
    assert stored_local(kind="data", name="projects/1/model.bin").read_bytes() == b"weights"
    assert stored_list(kind="data", prefix="projects") == ["1/model.bin"]
    if backend is not None:
        assert backend.keys() == ["data/projects/1/model.bin"]


def test_failed_write_publishes_nothing(backend: S3Storage | None) -> None:
    with pytest.raises(RuntimeError), stored_write(kind="data", name="a/b.npy") as path:
        path.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert not stored_exists(kind="data", name="a/b.npy")
    with pytest.raises(FileNotFoundError):
        stored_local(kind="data", name="a/b.npy")


def test_folder_is_published_whole_and_cached(backend: S3Storage | None, settings: Any) -> None:
    ids = np.arange(5, dtype=np.int64)
    with stored_folder_write(kind="data", name="v1/crops-5") as folder:
        np.save(folder / "ids.npy", ids)
        (folder / "sub").mkdir()
        (folder / "sub" / "note.txt").write_text("x")
    assert stored_list(kind="data", prefix="v1/crops-5") == ["ids.npy", "sub/note.txt"]
    local = stored_folder_local(kind="data", name="v1/crops-5")
    assert np.array_equal(np.load(local / "ids.npy"), ids)
    if backend is not None:
        # A worker reads its cached copy: the store is not asked again once cached.
        assert str(local).startswith(str(backend.cache))
        backend.client().delete_object(Bucket=backend.bucket, Key="data/v1/crops-5/ids.npy")
        again = stored_folder_local(kind="data", name="v1/crops-5")
        assert np.array_equal(np.load(again / "ids.npy"), ids)


def test_delete_removes_folder_and_cache(backend: S3Storage | None) -> None:
    stored_put(kind="crops", name="crops/1/a.jpg", content=b"a")
    stored_put(kind="crops", name="crops/1/b.jpg", content=b"b")
    stored_local(kind="crops", name="crops/1/a.jpg")
    stored_delete(kind="crops", name="crops/1")
    assert stored_list(kind="crops", prefix="crops/1") == []
    with pytest.raises(FileNotFoundError):
        stored_local(kind="crops", name="crops/1/a.jpg")


def test_missing_file_is_file_not_found(backend: S3Storage | None) -> None:
    with pytest.raises(FileNotFoundError):
        stored_open(kind="exports", name="nothing.zip")
    with pytest.raises(FileNotFoundError):
        stored_folder_local(kind="data", name="nothing")


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret", "a/../../b", ""])
def test_names_outside_the_store_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a stored file name"):
        stored_exists(kind="data", name=name)


def test_signed_url_only_for_remote_store(backend: S3Storage | None) -> None:
    stored_put(kind="exports", name="p/export.zip", content=b"zip")
    url = stored_url(kind="exports", name="p/export.zip", download_name="export.zip")
    if backend is None:
        assert url is None
        return
    assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=" in url
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url  # SigV4, as every region accepts
    import urllib.request

    with urllib.request.urlopen(url) as response:  # noqa: S310 - loopback moto server
        assert response.read() == b"zip"
        assert "export.zip" in response.headers["Content-Disposition"]


def test_local_backend_writes_under_the_configured_folders(settings: Any) -> None:
    stored_put(kind="crops", name="crops/7/x.jpg", content=b"j")
    stored_put(kind="exports", name="7/e.csv", content=b"c")
    assert (Path(settings.MEDIA_ROOT) / "crops/7/x.jpg").read_bytes() == b"j"
    assert (Path(settings.TRAPWISE_DATA_DIR) / "exports/7/e.csv").read_bytes() == b"c"


def test_a_file_cached_alone_does_not_pass_for_its_whole_folder(s3_storage: S3Storage) -> None:
    with stored_folder_write(kind="data", name="v2/crops-2") as folder:
        (folder / "ids.npy").write_bytes(b"i")
        (folder / "vectors.npy").write_bytes(b"v")
    # A new worker caches one file of the folder first, then asks for the folder.
    for path in s3_storage.cache.iterdir():
        shutil.rmtree(path)
    assert stored_local(kind="data", name="v2/crops-2/ids.npy").read_bytes() == b"i"
    local = stored_folder_local(kind="data", name="v2/crops-2")
    # Plus the cache's marker of a whole cached folder (projects.storage_cache).
    assert sorted(p.name for p in local.iterdir()) == [MARKER, "ids.npy", "vectors.npy"]
