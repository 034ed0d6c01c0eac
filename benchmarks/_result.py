"""Write one benchmark result as JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

BENCH_DIR = Path(os.environ.get("TRAPWISE_BENCH_DIR", "var/bench"))


def fold_table(
    results: dict[str, dict[str, list[float]]],
) -> dict[str, dict[str, dict[str, float]]]:
    """``results[config][budget]`` (one score per fold) -> ``{"mean", "worst"}`` per cell,
    printed as a table (mean/worst) to stdout."""
    table = {
        config: {
            budget: {"mean": float(sum(v) / len(v)), "worst": float(min(v))}
            for budget, v in by_budget.items()
        }
        for config, by_budget in results.items()
    }
    for config, by_budget in table.items():
        cells = {b: f"{m['mean']:.3f}/{m['worst']:.3f}" for b, m in by_budget.items()}
        print(f"{config:24s}", cells)
    return table


def result_write(
    *,
    name: str,
    unit: str,
    value: float,
    baseline_name: str,
    baseline: float,
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``var/bench/<name>.json`` and return its path.

    ``extra`` adds top-level fields (a benchmark's own figures) beside the common ones, which
    it cannot replace.
    """
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        **(extra or {}),
        "name": name,
        "unit": unit,
        "value": value,
        "baseline_name": baseline_name,
        "baseline": baseline,
        "ratio": value / baseline if baseline else None,
        "params": {**params, "cpus": os.cpu_count(), "machine": platform.machine()},
    }
    path = BENCH_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
