"""The Django admin: a new project gets the defaults; settings that re-derive crops are edited
on the project page (which queues the recut), not here."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from projects.models import Project

pytestmark = pytest.mark.django_db


def _superuser_client(django_user_model: type[User]) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-1"))
    return client


def test_admin_add_offers_the_defaults_and_change_keeps_geometry_read_only(
    project: Project, django_user_model: type[User]
) -> None:
    client = _superuser_client(django_user_model)
    add = client.get(reverse("admin:projects_project_add")).text
    assert 'name="backbone"' in add and 'value="efficientnet_lite0"' in add
    assert 'name="crop_shape"' in add
    change = client.get(reverse("admin:projects_project_change", args=[project.pk])).text
    assert 'name="backbone"' in change
    for field in ("crop_shape", "crop_padding", "detection_threshold", "min_box_pixels"):
        assert f'name="{field}"' not in change


def test_admin_lists_the_workers_with_the_age_of_their_last_beat(
    django_user_model: type[User],
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from projects.models import WorkerHeartbeat

    now = timezone.now()
    WorkerHeartbeat.objects.create(
        node="gpu@box", seen_at=now - timedelta(seconds=400), started_at=now, queues="gpu"
    )
    client = _superuser_client(django_user_model)
    listing = client.get(reverse("admin:projects_workerheartbeat_changelist")).text
    assert "gpu@box" in listing and re.search(r"\b40\d s ago", listing), listing[-2000:]
    assert client.get(reverse("admin:projects_workerheartbeat_add")).status_code == 403
