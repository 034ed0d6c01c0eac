"""Reads of a project's taxonomy: its species as the taxonomy plan sees them, the ancestors
of each and which are higher taxa (ranks above species)."""

from __future__ import annotations

from projects.models import Project, Species, TaxonRank
from projects.taxonomy import Taxon, taxonomy_ancestors


def species_taxa(*, project: Project) -> list[Taxon]:
    """The project's species as ``projects.taxonomy.Taxon`` rows, in list order."""
    rows = Species.objects.filter(project=project).values_list(
        "id", "name", "scientific_name", "rank", "parent_id"
    )
    return [Taxon(*row) for row in rows]


def species_ancestors(*, project_id: int) -> dict[int, tuple[int, ...]]:
    """{species id: its ancestors' ids, nearest first} of every species of the project."""
    parents = dict(Species.objects.filter(project_id=project_id).values_list("id", "parent_id"))
    return taxonomy_ancestors(parents)


def species_higher_taxa(*, project_id: int) -> set[int]:
    """Ids of the project's taxa above species rank (genus, family, order, class): answers a
    volunteer may give when unsure, which the species classifier does not learn."""
    return set(
        Species.objects.filter(project_id=project_id)
        .exclude(rank=TaxonRank.SPECIES)
        .values_list("id", flat=True)
    )
