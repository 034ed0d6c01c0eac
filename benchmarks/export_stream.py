"""Exports stream in constant memory: the same exports of a project and of one 10x smaller.

Each export is fetched as a browser would, through Django's test ``Client`` with a logged-in
admin, and ``response.streaming_content`` is read to the end (the bytes are counted and
dropped). Per export: wall seconds, rows per second, bytes, the peak of memory allocated by
Python while it streams (``tracemalloc``, the main measure), the growth of the process's
resident memory (``/proc/self/statm`` sampled while it streams, less tracemalloc's own
tables) and the SQL queries run.

The data are synthetic, in a throw-away SQLite database under var/bench/ (setting it up is
not timed): two projects built the same way, with N and N/10 crops. Two crops per image, five
images per capture event, every image with a camera and a capture time; a READY embedding
version, a classifier version with an auto-accept threshold and one top-5 prediction per crop
(plus one event prediction per event), and human labels with their consensus on N/40 crops,
in rounds. Constant memory means the peak at N is about the peak at N/10: ``ratio`` is the
crop CSV's peak at N over its peak at N/10 (goal 1, at most 1.5).

N is 100,000 by default, not the 1,000,000 of the claim: tracemalloc slows the ORM-heavy
export code 3-5x, and the four exports at both sizes then take about 5 minutes on 2 cores
(a million crops would take most of an hour). The peak is already flat from N/10 = 10,000
crops, five chunks of ``EXPORT_CHUNK``: a smaller baseline, of one or two chunks, would
understate it. ``TRAPWISE_BENCH_EXPORT_CROPS=1000000`` runs the claim's size, and
``TRAPWISE_BENCH_EXPORTS=crops_csv`` limits the run to some exports (comma-separated names of
``EXPORTS``).

Timings are taken with tracemalloc on (the ``untraced`` figures time the crop CSV at N/10 once
more without it, for scale). ``DEBUG`` is off, as in production: with it on, Django keeps the
connection's last 9,000 SQL statements, memory that grows with the export up to that cap
whatever the export does.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import resource
import shutil
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._result import BENCH_DIR, result_write

N_CROPS = int(os.environ.get("TRAPWISE_BENCH_EXPORT_CROPS", "100000"))
CROPS_PER_IMAGE, IMAGES_PER_EVENT, N_SPECIES, TOP_K, SEED = 2, 5, 20, 5, 0
LABEL_SHARE = 40  # one crop in 40 has a human label (25,000 of 1,000,000)
ROUND_SIZE = 500
THRESHOLD = 0.8
INSERT_BATCH = 100_000
MIB = 1024 * 1024
WORK = BENCH_DIR / "export_stream"

# Export name -> URL name; the CSV tables share one view.
EXPORTS = {
    "crops_csv": "export_csv",
    "images_csv": "export_images_csv",
    "events_csv": "export_events_csv",
    "coco_json": "export_coco",
}
MEASURED = os.environ.get("TRAPWISE_BENCH_EXPORTS", ",".join(EXPORTS)).split(",")


def _django(work: Path = WORK) -> None:
    """Point Django at a fresh SQLite database under ``work``, then migrate; DEBUG off.

    Under ``python -m benchmarks`` an earlier benchmark of the same process may have set Django
    up on its own SQLite database: the default connection is then pointed here instead.
    """
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    database = str((work / "db.sqlite3").resolve())
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["TRAPWISE_DATA_DIR"] = str((work / "data").resolve())
    os.environ["MEDIA_ROOT"] = str((work / "media").resolve())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django
    from django.apps import apps
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    if apps.ready:
        connections.close_all()
        connections["default"].settings_dict["NAME"] = database
    else:
        django.setup()
    assert connections["default"].vendor == "sqlite", connections["default"].vendor
    settings.DEBUG = False  # as in production; see the module docstring
    call_command("migrate", verbosity=0)


# --- setup (not timed) ------------------------------------------------------------------------


def _insert(model: Any, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert rows with the fast raw insert the classifier uses, INSERT_BATCH at a time."""
    from activelearn.services.predictions import rows_insert

    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, INSERT_BATCH)):
        rows_insert(model=model, columns=columns, rows=batch)


def _next_id(model: Any) -> int:
    from django.db.models import Max

    return int(model.objects.aggregate(m=Max("id"))["m"] or 0) + 1


def _project(*, slug: str, n_crops: int, admin: Any, rng: np.random.Generator) -> int:
    """Create one synthetic project of ``n_crops`` crops (see the module docstring)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from activelearn.models import (
        ClassifierVersion,
        Consensus,
        EventPrediction,
        Label,
        LabelKind,
        Round,
        RoundCrop,
    )
    from activelearn.services import consensus_update, predictions_store
    from detector.models import Crop, Detection
    from embeddings.models import EmbeddingVersion
    from projects.models import Image, Membership, Project, Role, Species

    project = Project.objects.create(name=slug, slug=slug, seed=SEED, finetune_every=0)
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    species = [
        Species.objects.create(project=project, name=f"species {i}", position=i)
        for i in range(N_SPECIES)
    ]
    species_ids = np.array([s.pk for s in species], dtype=np.int64)
    n_images = n_crops // CROPS_PER_IMAGE
    image0, detection0, crop0 = _next_id(Image), _next_id(Detection), _next_id(Crop)
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    start = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)

    def image_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(n_images):
            event, frame = divmod(i, IMAGES_PER_EVENT)
            # Events a minute apart, frames a second apart; ten cameras.
            taken = adapt(start + timedelta(minutes=event, seconds=frame))
            yield (
                image0 + i,
                project.pk,
                f"/bench/{slug}/{i}.jpg",
                f"cam{event % 10}/{i}.jpg",
                1920,
                1080,
                f"seq{event}",
                frame,
                "time",
                f"camera {event % 10}",
                taken,
                taken,
                "exif",
                now,
                now,
                "bench",
                "",
                False,
                CROPS_PER_IMAGE,
            )

    with transaction.atomic():
        _insert(
            Image,
            (
                "id",
                "project_id",
                "path",
                "file_name",
                "width",
                "height",
                "seq_id",
                "frame_num",
                "seq_source",
                "camera",
                "taken_at",
                "camera_taken_at",
                "time_source",
                "imported_at",
                "detected_at",
                "detector_version",
                "detection_failure",
                "is_empty",
                "count",
            ),
            image_rows(),
        )
        _insert(
            Detection,
            ("id", "image_id", "x", "y", "w", "h", "confidence", "category", "detector_version"),
            (
                (detection0 + i, image0 + i // CROPS_PER_IMAGE, 0.1, 0.2, 0.3, 0.25, 0.9)
                + ("animal", "bench")
                for i in range(n_crops)
            ),
        )
        _insert(
            Crop,
            ("id", "project_id", "image_id", "detection_id", "file", "padding", "active")
            + ("created_at", "shape"),
            (
                (crop0 + i, project.pk, image0 + i // CROPS_PER_IMAGE, detection0 + i)
                + (f"crops/{slug}/{i}.jpg", 0.1, True, now, "box")
                for i in range(n_crops)
            ),
        )
    # The exports read no vectors: the READY version row is all they need.
    version = {"backbone": "bench", "weights": "none", "weights_source": "none", "seed": SEED}
    embedding = EmbeddingVersion.objects.create(
        project=project,
        number=1,
        pretrained=False,
        directory="v1",
        status=EmbeddingVersion.Status.READY,
        activated_at=timezone.now(),
        **version,
    )
    n_labels = n_crops // LABEL_SHARE
    with transaction.atomic():
        classifier = ClassifierVersion.objects.create(
            project=project,
            number=1,
            embedding_version=embedding,
            last_label_id=0,
            n_labels=n_labels,
            n_classes=N_SPECIES,
            seed=SEED,
            path="classifiers/bench.pt",
            threshold=THRESHOLD,
            n_unlabelled=n_crops - n_labels,
        )
        ids = np.arange(crop0, crop0 + n_crops, dtype=np.int64)
        for lo in range(0, n_crops, INSERT_BATCH):
            part = ids[lo : lo + INSERT_BATCH]
            probs = rng.dirichlet(np.full(N_SPECIES, 0.3), size=part.shape[0])
            order = np.argsort(-probs, axis=1)[:, :TOP_K]
            top_probs = np.take_along_axis(probs, order, axis=1)
            predictions_store(
                classifier=classifier,
                ids=part,
                top_labels=species_ids[order],
                top_probs=top_probs,
            )
        n_events = -(-n_images // IMAGES_PER_EVENT)
        _insert(
            EventPrediction,
            ("classifier_id", "event", "species_id", "confidence", "top", "n_crops"),
            (
                (classifier.pk, f"seq{e}", int(species_ids[e % N_SPECIES]), 0.7)
                + (json.dumps([[int(species_ids[e % N_SPECIES]), 0.7]]), 10)
                for e in range(n_events)
            ),
        )
    # Human labels on one crop in LABEL_SHARE, in closed rounds of ROUND_SIZE: mostly species,
    # some "unknown" and "not_animal". The consensus rows come from the label service.
    labelled = np.sort(rng.choice(ids, size=n_labels, replace=False))
    kinds = rng.choice(
        [LabelKind.SPECIES, LabelKind.UNKNOWN, LabelKind.NOT_ANIMAL],
        size=n_labels,
        p=[0.9, 0.05, 0.05],
    )
    truth = rng.integers(0, N_SPECIES, n_labels)
    with transaction.atomic():
        for number, lo in enumerate(range(0, n_labels, ROUND_SIZE), start=1):
            chunk = labelled[lo : lo + ROUND_SIZE]
            round_ = Round.objects.create(
                project=project,
                number=number,
                strategy="random",
                size=len(chunk),
                seed=SEED + number,
                embedding_version=embedding,
                status=Round.Status.CLOSED,
                created_by=admin,
            )
            RoundCrop.objects.bulk_create(
                RoundCrop(round=round_, crop_id=int(c), position=p) for p, c in enumerate(chunk)
            )
            Label.objects.bulk_create(
                Label(
                    project=project,
                    crop_id=int(c),
                    user=admin,
                    kind=str(kinds[lo + p]),
                    species=species[int(truth[lo + p])]
                    if kinds[lo + p] == LabelKind.SPECIES
                    else None,
                    round=round_,
                )
                for p, c in enumerate(chunk)
            )
        consensus_update(project=project, crop_ids=labelled.tolist())
    assert Consensus.objects.filter(project=project, status="done").count() == n_labels
    return int(project.pk)


# --- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """One export read to the end."""

    seconds: float
    rows: int
    rows_per_s: float
    bytes: int
    peak_traced_mib: float
    rss_growth_mib: float
    queries: int


def _rss() -> int:
    """Resident bytes now (Linux), else the process's high-water mark."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _count_queries(counter: list[int]) -> Callable[..., Any]:
    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        counter[0] += 1
        return execute(sql, params, many, context)

    return wrapper


def _stream(client: Any, url: str, *, traced: bool = True) -> Stream:
    """Fetch ``url`` and read its streaming body to the end, measuring as it goes.

    Rows are the body's lines less the CSV header (for COCO JSON: its lines, about one per
    image and per annotation).
    """
    from django.db import connection

    def rss() -> int:
        # tracemalloc's own tables are resident too; they are not the export's.
        return _rss() - (tracemalloc.get_tracemalloc_memory() if traced else 0)

    gc.collect()
    queries = [0]
    if traced:
        tracemalloc.start()
    rss_start = rss_peak = rss()
    n_bytes = n_lines = 0
    start = time.perf_counter()
    with connection.execute_wrapper(_count_queries(queries)):
        response = client.get(url)
        assert response.status_code == 200 and response.streaming, (url, response.status_code)
        for i, part in enumerate(response.streaming_content):
            n_bytes += len(part)
            n_lines += part.count(b"\n")
            if i % 1000 == 0:
                rss_peak = max(rss_peak, rss())
        response.close()
    seconds = time.perf_counter() - start
    rss_peak = max(rss_peak, rss())
    peak = 0
    if traced:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    rows = n_lines - 1 if url.endswith(".csv") else n_lines
    return Stream(
        seconds=seconds,
        rows=rows,
        rows_per_s=rows / seconds,
        bytes=n_bytes,
        peak_traced_mib=peak / MIB,
        rss_growth_mib=(rss_peak - rss_start) / MIB,
        queries=queries[0],
    )


def _measure(client: Any, slug: str) -> dict[str, Stream]:
    from django.urls import reverse

    return {name: _stream(client, reverse(EXPORTS[name], args=[slug])) for name in MEASURED}


def main() -> None:
    assert "crops_csv" in MEASURED, "the crop CSV is the headline figure"
    rng = np.random.default_rng(SEED)
    _django()
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    small_n = N_CROPS // 10
    start = time.perf_counter()
    admin = User.objects.create_user(username="bench-admin", password="unused")
    _project(slug="large", n_crops=N_CROPS, admin=admin, rng=rng)
    _project(slug="small", n_crops=small_n, admin=admin, rng=rng)
    setup_s = time.perf_counter() - start
    client = Client()
    client.force_login(admin)

    # The small project first: anything the process keeps after an export (caches, arenas)
    # would then show against the large one, not hide it.
    small = _measure(client, "small")
    large = _measure(client, "large")
    untraced = _stream(client, reverse("export_csv", args=["small"]), traced=False)
    expected = {
        "crops_csv": (N_CROPS, small_n),
        "images_csv": (N_CROPS // CROPS_PER_IMAGE, small_n // CROPS_PER_IMAGE),
        "events_csv": (
            N_CROPS // CROPS_PER_IMAGE // IMAGES_PER_EVENT,
            small_n // CROPS_PER_IMAGE // IMAGES_PER_EVENT,
        ),
    }
    for name, (n_large, n_small) in expected.items():
        assert name not in large or (large[name].rows, small[name].rows) == (n_large, n_small), name

    value = large["crops_csv"].peak_traced_mib
    baseline = small["crops_csv"].peak_traced_mib
    params: dict[str, Any] = {
        "crops": N_CROPS,
        "crops_baseline": small_n,
        "images": N_CROPS // CROPS_PER_IMAGE,
        "events": N_CROPS // CROPS_PER_IMAGE // IMAGES_PER_EVENT,
        "human_labels": N_CROPS // LABEL_SHARE,
        "species": N_SPECIES,
        "database": "sqlite",
        "debug": False,
        "timed_with_tracemalloc": True,
        "goal_ratio_max": 1.5,
        "setup_s": setup_s,
        "untraced_crops_csv_baseline": asdict(untraced),
    }
    for name in large:
        params[name] = asdict(large[name])
        params[f"{name}_baseline"] = asdict(small[name])
        params[f"{name}_peak_ratio"] = (
            large[name].peak_traced_mib / small[name].peak_traced_mib
            if small[name].peak_traced_mib
            else None
        )
    path = result_write(
        name="export_stream",
        unit="MiB",
        value=value,
        baseline_name="peak traced memory of the same export at N/10 crops",
        baseline=baseline,
        params=params,
    )
    print(f"export_stream: {N_CROPS:,} crops vs {small_n:,} (setup {setup_s:.0f} s, not timed)")
    print(
        f"{'export':<11} {'crops':>9} {'seconds':>8} {'rows/s':>8} {'MiB out':>8} "
        f"{'peak MiB':>9} {'RSS +MiB':>9} {'queries':>8}"
    )
    for name in large:
        for n, run in ((N_CROPS, large[name]), (small_n, small[name])):
            print(
                f"{name:<11} {n:>9,} {run.seconds:>8.1f} {run.rows_per_s:>8,.0f} "
                f"{run.bytes / MIB:>8.1f} {run.peak_traced_mib:>9.2f} "
                f"{run.rss_growth_mib:>9.1f} {run.queries:>8,}"
            )
    print(
        f"crops CSV peak {value:.2f} MiB at {N_CROPS:,} vs {baseline:.2f} MiB at {small_n:,} "
        f"(ratio {value / baseline:.2f}; untraced crops CSV at {small_n:,}: "
        f"{untraced.rows_per_s:,.0f} rows/s) -> {path}"
    )
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
