"""The project row lock, named once. The order it is taken in with the other locks is documented
in ``activelearn.services.locks``, which re-exports it."""

from __future__ import annotations

from projects.models import Project


def project_lock(*, project_id: int) -> None:
    """Lock the project row until the transaction ends: one writer at a time for the writes
    that must not interleave (queueing fine-tuning, the admin's species and attribute edits)."""
    Project.objects.select_for_update().filter(pk=project_id).first()
