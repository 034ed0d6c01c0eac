"""An admin uploads a deployments CSV on the deployments page in headless Chromium and sees
the deployments with their image counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from projects.models import Image, Project
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSV = (
    "deploymentID,locationName,latitude,longitude,coordinateUncertainty,deploymentStart,"
    "deploymentEnd,cameraID,folder,clockOffset\n"
    "fox-ridge,Fox ridge,51.5,-0.1,30,2021-01-01T00:00:00Z,2022-01-01T00:00:00Z,C1,"
    "images/Red_Fox,\n"
    "agouti-creek,Agouti creek,51.4,-0.2,,2021-01-01T00:00:00Z,2022-01-01T00:00:00Z,C2,"
    "images/Agouti,+01:00\n"
)


def test_admin_uploads_deployments_and_sees_their_image_counts(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    tmp_path: Path,
) -> None:
    page = browser_page
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/")
    page.get_by_role("link", name="Deployments").click()
    assert page.locator("#deployments tbody").inner_text().strip() == "No deployments yet."
    path = tmp_path / "deployments.csv"
    path.write_text(CSV, encoding="utf-8")
    page.set_input_files("#deployments-upload input[type=file]", str(path))
    with page.expect_navigation():
        page.click("#deployments-upload button[type=submit]")
    assert "2 deployment(s) added, 0 updated" in page.content()
    images = Image.objects.filter(project=ingested_project)
    for deployment_id, folder in (("fox-ridge", "Red_Fox"), ("agouti-creek", "Agouti")):
        row = page.locator(f'#deployments tr[data-deployment="{deployment_id}"]')
        expected = images.filter(file_name__startswith=f"images/{folder}/").count()
        assert expected > 0
        assert row.locator(".image-count").inner_text() == str(expected)
    assert page.locator("#loose").inner_text() == "0 image(s) are in no deployment."
    # A bad file: the reason is shown and nothing changes.
    path.write_text(CSV.replace("51.5", "95"), encoding="utf-8")
    page.set_input_files("#deployments-upload input[type=file]", str(path))
    with page.expect_navigation():
        page.click("#deployments-upload button[type=submit]")
    assert "latitude '95' is outside -90..90" in page.locator("body").inner_text()
    assert page.locator("#deployments tbody tr").count() == 2
