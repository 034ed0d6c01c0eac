"""Checking the detector's empties (a sample per camera, a volunteer's answer) and the admins'
corrected event counts."""

from __future__ import annotations

import secrets
from collections import defaultdict

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from activelearn.empties import sample_stratified
from activelearn.models import CountCorrection, EmptyCheck
from activelearn.services.locks import empty_check_lock, project_lock
from projects.models import Image, Project, Species
from projects.sequences import capture_event

__all__ = ["CheckError", "count_correct", "empty_check_answer", "empty_sample_draw"]

# The most images one draw adds to the sample (a page of answers takes a few seconds each).
MAX_SAMPLE = 1000


class CheckError(ValueError):
    """An empty check or a count correction was refused; nothing was changed."""


def empty_sample_draw(
    *, project: Project, user: User, size: int, seed: int | None = None
) -> list[EmptyCheck]:
    """Add ``size`` detector-empty images not yet in the sample, stratified by camera
    (``activelearn.empties.sample_stratified``), as unanswered checks; return them.

    ``seed`` (recorded on each check) makes the draw reproducible; without it one is drawn.
    Raises CheckError for a size outside 1..MAX_SAMPLE; fewer images than asked is no error.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SAMPLE:
        raise CheckError(f"the sample size must be a whole number from 1 to {MAX_SAMPLE}")
    seed = secrets.randbelow(2**31) if seed is None else seed
    with transaction.atomic():
        # One draw at a time per project, or two could pick the same image.
        project_lock(project_id=project.pk)
        by_camera: dict[str, list[int]] = defaultdict(list)
        rows = Image.objects.filter(
            project=project, is_empty=True, empty_check__isnull=True
        ).values_list("pk", "camera")
        cameras = {}
        for pk, camera in rows:
            by_camera[camera].append(pk)
            cameras[pk] = camera
        drawn = sample_stratified(by_camera, size, seed=seed)
        return EmptyCheck.objects.bulk_create(
            EmptyCheck(project=project, image_id=pk, camera=cameras[pk], seed=seed, drawn_by=user)
            for pk in drawn
        )


def empty_check_answer(
    *, project: Project, check_id: int, user: User, has_animal: bool
) -> EmptyCheck:
    """Record ``user``'s answer to a check of ``project``: is there an animal in the image?

    Raises CheckError, changing nothing, for a check of another project or one already
    answered (the first answer holds: the rate counts each image once).
    """
    with transaction.atomic():
        check = empty_check_lock(project_id=project.pk, check_id=check_id)
        if check is None:
            raise CheckError("no such check in this project")
        if check.has_animal is not None:
            raise CheckError("this image was already checked")
        check.has_animal = bool(has_animal)
        check.answered_by_id = user.pk
        check.answered_at = timezone.now()
        check.save(update_fields=["has_animal", "answered_by", "answered_at"])
    return check


def count_correct(
    *,
    project: Project,
    user: User,
    event: str,
    species_id: int,
    count: int,
    previous: int | None = None,
) -> CountCorrection:
    """An admin's count of one species in one capture event; replaces an earlier correction.

    Raises CheckError, changing nothing, for an event or a species not of the project, or a
    count that is not a whole number from 0 to 10000.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
        raise CheckError("the count must be a whole number from 0 to 10000")
    if not Species.objects.filter(project=project, pk=species_id).exists():
        raise CheckError("no such species in this project")
    if not _event_exists(project=project, event=event):
        raise CheckError("no such capture event in this project")
    correction, _ = CountCorrection.objects.update_or_create(
        project=project,
        event=event,
        species_id=species_id,
        defaults={"count": count, "previous": previous, "corrected_by": user},
    )
    return correction


def _event_exists(*, project: Project, event: str) -> bool:
    images = Image.objects.filter(project=project)
    if event.startswith("image-") and event[6:].isdigit():
        image = images.filter(pk=int(event[6:]), seq_id="").first()
        if image is not None and capture_event(seq_id="", image_id=image.pk) == event:
            return True
    return bool(event) and images.filter(seq_id=event).exists()
