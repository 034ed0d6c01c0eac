"""Which selection strategy a round uses when the admin does not choose: a rule, measured.

Cold start (Hacohen et al. 2022, "Active learning on a budget"): with a handful of labels per
species no classifier's uncertainty can be trusted, and typical crops are worth more than
outliers. After that, k-Center spreads the labels over the embedding, which is what the labels
as the product stores them (each crop's probabilities pooled over its capture event) gain most
from: a label on a new event helps every crop of it. Smallest margin takes over only far beyond
the budgets measured (``MARGIN_FROM_PER_SPECIES``), and only while the audit stream (issue 15,
item 4) does not say the classifier is untrustworthy (below ``AUDIT_MARGIN_MIN``).

Measured on missouri-dev's 3 rotated sequence folds, rounds of 20 up to 300 labels: the
thresholds of the typical phase by ``python -m benchmarks selection_rule`` (crop by crop, 10
seeds), the phase after it by ``manage.py al_benchmark --folds 3`` (the labels as stored: there
k-Center beat margin at every budget on the mean; benchmarks/README.md#default-selection-rule).
Django-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from activelearn._checks import check_int

__all__ = [
    "AUDIT_MARGIN_MIN",
    "MARGIN_FROM_PER_SPECIES",
    "TYPICAL_BELOW_PER_SPECIES",
    "StrategyChoice",
    "strategy_for_round",
]

# Labels per species below which a round picks typical crops (no classifier is trusted yet).
# Measured (crop top-1, mean over folds, at 100 labels): typical below 3 per species 0.375,
# below 2: 0.340, below 4: 0.380, below 5: 0.373; margin from the start 0.334, random 0.303.
TYPICAL_BELOW_PER_SPECIES = 3.0
# Labels per species from which a round picks by margin; between the two thresholds, k-Center.
# Measured with the labels as stored (``al_benchmark --folds 3``, mean / worst fold at 100, 200,
# 300 labels): typical then k-Center 0.429 / 0.362, 0.556 / 0.505, 0.522 / 0.459; typical then
# margin from 3 per species 0.399 / 0.379, 0.484 / 0.450, 0.493 / 0.459; random 0.391 / 0.333,
# 0.440 / 0.357, 0.496 / 0.452. Crop by crop (``benchmarks selection_rule``) margin scored about
# as well, but the product stores event-pooled labels. Margin is kept for large projects, from
# 25 labels per species: beyond missouri-dev's reach (about 15 per species at 300), not measured.
MARGIN_FROM_PER_SPECIES = 25.0
# Audit accuracy below which the classifier's margins are not trusted (k-Center instead). Not
# measured: on missouri-dev the classifier never fell below 0.25 past the typical range; this
# only guards a classifier near chance.
AUDIT_MARGIN_MIN = 0.2


@dataclass(frozen=True)
class StrategyChoice:
    """A round's strategy and, in words for the admin, why.

    Attributes:
        strategy: a selection strategy name ("typical", "k_center" or "margin").
        reason: one sentence naming the numbers the choice was made on.
    """

    strategy: str
    reason: str


def strategy_for_round(
    *,
    n_labels: int,
    n_crops: int,
    n_species: int,
    audit_accuracy: float | None = None,
    has_classifier: bool = True,
) -> StrategyChoice:
    """The strategy of the next round by the project's label count and audit evidence.

    Args:
        n_labels: crops labelled so far (>= 0, at most ``n_crops``).
        n_crops: crops of the project (>= 0).
        n_species: species of the project (>= 0); 0 counts as 1 (no per-species count yet).
        audit_accuracy: accuracy of the live machine labels on the audit stream, in [0, 1],
            or None when there is no audit evidence yet.
        has_classifier: False before any classifier is trained (margin is impossible then).

    Returns:
        ``StrategyChoice``: "typical" below ``TYPICAL_BELOW_PER_SPECIES`` labels per species
        or without a classifier; "margin" from ``MARGIN_FROM_PER_SPECIES`` labels per species
        unless the audit accuracy is below ``AUDIT_MARGIN_MIN``; "k_center" otherwise.

    Raises:
        ValueError: negative counts, more labels than crops, an audit accuracy outside [0, 1].
    """
    n_labels = check_int(n_labels, name="n_labels", minimum=0, error=ValueError)
    n_crops = check_int(n_crops, name="n_crops", minimum=0, error=ValueError)
    n_species = check_int(n_species, name="n_species", minimum=0, error=ValueError)
    if n_labels > n_crops:
        raise ValueError(f"n_labels ({n_labels}) cannot exceed n_crops ({n_crops})")
    if audit_accuracy is not None and not 0.0 <= audit_accuracy <= 1.0:
        raise ValueError(f"audit_accuracy must lie in [0, 1], got {audit_accuracy!r}")
    per_species = n_labels / max(n_species, 1)
    counts = f"{n_labels} labels for {n_species} species ({per_species:.1f} per species)"
    if not has_classifier:
        return StrategyChoice("typical", f"typical crops first: {counts}, no classifier yet")
    if per_species < TYPICAL_BELOW_PER_SPECIES:
        return StrategyChoice(
            "typical",
            f"typical crops first: {counts}, below {TYPICAL_BELOW_PER_SPECIES:g} per species",
        )
    if per_species < MARGIN_FROM_PER_SPECIES:
        return StrategyChoice(
            "k_center",
            f"k-Center for coverage: {counts}, below {MARGIN_FROM_PER_SPECIES:g} per species "
            "for margins",
        )
    if audit_accuracy is not None and audit_accuracy < AUDIT_MARGIN_MIN:
        return StrategyChoice(
            "k_center",
            f"k-Center for coverage: {counts}, but the audit accuracy {audit_accuracy:.2f} is "
            f"below {AUDIT_MARGIN_MIN:g}, too low to trust the classifier's margins",
        )
    audit = "" if audit_accuracy is None else f", audit accuracy {audit_accuracy:.2f}"
    return StrategyChoice(
        "margin", f"smallest margin: {counts}{audit}, the classifier has seen enough"
    )
