"""Where an imported image's bytes come from: a path on this machine, or an ``s3://bucket/key``
URL (``Image.path`` of an image imported from an S3 prefix).

``image_source_url`` signs a short-lived GET URL for an image in a bucket, so that the web
app answers an image request with a redirect and never carries the bytes itself. Its client
is built from the settings (``AWS_S3_ENDPOINT_URL``, ``AWS_S3_REGION_NAME``) and boto3's usual
credentials, once per process: signing is then local work, no request to the store.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings

S3_SCHEME = "s3://"


def image_location_s3(*, location: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of an ``s3://bucket/key`` location; None for anything else (a local
    path). ValueError for an ``s3://`` location without a bucket or a key."""
    if not location.startswith(S3_SCHEME):
        return None
    bucket, _, key = location[len(S3_SCHEME) :].partition("/")
    if not bucket or not key:
        raise ValueError(f"not an s3://bucket/key location: {location!r}")
    return bucket, key


@lru_cache(maxsize=4)
def _s3_client(endpoint_url: str | None, region_name: str | None) -> Any:
    import boto3

    # A client per (endpoint, region): tests and settings may change them; boto3 clients are
    # thread-safe, and building one costs tens of milliseconds.
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region_name)


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
    client = _s3_client(settings.AWS_S3_ENDPOINT_URL, settings.AWS_S3_REGION_NAME)
    url: str = client.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key},
        ExpiresIn=settings.TRAPWISE_STORAGE_URL_EXPIRY,
    )
    return url
