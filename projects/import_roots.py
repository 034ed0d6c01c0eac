"""Where imports may read from: ``TRAPWISE_IMPORT_ROOTS``.

Every file an import or a detections file reads is resolved (symbolic links and ``..`` followed)
and checked against the roots here, so that the web app and the commands obey one rule.
"""

from __future__ import annotations

import os
from pathlib import Path

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
