"""Reads about capture events: which event a crop belongs to, and an event's crops and frames.

A crop's capture event is its image's sequence id, or ``image-<pk>`` for an image without one
(``projects.sequences.capture_event``: one rule for every place that groups by event).
"""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Q

from activelearn.models import Round, RoundCrop
from detector.models import Crop
from projects.models import Image, Project
from projects.sequences import capture_event

__all__ = ["crop_events_get", "event_frames", "round_event_crop_ids"]


def crop_events_get(*, project: Project, crop_ids: Collection[int]) -> dict[int, str]:
    """{crop id: capture event} for the crops of ``crop_ids`` in ``project`` (one query)."""
    rows = Crop.objects.filter(project=project, pk__in=list(crop_ids)).values_list(
        "pk", "image_id", "image__seq_id"
    )
    return {pk: capture_event(seq_id=seq, image_id=image) for pk, image, seq in rows}


def _event_images(image: Image) -> Q:
    """The images of ``image``'s capture event, as a filter on images."""
    if image.seq_id:
        return Q(project_id=image.project_id, seq_id=image.seq_id)
    return Q(pk=image.pk)


def round_event_crop_ids(*, round_: Round, crop: Crop) -> list[int]:
    """The crops of ``round_`` in ``crop``'s capture event, in pick order (``crop`` among them
    when it is in the round)."""
    images = Image.objects.filter(_event_images(crop.image)).values("pk")
    return list(
        RoundCrop.objects.filter(round=round_, crop__image__in=images)
        .order_by("position")
        .values_list("crop_id", flat=True)
    )


def event_frames(*, image: Image, limit: int = 24) -> list[Image]:
    """Every image of ``image``'s capture event, ``image`` included, in frame order."""
    return list(
        Image.objects.filter(_event_images(image)).order_by("frame_num", "taken_at", "file_name")[
            :limit
        ]
    )
