"""Reads about how volunteers label: the field guide's examples, the measured seconds per label
and the anchoring figures (issue 17, items 5 and 6)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef

from activelearn.anchoring import Anchoring, AnchorRow, anchoring_stats
from activelearn.models import (
    ClassifierVersion,
    Consensus,
    Label,
    LabelKind,
    LabelOrigin,
    RoundCrop,
)
from projects.models import Project, Species

__all__ = [
    "FIELD_GUIDE_MIN_AGREEMENT",
    "FIELD_GUIDE_SIZE",
    "MEASURED_MIN",
    "MeasuredSeconds",
    "anchoring_get",
    "field_guide_examples",
    "label_seconds_measured",
]

# The field guide shows crops whose voters agreed at least this much (or an admin decided).
FIELD_GUIDE_MIN_AGREEMENT = 0.75
FIELD_GUIDE_SIZE = 24
# Measured seconds replace the project's setting in the effort estimate from this many labels:
# fewer would let a handful of slow or quick answers set it.
MEASURED_MIN = 30


def field_guide_examples(
    *, project: Project, species: Species, limit: int = FIELD_GUIDE_SIZE
) -> list[Consensus]:
    """Up to ``limit`` decided crops of ``species`` to compare with: decided (status done),
    reviewed by an admin or agreed on by at least ``FIELD_GUIDE_MIN_AGREEMENT`` of the votes;
    those decided by more votes and higher agreement first (one query)."""
    return list(
        Consensus.objects.filter(
            project=project,
            species=species,
            kind=LabelKind.SPECIES,
            status=Consensus.Status.DONE,
            agreement__gte=FIELD_GUIDE_MIN_AGREEMENT,
        )
        .select_related("crop__image")
        .order_by("-reviewed", "-votes", "-agreement", "-crop_id")[:limit]
    )


@dataclass(frozen=True)
class MeasuredSeconds:
    """The median of the seconds volunteers' votes recorded, over ``n`` votes (median None
    when there is none)."""

    n: int
    median: float | None

    @property
    def enough(self) -> bool:
        return self.n >= MEASURED_MIN and self.median is not None


def label_seconds_measured(*, project: Project) -> MeasuredSeconds:
    """The median seconds per vote in ``project`` (votes on the label and grid pages and the
    API that recorded their time; undone ones too: the time was spent). Two or three queries,
    the median read from the database's order, whatever the number of labels."""
    timed = Label.objects.filter(
        project=project, origin=LabelOrigin.VOTE, seconds__isnull=False
    ).order_by("seconds", "id")
    n = timed.count()
    if n == 0:
        return MeasuredSeconds(0, None)
    middle = [
        float(s or 0.0) for s in timed.values_list("seconds", flat=True)[(n - 1) // 2 : n // 2 + 1]
    ]
    return MeasuredSeconds(n, sum(middle) / len(middle))


def anchoring_get(*, project: Project) -> Anchoring:
    """The anchoring figures (``activelearn.anchoring``) of ``project``'s volunteer votes.

    Counted: votes that recorded a suggestion list, not undone, made after the project's first
    classifier existed, on crops that were not audit crops of their round (those are shown the
    project's frequent species, not the machine's guess). The reference answer is the crop's
    decided label where it was decided by an admin or by at least two votes: with one vote a
    crop's decided label is that very vote, which would make every answer "right".
    The label page's suggestion lists are signed by the server that showed them, the grid's
    are the server's own; the API's are the client's report (checked to be the project's
    species only).
    """
    first = (
        ClassifierVersion.objects.filter(project=project)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if first is None:
        return anchoring_stats([])
    audit = RoundCrop.objects.filter(
        round_id=OuterRef("round_id"), crop_id=OuterRef("crop_id"), is_audit=True
    )
    votes = Label.objects.filter(
        project=project,
        origin=LabelOrigin.VOTE,
        undone_at__isnull=True,
        suggestions__isnull=False,
        created_at__gte=first,
    ).exclude(Exists(audit))
    rows = list(votes.values_list("crop_id", "kind", "species_id", "suggestions"))
    decided = {
        crop_id: (kind, species_id)
        for crop_id, kind, species_id, votes_n, reviewed in Consensus.objects.filter(
            project=project, status=Consensus.Status.DONE, crop_id__in=votes.values("crop_id")
        ).values_list("crop_id", "kind", "species_id", "votes", "reviewed")
        if reviewed or votes_n >= 2
    }
    return anchoring_stats(
        [
            AnchorRow(
                suggestions=[int(s) for s in suggestions or []],
                answer=(kind, species_id),
                reference=decided.get(crop_id),
            )
            for crop_id, kind, species_id, suggestions in rows
        ]
    )
