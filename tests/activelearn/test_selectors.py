"""Reads of activelearn.selectors behind the admin page: the learning curve's points, the
metrics view and the confusion matrix, all from activelearn.metrics' stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from sklearn.metrics import confusion_matrix

from activelearn.models import ClassifierVersion, Round
from activelearn.selectors import (
    classifier_metrics_get,
    confusion_matrix_get,
    learning_curve_get,
)
from projects.models import Project
from tests.annotator.test_views_project import SYNTHETIC_METRICS, _synthetic_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def synthetic(project: Project) -> tuple[ClassifierVersion, Round]:
    return _synthetic_project(project)


def test_learning_curve_points_come_from_the_stored_metrics(
    project: Project, synthetic: Any
) -> None:
    first, _ = synthetic
    # An older version without the metrics summary: its fields, and no F1.
    first.cv_metrics = None
    first.save(update_fields=["cv_metrics"])
    ClassifierVersion.objects.create(
        project=project,
        number=2,
        embedding_version=first.embedding_version,
        last_label_id=0,
        n_labels=30,
        n_classes=2,
        seed=0,
        path="nowhere2.joblib",
        cv_accuracy=0.5,  # stale field: the summary wins
        cv_top5_accuracy=0.5,
        cv_metrics={**SYNTHETIC_METRICS, "top1": 0.85, "top5": 0.97, "f1_macro": 0.7},
    )
    view = learning_curve_get(project=project)
    assert view is not None
    assert [(p.n_labels, p.accuracy, p.top5_accuracy, p.f1_macro) for p in view.points] == [
        (3, 0.8, 1.0, None),
        (30, 0.85, 0.97, 0.7),
    ]
    assert ">F1 macro<" in view.svg and ">top-5<" in view.svg


def test_metrics_view_names_species_in_list_order(project: Project, synthetic: Any) -> None:
    classifier, _ = synthetic
    alpha, beta = project.species.order_by("name")
    classifier.cv_per_species = {
        "999999": [0.0, 3],
        str(beta.pk): [1.0, 1],
        str(alpha.pk): [0.5, 2],
    }
    view = classifier_metrics_get(project=project, classifier=classifier)
    assert view is not None and view.summary == SYNTHETIC_METRICS
    assert [(s.name, s.accuracy, s.support) for s in view.per_species] == [
        ("alpha", 0.5, 2),
        ("beta", 1.0, 1),
        ("removed species #999999", 0.0, 3),
    ]
    classifier.cv_metrics = None
    assert classifier_metrics_get(project=project, classifier=classifier) is None
    assert classifier_metrics_get(project=project, classifier=None) is None


def _write_cv(classifier: ClassifierVersion, **arrays: Any) -> Path:
    path = (Path(settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".cv.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_confusion_matrix_from_the_metrics_module_old_files_too(
    project: Project, synthetic: Any
) -> None:
    from activelearn.metrics import classification_metrics

    classifier, _ = synthetic
    alpha, beta = project.species.order_by("name")
    gamma = project.species.create(name="gamma")
    for position, species in enumerate((gamma, alpha, beta)):  # gamma listed first
        project.species.filter(pk=species.pk).update(position=position)
    true = np.array([alpha.pk, alpha.pk, beta.pk, gamma.pk, gamma.pk, beta.pk])
    predicted = np.array([alpha.pk, beta.pk, beta.pk, gamma.pk, alpha.pk, gamma.pk])
    order = [gamma.pk, alpha.pk, beta.pk]
    expected = confusion_matrix(true, predicted, labels=order)
    # A file from before the stored confusion: scored again through activelearn.metrics.
    _write_cv(classifier, predicted=predicted, true=true)
    old = confusion_matrix_get(project=project)
    assert old is not None and old.names == ["gamma", "alpha", "beta"]
    np.testing.assert_array_equal(old.counts, expected)
    assert old.n_crops == 6
    # The retrain's file: the metrics module's confusion, saved with its classes.
    probs = np.eye(3)[[sorted(order).index(p) for p in predicted]]
    metrics = classification_metrics(probs, true, classes=np.array(sorted(order)))
    _write_cv(
        classifier,
        predicted=predicted[:1],  # ignored when the confusion is stored
        true=true[:1],
        confusion=metrics.confusion,
        confusion_classes=metrics.classes,
    )
    new = confusion_matrix_get(project=project)
    assert new is not None and new.names == ["gamma", "alpha", "beta"]
    np.testing.assert_array_equal(new.counts, expected)
    # Without predicted species (the oldest files): nothing to draw.
    _write_cv(classifier, confidence=np.ones(2), correct=np.ones(2, dtype=bool))
    assert confusion_matrix_get(project=project) is None
