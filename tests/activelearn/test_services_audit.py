"""The audit stream in the services: audit crops drawn at round start, the live classifier's
prediction stored at first offer, and the audit setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from activelearn.final_labels import AUTO, MACHINE, AutoAccept, final_label
from activelearn.models import AuditPrediction, ClassifierVersion, Prediction, RoundCrop
from activelearn.services import (
    SettingsError,
    labels_import,
    project_learning_update,
    round_start,
)
from activelearn.services.audit import classifier_gate
from activelearn.services.rounds import audit_count, audit_interleave
from activelearn.services.settings import classifier_threshold_update
from activelearn.thresholds import species_thresholds
from detector.models import Crop
from projects.models import Project, Species
from tests.conftest import classifier_by_hand

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "share,size,expected", [(0.1, 100, 10), (0.1, 20, 2), (0.1, 4, 0), (0.1, 5, 1), (0.5, 1, 0)]
)
def test_audit_count_rounds_half_up_and_leaves_the_strategy_a_crop(
    share: float, size: int, expected: int
) -> None:
    assert audit_count(share=share, size=size) == expected


def test_audit_interleave_draws_uniformly_from_unlabelled_crops_not_picked() -> None:
    unlabelled = np.ones(12, dtype=bool)
    unlabelled[[0, 1]] = False  # labelled: never drawn
    picks = [(2, None, False), (3, 0.5, False)]  # the strategy's: never drawn again
    counts = np.zeros(12)
    positions = np.zeros(4)
    for seed in range(3000):
        out = audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=2, seed=seed)
        assert [p for p in out if not p[2]] == picks  # the strategy's order is kept
        audited = [row for row, _, is_audit in out if is_audit]
        assert len(audited) == 2 and len(set(audited)) == 2
        counts[audited] += 1
        positions[[i for i, p in enumerate(out) if p[2]]] += 1
    assert counts[[0, 1, 2, 3]].sum() == 0
    # 8 crops, 2 drawn each time: each 750 times in expectation (sd about 20).
    assert np.all(np.abs(counts[4:] - 750) < 100)
    # Interleaved: every position of the round holds an audit crop about half the time.
    assert np.all(np.abs(positions - 1500) < 150)
    again = audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=2, seed=5)
    assert again == audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=2, seed=5)


def test_audit_interleave_takes_what_is_left() -> None:
    unlabelled = np.array([True, True, True])
    picks = [(0, None, False), (1, 1.0, False)]
    out = audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=5, seed=1)
    assert sorted(row for row, _, a in out if a) == [2]
    assert audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=0, seed=1) == picks


def test_round_start_marks_its_audit_share(ingested_project: Project, admin_user: User) -> None:
    ingested_project.audit_share = 0.3
    ingested_project.save(update_fields=["audit_share"])
    first = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=6)
    items = list(first.items.order_by("position"))
    assert len(items) == 6 and [i.position for i in items] == list(range(6))
    audit = [i for i in items if i.is_audit]
    assert len(audit) == 2
    assert all(i.distance is None for i in audit)
    picks = [(i.crop_id, i.is_audit) for i in items]
    first.delete()
    again = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=6)
    assert [(i.crop_id, i.is_audit) for i in again.items.order_by("position")] == picks


def test_round_start_without_audit_share_marks_none(
    ingested_project: Project, admin_user: User
) -> None:
    ingested_project.audit_share = 0.0
    ingested_project.save(update_fields=["audit_share"])
    round_start(project=ingested_project, user=admin_user, strategy="random", size=8)
    assert RoundCrop.objects.count() == 8
    assert not RoundCrop.objects.filter(is_audit=True).exists()


def test_audit_share_setting_is_validated(ingested_project: Project) -> None:
    assert ingested_project.audit_share == pytest.approx(0.10)  # the default
    project_learning_update(
        project=ingested_project,
        first_round_strategy="random",
        target_accuracy=0.9,
        audit_share=0.2,
    )
    ingested_project.refresh_from_db()
    assert ingested_project.audit_share == pytest.approx(0.2)
    for bad in (-0.1, 0.51, float("nan")):
        with pytest.raises(SettingsError, match="audit share"):
            project_learning_update(
                project=ingested_project,
                first_round_strategy="random",
                target_accuracy=0.8,
                audit_share=bad,
            )
    ingested_project.refresh_from_db()
    assert ingested_project.audit_share == pytest.approx(0.2)
    assert ingested_project.target_accuracy == pytest.approx(0.9)


def _audit_labelled(
    project: Project,
    admin: User,
    volunteer: User,
    classifier: ClassifierVersion,
    crops: list[Crop],
    humans: list[Species],
    confidence: float,
) -> None:
    """A round whose audit ``crops`` had ``classifier``'s machine label fox at ``confidence``,
    then labelled ``humans`` by the volunteer."""
    fox = project.species.get(name="red fox")
    round_ = round_start(project=project, user=admin, strategy="random", size=len(crops))
    for crop, human in zip(crops, humans, strict=True):
        AuditPrediction.objects.create(
            round=round_,
            crop=crop,
            classifier=classifier,
            strategy="random",
            species=fox,
            confidence=confidence,
            threshold=classifier.threshold,
            auto_accepted=False,
        )
        labels_import(
            project=project, crop_ids=[crop.pk], user=volunteer, kind="species", species_id=human.pk
        )


def test_auto_accept_filter_matches_its_rule(ingested_project: Project) -> None:
    fox = ingested_project.species.get(name="red fox")
    agouti = ingested_project.species.get(name="agouti")
    classifier = classifier_by_hand(ingested_project, threshold=0.7)
    for i, crop in enumerate(ingested_project.crops.order_by("id")):
        Prediction.objects.create(
            crop=crop, classifier=classifier, species=fox if i % 2 else agouti, confidence=i / 10
        )
    owns: list[dict[int, float | None]] = [
        {},
        {fox.pk: 0.35},
        {fox.pk: 0.35, agouti.pk: None},
        {agouti.pk: 0.9},
    ]
    for own in owns:
        for default in (0.7, None):
            rule = AutoAccept(default, own)
            by_query = set(Prediction.objects.filter(rule.q()).values_list("id", flat=True))
            by_rule = {
                p.pk
                for p in Prediction.objects.all()
                if rule.accepts(species_id=p.species_id, confidence=p.confidence)
            }
            assert by_query == by_rule, (own, default)
    fox_prediction = Prediction.objects.filter(species=fox, confidence=0.5).select_related(
        "species"
    )[0]
    rule = AutoAccept(0.7, {fox.pk: 0.35})
    assert final_label(consensus=None, prediction=fox_prediction, threshold=rule).source == AUTO
    assert final_label(consensus=None, prediction=fox_prediction, threshold=0.7).source == MACHINE


def test_threshold_update_pools_audit_labels_with_cross_validation(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    from django.conf import settings as django_settings

    project = ingested_project
    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    classifier = classifier_by_hand(project, threshold=0.9)
    crops = list(project.crops.order_by("id"))
    # Audit evidence: four fox machine labels at 0.45, two right and two wrong.
    _audit_labelled(
        project, admin_user, volunteer, classifier, crops[:4], [fox, fox, agouti, agouti], 0.45
    )
    for crop in crops[4:]:
        Prediction.objects.create(crop=crop, classifier=classifier, species=fox, confidence=0.6)
    # Cross-validation: 30 fox labels, right above 0.5 and wrong below; 5 agouti (too few).
    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.1, 0.99, 30), np.full(5, 0.99)])
    predicted = np.array([fox.pk] * 30 + [agouti.pk] * 5)
    correct = np.concatenate([conf[:30] > 0.5, np.ones(5, bool)])
    cv_file = (Path(django_settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".cv.npz")
    cv_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cv_file, confidence=conf, correct=correct, predicted=predicted)
    classifier_threshold_update(classifier=classifier, target=0.95)
    classifier.refresh_from_db()
    expected = species_thresholds(
        predicted=np.concatenate([predicted, np.full(4, fox.pk)]),
        confidence=np.concatenate([conf, np.full(4, 0.45)]),
        correct=np.concatenate([correct, [True, True, False, False]]),
        target=0.95,
    )
    assert set(expected) == {fox.pk}  # agouti: too little evidence, the global threshold
    assert classifier.thresholds_per_species == {str(fox.pk): expected[fox.pk].threshold}
    fox_threshold = expected[fox.pk].threshold
    assert expected[fox.pk].n == 34 and fox_threshold is not None  # 30 CV + 4 audit
    # The unlabelled crops are fox at 0.6: above fox's own threshold iff it is at most 0.6.
    share = 1.0 if fox_threshold <= 0.6 else 0.0
    assert classifier.auto_accept_share == pytest.approx(share)
    # An audit crop offered now records the species' own threshold.
    assert AutoAccept.of(classifier).threshold_for(fox.pk) == expected[fox.pk].threshold
    assert AutoAccept.of(classifier).threshold_for(agouti.pk) == classifier.threshold


def test_classifier_gate_compares_on_the_parents_audit_labels(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    parent = classifier_by_hand(project, threshold=None)
    assert classifier_gate(parent=None, crop_ids=np.zeros(0), cv_correct=None)["decision"] == (
        "kept"
    )
    crops = list(project.crops.order_by("id"))
    # The parent: right on crops 0-2 (fox), wrong on crop 3 (machine fox, human agouti).
    _audit_labelled(project, admin_user, volunteer, parent, crops[:4], [fox, fox, fox, agouti], 0.9)
    ids = np.array([c.pk for c in crops[:4]] + [crops[5].pk])
    worse = np.array([True, False, False, True, True])  # 2 right of the 4 audited vs 3
    decision = classifier_gate(parent=parent, crop_ids=ids, cv_correct=worse)
    assert decision["decision"] == "kept" and decision["n"] == 4  # too few to refuse
    decision = classifier_gate(parent=parent, crop_ids=ids, cv_correct=worse, min_paired=4)
    assert decision["decision"] == "rejected"
    assert (decision["parent_correct"], decision["child_correct"]) == (3, 2)
    even = np.array([True, True, False, True, False])
    even_decision = classifier_gate(parent=parent, crop_ids=ids, cv_correct=even, min_paired=4)
    assert even_decision["decision"] == "kept"


def test_a_rejected_retrain_leaves_its_parent_live(
    ingested_project: Project, admin_user: User, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn import selectors
    from activelearn.services import classifier_retrain, predictions_prune
    from activelearn.services import retrain as retrain_module
    from tests.conftest import label_by_truth

    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops[:6])
    parent = classifier_retrain(project_id=ingested_project.pk)
    assert parent is not None and parent.gate["decision"] == "kept"
    assert parent.status == ClassifierVersion.Status.READY
    rejected = {"decision": "rejected", "reason": "worse on 30 audit crops: 20 right vs 25"}
    monkeypatch.setattr(retrain_module, "classifier_gate", lambda **_: rejected)
    label_by_truth(ingested_project, volunteer, crops[6:8])
    child = classifier_retrain(project_id=ingested_project.pk)
    assert child is not None and child.number == 2
    assert child.status == ClassifierVersion.Status.REJECTED and child.gate == rejected
    assert selectors.classifier_latest(project=ingested_project) == parent
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("project_model", args=[ingested_project.slug])).text
    assert 'id="classifier-rejected"' in page and "worse on 30 audit crops" in page
    # Nothing new: the rejected child is not trained again.
    assert classifier_retrain(project_id=ingested_project.pk) == child
    predictions_prune(project=ingested_project, keep=1)
    assert Prediction.objects.filter(classifier=parent).exists()  # the live one's are kept


@pytest.mark.parametrize(("human", "expected"), [("red fox", "margin"), ("agouti", "k_center")])
def test_the_default_rule_reads_the_audit_accuracy(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    human: str,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Enough labels per species for margins: the rule keeps them while the audit finds the
    machine labels right, and falls back to k-Center when it finds them all wrong."""
    from activelearn import selection_rule
    from activelearn.services.rounds import AUDIT_RULE_MIN, round_strategy_choice

    monkeypatch.setattr(selection_rule, "MARGIN_FROM_PER_SPECIES", 3.0)  # margins from 5 labels

    # Two species, so that the audit labels alone make 5 labels per species.
    ingested_project.species.exclude(name__in=["red fox", "agouti"]).delete()
    classifier = classifier_by_hand(ingested_project, threshold=0.7)
    crops = list(ingested_project.crops.order_by("id"))[:AUDIT_RULE_MIN]
    species = ingested_project.species.get(name=human)
    _audit_labelled(
        ingested_project, admin_user, volunteer, classifier, crops, [species] * len(crops), 0.5
    )
    choice = round_strategy_choice(project=ingested_project)
    assert choice.strategy == expected, choice.reason
    assert "audit accuracy" in choice.reason
    # Fewer audit labels than the minimum: the rule does not read them.
    AuditPrediction.objects.filter(crop=crops[0]).delete()
    assert "audit accuracy" not in round_strategy_choice(project=ingested_project).reason
