"""Opening stored paths safely: regular files only, inside their roots, no link followed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from projects.safe_files import UnsafeFileError, file_open_confined, file_open_regular

SECRET = b"SECRET-KEY-do-not-serve"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/cam/a.jpg (a regular file) and outside/secret next to root."""
    (tmp_path / "root" / "cam").mkdir(parents=True)
    (tmp_path / "root" / "cam" / "a.jpg").write_bytes(b"jpeg bytes")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(SECRET)
    return tmp_path


def _read(path: Path, root: Path) -> bytes:
    with file_open_confined(path, roots=[root]) as handle:
        return handle.read()


def test_a_regular_file_inside_its_root_opens(tree: Path) -> None:
    assert _read(tree / "root" / "cam" / "a.jpg", tree / "root") == b"jpeg bytes"


def test_a_root_named_through_a_link_still_works(tree: Path) -> None:
    """The roots come from the operator's settings: a root that is a link is fine."""
    (tree / "media").symlink_to(tree / "root", target_is_directory=True)
    assert _read(tree / "media" / "cam" / "a.jpg", tree / "media") == b"jpeg bytes"


def test_a_file_replaced_by_a_link_outside_is_refused(tree: Path) -> None:
    target = tree / "root" / "cam" / "a.jpg"
    target.unlink()
    target.symlink_to(tree / "outside" / "secret")
    with pytest.raises(UnsafeFileError, match="outside"):
        _read(target, tree / "root")


def test_a_link_in_a_middle_component_is_refused(tree: Path) -> None:
    """root/cam replaced by a link to a folder outside holding a file of the same name."""
    (tree / "outside" / "a.jpg").write_bytes(SECRET)
    (tree / "root" / "cam" / "a.jpg").unlink()
    (tree / "root" / "cam").rmdir()
    (tree / "root" / "cam").symlink_to(tree / "outside", target_is_directory=True)
    with pytest.raises(UnsafeFileError):
        _read(tree / "root" / "cam" / "a.jpg", tree / "root")


def test_a_link_swapped_in_after_the_check_is_not_followed(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the path resolves inside the root, then a folder on it becomes a link before
    the open. The walk with O_NOFOLLOW fails instead of following it."""
    (tree / "outside" / "a.jpg").write_bytes(SECRET)
    real_realpath = os.path.realpath

    def realpath_then_swap(path: str | os.PathLike[str], *args: object, **kwargs: object) -> str:
        resolved = real_realpath(path)
        if str(path).endswith("a.jpg"):
            os.rename(tree / "root" / "cam", tree / "root" / "cam-moved")
            (tree / "root" / "cam").symlink_to(tree / "outside", target_is_directory=True)
        return resolved

    monkeypatch.setattr(os.path, "realpath", realpath_then_swap)
    with pytest.raises(OSError) as caught:
        _read(tree / "root" / "cam" / "a.jpg", tree / "root")
    assert not isinstance(caught.value, FileNotFoundError)  # a link on the way, not "missing"


def test_a_file_outside_every_root_is_refused(tree: Path) -> None:
    with pytest.raises(UnsafeFileError, match="outside"):
        _read(tree / "outside" / "secret", tree / "root")
    with pytest.raises(UnsafeFileError, match="outside"):
        _read(tree / "root" / ".." / "outside" / "secret", tree / "root")
    with pytest.raises(UnsafeFileError, match="outside"):
        file_open_confined(tree / "root" / "cam" / "a.jpg", roots=[])


def test_a_fifo_is_refused_without_blocking(tree: Path) -> None:
    fifo = tree / "root" / "cam" / "b.jpg"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def attempt() -> None:
        try:
            _read(fifo, tree / "root")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert isinstance(result[0], UnsafeFileError) and "named pipe" in str(result[0])


def test_a_directory_and_a_device_are_refused(tree: Path) -> None:
    (tree / "root" / "cam" / "dir.jpg").mkdir()
    with pytest.raises(UnsafeFileError, match="a folder"):
        _read(tree / "root" / "cam" / "dir.jpg", tree / "root")
    with pytest.raises(UnsafeFileError, match="character device"):
        file_open_confined("/dev/null", roots=["/dev"])


def test_a_missing_file_is_file_not_found(tree: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _read(tree / "root" / "cam" / "gone.jpg", tree / "root")


def test_regular_open_follows_links_but_refuses_special_files(tree: Path) -> None:
    """The import's open: a link is followed (the import checked where it leads), a FIFO
    or a device is refused unopened."""
    link = tree / "root" / "cam" / "link.jpg"
    link.symlink_to(tree / "root" / "cam" / "a.jpg")
    with file_open_regular(link) as handle:
        assert handle.read() == b"jpeg bytes"
    os.mkfifo(tree / "root" / "cam" / "pipe.jpg")
    with pytest.raises(UnsafeFileError, match="named pipe"):
        file_open_regular(tree / "root" / "cam" / "pipe.jpg")
    with pytest.raises(UnsafeFileError, match="character device"):
        file_open_regular("/dev/zero")
