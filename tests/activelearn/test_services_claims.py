"""Claims as a cap and as the right to vote (issue 16): no volunteer holds a whole round, and
a vote counts only on a crop its volunteer was served (activelearn.services.claims, labels)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from activelearn.models import Consensus, CropClaim, Label, Round
from activelearn.services import (
    LabelError,
    crop_claim_next,
    label_submit,
    label_undo,
    labels_import,
    labels_submit,
    round_start,
)
from activelearn.services.claims import crop_claims_held
from detector.models import Crop
from projects.models import Project, Role
from projects.services import membership_set, project_create

pytestmark = pytest.mark.django_db

NOT_YOURS = "is not yours to label now: ask for the next crop"


@pytest.fixture
def second_volunteer(django_user_model: type[User], project: Project) -> User:
    user = django_user_model.objects.create_user("val", password="x")
    membership_set(project=project, user=user, role=Role.VOLUNTEER)
    return user


@pytest.fixture
def cap(settings: object) -> int:
    settings.TRAPWISE_CLAIMS_PER_USER = 3  # type: ignore[attr-defined]
    return 3


def _live(round_: Round, user: User) -> set[int]:
    return set(
        CropClaim.objects.filter(
            round=round_, user=user, expires_at__gt=timezone.now()
        ).values_list("crop_id", flat=True)
    )


def _ids(crops: list[Crop]) -> list[int]:
    return [c.pk for c in crops]


def test_next_claims_no_more_than_the_cap_held_claims_included(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User, cap: int
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=8)
    order = list(open_round.items.order_by("position").values_list("crop_id", flat=True))
    assert _ids(crop_claim_next(round_=open_round, user=volunteer, limit=1)) == order[:1]
    # A grid's worth asked for: the one held plus two new ones, not 25.
    grid = crop_claim_next(round_=open_round, user=volunteer, limit=25)
    assert _ids(grid) == order[:3] and _live(open_round, volunteer) == set(order[:3])
    assert _ids(crop_claim_next(round_=open_round, user=volunteer, limit=25)) == order[:3]
    # The rest of the round is still there for the others.
    assert _ids(crop_claim_next(round_=open_round, user=second_volunteer, limit=2)) == order[3:5]


def test_skipping_the_held_crops_releases_them(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User, cap: int
) -> None:
    """The reported attack: ``next`` again and again, skipping every crop held so far."""
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=8)
    seen: list[int] = []
    for _ in range(4):
        seen += _ids(crop_claim_next(round_=open_round, user=volunteer, skipped=seen, limit=50))
        assert len(_live(open_round, volunteer)) <= cap
    assert len(set(seen)) == 8  # walked through the whole round...
    assert _live(open_round, volunteer) <= set(seen[-cap:])  # ...holding only the last page
    # The crops passed over are offered to the next volunteer.
    other = crop_claim_next(round_=open_round, user=second_volunteer, limit=cap)
    assert len(other) == cap and set(_ids(other)).isdisjoint(_live(open_round, volunteer))


def test_a_vote_needs_a_claim_of_the_voter_in_the_open_round(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    crops = list(ingested_project.crops.order_by("id").values_list("id", flat=True))
    # A crop decided before the round, and one of a closed round.
    labels_import(project=ingested_project, crop_ids=crops[:1], user=admin_user, kind="unknown")
    closed = round_start(project=ingested_project, user=admin_user, strategy="random", size=1)
    (closed_crop,) = closed.items.values_list("crop_id", flat=True)
    labels_import(project=ingested_project, crop_ids=[closed_crop], user=admin_user, kind="unknown")
    closed.refresh_from_db()
    assert closed.status == Round.Status.CLOSED
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=4)
    order = list(open_round.items.order_by("position").values_list("crop_id", flat=True))
    (mine,) = _ids(crop_claim_next(round_=open_round, user=volunteer))
    (theirs,) = _ids(crop_claim_next(round_=open_round, user=second_volunteer))
    never_offered = order[-1]
    outside = next(c for c in crops if c not in order and c not in (crops[0], closed_crop))
    before = (list(Label.objects.values()), list(Consensus.objects.values()))
    for user in (volunteer, admin_user):
        for crop_id in (crops[0], closed_crop, theirs, never_offered, outside):
            with pytest.raises(LabelError, match=f"crop {crop_id} {NOT_YOURS}"):
                label_submit(project=ingested_project, crop_id=crop_id, user=user, kind="unknown")
    # All or nothing: one crop held among others is no way in.
    with pytest.raises(LabelError, match=NOT_YOURS):
        labels_submit(
            project=ingested_project, crop_ids=[mine, never_offered], user=volunteer, kind="unknown"
        )
    assert (list(Label.objects.values()), list(Consensus.objects.values())) == before
    label = label_submit(project=ingested_project, crop_id=mine, user=volunteer, kind="unknown")
    assert label.round == open_round and not _live(open_round, volunteer)  # the claim is used
    with pytest.raises(LabelError, match=NOT_YOURS):  # and a second vote needs a new one
        label_submit(project=ingested_project, crop_id=mine, user=volunteer, kind="not_animal")


def test_no_vote_without_an_open_round(ingested_project: Project, volunteer: User) -> None:
    crop_id = ingested_project.crops.values_list("id", flat=True)[0]
    with pytest.raises(LabelError, match=f"crop {crop_id} {NOT_YOURS}"):
        label_submit(project=ingested_project, crop_id=crop_id, user=volunteer, kind="unknown")
    assert not Label.objects.exists()


def test_an_expired_claim_counts_until_someone_else_takes_the_crop(
    ingested_project: Project, admin_user: User, volunteer: User, second_volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=4)
    first, second = _ids(crop_claim_next(round_=open_round, user=volunteer, limit=2))
    CropClaim.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert crop_claims_held(round_=open_round, user=volunteer, crop_ids=[first, second]) == {
        first,
        second,
    }
    # The second volunteer is served the first crop; the slow one keeps only the other.
    assert _ids(crop_claim_next(round_=open_round, user=second_volunteer)) == [first]
    with pytest.raises(LabelError, match=f"crop {first} {NOT_YOURS}"):
        label_submit(project=ingested_project, crop_id=first, user=volunteer, kind="unknown")
    label_submit(project=ingested_project, crop_id=second, user=volunteer, kind="unknown")
    assert Consensus.objects.get(crop_id=second).status == Consensus.Status.DONE


def test_undo_gives_the_claim_back_for_a_new_vote(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    (crop_id,) = _ids(crop_claim_next(round_=open_round, user=volunteer))
    label_submit(project=ingested_project, crop_id=crop_id, user=volunteer, kind="unknown")
    label_undo(project=ingested_project, user=volunteer)
    fox = ingested_project.species.get(name="red fox").pk
    label_submit(
        project=ingested_project, crop_id=crop_id, user=volunteer, kind="species", species_id=fox
    )
    row = Consensus.objects.get(crop_id=crop_id)
    assert (row.status, row.species_id, row.votes) == (Consensus.Status.DONE, fox, 1)


def test_a_retry_replays_after_its_vote_used_the_claim(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    (crop_id,) = _ids(crop_claim_next(round_=open_round, user=volunteer))
    sent = {"project": ingested_project, "crop_id": crop_id, "user": volunteer, "kind": "unknown"}
    first = label_submit(**sent, idempotency_key="k1")  # type: ignore[arg-type]
    assert not _live(open_round, volunteer)
    assert label_submit(**sent, idempotency_key="k1") == first  # type: ignore[arg-type]
    assert Label.objects.count() == 1


def test_an_idempotency_key_is_replayed_only_in_its_project(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    other = project_create(name="Other traps", created_by=admin_user, seed=1)
    membership_set(project=other, user=volunteer, role=Role.VOLUNTEER)
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    (crop_id,) = _ids(crop_claim_next(round_=open_round, user=volunteer))
    label_submit(
        project=ingested_project,
        crop_id=crop_id,
        user=volunteer,
        kind="unknown",
        idempotency_key="same",
    )
    # The same key and crop sent to the other project: refused there, not the first label.
    with pytest.raises(LabelError, match=f"crop {crop_id} is not part of project 'Other traps'"):
        label_submit(
            project=other, crop_id=crop_id, user=volunteer, kind="unknown", idempotency_key="same"
        )
    assert Label.objects.count() == 1


def test_labels_import_needs_no_claim(ingested_project: Project, volunteer: User) -> None:
    """Ground truth and imports are trusted code's, not a request's: no round, no claim."""
    crop_id = ingested_project.crops.values_list("id", flat=True)[0]
    (label,) = labels_import(
        project=ingested_project, crop_ids=[crop_id], user=volunteer, kind="unknown"
    )
    assert label.round is None and Consensus.objects.get(crop_id=crop_id).votes == 1
