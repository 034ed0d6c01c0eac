"""The final label of a crop: how human and machine labels combine. One rule for every export,
the API and the pages; exports only serialise what it decides.

How human and machine labels combine (``final_label``; one rule for every export):

1. A crop whose human consensus is *done* takes the humans' label (a species, ``not_animal``
   or ``unknown``), source ``human``. Humans always win, whatever the classifier says.
2. Otherwise, a crop whose prediction by the latest READY classifier has a confidence at or
   above that classifier's auto-accept threshold for the predicted species (its own, where
   the evidence gave it one, else the global ``threshold``: ``AutoAccept``) takes the
   machine's species, source ``auto`` (auto-accepted).
3. Otherwise, a crop with a prediction takes the machine's top-1 species, source ``machine``:
   counted, but marked as an unconfirmed machine label.
4. Otherwise the crop has no label (source ``""``): it counts as an unlabelled animal.

A consensus that is still pending or waiting for an admin's review is not final: the crop
falls to rules 2 to 4 (the crop CSV still shows the votes so far). Crops take part in the
image and event counts when they are active (above the project's current thresholds) or have
a done human label (a person confirmed them). ``not_animal`` crops never count as animals.

Attributes (yes/no behaviours such as standing or eating) follow the same rule
(``final_attributes``): a crop whose final label is human takes its consensus's attributes
(each decided by a majority of the votes that recorded attributes), one whose final label is
the machine's takes the attributes the attribute head predicts with probability above 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from activelearn.models import ClassifierVersion, Consensus, LabelKind, Prediction

# A final label's source: the humans' done consensus, auto-accepted (the machine's confidence
# at or above the classifier's threshold), an unconfirmed machine label, or none.
HUMAN, AUTO, MACHINE, NO_LABEL = "human", "auto", "machine", ""


@dataclass(frozen=True)
class FinalLabel:
    """A crop's label after humans and machine are combined (see the module docstring).

    ``kind`` is a LabelKind value, or "" for no label; ``species`` the species name when
    ``kind`` is "species"; ``confidence`` the machine's confidence (auto/machine) or the
    humans' agreement (human).
    """

    kind: str
    species: str
    source: str
    confidence: float | None


@dataclass(frozen=True)
class AutoAccept:
    """A classifier's auto-accept thresholds: ``per_species`` {species id: threshold, or None
    for never} where the evidence gave a species its own (``activelearn.thresholds``), else
    ``default`` (the global threshold; None: nothing is auto-accepted)."""

    default: float | None
    per_species: dict[int, float | None]

    @classmethod
    def of(cls, classifier: ClassifierVersion | None) -> AutoAccept:
        if classifier is None:
            return cls(None, {})
        own = classifier.thresholds_per_species or {}
        return cls(classifier.threshold, {int(k): v for k, v in own.items()})

    def threshold_for(self, species_id: int) -> float | None:
        if species_id in self.per_species:
            return self.per_species[species_id]
        return self.default

    def accepts(self, *, species_id: int, confidence: float) -> bool:
        threshold = self.threshold_for(species_id)
        return threshold is not None and confidence >= threshold

    def q(self, *, prefix: str = "") -> Q:
        """The same rule as a filter on Prediction rows (``prefix`` for a related query:
        e.g. "predictions__"); one clause per species with a threshold of its own."""
        accepted = Q(pk__in=[])
        for species_id, threshold in self.per_species.items():
            if threshold is not None:
                accepted |= Q(
                    **{f"{prefix}species_id": species_id, f"{prefix}confidence__gte": threshold}
                )
        if self.default is not None:
            accepted |= Q(**{f"{prefix}confidence__gte": self.default}) & ~Q(
                **{f"{prefix}species_id__in": list(self.per_species)}
            )
        return accepted


def final_label(
    *,
    consensus: Consensus | None,
    prediction: Prediction | None,
    threshold: float | None | AutoAccept,
) -> FinalLabel:
    """Combine a crop's human consensus and its latest prediction; humans always win.

    ``threshold`` is the classifier's ``AutoAccept`` (per-species thresholds), or one
    threshold for every species. ``consensus`` and ``prediction`` need their ``species``
    loaded.
    """
    if consensus is not None and consensus.status == Consensus.Status.DONE:
        name = consensus.species.name if consensus.species else ""
        return FinalLabel(consensus.kind, name, HUMAN, consensus.agreement)
    if prediction is not None:
        rule = threshold if isinstance(threshold, AutoAccept) else AutoAccept(threshold, {})
        auto = rule.accepts(species_id=prediction.species_id, confidence=prediction.confidence)
        return FinalLabel(
            LabelKind.SPECIES,
            prediction.species.name,
            AUTO if auto else MACHINE,
            prediction.confidence,
        )
    return FinalLabel(NO_LABEL, "", NO_LABEL, None)


# Above this probability the attribute head's answer is yes (the PNAS paper's rule).
ATTRIBUTE_YES = 0.5


def human_attributes(consensus: Consensus | None, names: dict[int, str]) -> list[str]:
    """Names of the attributes the crop's consensus decided yes (ids of removed attributes
    are left out), in the project's order."""
    ticked = set(consensus.attributes or []) if consensus is not None else set()
    return [name for attribute_id, name in names.items() if attribute_id in ticked]


def machine_attributes(
    attributes: dict[str, float] | None, names: dict[int, str]
) -> list[tuple[str, float]]:
    """(name, probability) of each attribute a prediction says yes to (p > 0.5), in order.

    ``attributes`` is a ``Prediction``/``EventPrediction`` ``attributes`` value.
    """
    probs = attributes or {}
    return [
        (name, float(probs[str(attribute_id)]))
        for attribute_id, name in names.items()
        if float(probs.get(str(attribute_id), 0.0)) > ATTRIBUTE_YES
    ]


def final_attributes(
    *,
    final: FinalLabel,
    consensus: Consensus | None,
    prediction: Prediction | None,
    names: dict[int, str],
) -> tuple[str, ...]:
    """The attributes that go with the final label: the humans' when it is theirs, else the
    machine's yes answers; none for a label that is not a species."""
    if final.kind != LabelKind.SPECIES:
        return ()
    if final.source == HUMAN:
        return tuple(human_attributes(consensus, names))
    if prediction is not None:
        return tuple(name for name, _ in machine_attributes(prediction.attributes, names))
    return ()
