"""The project page as the admin's dashboard: pipeline counts, jobs, plots and status.json."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from activelearn.models import (
    ClassifierVersion,
    Consensus,
    Label,
    Prediction,
    Round,
    RoundCrop,
)
from activelearn.services import labels_import
from annotator.selectors import pipeline_counts
from detector.models import Crop, Detection
from embeddings.models import EmbeddingVersion
from projects.models import Image, Job, Project
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# Per block of ten crops: what each position holds (see ``_add_crops``).
DONE_A, DONE_B, PENDING, REVIEW = (0, 1), (2,), (3,), (4,)
AUTO = (5, 6)  # unlabelled, confidence 0.95 (>= the 0.9 threshold)
INACTIVE = (7,)  # unlabelled, 0.95, but below the detection thresholds now
LOW = (8, 9)  # unlabelled, confidence 0.5


SYNTHETIC_METRICS = {
    "n": 3,
    "top1": 0.8,
    "top5": 1.0,
    "f1_micro": 0.8,
    "f1_macro": 0.625,
    "f1_weighted": 0.71,
    "log_loss": 0.4321,
    "event_top1": 0.75,
    "n_events": 2,
}


def _synthetic_project(project: Project) -> tuple[ClassifierVersion, Round]:
    """An embedding version, a classifier with threshold 0.9 and an open round, no crops yet.

    No files: the page reads only the database (and plots from these rows).
    """
    now = timezone.now()
    version = EmbeddingVersion.objects.create(
        project=project,
        number=1,
        backbone="synthetic",
        weights="none",
        weights_source="none",
        pretrained=False,
        seed=0,
        directory="nowhere",
        status=EmbeddingVersion.Status.READY,
        activated_at=now,
    )
    classifier = ClassifierVersion.objects.create(
        project=project,
        number=1,
        embedding_version=version,
        last_label_id=0,
        n_labels=3,
        n_classes=2,
        seed=0,
        path="nowhere.joblib",
        cv_accuracy=0.8,
        cv_top5_accuracy=1.0,
        cv_n_splits=2,
        threshold=0.9,
        threshold_accuracy=0.97,
        target_accuracy=0.966,
    )
    open_round = Round.objects.create(
        project=project, number=1, strategy="random", size=100, seed=1, embedding_version=version
    )
    alpha, beta = (project.species.create(name=name) for name in ("alpha", "beta"))
    # What activelearn.metrics would have stored (the page only reads it).
    classifier.cv_metrics = dict(SYNTHETIC_METRICS)
    classifier.cv_per_species = {str(alpha.pk): [0.5, 2], str(beta.pk): [1.0, 1]}
    classifier.save(update_fields=["cv_metrics", "cv_per_species"])
    Image.objects.create(
        project=project, path="/nowhere/empty.jpg", file_name="empty.jpg", width=9, height=9,
        detected_at=now, is_empty=True, count=0,
    )  # fmt: skip
    return classifier, open_round


def _add_crops(
    project: Project, user: User, classifier: ClassifierVersion, open_round: Round, n: int
) -> None:
    """``n`` more crops (a multiple of ten), made cheaply with bulk_create; see the table."""
    alpha, beta = project.species.order_by("name")
    start = Crop.objects.filter(project=project).count()
    now = timezone.now()
    images = Image.objects.bulk_create(
        Image(
            project=project,
            path=f"/nowhere/{start + i}.jpg",
            file_name=f"{start + i}.jpg",
            width=100,
            height=100,
            seq_id=f"seq{(start + i) // 3}",
            detected_at=now,
            is_empty=False,
            count=1,
        )
        for i in range(n)
    )
    detections = Detection.objects.bulk_create(
        Detection(image=image, x=0.1, y=0.1, w=0.5, h=0.5, confidence=0.9, detector_version="s")
        for image in images
    )
    crops = Crop.objects.bulk_create(
        Crop(
            project=project,
            image=image,
            detection=detection,
            file=f"crops/{image.pk}.jpg",
            padding=0.1,
            active=(start + i) % 10 not in INACTIVE,
        )
        for i, (image, detection) in enumerate(zip(images, detections, strict=True))
    )
    status = {**dict.fromkeys(DONE_A + DONE_B, "done"), PENDING[0]: "pending", REVIEW[0]: "review"}
    voted = [
        (crop, status[(start + i) % 10])
        for i, crop in enumerate(crops)
        if (start + i) % 10 in status
    ]
    labels = Label.objects.bulk_create(
        Label(
            project=project,
            crop=crop,
            user=user,
            kind="species",
            species=beta if (start + i) % 10 in DONE_B else alpha,
        )
        for i, crop in enumerate(crops)
        if (start + i) % 10 in status
    )
    Consensus.objects.bulk_create(
        Consensus(
            project=project,
            crop=crop,
            status=crop_status,
            kind="species",
            species=label.species,
            votes=1,
            agreement=1.0,
            label=label,
        )
        for (crop, crop_status), label in zip(voted, labels, strict=True)
    )
    Prediction.objects.bulk_create(
        Prediction(
            crop=crop,
            classifier=classifier,
            species=alpha if (start + i) % 10 in DONE_A + AUTO + INACTIVE else beta,
            confidence=0.5 if (start + i) % 10 in LOW else 0.95,
            top=[],
        )
        for i, crop in enumerate(crops)
    )
    RoundCrop.objects.bulk_create(
        RoundCrop(round=open_round, crop=crop, position=start + i) for i, crop in enumerate(crops)
    )


@pytest.fixture
def synthetic(project: Project, volunteer: User) -> tuple[ClassifierVersion, Round]:
    classifier, open_round = _synthetic_project(project)
    _add_crops(project, volunteer, classifier, open_round, 10)
    return classifier, open_round


def test_pipeline_counts_in_sql(project: Project, volunteer: User, synthetic: Any) -> None:
    classifier, open_round = synthetic
    _add_crops(project, volunteer, classifier, open_round, 20)
    counts = pipeline_counts(project=project)
    assert counts.as_json() == {
        "images": 31,
        "images_detected": 31,
        "images_empty": 1,
        "crops": 27,  # 3 of 30 inactive
        "labelled": 9,
        "votes_pending": 3,
        "review": 3,
        "predicted": 30,
        "auto_acceptable": 6,  # unlabelled, active and at or above the threshold
        "classifier_number": 1,
        "threshold": 0.9,
    }
    ClassifierVersion.objects.filter(pk=classifier.pk).update(threshold=None)
    assert pipeline_counts(project=project).auto_acceptable == 0


def test_project_page_shows_the_pipeline(
    project: Project, admin_user: User, synthetic: Any
) -> None:
    html = _client(admin_user).get(reverse("project_detail", args=[project.slug])).text
    expected = {
        "images": 11,
        "images_empty": 1,
        "crops": 9,
        "labelled": 3,
        "votes_pending": 1,
        "review": 1,
        "predicted": 10,
        "auto_acceptable": 2,
    }
    for key, value in expected.items():
        assert f'data-count="{key}">{value}<' in html, key
    # Decided and disputed crops count as done in the round; waiting ones do not.
    assert 'id="round-count">4 / 10<' in html
    assert 'src="/static/dashboard.js"' in html
    # Human labels per species (decided ones) and machine labels of the unlabelled crops.
    model = _client(admin_user).get(reverse("project_model", args=[project.slug])).text
    assert "<tr><td>alpha</td><td>2</td><td>2</td></tr>" in model
    assert "<tr><td>beta</td><td>1</td><td>2</td></tr>" in model


PAGES = ("project_detail", "project_rounds", "project_model", "project_data", "project_settings")


def _page_queries(client: Client, project: Project) -> dict[str, int]:
    """Queries per project page."""
    counts = {}
    for name in PAGES:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse(name, args=[project.slug]))
        assert response.status_code == 200, name
        counts[name] = len(queries)
    return counts


def test_page_queries_do_not_grow_with_the_crops(
    project: Project, admin_user: User, volunteer: User, synthetic: Any
) -> None:
    classifier, open_round = synthetic
    job = Job.objects.create(project=project, kind=Job.Kind.RETRAIN, status="failed", error="x")
    Job.objects.create(project=project, kind=Job.Kind.EMBEDDING, status="running", total=5)
    client = _client(admin_user)
    small = _page_queries(client, project)
    print(f"project pages: {small} queries at 10 crops")
    _add_crops(project, volunteer, classifier, open_round, 990)
    assert Crop.objects.filter(project=project).count() == 1000
    assert _page_queries(client, project) == small
    assert job.pk
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("project_status_json", args=[project.slug]))
    assert len(queries) <= 16


@pytest.mark.parametrize(
    "who,status", [("admin", 200), ("volunteer", 404), ("ecologist", 404), ("outsider", 404)]
)
def test_status_json_is_for_admins(
    who: str,
    status: int,
    project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    outsider: User,
) -> None:
    user = {"admin": admin_user, "volunteer": volunteer, "ecologist": ecologist}.get(who, outsider)
    response = _client(user).get(reverse("project_status_json", args=[project.slug]))
    assert response.status_code == status
    if status == 200:
        assert set(response.json()) == {"pipeline", "round", "jobs", "recent_jobs"}


def test_status_json_requires_login(project: Project) -> None:
    response = Client().get(reverse("project_status_json", args=[project.slug]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_status_json_follows_round_and_jobs(
    project: Project, admin_user: User, volunteer: User, synthetic: Any
) -> None:
    _, open_round = synthetic
    url = reverse("project_status_json", args=[project.slug])
    client = _client(admin_user)
    data = client.get(url).json()
    assert data["round"] == {"number": 1, "strategy": "Random", "done": 4, "total": 10}
    assert data["pipeline"]["labelled"] == 3 and data["jobs"] == []
    # A second vote that decides a pending crop: labelled and round progress move by one.
    pending = open_round.items.order_by("position")[PENDING[0]].crop_id
    alpha = project.species.get(name="alpha")
    labels_import(
        project=project, crop_ids=[pending], user=admin_user, kind="species", species_id=alpha.pk
    )
    Job.objects.create(
        project=project,
        kind=Job.Kind.EMBEDDING,
        status="running",
        total=90,
        done=30,
        detail="embedding new crops with v1",
        started_at=timezone.now() - timedelta(seconds=60),
        worker="gpu@box-1",
    )
    data = client.get(url).json()
    assert data["round"]["done"] == 5
    assert (data["pipeline"]["labelled"], data["pipeline"]["votes_pending"]) == (4, 0)
    (job,) = data["jobs"]
    assert (job["kind"], job["label"], job["done"], job["total"], job["percent"]) == (
        "embedding",
        "Embedding",
        30,
        90,
        pytest.approx(33.3),
    )
    assert job["seconds_left"] == pytest.approx(120, abs=2)
    assert job["time_left"] == "about 2 min left"
    assert job["worker"] == "gpu@box-1"


def test_page_shows_running_and_failed_jobs(project: Project, admin_user: User) -> None:
    now = timezone.now()
    Job.objects.create(
        project=project,
        kind=Job.Kind.FINETUNE,
        status="running",
        total=10,
        done=4,
        detail="v2 from v1, head mode",
        started_at=now - timedelta(seconds=400),
        worker="gpu@box-1",
    )
    Job.objects.create(
        project=project,
        kind=Job.Kind.RETRAIN,
        status="failed",
        total=9,
        done=2,
        error="MemoryError: out of memory while training",
        started_at=now - timedelta(seconds=30),
        finished_at=now,
        worker="cpu@box-2",
    )
    html = _client(admin_user).get(reverse("project_detail", args=[project.slug])).text
    assert "Fine-tuning the embedding" in html and "4 / 10 (40%)" in html
    assert "about 10 min left" in html and "v2 from v1, head mode" in html
    assert "MemoryError: out of memory while training" in html
    assert "on gpu@box-1" in html and "on cpu@box-2" in html  # which worker runs or ran each


def test_admin_sees_label_counts_and_confusion_matrix(
    ingested_project: Project, admin_user: User, volunteer: User, ecologist: User
) -> None:
    from sklearn.metrics import confusion_matrix

    from activelearn.selectors import confusion_matrix_get
    from activelearn.services import classifier_retrain

    crops = list(ingested_project.crops.select_related("image"))
    label_by_truth(ingested_project, volunteer, crops)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None and classifier.cv_accuracy is not None
    view = confusion_matrix_get(project=ingested_project)
    assert view is not None
    assert set(view.names) == {"red fox", "agouti"} and view.n_crops == len(crops)
    saved = np.load((settings.TRAPWISE_DATA_DIR / classifier.path).with_suffix(".cv.npz"))
    by_name = {s.name: s.pk for s in ingested_project.species.all()}
    expected = confusion_matrix(
        saved["true"], saved["predicted"], labels=[by_name[n] for n in view.names]
    )
    assert (view.counts == expected).all() and view.counts.sum() == len(crops)
    html = _client(admin_user).get(reverse("project_model", args=[ingested_project.slug])).text
    assert 'id="confusion-plot"' in html and 'id="label-counts-plot"' in html
    n_fox = sum("Red_Fox" in c.image.file_name for c in crops)
    assert f"<tr><td>red fox</td><td>{n_fox}</td><td>0</td></tr>" in html
    # The table lists every species; the chart only those with a label.
    assert "<tr><td>ocelot</td><td>0</td><td>0</td></tr>" in html
    chart = html.split('id="label-counts-plot">')[1].split("</figure>")[0]
    assert ">red fox<" in chart and ">agouti<" in chart and ">ocelot<" not in chart
    # Ecologists read the model page too (not the jobs nor the live dashboard).
    slug = ingested_project.slug
    eco = _client(ecologist).get(reverse("project_model", args=[slug])).text
    assert 'id="confusion-plot"' in eco and 'id="label-counts-plot"' in eco
    assert 'action="/p/test-traps/classifier/retrain/"' not in eco
    eco = _client(ecologist).get(reverse("project_detail", args=[slug])).text
    assert 'id="jobs"' not in eco and "dashboard.js" not in eco


def test_admin_sees_metrics_rare_species_and_effort(
    project: Project, admin_user: User, ecologist: User, synthetic: Any
) -> None:
    project.seconds_per_image = 3600.0  # an hour an image: 2 auto-accepted + 1 empty = 3 h
    project.save(update_fields=["seconds_per_image"])
    html = _client(admin_user).get(reverse("project_model", args=[project.slug])).text
    for metric, shown in (
        ("top1", "0.800"),
        ("top5", "1.000"),
        ("f1_micro", "0.800"),
        ("f1_macro", "0.625"),
        ("f1_weighted", "0.710"),
        ("log_loss", "0.432"),
    ):
        assert f'data-metric="{metric}">{shown}<' in html, metric
    assert 'data-metric="event_top1">0.750 <span class="muted small">(2 events)' in html
    per_species = html.split('id="per-species-accuracy"')[1].split("</details>")[0]
    assert "<tr><td>alpha</td><td>0.500</td><td>2</td></tr>" in per_species
    assert "<tr><td>beta</td><td>1.000</td><td>1</td></tr>" in per_species
    # Decided human labels: alpha 2, beta 1 (pending and disputed crops do not count).
    # The rare species are on the rounds page, where a round aimed at one is started.
    html = _client(admin_user).get(reverse("project_rounds", args=[project.slug])).text
    fewest = html.split('id="rare-fewest-labels"')[1].split("</table>")[0]
    assert fewest.index("<td>beta</td><td>1</td>") < fewest.index("<td>alpha</td><td>2</td>")
    lowest = html.split('id="rare-lowest-accuracy"')[1].split("</table>")[0]
    assert lowest.index("<td>alpha</td><td>0.500</td>") < lowest.index(
        "<td>beta</td><td>1.000</td>"
    )
    html = _client(admin_user).get(reverse("project_detail", args=[project.slug])).text
    assert 'id="effort-hours">3.0<' in html
    formula = html.split('id="effort-formula">')[1].split("</p>")[0]
    assert "(2 crops auto-accepted at the 0.966 target accuracy, confidence ≥ 0.900" in formula
    assert "+ 1 empty images filtered out by the detector)" in formula
    assert "× 3600 s per image ÷ 3600 = 3.0 hours" in formula
    exports = _client(admin_user).get(reverse("project_exports", args=[project.slug])).text
    assert 'href="/p/test-traps/export/metrics.json"' in exports
    eco = _client(ecologist).get(reverse("project_detail", args=[project.slug])).text
    assert 'id="effort-hours">3.0<' in eco  # the estimate is for every member
    # The ecologist reads the metrics (the model page) and the rare species, not the admin's
    # round advice.
    eco = _client(ecologist).get(reverse("project_model", args=[project.slug])).text
    assert 'id="metrics"' in eco and 'id="per-species-accuracy"' in eco
    eco = _client(ecologist).get(reverse("project_rounds", args=[project.slug])).text
    assert 'id="rare-species"' in eco and "One species, for diversity" not in eco


def _attribute_scores(
    accuracy: float | None,
    precision: float | None,
    recall: float | None,
    *,
    support: int,
    exact_match: float | None,
) -> dict[str, object]:
    """A stored ``attribute_metrics`` of one (since removed) attribute, "eating": the same
    scores micro and per attribute."""
    scores = {"accuracy": accuracy, "precision": precision, "recall": recall}
    return {
        "n": 4,
        "n_splits": 2,
        "threshold": 0.5,
        "exact_match": exact_match,
        **scores,
        "per_attribute": [{"id": 999_999, "name": "eating", **scores, "support": support}],
    }


def test_attributes_without_evidence_say_so(
    project: Project, admin_user: User, synthetic: Any
) -> None:
    """Issue 17: a head scored where no attribute was ever recorded as yes showed accuracy
    1.000 with precision and recall 0. Stored that way (before the fix) or as None (after),
    the page says "no evidence yet" and shows none of those numbers."""
    classifier, _ = synthetic
    stored_before = _attribute_scores(1.0, 0.0, 0.0, support=0, exact_match=1.0)
    stored_after = _attribute_scores(None, None, None, support=0, exact_match=None)
    for stored in (stored_before, stored_after):
        ClassifierVersion.objects.filter(pk=classifier.pk).update(attribute_metrics=stored)
        html = _client(admin_user).get(reverse("project_model", args=[project.slug])).text
        part = html.split('id="attribute-metrics"')[1].split("</table>")[0]
        assert 'id="attribute-no-evidence"' in part
        assert "1.000" not in part and "0.000" not in part
        row = part.split("<td>eating</td>")[1].split("</tr>")[0]
        assert row.count("no evidence yet") == 3 and row.endswith("<td>0</td>")
    # With evidence the numbers show; a precision without any predicted yes does not.
    ClassifierVersion.objects.filter(pk=classifier.pk).update(
        attribute_metrics=_attribute_scores(0.75, None, 0.0, support=1, exact_match=0.5)
    )
    html = _client(admin_user).get(reverse("project_model", args=[project.slug])).text
    part = html.split('id="attribute-metrics"')[1].split("</table>")[0]
    assert 'id="attribute-no-evidence"' not in part and "Accuracy <b>0.750</b>" in part
    row = part.split("<td>eating</td>")[1].split("</tr>")[0]
    assert row.count("no evidence yet") == 1 and "<td>0.750</td>" in row


def test_effort_shows_weeks_and_years_when_large(
    project: Project, admin_user: User, synthetic: Any
) -> None:
    # 3 items x 3600 s = 3 h; scaled by the seconds per image up to the preprint's order.
    project.seconds_per_image = 3600.0
    project.save(update_fields=["seconds_per_image"])
    Image.objects.filter(project=project, is_empty=True).delete()
    now = timezone.now()
    Image.objects.bulk_create(
        Image(project=project, path=f"/nowhere/e{i}.jpg", file_name=f"e{i}.jpg", width=9,
              height=9, detected_at=now, is_empty=True, count=0)
        for i in range(2078)
    )  # fmt: skip
    html = _client(admin_user).get(reverse("project_detail", args=[project.slug])).text
    # (2 + 2078) h = 52 weeks of 40 h = 1.0 year of 40-hour weeks.
    assert 'id="effort-hours">2080.0<' in html
    assert 'id="effort-weeks">52.0<' in html and 'id="effort-years">1.0<' in html
    formula = html.split('id="effort-formula">')[1].split("</p>")[0]
    assert "= 2080.0 ÷ 40 = 52.0 weeks of 40 hours" in formula
    assert "= 52.0 ÷ 52 = 1.0 years of 40-hour weeks" in formula


def test_effort_under_an_hour_is_shown_in_minutes(
    project: Project, admin_user: User, synthetic: Any
) -> None:
    # 3 items x 10 s = 30 s: "0.0 hours" would hide it.
    project.seconds_per_image = 10.0
    project.save(update_fields=["seconds_per_image"])
    html = _client(admin_user).get(reverse("project_detail", args=[project.slug])).text
    assert 'id="effort-minutes">0<' not in html and 'id="effort-minutes">1<' in html
    formula = html.split('id="effort-formula">')[1].split("</p>")[0]
    assert "× 10 s per image ÷ 3600 = 0.01 hours" in formula


def test_metrics_json_export(
    project: Project, admin_user: User, ecologist: User, volunteer: User, synthetic: Any
) -> None:
    classifier, _ = synthetic
    url = reverse("export_metrics", args=[project.slug])
    assert _client(volunteer).get(url).status_code == 404  # exports: admins and ecologists
    for user in (admin_user, ecologist):
        response = _client(user).get(url)
        assert response.status_code == 200
        assert response["Content-Disposition"] == 'attachment; filename="test-traps-metrics.json"'
    data = response.json()
    assert data["project"] == "test-traps"
    assert data["classifier"]["number"] == 1 and data["classifier"]["threshold"] == 0.9
    assert data["cv_metrics"] == SYNTHETIC_METRICS
    alpha, beta = project.species.order_by("name")
    assert data["per_species"] == [
        {"species_id": alpha.pk, "name": "alpha", "accuracy": 0.5, "support": 2},
        {"species_id": beta.pk, "name": "beta", "accuracy": 1.0, "support": 1},
    ]
    assert data["attribute_metrics"] is None
    effort = data["effort_saved"]
    assert (effort["auto_accepted"], effort["empty_images"], effort["seconds_per_image"]) == (
        2,
        1,
        10.0,
    )
    assert effort["hours"] == pytest.approx(30 / 3600)
    assert effort["formula"].startswith("(2 crops auto-accepted at 96.6% target accuracy")
    ClassifierVersion.objects.filter(pk=classifier.pk).update(
        attribute_metrics={"n": 4, "exact_match": 0.5}
    )
    assert _client(admin_user).get(url).json()["attribute_metrics"] == {"n": 4, "exact_match": 0.5}


def test_admin_starts_a_species_round_from_the_page(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from activelearn.services import classifier_retrain
    from projects.services import project_create

    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    fox = [c for c in crops if "Red_Fox" in c.image.file_name]
    agouti = [c for c in crops if "Red_Fox" not in c.image.file_name]
    label_by_truth(ingested_project, volunteer, fox[:3] + agouti[:3])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    target = Prediction.objects.filter(classifier=classifier, crop__consensus__isnull=True)[0]
    url = reverse("round_start", args=[ingested_project.slug])
    client = _client(admin_user)
    other = project_create(name="Elsewhere", created_by=admin_user, seed=1)
    foreign = other.species.create(name="lynx")
    for data, message in (
        ({"strategy": "species", "size": 2}, "a species round needs a target species"),
        ({"strategy": "species", "size": 2, "target_species": foreign.pk}, "valid choice"),
    ):
        response = client.post(url, data, follow=True)
        assert "Round not started" in response.text and message in response.text
    assert not Round.objects.filter(project=ingested_project).exists()
    response = client.post(
        url, {"strategy": "species", "size": 2, "target_species": target.species_id}, follow=True
    )
    assert "Round 1 started." in response.text
    started = Round.objects.get(project=ingested_project)
    assert (started.strategy, started.target_species_id) == ("species", target.species_id)
    name = target.species.name
    assert f'id="round-strategy">One species, for diversity: {name}<' in response.text
    assert f"<td>One species, for diversity: {name}</td>" in response.text
    status = client.get(reverse("project_status_json", args=[ingested_project.slug])).json()
    assert status["round"]["strategy"] == f"One species, for diversity: {name}"


def test_learning_settings_form_sets_effort_balance_and_ensemble(
    project: Project, admin_user: User
) -> None:
    url = reverse("learning_settings", args=[project.slug])
    data = {
        "first_round_strategy": "random",
        "target_accuracy": "95",
        "seconds_per_image": "12.5",
        "class_balance": "oversample",
        "ensemble_size": "4",
    }
    client = _client(admin_user)
    assert "Active-learning settings saved." in client.post(url, data, follow=True).text
    project.refresh_from_db()
    assert (project.seconds_per_image, project.class_balance, project.ensemble_size) == (
        12.5,
        "oversample",
        4,
    )
    html = client.get(reverse("project_settings", args=[project.slug])).text
    assert 'name="seconds_per_image" value="12.5"' in html
    assert '<option value="oversample" selected>' in html
    for bad in ({"seconds_per_image": "0"}, {"seconds_per_image": "3601"},
                {"class_balance": "smote"}, {"ensemble_size": "11"}):  # fmt: skip
        response = client.post(url, {**data, **bad, "target_accuracy": "80"}, follow=True)
        assert "Settings not saved" in response.text
    project.refresh_from_db()
    assert (project.target_accuracy, project.seconds_per_image, project.ensemble_size) == (
        0.95,
        12.5,
        4,
    )
