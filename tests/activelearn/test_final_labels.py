"""The final-label rule against a plain reading of it, over every case (no database needed)."""

from __future__ import annotations

import itertools

import pytest

from activelearn.final_labels import (
    AUTO,
    HUMAN,
    MACHINE,
    NO_LABEL,
    FinalLabel,
    final_attributes,
    final_label,
)
from activelearn.models import Consensus, LabelKind, Prediction
from projects.models import Species

AGOUTI, OCELOT = Species(name="agouti"), Species(name="ocelot")
NAMES = {1: "standing", 2: "eating"}


def _expected(
    status: str | None, kind: str, confidence: float | None, threshold: float | None
) -> FinalLabel:
    """The rule as the module docstring states it, written out case by case."""
    if status == Consensus.Status.DONE:
        return FinalLabel(kind, "agouti" if kind == LabelKind.SPECIES else "", HUMAN, 0.75)
    if confidence is None:
        return FinalLabel(NO_LABEL, "", NO_LABEL, None)
    source = AUTO if threshold is not None and confidence >= threshold else MACHINE
    return FinalLabel(LabelKind.SPECIES, "ocelot", source, confidence)


@pytest.mark.parametrize(
    ("status", "kind", "confidence", "threshold"),
    list(
        itertools.product(
            [None, *Consensus.Status.values],
            [LabelKind.SPECIES, LabelKind.NOT_ANIMAL, LabelKind.UNKNOWN],
            [None, 0.4, 0.9],
            [None, 0.5, 0.9],
        )
    ),
)
def test_final_label_matches_the_rule(
    status: str | None, kind: str, confidence: float | None, threshold: float | None
) -> None:
    consensus = (
        None
        if status is None
        else Consensus(
            status=status,
            kind=kind,
            species=AGOUTI if kind == LabelKind.SPECIES else None,
            agreement=0.75,
            attributes=[1],
        )
    )
    prediction = (
        None
        if confidence is None
        else Prediction(species=OCELOT, confidence=confidence, attributes={"2": 0.8, "1": 0.2})
    )
    got = final_label(consensus=consensus, prediction=prediction, threshold=threshold)
    assert got == _expected(status, kind, confidence, threshold)
    attributes = final_attributes(
        final=got, consensus=consensus, prediction=prediction, names=NAMES
    )
    if got.kind != LabelKind.SPECIES:
        assert attributes == ()
    elif got.source == HUMAN:
        assert attributes == ("standing",)  # the humans' ticks, never the machine's
    else:
        assert attributes == ("eating",)  # the machine's yes answers (p > 0.5)
