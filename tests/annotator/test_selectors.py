"""Dashboard reads of annotator.selectors: the effort estimate and the rare-species list."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import ClassifierVersion, Round
from annotator.selectors import (
    PipelineCounts,
    effort_saved_estimate,
    pipeline_counts,
    species_rare_get,
)
from projects.models import Project
from tests.annotator.test_views_project import _add_crops, _synthetic_project

pytestmark = pytest.mark.django_db


def _counts(*, auto: int, empty: int) -> PipelineCounts:
    return PipelineCounts(
        images=0, images_detected=0, images_empty=empty, crops=0, labelled=0, votes_pending=0,
        review=0, predicted=0, auto_acceptable=auto, classifier_number=3, threshold=0.8,
    )  # fmt: skip


def test_effort_is_items_times_seconds_per_image(project: Project) -> None:
    project.seconds_per_image = 12.0
    effort = effort_saved_estimate(project=project, counts=_counts(auto=250, empty=50))
    assert effort.items == 300 and effort.hours == pytest.approx(1.0)  # 300 x 12 s = 1 h
    assert effort.weeks == pytest.approx(1 / 40) and effort.years == pytest.approx(1 / 40 / 52)
    assert effort.formula() == (
        "(250 crops auto-accepted at 96.6% target accuracy + 50 empty images filtered out) "
        "x 12 s per image / 3600 = 1.0 hours"
    )
    # The preprint's scale: ~8.2 years of 40-hour weeks.
    project.seconds_per_image = 10.0
    big = effort_saved_estimate(project=project, counts=_counts(auto=5_000_000, empty=1_140_000))
    assert big.hours == pytest.approx(6_140_000 * 10 / 3600)
    assert big.years == pytest.approx(big.hours / 40 / 52)
    assert f"{big.years:.1f}" == "8.2"
    assert big.formula().endswith(
        f"= {big.hours:.1f} hours = {big.weeks:.1f} weeks of 40 hours "
        f"= {big.years:.1f} years of 40-hour weeks"
    )
    json = big.as_json()
    assert json["items"] == 6_140_000 and json["formula"] == big.formula()


@pytest.fixture
def synthetic(project: Project, volunteer: User) -> tuple[ClassifierVersion, Round]:
    classifier, open_round = _synthetic_project(project)
    _add_crops(project, volunteer, classifier, open_round, 20)
    return classifier, open_round


def test_rare_species_fewest_labels_and_lowest_accuracy(
    project: Project, synthetic: Any, django_assert_num_queries: Any
) -> None:
    classifier, _ = synthetic
    alpha, beta = project.species.order_by("name")
    gamma = project.species.create(name="gamma")  # no label, not seen by the classifier
    delta = project.species.create(name="delta")
    classifier.cv_per_species = {
        str(alpha.pk): [0.25, 4],
        str(beta.pk): [0.9, 2],
        str(delta.pk): [None, 0],  # a class with no labelled crop: not measured
    }
    with django_assert_num_queries(2):
        view = species_rare_get(project=project, classifier=classifier, limit=3)
    assert view is not None and view.classifier_number == 1
    # Decided human labels in the synthetic project: alpha 4, beta 2 (at 20 crops).
    assert [(r.name, r.labels) for r in view.fewest_labels] == [
        ("delta", 0),
        ("gamma", 0),
        ("beta", 2),
    ]
    assert [(r.name, r.accuracy, r.support) for r in view.lowest_accuracy] == [
        ("alpha", 0.25, 4),
        ("beta", 0.9, 2),
    ]
    assert gamma.pk not in {r.species_id for r in view.lowest_accuracy}
    without = species_rare_get(project=project, classifier=None)
    assert without is not None and without.lowest_accuracy == []
    assert len(without.fewest_labels) == 4


def test_rare_species_none_without_species(project: Project) -> None:
    project.species.all().delete()
    assert species_rare_get(project=project, classifier=None) is None


def test_pipeline_counts_feed_the_effort(project: Project, synthetic: Any) -> None:
    project.seconds_per_image = 60.0
    counts = pipeline_counts(project=project)
    effort = effort_saved_estimate(project=project, counts=counts)
    # 20 synthetic crops: 4 auto-acceptable (2 per ten), 1 empty image; a minute each.
    assert (effort.auto_accepted, effort.empty_images) == (4, 1)
    assert effort.hours == pytest.approx(5 / 60) and effort.minutes == pytest.approx(5)
    assert effort.threshold == 0.9 and effort.classifier_number == 1
