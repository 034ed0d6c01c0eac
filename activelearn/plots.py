"""Figures for the admin page and the benchmark command, drawn with matplotlib (Agg).

Arrays in, SVG text or PNG files out; no Django.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from activelearn.evaluation import LearningCurve  # noqa: E402

__all__ = ["learning_curve_svg"]


def learning_curve_svg(
    n_labels: Sequence[float],
    accuracy: Sequence[float],
    *,
    fit: LearningCurve | None,
    target: float | None = None,
) -> str:
    """An SVG learning curve: one dot per classifier version, the fitted curve ahead of it.

    Args:
        n_labels: (P,) labels each point was trained with.
        accuracy: (P,) estimated (cross-validated) accuracy of each point, in [0, 1].
        fit: a fitted ``LearningCurve`` to draw up to twice the last label count, or None.
        target: a horizontal line at the target accuracy, or None.

    Returns:
        The ``<svg>`` element as text (no XML prolog), for inlining in a page.
    """
    figure = Figure(figsize=(6.0, 3.2), dpi=96)
    axes = figure.subplots()
    axes.plot(n_labels, accuracy, "o-", color="#2b6cb0", label="cross-validated accuracy")
    if fit is not None and fit.fitted and len(n_labels):
        grid = np.linspace(min(n_labels), 2 * max(n_labels), 100)
        axes.plot(grid, fit.predict(grid), "--", color="#718096", label="fitted trend")
    if target is not None:
        axes.axhline(target, color="#c05621", linewidth=1, label=f"target {target:.1%}")
    axes.set_xlabel("labelled crops")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]
