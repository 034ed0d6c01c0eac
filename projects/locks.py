"""The project and image row locks, named once. The order they are taken in with the other
locks is documented in ``activelearn.services.locks``, which re-exports the project lock."""

from __future__ import annotations

from projects.models import Image, Project


def project_lock(*, project_id: int) -> None:
    """Lock the project row until the transaction ends: one writer at a time for the writes
    that must not interleave (queueing fine-tuning, the admin's species and attribute edits)."""
    Project.objects.select_for_update().filter(pk=project_id).first()


def image_lock(*, image_id: int) -> Image:
    """Lock the image row until the transaction ends and return it (with its project): one box
    change of an image at a time, so two people redrawing the same box cannot both drop it and
    leave two replacements."""
    return Image.objects.select_for_update().select_related("project").get(pk=image_id)
