"""POST /api/v1/projects/{slug}/retrain: an admin queues a retrain; the queued task retrains."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from activelearn.models import ClassifierVersion, Prediction
from activelearn.services import RETRAIN_TASK
from annotator.api.services import api_token_create
from detector.models import Crop
from projects.models import Project, QueuedTask
from projects.taskqueue import task_run
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db

API = "/api/v1"


def _bearer(user: User) -> Client:
    _, key = api_token_create(user=user, name="test")
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def _url(project: Project) -> str:
    return f"{API}/projects/{project.slug}/retrain"


@pytest.mark.parametrize("role", ["volunteer", "ecologist", "outsider"])
def test_only_admins_retrain(
    role: str, ingested_project: Project, admin_user: User, request: pytest.FixtureRequest
) -> None:
    label_by_truth(ingested_project, admin_user, Crop.objects.filter(project=ingested_project))
    user = request.getfixturevalue(role)
    response = _bearer(user).post(_url(ingested_project))
    assert response.status_code == 404
    assert not QueuedTask.objects.filter(name=RETRAIN_TASK).exists()


def test_nothing_to_train_on_is_409_and_queues_nothing(
    ingested_project: Project, admin_user: User
) -> None:
    response = _bearer(admin_user).post(_url(ingested_project))
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Retrain not queued: nothing to train on yet: label some crops with a species first"
    )
    assert not QueuedTask.objects.exists()


def test_admin_queues_a_retrain_that_predicts_every_crop(
    ingested_project: Project, admin_user: User
) -> None:
    crops = Crop.objects.filter(project=ingested_project).select_related("image")
    label_by_truth(ingested_project, admin_user, crops)
    QueuedTask.objects.all().delete()  # whatever labelling queued: only the endpoint's counts

    response = _bearer(admin_user).post(_url(ingested_project))

    assert response.status_code == 202
    assert response.json() == {"detail": "Retrain queued"}
    queued = QueuedTask.objects.get()
    assert (queued.name, queued.args) == (RETRAIN_TASK, [ingested_project.pk])
    assert not ClassifierVersion.objects.exists()  # queued, not run in the web process
    task_run(name=queued.name, args=queued.args)
    classifier = ClassifierVersion.objects.get(project=ingested_project)
    assert Prediction.objects.filter(classifier=classifier).count() == crops.count()
    status = _bearer(admin_user).get(f"{API}/projects/{ingested_project.slug}").json()
    assert (status["classifier_version"], status["predicted"]) == (1, crops.count())
