"""Opening image and crop files by a path stored earlier, without being fooled by what the
folder holds now.

A path checked when a file was imported says nothing about the file today: someone who can
write to an imported folder may replace an image by a symbolic link (to the secret key, to
/etc/...), a link to a folder, a named pipe or a device. ``file_open_confined`` is the one
function that opens such a path for serving; ``file_open_regular`` is the one the import uses.

Django-free (the ground app's package imports nothing), so any layer may use it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import BinaryIO

__all__ = ["UnsafeFileError", "file_open_confined", "file_open_regular"]

# Directories are walked with O_PATH where the system has it (Linux): it needs no read
# permission on the folder, only search permission, as a plain open(path) does.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
# O_NONBLOCK: a named pipe swapped in between the check and the open must not block the open.
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafeFileError(OSError):
    """A file refused before any byte of it was read: not a regular file, or outside its roots.

    An ``OSError``, so that callers that treat "missing" and "unreadable" alike need one except.
    """


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` is, in words, for problem reports."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((text for test, text in kinds if test(mode)), "a special file")


def _regular_or_refuse(mode: int, path: str | os.PathLike[str]) -> None:
    if not stat.S_ISREG(mode):
        raise UnsafeFileError(f"{os.fspath(path)} is not a regular file but {file_kind(mode)}")


def _fdopen_regular(fd: int, path: str | os.PathLike[str]) -> BinaryIO:
    """``fd`` as a binary file object once fstat says it is a regular file; closed otherwise."""
    try:
        _regular_or_refuse(os.fstat(fd).st_mode, path)
        os.set_blocking(fd, True)  # O_NONBLOCK was only for the open
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` (links followed) for reading, only if it is a regular file.

    A named pipe, device, socket or folder is refused with UnsafeFileError without being
    opened (a pipe would block the reader forever, a device may act on open); the type is
    checked again on the open file, as the path may change in between. For the import, which
    has already checked where the path leads (``projects.import_roots``).
    """
    _regular_or_refuse(os.stat(path).st_mode, path)
    return _fdopen_regular(os.open(path, _FILE_FLAGS), path)


def _within(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path != root and path.is_relative_to(root)


def file_open_confined(
    path: str | os.PathLike[str], *, roots: Iterable[str | os.PathLike[str]]
) -> BinaryIO:
    """Open ``path`` for reading, only if it is a regular file whose real location lies in one
    of ``roots``, and open that location without following any link.

    The path is resolved once (links and ``..`` followed, as ``os.path.realpath``); the result
    must lie under one of ``roots`` (each resolved too: a setting may name a link). Then the
    resolved path is opened one component at a time from ``/``, every folder with O_NOFOLLOW
    and O_DIRECTORY, and the file itself is checked with lstat, opened with O_NOFOLLOW and
    checked again with fstat. A link or a non-regular file put in place at any moment, before
    or after the check, makes the open fail instead of being followed: what is opened is
    exactly what was checked.

    Raises:
        UnsafeFileError: outside every root, or not a regular file (nothing was opened).
        OSError: missing (FileNotFoundError), a link on the way (ELOOP, ENOTDIR), unreadable.
            Callers that serve files answer every one of these as "missing".
    """
    real = PurePosixPath(os.path.realpath(path))
    resolved_roots = [PurePosixPath(os.path.realpath(root)) for root in roots]
    if not real.is_absolute() or not any(_within(real, root) for root in resolved_roots):
        raise UnsafeFileError(f"{os.fspath(path)} lies outside the folders it may be read from")
    *folders, name = real.parts[1:]
    directory = os.open("/", _DIR_FLAGS)
    try:
        for folder in folders:
            below = os.open(folder, _DIR_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = below
        _regular_or_refuse(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode, path)
        fd = os.open(name, _FILE_FLAGS | os.O_NOFOLLOW, dir_fd=directory)
    finally:
        os.close(directory)
    return _fdopen_regular(fd, path)
