"""How answers with a higher taxon ("rodent", "bird") train. Pure: ids in, ids out.

A volunteer unsure of the species may answer with a genus, family, order or class. The species
classifier learns species only, so it never predicts a higher taxon:

- ``training_labels``: a crop decided as a higher taxon is not a training example of the
  classifier (nor of the embedding's fine-tuning). It stays labelled, like an ``unknown``
  answer: a person looked at it, so selection does not serve it again as unlabelled.
- ``activelearn.consensus.consensus_decide`` (given the ancestors): a higher-taxon vote agrees
  with any species below it, so "rodent" and "house mouse" decide "house mouse", while
  "house mouse", "brown rat" and "rodent" still disagree.
- Exports keep the label under the taxon's own name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

# The kind ``training_labels`` gives a decided higher taxon: no LabelKind, so every
# ``kind == "species"`` test of the training code leaves it out.
HIGHER_TAXON = "higher_taxon"
SPECIES_KIND = "species"  # activelearn.models.LabelKind.SPECIES, without importing Django

Latest = Mapping[int, tuple[str, int | None, int]]


def training_labels(
    latest: Latest, *, higher_taxa: Collection[int]
) -> dict[int, tuple[str, int | None, int]]:
    """``latest`` ({crop id: (kind, species id, label id)}, as ``labels_latest_by_crop``) with
    the species labels naming one of ``higher_taxa`` given the kind ``HIGHER_TAXON``; every
    crop stays (labelled), and the other entries are unchanged."""
    taxa = set(higher_taxa)
    return {
        crop: (
            (HIGHER_TAXON, species, label)
            if kind == SPECIES_KIND and species is not None and species in taxa
            else (kind, species, label)
        )
        for crop, (kind, species, label) in latest.items()
    }
