"""``al_benchmark --unit crop,event``: labelling by crop or by capture event on the same
splits, the budget counted in human decisions (``activelearn.experiment_events``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from activelearn.experiment_events import UNITS, UnitPoint, unit_run, units_summary
from activelearn.experiment_product import pca_embedding
from activelearn.management.commands._al_product import Split, budgets_parse

UNITS_FORMAT = "trapwise-al-benchmark-units/1"


def units_parse(raw: str) -> list[str]:
    """``"crop,event"`` -> ["crop", "event"]; CommandError for an unknown or repeated unit."""
    units = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [u for u in units if u not in UNITS]
    if not units or unknown or len(set(units)) != len(units):
        raise CommandError(f"--unit takes distinct units of {', '.join(UNITS)}, got {raw!r}")
    return units


def units_benchmark(
    splits: list[Split],
    units: list[str],
    *,
    budgets_raw: str,
    seeds: range,
    embedding_dim: int,
    seed: int,
    write: Any,
) -> dict[str, Any]:
    """Every unit and seed on every split (PCA head fitted on each pool, as the product); the
    JSON record with ``units_summary``."""
    budgets = budgets_parse(budgets_raw)
    per_fold: list[list[UnitPoint]] = []
    for split in splits:
        x_pool, x_test = pca_embedding(
            split.pool.features, split.test.features, dim=embedding_dim, seed=seed
        )
        points: list[UnitPoint] = []
        for unit in units:
            for run_seed in seeds:
                run = unit_run(
                    unit,
                    x_pool=x_pool,
                    pool_labels=split.pool.labels,
                    pool_events=split.pool.seq_ids,
                    x_test=x_test,
                    test_labels=split.test.labels,
                    budgets=budgets,
                    seed=run_seed,
                )
                write(
                    f"  {split.name} {unit} seed {run_seed}: "
                    + ", ".join(
                        f"{p.decisions} decisions ({p.n_labelled} crops) {p.top1:.3f}" for p in run
                    )
                )
                points += run
        per_fold.append(points)
    return {
        "format": UNITS_FORMAT,
        "budgets": list(budgets),
        "units": units_summary(per_fold, budgets=budgets),
    }


def units_table(record: dict[str, Any]) -> str:
    """Mean and worst fold top-1 per unit and budget, with the crops each budget labelled."""
    lines = ["unit    decisions  crops  wrong  top-1 mean  worst"]
    for unit, summary in record["units"].items():
        for i, budget in enumerate(record["budgets"]):
            lines.append(
                f"{unit:<7} {budget:>9} {summary['crops_labelled'][i]:>6} "
                f"{summary['wrong_labels'][i]:>6} {summary['mean'][i]:>11.3f} "
                f"{summary['worst'][i]:>6.3f}"
            )
    return "\n".join(lines)
