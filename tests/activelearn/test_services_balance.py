"""The retrain and fine-tuning take the project's class balance; the ensemble's average is
what the retrain stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from activelearn import classifier as classifier_module
from activelearn import services
from activelearn.classifier import classifier_load, classifier_probabilities, probabilities_average
from activelearn.events import event_probabilities_combine
from activelearn.models import Prediction
from activelearn.services import (
    classifier_retrain,
    embedding_finetune_and_retrain,
    embedding_finetune_queue,
)
from activelearn.services import retrain as retrain_module
from activelearn.services import settings as settings_services
from activelearn.services.retrain import CANDIDATES
from detector.models import Crop
from embeddings import services as embedding_services
from embeddings.selectors import embedding_vectors_load
from projects.models import Project
from projects.sequences import capture_event
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


def _spy_train(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the keyword arguments of every classifier fit of the retrain."""
    calls: list[dict[str, Any]] = []
    # Looked up in activelearn.classifier by ensemble_train, which the retrain calls.
    real = classifier_module.classifier_train

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "classifier_train", spy)
    return calls


@pytest.mark.parametrize("balance", ["weighted", "oversample"])
def test_retrain_and_its_folds_use_the_project_class_balance(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch, balance: str
) -> None:
    ingested_project.class_balance = balance
    ingested_project.save()
    label_by_truth(ingested_project, volunteer, Crop.objects.select_related("image"))
    calls = _spy_train(monkeypatch)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    assert classifier.class_balance == balance and classifier.ensemble_size == 1
    assert classifier.cv_n_splits is not None and classifier.cv_n_splits >= 2
    # One fit for the classifier kept, one per cross-validation fold of each candidate, all
    # balanced the same way.
    assert len(calls) == 1 + len(CANDIDATES) * classifier.cv_n_splits
    assert {call["class_balance"] for call in calls} == {balance}


def test_ensemble_predictions_are_the_average_of_its_members(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingested_project.ensemble_size = 3
    ingested_project.save()
    label_by_truth(ingested_project, volunteer, Crop.objects.select_related("image"))
    # Ensembles are of MLPs (the logistic candidate is deterministic): compare only those.
    monkeypatch.setattr(retrain_module, "CANDIDATES", ("torch",))
    calls = _spy_train(monkeypatch)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None and classifier.ensemble_size == 3
    assert classifier.class_balance == "none"
    assert classifier.cv_n_splits is not None
    assert len(calls) == 3 * (1 + classifier.cv_n_splits)
    seeds = [call["random_state"] for call in calls[:3]]
    assert seeds == [classifier.seed, classifier.seed + 1, classifier.seed + 2]
    path = Path(settings.TRAPWISE_DATA_DIR) / classifier.path
    members = [classifier_load(path)] + [
        classifier_load(path.with_name(f"{path.stem}.m{k}{path.suffix}")) for k in (1, 2)
    ]
    ids, vectors = embedding_vectors_load(version=classifier.embedding_version)
    mean, classes = probabilities_average(
        [classifier_probabilities(m, vectors) for m in members], [m.classes for m in members]
    )
    single = classifier_probabilities(members[0], vectors)
    # Stored are the ensemble's mean probabilities combined over each capture event.
    crops = Crop.objects.select_related("image").in_bulk(ids.tolist())
    events = np.array(
        [capture_event(seq_id=crops[i].image.seq_id, image_id=crops[i].image_id) for i in ids]
    )
    mean = event_probabilities_combine(mean, events, weight=classifier.event_weight).probabilities
    stored = {
        p.crop_id: (p.species_id, p.confidence)
        for p in Prediction.objects.filter(classifier=classifier)
    }
    assert len(stored) == ids.size
    for row, crop_id in enumerate(ids.tolist()):
        species, confidence = stored[crop_id]
        assert species == classes[int(np.argmax(mean[row]))]
        assert confidence == pytest.approx(float(mean[row].max()), abs=1e-5)
    # The average is not simply the first member's output.
    single = event_probabilities_combine(
        single, events, weight=classifier.event_weight
    ).probabilities
    assert not np.allclose(single.max(axis=1), mean.max(axis=1), atol=1e-4)


def test_finetuning_takes_the_project_class_balance(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingested_project.finetune_mode, ingested_project.finetune_epochs = "head", 1
    ingested_project.class_balance = "weighted"
    ingested_project.save()
    label_by_truth(ingested_project, volunteer, Crop.objects.select_related("image"))
    seen: list[str] = []
    real = embedding_services.train_head

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["config"].class_balance)
        return real(*args, **kwargs)

    monkeypatch.setattr(embedding_services, "train_head", spy)
    version = embedding_finetune_queue(project=ingested_project, force=True)
    assert version is not None
    classifier = embedding_finetune_and_retrain(version_id=version.pk)
    assert seen == ["weighted"]
    assert classifier is not None and classifier.class_balance == "weighted"


def test_a_new_class_balance_queues_a_retrain_that_does_not_skip(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    label_by_truth(ingested_project, volunteer, Crop.objects.select_related("image"))
    first = classifier_retrain(project_id=ingested_project.pk)
    assert first is not None and first.class_balance == "none"
    queued: list[int] = []
    monkeypatch.setattr(
        settings_services,
        "classifier_retrain_queue",
        lambda *, project_id: queued.append(project_id),
    )
    # Same settings again: nothing to do.
    services.project_learning_update(
        project=ingested_project,
        first_round_strategy=ingested_project.first_round_strategy,
        target_accuracy=ingested_project.target_accuracy,
        class_balance="none",
    )
    assert queued == [] and classifier_retrain(project_id=ingested_project.pk) == first
    services.project_learning_update(
        project=ingested_project,
        first_round_strategy=ingested_project.first_round_strategy,
        target_accuracy=ingested_project.target_accuracy,
        class_balance="weighted",
    )
    assert queued == [ingested_project.pk]
    second = classifier_retrain(project_id=ingested_project.pk)  # same labels, new setting
    assert second is not None and second.number == first.number + 1
    assert second.class_balance == "weighted"
