"""Higher-taxon answers and training (``activelearn.taxa``), without Django."""

from __future__ import annotations

import itertools

from activelearn.taxa import HIGHER_TAXON, training_labels


def test_training_labels_demotes_higher_taxa_and_keeps_every_crop() -> None:
    latest = {
        10: ("species", 1, 100),  # a species: trains
        11: ("species", 7, 101),  # "rodent" (order): no training example
        12: ("not_animal", None, 102),
        13: ("unknown", None, 103),
    }
    assert training_labels(latest, higher_taxa={7, 8}) == {
        10: ("species", 1, 100),
        11: (HIGHER_TAXON, 7, 101),
        12: ("not_animal", None, 102),
        13: ("unknown", None, 103),
    }


def test_training_labels_against_brute_force() -> None:
    """Every tiny input: the species pairs left are exactly those whose species is not a
    higher taxon, and the crops (the labelled set) are unchanged."""
    kinds = (("species", 1), ("species", 2), ("not_animal", None))
    for answers in itertools.product(kinds, repeat=3):
        latest = {c: (k, s, c * 10) for c, (k, s) in enumerate(answers)}
        for higher in ((), (1,), (2,), (1, 2)):
            out = training_labels(latest, higher_taxa=higher)
            assert out.keys() == latest.keys()
            species = {c: s for c, (k, s, _) in out.items() if k == "species"}
            assert species == {
                c: s for c, (k, s, _) in latest.items() if k == "species" and s not in higher
            }
