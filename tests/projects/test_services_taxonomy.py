"""The species CSV import and the taxonomy edit: what they write, and that every refusal
changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from projects.models import Project, Species
from projects.services import species_add, species_ensure
from projects.services_taxonomy import (
    SPECIES_CSV_MAX_BYTES,
    species_csv_decode,
    species_import,
    species_taxonomy_set,
)
from projects.taxonomy import TaxonomyError

pytestmark = pytest.mark.django_db

HEADER = "scientific_name,common_name,rank,parent\n"
CSV = HEADER + (
    "Mammalia,mammal,class,\n"
    "Rodentia,rodent,order,Mammalia\n"
    "Mus musculus,house mouse;mouse|souris,species,Rodentia\n"
    "Vulpes vulpes,red fox;renard,species,Mammalia\n"
)


def _state(project: Project) -> list[tuple[Any, ...]]:
    return list(
        Species.objects.filter(project=project)
        .order_by("pk")
        .values_list(
            "pk", "name", "position", "scientific_name", "common_names", "rank", "parent__name"
        )
    )


def test_import_creates_the_hierarchy_and_updates_by_name(project: Project) -> None:
    fox = species_add(project=project, name="red fox")
    report = species_import(project=project, text=CSV)
    assert report.created == ["mammal", "rodent", "house mouse"]
    assert report.updated == ["red fox"]
    rows = {s.name: s for s in Species.objects.filter(project=project)}
    assert rows["red fox"].pk == fox.pk  # matched, not duplicated
    assert rows["red fox"].scientific_name == "Vulpes vulpes"
    assert rows["red fox"].common_names == ["renard"]
    assert rows["red fox"].parent == rows["mammal"]
    assert rows["house mouse"].common_names == ["mouse", "souris"]
    assert rows["house mouse"].parent == rows["rodent"]
    assert (rows["rodent"].rank, rows["rodent"].parent) == ("order", rows["mammal"])
    assert [s.position for s in Species.objects.order_by("pk")] == [0, 1, 2, 3]


def test_import_twice_changes_nothing_the_second_time(project: Project) -> None:
    species_import(project=project, text=CSV)
    before = _state(project)
    report = species_import(project=project, text=CSV)
    assert report.created == [] and len(report.updated) == 4
    assert _state(project) == before


def test_import_matches_by_scientific_name_before_name(project: Project) -> None:
    species_import(project=project, text=CSV)
    species_import(project=project, text=HEADER + "Mus musculus,mouse,species,\n")
    mouse = Species.objects.get(project=project, scientific_name="Mus musculus")
    assert mouse.name == "house mouse" and mouse.parent is None
    assert Species.objects.filter(project=project).count() == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + "Mus,mouse,subgenus,\n", "unknown rank 'subgenus'"),
        (HEADER + "A,a,genus,B\nB,b,family,A\n", "a parent cycle"),
        (HEADER + "Rodentia,rodent,order,Mus musculus\n", "a parent cycle"),
        (
            HEADER + "Felis,cats,genus,Mus musculus\n",
            "'cats' \\(genus\\) cannot have 'house mouse'",
        ),
        (HEADER + "Canis lupus,wolf,,\ncanis LUPUS,grey wolf,,\n", "on line 2 already"),
        (HEADER + "Canis lupus,wolf,,Canidae\n", "unknown parent 'Canidae'"),
        (HEADER + "Canis lupus,wo\x0blf,,\n", "control characters"),
        (HEADER + "Canis,mammal,genus,\n", "'rodent' \\(order\\) cannot have 'mammal' \\(genus\\)"),
        # Lowering the rank of a taxon below one of its existing children.
        (HEADER + "Rodentia,rodent,species,Mammalia\n", "'house mouse' \\(species\\) cannot"),
    ],
)
def test_import_refusals_change_nothing(project: Project, text: str, message: str) -> None:
    species_import(project=project, text=CSV)
    before = _state(project)
    with pytest.raises(TaxonomyError, match=message):
        species_import(project=project, text=text + "Felis catus,cat,,\n")
    assert _state(project) == before


def test_csv_decode_refuses_large_and_non_utf8_files() -> None:
    with pytest.raises(TaxonomyError, match="larger than 2 MiB"):
        species_csv_decode(data=b"x" * (SPECIES_CSV_MAX_BYTES + 1))
    with pytest.raises(TaxonomyError, match="not UTF-8"):
        species_csv_decode(data=b"scientific_name\n\xff\n")
    assert species_csv_decode(data="Vulpes,renard é\n".encode()) == "Vulpes,renard é\n"


def _taxonomy_set(project: Project, **change: Any) -> Species:
    arguments: dict[str, Any] = {
        "scientific_name": "",
        "common_names": "",
        "rank": "species",
        "parent_id": None,
    }
    return species_taxonomy_set(project=project, **(arguments | change))


def test_taxonomy_set_saves_and_refuses_without_changing(project: Project) -> None:
    species_import(project=project, text=CSV)
    fox = Species.objects.get(project=project, name="red fox")
    rodent = Species.objects.get(project=project, name="rodent")
    mammal = Species.objects.get(project=project, name="mammal")
    _taxonomy_set(
        project,
        species_id=fox.pk,
        scientific_name=" Vulpes  vulpes ",
        common_names="renard; Red fox| zorro",
        parent_id=mammal.pk,
    )
    fox.refresh_from_db()
    assert (fox.scientific_name, fox.common_names) == ("Vulpes vulpes", ["renard", "zorro"])
    assert fox.parent_id == mammal.pk
    before = _state(project)
    refused: list[tuple[dict[str, Any], str]] = [
        ({"species_id": fox.pk, "rank": "tribe"}, "unknown rank"),
        ({"species_id": fox.pk, "parent_id": fox.pk}, "cycle"),
        ({"species_id": mammal.pk, "rank": "class", "parent_id": rodent.pk}, "cycle"),
        ({"species_id": rodent.pk, "rank": "species", "parent_id": mammal.pk}, "cannot have"),
        ({"species_id": fox.pk, "scientific_name": "Mus musculus"}, "another species has"),
        ({"species_id": fox.pk, "scientific_name": "V\x00"}, "control characters"),
        ({"species_id": fox.pk, "parent_id": 10**9}, "is not in project"),
        ({"species_id": 10**9}, "is not in project"),
    ]
    for change, message in refused:
        with pytest.raises(TaxonomyError, match=message):
            _taxonomy_set(project, **change)
        assert _state(project) == before, change


def test_taxonomy_set_refuses_another_projects_parent(project: Project, admin_user: Any) -> None:
    from projects.services import project_create

    other = project_create(name="Other", created_by=admin_user)
    species_import(project=other, text=CSV)
    fox = species_add(project=project, name="fox")
    with pytest.raises(TaxonomyError, match="is not in project"):
        _taxonomy_set(
            project,
            species_id=fox.pk,
            parent_id=Species.objects.get(project=other, name="mammal").pk,
        )


def test_species_ensure_maps_scientific_and_common_names(project: Project) -> None:
    """The COCO importer's categories: a name, scientific name or common name of a species is
    that species (case-insensitively); only unknown names are added."""
    species_import(project=project, text=CSV)
    before = Species.objects.filter(project=project).count()
    species_ensure(project=project, names=["VULPES VULPES", "Souris", "Rodent", "wolf"])
    after = list(Species.objects.filter(project=project).values_list("name", flat=True))
    assert len(after) == before + 1 and after[-1] == "wolf"
