"""The admin page's figures: text stays text, bars carry their counts, rows are normalised."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from activelearn.evaluation import learning_curve_fit
from activelearn.plots import (
    _without_inline_css,
    confusion_matrix_svg,
    label_counts_svg,
    learning_curve_svg,
)


def _texts(svg: str) -> list[str]:
    """The SVG's text elements, as a reader (or a screen reader) sees them."""
    return [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_label_counts_bars_name_species_and_counts() -> None:
    svg = label_counts_svg(["red fox", "agouti", "ocelot"], [7, 3, 0], [120, 41, 2])
    assert svg.startswith("<svg")
    texts = _texts(svg)
    for name in ("red fox", "agouti", "ocelot", "human labels", "machine labels"):
        assert name in texts
    # Every bar is labelled with its own count.
    for count in ("7", "3", "0", "120", "41", "2"):
        assert count in texts
    # Human bars only: no machine legend.
    assert "machine labels" not in _texts(label_counts_svg(["red fox"], [4]))


def test_label_counts_keep_names_literal() -> None:
    svg = label_counts_svg(["$x$ & <b>", "cat"], [1, 2], [0, 0])
    assert "$x$ &amp; &lt;b&gt;" in svg  # no mathtext, and escaped XML


def test_label_counts_refuse_misaligned_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        label_counts_svg(["a", "b"], [1], [1, 2])


def test_confusion_matrix_is_row_normalised_with_names_on_both_axes() -> None:
    counts = np.array([[3, 1, 0], [0, 5, 0], [2, 0, 2]])
    svg = confusion_matrix_svg(counts, ["red fox", "agouti", "paca"])
    texts = _texts(svg)
    # Names on both axes (rows carry their crop counts).
    assert texts.count("red fox") == 1 and "red fox (4)" in texts
    assert "agouti (5)" in texts and "paca (4)" in texts
    # Row shares: 3/4, 1/4; 5/5; 2/4, 2/4. Empty cells stay blank.
    cells = [t for t in texts if t.endswith("%")]
    assert sorted(cells) == sorted(["75%", "25%", "100%", "50%", "50%"])


def test_confusion_matrix_stays_readable_for_many_species() -> None:
    names = [f"species {i:02d}" for i in range(30)]
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(30, 30)) + np.eye(30, dtype=int) * 20
    svg = confusion_matrix_svg(counts, names)
    texts = _texts(svg)
    for name in names:
        assert name in texts  # every column label
    assert not [t for t in texts if t.endswith("%")]  # no cell numbers beyond 25 species
    width = float(re.search(r'width="([\d.]+)pt"', svg).group(1))  # type: ignore[union-attr]
    assert width > 600  # the figure grows with the species


def test_confusion_matrix_refuses_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="must be"):
        confusion_matrix_svg(np.zeros((2, 3)), ["a", "b"])


def test_learning_curve_still_draws() -> None:
    n, accuracy = [50, 100, 200, 400], [0.6, 0.7, 0.78, 0.83]
    fit = learning_curve_fit(np.asarray(n, dtype=float), np.asarray(accuracy))
    svg = learning_curve_svg(n, accuracy, fit=fit, target=0.9)
    assert svg.startswith("<svg") and "</svg>" in svg


def test_learning_curve_draws_top5_and_f1_macro_where_measured() -> None:
    n, accuracy = [50, 100, 200], [0.6, 0.7, 0.78]
    svg = learning_curve_svg(
        n, accuracy, fit=None, top5=[0.9, 0.93, 0.95], f1_macro=[None, 0.5, 0.61]
    )
    texts = re.findall(r">([^<>]+)</text>", svg)
    assert {"cross-validated top-1", "top-5", "F1 macro"} <= set(texts)
    # Series that were not given are not drawn (nor named in the legend).
    plain = learning_curve_svg(n, accuracy, fit=None)
    assert "F1 macro" not in plain and "top-5" not in plain
    with pytest.raises(ValueError, match="one value per point"):
        learning_curve_svg(n, accuracy, fit=None, f1_macro=[0.5])


def test_figures_carry_no_inline_css() -> None:
    """The page's Content-Security-Policy (style-src 'self') refuses style attributes and
    <style> elements: every figure styles itself with presentation attributes, as valid XML."""
    n, accuracy = [50, 100, 200], [0.6, 0.7, 0.78]
    figures = [
        label_counts_svg(["red fox", "agouti"], [7, 3], [120, 41]),
        confusion_matrix_svg(np.array([[5, 1], [2, 4]]), ["red fox", "agouti"]),
        learning_curve_svg(n, accuracy, fit=None, target=0.9, top5=[0.9, 0.93, 0.95]),
    ]
    for svg in figures:
        assert " style=" not in svg and "<style" not in svg
        root = ET.fromstring(svg)  # well-formed: no attribute written twice
        assert (root.get("stroke-linejoin"), root.get("stroke-linecap")) == ("round", "butt")
        assert 'fill="#ffffff"' in svg


def test_inline_css_becomes_presentation_attributes() -> None:
    svg = (
        '<svg width="1"><defs><style type="text/css">*{stroke-linejoin: round}</style></defs>'
        '<path d="M 0 0" style="fill: none; stroke: #000; stroke-linejoin: miter"/></svg>'
    )
    assert _without_inline_css(svg) == (
        '<svg stroke-linejoin="round" width="1"><defs></defs>'
        '<path d="M 0 0" fill="none" stroke="#000" stroke-linejoin="miter"/></svg>'
    )
    with pytest.raises(ValueError, match="unexpected <style> rule"):
        _without_inline_css("<svg ><style>text { fill: red }</style></svg>")
