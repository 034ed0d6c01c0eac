"""The species page's taxonomy: the admin edits it and uploads a species CSV; nobody else can.
The label pages' species picker offers the higher taxa and searches every name."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from projects.models import Project, Species
from projects.services import species_add
from projects.services_taxonomy import SPECIES_CSV_MAX_BYTES

pytestmark = pytest.mark.django_db

CSV = (
    "scientific_name,common_name,rank,parent\n"
    "Rodentia,rodent,order,\n"
    "Mus musculus,house mouse;souris,species,Rodentia\n"
)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _upload(text: str | bytes, name: str = "species.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode() if isinstance(text, str) else text)


def _state(project: Project) -> list[tuple[Any, ...]]:
    return list(
        Species.objects.filter(project=project)
        .order_by("pk")
        .values_list("name", "scientific_name", "common_names", "rank", "parent_id")
    )


def test_admin_uploads_a_species_csv_and_edits_a_taxonomy(
    project: Project, admin_user: User
) -> None:
    client = _client(admin_user)
    slug = project.slug
    fox = species_add(project=project, name="red fox")
    done = client.post(reverse("species_import", args=[slug]), {"file": _upload(CSV)}, follow=True)
    assert "Species CSV imported: 2 created, 0 updated." in done.text
    rodent = Species.objects.get(project=project, name="rodent")
    assert 'data-species="house mouse" data-rank="species"' in done.text
    assert "<i>Mus musculus</i>" in done.text and "souris" in done.text
    saved = client.post(
        reverse("species_taxonomy", args=[slug, fox.pk]),
        {"scientific_name": "Vulpes vulpes", "common_names": "renard; zorro", "rank": "species"},
        follow=True,
    )
    assert "Taxonomy of &#x27;red fox&#x27; saved." in saved.text
    fox.refresh_from_db()
    assert (fox.scientific_name, fox.common_names, fox.parent) == (
        "Vulpes vulpes",
        ["renard", "zorro"],
        None,
    )
    before = _state(project)
    refused = client.post(
        reverse("species_taxonomy", args=[slug, rodent.pk]),
        {"scientific_name": "Rodentia", "rank": "species", "parent": fox.pk},
    )
    assert refused.status_code == 400 and "Taxonomy not changed" in refused.text
    bad_form = client.post(reverse("species_taxonomy", args=[slug, rodent.pk]), {"rank": "tribe"})
    assert bad_form.status_code == 400 and "Taxonomy not changed" in bad_form.text
    assert _state(project) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (CSV + "Felis,cat,tribe,\n", "line 4: unknown rank &#x27;tribe&#x27;"),
        (CSV + "Felis,cat,genus,Felidae\n", "unknown parent"),
        (b"scientific_name,common_name,rank,parent\n\xff,,,\n", "not UTF-8"),
        (b"x" * (SPECIES_CSV_MAX_BYTES + 1), "larger than 2 MiB"),
        (None, "This field is required"),
    ],
)
def test_a_refused_upload_changes_nothing(
    project: Project, admin_user: User, data: str | bytes | None, message: str
) -> None:
    client = _client(admin_user)
    species_add(project=project, name="fox")
    before = _state(project)
    response = client.post(
        reverse("species_import", args=[project.slug]),
        {"file": _upload(data)} if data is not None else {},
    )
    assert response.status_code == 400
    assert "Species CSV not imported" in response.text and message in response.text
    assert _state(project) == before


@pytest.mark.parametrize("who", ["volunteer", "ecologist", "outsider"])
def test_only_admins_edit_the_taxonomy(
    who: str, project: Project, volunteer: User, ecologist: User, outsider: User
) -> None:
    client = _client({"volunteer": volunteer, "ecologist": ecologist, "outsider": outsider}[who])
    fox = species_add(project=project, name="fox")
    before = _state(project)
    posts = [
        (reverse("species_import", args=[project.slug]), {"file": _upload(CSV)}),
        (
            reverse("species_taxonomy", args=[project.slug, fox.pk]),
            {"scientific_name": "Vulpes", "rank": "genus"},
        ),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    assert _state(project) == before


def test_the_species_picker_offers_higher_taxa_and_searches_every_name(
    project: Project, admin_user: User
) -> None:
    from django.template.loader import render_to_string

    client = _client(admin_user)
    client.post(reverse("species_import", args=[project.slug]), {"file": _upload(CSV)})
    html = render_to_string(
        "annotator/_species_search.html", {"species": list(project.species.all())}
    )
    assert 'data-name="rodent rodentia" data-taxon-rank="order"' in html
    assert 'rodent <small class="taxon-rank">(order, if unsure)</small>' in html
    assert 'data-name="house mouse souris mus musculus" title="Mus musculus"' in html
