"""The retrain's cross-validated metrics, rounds aimed at one species, and the learning settings
(activelearn.services), on the small real project."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from activelearn.models import ClassifierVersion, Consensus, Prediction, Round
from activelearn.selection import k_center_greedy
from activelearn.services import (
    RoundError,
    SettingsError,
    classifier_retrain,
    project_learning_update,
    round_start,
)
from embeddings.selectors import embedding_vectors_load
from projects.models import Project, Species
from projects.services import project_create
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


def _cv_file(classifier: ClassifierVersion) -> Path:
    return (Path(settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".cv.npz")


def test_retrain_stores_the_metrics_modules_scores(
    ingested_project: Project, volunteer: User
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None and classifier.cv_metrics is not None
    summary = classifier.cv_metrics
    assert set(summary) == {
        "n", "top1", "top5", "f1_micro", "f1_macro", "f1_weighted", "log_loss", "event_top1",
        "n_events",
    }  # fmt: skip
    with np.load(_cv_file(classifier)) as cv:
        true, predicted = cv["true"], cv["predicted"]
        classes, confusion = cv["confusion_classes"], cv["confusion"]
    # Checked against scikit-learn on the saved out-of-fold predictions.
    assert summary["n"] == len(crops) == true.size
    assert summary["top1"] == pytest.approx(accuracy_score(true, predicted))
    assert summary["f1_macro"] == pytest.approx(
        f1_score(true, predicted, average="macro", zero_division=0)
    )
    assert summary["f1_weighted"] == pytest.approx(
        f1_score(true, predicted, average="weighted", zero_division=0)
    )
    assert math.isfinite(summary["log_loss"]) and summary["log_loss"] > 0
    # The learning curve's fields come from the same computation.
    assert classifier.cv_accuracy == pytest.approx(summary["top1"])
    assert classifier.cv_top5_accuracy == pytest.approx(summary["top5"])
    # Two capture events (one burst per species) in the small folder.
    assert summary["n_events"] == 2 and summary["event_top1"] is not None
    np.testing.assert_array_equal(confusion, confusion_matrix(true, predicted, labels=classes))
    per_species = classifier.cv_per_species
    assert per_species is not None
    recalls = recall_score(true, predicted, labels=classes, average=None, zero_division=0)
    for species_id, recall in zip(classes.tolist(), recalls, strict=True):
        accuracy, support = per_species[str(species_id)]
        assert support == int((true == species_id).sum())
        assert accuracy == pytest.approx(recall)
    assert sum(support for _, support in per_species.values()) == true.size


def _labelled_subset(project: Project, volunteer: User, per_species: int = 3) -> set[int]:
    """Label the first ``per_species`` crops of each burst with their truth; their ids."""
    crops = list(project.crops.select_related("image").order_by("id"))
    fox = [c for c in crops if "Red_Fox" in c.image.file_name][:per_species]
    agouti = [c for c in crops if "Red_Fox" not in c.image.file_name][:per_species]
    label_by_truth(project, volunteer, fox + agouti)
    return {c.pk for c in fox + agouti}


def test_species_round_is_k_center_among_crops_predicted_as_the_species(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    labelled = _labelled_subset(ingested_project, volunteer)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    predicted = dict(
        Prediction.objects.filter(classifier=classifier).values_list("crop_id", "species_id")
    )
    unlabelled = [c for c in predicted if c not in labelled]
    # The species most predicted among the unlabelled crops: the round's target.
    target_id = max(
        set(predicted[c] for c in unlabelled), key=[predicted[c] for c in unlabelled].count
    )
    target = Species.objects.get(pk=target_id)
    wanted = {c for c in unlabelled if predicted[c] == target_id}
    new_round = round_start(
        project=ingested_project, user=admin_user, strategy="species", size=2, target_species=target
    )
    assert (new_round.strategy, new_round.target_species) == ("species", target)
    picked = list(new_round.items.order_by("position").values_list("crop_id", flat=True))
    assert len(picked) == min(2, len(wanted)) and set(picked) <= wanted
    # Exactly k-Center greedy restricted to those candidates.
    ids, vectors = embedding_vectors_load(version=new_round.embedding_version)
    plain = k_center_greedy(
        vectors,
        labeled_mask=np.isin(ids, list(labelled)),
        candidate_mask=np.isin(ids, list(wanted)),
        budget=2,
        random_state=new_round.seed,
    )
    assert picked == [int(ids[i]) for i in plain.indices]


def test_species_round_refusals_change_nothing(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    fox = ingested_project.species.get(name="red fox")
    ocelot = ingested_project.species.get(name="ocelot")
    other = project_create(name="Elsewhere", created_by=admin_user, seed=1)
    foreign = other.species.create(name="lynx")
    with pytest.raises(RoundError, match="no classifier yet"):
        round_start(
            project=ingested_project,
            user=admin_user,
            strategy="species",
            size=2,
            target_species=fox,
        )
    _labelled_subset(ingested_project, volunteer)
    assert classifier_retrain(project_id=ingested_project.pk) is not None
    cases: list[tuple[str, Species | None, str]] = [
        ("species", None, "needs a target species"),
        ("k_center", fox, "goes with the 'One species, for diversity' strategy only"),
        ("species", foreign, "not a species of this project"),
        # Nothing is ever predicted as a species nobody labelled.
        ("species", ocelot, "no unlabelled crop is predicted as 'ocelot'"),
    ]
    for strategy, target, message in cases:
        with pytest.raises(RoundError, match=message):
            round_start(
                project=ingested_project,
                user=admin_user,
                strategy=strategy,
                size=2,
                target_species=target,
            )
    assert not Round.objects.filter(project=ingested_project).exists()


def test_species_round_skips_labelled_and_inactive_crops(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    labelled = _labelled_subset(ingested_project, volunteer)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    by_species: dict[int, list[int]] = {}
    for crop_id, species_id in Prediction.objects.filter(classifier=classifier).values_list(
        "crop_id", "species_id"
    ):
        if crop_id not in labelled:
            by_species.setdefault(species_id, []).append(crop_id)
    target_id, crops = max(by_species.items(), key=lambda kv: len(kv[1]))
    # Deactivate all but one of the target's unlabelled crops: only that one can be picked.
    ingested_project.crops.filter(pk__in=crops[1:]).update(active=False)
    # No audit crop, which would be drawn from every unlabelled crop, not the species'.
    ingested_project.audit_share = 0.0
    ingested_project.save(update_fields=["audit_share"])
    new_round = round_start(
        project=ingested_project,
        user=admin_user,
        strategy="species",
        size=5,
        target_species=Species.objects.get(pk=target_id),
    )
    assert list(new_round.items.values_list("crop_id", flat=True)) == [crops[0]]
    assert not Consensus.objects.filter(crop_id=crops[0]).exists()


def test_learning_settings_set_effort_balance_and_ensemble(ingested_project: Project) -> None:
    project_learning_update(
        project=ingested_project,
        first_round_strategy="random",
        target_accuracy=0.9,
        seconds_per_image=42.5,
        class_balance="weighted",
        ensemble_size=3,
    )
    ingested_project.refresh_from_db()
    assert (
        ingested_project.seconds_per_image,
        ingested_project.class_balance,
        ingested_project.ensemble_size,
    ) == (42.5, "weighted", 3)
    # Left out: unchanged.
    project_learning_update(
        project=ingested_project, first_round_strategy="random", target_accuracy=0.8
    )
    ingested_project.refresh_from_db()
    assert (ingested_project.seconds_per_image, ingested_project.ensemble_size) == (42.5, 3)
    for bad, message in (
        ({"seconds_per_image": 0.0}, "seconds per image"),
        ({"seconds_per_image": -3.0}, "seconds per image"),
        ({"seconds_per_image": 3600.5}, "seconds per image"),
        ({"seconds_per_image": float("nan")}, "seconds per image"),
        ({"class_balance": "smote"}, "unknown class balance"),
        ({"ensemble_size": 0}, "ensemble size"),
        ({"ensemble_size": 11}, "ensemble size"),
    ):
        with pytest.raises(SettingsError, match=message):
            project_learning_update(
                project=ingested_project,
                first_round_strategy="k_center",
                target_accuracy=0.7,
                **bad,  # type: ignore[arg-type]
            )
    ingested_project.refresh_from_db()
    assert (
        ingested_project.first_round_strategy,
        ingested_project.target_accuracy,
        ingested_project.seconds_per_image,
        ingested_project.class_balance,
        ingested_project.ensemble_size,
    ) == ("random", 0.8, 42.5, "weighted", 3)
