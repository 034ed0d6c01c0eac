"""The labelling page, grid mode, undo and review, as each role; query counts stay flat."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from activelearn.models import ClassifierVersion, Consensus, Label, Prediction, Round, RoundCrop
from activelearn.services import classifier_retrain, label_submit, labels_import, round_start
from detector.models import Crop, Detection
from embeddings.models import EmbeddingVersion
from projects.models import Image, Project, Species
from tests.conftest import label_by_truth, serve

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def open_round(ingested_project: Project, admin_user: User) -> Round:
    return round_start(project=ingested_project, user=admin_user, strategy="random", size=6)


def _order(round_: Round) -> list[int]:
    return list(round_.items.order_by("position").values_list("crop_id", flat=True))


@pytest.mark.parametrize(
    "role,expected",
    [("admin", 200), ("volunteer", 200), ("ecologist", 404), ("outsider", 404)],
)
def test_labelling_pages_by_role(
    role: str,
    expected: int,
    open_round: Round,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    outsider: User,
) -> None:
    user = {"admin": admin_user, "volunteer": volunteer, "ecologist": ecologist}.get(role, outsider)
    client = _client(user)
    slug = ingested_project.slug
    for name in ("label", "label_grid"):
        assert client.get(reverse(name, args=[slug])).status_code == expected
    assert client.post(reverse("label_undo", args=[slug])).status_code in (
        (302,) if expected == 200 else (404,)
    )
    review_status = client.get(reverse("review", args=[slug])).status_code
    assert review_status == (200 if role == "admin" else 404)


def test_page_shows_frequent_species_then_machine_top5(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops[:6])
    round_start(project=ingested_project, user=admin_user, strategy="random", size=3)
    text = _client(volunteer).get(reverse("label", args=[ingested_project.slug])).text
    assert "Frequent in this project" in text
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    page = _client(volunteer).get(reverse("label", args=[ingested_project.slug]))
    crop_id = int(re.search(r'name="crop_id" value="(\d+)"', page.text).group(1))  # type: ignore[union-attr]
    prediction = Prediction.objects.get(classifier=classifier, crop_id=crop_id)
    assert "Machine suggests" in page.text
    names = dict(ingested_project.species.values_list("id", "name"))
    for rank, (species_id, probability) in enumerate(prediction.top, start=1):
        assert f'value="species:{species_id}" data-key="{rank}"' in page.text
        assert f'{names[species_id]} <span class="confidence">{probability:.2f}</span>' in (
            page.text
        )


def test_page_shows_the_sequences_other_frames_and_progress(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    page = client.get(reverse("label", args=[ingested_project.slug])).text
    crop = Crop.objects.select_related("image").get(pk=_order(open_round)[0])
    others = Image.objects.filter(seq_id=crop.image.seq_id).exclude(pk=crop.image_id)
    assert others.exists()
    for image in others:
        assert reverse("image_file", args=[ingested_project.slug, image.pk]) in page
    assert "Round 1: <b>0 / 6</b> crops done" in page
    assert "My labels today: <b>0</b>" in page
    client.post(
        reverse("label", args=[ingested_project.slug]), {"crop_id": crop.pk, "choice": "unknown"}
    )
    page = client.get(reverse("label", args=[ingested_project.slug])).text
    assert "Round 1: <b>1 / 6</b> crops done" in page and "My labels today: <b>1</b>" in page
    assert f"on crop {crop.pk}" in page  # the undo line names the last label


def test_undo_shows_the_crop_again(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    first = _order(open_round)[0]
    serve(ingested_project, volunteer, [first])
    url = reverse("label", args=[ingested_project.slug])
    client.post(url, {"crop_id": first, "choice": "not_animal"})
    assert f'name="crop_id" value="{first}"' not in client.get(url).text
    response = client.post(reverse("label_undo", args=[ingested_project.slug]), follow=True)
    assert f"Undone: Not an animal on crop {first}" in response.text
    assert f'name="crop_id" value="{first}"' in response.text
    assert Label.objects.get().undone_at is not None and not Consensus.objects.exists()


def test_undo_with_nothing_to_undo_says_so(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    response = _client(volunteer).post(
        reverse("label_undo", args=[ingested_project.slug]), follow=True
    )
    assert "Nothing undone: nothing to undo" in response.text


def test_grid_groups_by_prediction_and_batch_labels(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops[:4])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    # No audit crop: those are shown without a prediction (tests/annotator/test_views_audit.py).
    ingested_project.audit_share = 0.0
    ingested_project.save(update_fields=["audit_share"])
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=7)
    client = _client(volunteer)
    url = reverse("label_grid", args=[ingested_project.slug])
    page = client.get(url).text
    shown = [int(c) for c in re.findall(r'name="crop_ids" value="(\d+)"', page)]
    assert sorted(shown) == sorted(_order(open_round))
    predicted = dict(
        Prediction.objects.filter(classifier=classifier, crop_id__in=shown).values_list(
            "crop_id", "species__name"
        )
    )
    # Each group heading is a predicted species, followed by exactly its crops.
    for name in set(predicted.values()):
        section = page.split(f"<h2>{name} ")[1].split("</section>")[0]
        in_group = [int(c) for c in re.findall(r'name="crop_ids" value="(\d+)"', section)]
        assert sorted(in_group) == sorted(c for c, n in predicted.items() if n == name)
    fox = ingested_project.species.get(name="red fox")
    response = client.post(url, {"crop_ids": shown[:3], "choice": f"species:{fox.pk}"}, follow=True)
    assert "Labelled 3 crops." in response.text
    stored = Consensus.objects.filter(crop_id__in=shown[:3], status="done", species=fox)
    assert stored.count() == 3


@pytest.mark.parametrize(
    "data,message",
    [
        ({"choice": "unknown"}, "select at least one crop"),
        ({"crop_ids": ["abc"], "choice": "unknown"}, "positive integers"),
        ({"crop_ids": [str(i) for i in range(1, 30)], "choice": "unknown"}, "at most 25"),
        ({"crop_ids": ["1"], "choice": "species:x"}, "unknown choice"),
    ],
)
def test_grid_refuses_bad_input(
    data: dict[str, object],
    message: str,
    open_round: Round,
    ingested_project: Project,
    volunteer: User,
) -> None:
    response = _client(volunteer).post(
        reverse("label_grid", args=[ingested_project.slug]), data, follow=True
    )
    assert message in response.text and not Label.objects.exists()


def test_grid_refuses_a_crop_of_another_project(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    other = Project.objects.create(name="Other", slug="other")
    response = _client(volunteer).post(
        reverse("label_grid", args=[ingested_project.slug]),
        {"crop_ids": [_order(open_round)[0], 987654], "choice": "unknown"},
        follow=True,
    )
    assert "crop 987654 is not part of project" in response.text
    assert other.pk and not Label.objects.exists()


def test_admin_reviews_a_dispute(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    ingested_project.votes_per_crop = 2
    ingested_project.save()
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    crop_id = _order(open_round)[0]
    fox, agouti = (
        ingested_project.species.get(name="red fox"),
        ingested_project.species.get(name="agouti"),
    )
    for user, species in ((volunteer, fox), (admin_user, agouti)):
        serve(ingested_project, user, [crop_id])
        label_submit(
            project=ingested_project,
            crop_id=crop_id,
            user=user,
            kind="species",
            species_id=species.pk,
        )
    client = _client(admin_user)
    url = reverse("review", args=[ingested_project.slug])
    page = client.get(url).text
    assert f'id="dispute-{crop_id}"' in page and "agreement <b>0.50</b> of 2 votes" in page
    assert f"{volunteer.username}: red fox" in page
    response = client.post(url, {"crop_id": crop_id, "choice": f"species:{agouti.pk}"}, follow=True)
    assert f"Crop {crop_id} decided." in response.text
    row = Consensus.objects.get(crop_id=crop_id)
    assert (row.status, row.species, row.reviewed) == ("done", agouti, True)
    assert f'id="dispute-{crop_id}"' not in response.text


def _synthetic_project(name: str, admin_user: User, volunteer: User, n_crops: int) -> Project:
    """A project whose open round holds ``n_crops`` crops, with predictions, labels and a
    dispute: rows only (the pages do not read image files)."""
    from projects.services import membership_set, project_create

    project = project_create(name=name, created_by=admin_user, seed=3)
    membership_set(project=project, user=volunteer, role="volunteer")
    project.votes_per_crop = 2
    project.save()
    species = [project.species.create(name=n, position=i) for i, n in enumerate("abcdef")]
    images = Image.objects.bulk_create(
        Image(
            project=project,
            path=f"/nonexistent/{i}.jpg",
            file_name=f"{i}.jpg",
            width=100,
            height=100,
            seq_id=f"seq-{i // 3}",
            frame_num=i % 3,
        )
        for i in range(n_crops)
    )
    detections = Detection.objects.bulk_create(
        Detection(image=im, x=0.1, y=0.1, w=0.2, h=0.2, confidence=0.9, detector_version="t")
        for im in images
    )
    crops = Crop.objects.bulk_create(
        Crop(project=project, image=d.image, detection=d, file="c.jpg", padding=0.1)
        for d in detections
    )
    version = EmbeddingVersion.objects.create(
        project=project,
        number=1,
        backbone="t",
        weights="none",
        weights_source="t",
        pretrained=False,
        seed=1,
        directory="v1",
        status=EmbeddingVersion.Status.READY,
        activated_at=timezone.now(),
    )
    new_round = Round.objects.create(
        project=project,
        number=1,
        strategy="random",
        size=n_crops,
        seed=1,
        embedding_version=version,
        created_by=admin_user,
    )
    RoundCrop.objects.bulk_create(
        RoundCrop(round=new_round, crop=c, position=i) for i, c in enumerate(crops)
    )
    classifier = ClassifierVersion.objects.create(
        project=project,
        number=1,
        embedding_version=version,
        last_label_id=0,
        n_labels=0,
        n_classes=6,
        seed=1,
        path="x",
    )
    rng = np.random.default_rng(0)
    Prediction.objects.bulk_create(
        Prediction(
            crop=c,
            classifier=classifier,
            species=species[int(k)],
            confidence=0.5,
            top=[[species[(int(k) + j) % 6].pk, 0.5 / (j + 1)] for j in range(5)],
        )
        for c, k in zip(crops, rng.integers(0, 6, size=n_crops), strict=True)
    )
    for user, sp in ((volunteer, species[0]), (admin_user, species[1])):
        labels_import(
            project=project, crop_ids=[crops[-1].pk], user=user, kind="species", species_id=sp.pk
        )
    labels_import(project=project, crop_ids=[crops[-2].pk], user=volunteer, kind="unknown")
    return project


@pytest.mark.parametrize("view", ["label", "label_grid", "review"])
def test_queries_do_not_grow_with_crops(view: str, admin_user: User, volunteer: User) -> None:
    """The same number of queries with 10 and with 1,000 crops in the open round."""
    counts = []
    for n_crops in (10, 1000):
        project = _synthetic_project(f"P{n_crops}", admin_user, volunteer, n_crops)
        client = _client(admin_user)
        url = reverse(view, args=[project.slug])
        per_request = []
        for _ in range(2):  # the first request claims crops, the second finds them held
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200
            per_request.append(len(queries))
        counts.append(per_request)
    print(f"{view}: queries per request at 10 and 1,000 crops: {counts}")
    # Bounded: the big round never needs more queries than the small one (the small one can
    # need one claim query more, when the volunteer holds fewer crops than a page shows).
    assert counts[0][0] == counts[1][0] and max(counts[1]) <= max(counts[0]), counts


def test_admin_raises_the_votes_and_decided_crops_wait_for_more(
    open_round: Round, ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    first = _order(open_round)[0]
    labels_import(project=ingested_project, crop_ids=[first], user=volunteer, kind="unknown")
    assert Consensus.objects.get(crop_id=first).status == "done"
    client = _client(admin_user)
    url = reverse("consensus_settings", args=[ingested_project.slug])
    response = client.post(url, {"votes_per_crop": 2, "agreement_threshold": 75}, follow=True)
    assert "Consensus settings saved; 1 labelled crops re-decided." in response.text
    assert "Each crop needs <b>2</b> votes" in response.text
    ingested_project.refresh_from_db()
    assert (ingested_project.votes_per_crop, ingested_project.agreement_threshold) == (2, 0.75)
    assert Consensus.objects.get(crop_id=first).status == "pending"
    bad = client.post(url, {"votes_per_crop": 0, "agreement_threshold": 75}, follow=True)
    assert "Consensus settings not saved" in bad.text
    ingested_project.refresh_from_db()
    assert ingested_project.votes_per_crop == 2
    assert (
        _client(volunteer).post(url, {"votes_per_crop": 1, "agreement_threshold": 50}).status_code
        == 404
    )


def test_undo_after_the_round_closed_says_where_the_crop_goes(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=1)
    (crop_id,) = _order(open_round)
    serve(ingested_project, volunteer, [crop_id])
    client = _client(volunteer)
    client.post(
        reverse("label", args=[ingested_project.slug]), {"crop_id": crop_id, "choice": "unknown"}
    )
    assert Round.objects.get().status == Round.Status.CLOSED
    response = client.post(reverse("label_undo", args=[ingested_project.slug]), follow=True)
    assert "Its round has closed, so it goes back to the pool for a later round." in response.text
    assert not Consensus.objects.exists() and Label.objects.get().undone_at is not None


def test_a_resent_label_form_stores_one_label(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    page = client.get(url).text
    key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page)
    assert key is not None
    crop_id = _order(open_round)[0]
    data = {"crop_id": crop_id, "choice": "unknown", "idempotency_key": key.group(1)}
    assert client.post(url, data).status_code == client.post(url, data).status_code == 302
    assert Label.objects.filter(crop_id=crop_id).count() == 1
    assert key.group(1) not in client.get(url).text  # every page gets a fresh key


def test_label_page_refuses_bad_labels_with_400_and_changes_nothing(
    open_round: Round,
    ingested_project: Project,
    volunteer: User,
    foreign: tuple[Project, Species, Crop],
) -> None:
    other, wolf, alien_crop = foreign
    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    crop_id = _order(open_round)[0]
    serve(ingested_project, volunteer, _order(open_round))
    fox = ingested_project.species.get(name="red fox")
    assert client.post(url, {"crop_id": crop_id, "choice": f"species:{fox.pk}"}).status_code == 302
    before = (list(Label.objects.values()), list(Consensus.objects.values()))
    name = ingested_project.name
    cases = [
        ({"crop_id": crop_id, "choice": f"species:{wolf.pk}"}, f"species {wolf.pk} is not in"),
        (
            {"crop_id": crop_id, "choice": "species:999999"},
            f"species 999999 is not in project {name!r}",
        ),
        (
            {"crop_id": alien_crop.pk, "choice": f"species:{fox.pk}"},
            f"crop {alien_crop.pk} is not part of project {name!r}",
        ),
        ({"crop_id": alien_crop.pk, "choice": "unknown"}, f"crop {alien_crop.pk} is not part"),
        ({"crop_id": crop_id, "choice": "<b>cat</b>"}, "unknown choice '<b>cat</b>'"),
        ({"choice": "unknown"}, "crop_id"),
    ]
    for data, message in cases:
        response = client.post(url, data)
        assert response.status_code == 400, data
        assert response["Content-Type"].startswith("text/plain")  # the reason is never HTML
        assert response.content.decode().startswith("Label refused: ") and message in (
            response.content.decode()
        ), data
    assert (list(Label.objects.values()), list(Consensus.objects.values())) == before
    assert other.pk and not alien_crop.labels.exists()


# --- attributes -------------------------------------------------------------------------------


def test_label_page_shows_attribute_toggles_with_their_keys(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    page = _client(volunteer).get(reverse("label", args=[ingested_project.slug])).text
    for attribute in ingested_project.attributes.all():
        assert (
            f'value="{attribute.pk}" data-attribute-key="{attribute.key}"> '
            f"<kbd>{attribute.key}</kbd> {attribute.name}" in page
        )
    # No attribute key is one of the page's own keys.
    page_keys = set(re.findall(r'data-key="([^"]+)"', page))
    assert page_keys and not page_keys & set(
        ingested_project.attributes.values_list("key", flat=True)
    )
    assert 'name="attributes_shown" value="1"' in page


def test_ticked_attributes_are_stored_with_a_species_label_only(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    fox = ingested_project.species.get(name="red fox")
    ids = dict(ingested_project.attributes.values_list("name", "id"))
    first, second, third = _order(open_round)[:3]
    serve(ingested_project, volunteer, _order(open_round)[:4])
    ticked = [ids["moving"], ids["young present"]]
    shown = {"attributes_shown": "1"}
    client.post(
        url, {"crop_id": first, "choice": f"species:{fox.pk}", "attributes": ticked, **shown}
    )
    client.post(url, {"crop_id": second, "choice": f"species:{fox.pk}", **shown})
    # Ticked, then "not an animal": an empty crop has no behaviour.
    client.post(url, {"crop_id": third, "choice": "not_animal", "attributes": ticked, **shown})
    stored = dict(Label.objects.values_list("crop_id", "attributes"))
    assert stored == {first: sorted(ticked), second: [], third: None}
    refused = client.post(
        url,
        {"crop_id": _order(open_round)[3], "choice": f"species:{fox.pk}", "attributes": ["x"]},
    )
    assert refused.status_code == 400 and "attribute ids must be positive integers" in refused.text
    assert Label.objects.count() == 3


def test_grid_label_carries_the_ticked_attributes(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    url = reverse("label_grid", args=[ingested_project.slug])
    page = client.get(url).text
    standing = ingested_project.attributes.get(name="standing")
    assert f'value="{standing.pk}" data-attribute-key="q">' in page
    agouti = ingested_project.species.get(name="agouti")
    crops = _order(open_round)[:2]
    client.post(
        url,
        {
            "crop_ids": crops,
            "choice": f"species:{agouti.pk}",
            "attributes": [standing.pk],
            "attributes_shown": "1",
        },
    )
    assert list(Label.objects.values_list("attributes", flat=True)) == [[standing.pk]] * 2
    assert list(Consensus.objects.values_list("attributes", flat=True)) == [[standing.pk]] * 2
