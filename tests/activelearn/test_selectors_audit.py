"""The audit estimate on a small real project with machine labels set by hand: its numbers are
those of ``activelearn.audit`` on the audit outcomes counted by hand; the dashboard and
``metrics.json`` show it."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from activelearn import selectors_audit
from activelearn.audit import binomial_interval, ppi_interval
from activelearn.models import AuditPrediction, ClassifierVersion, Prediction, Round
from activelearn.selectors_audit import audit_estimate_get, audit_outcomes_get
from activelearn.services import labels_import, round_start
from projects.models import Project
from tests.conftest import classifier_by_hand

pytestmark = pytest.mark.django_db


# Per audit crop: machine species ("fox"/"agouti"), confidence, the human label.
AUDIT = [
    ("fox", 0.95, "fox"),
    ("fox", 0.90, "fox"),
    ("fox", 0.60, "agouti"),
    ("agouti", 0.85, "agouti"),
    ("agouti", 0.40, "not_animal"),  # a species for no animal: wrong
    ("agouti", 0.70, "unknown"),  # tells nothing: left out
]


@pytest.fixture
def audited(ingested_project: Project, admin_user: User, volunteer: User) -> ClassifierVersion:
    """Six audit crops of round 1 with hand-set machine labels by v1 (threshold 0.8), labelled
    as in AUDIT; the other five crops are unlabelled, with v1 predictions."""
    project = ingested_project
    species = {
        "fox": project.species.get(name="red fox"),
        "agouti": project.species.get(name="agouti"),
    }
    classifier = classifier_by_hand(project, number=1, threshold=0.8)
    crops = list(project.crops.order_by("id"))
    round_ = round_start(project=project, user=admin_user, strategy="random", size=6)
    pool = [(c, "fox" if i % 2 else "agouti", 0.5 + 0.1 * i) for i, c in enumerate(crops[6:])]
    for crop, name, confidence in pool:
        Prediction.objects.create(
            crop=crop, classifier=classifier, species=species[name], confidence=confidence
        )
    for crop, (machine, confidence, human) in zip(crops[:6], AUDIT, strict=True):
        AuditPrediction.objects.create(
            round=round_,
            crop=crop,
            classifier=classifier,
            strategy="random",
            species=species[machine],
            confidence=confidence,
            threshold=0.8,
            auto_accepted=confidence >= 0.8,
        )
        kind = human if human in ("unknown", "not_animal") else "species"
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=volunteer,
            kind=kind,
            species_id=species[human].pk if kind == "species" else None,
        )
    return classifier


def test_outcomes_count_species_and_not_animal_and_leave_unknown_out(
    ingested_project: Project, audited: ClassifierVersion
) -> None:
    outcomes = audit_outcomes_get(project=ingested_project)
    assert outcomes is not None and outcomes.classifier_id == audited.pk
    assert outcomes.correct.tolist() == [True, True, False, True, False]
    assert outcomes.auto_accepted.tolist() == [True, True, False, True, False]


def test_estimate_is_ppi_and_binomial_of_the_outcomes(
    ingested_project: Project, audited: ClassifierVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors_audit, "AUDIT_MIN_SPECIES", 2)
    view = audit_estimate_get(project=ingested_project)
    assert view is not None and view.classifier == 1 and view.live
    correct = np.array([1, 1, 0, 1, 0.0])
    scores = np.array([0.95, 0.90, 0.60, 0.85, 0.40])
    pool = np.array([0.5 + 0.1 * i for i in range(5)])
    expected = ppi_interval(correct=correct, audit_scores=scores, pool_scores=pool)
    binomial = binomial_interval(correct=correct)
    overall = view.overall
    assert overall.n == 5 and overall.n_unlabelled == 5
    assert overall.accuracy == pytest.approx(expected.estimate)
    assert (overall.ci_low, overall.ci_high) == pytest.approx((expected.low, expected.high))
    assert (overall.binomial_low, overall.binomial_high) == pytest.approx(
        (binomial.low, binomial.high)
    )
    # Auto-accepted: 3 audit crops, all right; pool: unlabelled crops at >= 0.8 (0.8, 0.9).
    assert view.auto_accepted.n == 3 and view.auto_accepted.accuracy == pytest.approx(1.0)
    assert view.auto_accepted.n_unlabelled == 2
    by_name = {s.name: s.accuracy for s in view.per_species}
    assert by_name["red fox"].n == 3 and by_name["red fox"].accuracy == pytest.approx(2 / 3)
    assert by_name["agouti"].n == 2 and by_name["agouti"].accuracy == pytest.approx(0.5)
    monkeypatch.setattr(selectors_audit, "AUDIT_MIN_SPECIES", 3)
    view = audit_estimate_get(project=ingested_project)
    assert view is not None and [s.name for s in view.per_species] == ["red fox"]


def test_estimate_is_of_the_newest_audited_version_and_the_curve_of_each(
    ingested_project: Project, audited: ClassifierVersion, volunteer: User
) -> None:
    second = classifier_by_hand(ingested_project, number=2, threshold=None)
    view = audit_estimate_get(project=ingested_project)
    assert view is not None and view.classifier == 1 and not view.live
    # v2 gets one audit crop, right, in round 2.
    Round.objects.update(status=Round.Status.CLOSED)
    round_ = Round.objects.create(
        project=ingested_project,
        number=2,
        strategy="k_center",
        size=1,
        seed=1,
        embedding_version=second.embedding_version,
    )
    crop = ingested_project.crops.filter(consensus__isnull=True).order_by("id").first()
    assert crop is not None
    fox = ingested_project.species.get(name="red fox")
    AuditPrediction.objects.create(
        round=round_,
        crop=crop,
        classifier=second,
        strategy="k_center",
        species=fox,
        confidence=0.5,
        auto_accepted=False,
    )
    labels_import(
        project=ingested_project,
        crop_ids=[crop.pk],
        user=volunteer,
        kind="species",
        species_id=fox.pk,
    )
    view = audit_estimate_get(project=ingested_project)
    assert view is not None and view.classifier == 2 and view.live and view.overall.n == 1
    curve = [(p.classifier, p.rounds, p.n, p.accuracy) for p in view.curve]
    assert curve == [(1, [1], 5, pytest.approx(0.6)), (2, [2], 1, 1.0)]


def test_no_audit_label_no_estimate(ingested_project: Project, admin_user: User) -> None:
    round_start(project=ingested_project, user=admin_user, strategy="random", size=6)
    assert audit_estimate_get(project=ingested_project) is None
    assert audit_outcomes_get(project=ingested_project) is None


def test_dashboard_and_metrics_json_show_the_audit(
    ingested_project: Project, audited: ClassifierVersion, admin_user: User
) -> None:
    client = Client()
    client.force_login(admin_user)
    slug = ingested_project.slug
    page = client.get(reverse("project_model", args=[slug])).text
    assert 'id="audit"' in page and "On 5 audit crops" in page
    data = client.get(reverse("export_metrics", args=[slug])).json()
    audit = data["audit"]
    assert audit["n"] == 5 and audit["classifier"] == 1
    view = audit_estimate_get(project=ingested_project)
    assert view is not None
    assert audit["accuracy"] == pytest.approx(view.overall.accuracy)
    assert audit["ci_low"] <= audit["accuracy"] <= audit["ci_high"]
    assert audit["per_species"] == []  # fewer than AUDIT_MIN_SPECIES each
    assert audit["auto_accepted"]["n"] == 3
    assert 'id="audit-curve"' in page
    [point] = audit["curve"]
    assert (point["classifier"], point["rounds"], point["n"]) == (1, [1], 5)
    assert point["accuracy"] == pytest.approx(3 / 5)
    assert data["thresholds"] == {"global": 0.8, "per_species": []}
    Round.objects.all().delete()  # no audit left: the keys stay, empty
    data = client.get(reverse("export_metrics", args=[slug])).json()
    assert data["audit"] is None
