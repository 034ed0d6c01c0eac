"""Reads behind the ecologists' exports, in constant memory."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Q

from activelearn.models import (
    ClassifierVersion,
    EventPrediction,
    Label,
    Prediction,
    Round,
    RoundCrop,
)
from activelearn.selectors import classifier_latest
from annotator.models import Image, Project
from annotator.sequences import capture_event
from detector.models import Crop
from detector.selectors import event_counts

EXPORT_CHUNK = 2000
EXPORT_HEADER = [
    "crop_id",
    "image_file",
    "seq_id",
    "frame_num",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "detection_confidence",
    "crop_active",
    "image_count",
    "event_count",
    "human_label",
    "labelled_by",
    "labelled_at",
    "machine_label",
    "machine_confidence",
    "auto_accepted",
    "event_id",
    "event_machine_label",
    "event_machine_confidence",
    "classifier_version",
    "embedding_version",
    "round",
    "strategy",
]


def export_crop_rows(*, project: Project) -> Iterator[list[object]]:
    """One row per crop (EXPORT_HEADER order), read in chunks so memory stays constant."""
    classifier = classifier_latest(project=project)
    events = event_counts(project=project)
    # Inactive crops (below the current thresholds) are exported only when a person labelled
    # them: labels are never dropped from an export.
    crops = (
        Crop.objects.filter(project=project)
        .filter(Q(active=True) | Q(labels__isnull=False))
        .distinct()
        .select_related("image", "detection")
    )
    last_id = 0
    while True:
        chunk = list(crops.filter(id__gt=last_id).order_by("id")[:EXPORT_CHUNK])
        if not chunk:
            return
        last_id = chunk[-1].pk
        ids = [c.pk for c in chunk]
        labels = _latest_labels(ids)
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
        event_predictions = _event_predictions(classifier, chunk)
        rounds = {
            item.crop_id: item.round
            for item in RoundCrop.objects.filter(crop_id__in=ids)
            .select_related("round")
            .order_by("round__number")
        }
        for crop in chunk:
            yield _export_row(
                events,
                crop,
                labels.get(crop.pk),
                predictions.get(crop.pk),
                event_predictions.get(crop_event(crop.image)),
                rounds.get(crop.pk),
                classifier,
            )


def crop_event(image: Image) -> str:
    """A crop's capture event (``capture_event`` of its image)."""
    return capture_event(seq_id=image.seq_id, image_id=image.pk)


def _event_predictions(
    classifier: ClassifierVersion | None, crops: list[Crop]
) -> dict[str, EventPrediction]:
    if classifier is None:
        return {}
    events = {crop_event(crop.image) for crop in crops}
    rows = EventPrediction.objects.filter(classifier=classifier, event__in=events)
    return {e.event: e for e in rows.select_related("species")}


def _latest_labels(crop_ids: list[int]) -> dict[int, Label]:
    latest: dict[int, Label] = {}
    for label in (
        Label.objects.filter(crop_id__in=crop_ids).select_related("species", "user").order_by("id")
    ):
        latest[label.crop_id] = label
    return latest


def _export_row(
    events: dict[str, int],
    crop: Crop,
    label: Label | None,
    prediction: Prediction | None,
    event: EventPrediction | None,
    round_: Round | None,
    classifier: ClassifierVersion | None,
) -> list[object]:
    det = crop.detection
    threshold = classifier.threshold if classifier else None
    # Auto-accepted: no person labelled it, and the classifier is at least as sure as the
    # confidence at which its cross-validated labels reach the project's target accuracy.
    auto = (
        label is None
        and prediction is not None
        and threshold is not None
        and prediction.confidence >= threshold
    )
    human = ""
    if label is not None:
        human = label.species.name if label.species else label.kind
    return [
        crop.pk,
        crop.image.file_name,
        crop.image.seq_id,
        crop.image.frame_num,
        round(det.x, 5),
        round(det.y, 5),
        round(det.w, 5),
        round(det.h, 5),
        round(det.confidence, 4),
        int(crop.active),
        crop.image.count,
        events.get(crop.image.seq_id, "") if crop.image.seq_id else "",
        human,
        label.user.get_username() if label else "",
        label.created_at.isoformat() if label else "",
        prediction.species.name if prediction else "",
        round(prediction.confidence, 4) if prediction else "",
        int(auto),
        crop_event(crop.image),
        event.species.name if event else "",
        round(event.confidence, 4) if event else "",
        f"classifier v{classifier.number}" if prediction and classifier else "",
        f"embedding v{classifier.embedding_version.number}" if prediction and classifier else "",
        round_.number if round_ else "",
        round_.strategy if round_ else "",
    ]
