"""The cluster test runs only under ``make cluster-test`` (TRAPWISE_CLUSTER_TEST=1): it needs
the machine's PostgreSQL and Redis and takes minutes, so ``make test`` skips it, saying why."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("TRAPWISE_CLUSTER_TEST") == "1":
        return
    skip = pytest.mark.skip(reason="the cluster test runs with `make cluster-test` only")
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(skip)
