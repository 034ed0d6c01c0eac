"""Explore paging: keyset pages (``activelearn.selectors_explore.explore_page``) against OFFSET
pages of the same crops, on a synthetic project of N crops in SQLite.

The project is export streaming's (``export_stream._project``: two crops per image, five images
per event, a READY classifier with a threshold and a top-5 prediction per crop, human labels on
one crop in 40), built in a throw-away database under var/bench/ (not timed). Measured, each
page timed from the call to the crops in hand (the query and the model rows, as the view gets
them):

- ``keyset``: every page of PAGE crops, in id order, walked from the first to the last by
  ``next_cursor`` (N / PAGE pages): the headline p95;
- ``offset`` (the baseline): pages at SAMPLES depths spread evenly over the same walk, each read
  with OFFSET (walking all of them would take hours at a million crops: OFFSET reads every row
  before the page, so its cost grows with the depth; spread samples give its distribution over
  the walk);
- ``verify``: the "verify species X" view (one species' auto and machine labels, lowest
  confidence first), its first VERIFY_PAGES pages by keyset;
- ``keyset_small``: the same keyset pages of a project of SMALL crops built the same way in
  the same database, walked REPEATS times: "a million crops page as fast as a hundred".

``value`` is the keyset p95 (ms per page), ``baseline`` OFFSET's p95 over the sampled depths.
N is 100,000 by default (about a minute in all on 2 cores);
``python -m benchmarks explore_paging --crops 1000000`` (or ``TRAPWISE_BENCH_EXPLORE_CROPS``)
runs the claim's size.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from benchmarks._result import BENCH_DIR, result_write
from benchmarks.export_stream import _django, _project

N_CROPS = int(os.environ.get("TRAPWISE_BENCH_EXPLORE_CROPS", "100000"))
PAGE = 60  # the explore page's size (annotator.views.explore.PAGE_SIZE)
SAMPLES = 100
VERIFY_PAGES = 20
SMALL, REPEATS = 100, 50
SEED = 0
WORK = BENCH_DIR / "explore_paging"


def _ms(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "max_ms": float(values.max()),
        "pages": len(seconds),
    }


def _walk(
    *, project: Any, filters: Any, classifier: Any, sort: str, limit_pages: int | None
) -> tuple[list[float], int]:
    """Seconds per keyset page and the crops seen, walking ``next_cursor``."""
    from activelearn.selectors_explore import explore_page

    seconds: list[float] = []
    seen = 0
    cursor = ""
    while limit_pages is None or len(seconds) < limit_pages:
        start = time.perf_counter()
        page = explore_page(
            project=project,
            filters=filters,
            classifier=classifier,
            sort=sort,
            cursor=cursor,
            limit=PAGE,
        )
        seconds.append(time.perf_counter() - start)
        seen += len(page.crops)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return seconds, seen


def main(n_crops: int | None = None) -> None:
    n_crops = n_crops or N_CROPS
    _django(WORK)
    from django.contrib.auth.models import User

    from activelearn.selectors import classifier_latest
    from activelearn.selectors_explore import ExploreFilters, explore_page_offset
    from projects.models import Project

    start = time.perf_counter()
    admin = User.objects.create_user(username="bench-admin", password="unused")
    _project(slug="explore", n_crops=n_crops, admin=admin, rng=np.random.default_rng(SEED))
    _project(slug="small", n_crops=SMALL, admin=admin, rng=np.random.default_rng(SEED))
    setup_s = time.perf_counter() - start
    project = Project.objects.get(slug="explore")
    classifier = classifier_latest(project=project)
    everything = ExploreFilters()

    keyset, seen = _walk(
        project=project, filters=everything, classifier=classifier, sort="id", limit_pages=None
    )
    assert seen == n_crops, (seen, n_crops)
    pages = -(-n_crops // PAGE)
    depths = sorted({int(d) for d in np.linspace(0, pages - 1, min(SAMPLES, pages))})
    offset = []
    for depth in depths:
        begin = time.perf_counter()
        crops = explore_page_offset(
            project=project,
            filters=everything,
            classifier=classifier,
            offset=depth * PAGE,
            limit=PAGE,
        )
        offset.append(time.perf_counter() - begin)
        assert crops, depth
    species = project.species.order_by("position").first()
    assert species is not None
    verify_filters = ExploreFilters(species_id=species.pk, sources=["auto", "machine"])
    verify, _ = _walk(
        project=project,
        filters=verify_filters,
        classifier=classifier,
        sort="confidence",
        limit_pages=VERIFY_PAGES,
    )

    small = Project.objects.get(slug="small")
    small_classifier = classifier_latest(project=small)
    keyset_small: list[float] = []
    for _ in range(REPEATS):
        seconds, seen = _walk(
            project=small,
            filters=everything,
            classifier=small_classifier,
            sort="id",
            limit_pages=None,
        )
        assert seen == SMALL, seen
        keyset_small += seconds

    figures = {
        "keyset": _ms(keyset),
        "offset": _ms(offset),
        "verify": _ms(verify),
        "keyset_small": _ms(keyset_small),
    }
    for name, row in figures.items():
        print(f"{name:8s} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()))
    path = result_write(
        name="explore_paging",
        unit="ms per page (p95)",
        value=figures["keyset"]["p95_ms"],
        baseline_name="OFFSET pages (p95 over evenly spread depths)",
        baseline=figures["offset"]["p95_ms"],
        params={
            "crops": n_crops,
            "page": PAGE,
            "offset_samples": len(depths),
            "verify_pages": VERIFY_PAGES,
            "small_crops": SMALL,
            "database": "sqlite",
            "setup_s": round(setup_s, 1),
        },
        extra=figures,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--crops", type=int, default=N_CROPS)
    main(parser.parse_args().crops)
