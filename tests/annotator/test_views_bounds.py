"""Bad numbers on the web pages: ids beyond 64 bits and non-ASCII digits.

Each is refused with a 4xx (a 404, or the page's own refusal: 400, or a redirect with the
reason) and changes nothing; none reaches the database as a number it cannot store (SQLite
and PostgreSQL raise on ids beyond 64 bits), and none is read as another number ("١" is not 1).
The request-size limits are tested in test_api_bounds.py, on the live server.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from activelearn.models import Label, Round
from activelearn.services import round_start
from projects.models import Project
from projects.services import species_add

pytestmark = pytest.mark.django_db

HUGE = [str(2**63), str(2**64), "9" * 40]


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


# Every URL with an id in its path; the id goes where {id} is.
ID_URLS = [
    ("post", "/account/tokens/{id}/revoke/"),
    ("post", "/p/{slug}/members/{id}/role/"),
    ("post", "/p/{slug}/members/{id}/remove/"),
    ("post", "/p/{slug}/species/{id}/rename/"),
    ("post", "/p/{slug}/attributes/{id}/update/"),
    ("post", "/p/{slug}/attributes/{id}/remove/"),
    ("get", "/p/{slug}/crops/{id}.jpg"),
    ("get", "/p/{slug}/images/{id}"),
]


def test_ids_beyond_64_bits_or_not_ascii_in_urls_are_404(
    project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    species = species_add(project=project, name="red fox")
    for method, url in ID_URLS:
        for bad in [*HUGE, "0", "١"]:
            data = {"role": "volunteer", "name": "x", "key": "x"} if method == "post" else None
            response = getattr(client, method)(url.format(slug=project.slug, id=bad), data)
            assert response.status_code == 404, (url, bad)
    # The largest id that fits is still an id (of nothing here): the page's own refusal.
    url = f"/p/{project.slug}/species/{2**63 - 1}/rename/"
    assert client.post(url, {"name": "x"}).status_code == 400
    species.refresh_from_db()
    assert species.name != "x"


def _fill(data: dict[str, Any], project: Project) -> dict[str, Any]:
    crop = project.crops.order_by("id")[0]
    species = project.species.order_by("id")[0]

    def one(value: str) -> str:
        return value.format(crop=crop.pk, species=species.pk)

    return {
        key: [one(v) for v in value] if isinstance(value, list) else one(value)
        for key, value in data.items()
    }


# (page, form data) that a bad number makes invalid; {crop}, {species} are real ids.
BAD_LABEL_POSTS: list[tuple[str, dict[str, Any]]] = [
    ("label", {"crop_id": str(2**64), "choice": "unknown"}),
    ("label", {"crop_id": str(2**63), "choice": "skip"}),
    ("label", {"crop_id": "١٢", "choice": "unknown"}),
    ("label", {"crop_id": "{crop}", "choice": f"species:{2**64}"}),
    ("label", {"crop_id": "{crop}", "choice": "species:²"}),
    ("label", {"crop_id": "{crop}", "choice": "species:١"}),
    ("label", {"crop_id": "{crop}", "choice": "species:{species}", "attributes": "²"}),
    ("label", {"crop_id": "{crop}", "choice": "species:{species}", "attributes": str(2**64)}),
    ("label/grid", {"crop_ids": [str(2**64)], "choice": "unknown"}),
    ("label/grid", {"crop_ids": ["{crop}", "³"], "choice": "unknown"}),
    ("label/grid", {"crop_ids": ["{crop}"], "choice": f"species:{2**64}"}),
    ("review", {"crop_id": str(2**64), "choice": "unknown"}),
    ("review", {"crop_id": "{crop}", "choice": "species:²"}),
]


def test_bad_numbers_in_labelling_forms_are_refused(
    ingested_project: Project, admin_user: User
) -> None:
    round_start(project=ingested_project, user=admin_user, strategy="random", size=5)
    slug = ingested_project.slug
    for page, data in BAD_LABEL_POSTS:
        client = _client(admin_user)
        response = client.post(f"/p/{slug}/{page}/", _fill(data, ingested_project))
        assert response.status_code in (302, 400), (page, data)
        assert not Label.objects.exists(), (page, data)
        # The page works afterwards: nothing unstorable was kept in the session.
        assert client.get(f"/p/{slug}/label/").status_code == 200, (page, data)


def test_bad_numbers_in_project_forms_are_refused(
    ingested_project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    slug = ingested_project.slug
    fox, agouti = (ingested_project.species.get(name=n).pk for n in ("red fox", "agouti"))
    before = Project.objects.filter(pk=ingested_project.pk).values().get()
    posts: list[tuple[str, dict[str, str]]] = [
        ("species/merge/", {"source": str(2**64), "target": str(agouti)}),
        ("species/merge/", {"source": "١", "target": str(agouti)}),
        ("species/merge/", {"source": str(fox), "target": "٢"}),
        ("rounds/start/", {"strategy": "species", "size": "5", "target_species": str(2**64)}),
        ("rounds/start/", {"strategy": "species", "size": "5", "target_species": "١"}),
        ("rounds/start/", {"strategy": "random", "size": "١٠"}),
        ("rounds/start/", {"strategy": "random", "size": str(2**64)}),
        (
            "thresholds/",
            {"detection_threshold": "0.2", "min_box_pixels": "١٠", "crop_padding": "0.1"},
        ),
        ("consensus/", {"votes_per_crop": "٢", "agreement_threshold": "60"}),
        ("consensus/", {"votes_per_crop": "2", "agreement_threshold": "٦٠"}),
        ("learning/", {"first_round_strategy": "random", "target_accuracy": "٩٠"}),
        (
            "learning/",
            {"first_round_strategy": "random", "target_accuracy": "90", "ensemble_size": "٢"},
        ),
    ]
    for url, data in posts:
        response = client.post(f"/p/{slug}/{url}", data)
        assert response.status_code in (302, 400), (url, data)
    assert Project.objects.filter(pk=ingested_project.pk).values().get() == before
    assert set(ingested_project.species.values_list("pk", flat=True)) >= {fox, agouti}
    assert not Round.objects.exists()


def test_bad_numbers_in_the_camtrap_dp_form_are_400(
    ingested_project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    good = {
        "latitude": "1",
        "longitude": "2",
        "coordinate_uncertainty": "100",
        "utc_offset": "+00:00",
        "sampling_design": "opportunistic",
        "capture_method": "activityDetection",
        "data_license": "CC-BY-4.0",
        "media_license": "CC-BY-4.0",
    }
    url = f"/p/{ingested_project.slug}/export/camtrap-dp.zip"
    for field, bad in [
        ("coordinate_uncertainty", str(2**64)),
        ("coordinate_uncertainty", "١٠٠"),
        ("latitude", "١"),
        ("longitude", "1e400"),
    ]:
        response = client.get(url, {**good, field: bad})
        assert response.status_code == 400, (field, bad)
        assert field in response.context["form"].errors, (field, bad)
