"""The JSON API: every endpoint as each role, label submission, pagination, query counts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from activelearn.models import (
    ClassifierVersion,
    Consensus,
    CropClaim,
    Label,
    LabelKind,
    Prediction,
    Round,
)
from activelearn.selectors import round_open_get
from activelearn.services import (
    classifier_retrain,
    consensus_update,
    label_submit,
    round_start,
)
from annotator.api.services import api_token_create
from detector.models import Crop
from projects.models import Project, Species
from projects.services import project_create
from tests.conftest import hold, label_by_truth, serve

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def open_round(ingested_project: Project, admin_user: User) -> Round:
    return round_start(project=ingested_project, user=admin_user, strategy="k_center", size=5)


@pytest.fixture
def clients(
    admin_user: User, volunteer: User, ecologist: User, outsider: User
) -> dict[str, Client]:
    """A bearer-token client per role."""
    return {
        role: _bearer(user)
        for role, user in [
            ("admin", admin_user),
            ("volunteer", volunteer),
            ("ecologist", ecologist),
            ("outsider", outsider),
        ]
    }


def _bearer(user: User) -> Client:
    _, key = api_token_create(user=user, name="test")
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def _post(client: Client, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


def _get_urls(project: Project) -> dict[str, str]:
    crop = project.crops.order_by("id").first()
    assert crop is not None
    base = f"{API}/projects/{project.slug}"
    return {
        "detail": base,
        "species": f"{base}/species",
        "attributes": f"{base}/attributes",
        "rounds": f"{base}/rounds",
        "next": f"{base}/next",
        "crops": f"{base}/crops",
        "crop_file": f"{base}/crops/{crop.pk}/file",
        "image_file": f"{base}/images/{crop.image_id}/file",
    }


ALL = {"detail", "species", "attributes", "rounds", "crop_file", "image_file"}
EXPECTED_GET = {
    "admin": {name: 200 for name in [*ALL, "next", "crops"]},
    "volunteer": {**{name: 200 for name in [*ALL, "next"]}, "crops": 404},
    "ecologist": {**{name: 200 for name in [*ALL, "crops"]}, "next": 404},
    "outsider": {name: 404 for name in [*ALL, "next", "crops"]},
}


@pytest.mark.parametrize("role", list(EXPECTED_GET))
def test_get_every_endpoint_as_role(
    role: str, open_round: Round, ingested_project: Project, clients: dict[str, Client]
) -> None:
    client = clients[role]
    for name, url in _get_urls(ingested_project).items():
        response = client.get(url)
        assert response.status_code == EXPECTED_GET[role][name], (role, name)
        if response.status_code == 404:
            assert response.json() == {"detail": "No such project"}
    listed = client.get(f"{API}/projects").json()
    expected = [] if role == "outsider" else [ingested_project.slug]
    assert [p["slug"] for p in listed] == expected
    if role != "outsider":
        assert listed[0]["role"] == role


@pytest.mark.parametrize("slug", ["no-such-project", "bad%00slug", "%C3%A9t%C3%A9", "x" * 300])
def test_unknown_project_is_404_like_a_foreign_one(clients: dict[str, Client], slug: str) -> None:
    for url in (f"{API}/projects/{slug}", f"{API}/projects/{slug}/crops/1/file"):
        response = clients["admin"].get(url)
        assert response.status_code == 404 and response.json() == {"detail": "No such project"}


def test_huge_or_foreign_ids_are_4xx(
    ingested_project: Project, admin_user: User, clients: dict[str, Client]
) -> None:
    base = f"{API}/projects/{ingested_project.slug}"
    other = project_create(name="Other traps", created_by=admin_user)
    Crop.objects.filter(pk=ingested_project.crops.order_by("id")[0].pk).update(project=other)
    foreign = Crop.objects.get(project=other)
    for url, status in [
        (f"{base}/crops/{2**64}/file", 422),
        (f"{base}/images/{2**64}/file", 422),
        (f"{base}/crops/0/file", 422),
        (f"{base}/crops/{foreign.pk}/file", 404),
        (f"{base}/images/{foreign.image_id + 10_000}/file", 404),
        (f"{base}/crops?cursor={2**64}", 422),
    ]:
        response = clients["admin"].get(url)
        assert response.status_code == status, url
        assert isinstance(response.json()["detail"], str)


def test_project_status_counts(
    open_round: Round, ingested_project: Project, volunteer: User, clients: dict[str, Client]
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, [open_round.items.first().crop])  # type: ignore[union-attr]
    data = clients["ecologist"].get(f"{API}/projects/{ingested_project.slug}").json()
    assert data["slug"] == ingested_project.slug and data["role"] == "ecologist"
    assert (data["images"], data["crops"], data["labelled"], data["predicted"]) == (
        15,
        len(crops),
        1,
        0,
    )
    assert data["images_empty"] == 15 - len({c.image_id for c in crops})
    assert data["classifier_version"] is None and data["embedding_version"] == 1
    assert data["open_round"]["number"] == 1
    assert (data["open_round"]["done"], data["open_round"]["total"]) == (1, 5)


def test_species_list(ingested_project: Project, clients: dict[str, Client]) -> None:
    data = clients["volunteer"].get(f"{API}/projects/{ingested_project.slug}/species").json()
    assert data == [{"id": s.pk, "name": s.name} for s in ingested_project.species.all()]
    assert {"red fox", "agouti"} <= {s["name"] for s in data}


@pytest.mark.parametrize("role", ["volunteer", "ecologist", "outsider"])
def test_only_admin_starts_rounds(
    role: str, ingested_project: Project, clients: dict[str, Client]
) -> None:
    url = f"{API}/projects/{ingested_project.slug}/rounds"
    assert _post(clients[role], url, {"strategy": "random", "size": 3}).status_code == 404
    assert not Round.objects.exists()


def test_admin_starts_round_then_conflict(
    ingested_project: Project, clients: dict[str, Client]
) -> None:
    url = f"{API}/projects/{ingested_project.slug}/rounds"
    admin = clients["admin"]
    for body in ({"strategy": "nope", "size": 3}, {"size": 0}, {"size": "many"}):
        bad = _post(admin, url, body)
        assert bad.status_code == 422 and bad.json()["detail"].startswith("Invalid request")
    assert not Round.objects.exists()
    created = _post(admin, url, {"strategy": "random", "size": 4})
    assert created.status_code == 201
    data = created.json()
    stored = Round.objects.get()
    assert (data["id"], data["number"], data["strategy"], data["status"]) == (
        stored.pk,
        1,
        "random",
        "open",
    )
    assert (data["done"], data["total"]) == (0, 4) == (0, stored.items.count())
    conflict = _post(admin, url, {"strategy": "k_center", "size": 4})
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == (
        "Round not started: a round is already open for this project; finish it first"
    )
    assert Round.objects.count() == 1
    listed = admin.get(url).json()
    assert [(r["number"], r["done"], r["total"]) for r in listed] == [(1, 0, 4)]


def test_admin_starts_a_species_round(
    ingested_project: Project, clients: dict[str, Client], volunteer: User, admin_user: User
) -> None:
    url = f"{API}/projects/{ingested_project.slug}/rounds"
    admin = clients["admin"]
    fox = ingested_project.species.get(name="red fox")
    no_classifier = _post(admin, url, {"strategy": "species", "target_species_id": fox.pk})
    assert (
        no_classifier.status_code == 409 and "no classifier yet" in no_classifier.json()["detail"]
    )
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops[:3] + crops[-3:])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    foreign = project_create(name="Elsewhere", created_by=admin_user, seed=1).species.create(
        name="lynx"
    )
    for body, detail in (
        ({"strategy": "species", "target_species_id": foreign.pk}, "not a species of this project"),
        ({"strategy": "species"}, "needs a target species"),
        ({"strategy": "random", "target_species_id": fox.pk}, "strategy only"),
    ):
        refused = _post(admin, url, body)
        assert refused.status_code == 409 and detail in refused.json()["detail"], body
    assert not Round.objects.exists()
    target = Prediction.objects.filter(classifier=classifier, crop__consensus__isnull=True)[0]
    body = {"strategy": "species", "size": 2, "target_species_id": target.species_id}
    created = _post(admin, url, body)
    assert created.status_code == 201, created.json()
    data = created.json()
    assert (data["strategy"], data["target_species_id"]) == ("species", target.species_id)
    assert admin.get(url).json()[0]["target_species_id"] == target.species_id


def test_rounds_list_progress_matches_round_progress(
    open_round: Round, ingested_project: Project, volunteer: User, clients: dict[str, Client]
) -> None:
    from activelearn.selectors import round_progress

    items = [item.crop for item in open_round.items.select_related("crop__image")]
    label_by_truth(ingested_project, volunteer, items[:2])
    listed = clients["volunteer"].get(f"{API}/projects/{ingested_project.slug}/rounds").json()
    assert [(r["done"], r["total"]) for r in listed] == [round_progress(round_=open_round)]
    assert listed[0]["done"] == 2


@pytest.mark.parametrize("role,status", [("admin", 201), ("volunteer", 201), ("ecologist", 404)])
def test_label_stores_exactly_what_was_sent(
    role: str,
    status: int,
    open_round: Round,
    ingested_project: Project,
    clients: dict[str, Client],
    admin_user: User,
    volunteer: User,
) -> None:
    crop = open_round.items.order_by("position").first().crop  # type: ignore[union-attr]
    fox = ingested_project.species.get(name="red fox")
    body = {"crop_id": crop.pk, "kind": "species", "species_id": fox.pk, "idempotency_key": "k1"}
    if status == 201:
        serve(ingested_project, admin_user if role == "admin" else volunteer, [crop.pk])
    response = _post(clients[role], f"{API}/projects/{ingested_project.slug}/labels", body)
    assert response.status_code == status
    if status != 201:
        assert not Label.objects.exists()
        return
    label = Label.objects.get()
    user = admin_user if role == "admin" else volunteer
    assert (label.crop_id, label.kind, label.species_id, label.user_id) == (
        crop.pk,
        "species",
        fox.pk,
        user.pk,
    )
    assert label.round_id == open_round.pk and label.undone_at is None
    data = response.json()
    assert data["id"] == label.pk and data["crop_id"] == crop.pk
    assert (data["kind"], data["species_id"], data["species"]) == ("species", fox.pk, "red fox")
    assert (data["round"], data["user"], data["undone_at"]) == (1, user.username, None)


def test_label_without_species(
    ingested_project: Project, clients: dict[str, Client], volunteer: User
) -> None:
    crops = list(ingested_project.crops.order_by("id")[:2])
    url = f"{API}/projects/{ingested_project.slug}/labels"
    hold(ingested_project, volunteer, [c.pk for c in crops])
    for crop, kind in zip(crops, ("not_animal", "unknown"), strict=True):
        response = _post(clients["volunteer"], url, {"crop_id": crop.pk, "kind": kind})
        assert response.status_code == 201 and response.json()["species_id"] is None
    open_round = round_open_get(project=ingested_project)
    assert open_round is not None
    assert list(
        Label.objects.filter(crop__in=crops).values_list("kind", "species_id", "round_id")
    ) == [("not_animal", None, open_round.pk), ("unknown", None, open_round.pk)]


def test_bad_labels_are_refused_and_change_nothing(
    ingested_project: Project, admin_user: User, clients: dict[str, Client]
) -> None:
    other = project_create(name="Other traps", created_by=admin_user)
    alien_species = Species.objects.create(project=other, name="wolf")
    crop = ingested_project.crops.order_by("id").first()
    assert crop is not None
    fox = ingested_project.species.get(name="red fox")
    url = f"{API}/projects/{ingested_project.slug}/labels"
    cases: list[tuple[Any, int, str]] = [
        ({"crop_id": crop.pk, "kind": "species", "species_id": alien_species.pk}, 400, "species"),
        ({"crop_id": crop.pk, "kind": "species", "species_id": 999_999}, 400, "species 999999"),
        ({"crop_id": 999_999, "kind": "species", "species_id": fox.pk}, 400, "crop 999999"),
        ({"crop_id": crop.pk, "kind": "cat"}, 422, "kind"),
        ({"crop_id": crop.pk, "kind": "species"}, 422, "species_id: Field required"),
        ({"crop_id": crop.pk, "kind": "unknown", "species_id": fox.pk}, 422, "only for kind"),
        ({"crop_id": "first", "kind": "unknown"}, 422, "crop_id"),
        ({"kind": "unknown"}, 422, "crop_id"),
        ({"crop_id": crop.pk, "kind": "unknown", "idempotency_key": "x" * 201}, 422, "idem"),
        ({"crop_id": 2**64, "kind": "unknown"}, 422, "crop_id"),
        ({"crop_id": crop.pk, "kind": "species", "species_id": 2**63}, 422, "species_id"),
        ("not json at all {", 400, "Cannot parse request body"),
        ([1, 2], 422, "Invalid request"),
    ]
    for body, status, message in cases:
        raw = body if isinstance(body, str) else json.dumps(body)
        response = clients["volunteer"].post(url, raw, content_type="application/json")
        assert response.status_code == status, (body, response.content)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and message in detail, (body, detail)
    assert not Label.objects.exists() and not Consensus.objects.exists()


def test_label_for_a_crop_of_another_project_of_mine(
    ingested_project: Project, admin_user: User, clients: dict[str, Client]
) -> None:
    other = project_create(name="Other traps", created_by=admin_user)
    crop = ingested_project.crops.order_by("id").first()
    assert crop is not None
    response = _post(
        clients["admin"],
        f"{API}/projects/{other.slug}/labels",
        {"crop_id": crop.pk, "kind": "unknown"},
    )
    assert response.status_code == 400 and "not part of project" in response.json()["detail"]
    assert not Label.objects.exists()


def test_undo_latest_label(
    open_round: Round, ingested_project: Project, volunteer: User, clients: dict[str, Client]
) -> None:
    url = f"{API}/projects/{ingested_project.slug}/labels/undo"
    nothing = _post(clients["volunteer"], url, {})
    assert nothing.status_code == 400 and "nothing to undo" in nothing.json()["detail"]
    assert _post(clients["ecologist"], url, {}).status_code == 404
    crops = [item.crop for item in open_round.items.order_by("position")[:2]]
    for crop in crops:
        serve(ingested_project, volunteer, [crop.pk])
        label_submit(project=ingested_project, crop_id=crop.pk, user=volunteer, kind="unknown")
    response = _post(clients["volunteer"], url, {})
    assert response.status_code == 200
    latest = Label.objects.get(crop=crops[1])
    assert response.json()["id"] == latest.pk and response.json()["undone_at"] is not None
    assert latest.undone_at is not None
    assert Label.objects.get(crop=crops[0]).undone_at is None
    assert not Consensus.objects.filter(crop=crops[1]).exists()
    # The undone crop comes back first.
    served = clients["volunteer"].get(f"{API}/projects/{ingested_project.slug}/next").json()
    assert [c["crop_id"] for c in served["crops"]] == [crops[1].pk]


def test_next_serves_claimed_crops_with_urls_and_suggestions(
    ingested_project: Project, admin_user: User, volunteer: User, clients: dict[str, Client]
) -> None:
    url = f"{API}/projects/{ingested_project.slug}/next"
    assert clients["volunteer"].get(url).json() == {"round": None, "crops": []}
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, admin_user, crops[:6])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=4)
    picks = list(open_round.items.order_by("position").values_list("crop_id", flat=True))

    data = clients["volunteer"].get(url, {"limit": 3}).json()
    assert data["round"] == open_round.number
    assert [c["crop_id"] for c in data["crops"]] == picks[:3]
    held = CropClaim.objects.filter(round=open_round, user=volunteer)
    assert sorted(held.values_list("crop_id", flat=True)) == sorted(picks[:3])
    names = dict(ingested_project.species.values_list("id", "name"))
    for card in data["crops"]:
        crop = Crop.objects.select_related("image", "detection").get(pk=card["crop_id"])
        top = Prediction.objects.get(classifier=classifier, crop=crop).top
        assert [(s["species_id"], s["probability"]) for s in card["suggestions"]] == [
            (sid, pytest.approx(p)) for sid, p in top[:5]
        ]
        assert [s["species"] for s in card["suggestions"]] == [names[sid] for sid, _ in top[:5]]
        assert card["box"] == pytest.approx(
            {
                "x": crop.detection.x,
                "y": crop.detection.y,
                "w": crop.detection.w,
                "h": crop.detection.h,
            }
        )
        assert (card["image_id"], card["seq_id"]) == (crop.image_id, crop.image.seq_id)
        assert card["crop_url"].endswith(f"/crops/{crop.pk}/file")
        image = clients["volunteer"].get(card["image_url"])
        assert image.status_code == 200
        assert image.getvalue()[:2] == b"\xff\xd8"  # a JPEG
        crop_file = clients["volunteer"].get(card["crop_url"])
        assert crop_file.status_code == 200
    # The admin is not offered the crops the volunteer holds (one vote per crop).
    admin_data = clients["admin"].get(url, {"limit": 4}).json()
    assert [c["crop_id"] for c in admin_data["crops"]] == picks[3:]
    # Skipped crops are not served again.
    again = clients["volunteer"].get(url, {"limit": "4", "skip": [str(picks[0])]}).json()
    assert [c["crop_id"] for c in again["crops"]] == picks[1:3]
    bad_params: list[dict[str, Any]] = [
        {"limit": 0},
        {"limit": 51},
        {"limit": "x"},
        {"skip": "a"},
        {"skip": 2**64},
    ]
    for bad in bad_params:
        response = clients["volunteer"].get(url, bad)
        assert response.status_code == 422 and isinstance(response.json()["detail"], str)


def _walk(client: Client, project: Project, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        page = client.get(
            f"{API}/projects/{project.slug}/crops", {"cursor": cursor, "limit": limit}
        ).json()
        assert len(page["items"]) <= limit
        rows += page["items"]
        cursor = page["next_cursor"]
        pages += 1
        assert pages < 100
    return rows


def test_crops_pages_cover_every_crop_once_with_labels(
    ingested_project: Project, admin_user: User, volunteer: User, clients: dict[str, Client]
) -> None:
    crops = list(ingested_project.crops.select_related("image", "detection").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops[:6])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    ClassifierVersion.objects.filter(pk=classifier.pk).update(threshold=0.0)
    # An inactive unlabelled crop is left out; an inactive labelled one stays.
    Crop.objects.filter(pk__in=[crops[0].pk, crops[-1].pk]).update(active=False)
    expected = [c.pk for c in crops[:-1]]
    for limit in (1, 3, 100):
        rows = _walk(clients["ecologist"], ingested_project, limit)
        assert [r["crop_id"] for r in rows] == expected
    by_id = {r["crop_id"]: r for r in rows}
    for crop in crops[:6]:
        row = by_id[crop.pk]
        consensus = Consensus.objects.select_related("species").get(crop=crop)
        assert row["human_label"] == {
            "status": consensus.status,
            "kind": "species",
            "species_id": consensus.species_id,
            "species": consensus.species.name,  # type: ignore[union-attr]
            "votes": 1,
            "agreement": 1.0,
            "reviewed": False,
        }
        assert row["final_label"] == {
            "kind": "species",
            "species": consensus.species.name,  # type: ignore[union-attr]
            "source": "human",
            "confidence": 1.0,
        }
        assert row["auto_accepted"] is False
    assert by_id[crops[0].pk]["active"] is False
    for crop in crops[6:-1]:
        row = by_id[crop.pk]
        prediction = Prediction.objects.get(classifier=classifier, crop=crop)
        assert row["human_label"] is None and row["auto_accepted"] is True
        assert row["final_label"]["source"] == "auto"
        assert row["final_label"]["species"] == prediction.species.name
        assert row["machine_label"] == {
            "species_id": prediction.species_id,
            "species": prediction.species.name,
            "confidence": pytest.approx(prediction.confidence),
        }
        assert row["classifier_version"] == classifier.number
        assert (row["image_file"], row["round"]) == (crop.image.file_name, None)
    for bad in ({"cursor": -1}, {"limit": 0}, {"limit": 501}, {"cursor": "abc"}):
        response = clients["admin"].get(f"{API}/projects/{ingested_project.slug}/crops", bad)
        assert response.status_code == 422
    # A vote short of the project's quorum is shown, but the final label stays the machine's
    # (the export's rule: only a done consensus is final).
    ingested_project.votes_per_crop = 2
    ingested_project.save()
    consensus_update(project=ingested_project, crop_ids=[crops[1].pk])
    row = {r["crop_id"]: r for r in _walk(clients["admin"], ingested_project, 100)}[crops[1].pk]
    assert row["human_label"]["status"] == "pending"
    assert row["final_label"]["source"] == "auto" and row["auto_accepted"] is True


def test_crops_rows_name_their_round(
    open_round: Round, ingested_project: Project, clients: dict[str, Client]
) -> None:
    rows = _walk(clients["admin"], ingested_project, 100)
    picked = set(open_round.items.values_list("crop_id", flat=True))
    assert {r["crop_id"] for r in rows if r["round"] == 1} == picked
    assert {r["strategy"] for r in rows if r["round"] == 1} == {"k_center"}


def _queries(client: Client, url: str, params: dict[str, Any]) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, response.content
    return len(captured)


def test_query_counts_do_not_grow_with_crops(
    ingested_project: Project, admin_user: User, volunteer: User, clients: dict[str, Client]
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, admin_user, crops[:6])
    assert classifier_retrain(project_id=ingested_project.pk) is not None
    # No audit crop: offering one stores its prediction, a few queries more whatever the
    # number of crops (tests/annotator/test_views_audit.py counts them).
    ingested_project.audit_share = 0.0
    ingested_project.save(update_fields=["audit_share"])
    round_start(project=ingested_project, user=admin_user, strategy="random", size=5)
    client = clients["admin"]
    client.get(f"{API}/projects")  # the token's last use is recorded once, not per request
    crops_url = f"{API}/projects/{ingested_project.slug}/crops"
    small = _queries(client, crops_url, {"limit": 2})
    large = _queries(client, crops_url, {"limit": 100})
    assert small == large and large <= 10
    assert len(client.get(crops_url, {"limit": 100}).json()["items"]) == len(crops)
    next_url = f"{API}/projects/{ingested_project.slug}/next"
    volunteer_client = clients["volunteer"]
    volunteer_client.get(f"{API}/projects")
    one = _queries(volunteer_client, next_url, {"limit": 1})
    five = _queries(volunteer_client, next_url, {"limit": 5})
    # 17 on PostgreSQL: serving takes the round's advisory lock inside a savepoint there.
    assert one == five and five <= 17
    assert len(volunteer_client.get(next_url, {"limit": 5}).json()["crops"]) == 5


def test_openapi_lists_every_endpoint_and_bearer_scheme(client: Client) -> None:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    operations = {
        (method.upper(), path.removeprefix(API))
        for path, item in schema["paths"].items()
        for method in item
    }
    assert operations == {
        ("GET", "/projects"),
        ("GET", "/projects/{slug}"),
        ("GET", "/projects/{slug}/species"),
        ("GET", "/projects/{slug}/attributes"),
        ("GET", "/projects/{slug}/rounds"),
        ("POST", "/projects/{slug}/rounds"),
        ("GET", "/projects/{slug}/next"),
        ("POST", "/projects/{slug}/labels"),
        ("POST", "/projects/{slug}/labels/undo"),
        ("POST", "/projects/{slug}/retrain"),
        ("GET", "/projects/{slug}/crops"),
        ("GET", "/projects/{slug}/crops/{crop_id}/file"),
        ("GET", "/projects/{slug}/images/{image_id}/file"),
        ("POST", "/projects/{slug}/imports"),
        ("GET", "/projects/{slug}/jobs/{job_id}"),
        ("POST", "/projects/{slug}/exports"),
        ("GET", "/projects/{slug}/exports"),
        ("GET", "/projects/{slug}/exports/{export_id}"),
        ("GET", "/projects/{slug}/exports/{export_id}/file"),
    }
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"} in schemes.values()
    for item in schema["paths"].values():
        for operation in item.values():
            assert {"TokenAuth": []} in operation["security"]
    label_in = schema["components"]["schemas"]["SpeciesLabelIn"]["properties"]
    assert "returns the label stored the first time" in label_in["idempotency_key"]["description"]
    docs = client.get(f"{API}/docs")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_session_client_reads_projects(ingested_project: Project, ecologist: User) -> None:
    client = Client()
    client.force_login(ecologist)
    data = client.get(f"{API}/projects/{ingested_project.slug}").json()
    assert data["role"] == "ecologist"
    assert client.get(f"{API}/projects/{ingested_project.slug}/next").status_code == 404


def test_a_retried_label_with_the_same_idempotency_key_is_stored_once(
    ingested_project: Project, volunteer: User
) -> None:
    client = _bearer(volunteer)
    crop = ingested_project.crops.order_by("id").first()
    assert crop is not None
    url = f"{API}/projects/{ingested_project.slug}/labels"
    body = {"crop_id": crop.pk, "kind": "unknown", "idempotency_key": "k-1"}
    hold(ingested_project, volunteer, [crop.pk])
    first, again = _post(client, url, body), _post(client, url, body)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert Label.objects.count() == 1
    other = _post(client, url, {**body, "kind": "not_animal"})
    assert (
        other.status_code == 400 and "already used for a different label" in other.json()["detail"]
    )
    assert Label.objects.count() == 1


def test_refused_labels_leave_the_votes_and_consensus_as_they_were(
    ingested_project: Project,
    clients: dict[str, Client],
    foreign: tuple[Project, Species, Crop],
    volunteer: User,
) -> None:
    _, wolf, alien_crop = foreign
    crop = ingested_project.crops.order_by("id").first()
    assert crop is not None
    fox = ingested_project.species.get(name="red fox")
    url = f"{API}/projects/{ingested_project.slug}/labels"
    body = {"crop_id": crop.pk, "kind": "species", "species_id": fox.pk}
    hold(ingested_project, volunteer, [crop.pk])
    assert _post(clients["volunteer"], url, body).status_code == 201
    before = (list(Label.objects.values()), list(Consensus.objects.values()))
    cases = [
        ({**body, "species_id": wolf.pk}, f"species {wolf.pk} is not in project"),
        ({**body, "species_id": 999_999}, "species 999999 is not in project"),
        ({**body, "crop_id": alien_crop.pk}, f"crop {alien_crop.pk} is not part of project"),
    ]
    for role in ("volunteer", "admin"):
        for sent, message in cases:
            response = _post(clients[role], url, sent)
            assert response.status_code == 400 and message in response.json()["detail"], sent
    assert (list(Label.objects.values()), list(Consensus.objects.values())) == before
    assert not alien_crop.labels.exists()


# --- attributes -------------------------------------------------------------------------------


def test_attributes_list_and_a_label_that_ticks_them(
    ingested_project: Project, clients: dict[str, Client], volunteer: User
) -> None:
    base = f"{API}/projects/{ingested_project.slug}"
    listed = clients["volunteer"].get(f"{base}/attributes").json()
    assert [(a["name"], a["key"]) for a in listed][:2] == [("standing", "q"), ("resting", "w")]
    ids = {a["name"]: a["id"] for a in listed}
    crop = ingested_project.crops.order_by("id").first()
    fox = ingested_project.species.get(name="red fox")
    assert crop is not None
    body = {
        "crop_id": crop.pk,
        "kind": "species",
        "species_id": fox.pk,
        "attributes": [ids["eating"], ids["standing"]],
    }
    other = ingested_project.crops.order_by("id")[1]
    hold(ingested_project, volunteer, [crop.pk, other.pk])
    response = _post(clients["volunteer"], f"{base}/labels", body)
    assert response.status_code == 201
    assert response.json()["attributes"] == sorted([ids["eating"], ids["standing"]])
    assert Label.objects.get().attributes == sorted([ids["eating"], ids["standing"]])
    # Left out: not recorded.
    body = {"crop_id": other.pk, "kind": "species", "species_id": fox.pk}
    assert _post(clients["volunteer"], f"{base}/labels", body).json()["attributes"] is None
    # The crop rows carry the consensus's attributes by name.
    page = clients["admin"].get(f"{base}/crops", {"limit": 2}).json()["items"]
    assert page[0]["attributes_human"] == ["standing", "eating"]
    assert page[0]["attributes"] == ["standing", "eating"]
    assert page[0]["attributes_machine"] is None
    assert page[1]["attributes_human"] is None


def test_labels_with_foreign_or_misplaced_attributes_are_4xx_and_store_nothing(
    ingested_project: Project,
    clients: dict[str, Client],
    foreign: tuple[Project, Any, Crop],
    volunteer: User,
) -> None:
    base = f"{API}/projects/{ingested_project.slug}"
    crop = ingested_project.crops.order_by("id").first()
    fox = ingested_project.species.get(name="red fox")
    assert crop is not None
    hold(ingested_project, volunteer, [crop.pk])
    alien = foreign[0].attributes.get(name="moving").pk
    mine = ingested_project.attributes.get(name="moving").pk
    # A foreign attribute is the project's refusal (400); attributes on another kind are not
    # what the schema allows (422).
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"kind": "species", "species_id": fox.pk, "attributes": [alien]}, 400, "is not part of"),
        ({"kind": "not_animal", "attributes": [mine]}, 422, "only for species labels"),
    ]
    for extra, status, message in cases:
        response = _post(clients["volunteer"], f"{base}/labels", {"crop_id": crop.pk, **extra})
        assert response.status_code == status and message in response.json()["detail"]
    bad = _post(
        clients["volunteer"],
        f"{base}/labels",
        {"crop_id": crop.pk, "kind": "species", "species_id": fox.pk, "attributes": ["x"]},
    )
    assert bad.status_code == 422
    assert not Label.objects.exists()


def test_openapi_describes_the_attributes(client: Client) -> None:
    schema = client.get(f"{API}/openapi.json").json()["components"]["schemas"]
    assert (
        "kind=species only" in schema["SpeciesLabelIn"]["properties"]["attributes"]["description"]
    )
    assert "attributes" in schema["LabelOut"]["properties"]
    assert {"attributes_human", "attributes_machine", "attributes"} <= set(
        schema["CropRowOut"]["properties"]
    )


def test_label_body_kinds_are_the_label_kinds(client: Client) -> None:
    """The label body's discriminator names every LabelKind, each once."""
    body = client.get(f"{API}/openapi.json").json()["paths"][f"{API}/projects/{{slug}}/labels"]
    schema = body["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["discriminator"]["propertyName"] == "kind"
    assert set(schema["discriminator"]["mapping"]) == set(LabelKind.values)
