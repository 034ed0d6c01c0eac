"""The explore page at ten million crops on PostgreSQL (issue 19, item 6).

``python -m benchmarks explore_10m [--n N]`` (default 10,000,000) needs PostgreSQL on
127.0.0.1:5432 (user ``postgres``, trust). It migrates a database of its own,
``trapwise_bench10m`` (kept between runs: the fill is reused when the project already holds N
crops), builds export streaming's synthetic project (``export_stream._project``: two crops per
image, five images per event, ten cameras, a READY classifier with a top-5 prediction per
crop, human labels on one crop in 40, closed rounds) at ``TEMPLATE`` crops through the ORM,
then grows the same project to N crops in SQL: ``INSERT ... SELECT`` over
``generate_series`` copies its images, detections, crops, predictions, event predictions,
labels and consensus rows with ids (and the foreign keys between them) shifted per copy and
file names, paths and sequence ids suffixed, so every copy is a new set of events.
Then ``ANALYZE``.

Measured: the selectors the explore view (``annotator.views.explore``) calls per request that
read the crops, called directly (no HTTP, no template): ``explore_page`` (60 crops, as the
view's PAGE_SIZE) and ``images_untimed_count``, for typical filter combinations (``CASES``),
each at its first page and ``DEPTH`` pages walked by ``next_cursor`` from ``STARTS`` starting
points spread over the crop ids (sorts other than by id: ``DEPTH`` x ``STARTS`` pages from the
first), ``REPEATS`` times (once from a million crops up). ``value`` is the p95 over every request;
the per-case p95 are in ``params``. The baseline is the same requests on the template-sized
project (TEMPLATE crops, built in the same database), in the same run, interleaved.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from benchmarks import crops_10m
from benchmarks._result import BENCH_DIR, result_write

DB = "trapwise_bench10m"
TEMPLATE, PAGE, DEPTH, STARTS, REPEATS, SEED = 100_000, 60, 3, 4, 2, 0
WORK = BENCH_DIR / "explore_10m"


def _django() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            c.execute(f'CREATE DATABASE "{DB}"')
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
    os.environ["TRAPWISE_DATA_DIR"] = str((WORK / "data").resolve())
    os.environ["MEDIA_ROOT"] = str((WORK / "media").resolve())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    settings.DEBUG = False
    call_command("migrate", verbosity=0)


def _grow(project_id: int, copies: int) -> None:
    """Append ``copies`` shifted copies of the project's rows (see the module docstring)."""
    from django.db import connection, transaction

    from activelearn.models import ClassifierVersion, Consensus, EventPrediction, Label, Prediction
    from detector.models import Crop, Detection
    from projects.models import Image

    classifiers = list(ClassifierVersion.objects.filter(project_id=project_id).values_list("pk"))
    where = {
        Image: f"project_id = {project_id}",
        Detection: f"image_id IN (SELECT id FROM {Image._meta.db_table} WHERE project_id = "
        f"{project_id})",
        Crop: f"project_id = {project_id}",
        Prediction: f"classifier_id = {classifiers[0][0]}",
        EventPrediction: f"classifier_id = {classifiers[0][0]}",
        Label: f"project_id = {project_id}",
        Consensus: f"project_id = {project_id}",
    }
    suffixed = {"path", "file_name", "seq_id", "file", "event", "client_key"}
    spans: dict[Any, tuple[int, int]] = {}
    with connection.cursor() as cursor:
        for model in where:
            table = model._meta.db_table
            cursor.execute(f"SELECT min(id), max(id) FROM {table} WHERE {where[model]}")
            lo, hi = cursor.fetchone()
            spans[model] = (int(lo), int(hi) - int(lo) + 1)
        with transaction.atomic():
            # The copies are consistent by construction; Django's foreign keys are DEFERRABLE
            # INITIALLY DEFERRED, so checking 45M rows' keys at COMMIT took longer than
            # copying them (10M: over 10 minutes). "replica" skips those triggers for this
            # transaction (the user is the superuser ``postgres``).
            cursor.execute("SET LOCAL session_replication_role = replica")
            for model in where:
                table = model._meta.db_table
                exprs = []
                columns = []
                for field in model._meta.concrete_fields:
                    column = field.column
                    columns.append(column)
                    related = field.related_model if field.is_relation else None
                    if field.primary_key:
                        exprs.append(f"t.{column} + g * {spans[model][1]}")
                    elif related in spans:
                        exprs.append(f"t.{column} + g * {spans[related][1]}")
                    elif column in suffixed:
                        exprs.append(
                            f"CASE WHEN t.{column} IS NULL OR t.{column} = '' THEN t.{column} "
                            f"ELSE t.{column} || '~' || g END"
                        )
                    else:
                        exprs.append(f"t.{column}")
                started = time.perf_counter()
                cursor.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(exprs)} "
                    f"FROM (SELECT * FROM {table} WHERE {where[model]}) t, "
                    f"generate_series(1, {copies}) g"
                )
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
                seconds = time.perf_counter() - started
                print(f"  {table}: copied {copies} times in {seconds:.0f} s", flush=True)


def _project_for(n: int) -> int:
    """The project of ``n`` crops in the bench database, built if missing."""
    from django.contrib.auth.models import User
    from django.db import connection

    from benchmarks.export_stream import _project
    from detector.models import Crop
    from projects.models import Project

    slug = f"bench-{n}"
    existing = Project.objects.filter(slug=slug).first()
    if existing is not None and Crop.objects.filter(project=existing).count() == n:
        return int(existing.pk)
    if existing is not None:
        existing.delete()
    admin, _ = User.objects.get_or_create(username="bench-admin")
    template = min(n, TEMPLATE)
    started = time.perf_counter()
    pk = _project(slug=slug, n_crops=template, admin=admin, rng=np.random.default_rng(SEED))
    print(f"  template of {template} crops in {time.perf_counter() - started:.0f} s")
    if n > template:
        if n % template:
            raise SystemExit(f"--n must be a multiple of {template}")
        _grow(pk, n // template - 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would give a live database
    return pk


def _cases(project: Any, classifier: Any) -> dict[str, tuple[Any, str]]:
    """Typical filter combinations: (filters, sort)."""
    from activelearn.selectors_explore import ExploreFilters

    species = project.species.order_by("position")[3].pk
    return {
        "all by id": (ExploreFilters(), "id"),
        "verify species (auto+machine, lowest confidence)": (
            ExploreFilters(species_id=species, sources=["auto", "machine"]),
            "confidence",
        ),
        "human labels": (ExploreFilters(sources=["human"]), "id"),
        "confidence 0.3-0.6, by confidence": (
            ExploreFilters(confidence_min=0.3, confidence_max=0.6),
            "-confidence",
        ),
        "one camera, by time": (ExploreFilters(camera="camera 3"), "time"),
        "species (any source)": (ExploreFilters(species_id=species), "id"),
    }


def _requests(project: Any, n: int) -> dict[str, list[float]]:
    """Seconds per request (explore_page + images_untimed_count), per case."""
    from activelearn.selectors import classifier_latest
    from activelearn.selectors_explore import explore_page, images_untimed_count
    from detector.models import Crop

    classifier = classifier_latest(project=project)
    first_id = Crop.objects.filter(project=project).order_by("id").values_list("id", flat=True)[0]
    starts = [""] + [str(first_id + (n * s) // STARTS) for s in range(1, STARTS)]
    out: dict[str, list[float]] = {}
    for name, (filters, sort) in _cases(project, classifier).items():
        times = out.setdefault(name, [])
        for start in starts if sort == "id" else [""]:
            cursor = start
            for _ in range(DEPTH if sort == "id" else DEPTH * STARTS):
                t0 = time.perf_counter()
                page = explore_page(
                    project=project,
                    filters=filters,
                    classifier=classifier,
                    sort=sort,
                    cursor=cursor,
                    limit=PAGE,
                )
                images_untimed_count(project=project)
                times.append(time.perf_counter() - t0)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        print(f"  {project.slug} {name}: {len(times)} requests, max {max(times):.2f} s", flush=True)
    return out


def main() -> None:
    n = crops_10m.N
    _django()
    from projects.models import Project

    big = Project.objects.get(pk=_project_for(n))
    small = Project.objects.get(pk=_project_for(min(n, TEMPLATE) // 10))
    big_times: dict[str, list[float]] = {}
    small_times: dict[str, list[float]] = {}
    # At a million crops and more a slow case costs seconds a request: one walk is enough.
    for _ in range(1 if n >= 1_000_000 else REPEATS):
        for name, values in _requests(big, n).items():
            big_times.setdefault(name, []).extend(values)
        for name, values in _requests(small, min(n, TEMPLATE) // 10).items():
            small_times.setdefault(name, []).extend(values)

    def p95(values: list[float]) -> float:
        return 1000 * float(np.percentile(values, 95))

    every = [v for values in big_times.values() for v in values]
    every_small = [v for values in small_times.values() for v in values]
    params = {
        "n": n,
        "database": f"PostgreSQL {DB}",
        "measured": "explore_page + images_untimed_count called directly (no HTTP)",
        "page": PAGE,
        "requests": len(every),
        "p50_ms": 1000 * float(np.percentile(every, 50)),
        "p95_ms_per_case": {name: p95(values) for name, values in big_times.items()},
        "small_crops": min(n, TEMPLATE) // 10,
        "small_p95_ms_per_case": {name: p95(values) for name, values in small_times.items()},
    }
    out = result_write(
        name="explore_10m",
        unit="ms per request (p95)",
        value=p95(every),
        baseline_name=f"the same requests on a project of {min(n, TEMPLATE) // 10} crops",
        baseline=p95(every_small),
        params=params,
    )
    print(f"explore_10m N={n}: p95 {p95(every):.0f} ms over {len(every)} requests -> {out}")
    for name, values in big_times.items():
        print(f"  {name}: p95 {p95(values):.0f} ms (small {p95(small_times[name]):.0f} ms)")


if __name__ == "__main__":
    main()
