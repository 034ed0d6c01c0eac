"""Concurrent writers on PostgreSQL (issue 7): votes, round starts, labels during training.

Each race is forced, not hoped for: a barrier holds both writers at the point where the race
matters (after their label rows are written, before the consensus is computed), so that without
the row locks of ``activelearn.services.locks`` these tests fail every time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

import activelearn.classifier as classifier_module
import activelearn.services.claims as claim_services
import activelearn.services.labels as label_services
import activelearn.services.retrain as retrain_services
import activelearn.services.settings as settings_services
from activelearn.models import ClassifierVersion, Consensus, CropClaim, Label, Round
from activelearn.services import (
    RoundError,
    classifier_retrain,
    crop_claim_next,
    embedding_finetune_and_retrain,
    embedding_finetune_queue,
    label_submit,
    round_start,
)
from activelearn.services.retrain import CANDIDATES
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_version_current
from projects.models import Project, Role
from projects.services import membership_set
from tests.conftest import label_by_truth, serve

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises them); CI runs it")


@pytest.fixture
def second_volunteer(django_user_model: type[User], project: Project) -> User:
    user = django_user_model.objects.create_user("val", password="x")
    membership_set(project=project, user=user, role=Role.VOLUNTEER)
    return user


@pytest.fixture
def retrains(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the retrains queued (no broker in these tests); one entry per queueing."""
    queued: list[int] = []
    # Patched in every module that looks it up (closing a round, settings, "Retrain now").
    for module in (label_services, settings_services, retrain_services):
        monkeypatch.setattr(
            module,
            "classifier_retrain_queue",
            lambda *, project_id: queued.append(project_id),
        )
    return queued


def _in_threads(*calls: Callable[[], object]) -> tuple[list[object], list[BaseException]]:
    """Run ``calls`` at once, each in its own thread and database connection."""
    results: list[object] = []
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            results.append(call())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a writer hung (deadlock?)"
    return results, errors


@pytest.fixture
def meet_before_consensus(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Arms a hold: the next two label submissions wait, after their Label rows are written
    and before their consensus is computed, until both got there."""

    def arm() -> None:
        barrier = threading.Barrier(2, timeout=20)
        real = label_services.consensus_update

        def waiting(*, project: Project, crop_ids: Any) -> set[int]:
            barrier.wait()
            return real(project=project, crop_ids=crop_ids)

        monkeypatch.setattr(label_services, "consensus_update", waiting)

    return arm


def _species(project: Project, name: str) -> int:
    return int(project.species.get(name=name).pk)


def _served_to_both(project: Project, admin: User, first: User, second: User) -> int:
    """The first crop of a new round, served to both volunteers (votes per crop: 2)."""
    round_ = round_start(project=project, user=admin, strategy="random", size=2)
    (crop,) = crop_claim_next(round_=round_, user=first)
    assert [c.pk for c in crop_claim_next(round_=round_, user=second)] == [crop.pk]
    return int(crop.pk)


def test_two_volunteers_voting_on_one_crop_both_count(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    second_volunteer: User,
    meet_before_consensus: Callable[[], None],
    retrains: list[int],
) -> None:
    ingested_project.votes_per_crop = 2
    ingested_project.save(update_fields=["votes_per_crop"])
    crop_id = _served_to_both(ingested_project, admin_user, volunteer, second_volunteer)
    fox = _species(ingested_project, "red fox")
    meet_before_consensus()

    def vote(user: User) -> Callable[[], object]:
        return lambda: label_submit(
            project=ingested_project, crop_id=crop_id, user=user, kind="species", species_id=fox
        )

    _, errors = _in_threads(vote(volunteer), vote(second_volunteer))

    assert errors == []
    assert Label.objects.filter(crop_id=crop_id).count() == 2
    consensus = Consensus.objects.get(crop_id=crop_id)  # one row, not two
    assert consensus.votes == 2 and consensus.status == Consensus.Status.DONE
    assert consensus.species_id == fox


def test_two_volunteers_disagreeing_at_once_send_the_crop_to_review(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    second_volunteer: User,
    meet_before_consensus: Callable[[], None],
    retrains: list[int],
) -> None:
    ingested_project.votes_per_crop = 2
    ingested_project.save(update_fields=["votes_per_crop"])
    crop_id = _served_to_both(ingested_project, admin_user, volunteer, second_volunteer)
    fox, agouti = _species(ingested_project, "red fox"), _species(ingested_project, "agouti")
    meet_before_consensus()

    _, errors = _in_threads(
        lambda: label_submit(
            project=ingested_project,
            crop_id=crop_id,
            user=volunteer,
            kind="species",
            species_id=fox,
        ),
        lambda: label_submit(
            project=ingested_project,
            crop_id=crop_id,
            user=second_volunteer,
            kind="species",
            species_id=agouti,
        ),
    )

    assert errors == []
    consensus = Consensus.objects.get(crop_id=crop_id)
    assert consensus.votes == 2 and consensus.status == Consensus.Status.REVIEW


def test_settling_the_last_two_crops_at_once_closes_the_round_once(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    second_volunteer: User,
    meet_before_consensus: Callable[[], None],
    retrains: list[int],
) -> None:
    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=4)
    crops = [item.crop for item in round_.items.select_related("crop__image").order_by("position")]
    label_by_truth(ingested_project, volunteer, crops[:2])
    serve(ingested_project, volunteer, [crops[2].pk])
    serve(ingested_project, second_volunteer, [crops[3].pk])
    meet_before_consensus()
    unknown = "unknown"

    _, errors = _in_threads(
        lambda: label_submit(
            project=ingested_project, crop_id=crops[2].pk, user=volunteer, kind=unknown
        ),
        lambda: label_submit(
            project=ingested_project, crop_id=crops[3].pk, user=second_volunteer, kind=unknown
        ),
    )

    assert errors == []
    round_.refresh_from_db()
    assert round_.status == Round.Status.CLOSED and round_.closed_at is not None
    assert retrains == [ingested_project.pk]  # closed once, one retrain queued
    assert Label.objects.filter(round=round_).count() == 4


def test_two_admins_starting_a_round_at_once_get_one_round(
    ingested_project: Project,
    admin_user: User,
    django_user_model: type[User],
) -> None:
    second_admin = django_user_model.objects.create_user("ava")
    membership_set(project=ingested_project, user=second_admin, role=Role.ADMIN)
    barrier = threading.Barrier(2, timeout=20)

    def start(user: User) -> Callable[[], object]:
        def call() -> Round:
            barrier.wait()
            return round_start(project=ingested_project, user=user, strategy="random", size=5)

        return call

    results, errors = _in_threads(start(admin_user), start(second_admin))

    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], RoundError)
    assert "already open" in str(errors[0])
    assert Round.objects.filter(project=ingested_project).count() == 1
    assert Round.objects.get().items.count() == 5


def test_labels_arriving_while_the_classifier_trains_count_in_the_next_run(
    ingested_project: Project,
    volunteer: User,
    second_volunteer: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crops = list(Crop.objects.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, _first(crops))
    real_train = classifier_module.classifier_train
    arrived: list[int] = []

    def train_while_labels_arrive(*args: Any, **kwargs: Any) -> Any:
        if not arrived:  # the first fit of the run: a volunteer labels meanwhile
            _, errors = _in_threads(lambda: _label_rest(ingested_project, second_volunteer, crops))
            assert errors == []
            arrived.extend(Label.objects.filter(user=second_volunteer).values_list("id", flat=True))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "classifier_train", train_while_labels_arrive)
    first = classifier_retrain(project_id=ingested_project.pk)
    monkeypatch.setattr(classifier_module, "classifier_train", real_train)

    assert first is not None and arrived
    assert first.n_labels == 8 and first.last_label_id < min(arrived)
    second = classifier_retrain(project_id=ingested_project.pk)
    assert second is not None and second.number == first.number + 1
    assert second.n_labels == 8 + len(arrived)
    assert Label.objects.count() == 8 + len(arrived)  # none lost


def _first(crops: list[Crop]) -> list[Crop]:
    """8 crops of both species (the small folder's crops are ordered fox first, then agouti)."""
    return crops[:4] + crops[-4:]


def _label_rest(project: Project, user: User, crops: list[Crop]) -> None:
    label_by_truth(project, user, crops[4:-4])


def test_labels_arriving_while_the_embedding_is_fine_tuned_count_in_the_next_run(
    ingested_project: Project,
    volunteer: User,
    second_volunteer: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingested_project.finetune_mode, ingested_project.finetune_epochs = "head", 2
    ingested_project.finetune_every = 0  # only the forced run below
    ingested_project.save()
    crops = list(Crop.objects.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, _first(crops))
    import activelearn.tasks

    queued: list[int] = []
    monkeypatch.setattr(activelearn.tasks.embedding_finetune_task, "delay", queued.append)
    with transaction.atomic():  # as in the view: the queueing locks the project row
        version = embedding_finetune_queue(project=ingested_project, force=True)
    assert version is not None and queued == [version.pk]
    import embeddings.services as embedding_services

    real_train = embedding_services.train_head
    arrived: list[int] = []

    def train_while_labels_arrive(*args: Any, **kwargs: Any) -> Any:
        _, errors = _in_threads(lambda: _label_rest(ingested_project, second_volunteer, crops))
        assert errors == []
        arrived.extend(Label.objects.filter(user=second_volunteer).values_list("id", flat=True))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(embedding_services, "train_head", train_while_labels_arrive)
    classifier = embedding_finetune_and_retrain(version_id=version.pk)

    version.refresh_from_db()
    assert arrived and version.status == EmbeddingVersion.Status.READY
    assert version.n_train_labels == 8  # trained on what was there when it started
    assert version.last_label_id < min(arrived)  # so the new labels count toward the next one
    assert embedding_version_current(project=ingested_project) == version
    # The retrain after the switch reads the labels afresh: the new ones are in it.
    assert classifier is not None and classifier.embedding_version == version
    assert classifier.n_labels == 8 + len(arrived)
    assert Label.objects.count() == 8 + len(arrived)
    assert ClassifierVersion.objects.count() == 1


def test_two_retrains_of_one_project_at_once_make_one_version(
    ingested_project: Project, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers retraining at once: the second waits for the first, then has nothing new."""
    label_by_truth(ingested_project, volunteer, Crop.objects.select_related("image"))
    barrier = threading.Barrier(2, timeout=20)
    real_train = classifier_module.classifier_train
    fits: list[int] = []

    def slow_train(*args: Any, **kwargs: Any) -> Any:
        fits.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "classifier_train", slow_train)

    def retrain() -> object:
        barrier.wait()
        return classifier_retrain(project_id=ingested_project.pk)

    results, errors = _in_threads(retrain, retrain)

    assert errors == []
    assert ClassifierVersion.objects.filter(project=ingested_project).count() == 1
    version = ClassifierVersion.objects.get(project=ingested_project)
    assert [r.pk for r in results] == [version.pk, version.pk]  # type: ignore[attr-defined]
    # Trained once, not twice: one fit of the kept classifier, one per fold of each candidate.
    assert len(fits) == 1 + len(CANDIDATES) * version.cv_n_splits


def test_one_user_asking_for_crops_many_times_at_once_holds_no_more_than_the_cap(
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parallel ``next`` requests of one user (issue 16): each counted the claims held before
    the others committed theirs, and together they held the cap several times over. The hold
    makes every request count first and claim after, as they would when racing; with the
    user's claim lock only one request claims at a time (the hold gives up after 2 s)."""
    settings.TRAPWISE_CLAIMS_PER_USER = 3
    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=10)
    barrier = threading.Barrier(4)
    real = claim_services._claimable

    def counted_then_claiming(**kwargs: Any) -> list[int]:
        # Broken when the requests are serialised: the others wait for the claim lock.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=2)
        return real(**kwargs)

    monkeypatch.setattr(claim_services, "_claimable", counted_then_claiming)

    def ask() -> list[int]:
        return [c.pk for c in crop_claim_next(round_=round_, user=volunteer, limit=3)]

    results, errors = _in_threads(ask, ask, ask, ask)

    assert errors == []
    claims = CropClaim.objects.filter(round=round_, user=volunteer)
    held = set(claims.values_list("crop_id", flat=True))
    assert len(held) == 3
    assert [set(r) for r in results] == [held] * 4  # type: ignore[call-overload]
