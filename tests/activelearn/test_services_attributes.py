"""Attributes through the label services: validation, consensus, replay, and the retrain's head.

missouri-dev (and the bundled sample cut from it) has no attribute labels: every attribute
label here is created by the test, through the same services volunteers use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from activelearn.models import Consensus, EventPrediction, Label, Prediction
from activelearn.services import (
    ATTRIBUTE_MIN_CROPS,
    LabelError,
    classifier_retrain,
    crop_claim_next,
    label_review,
    label_submit,
    labels_import,
    labels_submit,
    round_start,
)
from detector.models import Crop
from projects.models import Attribute, Project
from projects.services import membership_set

pytestmark = pytest.mark.django_db


def attribute(project: Project, name: str) -> int:
    return Attribute.objects.get(project=project, name=name).pk


def first_crop(project: Project) -> Crop:
    crop = Crop.objects.filter(project=project).order_by("id").first()
    assert crop is not None
    return crop


def test_new_projects_get_the_papers_attributes(project: Project) -> None:
    attributes = list(project.attributes.values_list("name", "key"))
    assert attributes == [
        ("standing", "q"),
        ("resting", "w"),
        ("moving", "e"),
        ("eating", "r"),
        ("interacting", "t"),
        ("young present", "y"),
    ]


def test_species_label_stores_its_attributes_sorted_and_once(
    ingested_project: Project, volunteer: User
) -> None:
    project = ingested_project
    eating, standing = attribute(project, "eating"), attribute(project, "standing")
    fox = project.species.get(name="red fox")
    crop = first_crop(project)
    label = labels_import(
        project=project,
        crop_ids=[crop.pk],
        user=volunteer,
        kind="species",
        species_id=fox.pk,
        attributes=[eating, standing, eating],
    )[0]
    label.refresh_from_db()
    assert label.attributes == sorted([eating, standing])
    assert Consensus.objects.get(crop=crop).attributes == sorted([eating, standing])


def test_attributes_of_another_project_are_refused_and_nothing_is_stored(
    ingested_project: Project, volunteer: User, foreign: tuple[Project, object, Crop]
) -> None:
    other = foreign[0]
    fox = ingested_project.species.get(name="red fox")
    alien = attribute(other, "standing")
    with pytest.raises(LabelError, match=f"attribute {alien} is not part of project 'Test traps'"):
        label_submit(
            project=ingested_project,
            crop_id=first_crop(ingested_project).pk,
            user=volunteer,
            kind="species",
            species_id=fox.pk,
            attributes=[attribute(ingested_project, "standing"), alien],
        )
    with pytest.raises(LabelError, match="attribute 999999 is not part"):
        label_submit(
            project=ingested_project,
            crop_id=first_crop(ingested_project).pk,
            user=volunteer,
            kind="species",
            species_id=fox.pk,
            attributes=[999999],
        )
    assert not Label.objects.exists() and not Consensus.objects.exists()


def test_only_species_labels_carry_attributes(ingested_project: Project, volunteer: User) -> None:
    project = ingested_project
    crop = first_crop(project)
    with pytest.raises(LabelError, match="only for species labels"):
        label_submit(
            project=project,
            crop_id=crop.pk,
            user=volunteer,
            kind="not_animal",
            attributes=[attribute(project, "moving")],
        )
    assert not Label.objects.exists()
    # An empty list on an empty crop is "nothing to record": stored as null.
    label = labels_import(
        project=project, crop_ids=[crop.pk], user=volunteer, kind="unknown", attributes=[]
    )[0]
    label.refresh_from_db()
    assert label.attributes is None
    assert Consensus.objects.get(crop=crop).attributes is None


def test_consensus_takes_the_majority_and_a_review_decides(
    ingested_project: Project, admin_user: User, volunteer: User, ecologist: User
) -> None:
    project = ingested_project
    Project.objects.filter(pk=project.pk).update(votes_per_crop=3, agreement_threshold=0.5)
    project.refresh_from_db()
    membership_set(project=project, user=ecologist, role="volunteer")
    fox = project.species.get(name="red fox")
    standing, eating = attribute(project, "standing"), attribute(project, "eating")
    crop = first_crop(project)
    for user, ticked in (
        (volunteer, [standing, eating]),
        (ecologist, [standing]),
        (admin_user, None),  # recorded nothing: does not count
    ):
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=user,
            kind="species",
            species_id=fox.pk,
            attributes=ticked,
        )
    consensus = Consensus.objects.get(crop=crop)
    # standing: 2 of the 2 votes recording attributes; eating: 1 of 2 is no majority.
    assert (consensus.status, consensus.attributes) == ("done", [standing])
    label_review(
        project=project,
        crop_id=crop.pk,
        user=admin_user,
        kind="species",
        species_id=fox.pk,
        attributes=[eating],
    )
    assert Consensus.objects.get(crop=crop).attributes == [eating]


def test_idempotent_replay_compares_the_attributes(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    fox = project.species.get(name="red fox")
    moving = attribute(project, "moving")
    open_round = round_start(project=project, user=admin_user, strategy="random", size=2)
    crops = [c.pk for c in crop_claim_next(round_=open_round, user=volunteer, limit=2)]
    first = labels_submit(
        project=project,
        crop_ids=crops,
        user=volunteer,
        kind="species",
        species_id=fox.pk,
        idempotency_key="k1",
        attributes=[moving],
    )
    again = labels_submit(
        project=project,
        crop_ids=crops,
        user=volunteer,
        kind="species",
        species_id=fox.pk,
        idempotency_key="k1",
        attributes=[moving],
    )
    assert [label.pk for label in again] == [label.pk for label in first]
    with pytest.raises(LabelError, match="already used for a different label"):
        labels_submit(
            project=project,
            crop_ids=crops,
            user=volunteer,
            kind="species",
            species_id=fox.pk,
            idempotency_key="k1",
            attributes=[],
        )
    assert Label.objects.count() == 2


def label_with_attributes(project: Project, user: User) -> dict[int, set[str]]:
    """Label every crop of the small project with its true species and made-up attributes:
    red foxes are moving, agoutis standing, and one agouti crop also eating."""
    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    ids = dict(project.attributes.values_list("name", "id"))
    truth: dict[int, set[str]] = {}
    crops = Crop.objects.filter(project=project).select_related("image").order_by("id")
    for i, crop in enumerate(crops):
        is_fox = "Red_Fox" in crop.image.file_name
        names = {"moving"} if is_fox else ({"standing", "eating"} if i == 0 else {"standing"})
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=user,
            kind="species",
            species_id=(fox if is_fox else agouti).pk,
            attributes=[ids[n] for n in names],
        )
        truth[crop.pk] = names
    return truth


def test_retrain_trains_the_attribute_head_and_stores_its_predictions(
    ingested_project: Project, volunteer: User
) -> None:
    project = ingested_project
    truth = label_with_attributes(project, volunteer)
    assert len(truth) >= ATTRIBUTE_MIN_CROPS
    classifier = classifier_retrain(project_id=project.pk)
    assert classifier is not None
    ids = list(project.attributes.values_list("id", flat=True))
    names = dict(project.attributes.values_list("id", "name"))
    assert classifier.attribute_ids == ids
    metrics = classifier.attribute_metrics
    assert metrics is not None and metrics["n"] == len(truth) and metrics["n_splits"] >= 2
    assert [row["name"] for row in metrics["per_attribute"]] == list(names.values())
    support = {row["name"]: row["support"] for row in metrics["per_attribute"]}
    assert support["moving"] == sum("moving" in t for t in truth.values())
    assert support["resting"] == 0
    print("attribute head on the small project (labels made by the test):", metrics)
    head = (Path(settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".attributes.joblib")
    assert head.is_file()
    predictions = {
        p.crop_id: p.attributes for p in Prediction.objects.filter(classifier=classifier)
    }
    assert set(predictions) == set(truth)
    for crop_id, probs in predictions.items():
        assert probs is not None and set(probs) == {str(i) for i in ids}
        yes = {names[int(a)] for a, p in probs.items() if p > 0.5}
        # Trained on these very crops, with one attribute set per species: it fits them.
        assert {"moving", "standing"} & yes == {"moving", "standing"} & truth[crop_id]
    # An event's attributes are the mean of its crops'.
    crops = Crop.objects.filter(project=project).select_related("image")
    by_event: dict[str, list[dict[str, float]]] = {}
    for crop in crops:
        by_event.setdefault(crop.image.seq_id, []).append(predictions[crop.pk] or {})
    events = EventPrediction.objects.filter(classifier=classifier)
    assert events.count() == len(by_event)
    for event in events:
        assert event.attributes is not None
        for a in event.attributes:
            expected = np.mean([p[a] for p in by_event[event.event]])
            assert event.attributes[a] == pytest.approx(expected, abs=1e-3)


def test_without_enough_attribute_labels_there_is_no_head(
    ingested_project: Project, volunteer: User
) -> None:
    project = ingested_project
    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    crops = Crop.objects.filter(project=project).select_related("image").order_by("id")
    for crop in crops:
        is_fox = "Red_Fox" in crop.image.file_name
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=volunteer,
            kind="species",
            species_id=(fox if is_fox else agouti).pk,
        )
    classifier = classifier_retrain(project_id=project.pk)
    assert classifier is not None
    assert (classifier.attribute_ids, classifier.attribute_metrics) == (None, None)
    assert not Prediction.objects.filter(attributes__isnull=False).exists()
    assert not EventPrediction.objects.filter(attributes__isnull=False).exists()


def test_attribute_json_is_what_the_exports_read(
    ingested_project: Project, volunteer: User
) -> None:
    """Prediction.attributes holds {attribute id as text: probability}, as documented."""
    label_with_attributes(ingested_project, volunteer)
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    raw = Prediction.objects.filter(classifier=classifier).values_list("attributes", flat=True)
    for value in raw:
        assert json.loads(json.dumps(value)) == value
        assert all(k.isdigit() and 0.0 <= v <= 1.0 for k, v in value.items())


def test_a_changed_attribute_alone_triggers_a_retrain(
    ingested_project: Project, volunteer: User
) -> None:
    project = ingested_project
    label_with_attributes(project, volunteer)
    first = classifier_retrain(project_id=project.pk)
    assert first is not None
    assert classifier_retrain(project_id=project.pk) == first  # nothing new: kept
    crop = first_crop(project)
    # The same species as before: only the attributes change.
    same = project.species.get(name="red fox" if "Red_Fox" in crop.image.file_name else "agouti")
    labels_import(
        project=project,
        crop_ids=[crop.pk],
        user=volunteer,
        kind="species",
        species_id=same.pk,
        attributes=[attribute(project, "resting")],
    )
    second = classifier_retrain(project_id=project.pk)
    assert second is not None and second.number == first.number + 1
