"""Writes of other tools' species predictions (SpeciesNet, MegaDetector classifiers, AddaxAI).

``external_predictions_import`` reads a file (``detector.external``), matches its images to the
project's by path, its boxes to the project's crops by overlap, and its labels to the project's
species by name, and stores the result as one ``ExternalModel`` with its
``ExternalPrediction`` rows: all or nothing, and importing the same model name and version
again replaces what was stored before.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from detector.evaluation import box_iou
from detector.external import (
    SPECIESNET,
    ExternalCategory,
    ExternalFile,
    ExternalFormatError,
    ExternalImage,
    ExternalScore,
    external_parse,
    name_key,
    path_suffixes,
)
from detector.models import Detection, ExternalModel, ExternalPrediction
from projects.models import Image, Project, Species, TaxonRank
from projects.services import SpeciesError, species_add

__all__ = [
    "IOU_MIN",
    "NOT_TAXA",
    "ExternalImportError",
    "ExternalImportResult",
    "external_predictions_import",
    "species_match",
]

# A classified box is the crop whose stored box overlaps it this much: boxes imported from the
# same file are identical (IoU 1); a re-run of the detector moves them by a pixel or two.
IOU_MIN = 0.9

# Predictions kept per image or crop and model (SpeciesNet gives its top 5 and the ensemble's).
RANKS_MAX = 10

# Labels that name no taxon (SpeciesNet's non-animal answers, MegaDetector's classes): listed
# as unmapped, never created as species.
NOT_TAXA = frozenset(
    name_key(n)
    for n in ("blank", "empty", "animal", "human", "person", "vehicle", "unknown", "no cv result")
)

# How many files or boxes one problem line names.
_NAMED = 5


class ExternalImportError(ValueError):
    """The file was refused; nothing was stored. The message says why."""


@dataclass(frozen=True)
class ExternalImportResult:
    """What an import stored: the model, how many images and predictions, whether it replaced
    an earlier import of the same name and version, the labels mapped to species
    ({label: species name}), the species created, and the problems (also on the model)."""

    model: ExternalModel
    replaced: bool
    images: int
    predictions: int
    mapped: dict[str, str]
    created: list[str]
    problems: list[str]


def species_match(
    categories: Iterable[ExternalCategory], species: Sequence[Species]
) -> dict[str, int | None]:
    """{category key: species id or None}: a category is the project species whose name,
    scientific name or one of whose common names equals (``name_key``: case, spaces and
    punctuation ignored) the category's scientific name, else its name, else its raw label.
    Where two species share a name the first in the project's order wins."""
    index: dict[str, int] = {}
    for s in species:
        for text in (s.scientific_name, s.name, *(s.common_names or [])):
            key = name_key(str(text))
            if key:
                index.setdefault(key, s.pk)
    result: dict[str, int | None] = {}
    for category in categories:
        found = None
        for text in (category.scientific_name, category.name, category.key):
            key = name_key(text)
            if key and key in index:
                found = index[key]
                break
        result[category.key] = found
    return result


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_NAMED])
    return shown + (f" and {len(items) - _NAMED} more" if len(items) > _NAMED else "")


def _image_index(project: Project) -> tuple[dict[str, int], dict[str, int]]:
    """(file name -> image id, absolute path -> image id) of the project's images."""
    by_name: dict[str, int] = {}
    by_path: dict[str, int] = {}
    for pk, file_name, path in Image.objects.filter(project=project).values_list(
        "pk", "file_name", "path"
    ):
        by_name[file_name.replace("\\", "/").lstrip("./")] = pk
        by_path[path.replace("\\", "/")] = pk
    return by_name, by_path


def _image_find(file: str, by_name: dict[str, int], by_path: dict[str, int]) -> int | None:
    """The project image a tool's path names: the same absolute path, else the longest trailing
    part of the path that is an image's file name (tools write paths from their own root)."""
    if file in by_path:
        return by_path[file]
    for suffix in path_suffixes(file):
        if suffix in by_name:
            return by_name[suffix]
    return None


def _boxes(image_ids: Iterable[int]) -> dict[int, list[tuple[int, tuple[float, ...]]]]:
    """Per image, the (crop id, box) of its live detections that have a crop."""
    out: dict[int, list[tuple[int, tuple[float, ...]]]] = defaultdict(list)
    rows = Detection.objects.filter(
        image_id__in=list(image_ids), dropped_at__isnull=True, crop__isnull=False
    ).values_list("image_id", "crop__id", "x", "y", "w", "h")
    for image_id, crop_id, x, y, w, h in rows:
        out[image_id].append((crop_id, (x, y, w, h)))
    return out


def _crop_for(
    box: Sequence[float], candidates: list[tuple[int, tuple[float, ...]]], taken: set[int]
) -> int | None:
    best, best_iou = None, IOU_MIN
    for crop_id, stored in candidates:
        iou = box_iou(box, stored)
        if crop_id not in taken and iou >= best_iou:
            best, best_iou = crop_id, iou
    return best


def _rows(
    scores: Sequence[ExternalScore], *, image_id: int, crop_id: int | None
) -> list[ExternalPrediction]:
    return [
        ExternalPrediction(
            image_id=image_id, crop_id=crop_id, label=s.category[:500], score=s.score, rank=i + 1
        )
        for i, s in enumerate(scores[:RANKS_MAX])
    ]


def _species_create(
    *, project: Project, categories: Iterable[ExternalCategory]
) -> dict[str, Species]:
    """Add each category (a taxon, not one of NOT_TAXA) as a species; {key: species}."""
    made: dict[str, Species] = {}
    ranks = set(TaxonRank.values)
    for category in categories:
        if name_key(category.name) in NOT_TAXA or name_key(category.key) in NOT_TAXA:
            continue
        try:
            species = species_add(project=project, name=category.name[:200])
        except SpeciesError as exc:
            raise ExternalImportError(f"cannot add species {category.name!r}: {exc}") from exc
        species.scientific_name = category.scientific_name[:200]
        if category.rank in ranks:
            species.rank = category.rank
        species.save(update_fields=["scientific_name", "rank"])
        made[category.key] = species
    return made


def external_predictions_import(
    *,
    project: Project,
    raw: bytes,
    source_file: str,
    format: str = "auto",
    name: str | None = None,
    version: str | None = None,
    user: User | None = None,
    create_species: bool = False,
) -> ExternalImportResult:
    """Store the predictions in ``raw`` (a MegaDetector or SpeciesNet JSON file's bytes).

    Images are matched by path (``_image_find``); a MegaDetector box by IoU >= ``IOU_MIN`` with
    a live detection of its image that has a crop (predictions then belong to that crop);
    SpeciesNet predicts per image (no crop). Labels map to species by ``species_match``;
    ``create_species`` adds the unmapped taxa as species first. ``name`` and ``version``
    default to the file's (``info.classifier``, SpeciesNet's ``model_version``), else
    "MegaDetector-format classifier" and the file's digest.

    Files, boxes and labels that cannot be used are listed in the result's ``problems`` (and on
    the model); the rest is stored. Importing the same name and version again replaces it.

    Raises:
        ExternalImportError: the file is not valid output of the format, or none of its
            predictions belongs to an image or crop of the project; nothing is stored then.
    """
    try:
        parsed = external_parse(raw, format=format)
    except ExternalFormatError as exc:
        raise ExternalImportError(f"{source_file}: {exc}") from exc
    model_name = (name or parsed.model_name or _default_name(parsed)).strip()[:200]
    model_version = (version or parsed.model_version or f"sha256:{parsed.sha256[:12]}").strip()
    model_version = model_version[:200]
    by_name, by_path = _image_index(project)
    problems: list[str] = []
    matched: list[tuple[int, ExternalImage]] = []
    missing: list[str] = []
    for item in parsed.images:
        image_id = _image_find(item.file, by_name, by_path)
        if image_id is None:
            missing.append(item.file)
        else:
            matched.append((image_id, item))
    if missing:
        problems.append(f"{len(missing)} images are not in the project: {_named(missing)}")
    if parsed.skipped:
        problems.append(
            f"{len(parsed.skipped)} images the tool could not classify: "
            + _named([f"{f} ({why})" for f, why in parsed.skipped])
        )
    rows, unmatched = _prediction_rows(matched)
    if unmatched:
        problems.append(
            f"{len(unmatched)} classified boxes match no crop (IoU < {IOU_MIN}); run detection "
            f"with this file first (detect --detector megadetector-json): {_named(unmatched)}"
        )
    if not rows:
        raise ExternalImportError(
            f"{source_file}: no prediction belongs to an image or crop of project "
            f"{project.name!r}; nothing imported. " + " ".join(problems)
        )
    used = Counter(r.label for r in rows)
    with transaction.atomic():
        created: dict[str, Species] = {}
        species = list(project.species.all())
        mapping = species_match((parsed.categories[k] for k in used), species)
        if create_species:
            todo = [parsed.categories[k] for k, sid in mapping.items() if sid is None]
            created = _species_create(project=project, categories=todo)
            mapping |= {k: s.pk for k, s in created.items()}
        unmapped = sorted((k for k, sid in mapping.items() if sid is None), key=lambda k: -used[k])
        if unmapped:
            problems.append(
                f"{len(unmapped)} labels match no species of the project (kept, shown by their "
                "name): " + _named([f"{parsed.categories[k].name} ({used[k]})" for k in unmapped])
            )
        model, made = ExternalModel.objects.get_or_create(
            project=project,
            name=model_name,
            version=model_version,
            defaults={"imported_at": timezone.now(), "format": parsed.format},
        )
        model.predictions.all().delete()
        model.format = parsed.format
        model.source_file = source_file[:500]
        model.sha256 = parsed.sha256
        model.mapping = {k: mapping[k] for k in sorted(mapping)}
        model.problems = problems
        model.imported_at = timezone.now()
        model.imported_by = user if user is not None and user.is_authenticated else None
        model.save()
        for row in rows:
            row.model = model
            row.species_id = mapping.get(row.label)
        ExternalPrediction.objects.bulk_create(rows, batch_size=2000)
    names = {s.pk: s.name for s in project.species.all()}
    return ExternalImportResult(
        model=model,
        replaced=not made,
        images=len({r.image_id for r in rows}),
        predictions=len(rows),
        mapped={k: names[sid] for k, sid in mapping.items() if sid is not None and sid in names},
        created=[s.name for s in created.values()],
        problems=problems,
    )


def _default_name(parsed: ExternalFile) -> str:
    return "SpeciesNet" if parsed.format == SPECIESNET else "MegaDetector-format classifier"


def _prediction_rows(
    matched: Sequence[tuple[int, ExternalImage]],
) -> tuple[list[ExternalPrediction], list[str]]:
    """The unsaved rows of the matched images, and the classified boxes that match no crop."""
    boxes = _boxes(image_id for image_id, _ in matched)
    rows: list[ExternalPrediction] = []
    unmatched: list[str] = []
    for image_id, item in matched:
        rows += _rows(item.scores, image_id=image_id, crop_id=None)
        taken: set[int] = set()
        for det in sorted(item.detections, key=lambda d: -d.confidence):
            crop_id = _crop_for(det.box, boxes.get(image_id, []), taken)
            if crop_id is None:
                unmatched.append(f"{item.file} {[round(v, 3) for v in det.box]}")
                continue
            taken.add(crop_id)
            rows += _rows(det.scores, image_id=image_id, crop_id=crop_id)
    return rows, unmatched
