"""Deployment writes: the CSV import (all or nothing, updates by id), add/edit/delete, and the
assignment of images with their clock correction, also for images imported later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from projects.deployments import DeploymentCsvError, DeploymentFields
from projects.models import Deployment, Image, Project
from projects.services_deployments import (
    deployment_create,
    deployment_delete,
    deployment_update,
    deployments_import,
    images_deployments_assign,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2021, 5, 1, 12, 0, tzinfo=UTC)
HEADER = (
    "deploymentID,locationName,latitude,longitude,coordinateUncertainty,deploymentStart,"
    "deploymentEnd,cameraID,folder,clockOffset\n"
)
CSV = HEADER + (
    "north-1,North,51.5,-0.1,30,2021-05-01T00:00:00Z,2021-05-01T23:59:59Z,C1,cam1,+01:00\n"
    "north-2,North,51.5,-0.1,30,2021-05-02T00:00:00Z,2021-05-03T00:00:00Z,C1,cam1,\n"
    "south,South,50.0,-1.0,,2021-04-01T00:00:00Z,2021-06-01T00:00:00Z,C2,cam2,-00:30\n"
)


def add_image(project: Project, file_name: str, camera_time: datetime | None) -> Image:
    return Image.objects.create(
        project=project,
        path=f"/data/{file_name}",
        file_name=file_name,
        width=10,
        height=10,
        camera_taken_at=camera_time,
        taken_at=camera_time,
        time_source="exif" if camera_time else "",
    )


def state(project: Project) -> dict[str, tuple[str | None, datetime | None]]:
    return {
        i.file_name: (i.deployment.deployment_id if i.deployment else None, i.taken_at)
        for i in Image.objects.filter(project=project).select_related("deployment")
    }


def test_import_assigns_by_folder_and_time_and_corrects_the_clock(project: Project) -> None:
    add_image(project, "cam1/a.jpg", T0)
    add_image(project, "cam1/b.jpg", T0 + timedelta(days=1))
    add_image(project, "cam1/untimed.jpg", None)  # two deployments in cam1: ambiguous
    add_image(project, "cam2/c.jpg", T0)
    add_image(project, "cam2/untimed.jpg", None)  # the folder's only deployment
    add_image(project, "cam3/d.jpg", T0)
    report = deployments_import(project=project, text=CSV)
    assert (report.created, report.updated, report.images_assigned) == (3, 0, 4)
    assert state(project) == {
        "cam1/a.jpg": ("north-1", T0 - timedelta(hours=1)),
        "cam1/b.jpg": ("north-2", T0 + timedelta(days=1)),
        "cam1/untimed.jpg": (None, None),
        "cam2/c.jpg": ("south", T0 + timedelta(minutes=30)),
        "cam2/untimed.jpg": ("south", None),
        "cam3/d.jpg": (None, T0),
    }
    # The camera's own time is kept.
    assert Image.objects.get(file_name="cam1/a.jpg").camera_taken_at == T0


def test_reimport_updates_by_id_and_reassigns(project: Project) -> None:
    add_image(project, "cam1/a.jpg", T0)
    deployments_import(project=project, text=CSV)
    changed = CSV.replace("C1,cam1,+01:00", "C9,cam1,+02:00")
    report = deployments_import(project=project, text=HEADER + changed.splitlines()[1] + "\n")
    assert (report.created, report.updated) == (0, 1)
    assert Deployment.objects.filter(project=project).count() == 3  # the others are kept
    assert Deployment.objects.get(deployment_id="north-1").camera_id == "C9"
    assert state(project)["cam1/a.jpg"] == ("north-1", T0 - timedelta(hours=2))


def test_a_bad_file_changes_nothing(project: Project) -> None:
    add_image(project, "cam1/a.jpg", T0)
    deployments_import(project=project, text=CSV)
    before = (state(project), list(Deployment.objects.values()))
    bad = CSV.replace("C2,cam2", "C3,cam2").replace("50.0", "95")  # one good change, one bad
    with pytest.raises(DeploymentCsvError, match="row 4: latitude '95' is outside -90..90"):
        deployments_import(project=project, text=bad)
    assert (state(project), list(Deployment.objects.values())) == before


def fields(**changes: object) -> DeploymentFields:
    base: dict[str, object] = {
        "deployment_id": "solo",
        "latitude": 1.0,
        "longitude": 2.0,
        "start": T0 - timedelta(days=1),
        "end": T0 + timedelta(days=1),
        "folder": "cam1",
        "clock_offset_seconds": 600,
    }
    return DeploymentFields(**{**base, **changes})  # type: ignore[arg-type]


def test_add_edit_delete_reassign(project: Project, admin_user: object) -> None:
    add_image(project, "cam1/a.jpg", T0)
    solo = deployment_create(project=project, fields=fields())
    assert state(project)["cam1/a.jpg"] == ("solo", T0 - timedelta(minutes=10))
    with pytest.raises(DeploymentCsvError, match="already"):
        deployment_create(project=project, fields=fields(folder="x"))
    with pytest.raises(DeploymentCsvError, match="before"):
        deployment_update(
            project=project, deployment_pk=solo.pk, fields=fields(end=T0 - timedelta(days=2))
        )
    deployment_update(project=project, deployment_pk=solo.pk, fields=fields(folder="cam2"))
    assert state(project)["cam1/a.jpg"] == (None, T0)
    deployment_update(project=project, deployment_pk=solo.pk, fields=fields())
    assert deployment_delete(project=project, deployment_pk=solo.pk) == "solo"
    assert state(project)["cam1/a.jpg"] == (None, T0)


def test_another_projects_deployment_cannot_be_touched(
    project: Project, admin_user: object
) -> None:
    from projects.services import project_create

    other = project_create(name="Other", created_by=None)
    theirs = deployment_create(project=other, fields=fields())
    with pytest.raises(Deployment.DoesNotExist):
        deployment_delete(project=project, deployment_pk=theirs.pk)
    with pytest.raises(Deployment.DoesNotExist):
        deployment_update(project=project, deployment_pk=theirs.pk, fields=fields())


def test_images_imported_later_join_their_deployment(project: Project, small_folder: Path) -> None:
    from detector.imports import images_import

    deployments_import(
        project=project,
        text=HEADER
        + "fox,F,1,1,,2021-01-01T00:00:00Z,2022-01-01T00:00:00Z,,images/Red_Fox,\n"
        + "agouti,A,1,1,,2021-01-01T00:00:00Z,2022-01-01T00:00:00Z,,images/Agouti/,\n",
    )
    images_import(project=project, folder=small_folder)
    images = Image.objects.filter(project=project).select_related("deployment")
    assert images.count() == 15
    for image in images:
        expected = "fox" if image.file_name.startswith("images/Red_Fox/") else "agouti"
        assert image.deployment is not None and image.deployment.deployment_id == expected


def test_legacy_times_count_as_camera_times(project: Project) -> None:
    image = add_image(project, "cam1/a.jpg", None)
    Image.objects.filter(pk=image.pk).update(taken_at=T0)  # imported before camera times
    deployment_create(project=project, fields=fields())
    image.refresh_from_db()
    assert (image.camera_taken_at, image.taken_at) == (T0, T0 - timedelta(minutes=10))
    assert images_deployments_assign(project=project) == 0  # a second run changes nothing


def test_import_deployments_command(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deployments.csv"
    path.write_text(CSV, encoding="utf-8")
    call_command("import_deployments", project.slug, str(path))
    assert "3 deployment(s) created, 0 updated" in capsys.readouterr().out
    path.write_text(CSV.replace("51.5", "north"), encoding="utf-8")
    with pytest.raises(CommandError, match="nothing imported: row 2: latitude 'north'"):
        call_command("import_deployments", project.slug, str(path))
    with pytest.raises(CommandError, match="no project 'nope'"):
        call_command("import_deployments", "nope", str(path))
