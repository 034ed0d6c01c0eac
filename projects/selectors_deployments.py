"""Reads for the deployments page and the filters that name deployments."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from projects.models import Deployment, Image, Project


@dataclass(frozen=True)
class DeploymentRow:
    deployment: Deployment
    n_images: int


def deployments_with_counts(*, project: Project) -> list[DeploymentRow]:
    """The project's deployments by id, each with its number of images (one query)."""
    rows = (
        Deployment.objects.filter(project=project)
        .annotate(n=Count("images"))
        .order_by("deployment_id")
    )
    return [DeploymentRow(deployment=d, n_images=d.n) for d in rows]


def images_without_deployment(*, project: Project) -> int:
    """How many images of the project no deployment holds."""
    return Image.objects.filter(project=project, deployment__isnull=True).count()


def deployment_get(*, project: Project, deployment_pk: int) -> Deployment:
    """One deployment of ``project``; Deployment.DoesNotExist for another project's."""
    return Deployment.objects.get(project=project, pk=deployment_pk)


def deployment_choices(*, project: Project) -> list[tuple[str, str]]:
    """(deployment id, label) pairs for a filter's choices."""
    return [
        (d, d)
        for d in Deployment.objects.filter(project=project)
        .order_by("deployment_id")
        .values_list("deployment_id", flat=True)
    ]
