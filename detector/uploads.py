"""Storing a browser upload (image files and zips of them) in a folder the import then reads.

Django-free: plain paths in, a dataclass out. A zip is checked as a whole before a byte of it is
extracted: a member whose name leads out of the folder (absolute, ``..``, a drive letter), a
symbolic link, more than ``max_members`` members or more than ``max_bytes`` announced refuse the
whole upload (``UploadRefused``), and the caller deletes what was stored. The bytes really
extracted are counted too, as a zip's announced sizes may lie. Files that are not images are
left out and listed as problems, as are duplicates (the same bytes twice in one upload).
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from projects.import_roots import IMAGE_SUFFIXES

_CHUNK = 1 << 20


class UploadRefused(ValueError):
    """An upload refused as a whole; the message says why. The caller deletes its folder."""


@dataclass(frozen=True)
class UploadLimits:
    """How much one upload may store: bytes in all (files and extracted members together) and
    members per zip."""

    max_bytes: int
    max_members: int = 100_000


@dataclass
class StoredUpload:
    """What ``upload_store`` kept: ``images`` files under ``folder``, and what it left out as
    (file name, reason) pairs."""

    folder: Path
    images: int = 0
    bytes: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def _name_clean(name: str) -> str:
    """A file name as a browser sent it, reduced to its last part without control characters."""
    last = PurePosixPath(name.replace("\\", "/")).name
    return "".join(ch for ch in last if unicodedata.category(ch) not in ("Cc", "Cs")).strip()


def _member_parts(name: str) -> tuple[str, ...] | None:
    """A zip member's path parts, or None when it leads outside the folder it is extracted to:
    absolute, with ``..``, a Windows drive or a backslash, or control characters."""
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return None
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return None
    parts = PurePosixPath(name).parts
    if not parts or ".." in parts:
        return None
    return tuple(p for p in parts if p != ".")


def _free_path(folder: Path, parts: Sequence[str]) -> Path:
    """``folder/parts``, with -2, -3 ... before the suffix when that file exists already."""
    target = folder.joinpath(*parts)
    number = 1
    while target.exists():
        number += 1
        target = target.with_name(f"{Path(parts[-1]).stem}-{number}{Path(parts[-1]).suffix}")
    return target


class _Writer:
    """Counts what one upload writes against its limits and spots repeated content."""

    def __init__(self, stored: StoredUpload, limits: UploadLimits) -> None:
        self.stored, self.limits = stored, limits
        self.seen: dict[str, str] = {}

    def budget_left(self) -> int:
        return self.limits.max_bytes - self.stored.bytes

    def copy(self, source: IO[bytes], target: Path, *, shown: str, limit: int) -> None:
        """Stream ``source`` to ``target`` (a new file); UploadRefused past ``limit`` bytes or
        past the upload's budget. A duplicate of an earlier file is removed and listed."""
        digest = hashlib.sha256()
        written = 0
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > limit or written > self.budget_left():
                    raise UploadRefused(
                        f"{shown} is larger than it says or than the upload may be "
                        f"({self.limits.max_bytes} bytes in all); nothing imported"
                    )
                digest.update(chunk)
                out.write(chunk)
        self.keep(target, shown=shown, digest=digest.hexdigest(), size=written)

    def keep(self, target: Path, *, shown: str, digest: str, size: int) -> None:
        first = self.seen.get(digest)
        if first is not None:
            target.unlink()
            self.stored.problems.append((shown, f"duplicate of {first}: left out"))
            return
        self.seen[digest] = shown
        self.stored.images += 1
        self.stored.bytes += size


def _zip_check(archive: zipfile.ZipFile, *, shown: str, limits: UploadLimits, left: int) -> None:
    """Refuse the zip (UploadRefused) for any member that leads out, any link, too many
    members or more announced bytes than ``left``; reads no member."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise UploadRefused(
            f"{shown} has {len(members)} members, more than {limits.max_members}; nothing imported"
        )
    announced = 0
    for info in members:
        if _member_parts(info.filename) is None:
            raise UploadRefused(
                f"{shown}: member {info.filename[:200]!r} leads outside the upload folder; "
                "nothing imported"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UploadRefused(
                f"{shown}: member {info.filename[:200]!r} is a symbolic link; nothing imported"
            )
        announced += info.file_size
    if announced > left:
        raise UploadRefused(
            f"{shown} would unpack to {announced} bytes, more than the {left} an upload may "
            "still take; nothing imported"
        )


def _zip_extract(source: Path, *, shown: str, writer: _Writer, folder: Path) -> None:
    """Extract the images of the zip at ``source`` under ``folder/<zip name>/``."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRefused(f"{shown} is not a readable zip ({exc}); nothing imported") from exc
    with archive:
        _zip_check(archive, shown=shown, limits=writer.limits, left=writer.budget_left())
        base = folder / (Path(shown).stem or "zip")
        for info in archive.infolist():
            parts = _member_parts(info.filename)
            if info.is_dir() or not parts:
                continue
            member = f"{shown}/{'/'.join(parts)}"
            if Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                writer.stored.problems.append((member, "not an image (jpg, jpeg, png): left out"))
                continue
            if info.flag_bits & 0x1:
                writer.stored.problems.append((member, "encrypted: left out"))
                continue
            target = _free_path(base, parts)
            if not target.resolve().is_relative_to(folder.resolve()):
                raise UploadRefused(f"{member} leads outside the upload folder; nothing imported")
            try:
                with archive.open(info) as data:
                    writer.copy(data, target, shown=member, limit=info.file_size)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                target.unlink(missing_ok=True)
                writer.stored.problems.append((member, f"cannot be unpacked: {exc}"))


def upload_store(
    *, folder: Path, files: Sequence[tuple[str, Path]], limits: UploadLimits
) -> StoredUpload:
    """Keep the uploaded ``files`` ((name as sent, path of the received file)) under
    ``folder`` (made here; it must not exist): images as they are, zips unpacked into a
    subfolder named after them, anything else listed as a problem. The received files are
    moved or deleted.

    Raises:
        UploadRefused: a zip that leads out, holds links, is a bomb (members, bytes) or is not
        a zip, more bytes than ``limits.max_bytes``, or no image at all. The caller removes
        ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=False)
    stored = StoredUpload(folder=folder)
    writer = _Writer(stored, limits)
    for sent, received in files:
        name = _name_clean(sent)
        suffix = Path(name).suffix.lower()
        if suffix == ".zip":
            _zip_extract(received, shown=name, writer=writer, folder=folder)
            received.unlink(missing_ok=True)
        elif suffix in IMAGE_SUFFIXES:
            size = received.stat().st_size
            if size > writer.budget_left():
                raise UploadRefused(
                    f"the upload is larger than {limits.max_bytes} bytes; nothing imported"
                )
            target = _free_path(folder, [name])
            shutil.move(received, target)
            writer.keep(target, shown=name, digest=_file_digest(target), size=size)
        else:
            stored.problems.append((name or "(no name)", "not an image (jpg, jpeg, png) nor a zip"))
            received.unlink(missing_ok=True)
    if stored.images == 0:
        reasons = "; ".join(f"{n}: {r}" for n, r in stored.problems[:5])
        raise UploadRefused(f"the upload holds no image{f' ({reasons})' if reasons else ''}")
    return stored


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
