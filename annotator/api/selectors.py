"""Reads of the API package: token lookup, and the API's crop cards, crop rows and rounds.

Every read that covers many crops takes a fixed number of queries, whatever their number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q, QuerySet

from activelearn.final_labels import (
    AUTO,
    AutoAccept,
    final_attributes,
    final_label,
    human_attributes,
    machine_attributes,
)
from activelearn.models import Consensus, Prediction, Round, RoundCrop
from activelearn.selectors import audit_crop_ids, classifier_latest
from activelearn.selectors_explore import ExploreFilters, explore_page
from annotator.api.services import api_key_hash
from annotator.exports import attribute_names, consensus_of
from annotator.models import ApiToken
from detector.models import Crop
from projects.models import Job, Project, Species
from projects.sequences import capture_event


def api_token_for_key(*, key: str) -> ApiToken | None:
    """The token whose key is ``key`` (looked up by its hash), with its user; None if none."""
    if not key:
        return None
    return ApiToken.objects.select_related("user").filter(key_hash=api_key_hash(key)).first()


def api_tokens_list(*, user: User) -> QuerySet[ApiToken]:
    """``user``'s tokens, newest first."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def round_list(*, project: Project) -> QuerySet[Round]:
    """The project's rounds, newest first, each annotated with ``n_total`` (crops picked) and
    ``n_done`` (of those, crops decided or sent to review), in one query.

    ``n_done`` counts as ``activelearn.selectors.round_progress`` does for one round.
    """
    settled = Q(items__crop__consensus__status__in=(Consensus.Status.DONE, Consensus.Status.REVIEW))
    return (
        Round.objects.filter(project=project)
        .annotate(n_total=Count("items"), n_done=Count("items", filter=settled))
        .order_by("-number")
    )


@dataclass(frozen=True)
class Box:
    """A detection box, normalised to [0, 1]: top-left x, y, width and height."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Suggestion:
    species_id: int
    species: str
    probability: float


@dataclass(frozen=True)
class CropPlace:
    """Where a crop is: its image, capture event and box."""

    crop_id: int
    image_id: int
    image_file: str
    seq_id: str
    frame_num: int | None
    event: str
    box: Box
    detection_confidence: float


def _place(crop: Crop) -> dict[str, Any]:
    """CropPlace's fields of ``crop`` (with its image and detection loaded)."""
    det = crop.detection
    return {
        "crop_id": crop.pk,
        "image_id": crop.image_id,
        "image_file": crop.image.file_name,
        "seq_id": crop.image.seq_id,
        "frame_num": crop.image.frame_num,
        "event": capture_event(seq_id=crop.image.seq_id, image_id=crop.image_id),
        "box": Box(x=det.x, y=det.y, w=det.w, h=det.h),
        "detection_confidence": det.confidence,
    }


@dataclass(frozen=True)
class CropCard(CropPlace):
    """What a labeller needs to label one crop: where it is, and the machine's top guesses."""

    suggestions: list[Suggestion]


def crop_cards(*, project: Project, crops: Sequence[Crop]) -> list[CropCard]:
    """One card per crop, in the order given, with the latest classifier's top-5 suggestions
    (none for the open round's audit crops).

    ``crops`` (of ``project``) must come with their image and detection loaded (select_related,
    as ``crop_claim_next`` gives them): then this takes four queries, whatever the count.
    """
    ids = [crop.pk for crop in crops]
    classifier = classifier_latest(project=project)
    tops: dict[int, list[list[float]]] = {}
    if classifier is not None:
        # Audit crops go without suggestions: their labels measure the machine.
        audited = audit_crop_ids(project=project, crop_ids=ids)
        rows = Prediction.objects.filter(classifier=classifier, crop_id__in=ids)
        tops = {c: top for c, top in rows.values_list("crop_id", "top") if c not in audited}
    names = dict(Species.objects.filter(project=project).values_list("id", "name"))
    cards = []
    for crop in crops:
        suggestions = [
            Suggestion(species_id=int(sid), species=names[int(sid)], probability=float(p))
            for sid, p in tops.get(crop.pk, [])[:5]
            if int(sid) in names
        ]
        cards.append(CropCard(**_place(crop), suggestions=suggestions))
    return cards


@dataclass(frozen=True)
class HumanLabel:
    """A crop's Consensus: the plurality of its votes (or an admin's review)."""

    status: str
    kind: str
    species_id: int | None
    species: str | None
    votes: int
    agreement: float
    reviewed: bool


@dataclass(frozen=True)
class MachineLabel:
    species_id: int
    species: str
    confidence: float


@dataclass(frozen=True)
class FinalLabelRow:
    """``activelearn.final_labels.final_label``: humans' done consensus, else the machine's."""

    kind: str
    species: str
    source: str
    confidence: float | None


@dataclass(frozen=True)
class CropRow(CropPlace):
    """One crop as the CSV export describes it, typed."""

    active: bool
    human_label: HumanLabel | None
    machine_label: MachineLabel | None
    final_label: FinalLabelRow
    auto_accepted: bool
    classifier_version: int | None
    round: int | None
    strategy: str | None
    # Attribute names: the consensus's (None when no vote recorded any), the attribute head's
    # {name: probability} for p > 0.5 (None without a head), and those of the final label.
    attributes_human: list[str] | None
    attributes_machine: dict[str, float] | None
    attributes: list[str]


@dataclass(frozen=True)
class CropPage:
    items: list[CropRow]
    # The cursor of the next page (the last crop id of this one); None on the last page.
    next_cursor: int | None


def crop_rows_page(
    *, project: Project, after: int, limit: int, filters: ExploreFilters | None = None
) -> CropPage:
    """Up to ``limit`` crop rows with ids above ``after`` matching ``filters``, in id order
    (keyset pagination).

    The crops and the final label are the crop CSV export's (``annotator.exports``): active
    crops, and inactive ones with a human vote (labels are never dropped). The crops and the
    filters are the explore page's (``activelearn.selectors_explore.explore_page``). Walking
    ``next_cursor`` from 0 visits each exactly once, even while crops are added. Five queries
    (up to seven with filters on the final label: ``explore_page``), whatever ``limit``.
    """
    classifier = classifier_latest(project=project)
    page = explore_page(
        project=project,
        filters=filters or ExploreFilters(),
        classifier=classifier,
        sort="id",
        cursor=str(after) if after else "",
        limit=limit,
        related=("image", "detection", "consensus", "consensus__species"),
    )
    crops = page.crops
    ids = [crop.pk for crop in crops]
    predictions = (
        {
            p.crop_id: p
            for p in Prediction.objects.filter(
                classifier=classifier, crop_id__in=ids
            ).select_related("species")
        }
        if classifier
        else {}
    )
    # A crop picked in several rounds (possible after thresholds change) reports the latest.
    rounds = {
        item.crop_id: item.round
        for item in RoundCrop.objects.filter(crop_id__in=ids)
        .select_related("round")
        .order_by("round__number")
    }
    threshold = AutoAccept.of(classifier)
    names = attribute_names(project=project)
    rows = []
    for crop in crops:
        human = consensus_of(crop)
        prediction = predictions.get(crop.pk)
        final = final_label(consensus=human, prediction=prediction, threshold=threshold)
        round_ = rounds.get(crop.pk)
        rows.append(
            CropRow(
                **_place(crop),
                active=crop.active,
                human_label=HumanLabel(
                    status=human.status,
                    kind=human.kind,
                    species_id=human.species_id,
                    species=human.species.name if human.species else None,
                    votes=human.votes,
                    agreement=human.agreement,
                    reviewed=human.reviewed,
                )
                if human
                else None,
                machine_label=MachineLabel(
                    species_id=prediction.species_id,
                    species=prediction.species.name,
                    confidence=prediction.confidence,
                )
                if prediction
                else None,
                final_label=FinalLabelRow(
                    kind=final.kind,
                    species=final.species,
                    source=final.source,
                    confidence=final.confidence,
                ),
                auto_accepted=final.source == AUTO,
                classifier_version=classifier.number if classifier and prediction else None,
                round=round_.number if round_ else None,
                strategy=round_.strategy if round_ else None,
                attributes_human=human_attributes(human, names)
                if human is not None and human.attributes is not None
                else None,
                attributes_machine=dict(machine_attributes(prediction.attributes, names))
                if prediction is not None and prediction.attributes is not None
                else None,
                attributes=list(
                    final_attributes(
                        final=final, consensus=human, prediction=prediction, names=names
                    )
                ),
            )
        )
    return CropPage(
        items=rows, next_cursor=int(page.next_cursor) if page.next_cursor is not None else None
    )


def job_get(*, project: Project, job_id: int) -> Job | None:
    """The project's background job ``job_id``; None when the project has no such job."""
    return Job.objects.filter(project=project, pk=job_id).first()
