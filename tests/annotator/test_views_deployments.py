"""The deployments page: admins upload, add, edit and delete; ecologists only look."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from projects.models import Deployment, Image, Project

pytestmark = pytest.mark.django_db

CSV = (
    "deploymentID,locationName,latitude,longitude,coordinateUncertainty,deploymentStart,"
    "deploymentEnd,cameraID,folder,clockOffset\n"
    "fox-cam,Ridge,51.5,-0.1,30,2021-01-01T00:00:00Z,2022-01-01T00:00:00Z,C1,images/Red_Fox,\n"
    "agouti-cam,Creek,51.4,-0.2,,2021-01-01T00:00:00Z,2022-01-01T00:00:00Z,C2,images/Agouti,"
    "+01:00\n"
)
FORM = {
    "deployment_id": "hand-made",
    "location_name": "Gate",
    "location_id": "",
    "latitude": "10.5",
    "longitude": "20.25",
    "coordinate_uncertainty": "",
    "start": "2021-01-01T00:00",
    "end": "2021-02-01T00:00:00+01:00",
    "camera_id": "",
    "folder": "images/Agouti",
    "clock_offset": "-00:30",
    "setup_notes": "",
}


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(client: Client, project: Project, text: str) -> object:
    return client.post(
        reverse("deployments_upload", args=[project.slug]),
        {"csv_file": SimpleUploadedFile("d.csv", text.encode(), content_type="text/csv")},
    )


def test_admin_uploads_a_csv_and_sees_deployments_with_image_counts(
    ingested_project: Project, admin_user: User
) -> None:
    client = client_for(admin_user)
    response = upload(client, ingested_project, CSV)
    assert response.status_code == 302  # type: ignore[attr-defined]
    page = client.get(reverse("deployments", args=[ingested_project.slug]))
    text = page.content.decode()
    fox = Image.objects.filter(project=ingested_project, file_name__startswith="images/Red_Fox/")
    assert fox.count() > 0
    assert fox.filter(deployment__deployment_id="fox-cam").count() == fox.count()
    assert 'data-deployment="fox-cam"' in text and 'data-deployment="agouti-cam"' in text
    assert f'<td class="image-count">{fox.count()}</td>' in text
    assert "0 image(s) are in no deployment." in text


def test_a_bad_upload_is_refused_and_changes_nothing(project: Project, admin_user: User) -> None:
    client = client_for(admin_user)
    response = upload(client, project, CSV.replace("51.5", "99"))
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "latitude &#x27;99&#x27; is outside -90..90" in response.content.decode()  # type: ignore[attr-defined]
    assert not Deployment.objects.filter(project=project).exists()
    response = upload(client, project, "\xff")
    assert response.status_code == 400  # type: ignore[attr-defined]


def test_add_edit_delete_through_the_forms(ingested_project: Project, admin_user: User) -> None:
    client = client_for(admin_user)
    slug = ingested_project.slug
    assert client.post(reverse("deployment_add", args=[slug]), FORM).status_code == 302
    made = Deployment.objects.get(project=ingested_project, deployment_id="hand-made")
    assert (made.clock_offset_seconds, made.start) == (-1800, datetime(2021, 1, 1, tzinfo=UTC))
    assert made.images.count() > 0  # the untimed Agouti images: their folder's only deployment
    bad = {**FORM, "latitude": "95"}
    assert client.post(reverse("deployment_add", args=[slug]), bad).status_code == 400
    edit = reverse("deployment_edit", args=[slug, made.pk])
    assert client.get(edit).status_code == 200
    response = client.post(edit, {**FORM, "end": "2020-01-01T00:00"})
    assert response.status_code == 400
    assert "The start must be before the end." in response.content.decode()
    assert client.post(edit, {**FORM, "location_name": "New gate"}).status_code == 302
    made.refresh_from_db()
    assert made.location_name == "New gate"
    delete = reverse("deployment_delete", args=[slug, made.pk])
    assert client.post(delete).status_code == 302
    assert not Deployment.objects.filter(pk=made.pk).exists()
    assert Image.objects.filter(project=ingested_project, deployment__isnull=True).count() == 15


def test_ecologists_look_volunteers_and_outsiders_do_not(
    project: Project, ecologist: User, volunteer: User, outsider: User
) -> None:
    page = reverse("deployments", args=[project.slug])
    eco = client_for(ecologist)
    response = eco.get(page)
    assert response.status_code == 200
    assert "Upload a deployments CSV" not in response.content.decode()
    assert upload(eco, project, CSV).status_code == 404  # type: ignore[attr-defined]
    assert not Deployment.objects.exists()
    for user in (volunteer, outsider):
        assert client_for(user).get(page).status_code == 404
