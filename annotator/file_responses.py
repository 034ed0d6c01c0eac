"""Crop, image and export files as HTTP responses, for the web views and the API alike.

Both open the file with ``projects.safe_files.file_open_confined``: a crop only inside
MEDIA_ROOT, an image only inside the folder it was imported from (and the import roots), a
regular file only, reached without following a link. Whatever the reason a file is refused,
the answer is the same 404 as for a missing file: it tells a caller nothing about the server.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.http.response import HttpResponseBase

from detector.models import Crop
from projects.import_roots import image_read_roots
from projects.models import Image
from projects.safe_files import file_open_confined
from projects.storage import stored_open, stored_url

logger = logging.getLogger(__name__)

NOT_FOUND = "File missing on the server"


def crop_file_response(*, crop: Crop) -> FileResponse:
    """The crop's JPEG; Http404 when it is missing or refused."""
    media = Path(settings.MEDIA_ROOT)
    return _response(path=media / crop.file, roots=[media])


def image_file_response(*, image: Image) -> FileResponse:
    """The whole image; Http404 when it is missing or refused."""
    roots = image_read_roots(path=image.path, file_name=image.file_name)
    return _response(path=Path(image.path), roots=roots)


def _response(*, path: Path, roots: list[Path]) -> FileResponse:
    try:
        handle = file_open_confined(path, roots=roots)
    except FileNotFoundError:
        raise Http404(NOT_FOUND) from None
    except OSError as exc:
        # A refused file (UnsafeFileError, a link on the way: ELOOP, ENOTDIR) may be an
        # attack, such as a link planted in an imported folder: the operator hears why, the
        # caller only hears "missing".
        logger.warning("file not served: %s (%s: %s)", path, type(exc).__name__, exc)
        raise Http404(NOT_FOUND) from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(handle, content_type=content_type, filename=path.name)


def export_file_response(*, name: str, download_name: str) -> HttpResponseBase:
    """An export file of the "exports" storage as a download saved as ``download_name``.

    With S3 a redirect to a short-lived signed URL (the bytes never pass through Django);
    locally the file, streamed. Http404 when it is missing.
    """
    url = stored_url(kind="exports", name=name, download_name=download_name)
    if url is not None:
        return HttpResponseRedirect(url)
    try:
        handle = stored_open(kind="exports", name=name)
    except FileNotFoundError:
        raise Http404(NOT_FOUND) from None
    content_type = mimetypes.guess_type(download_name)[0] or "application/octet-stream"
    return FileResponse(
        handle, as_attachment=True, filename=download_name, content_type=content_type
    )
