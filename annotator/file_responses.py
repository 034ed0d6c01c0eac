"""Crop, image and export files as HTTP responses, for the web views and the API alike.

Called after the role check; the bytes are then handed to whatever serves them cheapest:

- a crop in a remote store (``TRAPWISE_STORAGE=s3``) or an image imported from ``s3://``: a
  302 redirect to a signed URL of the object, valid ``TRAPWISE_STORAGE_URL_EXPIRY`` seconds
  (the redirect itself may be cached privately until half that has passed, so a cached
  redirect never leads to an expired URL; a crop's URL is reused meanwhile,
  ``_crop_url_signed``); the web app never carries the bytes;
- a local crop with ``TRAPWISE_INTERNAL_REDIRECT`` set: an empty answer whose
  ``X-Accel-Redirect`` header names the file below that prefix, which the front web server
  (nginx, an ``internal`` location aliased to MEDIA_ROOT; see the README) serves itself;
- otherwise the file streamed by Django.

A local file is opened with ``projects.safe_files.file_open_confined`` first, also before an
internal redirect: a crop only inside MEDIA_ROOT, an image only inside the folder it was
imported from (and the import roots), a regular file only, reached without following a link.
Whatever the reason a file is refused, the answer is the same 404 as for a missing file: it
tells a caller nothing about the server. Local images are always streamed, never redirected
internally: their folders may be writable by others, and the web server would open the path
again, following whatever link was put there after the check.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase

from detector.models import Crop
from projects.image_source import image_source_url
from projects.import_roots import image_read_roots
from projects.models import Image
from projects.safe_files import file_open_confined
from projects.storage import (
    storage_get,
    stored_is_local,
    stored_local_root,
    stored_open,
    stored_url,
)

logger = logging.getLogger(__name__)

NOT_FOUND = "File missing on the server"
# Signed crop URLs this process remembers (``_crop_url_signed``): a few grids' worth per user
# of a busy server, about 300 bytes each.
SIGNED_URLS_KEPT = 20_000
_SIGNED: OrderedDict[tuple[str | None, str | None, str, str], tuple[str, float, int]] = (
    OrderedDict()
)
_SIGNED_LOCK = threading.Lock()
_clock = time.time  # wall-clock seconds, as the signatures' expiry (tests move it)


def crop_file_response(*, crop: Crop) -> HttpResponseBase:
    """The crop's JPEG (a redirect to it where something else serves it); Http404 when it is
    missing or refused."""
    if not stored_is_local():
        url, max_age = _crop_url_signed(name=_crop_name(crop))
        return _redirect(url, max_age=max_age)
    media = stored_local_root(kind="crops")
    path = media / crop.file
    prefix = settings.TRAPWISE_INTERNAL_REDIRECT
    if not prefix:
        return _stream(handle=_open(path=path, roots=[media]), path=path)
    # The front server is told the real location that was checked, links already resolved.
    real = Path(os.path.realpath(path))
    _open(path=real, roots=[media]).close()
    relative = real.relative_to(os.path.realpath(media)).as_posix()
    response = HttpResponse(content_type=_content_type(path))
    response["X-Accel-Redirect"] = f"{prefix}{quote(relative)}"
    return response


def image_file_response(*, image: Image) -> HttpResponseBase:
    """The whole image (a redirect to it when it lies in a bucket); Http404 when it is missing
    or refused."""
    try:
        url = image_source_url(location=image.path)
    except ValueError:
        logger.warning("image %s not served: malformed location %r", image.pk, image.path)
        raise Http404(NOT_FOUND) from None
    if url is not None:
        return _redirect(url, max_age=settings.TRAPWISE_STORAGE_URL_EXPIRY // 2)
    roots = image_read_roots(path=image.path, file_name=image.file_name)
    path = Path(image.path)
    return _stream(handle=_open(path=path, roots=roots), path=path)


def _crop_name(crop: Crop) -> str:
    """The crop's stored name; Http404 for a name that could reach outside the crops (a row
    written by hand: Trapwise writes ``crops/<project>/<name>.jpg``)."""
    pure = PurePosixPath(str(crop.file))
    if not crop.file or pure.is_absolute() or ".." in pure.parts:
        logger.warning("crop %s not served: bad stored name %r", crop.pk, crop.file)
        raise Http404(NOT_FOUND)
    return pure.as_posix()


def _crop_url_signed(*, name: str) -> tuple[str | None, int]:
    """A signed URL of the stored crop ``name`` and how long a redirect to it may be cached.

    A URL signed at ``s`` is valid until ``s + expiry``; this process hands out the same URL
    until ``s + expiry/2`` (crop names are immutable, so its bytes cannot change), and a
    redirect answered at ``t`` may be cached until then (``max-age = s + expiry/2 - t``): a
    browser following a cached redirect still has half the lifetime left. The same URL for
    the same crop lets browsers cache the crop itself, and signing (about a millisecond of
    botocore per URL) is skipped for crops shown again.
    """
    storage = storage_get("crops")
    key = (
        getattr(storage, "endpoint_url", None),
        getattr(storage, "bucket_name", None),
        getattr(storage, "location", ""),
        name,
    )
    window = settings.TRAPWISE_STORAGE_URL_EXPIRY // 2
    now = _clock()
    with _SIGNED_LOCK:
        hit = _SIGNED.get(key)
    if hit is not None and hit[1] <= now < hit[1] + window and hit[2] == window:
        return hit[0], int(hit[1] + window - now)
    url = stored_url(kind="crops", name=name)
    if url is None:
        return None, 0
    with _SIGNED_LOCK:
        _SIGNED[key] = (url, now, window)
        _SIGNED.move_to_end(key)
        while len(_SIGNED) > SIGNED_URLS_KEPT:
            _SIGNED.popitem(last=False)
    return url, window


def _redirect(url: str | None, *, max_age: int) -> HttpResponseRedirect:
    if url is None:  # a remote store always signs; None would mean a local one
        raise Http404(NOT_FOUND)
    response = HttpResponseRedirect(url)
    # Private: the URL is signed for whoever passed the role check.
    response["Cache-Control"] = f"private, max-age={max_age}"
    return response


def _open(*, path: Path, roots: list[Path]) -> BinaryIO:
    try:
        return file_open_confined(path, roots=roots)
    except FileNotFoundError:
        raise Http404(NOT_FOUND) from None
    except OSError as exc:
        # A refused file (UnsafeFileError, a link on the way: ELOOP, ENOTDIR) may be an
        # attack, such as a link planted in an imported folder: the operator hears why, the
        # caller only hears "missing".
        logger.warning("file not served: %s (%s: %s)", path, type(exc).__name__, exc)
        raise Http404(NOT_FOUND) from None


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _stream(*, handle: BinaryIO, path: Path) -> FileResponse:
    return FileResponse(handle, content_type=_content_type(path), filename=path.name)


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
