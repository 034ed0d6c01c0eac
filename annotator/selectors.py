"""Reads for the web app: project access, the dashboard and the CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.http import Http404

from activelearn.models import (
    ClassifierVersion,
    EventPrediction,
    Label,
    Prediction,
    Round,
    RoundCrop,
)
from activelearn.selectors import classifier_latest, round_open_get, round_progress
from annotator.models import Image, Membership, Project, Role
from annotator.sequences import capture_event
from detector.models import Crop
from detector.selectors import event_counts
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_version_current

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


def project_list_for_user(*, user: User | AnonymousUser) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user_id=user.pk or 0)
        .select_related("project")
        .order_by("project__name")
    )


def project_get_for_user(
    *, slug: str, user: User | AnonymousUser, roles: tuple[str, ...] = tuple(Role)
) -> tuple[Project, str]:
    """The project and the user's role in it; 404 for non-members or a role not in ``roles``.

    A 404 rather than a 403 so that outsiders learn nothing, not even that the project exists.
    """
    membership = (
        Membership.objects.filter(project__slug=slug, user_id=user.pk or 0)
        .select_related("project")
        .first()
    )
    if membership is None or membership.role not in roles:
        raise Http404("No such project")
    return membership.project, membership.role


@dataclass(frozen=True)
class ProjectStatus:
    images: int
    images_detected: int
    images_empty: int
    crops: int
    labelled: int
    predicted: int
    embedding: EmbeddingVersion | None
    open_round: Round | None
    open_round_done: int
    open_round_total: int
    rounds: list[Round]
    classifier_number: int | None


def project_status(*, project: Project) -> ProjectStatus:
    images = Image.objects.filter(project=project)
    classifier = classifier_latest(project=project)
    open_round = round_open_get(project=project)
    done, total = round_progress(round_=open_round) if open_round else (0, 0)
    return ProjectStatus(
        images=images.count(),
        images_detected=images.filter(detected_at__isnull=False).count(),
        images_empty=images.filter(is_empty=True).count(),
        crops=Crop.objects.filter(project=project, active=True).count(),
        labelled=Label.objects.filter(project=project).values("crop_id").distinct().count(),
        predicted=classifier.predictions.count() if classifier else 0,
        embedding=embedding_version_current(project=project),
        open_round=open_round,
        open_round_done=done,
        open_round_total=total,
        rounds=list(project.rounds.order_by("-number")[:20]),
        classifier_number=classifier.number if classifier else None,
    )


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
