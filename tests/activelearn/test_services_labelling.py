"""Votes, consensus, the claim queue, undo and review (activelearn.services)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from activelearn.models import ClassifierVersion, Consensus, CropClaim, Label, Round
from activelearn.selectors import labels_today_count, round_progress
from activelearn.services import (
    LabelError,
    classifier_retrain,
    consensus_update,
    crop_claim_next,
    crop_claim_release,
    label_review,
    label_submit,
    label_undo,
    labels_import,
    labels_submit,
    round_start,
)
from detector.models import Crop
from projects.models import Project, Role, Species
from projects.services import membership_set
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_volunteer(django_user_model: type[User], project: Project) -> User:
    user = django_user_model.objects.create_user("val", password="x")
    membership_set(project=project, user=user, role=Role.VOLUNTEER)
    return user


def _species(project: Project, name: str) -> int:
    return int(project.species.get(name=name).pk)


def test_two_volunteers_are_never_served_the_same_crop(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=4)
    order = list(open_round.items.order_by("position").values_list("crop_id", flat=True))
    first = crop_claim_next(round_=open_round, user=volunteer)
    second = crop_claim_next(round_=open_round, user=second_volunteer)
    assert [c.pk for c in first] == order[:1] and [c.pk for c in second] == order[1:2]
    # Asking again returns the crop one holds, not a new one.
    assert [c.pk for c in crop_claim_next(round_=open_round, user=volunteer)] == order[:1]
    assert CropClaim.objects.count() == 2


def test_several_votes_serve_a_crop_to_that_many_volunteers(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    ingested_project.votes_per_crop = 2
    ingested_project.save()
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    order = list(open_round.items.order_by("position").values_list("crop_id", flat=True))
    assert [c.pk for c in crop_claim_next(round_=open_round, user=volunteer)] == order[:1]
    assert [c.pk for c in crop_claim_next(round_=open_round, user=second_volunteer)] == order[:1]
    third = User.objects.create_user("third")
    assert [c.pk for c in crop_claim_next(round_=open_round, user=third)] == order[1:2]


def test_expired_and_released_claims_are_offered_again(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    (held,) = crop_claim_next(round_=open_round, user=volunteer)
    CropClaim.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert crop_claim_next(round_=open_round, user=second_volunteer)[0].pk == held.pk
    crop_claim_release(round_=open_round, user=second_volunteer, crop_id=held.pk)
    # The volunteer who skipped it passes it over; the other one is offered it.
    (other,) = crop_claim_next(round_=open_round, user=second_volunteer, skipped=[held.pk])
    assert other.pk != held.pk
    assert crop_claim_next(round_=open_round, user=volunteer)[0].pk == held.pk


def test_grid_claims_up_to_the_limit_and_never_a_voted_crop(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=6)
    crops = crop_claim_next(round_=open_round, user=volunteer, limit=4)
    assert len(crops) == len({c.pk for c in crops}) == 4
    labels_submit(
        project=ingested_project,
        crop_ids=[c.pk for c in crops[:3]],
        user=volunteer,
        kind="species",
        species_id=_species(ingested_project, "red fox"),
    )
    again = crop_claim_next(round_=open_round, user=volunteer, limit=25)
    assert {c.pk for c in again}.isdisjoint(c.pk for c in crops[:3])
    assert len(again) == 3  # the one still held plus the two unclaimed
    assert again[0].pk == crops[3].pk


def test_votes_decide_by_plurality_or_go_to_review(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    ingested_project.votes_per_crop = 2
    ingested_project.agreement_threshold = 0.66
    ingested_project.save()
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    agreed, disputed = open_round.items.order_by("position").values_list("crop_id", flat=True)
    for user in (volunteer, second_volunteer):
        assert {c.pk for c in crop_claim_next(round_=open_round, user=user, limit=2)} == {
            agreed,
            disputed,
        }
    fox, agouti = _species(ingested_project, "red fox"), _species(ingested_project, "agouti")
    label_submit(
        project=ingested_project, crop_id=agreed, user=volunteer, kind="species", species_id=fox
    )
    assert Consensus.objects.get(crop_id=agreed).status == Consensus.Status.PENDING
    assert round_progress(round_=open_round) == (0, 2)
    label_submit(
        project=ingested_project,
        crop_id=agreed,
        user=second_volunteer,
        kind="species",
        species_id=fox,
    )
    done = Consensus.objects.get(crop_id=agreed)
    assert (done.status, done.species_id, done.votes, done.agreement) == ("done", fox, 2, 1.0)
    for user, species in ((volunteer, fox), (second_volunteer, agouti)):
        label_submit(
            project=ingested_project,
            crop_id=disputed,
            user=user,
            kind="species",
            species_id=species,
        )
    dispute = Consensus.objects.get(crop_id=disputed)
    assert (dispute.status, dispute.agreement) == ("review", 0.5)
    # Both crops are settled for the volunteers: the round closes, the dispute waits.
    assert round_progress(round_=open_round) == (2, 2)
    assert Round.objects.get().status == Round.Status.CLOSED
    label_review(
        project=ingested_project,
        crop_id=disputed,
        user=admin_user,
        kind="species",
        species_id=agouti,
    )
    decided = Consensus.objects.get(crop_id=disputed)
    assert (decided.status, decided.species_id, decided.reviewed) == ("done", agouti, True)
    assert Label.objects.filter(crop_id=disputed).count() == 3  # every vote is kept


def test_a_volunteers_new_label_replaces_their_vote(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    """Through ``labels_import``: the queue never serves a crop its volunteer voted on again,
    so a vote is changed by undoing it (tests/activelearn/test_services_claims.py)."""
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    crop_id = open_round.items.order_by("position").values_list("crop_id", flat=True)[0]
    fox, agouti = _species(ingested_project, "red fox"), _species(ingested_project, "agouti")
    for species in (fox, agouti):
        labels_import(
            project=ingested_project,
            crop_ids=[crop_id],
            user=volunteer,
            kind="species",
            species_id=species,
        )
    row = Consensus.objects.get(crop_id=crop_id)
    assert (row.votes, row.species_id) == (1, agouti)


def test_undo_keeps_the_row_and_serves_the_crop_again(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    (crop,) = crop_claim_next(round_=open_round, user=volunteer)
    label_submit(project=ingested_project, crop_id=crop.pk, user=volunteer, kind="unknown")
    assert labels_today_count(project=ingested_project, user=volunteer) == 1
    assert crop_claim_next(round_=open_round, user=volunteer)[0].pk != crop.pk
    undone = label_undo(project=ingested_project, user=volunteer)
    assert undone.crop_id == crop.pk and undone.undone_at is not None
    assert Label.objects.filter(crop=crop).count() == 1  # kept, marked undone
    assert not Consensus.objects.filter(crop=crop).exists()
    assert labels_today_count(project=ingested_project, user=volunteer) == 0
    assert crop_claim_next(round_=open_round, user=volunteer)[0].pk == crop.pk
    with pytest.raises(LabelError, match="nothing to undo"):
        label_undo(project=ingested_project, user=volunteer)


def test_undo_of_a_training_label_makes_the_next_retrain_run(
    ingested_project: Project, volunteer: User
) -> None:
    label_by_truth(ingested_project, volunteer, ingested_project.crops.order_by("id"))
    first = classifier_retrain(project_id=ingested_project.pk)
    assert first is not None and classifier_retrain(project_id=ingested_project.pk) == first
    oldest = Label.objects.order_by("id").first()
    assert oldest is not None
    oldest.undone_at = timezone.now()
    oldest.save()
    consensus_update(project=ingested_project, crop_ids=[oldest.crop_id])
    second = classifier_retrain(project_id=ingested_project.pk)
    assert second is not None and second.number == first.number + 1
    assert second.n_labels == first.n_labels - 1
    assert ClassifierVersion.objects.count() == 2


def test_batch_label_is_all_or_nothing(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    other = Project.objects.create(name="Other", slug="other")
    crops = list(ingested_project.crops.values_list("id", flat=True)[:2])
    with pytest.raises(LabelError, match="999999"):
        labels_submit(
            project=ingested_project,
            crop_ids=[*crops, 999_999],
            user=volunteer,
            kind="not_animal",
        )
    with pytest.raises(LabelError, match="not in project"):
        labels_submit(
            project=ingested_project,
            crop_ids=crops,
            user=volunteer,
            kind="species",
            species_id=Project.objects.get(pk=other.pk).species.create(name="x").pk,
        )
    assert not Label.objects.exists() and not Consensus.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_skip_locked_rows(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    """On PostgreSQL two volunteers asking at once get different crops (SKIP LOCKED)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers)")
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=8)
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claim(user: User) -> None:
        try:
            barrier.wait()
            crops = crop_claim_next(round_=open_round, user=user, limit=2)
            results[user.username] = [c.pk for c in crops]
        finally:
            connection.close()

    users = [volunteer, second_volunteer, *(User.objects.create_user(f"u{i}") for i in range(2))]
    threads = [threading.Thread(target=claim, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [c for crops in results.values() for c in crops]
    assert len(results) == 4 and len(claimed) == 8
    assert len(set(claimed)) == 8  # no crop served twice


def test_idempotency_key_stores_a_submission_once(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    ingested_project.votes_per_crop = 2  # the second volunteer's vote below is a vote too
    ingested_project.save()
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    crops = [c.pk for c in crop_claim_next(round_=open_round, user=volunteer, limit=3)]
    crop_claim_next(round_=open_round, user=second_volunteer, limit=1)
    fox = _species(ingested_project, "red fox")
    first = labels_submit(
        project=ingested_project,
        crop_ids=crops,
        user=volunteer,
        kind="species",
        species_id=fox,
        idempotency_key="grid-1",
    )
    again = labels_submit(
        project=ingested_project,
        crop_ids=crops,
        user=volunteer,
        kind="species",
        species_id=fox,
        idempotency_key="grid-1",
    )
    assert [label.pk for label in again] == [label.pk for label in first]
    assert Label.objects.count() == 3
    with pytest.raises(LabelError, match="already used for a different label"):
        labels_submit(
            project=ingested_project,
            crop_ids=crops,
            user=volunteer,
            kind="unknown",
            idempotency_key="grid-1",
        )
    with pytest.raises(LabelError, match="longer than 200"):
        label_submit(
            project=ingested_project,
            crop_id=crops[0],
            user=volunteer,
            kind="unknown",
            idempotency_key="x" * 201,
        )
    # Keys are per user: another volunteer's same key is a new submission.
    label_submit(
        project=ingested_project,
        crop_id=crops[0],
        user=second_volunteer,
        kind="unknown",
        idempotency_key="grid-1",
    )
    assert Label.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_copies_of_one_submission_store_one_label(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    """Two requests with the same key at the same moment (a double click): one label."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises them)")
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    (crop,) = crop_claim_next(round_=open_round, user=volunteer)
    crop_id = crop.pk
    barrier = threading.Barrier(4)
    stored: list[int] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait()
            label = label_submit(
                project=ingested_project,
                crop_id=crop_id,
                user=volunteer,
                kind="unknown",
                idempotency_key="double-click",
            )
            stored.append(label.pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(stored) == 4 and len(set(stored)) == 1
    assert Label.objects.filter(crop_id=crop_id).count() == 1
    assert Consensus.objects.get(crop_id=crop_id).votes == 1


def test_refused_labels_store_nothing_and_leave_the_consensus(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    foreign: tuple[Project, Species, Crop],
) -> None:
    """Unknown species, another project's species or crop: LabelError naming it, no change."""
    other, wolf, alien_crop = foreign
    crop = ingested_project.crops.order_by("id").first()
    assert crop is not None
    fox = _species(ingested_project, "red fox")
    labels_import(
        project=ingested_project, crop_ids=[crop.pk], user=volunteer, kind="species", species_id=fox
    )
    before = (list(Label.objects.values()), list(Consensus.objects.values()))
    assert len(before[1]) == 1
    name = ingested_project.name
    cases: list[tuple[dict[str, object], str]] = [
        (
            {"crop_id": crop.pk, "kind": "species", "species_id": wolf.pk},
            f"species {wolf.pk} is not in project {name!r}",
        ),
        (
            {"crop_id": crop.pk, "kind": "species", "species_id": 999_999},
            f"species 999999 is not in project {name!r}",
        ),
        (
            {"crop_id": alien_crop.pk, "kind": "species", "species_id": fox},
            f"crop {alien_crop.pk} is not part of project {name!r}",
        ),
        ({"crop_id": alien_crop.pk, "kind": "unknown"}, f"crop {alien_crop.pk} is not part"),
        ({"crop_id": crop.pk, "kind": "cat"}, "unknown label kind 'cat'"),
        ({"crop_id": crop.pk, "kind": "species"}, "a species label needs a species"),
    ]
    for user in (volunteer, admin_user):
        for kwargs, message in cases:
            with pytest.raises(LabelError, match=re.escape(message)):
                label_submit(project=ingested_project, user=user, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(LabelError, match=f"crop {crop.pk} is not part of project 'Foreign"):
            label_review(project=other, crop_id=crop.pk, user=admin_user, kind="unknown")
    assert (list(Label.objects.values()), list(Consensus.objects.values())) == before
    assert not alien_crop.labels.exists()
