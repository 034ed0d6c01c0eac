"""Where an imported image's bytes come from: a file on this machine, or an object in an S3
bucket (``Image.path`` is then ``s3://bucket/key``).

Images imported from a bucket stay there: they are listed and read by streaming (never copied
to disk), with a boto3 client built from ``AWS_S3_ENDPOINT_URL`` / ``AWS_S3_REGION_NAME`` and
boto3's usual credentials (environment, shared files, instance role).

``image_source_url`` signs a short-lived GET URL for an image in a bucket, so that the web app
answers an image request with a redirect and never carries the bytes itself: signing is local
work with the process's client, no request to the store.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from django.conf import settings

from projects.import_roots import IMAGE_SUFFIXES, FolderImportError
from projects.safe_files import file_open_regular

# --- reading ---

S3_SCHEME = "s3://"
# The largest object read as one image (a camera-trap JPEG is a few MB): a bigger one is
# refused before its bytes are fetched, as it would be held in memory whole.
IMAGE_MAX_BYTES = 256 * 1024**2
# A COCO Camera Traps file read from a bucket (held in memory to be parsed anyway).
JSON_MAX_BYTES = 2 * 1024**3


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True when ``location`` names an object in a bucket (``s3://...``)."""
    return isinstance(location, str) and location.startswith(S3_SCHEME)


def s3_location_split(location: str) -> tuple[str, str]:
    """(bucket, key or prefix) of ``s3://bucket/key``; the key may be empty (a whole bucket).

    Raises:
        ValueError: not an ``s3://`` location, no bucket name, or a key with an empty, "." or
        ".." segment (two spellings of one object would make two images).
    """
    if not is_remote(location):
        raise ValueError(f"{location!r} is not an s3://bucket/prefix location")
    bucket, _, key = location[len(S3_SCHEME) :].partition("/")
    if not bucket or any(ch.isspace() or ch == "\x00" for ch in bucket):
        raise ValueError(f"{location!r} names no bucket: write s3://bucket/prefix")
    parts = key.rstrip("/").split("/") if key.rstrip("/") else []
    if any(part in ("", ".", "..") for part in parts) or "\x00" in key:
        raise ValueError(f"{location!r}: a key may not have empty, '.' or '..' segments")
    return bucket, key


_clients: dict[tuple[str | None, str | None, str | None], Any] = {}
_clients_lock = threading.Lock()


def s3_client() -> Any:
    """A boto3 S3 client for the configured endpoint and region (one per process and setting;
    boto3 clients are thread-safe). Credentials come from boto3's usual sources."""
    import boto3
    from botocore.config import Config

    endpoint = settings.AWS_S3_ENDPOINT_URL or None
    region = settings.AWS_S3_REGION_NAME or None
    key = (endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"))
    with _clients_lock:
        if key not in _clients:
            # A session of its own: boto3's default session keeps the credentials it found
            # first, so a changed environment would go unseen.
            _clients[key] = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                config=Config(
                    connect_timeout=10,
                    read_timeout=60,
                    retries={"max_attempts": 3},
                    signature_version="s3v4",  # as the storages' (annotator.settings)
                ),
            )
        return _clients[key]


def _s3_error(exc: Exception, *, location: str) -> OSError:
    """``exc`` (botocore's) as an OSError in words: FileNotFoundError for a missing key/bucket."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return PermissionError(
            f"{location}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or give the machine a role)"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
            what = "no such bucket" if code == "NoSuchBucket" else "no such object"
            return FileNotFoundError(f"{location}: {what}")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PermissionError(f"{location}: access denied by S3 ({code})")
        return OSError(f"{location}: S3 error {code}: {exc}")
    return OSError(f"{location}: cannot reach S3: {type(exc).__name__}: {exc}")


def _s3_read(location: str, *, max_bytes: int) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, key = s3_location_split(location)
    except ValueError as exc:
        raise FileNotFoundError(str(exc)) from exc
    if not key or key.endswith("/"):
        raise IsADirectoryError(f"{location} names a prefix, not an object")
    try:
        response = s3_client().get_object(Bucket=bucket, Key=key)
        size = int(response.get("ContentLength") or 0)
        body = response["Body"]
        if size > max_bytes:
            body.close()
            raise OSError(f"{location}: {size} bytes, more than the {max_bytes} allowed")
        with body:
            return bytes(body.read())
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, location=location) from exc


def image_source_open(location: str | os.PathLike[str]) -> BinaryIO:
    """The image (or metadata file) at ``location`` opened for reading.

    A local path is opened with ``projects.safe_files.file_open_regular`` (a named pipe or a
    device is refused unopened), as before. An ``s3://bucket/key`` object is streamed into
    memory (at most IMAGE_MAX_BYTES) and returned as a BytesIO: nothing is written to disk.

    Raises:
        OSError: missing (FileNotFoundError), refused, unreadable, no credentials
        (PermissionError), or S3 unreachable; the message names the location.
    """
    if not is_remote(location):
        return file_open_regular(location)
    return io.BytesIO(_s3_read(str(location), max_bytes=IMAGE_MAX_BYTES))


def s3_object_check(location: str) -> None:
    """Nothing when the object ``s3://bucket/key`` exists and can be read (asked without
    fetching its bytes: HEAD).

    Raises:
        OSError: as ``image_source_open``: FileNotFoundError for a missing object or bucket.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, key = s3_location_split(location)
    except ValueError as exc:
        raise FileNotFoundError(str(exc)) from exc
    if not key or key.endswith("/"):
        raise IsADirectoryError(f"{location} names a prefix, not an object")
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, location=location) from exc


def json_source_read(location: str) -> bytes:
    """The bytes of a JSON file (a COCO Camera Traps file) at an ``s3://`` location.

    Raises:
        OSError: as ``image_source_open``.
    """
    return _s3_read(location, max_bytes=JSON_MAX_BYTES)


def image_source_list(*, prefix_url: str) -> Iterator[tuple[str, int]]:
    """(key relative to the prefix, size in bytes) of every image object under
    ``s3://bucket/prefix`` (recursively; suffixes as ``IMAGE_SUFFIXES``), in key order.

    The prefix is a folder: ``s3://b/cams`` lists ``cams/...``, not ``cams2/...``. Listing is
    paginated (``list_objects_v2``), so a bucket of any size is walked a page at a time.

    Raises:
        FolderImportError: a malformed location, a missing bucket, no credentials, access
        denied or S3 unreachable; "nothing imported" (the caller has written nothing yet).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, prefix = s3_location_split(prefix_url)
    except ValueError as exc:
        raise FolderImportError(f"{exc}; nothing imported") from exc
    prefix = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    try:
        for page in pages:
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith("/") or PurePosixPath(key).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                yield key[len(prefix) :], int(item.get("Size", 0))
    except (ClientError, BotoCoreError) as exc:
        raise FolderImportError(f"{_s3_error(exc, location=prefix_url)}; nothing imported") from exc


def s3_location_join(prefix_url: str, relative: str) -> str:
    """``s3://bucket/prefix/relative`` (no doubled slash)."""
    return f"{prefix_url.rstrip('/')}/{relative}"


def import_buckets_allowed() -> frozenset[str]:
    """The buckets that imports asked for in the browser or the API may read
    (``TRAPWISE_IMPORT_BUCKETS``); empty: none."""
    return frozenset(getattr(settings, "TRAPWISE_IMPORT_BUCKETS", ()) or ())


def import_bucket_check(*, location: str, what: str) -> str:
    """``location`` (an ``s3://`` location) when its bucket is one of ``TRAPWISE_IMPORT_BUCKETS``.

    For imports asked for in the browser or the API; the command line may read any bucket.

    Raises:
        FolderImportError: malformed, or a bucket not allowed; nothing imported.
    """
    try:
        bucket, _ = s3_location_split(location)
    except ValueError as exc:
        raise FolderImportError(f"{what}: {exc}; nothing imported") from exc
    allowed = import_buckets_allowed()
    if bucket not in allowed:
        listed = ", ".join(sorted(allowed)) or "none"
        raise FolderImportError(
            f"{what} {location}: bucket {bucket!r} is not one imports may read (allowed: "
            f"{listed}; see TRAPWISE_IMPORT_BUCKETS); nothing imported"
        )
    return location


# --- serving ---


def image_location_s3(*, location: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of an ``s3://bucket/key`` location; None for anything else (a local
    path). ValueError for an ``s3://`` location without a bucket or a key."""
    if not is_remote(location):
        return None
    bucket, key = s3_location_split(location)
    if not key or key.endswith("/"):
        raise ValueError(f"not an s3://bucket/key location: {location!r}")
    return bucket, key


def image_source_url(*, location: str) -> str | None:
    """A signed GET URL of the image at ``location`` valid ``TRAPWISE_STORAGE_URL_EXPIRY``
    seconds, or None for a local path (the caller serves the file itself).

    Signing asks nothing of the store: a missing object shows only when the URL is followed.
    ValueError for a malformed ``s3://`` location.
    """
    parsed = image_location_s3(location=location)
    if parsed is None:
        return None
    bucket, key = parsed
    url: str = s3_client().generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key},
        ExpiresIn=settings.TRAPWISE_STORAGE_URL_EXPIRY,
    )
    return url
