"""An S3 endpoint on loopback for tests: moto's standalone server in a thread of this process.

``s3_server`` (session) starts it once; ``s3_storage`` (per test) makes a fresh bucket and points
the storage layer (``TRAPWISE_STORAGE=s3``) and the image reader at it, with a per-test cache
folder, so a test sees exactly what a worker without a shared disk sees.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "trapwise-test"
SIGNING_KEY = "trapwise-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Endpoint:
    url: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SIGNING_KEY,
            region_name=REGION,
        )


@dataclass(frozen=True)
class S3Storage:
    endpoint: S3Endpoint
    bucket: str
    cache: Path

    def client(self) -> Any:
        return self.endpoint.client()

    def keys(self, prefix: str = "") -> list[str]:
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Endpoint(url=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_storage(
    s3_server: S3Endpoint, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3Storage:
    """The storage layer on a fresh bucket of the loopback S3 server."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SIGNING_KEY),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        monkeypatch.setenv(name, value)
    bucket = f"trapwise-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    options = {
        "bucket_name": bucket,
        "endpoint_url": s3_server.url,
        "region_name": REGION,
        "file_overwrite": True,
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 300,
        "signature_version": "s3v4",
    }
    settings.TRAPWISE_STORAGE = "s3"
    settings.AWS_S3_ENDPOINT_URL = s3_server.url
    settings.AWS_S3_REGION_NAME = REGION
    settings.TRAPWISE_CACHE_DIR = tmp_path / "cache"
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        **{
            kind: {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {**options, "location": prefix},
            }
            for kind, prefix in (("crops", "media"), ("data", "data"), ("exports", "exports"))
        },
    }
    # Nothing may reach the local folders while the store is remote: point them nowhere useful.
    settings.MEDIA_ROOT = tmp_path / "no-local-media"
    settings.TRAPWISE_DATA_DIR = tmp_path / "no-local-data"
    os.environ.pop("AWS_ENDPOINT_URL", None)
    return S3Storage(endpoint=s3_server, bucket=bucket, cache=tmp_path / "cache")
