"""Text table and learning-curve plot of an ``al_benchmark`` result (its JSON dict)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Table blocks: (title, key of the mean list, key of the sd list or None).
_BLOCKS: tuple[tuple[str, str, str | None], ...] = (
    ("test top-1 (crop), mean ± sd over seeds", "top1_mean", "top1_sd"),
    ("test top-5 (crop), mean", "top5_mean", None),
    ("test top-1 (sequence: mean crop probabilities), mean", "seq_top1_mean", None),
    ("test F1 macro (crop), mean", "f1_macro_mean", None),
    ("test log loss (crop, nats), mean", "log_loss_mean", None),
)
# Metrics of the settings comparison: (JSON name, heading).
_COMPARED: tuple[tuple[str, str], ...] = (
    ("top1", "top-1"),
    ("top5", "top-5"),
    ("f1_macro", "F1 macro"),
    ("log_loss", "log loss"),
)


def _cell(strategy: dict[str, Any], mean_key: str, sd_key: str | None, row: int) -> str:
    mean = f"{strategy[mean_key][row]:.3f}"
    return f"{mean}±{strategy[sd_key][row]:.3f}" if sd_key else mean


def format_table(record: dict[str, Any]) -> str:
    """One block per metric: a row per label count, a column per strategy."""
    strategies: dict[str, dict[str, Any]] = record["strategies"]
    names = list(strategies)
    labels = strategies[names[0]]["labels"]
    lines = []
    for title, mean_key, sd_key in _BLOCKS:
        if mean_key not in strategies[names[0]]:  # a record from before the key existed
            continue
        width = 13 if sd_key else 8
        lines += ["", title, "labels " + " ".join(f"{n[:width]:>{width}}" for n in names)]
        for row, n_labels in enumerate(labels):
            cells = [f"{_cell(strategies[n], mean_key, sd_key, row):>{width}}" for n in names]
            lines.append(f"{n_labels:>6} " + " ".join(cells))
    lines += _diagnostics_lines(strategies, labels)
    lines += [
        "",
        f"full pool ({record.get('n_pool', '?')} labels, starting embedding): "
        f"top-1 {record['full_pool_top1']:.3f}  top-5 {record['full_pool_top5']:.3f}  "
        f"sequence top-1 {record.get('full_pool_seq_top1', float('nan')):.3f}",
    ]
    lines += _species_lines(record)
    if record.get("variants"):
        lines += _comparison_lines(record)
    return "\n".join(lines)


def _acc(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def _species_lines(record: dict[str, Any]) -> list[str]:
    """Per-species test accuracy: the full pool and each strategy after its last round."""
    species: list[str] = record.get("species") or []
    if not species or "full_pool_per_species" not in record:
        return []
    strategies: dict[str, dict[str, Any]] = record["strategies"]
    n_pool = record.get("species_n_pool") or [0] * len(species)
    n_test = record.get("species_n_test") or [0] * len(species)
    heads = ["full pool"] + [f"{n[:10]}@{c['labels'][-1]}" for n, c in strategies.items()]
    columns = [record["full_pool_per_species"]] + [
        c["per_species_mean"] for c in strategies.values()
    ]
    return _species_table(
        "per-species test accuracy (share of the species' test crops right), mean over seeds",
        species,
        n_pool,
        n_test,
        heads,
        columns,
    )


def _species_table(
    title: str,
    species: list[str],
    n_pool: list[int],
    n_test: list[int],
    heads: list[str],
    columns: list[list[float | None]],
) -> list[str]:
    width = max(14, *(len(h) + 1 for h in heads))
    lines = [
        "",
        title,
        f"{'species':<24} {'pool':>5} {'test':>5} " + "".join(f"{h:>{width}}" for h in heads),
    ]
    order = sorted(range(len(species)), key=lambda i: (-n_pool[i], species[i]))
    for i in order:
        cells = "".join(f"{_acc(col[i]):>{width}}" for col in columns)
        lines.append(f"{species[i][:24]:<24} {n_pool[i]:>5} {n_test[i]:>5} {cells}")
    return lines


def _comparison_lines(record: dict[str, Any]) -> list[str]:
    """The settings side by side: full pool and each strategy's last round, mean ± sd over
    seeds, then per species (full pool, and the first strategy's last round)."""
    variants: list[dict[str, Any]] = record["variants"]
    lines = ["", "settings compared on the same pool and seeds (mean ± sd over seeds)"]
    header = f"{'setting':<40} {'at':>14} " + "".join(f"{h:>14}" for _, h in _COMPARED)
    lines.append(header)
    for variant in variants:
        lines.append(
            f"{variant['name'][:40]:<40} {'full pool':>14} "
            + "".join(
                f"{_mean_sd(variant[f'full_pool_{m}'], variant['full_pool_sd'][m]):>14}"
                for m, _ in _COMPARED
            )
        )
        for name, curve in variant["strategies"].items():
            at = f"{name[:8]}@{curve['labels'][-1]}"
            lines.append(
                f"{'':<40} {at:>14} "
                + "".join(
                    f"{_mean_sd(curve[f'{m}_mean'][-1], curve[f'{m}_sd'][-1]):>14}"
                    for m, _ in _COMPARED
                )
            )
    species = record.get("species") or []
    n_pool = record.get("species_n_pool") or [0] * len(species)
    n_test = record.get("species_n_test") or [0] * len(species)
    short = [v["name"].replace("balance=", "").replace("ensemble=", "K=") for v in variants]
    lines += _species_table(
        "per-species test accuracy, full pool, per setting",
        species,
        n_pool,
        n_test,
        short,
        [v["full_pool_per_species"] for v in variants],
    )
    first = next(iter(variants[0]["strategies"]))
    at = variants[0]["strategies"][first]["labels"][-1]
    lines += _species_table(
        f"per-species test accuracy, {first} at {at} labels, per setting",
        species,
        n_pool,
        n_test,
        short,
        [v["strategies"][first]["per_species_mean"] for v in variants],
    )
    return lines


def _mean_sd(mean: float, sd: float) -> str:
    return f"{mean:.3f}±{sd:.3f}"


def _diagnostics_lines(strategies: dict[str, dict[str, Any]], labels: list[int]) -> list[str]:
    """What each strategy labelled, at the round nearest 100 labels (means over seeds)."""
    row = min(range(len(labels)), key=lambda i: abs(labels[i] - 100))
    lines = [
        "",
        f"what was labelled at {labels[row]} labels: classes, sequences covered, class balance "
        "(entropy/log C); picks' sparsity and crop-size percentiles (random ~0.5)",
    ]
    for name, curve in strategies.items():
        diag = curve.get("diagnostics")
        if diag:
            lines.append(
                f"{name:>16}: {diag['classes_covered'][row]:5.1f} classes "
                f"{diag['sequences_covered'][row]:5.1f} sequences  balance "
                f"{diag['class_entropy'][row]:.3f}  sparsity {diag['sparsity_pct']:.2f}  "
                f"size {diag['size_pct']:.2f}"
            )
    return lines


def write_plot(record: dict[str, Any], path: Path, *, title: str) -> None:
    """PNG of test top-1 vs labels per strategy (mean ± sd band) and the full-pool line."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, curve in record["strategies"].items():
        low = [m - s for m, s in zip(curve["top1_mean"], curve["top1_sd"], strict=True)]
        high = [m + s for m, s in zip(curve["top1_mean"], curve["top1_sd"], strict=True)]
        (line,) = ax.plot(curve["labels"], curve["top1_mean"], marker="o", ms=3, label=name)
        ax.fill_between(curve["labels"], low, high, color=line.get_color(), alpha=0.15)
    ax.axhline(
        record["full_pool_top1"], color="black", ls="--", lw=1, label="full pool, starting emb."
    )
    ax.set(xlabel="labelled crops", ylabel="test top-1 accuracy (crops)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
