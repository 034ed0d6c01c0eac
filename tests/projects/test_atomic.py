"""Tests for projects.atomic: the one atomic file writer (temporary file, fsync, rename)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from projects import atomic
from projects.atomic import atomic_path


def test_success_replaces_the_target_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the rename
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_a_new_file_is_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "fresh.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_write_that_raises_leaves_neither_a_temporary_file_nor_a_changed_target(
    tmp_path: Path,
) -> None:
    target = tmp_path / "index.faiss"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]


def test_a_failed_first_write_creates_no_target(tmp_path: Path) -> None:
    target = tmp_path / "never.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(target):
        raise KeyboardInterrupt  # BaseException too: a worker stopped mid-write
    assert list(tmp_path.iterdir()) == []


def test_file_and_folder_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []  # per fsync: was it a folder?
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", counting_fsync)
    with atomic_path(tmp_path / "vectors.npy") as tmp:
        tmp.write_bytes(b"data")
        assert synced == []  # nothing flushed while the caller is still writing
    assert synced == [False, True]  # the file before the rename, then its folder


def test_no_fsync_and_no_rename_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(atomic.os, "replace", lambda *a: calls.append("replace"))
    with pytest.raises(ValueError), atomic_path(tmp_path / "x.bin"):
        raise ValueError("bad payload")
    assert calls == []
