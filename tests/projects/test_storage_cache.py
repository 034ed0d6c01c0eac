"""The worker cache's size cap: LRU eviction, grace period, leftovers, automatic trims."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from projects import storage_cache
from projects.storage import stored_folder_local, stored_folder_write, stored_local, stored_put
from projects.storage_cache import MARKER, cache_trim
from tests.s3 import S3Storage

HOUR = 3600.0


def _age(path: Path, seconds: float) -> None:
    """Make ``path`` look last used ``seconds`` ago."""
    when = time.time() - seconds
    os.utime(path, (when, when))


def _cached_files(cache: Path, count: int, *, size: int = 100) -> list[Path]:
    """``count`` crops of ``size`` bytes, cached, the first one the least recently used."""
    paths = []
    for index in range(count):
        stored_put(kind="crops", name=f"c/{index}.jpg", content=bytes([index]) * size)
        path = stored_local(kind="crops", name=f"c/{index}.jpg")
        _age(path, (count - index) * HOUR)
        paths.append(path)
    return paths


@pytest.fixture(autouse=True)
def _fresh_auto_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_cache, "_auto", storage_cache._AutoTrim())


def test_over_the_cap_the_least_recently_used_go_first(
    s3_storage: S3Storage, settings: Any
) -> None:
    settings.TRAPWISE_CACHE_MAX_BYTES = 0
    paths = _cached_files(s3_storage.cache, 10)
    # A hit refreshes the oldest one: it is now the most recently used.
    stored_local(kind="crops", name="c/0.jpg")
    _age(paths[0], 0.5 * HOUR)
    result = cache_trim(max_bytes=500)
    # 1000 bytes held, goal 450: the six least recently used after the hit (1..6) go.
    assert result.total_bytes == 1000
    assert (result.evicted, result.evicted_bytes) == (6, 600)
    assert [path.exists() for path in paths] == [True] + [False] * 6 + [True] * 3
    # Brute force: what is left is the most recently used within 90 % of the cap.
    left = sorted((p for p in paths if p.exists()), key=lambda p: -p.stat().st_mtime)
    assert sum(p.stat().st_size for p in left) <= 450


def test_a_hit_records_its_use(s3_storage: S3Storage) -> None:
    (path,) = _cached_files(s3_storage.cache, 1)
    before = path.stat().st_mtime
    stored_local(kind="crops", name="c/0.jpg")
    assert path.stat().st_mtime > before + HOUR / 2


def test_an_evicted_file_is_fetched_again(s3_storage: S3Storage) -> None:
    paths = _cached_files(s3_storage.cache, 3)
    cache_trim(max_bytes=150)
    assert not paths[0].exists()
    assert stored_local(kind="crops", name="c/0.jpg").read_bytes() == bytes([0]) * 100


def test_a_folder_is_evicted_whole_and_downloaded_again_complete(
    s3_storage: S3Storage, settings: Any
) -> None:
    with stored_folder_write(kind="data", name="v1/vectors") as folder:
        (folder / "ids.npy").write_bytes(b"i" * 300)
        (folder / "sub").mkdir()
        (folder / "sub" / "vectors.npy").write_bytes(b"v" * 300)
    cached = stored_folder_local(kind="data", name="v1/vectors")
    assert (cached / MARKER).is_file()
    _age(cached / MARKER, 2 * HOUR)
    # Its files look recent: only the marker counts, a folder's file is never an entry alone.
    (newer,) = _cached_files(s3_storage.cache, 1)
    result = cache_trim(max_bytes=500)
    assert (result.evicted, result.evicted_bytes) == (1, 600)
    assert not cached.exists() and newer.exists()
    assert [p.name for p in cached.parent.iterdir()] == []  # no trash left behind
    again = stored_folder_local(kind="data", name="v1/vectors")
    assert (again / "ids.npy").read_bytes() == b"i" * 300
    assert (again / "sub" / "vectors.npy").read_bytes() == b"v" * 300


def test_a_folder_cached_before_markers_gets_one_on_its_next_hit(s3_storage: S3Storage) -> None:
    with stored_folder_write(kind="data", name="v1/vectors") as folder:
        (folder / "ids.npy").write_bytes(b"i" * 300)
    cached = stored_folder_local(kind="data", name="v1/vectors")
    (cached / MARKER).unlink()
    _age(cached / "ids.npy", 2 * HOUR)
    # Unmarked, it is no entry: its files are never evicted one by one.
    assert cache_trim(max_bytes=1).evicted == 0
    assert (cached / "ids.npy").is_file()
    assert stored_folder_local(kind="data", name="v1/vectors") == cached
    assert (cached / MARKER).is_file()
    _age(cached / MARKER, 2 * HOUR)
    assert cache_trim(max_bytes=1).evicted == 1
    assert not cached.exists()


def test_entries_used_within_the_grace_period_stay_over_the_cap(s3_storage: S3Storage) -> None:
    paths = _cached_files(s3_storage.cache, 4)
    for path in paths[2:]:
        _age(path, storage_cache.GRACE_SECONDS - 60)
    result = cache_trim(max_bytes=100)
    assert [path.exists() for path in paths] == [False, False, True, True]
    assert result.evicted == 2


def test_stale_leftovers_go_and_fresh_ones_stay(s3_storage: S3Storage) -> None:
    _cached_files(s3_storage.cache, 1)
    crops = s3_storage.cache / "crops" / "c"
    stale_part, fresh_part = crops / ".0.jpg.aa.part", crops / ".1.jpg.bb.part"
    stale_scratch, fresh_scratch = crops / ".writing-old", crops / ".writing-new"
    folders = s3_storage.cache / "data-folders" / "v1"
    stale_temp, fresh_temp = folders / ".vectors.old", folders / ".vectors.new"
    for path in (stale_part, fresh_part):
        path.write_bytes(b"p")
    for folder in (stale_scratch, fresh_scratch, stale_temp, fresh_temp):
        folder.mkdir(parents=True)
        (folder / "half.npy").write_bytes(b"h")
    day = storage_cache.LEFTOVER_SECONDS
    for path in (stale_part, stale_scratch / "half.npy", stale_scratch, stale_temp / "half.npy"):
        _age(path, day + HOUR)
    _age(stale_temp, day + HOUR)
    result = cache_trim(max_bytes=0)
    assert result.leftovers == 3 and result.evicted == 0
    assert not stale_part.exists() and not stale_scratch.exists() and not stale_temp.exists()
    assert fresh_part.exists() and fresh_scratch.exists() and fresh_temp.exists()
    assert (crops / "0.jpg").exists()


def test_cap_zero_never_evicts(s3_storage: S3Storage, settings: Any) -> None:
    settings.TRAPWISE_CACHE_MAX_BYTES = 0
    paths = _cached_files(s3_storage.cache, 5)
    assert cache_trim().evicted == 0
    assert all(path.exists() for path in paths)


def test_an_entry_already_gone_is_skipped(s3_storage: S3Storage) -> None:
    paths = _cached_files(s3_storage.cache, 3)
    found = storage_cache.TrimResult()
    entries = list(storage_cache._scan(s3_storage.cache, now=time.time(), result=found))
    paths[0].unlink()  # another trim got there first
    assert not storage_cache._evict(next(e for e in entries if e.path == paths[0]), now=time.time())


def test_the_cache_trims_itself_after_a_twentieth_of_the_cap(
    s3_storage: S3Storage, settings: Any
) -> None:
    settings.TRAPWISE_CACHE_MAX_BYTES = 0
    paths = _cached_files(s3_storage.cache, 10)  # 1000 bytes, every one an hour old or more
    settings.TRAPWISE_CACHE_MAX_BYTES = 400  # a trim now would keep 360 bytes
    stored_put(kind="crops", name="d/1.jpg", content=b"x" * 10)
    stored_local(kind="crops", name="d/1.jpg")  # 10 bytes: under a twentieth (20): no trim
    assert all(path.exists() for path in paths)
    stored_put(kind="crops", name="d/2.jpg", content=b"y" * 10)  # 20 bytes added: a trim
    assert sum(path.exists() for path in paths) == 3
    # At most once a minute: more downloads right away trim nothing.
    _cached_files(s3_storage.cache, 10)
    assert sum(path.exists() for path in paths) == 10


def test_the_management_command_trims(s3_storage: S3Storage, settings: Any) -> None:
    settings.TRAPWISE_CACHE_MAX_BYTES = 0
    paths = _cached_files(s3_storage.cache, 4)
    settings.TRAPWISE_CACHE_MAX_BYTES = 200
    call_command("cache_trim")
    # 400 bytes held, goal 180: the three least recently used go.
    assert [path.exists() for path in paths] == [False, False, False, True]
    call_command("cache_trim", "--max-bytes", "1")
    assert not any(path.exists() for path in paths)


def test_a_file_evicted_between_check_and_touch_is_fetched_again(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = _cached_files(s3_storage.cache, 1)
    touch = storage_cache.cache_touch_file

    def evicted_first(target: Path) -> bool:
        target.unlink()  # a trim in another process won the race
        return touch(target)

    monkeypatch.setattr("projects.storage.cache_touch_file", evicted_first)
    assert stored_local(kind="crops", name="c/0.jpg") == path
    assert path.read_bytes() == bytes([0]) * 100
