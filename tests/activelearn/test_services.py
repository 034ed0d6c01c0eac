"""Rounds, labels and the retrain service on a small real project."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Max

from activelearn.models import ClassifierVersion, Consensus, Label, Prediction, Round
from activelearn.services import (
    LabelError,
    RoundError,
    classifier_retrain,
    label_submit,
    labels_import,
    round_start,
)
from projects.models import Project
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


def test_round_picks_unlabelled_crops_in_order_and_stores_seed(
    ingested_project: Project, admin_user: User
) -> None:
    first = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=4)
    items = list(first.items.order_by("position"))
    assert [i.position for i in items] == [0, 1, 2, 3]
    assert items[0].distance is None  # the seeded first centre has no distance
    assert all(i.distance is not None and i.distance > 0 for i in items[1:])
    distances = [i.distance or 0.0 for i in items[1:]]
    assert distances == sorted(distances, reverse=True)  # farthest-first
    assert first.seed and first.embedding_version.number == 1


def test_same_seed_same_round(ingested_project: Project, admin_user: User) -> None:
    first = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=4)
    picks = list(first.items.order_by("position").values_list("crop_id", flat=True))
    first.delete()
    again = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=4)
    assert list(again.items.order_by("position").values_list("crop_id", flat=True)) == picks


def test_one_open_round_at_a_time(ingested_project: Project, admin_user: User) -> None:
    round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    with pytest.raises(RoundError, match="already open"):
        round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    assert Round.objects.count() == 1


@pytest.mark.parametrize("strategy,size", [("greedy", 3), ("random", 0)])
def test_bad_round_request_is_refused(
    ingested_project: Project, admin_user: User, strategy: str, size: int
) -> None:
    with pytest.raises(RoundError):
        round_start(project=ingested_project, user=admin_user, strategy=strategy, size=size)
    assert not Round.objects.exists()


def test_round_without_embeddings_is_refused(project: Project, admin_user: User) -> None:
    with pytest.raises(RoundError, match="no embeddings"):
        round_start(project=project, user=admin_user, strategy="k_center", size=3)


def _label_all(round_: Round, user: User, project: Project) -> None:
    items = round_.items.select_related("crop__image").order_by("position")
    label_by_truth(project, user, [item.crop for item in items])


def test_completing_a_round_closes_it_and_queues_retrain(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True  # unit test: the real worker is tested end to end
    from annotator.celery import app

    app.conf.task_always_eager = True
    try:
        round_ = round_start(
            project=ingested_project, user=admin_user, strategy="k_center", size=100
        )
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            _label_all(round_, volunteer, ingested_project)
    finally:
        app.conf.task_always_eager = False
    round_.refresh_from_db()
    assert round_.status == Round.Status.CLOSED and len(callbacks) == 1
    classifier = ClassifierVersion.objects.get()
    assert (
        Prediction.objects.filter(classifier=classifier).count() == ingested_project.crops.count()
    )


def test_retrain_is_safe_to_run_twice(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=100)
    _label_all(round_, volunteer, ingested_project)
    first = classifier_retrain(project_id=ingested_project.pk)
    second = classifier_retrain(project_id=ingested_project.pk)
    assert first is not None and second == first
    assert ClassifierVersion.objects.count() == 1
    pred = Prediction.objects.filter(classifier=first).select_related("species").first()
    assert pred is not None and 0 < pred.confidence <= 1
    assert pred.top[0] == [pred.species_id, pytest.approx(pred.confidence, abs=1e-5)]


def test_retrain_without_labels_does_nothing(ingested_project: Project) -> None:
    assert classifier_retrain(project_id=ingested_project.pk) is None
    assert not ClassifierVersion.objects.exists()


def test_not_animal_and_unknown_count_as_covered(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    crops = list(ingested_project.crops.order_by("id"))
    labels_import(
        project=ingested_project, crop_ids=[crops[0].pk], user=volunteer, kind="not_animal"
    )
    labels_import(project=ingested_project, crop_ids=[crops[1].pk], user=volunteer, kind="unknown")
    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=100)
    picked = set(round_.items.values_list("crop_id", flat=True))
    assert picked == {c.pk for c in crops[2:]}


def test_label_errors_change_nothing(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    crop = ingested_project.crops.first()
    assert crop is not None
    other = Project.objects.create(name="Elsewhere", slug="elsewhere")
    foreign = other.species.create(name="lion")
    cases = [
        dict(crop_id=crop.pk, kind="species", species_id=foreign.pk),
        dict(crop_id=crop.pk, kind="species", species_id=None),
        dict(crop_id=crop.pk, kind="zebra"),
        dict(crop_id=10**9, kind="unknown"),
    ]
    for case in cases:
        with pytest.raises(LabelError):
            label_submit(project=ingested_project, user=volunteer, **case)  # type: ignore[arg-type]
    assert not Label.objects.exists()


@pytest.mark.parametrize("strategy", ["confidence", "margin", "entropy", "hybrid"])
def test_uncertainty_rounds_use_the_latest_predictions(
    ingested_project: Project, admin_user: User, volunteer: User, strategy: str
) -> None:
    from activelearn.models import Prediction

    with pytest.raises(RoundError, match="need a trained classifier"):
        round_start(project=ingested_project, user=admin_user, strategy=strategy, size=2)
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    first = round_start(project=ingested_project, user=admin_user, strategy="random", size=6)
    _label_all(first, volunteer, ingested_project)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    second = round_start(project=ingested_project, user=admin_user, strategy=strategy, size=2)
    picked = list(second.items.order_by("position").values_list("crop_id", flat=True))
    labelled = set(first.items.values_list("crop_id", flat=True))
    assert len(picked) == 2 and not set(picked) & labelled
    if strategy == "confidence":
        confidence = dict(
            Prediction.objects.filter(classifier=classifier).values_list("crop_id", "confidence")
        )
        unlabelled = sorted((confidence[c.pk], c.pk) for c in crops if c.pk not in labelled)
        assert picked == [pk for _, pk in unlabelled[:2]]


def test_first_round_uses_the_project_setting_then_the_rule(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from activelearn.services import round_strategy_choice, round_strategy_default

    assert ingested_project.first_round_strategy == "random"
    first = round_start(project=ingested_project, user=admin_user, size=3)
    assert first.strategy == "random" and "first-round" in first.strategy_reason
    assert all(item.distance is None for item in first.items.all())
    _label_all(first, volunteer, ingested_project)
    # Three labels for the project's species: too few per species to trust margins.
    choice = round_strategy_choice(project=ingested_project)
    assert choice.strategy == round_strategy_default(project=ingested_project) == "typical"
    second = round_start(project=ingested_project, user=admin_user, size=2)
    assert second.strategy == "typical" and second.strategy_reason == choice.reason
    assert "3 labels" in second.strategy_reason
    assert not set(second.items.values_list("crop_id", flat=True)) & set(
        first.items.values_list("crop_id", flat=True)
    )
    _label_all(second, volunteer, ingested_project)
    chosen = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=1)
    assert (chosen.strategy, chosen.strategy_reason) == ("k_center", "")  # an admin's choice


def test_k_center_cache_folds_in_only_new_labels(
    ingested_project: Project, admin_user: User, volunteer: User, monkeypatch: Any
) -> None:
    import numpy as np

    from activelearn.selection import k_center_greedy
    from activelearn.services import rounds
    from embeddings.selectors import embedding_vectors_dir, embedding_vectors_load

    folded: list[int] = []
    real_update = rounds.min_sq_distances_update

    def spy(features: Any, *, min_sq: Any, new_rows: Any) -> Any:
        folded.append(len(new_rows))
        return real_update(features, min_sq=min_sq, new_rows=new_rows)

    monkeypatch.setattr(rounds, "min_sq_distances_update", spy)
    first = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    _label_all(first, volunteer, ingested_project)
    second = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=2)
    _label_all(second, volunteer, ingested_project)
    third = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=2)
    assert folded == [3, 2]  # each round pays only for the labels since the last one
    version = third.embedding_version
    folder = embedding_vectors_dir(version=version)
    # One cache file, named after the newest label folded in (and no undone label).
    last = Consensus.objects.aggregate(n=Max("label_id"))["n"]
    names = sorted(p.name for p in folder.glob("kcenter_min_sq*"))
    assert names == [f"kcenter_min_sq-{last}-0.npy"]
    # The cached round picks exactly what a from-scratch k-Center picks.
    ids, vectors = embedding_vectors_load(version=version)
    labelled = np.isin(ids, list(Label.objects.values_list("crop_id", flat=True)))
    plain = k_center_greedy(vectors, labeled_mask=labelled, budget=2, random_state=third.seed)
    picked = list(third.items.order_by("position").values_list("crop_id", flat=True))
    assert picked == [int(ids[i]) for i in plain.indices]


def test_retrain_cross_validates_and_stores_event_predictions(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from pathlib import Path

    from django.conf import settings as django_settings

    from activelearn.models import EventPrediction

    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=100)
    _label_all(round_, volunteer, ingested_project)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    # Two capture events: one fold each, grouped so a burst never trains its own test.
    assert classifier.cv_n_splits == 2 and classifier.cv_accuracy is not None
    # Both candidates were cross-validated; the one kept is named with its held-out scores.
    chosen = classifier.candidates["chosen"]
    assert set(classifier.candidates) == {"logistic", "torch", "chosen"}
    assert classifier.algorithm.startswith(
        "logistic regression" if chosen == "logistic" else "PyTorch MLP"
    )
    assert classifier.n_iter > 0 and classifier.temperature > 0
    assert classifier.target_accuracy == pytest.approx(0.966)
    cv_file = (Path(django_settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".cv.npz")
    assert cv_file.exists()
    events = {e.event: e for e in EventPrediction.objects.filter(classifier=classifier)}
    seq_ids = set(ingested_project.images.values_list("seq_id", flat=True))
    assert set(events) == seq_ids
    for event in events.values():
        crops = Prediction.objects.filter(classifier=classifier, crop__image__seq_id=event.event)
        assert event.n_crops == crops.count()
        # Mean of the crops' probabilities: the event's top-1 probability is the mean of the
        # crops' probabilities for that species (two species: top-5 holds every class).
        mean = sum(dict(p.top)[event.species_id] for p in crops) / crops.count()
        assert event.confidence == pytest.approx(mean, abs=1e-4)


def test_new_target_accuracy_recomputes_the_threshold(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from pathlib import Path

    import numpy as np
    from django.conf import settings as django_settings

    from activelearn.services import SettingsError, project_learning_update

    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=4)
    _label_all(round_, volunteer, ingested_project)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    # Known cross-validated predictions: 0.9 right, 0.8 right, 0.7 wrong, 0.6 right.
    cv_file = (Path(django_settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".cv.npz")
    np.savez(
        cv_file,
        confidence=np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32),
        correct=np.array([True, True, False, True]),
    )
    project_learning_update(
        project=ingested_project, first_round_strategy="k_center", target_accuracy=0.75
    )
    classifier.refresh_from_db()
    assert classifier.threshold == pytest.approx(0.6)  # 3 of 4 right at >= 0.6
    assert classifier.target_accuracy == pytest.approx(0.75)
    unlabelled = Prediction.objects.filter(classifier=classifier, crop__labels__isnull=True)
    share = sum(p.confidence >= 0.6 for p in unlabelled) / unlabelled.count()
    assert classifier.auto_accept_share == pytest.approx(share)
    project_learning_update(
        project=ingested_project, first_round_strategy="random", target_accuracy=1.0
    )
    classifier.refresh_from_db()
    assert classifier.threshold == pytest.approx(0.8)
    for bad in (
        dict(first_round_strategy="greedy", target_accuracy=0.9),
        dict(first_round_strategy="random", target_accuracy=0.0),
    ):
        with pytest.raises(SettingsError):
            project_learning_update(project=ingested_project, **bad)  # type: ignore[arg-type]
    ingested_project.refresh_from_db()
    assert ingested_project.target_accuracy == 1.0


def test_old_predictions_are_pruned(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from activelearn.services import predictions_prune

    crops = list(ingested_project.crops.order_by("id"))
    fox = ingested_project.species.get(name="red fox")
    for crop in crops[:4]:
        labels_import(
            project=ingested_project,
            crop_ids=[crop.pk],
            user=volunteer,
            kind="species",
            species_id=fox.pk,
        )
        classifier_retrain(project_id=ingested_project.pk)
    assert ClassifierVersion.objects.count() == 4
    assert predictions_prune(project=ingested_project, keep=3) == 0  # pruned after each retrain
    kept = set(Prediction.objects.values_list("classifier__number", flat=True))
    assert kept == {2, 3, 4}
