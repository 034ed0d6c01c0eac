"""A project's taxonomy without Django: the species CSV, its plan, and the hierarchy's checks.

Plain data in, dataclasses out. ``projects.services_taxonomy`` reads the database, calls these
and writes what they planned; a CSV with any problem is refused whole (``TaxonomyError`` lists
the problems) so that nothing changes.

The CSV (UTF-8, a header row) has the columns ``scientific_name``, ``common_name``, ``rank``
and ``parent``, and optionally ``taxon_id``; other columns are ignored. ``common_name`` may hold
several names separated by ``;`` or ``|`` (the first is the name pages show, for a new
species); ``rank`` is one of ``RANKS`` (empty: species); ``parent`` names another row's
scientific name or a species the project has (by scientific name or name), and is empty for a
taxon at the top.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

# From the most to the least specific; the values of projects.models.TaxonRank (a test checks).
RANKS: tuple[str, ...] = ("species", "genus", "family", "order", "class")
RANK_LEVEL: dict[str, int] = {rank: level for level, rank in enumerate(RANKS)}
SPECIES_RANK = RANKS[0]
REQUIRED_COLUMNS = ("scientific_name", "common_name", "rank", "parent")
OPTIONAL_COLUMNS = ("taxon_id",)
# Species.name and Species.scientific_name are CharField(max_length=200); taxon_id 300.
NAME_MAX = 200
TAXON_ID_MAX = 300
# Rows in one CSV: a project's list, not a world checklist (the pickers show every one).
ROWS_MAX = 5000
# Problems named in one error; the rest are counted.
PROBLEMS_SHOWN = 10
_SEPARATORS = re.compile(r"[;|]")

K = TypeVar("K")


class TaxonomyError(ValueError):
    """The CSV or the change was refused; ``problems`` says why, each naming its row.
    Nothing was changed."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:PROBLEMS_SHOWN])
        more = len(self.problems) - PROBLEMS_SHOWN
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))


@dataclass(frozen=True)
class TaxonRow:
    """One row of the species CSV, cleaned. ``line`` is its line in the file (the header is
    line 1); ``taxon_id`` is None when the file has no such column."""

    line: int
    scientific_name: str
    common_names: tuple[str, ...]
    rank: str
    parent: str
    taxon_id: str | None = None


@dataclass(frozen=True)
class Taxon:
    """A species the project has, as the plan sees it."""

    id: int
    name: str
    scientific_name: str
    rank: str
    parent_id: int | None


@dataclass(frozen=True)
class TaxonChange:
    """What one CSV row does: update ``species_id``, or create a species (None).

    The parent is ``parent_id`` (a species the project has) or ``parent_row`` (the index of
    another change in the plan, possibly a new species), or neither.
    """

    species_id: int | None
    name: str
    scientific_name: str
    common_names: tuple[str, ...]
    rank: str
    parent_id: int | None
    parent_row: int | None
    taxon_id: str | None


# Unicode's Cc (control) and Cs (surrogate) categories, as one character class: a search is
# several times faster than asking unicodedata about every character of a clean cell.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def control_characters(text: str) -> list[str]:
    """The control characters (and lone surrogates) in ``text``, as ``repr`` shows them."""
    if _CONTROL.search(text) is None:
        return []
    return sorted({repr(ch)[1:-1] for ch in text if unicodedata.category(ch) in ("Cc", "Cs")})


def name_clean(text: str, *, what: str, limit: int = NAME_MAX) -> tuple[str, list[str]]:
    """``text`` stripped with each run of spaces made one, and the problems with it."""
    bad = control_characters(text)
    if bad:
        return "", [f"{what} has control characters ({', '.join(bad)})"]
    clean = " ".join(text.split())
    if len(clean) > limit:
        return "", [f"{what} has more than {limit} characters"]
    return clean, []


def common_names_split(text: str) -> list[str]:
    """The names in a ``common_name`` cell: split at ``;`` or ``|``, stripped, empty ones and
    case-insensitive repeats dropped, in order."""
    names: list[str] = []
    seen: set[str] = set()
    for part in _SEPARATORS.split(text):
        name = " ".join(part.split())
        if name and name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names


def taxonomy_csv_parse(text: str) -> list[TaxonRow]:
    """The rows of a species CSV (see the module docstring), cleaned and checked one by one.

    Raises:
        TaxonomyError: a missing column, an empty file, a row without a scientific name, an
        unknown rank, a name with control characters or too long, the same scientific name
        twice (case-insensitively), more than ``ROWS_MAX`` rows, or a CSV the reader refuses.
    """
    text = text.removeprefix("\ufeff")  # Excel's UTF-8 byte-order mark
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise TaxonomyError([f"line 1: not a CSV the reader understands ({exc})"]) from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise TaxonomyError(
            [f"the header lacks {', '.join(missing)} (needs {', '.join(REQUIRED_COLUMNS)})"]
        )
    reader.fieldnames = header
    rows: list[TaxonRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if len(rows) >= ROWS_MAX:
                raise TaxonomyError([f"more than {ROWS_MAX} rows"])
            row, row_problems = _row_clean(record, line=line, taxon_column="taxon_id" in header)
            problems += [f"line {line}: {p}" for p in row_problems]
            if row is None:
                continue
            key = row.scientific_name.lower()
            if key in seen:
                problems.append(
                    f"line {line}: {row.scientific_name!r} is on line {seen[key]} already"
                )
                continue
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: not a CSV the reader understands ({exc})")
    if problems:
        raise TaxonomyError(problems)
    if not rows:
        raise TaxonomyError(["the file has no rows below its header"])
    return rows


def _row_clean(
    record: Mapping[str | None, object], *, line: int, taxon_column: bool
) -> tuple[TaxonRow | None, list[str]]:
    def cell(column: str) -> str:
        value = record.get(column)
        return value if isinstance(value, str) else ""

    problems: list[str] = []
    if record.get(None):
        problems.append("more cells than the header has columns")
    scientific, bad = name_clean(cell("scientific_name"), what="scientific_name")
    problems += bad
    if not bad and not scientific:
        problems.append("no scientific_name")
    names: list[str] = []
    raw_names = cell("common_name")
    bad = control_characters(raw_names)
    if bad:
        problems.append(f"common_name has control characters ({', '.join(bad)})")
    else:
        names = common_names_split(raw_names)
        problems += [f"common name {n[:20]!r}... is too long" for n in names if len(n) > NAME_MAX]
    rank = cell("rank").strip().lower() or SPECIES_RANK
    if rank not in RANK_LEVEL:
        problems.append(f"unknown rank {rank[:30]!r} (one of {', '.join(RANKS)})")
    parent, bad = name_clean(cell("parent"), what="parent")
    problems += bad
    taxon_id: str | None = None
    if taxon_column:
        taxon_id, bad = name_clean(cell("taxon_id"), what="taxon_id", limit=TAXON_ID_MAX)
        problems += bad
    if problems:
        return None, problems
    return TaxonRow(line, scientific, tuple(names), rank, parent, taxon_id), []


def taxonomy_plan(rows: Sequence[TaxonRow], existing: Sequence[Taxon]) -> list[TaxonChange]:
    """What ``rows`` do to a project whose species are ``existing``: one change per row.

    A row updates the species whose scientific name is the row's (case-insensitively), else
    the one whose name is one of the row's common names or its scientific name; otherwise it
    creates one, named by its first common name (else its scientific name). An updated
    species keeps its name; its other names become ``common_names``. A parent is another
    row (by scientific name) before a species the project has (by scientific name, then
    name).

    Raises:
        TaxonomyError: an unknown parent, two rows matching one species, a new name a species
        has already, a parent cycle, or a parent whose rank is not above its child's (the
        checks of ``hierarchy_problems`` on the project as the CSV would leave it).
    """
    by_scientific = {t.scientific_name.lower(): t for t in existing if t.scientific_name}
    by_name = {t.name.lower(): t for t in existing}
    problems: list[str] = []
    matched: dict[int, int] = {}  # species id -> line
    changes: list[TaxonChange] = []
    row_index = {row.scientific_name.lower(): i for i, row in enumerate(rows)}
    for row in rows:
        found = by_scientific.get(row.scientific_name.lower()) or next(
            (
                by_name[n.lower()]
                for n in (*row.common_names, row.scientific_name)
                if n.lower() in by_name
            ),
            None,
        )
        if found is not None and found.id in matched:
            problems.append(
                f"line {row.line}: matches species {found.name!r}, as line {matched[found.id]} does"
            )
            continue
        if found is not None:
            matched[found.id] = row.line
        name = found.name if found is not None else (row.common_names or (row.scientific_name,))[0]
        parent_id: int | None = None
        parent_row: int | None = None
        if row.parent:
            key = row.parent.lower()
            if key in row_index:
                parent_row = row_index[key]
            elif key in by_scientific or key in by_name:
                parent_id = (by_scientific.get(key) or by_name[key]).id
            else:
                problems.append(
                    f"line {row.line}: unknown parent {row.parent!r} (neither a row's "
                    "scientific_name nor a species of the project)"
                )
        changes.append(
            TaxonChange(
                species_id=found.id if found is not None else None,
                name=name,
                scientific_name=row.scientific_name,
                common_names=tuple(n for n in row.common_names if n.lower() != name.lower()),
                rank=row.rank,
                parent_id=parent_id,
                parent_row=parent_row,
                taxon_id=row.taxon_id,
            )
        )
    if problems:
        raise TaxonomyError(problems)
    problems += _names_taken(changes, existing, rows)
    problems += _plan_hierarchy_problems(changes, existing)
    if problems:
        raise TaxonomyError(problems)
    return changes


def _names_taken(
    changes: Sequence[TaxonChange], existing: Sequence[Taxon], rows: Sequence[TaxonRow]
) -> list[str]:
    """A new species whose name another species (new or existing) has: the names are unique."""
    taken = {t.name.lower(): t.name for t in existing}
    problems: list[str] = []
    for change, row in zip(changes, rows, strict=True):
        if change.species_id is not None:
            continue
        if change.name.lower() in taken:
            problems.append(
                f"line {row.line}: a species is called {change.name!r} already; give the row "
                "that species' scientific name to update it, or another first common name"
            )
        taken[change.name.lower()] = change.name
    return problems


def _plan_hierarchy_problems(
    changes: Sequence[TaxonChange], existing: Sequence[Taxon]
) -> list[str]:
    """``hierarchy_problems`` of the project as ``changes`` would leave it."""
    # Keys: ("s", species id) for a species the project has, ("r", index) for a new one.
    nodes: dict[tuple[str, int], tuple[str, tuple[str, int] | None]] = {
        ("s", t.id): (t.rank, ("s", t.parent_id) if t.parent_id is not None else None)
        for t in existing
    }
    labels: dict[tuple[str, int], str] = {("s", t.id): t.name for t in existing}
    for i, change in enumerate(changes):
        key = ("s", change.species_id) if change.species_id is not None else ("r", i)
        parent: tuple[str, int] | None = None
        if change.parent_row is not None:
            target = changes[change.parent_row]
            parent = (
                ("s", target.species_id)
                if target.species_id is not None
                else ("r", change.parent_row)
            )
        elif change.parent_id is not None:
            parent = ("s", change.parent_id)
        nodes[key] = (change.rank, parent)
        labels[key] = change.name
    return hierarchy_problems(nodes, labels)


def hierarchy_problems(
    nodes: Mapping[K, tuple[str, K | None]], labels: Mapping[K, str]
) -> list[str]:
    """The problems of a taxonomy: {key: (rank, parent key or None)}; ``labels`` names them.

    A parent must be a known key, not the taxon itself nor a descendant of it (a cycle), and
    of a higher rank (species < genus < family < order < class). Each cycle is named once.
    """
    problems: list[str] = []
    in_cycle: set[K] = set()
    for key in nodes:
        path: list[K] = []
        on_path: set[K] = set()
        current: K | None = key
        while current is not None and current not in on_path and current in nodes:
            if current in in_cycle:
                break
            path.append(current)
            on_path.add(current)
            current = nodes[current][1]
        if current is not None and current in on_path:
            cycle = path[path.index(current) :]
            if not in_cycle.intersection(cycle):
                names = " → ".join(labels.get(k, str(k)) for k in (*cycle, current))
                problems.append(f"a parent cycle: {names}")
            in_cycle.update(cycle)
    for key, (rank, parent) in nodes.items():
        if parent is None:
            continue
        name = labels.get(key, str(key))
        if parent not in nodes:
            problems.append(f"{name!r} has a parent that is not in the project")
        elif key not in in_cycle and RANK_LEVEL[nodes[parent][0]] <= RANK_LEVEL[rank]:
            problems.append(
                f"{name!r} ({rank}) cannot have {labels.get(parent, str(parent))!r} "
                f"({nodes[parent][0]}) as parent: a parent's rank is above its child's"
            )
    return problems


def taxonomy_ancestors(parents: Mapping[int, int | None]) -> dict[int, tuple[int, ...]]:
    """{taxon: its ancestors, nearest first} from {taxon: parent}; a cycle (which the checks
    above keep out) ends the walk where it repeats."""
    ancestors: dict[int, tuple[int, ...]] = {}
    for taxon in parents:
        chain: list[int] = []
        seen = {taxon}
        current = parents.get(taxon)
        while current is not None and current not in seen:
            chain.append(current)
            seen.add(current)
            current = parents.get(current)
        ancestors[taxon] = tuple(chain)
    return ancestors


class NamedTaxon(Protocol):
    """What ``coco_category`` reads of a species (``projects.models.Species`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def scientific_name(self) -> str: ...
    @property
    def rank(self) -> str: ...


def coco_category(category_id: int, taxon: NamedTaxon) -> dict[str, object]:
    """A taxon's COCO Camera Traps category: ``name`` (the name pages show), then the extra
    keys ``scientific_name`` (when known) and ``rank``, which COCO readers ignore."""
    extra = {"scientific_name": taxon.scientific_name} if taxon.scientific_name else {}
    return {"id": category_id, "name": taxon.name, **extra, "rank": taxon.rank}
