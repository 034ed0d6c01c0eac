"""``al_benchmark``'s default: the product's loop with the product's settings
(``activelearn.experiment_product``), on rotated sequence folds or one pool/test split.

Every setting of the simulated project is read from the product itself: the ``Project`` field
defaults (class balance, ensemble size, first-round strategy, crop padding, seed, audit share),
``services.retrain.CV_FOLDS``; the ``default`` strategy is the rule the product's rounds follow
(``selection_rule.strategy_for_round``). Nothing is repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.management.base import CommandError
from django.db import models

from activelearn.experiment import CropFeatures
from activelearn.experiment_product import (
    SUMMARY_METRICS,
    ProductConfig,
    ProductRun,
    crops_subset,
    pca_embedding,
    product_run,
    product_summary,
    sequence_folds,
)
from activelearn.services.retrain import CV_FOLDS
from projects.models import Project

# Until the project setting for the audit share exists (issue 15, item 4), the share the issue
# names as its default; ``Project.audit_share``'s default wins once the field is there.
AUDIT_SHARE_UNTIL_SETTING = 0.1


def default_data() -> Path:
    """missouri-dev's annotations beside the checkout (``../shared/data/missouri-dev``)."""
    return Path(settings.BASE_DIR).parent / "shared" / "data" / "missouri-dev" / "annotations.json"


def project_default(name: str) -> Any:
    """The default of ``Project.<name>``: what a new project gets."""
    field = Project._meta.get_field(name)
    assert isinstance(field, models.Field), name
    return field.get_default()


def product_settings() -> dict[str, Any]:
    """The settings a new project starts with, as the simulation needs them."""
    try:
        audit_share = float(project_default("audit_share"))
    except FieldDoesNotExist:
        audit_share = AUDIT_SHARE_UNTIL_SETTING
    return {
        "first_round_strategy": str(project_default("first_round_strategy")),
        "class_balance": str(project_default("class_balance")),
        "ensemble_size": int(project_default("ensemble_size")),
        "audit_share": audit_share,
        "cv_folds": CV_FOLDS,
        "padding": float(project_default("crop_padding")),
        "seed": int(project_default("seed")),
    }


def budgets_parse(raw: str) -> tuple[int, ...]:
    """``"100,200,300"`` -> (100, 200, 300); CommandError unless distinct ascending ints."""
    try:
        budgets = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise CommandError(f"--budgets needs integers, got {raw!r}") from exc
    if not budgets or list(budgets) != sorted(set(budgets)):
        raise CommandError(f"--budgets needs distinct ascending label counts, got {raw!r}")
    return budgets


def product_config(options: dict[str, Any], product: dict[str, Any]) -> ProductConfig:
    """The ProductConfig of --init, --step, --budgets and the product's settings (every field
    of ``ProductConfig`` that ``product_settings`` names)."""
    try:
        settings_ = {f.name: product[f.name] for f in fields(ProductConfig) if f.name in product}
        return ProductConfig(
            init=options["init"],
            step=options["step"],
            budgets=budgets_parse(options["budgets"]),
            **settings_,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


@dataclass(frozen=True)
class Split:
    """One pool/test pair of a benchmark (a fold, or the given files)."""

    name: str
    pool: CropFeatures
    test: CropFeatures


def fold_splits(crops: CropFeatures, n_folds: int) -> list[Split]:
    """Fold f as the test, the other folds as the pool (``sequence_folds``); CommandError when
    a fold would be empty."""
    fold = sequence_folds(crops.labels, crops.seq_ids, n_folds=n_folds)
    empty = [f + 1 for f in range(n_folds) if not (fold == f).any()]
    if empty:
        raise CommandError(
            f"fold(s) {empty} of {n_folds} get no crop: no species has {max(empty)} or more "
            "sequences; use fewer folds"
        )
    return [
        Split(f"fold {f + 1}", crops_subset(crops, fold != f), crops_subset(crops, fold == f))
        for f in range(n_folds)
    ]


def product_benchmark(
    splits: list[Split],
    strategies: list[str],
    config: ProductConfig,
    *,
    seeds: range,
    embedding_dim: int,
    seed: int,
    write: Any,
) -> dict[str, Any]:
    """Run every strategy and seed on every split; the JSON record (``product_summary``)."""
    per_split: list[list[ProductRun]] = []
    for split in splits:
        x_pool, x_test = pca_embedding(
            split.pool.features, split.test.features, dim=embedding_dim, seed=seed
        )
        if config.budgets[-1] > len(split.pool):
            raise CommandError(f"{split.name}: budget {config.budgets[-1]} exceeds its pool")
        runs = []
        for strategy in strategies:
            for run_seed in seeds:
                try:
                    run = product_run(
                        strategy,
                        split.pool,
                        split.test,
                        x_pool=x_pool,
                        x_test=x_test,
                        config=config,
                        seed=run_seed,
                    )
                except ValueError as exc:
                    raise CommandError(f"{split.name}: {exc}") from exc
                last = run.points[-1]
                write(
                    f"  {split.name} {strategy} seed {run_seed}: stored top-1 "
                    f"{last.stored.top1:.3f} (crop {last.crop.top1:.3f}, reference "
                    f"{last.reference.top1:.3f}) at {last.n_labels} labels ({run.seconds:.0f} s)"
                )
                runs.append(run)
        per_split.append(runs)
    record = product_summary(per_split, budgets=config.budgets)
    record["splits"] = [
        {"name": s.name, "n_pool": len(s.pool), "n_test": len(s.test)} for s in splits
    ]
    record["picks"] = {
        s.name: {f"{r.strategy} seed {r.seed}": r.picks.tolist() for r in runs}
        for s, runs in zip(splits, per_split, strict=True)
    }
    return record


_TABLE_ROWS = (
    ("stored top-1 (event-combined)", "stored_top1"),
    ("crop-only top-1", "crop_top1"),
    ("stored top-5", "stored_top5"),
    ("sequence top-1", "stored_seq_top1"),
    ("reference top-1 (linear probe, same labels)", "reference_top1"),
)


def product_table(record: dict[str, Any]) -> str:
    """The summary as text: per strategy, each metric's mean / worst fold per budget, then the
    audit stream's coverage and width per budget."""
    budgets = record["budgets"]
    assert {key for _, key in _TABLE_ROWS} <= {name for name, _, _ in SUMMARY_METRICS}
    lines = [f"mean over {record['n_folds']} split(s) / worst split, at {budgets} labels"]
    for strategy, entry in record["strategies"].items():
        lines.append(f"{strategy}  (classifier kept: {entry['backends']})")
        for label, key in _TABLE_ROWS:
            cells = "  ".join(
                f"{m:.3f}/{w:.3f}"
                for m, w in zip(entry[key]["mean"], entry[key]["worst"], strict=True)
            )
            lines.append(f"  {label:<45} {cells}")
        for kind, what in (("audit", "stored"), ("audit_crop", "crop-only")):
            lines += [f"  {what} {line}" for line in _audit_lines(entry[kind])]
    for kind, what in (("audit", "stored labels"), ("audit_crop", "crop-only labels")):
        if kind in record:
            lines += [f"{what}, all points: {line}" for line in _audit_lines({"": record[kind]})]
    return "\n".join(lines)


def _audit_lines(audits: dict[str, Any]) -> list[str]:
    """One line per budget (key) of audit summaries: truth, both intervals' coverage and width."""
    lines = []
    for budget, audit in audits.items():
        lines.append(
            f"audit{' at ' + budget if budget else ''}: n {audit['n_audit_mean']:.0f}, "
            f"truth {audit['truth_mean']:.3f}; Wilson coverage "
            f"{audit['wilson_coverage']:.2f} width {audit['wilson_width']:.3f}; "
            f"PPI coverage {audit['ppi_coverage']:.2f} width {audit['ppi_width']:.3f} "
            f"({100 * audit['ppi_narrower']:.0f}% narrower)"
        )
    return lines
