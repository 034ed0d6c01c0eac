"""Figures for the admin page and the benchmark command, drawn with matplotlib (Agg).

Arrays in, SVG text or PNG files out; no Django.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from activelearn.evaluation import LearningCurve  # noqa: E402

__all__ = ["confusion_matrix_svg", "label_counts_svg", "learning_curve_svg"]

# Text stays text in the SVG (not glyph outlines): searchable, selectable and much smaller.
_TEXT_AS_TEXT: dict[Any, Any] = {"svg.fonttype": "none"}


def learning_curve_svg(
    n_labels: Sequence[float],
    accuracy: Sequence[float],
    *,
    fit: LearningCurve | None,
    target: float | None = None,
    top5: Sequence[float | None] | None = None,
    f1_macro: Sequence[float | None] | None = None,
) -> str:
    """An SVG learning curve: one dot per classifier version, the fitted curve ahead of it.

    Args:
        n_labels: (P,) labels each point was trained with.
        accuracy: (P,) estimated (cross-validated) top-1 accuracy of each point, in [0, 1].
        fit: a fitted ``LearningCurve`` to draw up to twice the last label count, or None.
        target: a horizontal line at the target accuracy, or None.
        top5, f1_macro: (P,) optional further cross-validated scores of the same points, each
            drawn as its own line over the points that have one (None: not measured).

    Returns:
        The ``<svg>`` element as text (no XML prolog), for inlining in a page.
    """
    figure = Figure(figsize=(6.0, 3.2), dpi=96)
    axes = figure.subplots()
    axes.plot(n_labels, accuracy, "o-", color="#2b6cb0", label="cross-validated top-1")
    for values, style, colour, name in (
        (top5, "s:", "#2f855a", "top-5"),
        (f1_macro, "^-.", "#805ad5", "F1 macro"),
    ):
        if values is None:
            continue
        if len(values) != len(n_labels):
            raise ValueError(f"{name} must have one value per point ({len(n_labels)})")
        kept = [(n, v) for n, v in zip(n_labels, values, strict=True) if v is not None]
        if kept:
            axes.plot(*zip(*kept, strict=True), style, color=colour, label=name)
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
    return _svg_text(figure)


# matplotlib's SVG styles its elements with style="prop: value; ..." attributes and a <style>
# rule; a page under a strict Content-Security-Policy (style-src 'self') refuses both. Every
# property it writes is also an SVG presentation attribute, which no policy restricts.
_STYLE_ATTRIBUTE = re.compile(r' style="([^"]*)"')
_STYLE_ELEMENT = re.compile(r"\s*<style[^>]*>(.*?)</style>", re.DOTALL)
_ROOT_RULE = re.compile(r"^\s*\*\s*\{(.*)\}\s*$", re.DOTALL)


def _presentation_attributes(declarations: str) -> str:
    """``"fill: #fff; stroke-width: 0.8"`` as ``' fill="#fff" stroke-width="0.8"'``."""
    attributes = []
    for declaration in declarations.split(";"):
        name, _, value = declaration.partition(":")
        if name.strip() and value.strip():
            attributes.append(f' {name.strip()}="{value.strip()}"')
    return "".join(attributes)


def _without_inline_css(svg: str) -> str:
    """The SVG with its style attributes and its ``* {...}`` <style> rule as presentation
    attributes; it draws the same.

    The ``*`` rule (matplotlib's default line joins and caps) goes onto the root element, from
    which the elements inherit it; an element's own attribute (from its style) still wins, as
    the style did over the rule.

    Raises:
        ValueError: for a <style> element with another rule than ``* {...}`` (a matplotlib
        whose output this does not know).
    """
    root_attributes = ""
    for rule in _STYLE_ELEMENT.findall(svg):
        match = _ROOT_RULE.match(rule)
        if match is None:
            raise ValueError(f"unexpected <style> rule in matplotlib's SVG: {rule!r}")
        root_attributes += _presentation_attributes(match.group(1))
    svg = _STYLE_ELEMENT.sub("", svg)
    svg = _STYLE_ATTRIBUTE.sub(lambda m: _presentation_attributes(m.group(1)), svg)
    return svg.replace("<svg ", f"<svg{root_attributes} ", 1)


def _svg_text(figure: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context(_TEXT_AS_TEXT):
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return _without_inline_css(text[text.index("<svg") :])


def _plain(name: str) -> str:
    """A species name as literal text: a ``$`` would otherwise start mathtext."""
    return name.replace("$", r"\$")


def label_counts_svg(
    names: Sequence[str], human: Sequence[int], machine: Sequence[int] | None = None
) -> str:
    """Horizontal bars of the crops per species: human labels, and machine labels beside them.

    Args:
        names: (S,) species names, drawn top to bottom in this order.
        human: (S,) decided human labels per species.
        machine: (S,) machine labels (of the crops no human labelled) per species, or None.

    Returns:
        The ``<svg>`` element as text; each bar carries its count as a text label.
    """
    if len(human) != len(names) or (machine is not None and len(machine) != len(names)):
        raise ValueError("names, human and machine must have the same length")
    n = len(names)
    height = 1.2 + 0.22 * max(n, 1) * (2 if machine is not None else 1)
    figure = Figure(figsize=(6.0, height), dpi=96)
    axes = figure.subplots()
    rows = np.arange(n)
    bar = 0.4 if machine is not None else 0.8
    human_bars = axes.barh(
        rows - (bar / 2 if machine is not None else 0.0),
        human,
        height=bar,
        color="#2f6b3f",
        label="human labels",
    )
    axes.bar_label(human_bars, labels=[str(int(v)) for v in human], padding=2, fontsize=8)
    if machine is not None:
        machine_bars = axes.barh(
            rows + bar / 2, machine, height=bar, color="#a0aec0", label="machine labels"
        )
        axes.bar_label(machine_bars, labels=[str(int(v)) for v in machine], padding=2, fontsize=8)
    axes.set_yticks(rows, [_plain(name) for name in names], fontsize=9)
    axes.invert_yaxis()  # the first species on top, as in the list
    axes.set_xlabel("crops")
    largest = max([*human, *(machine or []), 1])
    axes.set_xlim(0, largest * 1.15)  # room for the count labels
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return _svg_text(figure)


def confusion_matrix_svg(counts: np.ndarray, names: Sequence[str]) -> str:
    """A row-normalised confusion matrix: true species down, predicted species across.

    Args:
        counts: (C, C) integer counts, ``counts[i, j]`` crops of species i predicted as j
            (e.g. ``sklearn.metrics.confusion_matrix``).
        names: (C,) species names of the rows and columns.

    Returns:
        The ``<svg>`` element as text. Each row shows the share of that species' crops
        predicted as each species; cells carry their percentage up to 25 species (beyond,
        the colours alone stay readable), and the figure grows with the number of species.
    """
    counts = np.asarray(counts)
    c = len(names)
    if counts.shape != (c, c):
        raise ValueError(f"counts must be ({c}, {c}) for {c} names, got {counts.shape}")
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = min(max(4.0, 1.5 + 0.32 * c), 40.0)
    fontsize = 9 if c <= 20 else 7 if c <= 40 else 5
    figure = Figure(figsize=(side + 1.5, side), dpi=96)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Greens", vmin=0.0, vmax=1.0, interpolation="nearest")
    labels = [_plain(name) for name in names]
    axes.set_xticks(np.arange(c), labels, rotation=90, fontsize=fontsize)
    axes.set_yticks(
        np.arange(c),
        [f"{label} ({int(n)})" for label, n in zip(labels, totals[:, 0], strict=True)],
        fontsize=fontsize,
    )
    axes.set_xlabel("predicted species (cross-validated)")
    axes.set_ylabel("labelled species (crops)")
    if c <= 25:
        for i in range(c):
            for j in range(c):
                if counts[i, j]:
                    axes.text(
                        j,
                        i,
                        f"{shares[i, j]:.0%}",
                        ha="center",
                        va="center",
                        fontsize=max(fontsize - 2, 5),
                        color="white" if shares[i, j] > 0.5 else "#1d2521",
                    )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row")
    figure.tight_layout()
    return _svg_text(figure)
