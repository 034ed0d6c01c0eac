"""The explore page, its verification and the API's filtered crop list."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from activelearn.models import Consensus, Label, LabelOrigin, Prediction
from benchmarks.export_stream import _project as bench_project
from detector.models import Crop
from projects.models import Image, Membership, Project, Role, Species
from tests.annotator.explore_world import explore_world

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _url(project: Project, name: str = "explore") -> str:
    return reverse(name, args=[project.slug])


# A query string's parameters (mixed ints, strings and lists, as Client.get takes them).
Params = dict[str, Any]


def _shown(response: Any) -> list[int]:
    """Crop ids on an explore page, in order."""
    return [int(m) for m in re.findall(r'data-crop="(\d+)"', response.content.decode())]


def test_ecologist_filters_and_pages_the_crops(project: Project, ecologist: User) -> None:
    _, crops = explore_world(project, n=12)
    fox = Species.objects.get(project=project, name="red fox")
    client = _client(ecologist)
    response = client.get(_url(project), {"species": str(fox.pk), "source": "auto"})
    assert response.status_code == 200
    # Even crops are foxes; confidence >= 0.8 from the 8th crop on (0.5 + 0.49 i / 11).
    expected = [c.pk for i, c in enumerate(crops) if i % 2 == 0 and 0.5 + 0.49 * i / 11 >= 0.8]
    assert _shown(response) == expected
    low_first = client.get(
        _url(project), {"species": str(fox.pk), "source": ["auto", "machine"], "sort": "confidence"}
    )
    assert _shown(low_first) == [c.pk for i, c in enumerate(crops) if i % 2 == 0]
    assert b"Confirm machine label" in response.content


def test_pages_follow_the_cursor(
    project: Project, ecologist: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, crops = explore_world(project, n=7)
    monkeypatch.setattr("annotator.views.explore.PAGE_SIZE", 3)
    client = _client(ecologist)
    seen: list[int] = []
    url = _url(project) + "?sort=-confidence"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += _shown(response)
        found = re.search(r'<a href="([^"]*)" id="next-page"', response.content.decode())
        url = _url(project) + found.group(1).replace("&amp;", "&") if found else ""
    assert seen == [c.pk for c in reversed(crops)]


def test_volunteers_look_only_when_the_admin_lets_them(
    project: Project, admin_user: User, volunteer: User, outsider: User
) -> None:
    _, crops = explore_world(project, n=3)
    assert _client(volunteer).get(_url(project)).status_code == 404
    assert _client(outsider).get(_url(project)).status_code == 404
    assert _client(volunteer).post(_url(project, "explore_settings"), {}).status_code == 404
    response = _client(admin_user).post(
        _url(project, "explore_settings"), {"explore_volunteers": "on"}
    )
    assert response.status_code == 302
    page = _client(volunteer).get(_url(project))
    assert page.status_code == 200
    assert b"Confirm machine label" not in page.content and b"verify-form" not in page.content
    refused = _client(volunteer).post(
        _url(project, "explore_verify"), {"crop": [crops[0].pk], "action": "not_animal"}
    )
    assert refused.status_code == 404
    assert not Label.objects.exists()
    crop_page = _client(volunteer).get(reverse("explore_crop", args=[project.slug, crops[0].pk]))
    assert crop_page.status_code == 200


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"confidence_min": "abc"}, "confidence_min"),
        ({"confidence_min": "2"}, "confidence_min"),
        ({"confidence_min": "0.9", "confidence_max": "0.1"}, "Confidence from"),
        ({"source": "robot"}, "source"),
        ({"species": "999999"}, "species"),
        ({"round": "0"}, "round"),
        ({"date_from": "2024-13-01"}, "date_from"),
        ({"sort": "sideways"}, "sort"),
        ({"sort": "confidence", "cursor": "garbage"}, "cursor"),
    ],
)
def test_bad_filters_are_a_400_that_says_why(
    project: Project, ecologist: User, query: dict[str, str], says: str
) -> None:
    explore_world(project, n=2)
    response = _client(ecologist).get(_url(project), query)
    assert response.status_code == 400
    assert says in response.content.decode()


def test_bulk_correct_confirm_and_undo_are_recorded(project: Project, ecologist: User) -> None:
    _, crops = explore_world(project, n=6)
    agouti = Species.objects.get(project=project, name="agouti")
    client = _client(ecologist)
    back = "source=auto&cursor=abc"
    response = client.post(
        _url(project, "explore_verify"),
        {
            "crop": [crops[0].pk, crops[2].pk],
            "action": "correct",
            "species": agouti.pk,
            "back": back,
        },
    )
    assert response.status_code == 302 and response["Location"].endswith("?source=auto")
    labels = list(Label.objects.filter(crop__in=[crops[0], crops[2]]))
    assert {(lab.origin, lab.user_id, lab.species_id) for lab in labels} == {
        (LabelOrigin.VERIFIED, ecologist.pk, agouti.pk)
    }
    assert len({lab.decision for lab in labels}) == 1
    assert set(
        Consensus.objects.filter(status="done", species=agouti).values_list("crop_id", flat=True)
    ) == {crops[0].pk, crops[2].pk}
    # Confirm the rest of the page (every crop shown), then undo the correction.
    shown = [c.pk for c in crops[3:]]
    client.post(_url(project, "explore_verify"), {"shown": shown, "action": "confirm_page"})
    assert Consensus.objects.filter(status="done").count() == 2 + len(shown)
    page = client.get(_url(project))
    assert b"Undo" in page.content
    undo = client.post(_url(project, "explore_undo"), {"decision": str(labels[0].decision)})
    assert undo.status_code == 302
    assert not Consensus.objects.filter(crop__in=[crops[0], crops[2]]).exists()
    assert Label.objects.filter(decision=labels[0].decision, undone_at__isnull=False).count() == 2
    again = client.post(_url(project, "explore_undo"), {"decision": str(labels[0].decision)})
    assert again.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"action": "confirm"},
        {"crop": ["x"], "action": "confirm"},
        {"crop": ["1"], "action": "explode"},
        {"crop": ["1"], "action": "correct"},
        {"crop": ["99999999"], "action": "not_animal"},
        {"crop": [str(2**63)], "action": "not_animal"},
    ],
)
def test_bad_verification_is_a_400_and_stores_nothing(
    project: Project, ecologist: User, body: dict[str, Any]
) -> None:
    explore_world(project, n=2)
    response = _client(ecologist).post(_url(project, "explore_verify"), body)
    assert response.status_code == 400
    assert b"Nothing verified" in response.content
    assert not Label.objects.exists()


def test_a_crop_of_another_project_is_refused(
    project: Project, ecologist: User, foreign: tuple[Project, Species, Crop]
) -> None:
    explore_world(project, n=2)
    _, _, crop = foreign
    response = _client(ecologist).post(
        _url(project, "explore_verify"), {"crop": [crop.pk], "action": "not_animal"}
    )
    assert response.status_code == 400
    assert not Label.objects.exists()


def test_the_crop_page_shows_its_image_with_every_box(project: Project, ecologist: User) -> None:
    _, crops = explore_world(project, n=2)
    response = _client(ecologist).get(reverse("explore_crop", args=[project.slug, crops[1].pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert text.count("<rect ") == 2
    assert 'class="box this"' in text and 'class="box inactive"' in text
    assert reverse("image_file", args=[project.slug, crops[1].image_id]) in text


def test_api_crop_list_takes_the_same_filters(project: Project, ecologist: User) -> None:
    _, crops = explore_world(project, n=12)
    fox = Species.objects.get(project=project, name="red fox")
    client = _client(ecologist)
    url = reverse("api-v1:crops_page", args=[project.slug])
    body = client.get(url, {"species": str(fox.pk), "source": "auto"}).json()
    page = client.get(_url(project), {"species": str(fox.pk), "source": "auto"})
    assert [row["crop_id"] for row in body["items"]] == _shown(page)
    assert {row["final_label"]["source"] for row in body["items"]} == {"auto"}
    ranged = client.get(url, {"confidence_min": "0.6", "confidence_max": "0.7"}).json()
    assert all(0.6 <= r["final_label"]["confidence"] <= 0.7 for r in ranged["items"])
    assert ranged["items"]
    event = client.get(url, {"event": "seq0"}).json()
    assert [r["crop_id"] for r in event["items"]] == [c.pk for c in crops[:3]]
    assert client.get(url, {"round": "1"}).json()["items"] == []


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        # What the description says (types, ranges): 422, naming the parameter.
        ({"source": "robot"}, 422, "source"),
        ({"species": "abc"}, 422, "species"),
        ({"confidence_min": "1.5"}, 422, "confidence_min"),
        ({"confidence_max": "nan"}, 422, "confidence_max"),
        ({"round": "-3"}, 422, "round"),
        ({"event": "x" * 300}, 422, "event"),
        # What only the project knows, or needs two filters: 400.
        ({"species": "999999"}, 400, "species"),
        ({"confidence_min": "0.9", "confidence_max": "0.1"}, 400, "Confidence from"),
        ({"event": "a\x00b"}, 400, "event"),
    ],
)
def test_api_bad_filters_are_refused_saying_which(
    project: Project, ecologist: User, query: dict[str, str], status: int, says: str
) -> None:
    explore_world(project, n=2)
    response = _client(ecologist).get(reverse("api-v1:crops_page", args=[project.slug]), query)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert says in detail
    if status == 400:
        assert detail.startswith("Invalid filter:")


def test_api_refuses_a_species_of_another_project(
    project: Project, ecologist: User, foreign: tuple[Project, Species, Crop]
) -> None:
    explore_world(project, n=2)
    _, wolf, _ = foreign
    url = reverse("api-v1:crops_page", args=[project.slug])
    response = _client(ecologist).get(url, {"species": str(wolf.pk)})
    assert response.status_code == 400 and "species" in response.json()["detail"]


def _query_counts(client: Client, slug: str, species_id: int) -> tuple[int, int, int]:
    """Queries of the explore page (unfiltered and 'verify species'), and of the API list."""
    out = []
    cases: tuple[tuple[str, Params], ...] = (
        (reverse("explore", args=[slug]), {}),
        (
            reverse("explore", args=[slug]),
            {"species": species_id, "source": ["auto", "machine"], "sort": "confidence"},
        ),
        (
            reverse("api-v1:crops_page", args=[slug]),
            {"species": species_id, "source": ["auto", "machine"], "confidence_min": "0.1"},
        ),
    )
    for url, query in cases:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, query)
        assert response.status_code == 200, response.content[:300]
        if "api" in url:
            assert response.json()["items"]
        else:
            assert _shown(response)
        out.append(len(queries))
    return out[0], out[1], out[2]


def test_queries_do_not_grow_with_the_crops(admin_user: User, ecologist: User) -> None:
    """10 crops and 100,000 crops (the benchmark's fast inserts): the same query counts."""
    rng = np.random.default_rng(0)
    counts = []
    for slug, n in (("ten", 10), ("many", 100_000)):
        bench_project(slug=slug, n_crops=n, admin=admin_user, rng=rng)
        project = Project.objects.get(slug=slug)
        Membership.objects.create(project=project, user=ecologist, role=Role.ECOLOGIST)
        # A species the machine predicts here, so that no page is empty (an empty page skips
        # the queries that load its rows' details).
        species_id = (
            Prediction.objects.filter(classifier__project=project, confidence__lt=0.8)
            .values_list("species_id", flat=True)
            .first()
        )
        assert species_id is not None
        client = _client(ecologist)
        counts.append(_query_counts(client, slug, species_id))
        assert project.crops.count() == n
    assert counts[0] == counts[1], counts


def test_images_without_capture_time_are_counted_and_filtered(
    project: Project, ecologist: User
) -> None:
    _, crops = explore_world(project, n=6)
    timed = [c.image_id for c in crops[:2]]
    Image.objects.filter(project=project).update(taken_at=None)
    Image.objects.filter(pk__in=timed).update(taken_at="2024-01-01T00:00:00Z")
    client = _client(ecologist)
    untimed = Image.objects.filter(project=project, taken_at__isnull=True).count()
    response = client.get(_url(project))
    assert f"({untimed} images without time)" in response.content.decode()
    only = client.get(_url(project), {"no_time": "on"})
    assert _shown(only) == [c.pk for c in crops if c.image_id not in timed]


def test_the_deployment_filter_shows_that_deployments_crops(
    ingested_project: Project, admin_user: User
) -> None:
    from projects.services_deployments import deployments_import

    deployments_import(
        project=ingested_project,
        text="deploymentID,latitude,longitude,deploymentStart,deploymentEnd,folder\n"
        "fox-ridge,1,2,2000-01-01T00:00:00Z,2030-01-01T00:00:00Z,images/Red_Fox\n",
    )
    response = _client(admin_user).get(_url(ingested_project), {"deployment": "fox-ridge"})
    assert response.status_code == 200
    fox = Crop.objects.filter(project=ingested_project, image__deployment__isnull=False)
    assert fox.exists()
    assert sorted(_shown(response)) == sorted(fox.values_list("pk", flat=True))
    refused = _client(admin_user).get(_url(ingested_project), {"deployment": "nowhere"})
    assert _shown(refused) == []
