"""Which selection strategy a round uses when the admin does not choose: a rule, measured.

Cold start (Hacohen et al. 2022, "Active learning on a budget"): with a handful of labels per
species no classifier's uncertainty can be trusted, and typical crops are worth more than
outliers; once the classifier has seen every species a few times, its smallest margins point at
the crops that move the decision boundaries. k-Center spreads labels over the embedding without
trusting the classifier: it runs between the two thresholds (an empty range by default: measured
no better there) and whenever the audit stream (issue 15, item 4) says the classifier is not
trustworthy: below ``AUDIT_MARGIN_MIN`` the margins stay unused whatever the label count.

The thresholds were chosen by measurement (missouri-dev, 3 rotated sequence folds, rounds of
20 to 300 labels, 10 seeds: ``python -m benchmarks selection_rule``,
benchmarks/README.md#default-selection-rule). Django-free.
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
# Labels per species from which a round picks by margin; between the two thresholds,
# k-Center. Measured: k-Center from 3 to 5 per species, then margin, scored the same as margin
# from 3 at 200 and 300 labels (within 0.004) and lower at 100 (0.363 against 0.375).
MARGIN_FROM_PER_SPECIES = 3.0
# Audit accuracy below which the classifier's margins are not trusted (k-Center instead). Not
# measured: on missouri-dev the classifier never fell below 0.25 past the typical range, and
# margin beat k-Center there at every budget; this only guards a classifier near chance.
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
