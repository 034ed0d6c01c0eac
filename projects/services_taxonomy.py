"""Writes of a project's taxonomy: the species CSV import and the species page's taxonomy edit.

The checks are ``projects.taxonomy``'s (Django-free); a refused import or edit raises
``TaxonomyError`` and changes nothing. Both take the project lock (``projects.locks``), as the
other species edits do.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from projects.locks import project_lock
from projects.models import Project, Species
from projects.selectors_taxonomy import species_taxa
from projects.taxonomy import (
    RANK_LEVEL,
    RANKS,
    TaxonChange,
    TaxonomyError,
    common_names_split,
    hierarchy_problems,
    name_clean,
    taxonomy_csv_parse,
    taxonomy_plan,
)

# A species CSV larger than this is refused before it is read (ROWS_MAX rows fit easily).
SPECIES_CSV_MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SpeciesImportReport:
    created: list[str]
    updated: list[str]


def species_csv_decode(*, data: bytes) -> str:
    """The text of an uploaded species CSV; TaxonomyError when too large or not UTF-8."""
    if len(data) > SPECIES_CSV_MAX_BYTES:
        raise TaxonomyError(
            [f"the file is larger than {SPECIES_CSV_MAX_BYTES // (1024 * 1024)} MiB"]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaxonomyError([f"the file is not UTF-8 text (byte {exc.start})"]) from exc


def species_import(*, project: Project, text: str) -> SpeciesImportReport:
    """Create or update the project's species from a species CSV (``projects.taxonomy``).

    Rows match existing species by scientific name, then by name (case-insensitively); new
    ones go to the end of the list. All or nothing: a CSV with any problem raises
    TaxonomyError (every problem, by line) and changes nothing.
    """
    rows = taxonomy_csv_parse(text)
    with transaction.atomic():
        project_lock(project_id=project.pk)  # one species writer at a time
        plan = taxonomy_plan(rows, species_taxa(project=project))
        saved = _plan_apply(project=project, plan=plan)
    return SpeciesImportReport(
        created=[s.name for s, c in zip(saved, plan, strict=True) if c.species_id is None],
        updated=[s.name for s, c in zip(saved, plan, strict=True) if c.species_id is not None],
    )


def _plan_apply(*, project: Project, plan: list[TaxonChange]) -> list[Species]:
    """Write ``plan``: new species first (parents may be among them), then every parent."""
    existing = {s.pk: s for s in Species.objects.filter(project=project)}
    last = max((s.position for s in existing.values()), default=-1)
    saved: list[Species] = []
    for change in plan:
        species = existing[change.species_id] if change.species_id is not None else None
        if species is None:
            last += 1
            species = Species(project=project, name=change.name, position=last)
        species.scientific_name = change.scientific_name
        species.common_names = list(change.common_names)
        species.rank = change.rank
        if change.taxon_id is not None:
            species.taxon_id = change.taxon_id
        species.save()
        saved.append(species)
    for species, change in zip(saved, plan, strict=True):
        if change.parent_row is not None:
            species.parent_id = saved[change.parent_row].pk
        else:
            species.parent_id = change.parent_id
        species.save(update_fields=["parent"])
    return saved


def species_taxonomy_set(
    *,
    project: Project,
    species_id: int,
    scientific_name: str,
    common_names: str,
    rank: str,
    parent_id: int | None,
) -> Species:
    """Set a species' scientific name, further common names (``;`` or ``|`` between them),
    rank and parent (a species of the project, or None).

    Raises:
        TaxonomyError: an unknown species, rank or parent, a name with control characters or
        too long, a scientific name another species has, or a parent that would make a cycle
        or is not of a higher rank (the species' children are checked against its new rank
        too). Nothing is changed then.
    """
    problems: list[str] = []
    scientific, bad = name_clean(scientific_name, what="the scientific name")
    problems += bad
    names, bad = name_clean(common_names.replace("\n", " "), what="the common names", limit=2000)
    problems += bad
    if rank not in RANK_LEVEL:
        problems.append(f"unknown rank {rank[:30]!r} (one of {', '.join(RANKS)})")
    if problems:
        raise TaxonomyError(problems)
    with transaction.atomic():
        project_lock(project_id=project.pk)
        taxa = {t.id: t for t in species_taxa(project=project)}
        if species_id not in taxa:
            raise TaxonomyError([f"species {species_id} is not in project {project.name!r}"])
        if parent_id is not None and parent_id not in taxa:
            raise TaxonomyError([f"species {parent_id} is not in project {project.name!r}"])
        if scientific and any(
            t.scientific_name.lower() == scientific.lower() and t.id != species_id
            for t in taxa.values()
        ):
            raise TaxonomyError([f"another species has the scientific name {scientific!r}"])
        nodes = {t.id: (t.rank, t.parent_id) for t in taxa.values()}
        nodes[species_id] = (rank, parent_id)
        problems = hierarchy_problems(nodes, {t.id: t.name for t in taxa.values()})
        if problems:
            raise TaxonomyError(problems)
        species = Species.objects.get(pk=species_id)
        species.scientific_name = scientific
        species.common_names = [
            n for n in common_names_split(names) if n.lower() != species.name.lower()
        ]
        species.rank = rank
        species.parent_id = parent_id
        species.save(update_fields=["scientific_name", "common_names", "rank", "parent"])
    return species
