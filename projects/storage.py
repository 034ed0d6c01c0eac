"""One storage layer for every file Trapwise makes: crops, data files and exports.

Three kinds of stored file, each a Django storage:

``crops``    the crop JPEGs (``Crop.file`` is a name in it);
``data``     embedding vectors and FAISS indexes, embedding checkpoints, backbone-feature
             caches, classifier files and their cross-validation files (names relative to the
             old ``TRAPWISE_DATA_DIR``, as stored in ``EmbeddingVersion.directory``,
             ``ClassifierVersion.path``...);
``exports``  export files built by export jobs.

With ``TRAPWISE_STORAGE=local`` (the embedded default) they are folders on this machine:
``MEDIA_ROOT``, ``TRAPWISE_DATA_DIR`` and ``TRAPWISE_DATA_DIR/exports``, read and written in place.
With ``TRAPWISE_STORAGE=s3`` they are prefixes (``media/``, ``data/``, ``exports/``) of one
S3-compatible bucket through django-storages' S3 backend (``settings.STORAGES``), and web and
workers share no disk.

Contract of names: a data file is immutable once written. A new version of anything is written
under a new name (a new version folder, a new ``crops-N-<hex>`` folder), never over an old one.
That is what makes the worker-side cache safe: ``stored_local`` downloads a remote file once into
``TRAPWISE_CACHE_DIR/<kind>/<name>`` and later calls read the cached copy without asking the
store. Writers use ``stored_write`` / ``stored_folder_write``: they write to a private local
path, then publish it under its final name in one step (an atomic rename locally, an upload
remotely), so no reader ever sees half a file. The cache is capped by
``TRAPWISE_CACHE_MAX_BYTES`` and trimmed least recently used first (``projects.storage_cache``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from projects.storage_cache import MARKER, cache_added, cache_mark_folder, cache_touch_file

__all__ = [
    "StorageKind",
    "stored_delete",
    "stored_exists",
    "stored_folder_local",
    "stored_folder_write",
    "stored_is_local",
    "stored_list",
    "stored_local",
    "stored_local_root",
    "stored_open",
    "stored_put",
    "stored_size",
    "stored_url",
    "stored_write",
    "storage_get",
]

StorageKind = Literal["crops", "data", "exports"]
KINDS: tuple[StorageKind, ...] = ("crops", "data", "exports")


def stored_is_local() -> bool:
    """True when every kind is a folder on this machine (``TRAPWISE_STORAGE=local``)."""
    return settings.TRAPWISE_STORAGE == "local"


def _local_root(kind: StorageKind) -> Path:
    if kind == "crops":
        return Path(settings.MEDIA_ROOT)
    if kind == "data":
        return Path(settings.TRAPWISE_DATA_DIR)
    return Path(settings.TRAPWISE_DATA_DIR) / "exports"


def stored_local_root(*, kind: StorageKind) -> Path:
    """The folder that holds ``kind``'s files on this machine, for code that must confine or
    hand a path to a front server (``X-Accel-Redirect``). Local store only: RuntimeError with
    a remote one, where no such folder exists."""
    if not stored_is_local():
        raise RuntimeError(f"the {kind} store is remote: there is no local folder")
    return _local_root(kind)


def storage_get(kind: StorageKind) -> Storage:
    """The Django storage of ``kind``.

    Locally a ``FileSystemStorage`` over the current settings' folder (tests move the folders
    per test, so it is built on each call: cheap, no I/O); remotely the configured alias of
    ``settings.STORAGES`` (one client per process, reused).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown storage kind {kind!r}; expected one of {', '.join(KINDS)}")
    if stored_is_local():
        return FileSystemStorage(location=_local_root(kind))
    return storages[kind]


def _clean(name: str) -> str:
    """``name`` as a relative POSIX name; ValueError for absolute names or ``..``."""
    text = str(name).replace(os.sep, "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"not a stored file name: {name!r}")
    return pure.as_posix()


def _cache_path(kind: StorageKind, name: str) -> Path:
    """Where a worker caches the single file ``name``."""
    return Path(settings.TRAPWISE_CACHE_DIR) / kind / _clean(name)


def _cache_folder_path(kind: StorageKind, name: str) -> Path:
    """Where a worker caches the whole folder ``name``: a namespace of its own, so that a file
    of the folder cached alone (``stored_local``) never passes for the complete folder."""
    return Path(settings.TRAPWISE_CACHE_DIR) / f"{kind}-folders" / _clean(name)


def stored_exists(*, kind: StorageKind, name: str) -> bool:
    return storage_get(kind).exists(_clean(name))


def stored_size(*, kind: StorageKind, name: str) -> int:
    return storage_get(kind).size(_clean(name))


def stored_open(*, kind: StorageKind, name: str) -> IO[bytes]:
    """The stored file opened for reading (remotely: streamed, never downloaded whole first).

    FileNotFoundError when there is no such file.
    """
    name = _clean(name)
    storage = storage_get(kind)
    if stored_is_local():
        return open(storage.path(name), "rb")  # noqa: SIM115 - the caller closes it
    if not storage.exists(name):
        raise FileNotFoundError(f"{kind}/{name}")
    return storage.open(name, "rb")  # type: ignore[return-value]


def stored_local(*, kind: StorageKind, name: str) -> Path:
    """A path on this machine holding the stored file's bytes, for code that needs a path
    (``np.load(mmap_mode=...)``, ``faiss.read_index``, ``torch.load``).

    Locally the file itself. Remotely a copy in the worker's cache, downloaded on first use to a
    temporary name and renamed into place (names are immutable, so a cached copy never goes
    stale). FileNotFoundError when there is no such file.
    """
    name = _clean(name)
    if stored_is_local():
        path = Path(storage_get(kind).path(name))
        if not path.is_file():
            raise FileNotFoundError(str(path))
        return path
    target = _cache_path(kind, name)
    if target.is_file() and cache_touch_file(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        with stored_open(kind=kind, name=name) as source, open(part, "wb") as sink:
            shutil.copyfileobj(source, sink, length=1 << 20)
        size = part.stat().st_size
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    cache_added(size)
    return target


def stored_list(*, kind: StorageKind, prefix: str) -> list[str]:
    """Names of every file under the folder ``prefix`` (recursively), relative to ``prefix``,
    sorted. Empty when there is no such folder."""
    prefix = _clean(prefix)
    storage = storage_get(kind)
    found: list[str] = []

    def walk(folder: str, relative: str) -> None:
        try:
            dirs, files = storage.listdir(folder)
        except FileNotFoundError:
            return
        found.extend(f"{relative}{file}" for file in files)
        for sub in dirs:
            walk(f"{folder}/{sub}", f"{relative}{sub}/")

    walk(prefix, "")
    return sorted(found)


def stored_folder_local(*, kind: StorageKind, name: str) -> Path:
    """A folder on this machine holding every file under the stored folder ``name``.

    Locally the folder itself. Remotely a cached copy, downloaded whole into a temporary folder
    and renamed into place, so a cached folder is always complete. FileNotFoundError when the
    stored folder holds no file.
    """
    name = _clean(name)
    if stored_is_local():
        path = Path(storage_get(kind).path(name))
        if not path.is_dir():
            raise FileNotFoundError(str(path))
        return path
    target = _cache_folder_path(kind, name)
    if target.is_dir() and cache_mark_folder(target):
        return target
    files = stored_list(kind=kind, prefix=name)
    if not files:
        raise FileNotFoundError(f"{kind}/{name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    size = 0
    try:
        for file in files:
            local = part / file
            local.parent.mkdir(parents=True, exist_ok=True)
            with stored_open(kind=kind, name=f"{name}/{file}") as source, open(local, "wb") as sink:
                shutil.copyfileobj(source, sink, length=1 << 20)
            size += local.stat().st_size
        (part / MARKER).touch()  # inside before the rename: a cached folder is always an entry
        try:
            os.rename(part, target)
        except OSError:
            if not target.is_dir():  # another process won the race with the same bytes
                raise
    finally:
        shutil.rmtree(part, ignore_errors=True)
    cache_added(size)
    return target


def _publish_file(*, kind: StorageKind, name: str, local: Path) -> None:
    """Publish the finished local file ``local`` as ``name`` (consumes ``local``)."""
    storage = storage_get(kind)
    if stored_is_local():
        final = Path(storage.path(name))
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, final)
        return
    with open(local, "rb") as handle:
        # S3 backends are configured with file_overwrite: the name stays the name asked for.
        saved = storage.save(name, File(handle, name=PurePosixPath(name).name))
    if saved != name:
        raise RuntimeError(f"{kind} storage renamed {name!r} to {saved!r}")
    if kind == "exports":
        # Built once and downloaded from the store, never read back by this worker: a cached
        # copy would only fill its disk (the scratch folder holding ``local`` is removed).
        return
    cached = _cache_path(kind, name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    size = local.stat().st_size
    os.replace(local, cached)
    cache_added(size)


def _scratch_dir(kind: StorageKind, name: str) -> Path:
    """A private folder on the same file system as the file's final place (local) or cache."""
    if stored_is_local():
        parent = Path(storage_get(kind).path(name)).parent
    else:
        parent = _cache_path(kind, name).parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".writing-", dir=parent))


@contextmanager
def stored_write(*, kind: StorageKind, name: str) -> Iterator[Path]:
    """Yield a local path to write the file to; on a clean exit it is published as ``name``.

    On an exception nothing is published and the partial file is removed.
    """
    name = _clean(name)
    scratch = _scratch_dir(kind, name)
    try:
        local = scratch / PurePosixPath(name).name
        yield local
        if not local.is_file():
            raise FileNotFoundError(f"nothing was written to {local}")
        _publish_file(kind=kind, name=name, local=local)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stored_put(*, kind: StorageKind, name: str, content: bytes) -> None:
    """Publish ``content`` as the file ``name`` (replacing any file of that name)."""
    with stored_write(kind=kind, name=name) as local:
        local.write_bytes(content)


@contextmanager
def stored_folder_write(*, kind: StorageKind, name: str) -> Iterator[Path]:
    """Yield an empty local folder; on a clean exit every file in it is published under the
    stored folder ``name``. The folder must not exist yet (a new version is a new folder).

    Locally the whole folder is renamed into place at once; remotely each file is uploaded and
    the folder then moved into the cache.
    """
    name = _clean(name)
    scratch = _scratch_dir(kind, name)
    try:
        local = scratch / "folder"
        local.mkdir()
        yield local
        if stored_is_local():
            final = Path(storage_get(kind).path(name))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(local, final)  # fails if the folder exists: names are never reused
        else:
            storage = storage_get(kind)
            files = sorted(p for p in local.rglob("*") if p.is_file())
            for path in files:
                relative = path.relative_to(local).as_posix()
                with open(path, "rb") as handle:
                    storage.save(f"{name}/{relative}", File(handle, name=path.name))
            cached = _cache_folder_path(kind, name)
            if not cached.exists():
                cached.parent.mkdir(parents=True, exist_ok=True)
                size = sum(path.stat().st_size for path in files)
                (local / MARKER).touch()
                os.rename(local, cached)
                cache_added(size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stored_delete(*, kind: StorageKind, name: str) -> None:
    """Delete the file or the whole folder ``name`` (store and local cache); no error when
    it is missing."""
    name = _clean(name)
    storage = storage_get(kind)
    if stored_is_local():
        path = Path(storage.path(name))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    files = stored_list(kind=kind, prefix=name)
    for file in files:
        storage.delete(f"{name}/{file}")
    if not files:
        storage.delete(name)
    shutil.rmtree(_cache_folder_path(kind, name), ignore_errors=True)
    cached = _cache_path(kind, name)
    if cached.is_dir():
        shutil.rmtree(cached, ignore_errors=True)
    else:
        cached.unlink(missing_ok=True)


def stored_url(*, kind: StorageKind, name: str, download_name: str | None = None) -> str | None:
    """A short-lived signed URL that serves the file straight from the store, or None where
    the store has none (the local file system): the caller then streams or redirects
    internally. Expiry: ``TRAPWISE_STORAGE_URL_EXPIRY`` seconds.
    """
    if stored_is_local():
        return None
    parameters = {}
    if download_name:
        parameters["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
    storage = storage_get(kind)
    return storage.url(  # type: ignore[call-arg]
        _clean(name), parameters=parameters or None, expire=settings.TRAPWISE_STORAGE_URL_EXPIRY
    )
