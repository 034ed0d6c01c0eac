"""Text table and learning-curve plot of an ``al_benchmark`` result (its JSON dict)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Table blocks: (title, key of the mean list, key of the sd list or None).
_BLOCKS: tuple[tuple[str, str, str | None], ...] = (
    ("test top-1 (crop), mean ± sd over seeds", "top1_mean", "top1_sd"),
    ("test top-5 (crop), mean", "top5_mean", None),
    ("test top-1 (sequence: mean crop probabilities), mean", "seq_top1_mean", None),
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
    return "\n".join(lines)


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
