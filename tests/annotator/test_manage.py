"""Members, roles and the species list: the services and the admin's pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from activelearn.models import Consensus, EventPrediction, Label, Prediction
from activelearn.services import classifier_retrain, labels_import, species_merge
from projects.models import Membership, Project, Role, Species
from projects.services import (
    MemberError,
    SpeciesError,
    member_remove,
    member_role_change,
    membership_set,
    project_create,
    species_add,
    species_rename,
)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

MESSAGE = re.compile(r'<p class="message[^"]*"[^>]*>.*?</p>', re.DOTALL)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _roles(project: Project) -> dict[str, str]:
    return dict(Membership.objects.filter(project=project).values_list("user__username", "role"))


# --- Members ------------------------------------------------------------------------------


def test_role_change_and_removal(project: Project, volunteer: User, admin_user: User) -> None:
    vic = Membership.objects.get(project=project, user=volunteer)
    member_role_change(project=project, membership_id=vic.pk, role=Role.ADMIN)
    assert _roles(project)["vic"] == "admin"
    # With two admins, either may step down or leave.
    ada = Membership.objects.get(project=project, user=admin_user)
    member_role_change(project=project, membership_id=ada.pk, role=Role.VOLUNTEER)
    assert member_remove(project=project, membership_id=ada.pk) == admin_user
    assert "ada" not in _roles(project)


def test_last_admin_cannot_be_demoted_or_removed(project: Project, admin_user: User) -> None:
    ada = Membership.objects.get(project=project, user=admin_user)
    before = _roles(project)
    with pytest.raises(MemberError, match="last admin"):
        member_role_change(project=project, membership_id=ada.pk, role=Role.VOLUNTEER)
    with pytest.raises(MemberError, match="last admin"):
        member_remove(project=project, membership_id=ada.pk)
    assert _roles(project) == before


def test_member_of_another_project_is_refused(project: Project, admin_user: User) -> None:
    from projects.services import project_create

    other = project_create(name="Other", created_by=admin_user)
    foreign = Membership.objects.get(project=other)
    with pytest.raises(MemberError, match="not part of project"):
        member_remove(project=project, membership_id=foreign.pk)
    assert Membership.objects.filter(pk=foreign.pk).exists()


def test_removed_volunteer_keeps_their_labels(ingested_project: Project, volunteer: User) -> None:
    crop = ingested_project.crops.first()
    assert crop is not None
    labels_import(project=ingested_project, crop_ids=[crop.pk], user=volunteer, kind="unknown")
    vic = Membership.objects.get(project=ingested_project, user=volunteer)
    member_remove(project=ingested_project, membership_id=vic.pk)
    assert Label.objects.filter(user=volunteer).count() == 1
    assert Consensus.objects.filter(crop=crop).exists()


# --- Species ------------------------------------------------------------------------------


def test_add_and_rename_species(project: Project) -> None:
    fox = species_add(project=project, name="  red   fox ")
    paca = species_add(project=project, name="paca")
    assert (fox.name, fox.position, paca.position) == ("red fox", 0, 1)
    with pytest.raises(SpeciesError, match="species called 'Red Fox' already"):
        species_add(project=project, name="Red Fox")
    with pytest.raises(SpeciesError, match="needs a name"):
        species_add(project=project, name="   ")
    with pytest.raises(SpeciesError, match="species called 'paca' already"):
        species_rename(project=project, species_id=fox.pk, name="paca")
    renamed = species_rename(project=project, species_id=fox.pk, name="Red Fox")  # case only
    assert renamed.name == "Red Fox"
    assert sorted(project.species.values_list("name", flat=True)) == ["Red Fox", "paca"]


@pytest.fixture
def second_volunteer(django_user_model: type[User], project: Project) -> User:
    user = django_user_model.objects.create_user("val", password=PASSWORD)
    membership_set(project=project, user=user, role=Role.VOLUNTEER)
    return user


def test_merge_moves_labels_votes_and_predictions(
    ingested_project: Project,
    volunteer: User,
    second_volunteer: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    project = ingested_project
    project.votes_per_crop = 2
    project.save(update_fields=["votes_per_crop"])
    red_fox, agouti = project.species.get(name="red fox"), project.species.get(name="agouti")
    fox = species_add(project=project, name="fox")
    crops = list(project.crops.select_related("image").order_by("id"))
    fox_crops = [c for c in crops if "Red_Fox" in c.image.file_name]
    assert len(fox_crops) >= 3
    for crop in crops:
        truth = red_fox if crop in fox_crops else agouti
        # One fox crop both call "fox"; on another they disagree ("fox" against "red fox").
        first = fox if crop in fox_crops[:2] else truth
        second = fox if crop == fox_crops[0] else truth
        for user, species in ((volunteer, first), (second_volunteer, second)):
            labels_import(
                project=project,
                crop_ids=[crop.pk],
                user=user,
                kind="species",
                species_id=species.pk,
            )
    disputed = Consensus.objects.get(crop=fox_crops[1])
    assert (disputed.status, disputed.agreement) == ("review", 0.5)
    assert Consensus.objects.get(crop=fox_crops[0]).species == fox
    classifier = classifier_retrain(project_id=project.pk)
    assert classifier is not None and classifier.n_classes == 3
    # Make sure some machine labels name "fox", whatever the small classifier predicted.
    Prediction.objects.filter(classifier=classifier, crop=fox_crops[0]).update(species=fox)
    event = EventPrediction.objects.filter(classifier=classifier).first()
    assert event is not None
    EventPrediction.objects.filter(pk=event.pk).update(species=fox)
    n_predictions = Prediction.objects.filter(classifier=classifier).count()
    n_events = EventPrediction.objects.filter(classifier=classifier).count()
    fox_labels = Label.objects.filter(species=fox).count()
    red_labels = Label.objects.filter(species=red_fox).count()
    moved_predictions = Prediction.objects.filter(species=fox).count()
    red_predictions = Prediction.objects.filter(species=red_fox).count()
    assert moved_predictions >= 1 and EventPrediction.objects.filter(species=fox).exists()
    assert fox_labels == 3

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = species_merge(project=project, source_id=fox.pk, target_id=red_fox.pk)
    assert len(callbacks) == 1  # the retrain
    assert (report.source, report.target, report.labels) == ("fox", red_fox, 3)
    assert not Species.objects.filter(pk=fox.pk).exists()
    # Labels follow; none is lost.
    assert Label.objects.filter(species=red_fox).count() == red_labels + fox_labels
    assert Label.objects.filter(project=project).count() == 2 * len(crops)
    # The disagreement is gone: both votes now say red fox.
    resolved = Consensus.objects.get(crop=fox_crops[1])
    assert (resolved.status, resolved.species, resolved.agreement) == ("done", red_fox, 1.0)
    assert Consensus.objects.get(crop=fox_crops[0]).species == red_fox
    assert not Consensus.objects.filter(project=project, status="review").exists()
    # Machine labels follow too (deleting the species would have deleted them).
    assert Prediction.objects.filter(classifier=classifier).count() == n_predictions
    assert Prediction.objects.filter(species=red_fox).count() == red_predictions + moved_predictions
    assert EventPrediction.objects.filter(classifier=classifier).count() == n_events
    assert not EventPrediction.objects.filter(species_id=fox.pk).exists()
    # The queued retrain is not skipped as "nothing new" (the training set's digest changed):
    # it trains on two species.
    retrained = classifier_retrain(project_id=project.pk)
    assert retrained is not None and retrained.number == 2 and retrained.n_classes == 2


def test_merge_refusals_change_nothing(project: Project, admin_user: User) -> None:
    from projects.services import project_create

    fox = species_add(project=project, name="fox")
    other = species_add(project=project_create(name="Other", created_by=admin_user), name="x")
    with pytest.raises(SpeciesError, match="two different species"):
        species_merge(project=project, source_id=fox.pk, target_id=fox.pk)
    with pytest.raises(SpeciesError, match="not in project"):
        species_merge(project=project, source_id=fox.pk, target_id=other.pk)
    assert Species.objects.filter(pk=fox.pk).exists() and Species.objects.filter(pk=other.pk)


# --- Pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["volunteer", "ecologist", "outsider"])
def test_only_admins_manage_members_and_species(
    who: str, project: Project, volunteer: User, ecologist: User, outsider: User
) -> None:
    user = {"volunteer": volunteer, "ecologist": ecologist, "outsider": outsider}[who]
    client = _client(user)
    fox = species_add(project=project, name="fox")
    paca = species_add(project=project, name="paca")
    ada = Membership.objects.get(project=project, role=Role.ADMIN)
    slug = project.slug
    before = (_roles(project), sorted(project.species.values_list("name", flat=True)))
    assert client.get(reverse("members", args=[slug])).status_code == 404
    assert client.get(reverse("species", args=[slug])).status_code == 404
    posts = [
        (reverse("invitation_create", args=[slug]), {"role": "admin", "days": 7, "max_uses": 1}),
        (reverse("member_role", args=[slug, ada.pk]), {"role": "volunteer"}),
        (reverse("member_remove", args=[slug, ada.pk]), {}),
        (reverse("species_add", args=[slug]), {"name": "ocelot"}),
        (reverse("species_rename", args=[slug, fox.pk]), {"name": "vixen"}),
        (reverse("species_merge", args=[slug]), {"source": fox.pk, "target": paca.pk}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    assert (_roles(project), sorted(project.species.values_list("name", flat=True))) == before
    assert not project.invitations.exists()  # type: ignore[attr-defined]


def test_admin_manages_members_from_the_page(
    project: Project, admin_user: User, outsider: User, volunteer: User
) -> None:
    client = _client(admin_user)
    slug = project.slug
    page = client.get(reverse("members", args=[slug]))
    assert page.status_code == 200 and 'data-username="vic"' in page.text
    membership_set(project=project, user=outsider, role=Role.ECOLOGIST)
    ada = Membership.objects.get(project=project, user=admin_user)
    demote = client.post(reverse("member_role", args=[slug, ada.pk]), {"role": "volunteer"})
    assert demote.status_code == 400 and "last admin" in demote.text
    remove = client.post(reverse("member_remove", args=[slug, ada.pk]))
    assert remove.status_code == 400 and "last admin" in remove.text
    vic = Membership.objects.get(project=project, user=volunteer)
    client.post(reverse("member_role", args=[slug, vic.pk]), {"role": "ecologist"})
    client.post(reverse("member_remove", args=[slug, Membership.objects.get(user=outsider).pk]))
    assert _roles(project) == {"ada": "admin", "vic": "ecologist", "eco": "ecologist"}


def test_admin_manages_species_from_the_page(project: Project, admin_user: User) -> None:
    client = _client(admin_user)
    slug = project.slug
    client.post(reverse("species_add", args=[slug]), {"name": "fox"})
    client.post(reverse("species_add", args=[slug]), {"name": "red fox"})
    taken = client.post(reverse("species_add", args=[slug]), {"name": "Fox"})
    assert taken.status_code == 400 and "species called &#x27;Fox&#x27; already" in taken.text
    fox, red = project.species.get(name="fox"), project.species.get(name="red fox")
    page = client.get(reverse("species", args=[slug]))
    assert 'data-species="fox"' in page.text and "Merge two species" in page.text
    same = client.post(reverse("species_merge", args=[slug]), {"source": fox.pk, "target": fox.pk})
    assert same.status_code == 400 and "two different species" in same.text
    merged = client.post(
        reverse("species_merge", args=[slug]), {"source": fox.pk, "target": red.pk}, follow=True
    )
    assert "&#x27;fox&#x27; merged into &#x27;red fox&#x27;: 0 labels moved." in merged.text
    renamed = client.post(
        reverse("species_rename", args=[slug, red.pk]), {"name": "Vulpes vulpes"}, follow=True
    )
    assert "Species renamed to &#x27;Vulpes vulpes&#x27;" in renamed.text
    assert list(project.species.values_list("name", flat=True)) == ["Vulpes vulpes"]


# --- attributes -------------------------------------------------------------------------------


def _attributes(project: Project) -> list[tuple[str, str]]:
    return list(project.attributes.values_list("name", "key"))


def test_admin_adds_renames_and_removes_attributes_from_the_page(
    project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    slug = project.slug
    page = client.get(reverse("species", args=[slug]))
    assert 'data-attribute="young present"' in page.text and "<kbd>y</kbd>" in page.text
    added = client.post(
        reverse("attribute_add", args=[slug]), {"name": " Vigilant ", "key": "V"}, follow=True
    )
    assert "Attribute &#x27;Vigilant&#x27; added (key v)." in added.text
    vigilant = project.attributes.get(name="Vigilant")
    assert (vigilant.key, vigilant.position) == ("v", 6)
    saved = client.post(
        reverse("attribute_update", args=[slug, vigilant.pk]),
        {"name": "alert", "key": "a"},
        follow=True,
    )
    assert "Attribute saved: &#x27;alert&#x27; (key a)." in saved.text
    gone = client.post(reverse("attribute_remove", args=[slug, vigilant.pk]), follow=True)
    assert "Attribute &#x27;alert&#x27; removed." in gone.text
    assert _attributes(project)[-1] == ("young present", "y")


@pytest.mark.parametrize(
    "name,key,message",
    [
        ("alert", "n", "taken by the labelling page"),
        ("alert", "1", "taken by the labelling page"),
        ("alert", "q", "is &#x27;standing&#x27;&#x27;s already"),
        ("Standing", "v", "an attribute called &#x27;Standing&#x27; already"),
        ("alert", "!", "one letter or digit"),
        ("   ", "v", "This field is required"),
    ],
)
def test_attribute_refusals_change_nothing(
    project: Project, admin_user: User, name: str, key: str, message: str
) -> None:
    before = _attributes(project)
    response = _client(admin_user).post(
        reverse("attribute_add", args=[project.slug]), {"name": name, "key": key}
    )
    assert response.status_code == 400 and message in response.text, response.text[-2000:]
    assert _attributes(project) == before


def test_an_attribute_a_label_ticked_is_kept(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    eating = project.attributes.get(name="eating")
    crop = project.crops.order_by("id").first()
    assert crop is not None
    labels_import(
        project=project,
        crop_ids=[crop.pk],
        user=volunteer,
        kind="species",
        species_id=project.species.get(name="agouti").pk,
        attributes=[eating.pk],
    )
    client = _client(admin_user)
    refused = client.post(reverse("attribute_remove", args=[project.slug, eating.pk]))
    assert refused.status_code == 400 and "1 label ticked &#x27;eating&#x27;" in refused.text
    assert project.attributes.filter(pk=eating.pk).exists()
    # Another project's attribute is not this page's to change.
    other = project_create(name="Other traps", created_by=admin_user)
    foreign = other.attributes.get(name="eating")
    response = client.post(
        reverse("attribute_update", args=[project.slug, foreign.pk]), {"name": "x", "key": "v"}
    )
    assert response.status_code == 400 and "is not in project" in response.text
    assert other.attributes.get(pk=foreign.pk).name == "eating"


def test_only_admins_manage_attributes(
    project: Project, volunteer: User, ecologist: User, outsider: User
) -> None:
    attribute = project.attributes.get(name="standing")
    for user in (volunteer, ecologist, outsider):
        client = _client(user)
        for name, args in (
            ("attribute_add", [project.slug]),
            ("attribute_update", [project.slug, attribute.pk]),
            ("attribute_remove", [project.slug, attribute.pk]),
        ):
            response = client.post(reverse(name, args=args), {"name": "x", "key": "v"})
            assert response.status_code == 404
    assert _attributes(project)[0] == ("standing", "q") and project.attributes.count() == 6
