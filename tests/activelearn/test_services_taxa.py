"""Higher-taxon answers on a small real project: they train nothing, stay labelled, and agree
with the species below them in the consensus."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from activelearn.models import ClassifierVersion, Consensus, Prediction
from activelearn.selectors import labels_for_training
from activelearn.services import classifier_retrain, labels_import, round_start
from activelearn.taxa import HIGHER_TAXON
from projects.models import Project, Species, TaxonRank
from tests.conftest import label_by_truth

pytestmark = pytest.mark.django_db


def test_a_higher_taxon_label_trains_nothing_but_stays_labelled(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    mammal = Species.objects.create(project=project, name="mammal", rank=TaxonRank.CLASS)
    crops = list(project.crops.select_related("image").order_by("id"))
    unsure, sure, rest = crops[:3], crops[3:-2], crops[-2:]
    label_by_truth(project, volunteer, sure)
    labels_import(
        project=project,
        crop_ids=[c.pk for c in unsure],
        user=volunteer,
        kind="species",
        species_id=mammal.pk,
    )
    # The humans' answer is kept: the crops are decided as "mammal".
    assert Consensus.objects.filter(species=mammal, status="done").count() == len(unsure)
    latest = labels_for_training(project=project)
    assert {latest[c.pk][0] for c in unsure} == {HIGHER_TAXON}
    assert {latest[c.pk][0] for c in sure} == {"species"}

    classifier = classifier_retrain(project_id=project.pk)
    assert classifier is not None
    assert (classifier.n_labels, classifier.n_classes) == (len(sure), 2)
    # The classifier never predicts a higher taxon, not even for the crops labelled with one.
    assert not Prediction.objects.filter(classifier=classifier, species=mammal).exists()
    assert ClassifierVersion.objects.count() == 1

    # A person answered them: selection does not serve them again as unlabelled.
    round_ = round_start(project=project, user=admin_user, strategy="random", size=100)
    assert set(round_.items.values_list("crop_id", flat=True)) == {c.pk for c in rest}

    # Making "mammal" a species turns those labels into training examples (a new digest).
    Species.objects.filter(pk=mammal.pk).update(rank=TaxonRank.SPECIES)
    again = classifier_retrain(project_id=project.pk)
    assert again is not None and again != classifier
    assert (again.n_labels, again.n_classes) == (len(sure) + len(unsure), 3)


def test_a_higher_taxon_vote_agrees_with_a_species_below_it(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    project.votes_per_crop = 2
    project.save(update_fields=["votes_per_crop"])
    mammal = Species.objects.create(project=project, name="mammal", rank=TaxonRank.CLASS)
    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    Species.objects.filter(pk=fox.pk).update(parent=mammal)
    first, second = project.crops.order_by("id")[:2]
    for crop, species in ((first, fox), (second, agouti)):
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=volunteer,
            kind="species",
            species_id=mammal.pk,
        )
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=admin_user,
            kind="species",
            species_id=species.pk,
        )
    decided = {c.crop_id: (c.status, c.species_id) for c in Consensus.objects.all()}
    assert decided[first.pk] == ("done", fox.pk)  # "mammal" agrees with a red fox
    # The agouti has no parent given: "mammal" is another answer, the crop goes to review.
    assert decided[second.pk] == ("review", mammal.pk)


def test_a_merged_taxons_children_follow_the_target_where_it_ranks_above_them(
    project: Project,
) -> None:
    from activelearn.services import species_merge

    rodents = Species.objects.create(project=project, name="rodents", rank=TaxonRank.ORDER)
    rodentia = Species.objects.create(project=project, name="Rodentia", rank=TaxonRank.ORDER)
    mus = Species.objects.create(project=project, name="Mus", rank="genus", parent=rodents)
    mouse = Species.objects.create(project=project, name="mouse", parent=rodents)
    species_merge(project=project, source_id=rodents.pk, target_id=rodentia.pk)
    assert set(rodentia.children.values_list("name", flat=True)) == {"Mus", "mouse"}
    # Merged into a genus, an order's genus child cannot follow: it is left at the top.
    rat = Species.objects.create(project=project, name="rat", parent=rodentia)
    species_merge(project=project, source_id=rodentia.pk, target_id=mus.pk)
    mus.refresh_from_db()
    mouse.refresh_from_db()
    rat.refresh_from_db()
    assert (mus.parent, mouse.parent, rat.parent) == (None, mus, mus)
