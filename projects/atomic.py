"""Atomic file replacement: the one writer every app uses for files that others read.

Readers (web requests, workers) must never observe a half-written file, and a crash or power
loss must leave either the old file or the new one, never an empty one. So a writer writes to
a temporary file in the destination folder, which is fsync-ed and then ``os.replace``-d over
the final name (atomic on POSIX within one filesystem); the folder is fsync-ed last so that
the rename itself survives a crash.

Django-free (the ground app's package imports nothing), so the ML modules may use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]

# mkstemp creates files as 0600; other processes (e.g. the web server running as
# another user) must be able to read embeddings, indexes and models, so widen to 0644.
_FINAL_MODE = 0o644


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success move it over ``final``.

    The caller writes the complete file to the yielded path (the file exists, empty, so it
    may be opened or replaced by name). On normal exit the file is fsync-ed, made readable
    by all (0644) and atomically renamed to ``final``, then the folder is fsync-ed. On any
    exception the temporary file is removed and ``final`` is left untouched. The parent
    folder of ``final`` must already exist.
    """
    final = Path(final)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, _FINAL_MODE)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def _fsync_file(path: Path) -> None:
    """Flush ``path`` to stable storage so the rename never exposes an empty file."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    """Persist the directory entry created by ``os.replace`` (best effort, POSIX only)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms that cannot open directories; the rename itself is done.
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
