"""Project changes that touch labels: merging species and removing an attribute.

The other species and attribute edits touch no label and live in ``projects.services``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from activelearn.models import AuditPrediction, Consensus, EventPrediction, Label, Prediction
from activelearn.services.labels import consensus_update
from activelearn.services.locks import project_lock
from activelearn.services.retrain import classifier_retrain_queue
from detector.models import ExternalPrediction
from projects.models import Project, Species
from projects.services import AttributeChangeError, SpeciesError, attribute_get, species_get
from projects.taxonomy import RANK_LEVEL, RANKS


@dataclass(frozen=True)
class SpeciesMergeReport:
    source: str
    target: Species
    labels: int
    consensus: int
    predictions: int
    event_predictions: int


def species_merge(*, project: Project, source_id: int, target_id: int) -> SpeciesMergeReport:
    """Merge species ``source`` into ``target``: labels follow, then ``source`` is deleted.

    In one transaction every Label, Consensus, Prediction, EventPrediction and AuditPrediction
    naming ``source`` is moved to ``target``; the consensus of every crop with a vote for
    ``source`` is recomputed (two volunteers who disagreed as "fox" and "red fox" now agree),
    and a retrain is queued (the classifier's training-set digest changes, so it is not
    skipped).

    ``Prediction.top``/``EventPrediction.top`` JSON lists ([[species id, p], ...]) are not
    rewritten (a million rows): they may name the deleted species until the queued retrain
    replaces them, so readers of ``top`` must tolerate unknown species ids (the only reader,
    the uncertainty strategies, uses the probabilities alone).
    """
    if source_id == target_id:
        raise SpeciesError("choose two different species to merge")
    with transaction.atomic():
        project_lock(project_id=project.pk)
        source = species_get(project=project, species_id=source_id)
        target = species_get(project=project, species_id=target_id)
        crop_ids = list(
            Label.objects.filter(species=source).values_list("crop_id", flat=True).distinct()
        )
        labels = Label.objects.filter(species=source).update(species=target)
        consensus = Consensus.objects.filter(species=source).update(species=target)
        predictions = Prediction.objects.filter(species=source).update(species=target)
        events = EventPrediction.objects.filter(species=source).update(species=target)
        # Audit labels stay evidence: their machine label follows the merge too.
        AuditPrediction.objects.filter(species=source).update(species=target)
        # Other tools' predictions mapped to it too (README "Existing AI output").
        ExternalPrediction.objects.filter(species=source).update(species=target)
        consensus_update(project=project, crop_ids=crop_ids)
        # The source's children follow the target where it ranks above them; the others are
        # left at the top (the parent's on_delete), never under a taxon of their rank or below.
        below = [r for r in RANKS if RANK_LEVEL[r] < RANK_LEVEL[target.rank]]
        Species.objects.filter(parent=source, rank__in=below).update(parent=target)
        name = source.name
        source.delete()
        if labels:
            # The training set changed (its digest does), so the retrain is not skipped.
            classifier_retrain_queue(project_id=project.pk)
    return SpeciesMergeReport(
        source=name,
        target=target,
        labels=labels,
        consensus=consensus,
        predictions=predictions,
        event_predictions=events,
    )


def attribute_remove(*, project: Project, attribute_id: int) -> str:
    """Remove an attribute no label has ticked; returns its name.

    An attribute some label ticked is kept (AttributeChangeError): labels are never lost, and
    the exports name attributes by their rows. Rename it instead.
    """
    with transaction.atomic():
        project_lock(project_id=project.pk)
        attribute = attribute_get(project=project, attribute_id=attribute_id)
        # JSON containment is not portable (SQLite has none): scan the recorded lists.
        recorded = Label.objects.filter(project=project, attributes__isnull=False)
        used = sum(
            attribute.pk in (ticked or ())
            for ticked in recorded.values_list("attributes", flat=True).iterator(chunk_size=5000)
        )
        if used:
            raise AttributeChangeError(
                f"{used} label{'s' if used != 1 else ''} ticked {attribute.name!r}, so it stays "
                "(labels are never lost); rename it if it should read differently"
            )
        name = attribute.name
        attribute.delete()
    return name
