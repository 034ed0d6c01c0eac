"""Anchoring on the machine's suggestions: how often volunteers take the first one, and how
often that was right. Django-free.

The human-AI study of the Snapshot Serengeti paper (Norouzzadeh et al., PNAS 2018) asks
whether people shown the machine's guess simply take it. A label records the species the page
suggested, in order, and the answer; a volunteer "took the first suggestion" when the answer
is the first species suggested. Whether it was right is judged against a reference answer
(the crop's decided label, see ``annotator.selectors.anchoring_get``) where there is one.

Every share comes with its Wilson score interval (``activelearn.audit.binomial_interval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from activelearn.audit import AccuracyEstimate, binomial_interval

# An answer: (kind, species id), species id None for kinds other than "species".
Answer = tuple[str, int | None]
SPECIES = "species"


@dataclass(frozen=True)
class AnchorRow:
    """One label: the species ids suggested (best first), its answer, and the reference answer
    (None when the crop has none yet)."""

    suggestions: Sequence[int]
    answer: Answer
    reference: Answer | None


@dataclass(frozen=True)
class Share:
    """``hits`` of ``n`` with the share and its 95% Wilson interval (share None when n is 0)."""

    hits: int
    n: int
    share: float | None
    low: float
    high: float

    @classmethod
    def of(cls, outcomes: Sequence[bool]) -> Share:
        estimate: AccuracyEstimate = binomial_interval(
            correct=np.asarray(outcomes, dtype=np.float64), level=0.95
        )
        return cls(
            int(sum(outcomes)), len(outcomes), estimate.estimate, estimate.low, estimate.high
        )


@dataclass(frozen=True)
class Anchoring:
    """The anchoring figures over labels that recorded a non-empty suggestion list.

    * ``took_first``: labels whose answer is the first suggestion, of all such labels;
    * ``first_right``: of those that took it and have a reference, the ones the reference
      agrees with (how often taking it was right);
    * ``other_right``: of those that did not take it and have a reference, the ones right
      (the comparison: were volunteers who looked past the suggestion right as often?);
    * ``machine_right``: of all labels with a reference, those whose first suggestion was
      the reference (how often the first suggestion deserved to be taken).
    """

    labels: int
    took_first: Share
    first_right: Share
    other_right: Share
    machine_right: Share


def took_first(row: AnchorRow) -> bool:
    """Whether ``row``'s answer is its first suggestion (a species answer only)."""
    kind, species_id = row.answer
    return bool(row.suggestions) and kind == SPECIES and species_id == row.suggestions[0]


def anchoring_stats(rows: Sequence[AnchorRow]) -> Anchoring:
    """The ``Anchoring`` figures of ``rows``; rows without suggestions are left out."""
    shown = [r for r in rows if r.suggestions]
    judged = [r for r in shown if r.reference is not None]
    return Anchoring(
        labels=len(shown),
        took_first=Share.of([took_first(r) for r in shown]),
        first_right=Share.of([r.answer == r.reference for r in judged if took_first(r)]),
        other_right=Share.of([r.answer == r.reference for r in judged if not took_first(r)]),
        machine_right=Share.of([(SPECIES, r.suggestions[0]) == r.reference for r in judged]),
    )
