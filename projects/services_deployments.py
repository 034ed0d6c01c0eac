"""Writes for deployments: the CSV import, the admin's add/edit/delete, and the assignment of
images to deployments (with the clock correction of their capture times).

The parsing and the assignment rule are ``projects.deployments`` (Django-free).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from django.db import transaction

from projects.deployments import (
    DeploymentCsvError,
    DeploymentFields,
    DeploymentSpan,
    ImageClock,
    deployment_fields_check,
    deployments_assign,
    deployments_csv_parse,
    true_time,
)
from projects.locks import project_lock
from projects.models import Deployment, Image, Project

__all__ = [
    "DeploymentCsvError",
    "DeploymentImportReport",
    "deployment_create",
    "deployment_delete",
    "deployment_update",
    "deployments_import",
    "images_deployments_assign",
]

_WRITE_BATCH = 1000


@dataclass(frozen=True)
class DeploymentImportReport:
    created: int
    updated: int
    images_assigned: int
    images_changed: int


def deployments_import(
    *, project: Project, text: str, ignored_columns: Iterable[str] = ()
) -> DeploymentImportReport:
    """Create or update (by deploymentID) the deployments of a deployments CSV, then
    re-assign the project's images.

    All or nothing: a CSV with any problem (``deployments_csv_parse``) raises
    DeploymentCsvError before anything is written. Deployments the CSV does not name are
    kept as they are.
    """
    rows = deployments_csv_parse(text, ignored=ignored_columns)
    with transaction.atomic():
        project_lock(project_id=project.pk)
        existing = {d.deployment_id: d for d in Deployment.objects.filter(project=project)}
        created = updated = 0
        for fields in rows:
            deployment = existing.get(fields.deployment_id)
            if deployment is None:
                Deployment.objects.create(project=project, **asdict(fields))
                created += 1
            else:
                _fields_set(deployment, fields)
                deployment.save()
                updated += 1
        changed = images_deployments_assign(project=project)
    assigned = Image.objects.filter(project=project, deployment__isnull=False).count()
    return DeploymentImportReport(
        created=created, updated=updated, images_assigned=assigned, images_changed=changed
    )


def _fields_set(deployment: Deployment, fields: DeploymentFields) -> None:
    for name, value in asdict(fields).items():
        setattr(deployment, name, value)


def _id_free(*, project: Project, deployment_id: str, exclude_pk: int | None) -> None:
    taken = Deployment.objects.filter(project=project, deployment_id=deployment_id)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise DeploymentCsvError(f"there is a deployment {deployment_id!r} already")


def deployment_create(*, project: Project, fields: DeploymentFields) -> Deployment:
    """Add one deployment and re-assign the images; DeploymentCsvError (nothing written) for
    invalid values (``deployment_fields_check``) or an id the project has."""
    fields = deployment_fields_check(fields)
    with transaction.atomic():
        project_lock(project_id=project.pk)
        _id_free(project=project, deployment_id=fields.deployment_id, exclude_pk=None)
        deployment = Deployment.objects.create(project=project, **asdict(fields))
        images_deployments_assign(project=project)
    return deployment


def deployment_update(
    *, project: Project, deployment_pk: int, fields: DeploymentFields
) -> Deployment:
    """Change one deployment of ``project`` and re-assign the images (as ``deployment_create``).

    Raises Deployment.DoesNotExist for a deployment of another project."""
    fields = deployment_fields_check(fields)
    with transaction.atomic():
        project_lock(project_id=project.pk)
        deployment = Deployment.objects.get(project=project, pk=deployment_pk)
        _id_free(project=project, deployment_id=fields.deployment_id, exclude_pk=deployment.pk)
        _fields_set(deployment, fields)
        deployment.save()
        images_deployments_assign(project=project)
    return deployment


def deployment_delete(*, project: Project, deployment_pk: int) -> str:
    """Delete one deployment of ``project`` (its images lose it and their clock correction,
    or move to another deployment that fits); returns its id. Labels are untouched.

    Raises Deployment.DoesNotExist for a deployment of another project."""
    with transaction.atomic():
        project_lock(project_id=project.pk)
        deployment = Deployment.objects.get(project=project, pk=deployment_pk)
        name = deployment.deployment_id
        deployment.delete()
        images_deployments_assign(project=project)
    return name


def images_deployments_assign(*, project: Project) -> int:
    """Assign every image of ``project`` to its deployment (``deployments_assign``: folder,
    then time) and set its true time, ``taken_at`` = ``camera_taken_at`` - the deployment's
    clock offset. Returns how many images changed. Call inside the caller's transaction
    (holding the project lock): the deployment writes and the import service do.

    An image with no ``camera_taken_at`` but a ``taken_at`` and no deployment yet (imported
    before camera times were kept apart) has never been corrected: its ``taken_at`` is the
    camera's time and is kept as such.
    """
    spans = [
        DeploymentSpan(
            key=d.pk,
            folder=d.folder,
            start=d.start,
            end=d.end,
            clock_offset_seconds=d.clock_offset_seconds,
        )
        for d in Deployment.objects.filter(project=project)
    ]
    rows = list(
        Image.objects.filter(project=project).values_list(
            "pk", "file_name", "camera_taken_at", "taken_at", "deployment_id"
        )
    )
    clocks: list[ImageClock] = []
    camera_times = {}
    for pk, file_name, camera_at, taken_at, deployment_pk in rows:
        if camera_at is None and taken_at is not None and deployment_pk is None:
            camera_at = taken_at
        camera_times[pk] = camera_at
        clocks.append(ImageClock(key=pk, file_name=file_name, camera_taken_at=camera_at))
    assigned = deployments_assign(spans, clocks)
    changed: list[Image] = []
    for pk, _, camera_at, taken_at, deployment_pk in rows:
        span = assigned[pk]
        new_pk = span.key if span is not None else None
        new_time = true_time(camera_times[pk], span)
        if (new_pk, new_time, camera_times[pk]) != (deployment_pk, taken_at, camera_at):
            changed.append(
                Image(
                    pk=pk, deployment_id=new_pk, taken_at=new_time, camera_taken_at=camera_times[pk]
                )
            )
    Image.objects.bulk_update(
        changed, ["deployment", "taken_at", "camera_taken_at"], batch_size=_WRITE_BATCH
    )
    return len(changed)
