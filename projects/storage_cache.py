"""Size cap of a worker's cache of remote stored files (``TRAPWISE_CACHE_DIR``), LRU eviction.

Entries: single files under ``<cache>/<kind>/`` (``stored_local``) and whole folders under
``<cache>/<kind>-folders/`` (``stored_folder_local``), a folder being one entry marked by the
file ``MARKER`` inside it; a file of a cached folder is never evicted alone. Last use: a file's
mtime, a folder's marker's mtime, both touched on each cache hit (``cache_touch_file``,
``cache_mark_folder``).

``cache_trim`` deletes the least recently used entries while the cache holds more than
``TRAPWISE_CACHE_MAX_BYTES``, down to ``TRIM_TO`` of it, but never an entry used within
``GRACE_SECONDS`` (a task may hold a path ``stored_local`` just returned): under a larger
working set the cap is soft. It also removes leftovers of killed processes (``.part`` files,
``.writing-*`` scratch folders, half-downloaded temporary folders) older than
``LEFTOVER_SECONDS``. Several processes may trim at once: an entry already gone is skipped.
A folder is first renamed to a hidden trash name, then removed, so no reader ever takes a
half-deleted folder for a cached one.

A process trims by itself (``cache_added``) once the bytes it put into the cache since its last
trim pass a twentieth of the cap, at most once a minute: the scan is kept off the per-hit path.
Local storage (``TRAPWISE_STORAGE=local``) has no cache, so none of this runs there.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

MARKER = ".trapwise-cached"
TRASH_PREFIX = ".trash-"
GRACE_SECONDS = 10 * 60
LEFTOVER_SECONDS = 24 * 60 * 60
TRIM_TO = 0.9
AUTO_TRIM_FRACTION = 20  # trim after a twentieth of the cap was added to the cache
AUTO_TRIM_MIN_SECONDS = 60.0


def cache_touch_file(path: Path) -> bool:
    """Record a use of the cached file ``path`` (its mtime); False if it is gone (evicted since
    the caller found it: it must be fetched again). Once touched, no trim deletes it for
    ``GRACE_SECONDS``."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def cache_mark_folder(folder: Path) -> bool:
    """Write or touch the marker of the cached folder ``folder``: records its last use, and makes
    a folder cached before markers existed (renamed into place whole, so complete) an entry.
    False if the folder is gone (evicted since the caller found it)."""
    try:
        (folder / MARKER).touch()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class _Entry:
    path: Path
    size: int
    used: float  # mtime of the file or of the folder's marker
    folder: bool


@dataclass
class TrimResult:
    """What one ``cache_trim`` did: bytes held before, entries and bytes evicted, leftovers
    removed."""

    total_bytes: int = 0
    evicted: int = 0
    evicted_bytes: int = 0
    leftovers: int = 0


def _tree_size_and_newest(folder: Path) -> tuple[int, float]:
    size, newest = 0, 0.0
    for root, _dirs, files in os.walk(folder):
        try:
            newest = max(newest, os.stat(root).st_mtime)
        except FileNotFoundError:
            continue
        for file in files:
            try:
                stat = os.stat(os.path.join(root, file))
            except FileNotFoundError:
                continue
            size += stat.st_size
            newest = max(newest, stat.st_mtime)
    return size, newest


def _remove_tree(path: Path) -> bool:
    """Rename ``path`` to a hidden trash name beside it, then remove it; False if already gone."""
    trash = path.with_name(f"{TRASH_PREFIX}{uuid.uuid4().hex}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _is_leftover_folder(name: str) -> bool:
    """Scratch folders of ``stored_write`` (``.writing-*``), temporary download folders of
    ``stored_folder_local`` (``.<name>.<random>``) and trash of an interrupted trim."""
    return name.startswith(".")


def _scan(cache: Path, *, now: float, result: TrimResult) -> Iterator[_Entry]:
    """Every entry of the cache; stale leftovers found on the way are removed."""
    if not cache.is_dir():
        return
    for top in sorted(cache.iterdir()):
        if not top.is_dir():
            continue
        folders = top.name.endswith("-folders")
        for root, dirs, files in os.walk(top):
            base = Path(root)
            if folders and MARKER in files:
                size, _ = _tree_size_and_newest(base)
                try:
                    used = os.stat(base / MARKER).st_mtime
                except FileNotFoundError:
                    used = now
                dirs[:] = []
                yield _Entry(base, size, used, folder=True)
                continue
            for name in list(dirs):
                if not _is_leftover_folder(name):
                    continue
                dirs.remove(name)
                path = base / name
                _size, newest = _tree_size_and_newest(path)
                if name.startswith(TRASH_PREFIX) or now - newest > LEFTOVER_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
                    result.leftovers += 1
            if folders:
                continue  # a loose file of an unmarked folder is not an entry of its own
            for name in files:
                path = base / name
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                if name.startswith(".") and name.endswith(".part"):
                    if now - stat.st_mtime > LEFTOVER_SECONDS:
                        path.unlink(missing_ok=True)
                        result.leftovers += 1
                    continue
                yield _Entry(path, stat.st_size, stat.st_mtime, folder=False)


def _evict(entry: _Entry, *, now: float) -> bool:
    """Delete ``entry`` unless it was used since the scan or is gone; True if deleted."""
    try:
        used = os.stat(entry.path / MARKER if entry.folder else entry.path).st_mtime
    except FileNotFoundError:
        return False
    if used > entry.used or now - used < GRACE_SECONDS:
        return False
    if entry.folder:
        return _remove_tree(entry.path)
    try:
        entry.path.unlink()
    except FileNotFoundError:
        return False
    return True


def cache_trim(*, max_bytes: int | None = None) -> TrimResult:
    """Trim the worker cache to its cap (``max_bytes``, default ``TRAPWISE_CACHE_MAX_BYTES``;
    0: no cap, only leftovers are removed). Least recently used entries go first, down to
    ``TRIM_TO`` of the cap, none used within ``GRACE_SECONDS``. Safe to run concurrently."""
    cap = settings.TRAPWISE_CACHE_MAX_BYTES if max_bytes is None else max_bytes
    now = time.time()
    result = TrimResult()
    entries = list(_scan(Path(settings.TRAPWISE_CACHE_DIR), now=now, result=result))
    result.total_bytes = total = sum(entry.size for entry in entries)
    if cap <= 0 or total <= cap:
        return result
    goal = int(cap * TRIM_TO)
    for entry in sorted(entries, key=lambda entry: entry.used):
        if total <= goal or now - entry.used < GRACE_SECONDS:
            break  # sorted by last use: every later entry is more recent still
        if _evict(entry, now=now):
            total -= entry.size
            result.evicted += 1
            result.evicted_bytes += entry.size
    return result


class _AutoTrim:
    """Bytes this process put into the cache since its last trim, and when that was."""

    def __init__(self) -> None:
        self.added = 0
        self.last = float("-inf")
        self.lock = threading.Lock()


_auto = _AutoTrim()


def cache_added(nbytes: int) -> None:
    """Count ``nbytes`` just put into the cache by this process; trim once the count passes a
    twentieth of the cap (at most once a minute). A failed trim is logged, never raised: the
    caller's file is in place."""
    cap = settings.TRAPWISE_CACHE_MAX_BYTES
    if cap <= 0:
        return
    with _auto.lock:
        _auto.added += nbytes
        now = time.monotonic()
        if _auto.added < cap / AUTO_TRIM_FRACTION or now - _auto.last < AUTO_TRIM_MIN_SECONDS:
            return
        _auto.added = 0
        _auto.last = now
    try:
        result = cache_trim(max_bytes=cap)
    except OSError:
        logger.exception("cache trim failed")
        return
    if result.evicted or result.leftovers:
        logger.info(
            "cache trim: %d entries (%d bytes) evicted, %d leftovers removed",
            result.evicted,
            result.evicted_bytes,
            result.leftovers,
        )
