"""Reads for the web app: project access, the dashboard and the CSV export."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.http import Http404

from activelearn.models import (
    Label,
    Round,
)
from activelearn.selectors import classifier_latest, round_open_get, round_progress
from annotator.models import Image, Membership, Project, Role
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_version_current


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
