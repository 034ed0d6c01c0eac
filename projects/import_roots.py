"""Where imports may read from: ``TRAPWISE_IMPORT_ROOTS``.

Every file an import or a detections file reads is resolved (symbolic links and ``..`` followed)
and checked against the roots here, so that the web app and the commands obey one rule.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from django.conf import settings


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
    roots = [Path(root).resolve() for root in settings.TRAPWISE_IMPORT_ROOTS]
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
    the stored path and file name disagree.
    """
    relative = PurePosixPath(file_name)
    if (
        not file_name
        or relative.is_absolute()
        or ".." in relative.parts
        or not path.endswith(f"/{file_name}")
    ):
        return []
    folder = Path(path[: len(path) - len(file_name)])
    roots = [Path(root).resolve() for root in settings.TRAPWISE_IMPORT_ROOTS]
    if roots:
        real = folder.resolve()
        if not any(real.is_relative_to(root) for root in roots):
            return []
    return [folder]
