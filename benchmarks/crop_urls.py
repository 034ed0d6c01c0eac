"""What a 25-crop grid costs the web app: signed redirects (S3 store) vs streamed files.

``python -m benchmarks crop_urls``: the 25 answers of one grid page's crops made by the
product function, ``annotator.file_responses.crop_file_response``, after the role check (which
is the same in every mode and not timed):

- ``value``: ``TRAPWISE_STORAGE=s3``: 25 302 redirects to signed URLs, each signed anew (crops
  not shown before). django-storages' S3 backend with a real configuration (bucket, endpoint,
  region, fake credentials): signing is local work, so no S3 server is needed or asked;
- ``s3_signed_before_ms`` (extra): the same grid shown again within half the URL lifetime:
  the process reuses the URLs it signed (``file_responses._crop_url_signed``);
- ``baseline``: the local store: 25 ``FileResponse``s, each streamed to the end, as the web
  worker does when it sends the file (the JPEGs are ~25 KB crops in MEDIA_ROOT, in the page
  cache: the best case for streaming);
- ``x_accel_ms`` (extra): the local store with ``TRAPWISE_INTERNAL_REDIRECT``: 25 empty
  answers naming the file for nginx, after the same confined open.

Each figure is the median over ``REPEATS`` grids, in a warm process (the S3 client and the
first open are made before timing: a web worker is long-lived). Goal: a few milliseconds for
the 25 signed redirects.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._result import BENCH_DIR, result_write
from benchmarks.export_stream import _django

N_CROPS = 25
REPEATS = 200
WORK = BENCH_DIR / "crop_urls"


def _crops(media: Path) -> list[Any]:
    """25 unsaved crop rows, each with a real ~25 KB JPEG in ``media`` (not timed)."""
    from PIL import Image as PILImage

    from detector.models import Crop

    rng = np.random.default_rng(0)
    crops = []
    for n in range(N_CROPS):
        name = f"crops/1/{n + 1}-{n:08x}.jpg"
        pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        picture = PILImage.fromarray(pixels).resize((224, 224), PILImage.Resampling.BICUBIC)
        encoded = io.BytesIO()
        picture.save(encoded, format="JPEG", quality=90)
        (media / name).parent.mkdir(parents=True, exist_ok=True)
        (media / name).write_bytes(encoded.getvalue())
        crops.append(Crop(pk=n + 1, project_id=1, file=name))
    return crops


def _median_ms(grid: Callable[[], None]) -> float:
    grid()  # warm: clients, imports, page cache
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        grid()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _s3_storages() -> dict[str, Any]:
    options = {
        "bucket_name": "trapwise-bench",
        "endpoint_url": "http://127.0.0.1:9",  # never contacted: signing is local
        "region_name": "us-east-1",
        "file_overwrite": True,
        "default_acl": None,
        "querystring_auth": True,
    }
    return {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        **{
            kind: {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {**options, **extra}}
            for kind, extra in (
                ("crops", {"location": "media"}),
                ("data", {"location": "data"}),
                ("exports", {"location": "exports"}),
            )
        },
    }


def main() -> None:
    _django(WORK)
    from django.conf import settings
    from django.test import override_settings

    from annotator import file_responses
    from annotator.file_responses import crop_file_response
    from projects.storage import stored_local_root

    media = stored_local_root(kind="crops")
    crops = _crops(media)
    sizes = [(media / crop.file).stat().st_size for crop in crops]

    def streamed() -> None:
        for crop in crops:
            response = crop_file_response(crop=crop)
            assert response.status_code == 200
            for _ in response.streaming_content:  # type: ignore[attr-defined]
                pass
            response.close()

    def answered() -> None:
        for crop in crops:
            response = crop_file_response(crop=crop)
            assert response.status_code in (200, 302), response.status_code

    baseline = _median_ms(streamed)
    with override_settings(TRAPWISE_INTERNAL_REDIRECT="/_protected/"):
        x_accel = _median_ms(answered)
    for variable, fake in (
        ("AWS_ACCESS_KEY_ID", "bench-not-a-key"),
        ("AWS_SECRET_ACCESS_KEY", "bench-not-a-secret"),
    ):
        os.environ.setdefault(variable, fake)

    def answered_cold() -> None:
        file_responses._SIGNED.clear()  # every URL signed anew: crops not shown before
        answered()

    with override_settings(TRAPWISE_STORAGE="s3", STORAGES=_s3_storages()):
        location = crop_file_response(crop=crops[0])["Location"]
        assert "Signature=" in location, location  # SigV2 or SigV4, as boto3 picks
        value = _median_ms(answered_cold)
        cached = _median_ms(answered)
    path = result_write(
        name="crop_urls",
        unit="ms per 25 crops",
        value=value,
        baseline_name="local store, FileResponse streamed to the end",
        baseline=baseline,
        params={
            "crops": N_CROPS,
            "repeats": REPEATS,
            "statistic": "median",
            "jpeg_bytes_mean": int(statistics.mean(sizes)),
            "url_expiry_s": settings.TRAPWISE_STORAGE_URL_EXPIRY,
        },
        extra={"s3_signed_before_ms": cached, "x_accel_ms": x_accel},
    )
    print(
        f"crop_urls: 25 signed redirects {value:.2f} ms ({cached:.2f} ms for crops signed "
        f"before), 25 X-Accel answers {x_accel:.2f} ms, 25 streamed files {baseline:.2f} ms "
        f"-> {path}"
    )
