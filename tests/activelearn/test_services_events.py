"""Event rounds: whole capture events picked, served and answered with one decision."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label, LabelOrigin, Round, RoundUnit
from activelearn.services import (
    LabelError,
    RoundError,
    crop_claim_next,
    event_claim_next,
    label_undo,
    labels_event_submit,
    round_start,
)
from activelearn.services.claims import crop_claims_held
from projects.models import Project


def _events(project: Project, crop_ids: list[int]) -> set[str]:
    return {
        seq for seq in project.crops.filter(pk__in=crop_ids).values_list("image__seq_id", flat=True)
    }


@pytest.mark.django_db
def test_an_event_round_picks_whole_events(ingested_project: Project, admin_user: User) -> None:
    new = round_start(project=ingested_project, user=admin_user, size=1, unit="event")
    assert new.unit == RoundUnit.EVENT and new.strategy == "k_center"
    crop_ids = list(new.items.values_list("crop_id", flat=True))
    (seq,) = _events(ingested_project, crop_ids)  # one event: size counts events
    # ... with every crop of that event, none drawn for the audit.
    assert len(crop_ids) == ingested_project.crops.filter(image__seq_id=seq).count() > 1
    assert not new.items.filter(is_audit=True).exists()


@pytest.mark.django_db
def test_an_event_round_picks_by_k_center_only(ingested_project: Project, admin_user: User) -> None:
    with pytest.raises(RoundError, match="event round picks by"):
        round_start(
            project=ingested_project, user=admin_user, size=1, unit="event", strategy="random"
        )
    with pytest.raises(RoundError, match="unknown unit"):
        round_start(project=ingested_project, user=admin_user, size=1, unit="frame")
    assert not Round.objects.exists()


@pytest.mark.django_db
def test_one_answer_labels_the_event_and_undo_withdraws_it_all(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    new = round_start(project=project, user=admin_user, size=2, unit="event")
    crops = event_claim_next(round_=new, user=volunteer)
    ids = [c.pk for c in crops]
    assert len(_events(project, ids)) == 1 and len(ids) > 1
    assert crop_claims_held(round_=new, user=volunteer, crop_ids=ids) == set(ids)
    species = project.species.first()
    assert species is not None
    labels = labels_event_submit(
        project=project, crop_ids=ids, user=volunteer, kind="species", species_id=species.pk
    )
    assert {lab.crop_id for lab in labels} == set(ids)
    assert {lab.origin for lab in labels} == {LabelOrigin.EVENT}
    assert len({lab.decision for lab in labels}) == 1 and labels[0].decision is not None
    assert project.consensus.filter(crop_id__in=ids, species=species).count() == len(ids)
    # The next event is another one.
    others = [c.pk for c in event_claim_next(round_=new, user=volunteer)]
    assert others and not set(others) & set(ids)

    label_undo(project=project, user=volunteer)
    assert Label.objects.filter(crop_id__in=ids, undone_at__isnull=True).count() == 0
    assert not project.consensus.filter(crop_id__in=ids).exists()
    # The undone event comes back whole, first.
    again = [c.pk for c in event_claim_next(round_=new, user=volunteer)]
    assert set(again) == set(ids)


@pytest.mark.django_db
def test_an_event_answer_needs_every_crop_held(
    ingested_project: Project, admin_user: User, volunteer: User, ecologist: User
) -> None:
    project = ingested_project
    new = round_start(project=project, user=admin_user, size=2, unit="event")
    ids = [c.pk for c in event_claim_next(round_=new, user=volunteer)]
    species = project.species.first()
    assert species is not None
    with pytest.raises(LabelError, match="not yours to label"):
        labels_event_submit(
            project=project, crop_ids=ids, user=ecologist, kind="species", species_id=species.pk
        )
    # Crops of two events in one answer are refused, even held.
    mine = [c.pk for c in event_claim_next(round_=new, user=ecologist)]
    both = [*ids[:1], *mine[:1]]
    with pytest.raises(LabelError, match="different capture events"):
        labels_event_submit(
            project=project, crop_ids=both, user=ecologist, kind="species", species_id=species.pk
        )
    assert not Label.objects.exists()


@pytest.mark.django_db
def test_the_crop_queue_claims_an_event_round_event_by_event(
    ingested_project: Project, admin_user: User, volunteer: User, ecologist: User
) -> None:
    project = ingested_project
    new = round_start(project=project, user=admin_user, size=2, unit="event")
    (first,) = crop_claim_next(round_=new, user=volunteer)
    seq = first.image.seq_id
    event_ids = set(project.crops.filter(image__seq_id=seq).values_list("pk", flat=True))
    assert crop_claims_held(round_=new, user=volunteer, crop_ids=event_ids) == event_ids
    # Another volunteer gets the other event, not a crop of this one.
    theirs = [c.pk for c in event_claim_next(round_=new, user=ecologist)]
    assert theirs and not set(theirs) & event_ids
