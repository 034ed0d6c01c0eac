"""Where imports may read from: ``TRAPWISE_IMPORT_ROOTS``, and the uploads folder.

Every file an import or a detections file reads is resolved (symbolic links and ``..`` followed)
and checked against the roots here, so that the web app and the commands obey one rule. Files
uploaded in the browser are stored under ``TRAPWISE_DATA_DIR/uploads`` (``upload_root``), which
counts as one more root whenever roots are set. ``import_folder_list`` is the browser's view
of the configured roots: it never leaves them and follows no link.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings

# What an import takes for an image (by suffix, any case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# The folder browser counts a subfolder's images up to this many ("10000+" beyond) ...
FOLDER_COUNT_CAP = 10_000
# ... and lists at most this many subfolders and metadata files of one folder.
FOLDER_LIST_MAX = 200


class FolderImportError(ValueError):
    """An import that cannot start (bad folder or metadata file). Nothing was changed."""


def import_path_check(*, path: Path, what: str) -> Path:
    """``path`` resolved (symlinks and ``..`` followed); FolderImportError when outside the roots.

    The roots are ``settings.TRAPWISE_IMPORT_ROOTS``; with none set every path is allowed (the
    import is a command-line tool that only server operators can run).
    """
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise FolderImportError(f"{what} {path} cannot be resolved: {exc}") from exc
    roots = import_roots_allowed()
    if roots and not any(resolved.is_relative_to(root) for root in roots):
        raise FolderImportError(
            f"{what} {path} (resolved: {resolved}) lies outside the allowed import roots "
            f"({os.pathsep.join(map(str, roots))}; see TRAPWISE_IMPORT_ROOTS); nothing imported"
        )
    return resolved


def image_read_roots(*, path: str, file_name: str) -> list[Path]:
    """The folders an imported image may be read from when it is served, for
    ``projects.safe_files.file_open_confined``: the folder it was imported from (``path``
    less ``file_name``), provided that folder still lies inside the import roots when
    ``TRAPWISE_IMPORT_ROOTS`` is set. Empty (nothing may be read) when it does not, or when
    the stored path and file name disagree, or when the image lies in a bucket
    (``s3://...``: never read from this machine's disk).
    """
    relative = PurePosixPath(file_name)
    if (
        path.startswith("s3://")
        or not file_name
        or relative.is_absolute()
        or ".." in relative.parts
        or not path.endswith(f"/{file_name}")
    ):
        return []
    folder = Path(path[: len(path) - len(file_name)])
    roots = import_roots_allowed()
    if roots:
        real = folder.resolve()
        if not any(real.is_relative_to(root) for root in roots):
            return []
    return [folder]


def upload_root() -> Path:
    """Where browser uploads are stored: ``TRAPWISE_DATA_DIR/uploads`` (one folder per project
    and batch below it). Only the web app writes there."""
    return Path(settings.TRAPWISE_DATA_DIR) / "uploads"


def import_roots_allowed() -> list[Path]:
    """The folders imports may read from, resolved: ``TRAPWISE_IMPORT_ROOTS`` and, when any is
    set, ``upload_root()``. Empty when none is set (every path is allowed)."""
    roots = [Path(root).resolve() for root in settings.TRAPWISE_IMPORT_ROOTS]
    return [*roots, upload_root().resolve()] if roots else []


@dataclass(frozen=True)
class FolderEntry:
    """A subfolder in the folder browser: its name, its path relative to the root, and how
    many images lie in it and below (``capped``: at least that many)."""

    name: str
    path: str
    images: int
    capped: bool


@dataclass(frozen=True)
class FolderListing:
    """One folder of a configured root, as the folder browser shows it."""

    roots: tuple[str, ...]  # every configured root, by index
    root: int
    path: str  # relative to the root, "" for the root itself
    absolute: Path
    parent: str | None  # the parent's relative path; None at the root
    folders: tuple[FolderEntry, ...]
    images_here: int  # images directly in this folder
    images_below: int  # in it and below, up to FOLDER_COUNT_CAP
    capped: bool
    metadata_files: tuple[str, ...]  # .json files directly here, relative to the root
    more: bool  # more subfolders or files than FOLDER_LIST_MAX were left out


def _relative_clean(path: str) -> PurePosixPath:
    """``path`` as relative parts; FolderImportError for an absolute one or one with ``..``."""
    relative = PurePosixPath(path.strip().strip("/")) if path.strip() else PurePosixPath()
    if path.strip().startswith("/") or ".." in relative.parts or "\x00" in path:
        raise FolderImportError(f"{path!r} is not a folder below an import root")
    return relative


def import_root_path(*, root: int, path: str) -> tuple[Path, Path]:
    """(root, target): the configured root number ``root`` and ``path`` below it, resolved.

    Raises FolderImportError (nothing read) when no roots are set, the number is not one of
    them, ``path`` is absolute or has ``..``, or the resolved target (links followed) lies
    outside that root.
    """
    roots = [Path(r).resolve() for r in settings.TRAPWISE_IMPORT_ROOTS]
    if not roots:
        raise FolderImportError(
            "no import roots are set: set TRAPWISE_IMPORT_ROOTS to the folders the web app may "
            "import from"
        )
    if not 0 <= root < len(roots):
        raise FolderImportError(f"there is no import root number {root}")
    base = roots[root]
    relative = _relative_clean(path)
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError) as exc:
        raise FolderImportError(f"{path!r} cannot be resolved: {exc}") from exc
    if not target.is_relative_to(base):
        raise FolderImportError(f"{path!r} leads outside the import root {base}")
    return base, target


def _images_below(folder: Path) -> tuple[int, bool]:
    """Images in ``folder`` and below, counting up to FOLDER_COUNT_CAP. Links (to files or
    folders) are neither counted nor followed, nor are hidden folders; unreadable ones are
    skipped."""
    count, pending = 0, [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink() or entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                count += 1
                if count >= FOLDER_COUNT_CAP:
                    return FOLDER_COUNT_CAP, True
    return count, False


def import_folder_list(*, root: int = 0, path: str = "") -> FolderListing:
    """The folder ``path`` of configured root number ``root``: its subfolders (with their image
    counts), its images and its .json files. Symbolic links are never listed nor followed, and
    the folder itself must resolve inside its root (``import_root_path``).

    Raises:
        FolderImportError: no roots set, a bad root number, a path outside the root, or not a
        folder.
    """
    base, target = import_root_path(root=root, path=path)
    if not target.is_dir():
        raise FolderImportError(f"{path!r} is not a folder in the import root {base}")
    folders: list[FolderEntry] = []
    metadata: list[str] = []
    images_here, more = 0, False
    try:
        entries = sorted(os.scandir(target), key=lambda e: e.name)
    except OSError as exc:
        raise FolderImportError(f"{path!r} cannot be read: {exc}") from exc
    for entry in entries:
        if entry.name.startswith(".") or entry.is_symlink():
            continue  # a link may lead out of the roots: neither listed nor followed
        relative = (target / entry.name).relative_to(base).as_posix()
        if entry.is_dir(follow_symlinks=False):
            if len(folders) >= FOLDER_LIST_MAX:
                more = True
                continue
            count, capped = _images_below(Path(entry.path))
            folders.append(FolderEntry(entry.name, relative, count, capped))
        elif entry.is_file(follow_symlinks=False):
            suffix = Path(entry.name).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images_here += 1
            elif suffix == ".json":
                if len(metadata) >= FOLDER_LIST_MAX:
                    more = True
                    continue
                metadata.append(relative)
    below = images_here + sum(f.images for f in folders)
    relative_here = target.relative_to(base).as_posix()
    relative_here = "" if relative_here == "." else relative_here
    parent = PurePosixPath(relative_here).parent.as_posix()
    return FolderListing(
        roots=tuple(str(r) for r in settings.TRAPWISE_IMPORT_ROOTS),
        root=root,
        path=relative_here,
        absolute=target,
        parent=None if target == base else ("" if parent == "." else parent),
        folders=tuple(folders),
        images_here=images_here,
        images_below=min(below, FOLDER_COUNT_CAP),
        capped=below >= FOLDER_COUNT_CAP or any(f.capped for f in folders),
        metadata_files=tuple(metadata),
        more=more,
    )
