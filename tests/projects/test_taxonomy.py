"""The species CSV parser, the import plan and the hierarchy checks (no Django)."""

from __future__ import annotations

import itertools

import pytest

from projects.models import TaxonRank
from projects.taxonomy import (
    RANK_LEVEL,
    RANKS,
    ROWS_MAX,
    Taxon,
    TaxonomyError,
    coco_category,
    common_names_split,
    hierarchy_problems,
    taxonomy_ancestors,
    taxonomy_csv_parse,
    taxonomy_plan,
)

HEADER = "scientific_name,common_name,rank,parent\n"


def test_ranks_are_the_models_in_order() -> None:
    assert list(RANKS) == list(TaxonRank.values)


def test_parse_cleans_rows_and_splits_common_names() -> None:
    rows = taxonomy_csv_parse(
        "\ufeffScientific_Name, common_name ,RANK,parent\n"
        "Rodentia,rodent,Order,\n"
        "Mus  musculus ,house mouse; mouse | souris;Mouse,species,Rodentia\n"
        "Vulpes vulpes,red fox,,\n"
    )
    assert [(r.line, r.scientific_name, r.common_names, r.rank, r.parent) for r in rows] == [
        (2, "Rodentia", ("rodent",), "order", ""),
        (3, "Mus musculus", ("house mouse", "mouse", "souris"), "species", "Rodentia"),
        (4, "Vulpes vulpes", ("red fox",), "species", ""),
    ]
    assert rows[0].taxon_id is None


def test_parse_reads_taxon_id_when_the_column_is_there() -> None:
    rows = taxonomy_csv_parse(
        "scientific_name,common_name,rank,parent,taxon_id\nVulpes vulpes,red fox,,,GBIF:5219243\n"
    )
    assert rows[0].taxon_id == "GBIF:5219243"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the header lacks scientific_name, common_name, rank, parent"),
        ("scientific_name,common_name,rank\nA,b,species\n", "the header lacks parent"),
        (HEADER, "the file has no rows below its header"),
        (HEADER + "Vulpes,fox,subspecies,\n", "line 2: unknown rank 'subspecies'"),
        (HEADER + ",fox,,\n", "line 2: no scientific_name"),
        (HEADER + "A,a,,\nB,b,,\na,c,,\n", "line 4: 'a' is on line 2 already"),
        (
            HEADER + "Vul\x07pes,fox,,\n",
            r"line 2: scientific_name has control characters \(\\x07\)",
        ),
        (HEADER + "Vulpes,fo\x00x,,\n", r"line 2: common_name has control characters \(\\x00\)"),
        (HEADER + "Vulpes,fox,,Can\x1bidae\n", r"line 2: parent has control characters"),
        (HEADER + "Vulpes,fox,,,extra\n", "line 2: more cells than the header has columns"),
        (HEADER + "x" * 201 + ",fox,,\n", "line 2: scientific_name has more than 200"),
        (
            HEADER + 'Vulpes,"fox,,\n',
            "line 2: common_name has control characters",
        ),  # unclosed quote
    ],
)
def test_parse_refuses_bad_input_with_the_line(text: str, message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        taxonomy_csv_parse(text)


def test_parse_lists_every_problem_and_caps_the_message() -> None:
    text = HEADER + "".join(f"S{i},n,bad,\n" for i in range(12))
    with pytest.raises(TaxonomyError) as info:
        taxonomy_csv_parse(text)
    assert len(info.value.problems) == 12
    assert str(info.value).endswith("; and 2 more")


def test_parse_refuses_too_many_rows() -> None:
    text = HEADER + "".join(f"S{i},,,\n" for i in range(ROWS_MAX + 1))
    with pytest.raises(TaxonomyError, match=f"more than {ROWS_MAX} rows"):
        taxonomy_csv_parse(text)


def test_common_names_split() -> None:
    assert common_names_split(" a ;b|  c  d ;;A|") == ["a", "b", "c d"]
    assert common_names_split("") == []


def _plan(csv_rows: str, existing: list[Taxon]) -> list[tuple[object, ...]]:
    plan = taxonomy_plan(taxonomy_csv_parse(HEADER + csv_rows), existing)
    return [
        (c.species_id, c.name, c.scientific_name, c.common_names, c.rank, c.parent_id, c.parent_row)
        for c in plan
    ]


EXISTING = [
    Taxon(1, "red fox", "", "species", None),
    Taxon(2, "agouti", "Dasyprocta punctata", "species", None),
    Taxon(3, "bird", "Aves", "class", None),
]


def test_plan_matches_by_scientific_name_then_name_and_creates_the_rest() -> None:
    assert _plan(
        "Rodentia,rodent,order,\n"
        "Dasyprocta punctata,Central American agouti;agouti,species,Rodentia\n"
        "Vulpes vulpes,renard;Red Fox,species,\n"
        "Corvus corax,raven,species,aves\n",
        EXISTING,
    ) == [
        (None, "rodent", "Rodentia", (), "order", None, None),
        (2, "agouti", "Dasyprocta punctata", ("Central American agouti",), "species", None, 0),
        (1, "red fox", "Vulpes vulpes", ("renard",), "species", None, None),
        (None, "raven", "Corvus corax", (), "species", 3, None),
    ]


def test_plan_names_a_new_species_without_common_name_by_its_scientific_name() -> None:
    assert _plan("Mus musculus,,,\n", [])[0][1] == "Mus musculus"


def test_plan_a_row_whose_common_name_is_a_species_name_updates_that_species() -> None:
    assert _plan("Canis,agouti,genus,\n", EXISTING)[0][:5] == (2, "agouti", "Canis", (), "genus")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("Mus musculus,mouse,species,Muridae\n", "line 2: unknown parent 'Muridae'"),
        ("Vulpes vulpes,red fox,,\nVulpes x,red fox,,\n", "line 3: matches species 'red fox'"),
        ("Mus,mouse,genus,\nMus2,mouse,genus,\n", "line 3: a species is called 'mouse'"),
        ("Muridae,,family,Mus\nMus,,genus,Muridae\n", "a parent cycle: Muridae → Mus → Muridae"),
        ("Rodentia,rodent,order,Rodentia\n", "a parent cycle: rodent → rodent"),
        ("Mus,,genus,Mus musculus\nMus musculus,,species,\n", "'Mus' \\(genus\\) cannot have"),
        ("Muridae,,family,\nMus,,family,Muridae\n", "'Mus' \\(family\\) cannot have"),
    ],
)
def test_plan_refuses_bad_hierarchies(rows: str, message: str) -> None:
    existing = [*EXISTING, Taxon(4, "crow", "Corvus", "genus", 3)]
    with pytest.raises(TaxonomyError, match=message):
        _plan(rows, existing)


def test_plan_checks_existing_children_against_a_new_rank() -> None:
    existing = [Taxon(3, "bird", "Aves", "class", None), Taxon(4, "crow", "Corvus", "genus", 3)]
    with pytest.raises(TaxonomyError, match="'crow' \\(genus\\) cannot have 'bird' \\(species\\)"):
        _plan("Aves,bird,species,\n", existing)


def _has_cycle(parents: dict[int, int | None]) -> bool:
    for start in parents:
        seen: set[int] = set()
        node: int | None = start
        while node is not None:
            if node in seen:
                return True
            seen.add(node)
            node = parents[node]
    return False


def test_hierarchy_problems_against_brute_force_on_every_tiny_taxonomy() -> None:
    """Every taxonomy of three taxa (each parent: none, another or itself; each of two
    ranks) is refused exactly when a brute-force walk finds a cycle or a parent that does
    not rank above its child."""
    keys = (1, 2, 3)
    for parent_choice in itertools.product((None, *keys), repeat=3):
        for ranks in itertools.product(("species", "genus", "family"), repeat=3):
            parents = dict(zip(keys, parent_choice, strict=True))
            rank = dict(zip(keys, ranks, strict=True))
            nodes = {k: (rank[k], parents[k]) for k in keys}
            bad_rank = any(
                p is not None and RANK_LEVEL[rank[p]] <= RANK_LEVEL[rank[k]]
                for k, p in parents.items()
            )
            expected = _has_cycle(parents) or bad_rank
            problems = hierarchy_problems(nodes, {k: f"t{k}" for k in keys})
            assert bool(problems) == expected, (nodes, problems)
            assert any("cycle" in p for p in problems) == _has_cycle(parents)


def test_taxonomy_ancestors_nearest_first() -> None:
    parents: dict[int, int | None] = {1: 2, 2: 3, 3: None, 4: None, 5: 5}
    assert taxonomy_ancestors(parents) == {1: (2, 3), 2: (3,), 3: (), 4: (), 5: ()}


def test_coco_category_adds_the_scientific_name_when_known() -> None:
    fox = Taxon(1, "red fox", "Vulpes vulpes", "species", None)
    rodent = Taxon(2, "rodent", "", "order", None)
    assert coco_category(3, fox) == {
        "id": 3,
        "name": "red fox",
        "scientific_name": "Vulpes vulpes",
        "rank": "species",
    }
    assert coco_category(4, rodent) == {"id": 4, "name": "rodent", "rank": "order"}


def test_control_characters_agrees_with_unicodedata_on_every_code_point() -> None:
    import unicodedata

    from projects.taxonomy import control_characters

    for code in range(0x110000):
        ch = chr(code)
        expected = unicodedata.category(ch) in ("Cc", "Cs")
        assert bool(control_characters(f"a{ch}b")) == expected, hex(code)
