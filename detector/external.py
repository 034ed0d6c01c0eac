"""Readers for species predictions other tools made: no Django, plain data in, dataclasses out.

Two documented formats are read:

* MegaDetector batch output with classifications (https://lila.science/megadetector-output-format,
  written by the MegaDetector tools' classifiers, by SpeciesNet run through
  ``run_md_and_speciesnet`` and by AddaxAI): ``classification_categories`` {id: name},
  optionally ``classification_category_descriptions`` {id: taxonomy string}, and per detection
  ``classifications``: ``[[category id, score], ...]`` in descending score. These predict per
  box.
* SpeciesNet's own predictions JSON (``speciesnet.scripts.run_model --predictions_json``):
  ``{"predictions": [{"filepath", "classifications": {"classes", "scores"}, "prediction",
  "prediction_score", "prediction_source", "model_version", "failures", ...}]}``. Classes are
  taxonomy strings ``uuid;class;order;family;genus;species;common name``. These predict per
  image.

A reader returns an ``ExternalFile``; any structural problem raises ``ExternalFormatError``
naming where (``images[3] detection 0: ...``) and nothing is returned. Paths are kept as the
tool wrote them (backslashes turned into slashes); matching them to a project's images is the
caller's job (``path_suffixes``).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FORMATS",
    "ExternalCategory",
    "ExternalDetection",
    "ExternalFile",
    "ExternalFormatError",
    "ExternalImage",
    "ExternalScore",
    "external_parse",
    "format_detect",
    "name_key",
    "path_suffixes",
    "taxon_parse",
]

MEGADETECTOR = "megadetector"
SPECIESNET = "speciesnet"
FORMATS: tuple[str, ...] = (MEGADETECTOR, SPECIESNET)

# The ranks of a SpeciesNet taxonomy string after its uuid, most general first.
_TAXON_RANKS = ("class", "order", "family", "genus", "species")

# How many of a file's problems one error message lists.
_LISTED = 20


class ExternalFormatError(ValueError):
    """The file is not valid output of the format read; the message says where and why."""


@dataclass(frozen=True)
class ExternalCategory:
    """One class the tool can predict.

    Attributes:
        key: the raw label as the file names it (a MegaDetector category name, or a SpeciesNet
            taxonomy string); predictions refer to it.
        name: a readable name: the common name where the file gives one, else ``key``.
        scientific_name: "Genus species", or the most specific taxon named ("Rodentia"); empty
            when the file gives no taxonomy.
        rank: "species", "genus", "family", "order", "class", or "" when unknown.
    """

    key: str
    name: str
    scientific_name: str = ""
    rank: str = ""


@dataclass(frozen=True)
class ExternalScore:
    """One prediction: a category (``ExternalCategory.key``) and its score in [0, 1]."""

    category: str
    score: float


@dataclass(frozen=True)
class ExternalDetection:
    """A box the tool classified: normalised [x, y, w, h] and its classifications, best first."""

    box: tuple[float, float, float, float]
    confidence: float
    scores: tuple[ExternalScore, ...]


@dataclass(frozen=True)
class ExternalImage:
    """One image's predictions: per image (``scores``) and per box (``detections``)."""

    file: str
    scores: tuple[ExternalScore, ...] = ()
    detections: tuple[ExternalDetection, ...] = ()


@dataclass(frozen=True)
class ExternalFile:
    """A whole file read.

    Attributes:
        format: "megadetector" or "speciesnet".
        model_name, model_version: as the file names them (``info.classifier`` for
            MegaDetector files, "SpeciesNet" and ``model_version`` for SpeciesNet); empty when
            it names none.
        sha256: the file's digest (hex), to tell files apart.
        categories: key -> category, every class a prediction refers to.
        images: the images with at least one prediction, in file order.
        skipped: images the tool failed on, as (file, why).
    """

    format: str
    model_name: str
    model_version: str
    sha256: str
    categories: dict[str, ExternalCategory]
    images: tuple[ExternalImage, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def name_key(text: str) -> str:
    """A name as compared across tools: lower case, letters and digits only.

    "Vulpes vulpes", "vulpes_vulpes" and MegaDetector's "vulpesvulpes" all give "vulpesvulpes".
    """
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def path_suffixes(path: str) -> list[str]:
    """The trailing parts of ``path``, longest first: "/a/b/c.jpg" -> ["a/b/c.jpg", "b/c.jpg",
    "c.jpg"]. Backslashes count as separators; empty and "." parts are dropped."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive letter
        parts = parts[1:]
    return ["/".join(parts[i:]) for i in range(len(parts))]


def taxon_parse(label: str) -> ExternalCategory:
    """A category from a taxonomy string, or from a plain name.

    SpeciesNet strings ``uuid;class;order;family;genus;species;common name`` give the common
    name and the scientific name of the most specific rank filled ("Vulpes vulpes" for a
    species, "Rodentia" for an order). Other ``;``-separated strings (MegaDetector category
    descriptions such as ``animalia;chordata;mammalia;carnivora;canidae;vulpesvulpes``) give
    their last part as the scientific name, rank unknown. A plain name is its own name.
    """
    text = label.strip()
    parts = [p.strip() for p in text.split(";")]
    if len(parts) == 7:
        taxa, common = parts[1:6], parts[6]
        filled = [i for i, p in enumerate(taxa) if p]
        scientific, rank = "", ""
        if filled:
            last = filled[-1]
            rank = _TAXON_RANKS[last]
            if rank == "species":
                scientific = f"{taxa[3].capitalize()} {taxa[4].lower()}".strip()
            else:
                scientific = taxa[last].capitalize()
        return ExternalCategory(
            key=text, name=common or scientific or text, scientific_name=scientific, rank=rank
        )
    if len(parts) > 1:
        lowest = next((p for p in reversed(parts) if p), "")
        return ExternalCategory(key=text, name=lowest or text, scientific_name=lowest)
    return ExternalCategory(key=text, name=text)


def format_detect(document: object) -> str:
    """ "megadetector" or "speciesnet" by the document's shape; ExternalFormatError if neither."""
    if isinstance(document, dict):
        if isinstance(document.get("predictions"), list):
            return SPECIESNET
        if isinstance(document.get("images"), list):
            return MEGADETECTOR
    raise ExternalFormatError(
        "neither MegaDetector output (an object with an 'images' list) nor SpeciesNet "
        "predictions (an object with a 'predictions' list)"
    )


def external_parse(raw: bytes, *, format: str = "auto") -> ExternalFile:
    """Read a predictions file's bytes in ``format`` ("auto", "megadetector", "speciesnet").

    Raises:
        ExternalFormatError: not JSON, not the format, or invalid entries (all listed, up to 20).
    """
    if format not in ("auto", *FORMATS):
        raise ExternalFormatError(f"unknown format {format!r}; use auto, {', '.join(FORMATS)}")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExternalFormatError(f"not valid JSON: {exc}") from exc
    kind = format_detect(document) if format == "auto" else format
    digest = hashlib.sha256(raw).hexdigest()
    if kind == MEGADETECTOR:
        return _megadetector(document, sha256=digest)
    return _speciesnet(document, sha256=digest)


# --- shared checks ----------------------------------------------------------------------------


def _score(value: object, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ExternalFormatError(f"{where}: score {value!r} is not a number")
    score = float(value)
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ExternalFormatError(f"{where}: score {value!r} is not in [0, 1]")
    return score


def _text(mapping: Mapping[str, Any], key: str, *, where: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ExternalFormatError(f"{where}: {key!r} must be a non-empty string")
    return value


def _entry_file(
    entry: object, key: str, *, seen: set[str], where: str
) -> tuple[dict[str, Any], str, str]:
    """(entry, its file path with forward slashes, ``where`` naming the file); the path is
    added to ``seen``. ExternalFormatError for a non-object, a missing path, a repeated one."""
    if not isinstance(entry, dict):
        raise ExternalFormatError(f"{where}: each entry must be an object")
    file = _text(entry, key, where=where).replace("\\", "/")
    where = f"{where} ({file})"
    if file in seen:
        raise ExternalFormatError(f"{where}: the image appears more than once")
    seen.add(file)
    return entry, file, where


def _raise_all(errors: list[str]) -> None:
    if errors:
        more = f"; and {len(errors) - _LISTED} more" if len(errors) > _LISTED else ""
        raise ExternalFormatError(
            f"{len(errors)} problem{'s' if len(errors) != 1 else ''}: "
            + "; ".join(errors[:_LISTED])
            + more
        )


# --- MegaDetector batch output ----------------------------------------------------------------


def _md_categories(document: Mapping[str, Any]) -> dict[str, ExternalCategory]:
    """classification_categories (and descriptions) as category id -> ExternalCategory."""
    raw = document.get("classification_categories")
    if not isinstance(raw, dict) or not raw:
        raise ExternalFormatError(
            "no 'classification_categories': this MegaDetector file has boxes only, no species "
            "(import it with the detect command instead)"
        )
    descriptions = document.get("classification_category_descriptions") or {}
    if not isinstance(descriptions, dict):
        raise ExternalFormatError("'classification_category_descriptions' must be an object")
    categories: dict[str, ExternalCategory] = {}
    for cat_id, name in raw.items():
        if not isinstance(name, str) or not name.strip():
            raise ExternalFormatError(f"classification category {cat_id!r} has no name")
        description = descriptions.get(cat_id)
        if isinstance(description, str) and description.strip():
            taxon = taxon_parse(description)
            common = name.strip() if ";" not in name else taxon.name
            categories[str(cat_id)] = ExternalCategory(
                key=name.strip(),
                name=common,
                scientific_name=taxon.scientific_name,
                rank=taxon.rank,
            )
        else:
            taxon = taxon_parse(name)
            categories[str(cat_id)] = ExternalCategory(
                key=name.strip(),
                name=taxon.name,
                scientific_name=taxon.scientific_name,
                rank=taxon.rank,
            )
    return categories


def _md_box(value: object, *, where: str) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4:
        raise ExternalFormatError(f"{where}: 'bbox' must be 4 numbers [x, y, w, h]")
    numbers_ = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ExternalFormatError(f"{where}: 'bbox' must be 4 numbers [x, y, w, h]")
        numbers_.append(float(v))
    x, y, w, h = numbers_
    if w <= 0 or h <= 0 or x < -0.01 or y < -0.01 or x + w > 1.01 or y + h > 1.01:
        raise ExternalFormatError(f"{where}: bbox {value} is not a normalised box in the frame")
    return x, y, w, h


def _md_detection(
    det: object, *, ids: Mapping[str, ExternalCategory], where: str
) -> ExternalDetection | None:
    if not isinstance(det, dict):
        raise ExternalFormatError(f"{where}: a detection must be an object")
    classifications = det.get("classifications")
    if not classifications:
        return None  # a box without species: nothing to import
    if not isinstance(classifications, list):
        raise ExternalFormatError(f"{where}: 'classifications' must be a list")
    scores: list[ExternalScore] = []
    for j, pair in enumerate(classifications):
        at = f"{where} classification {j}"
        if not isinstance(pair, list) or len(pair) != 2:
            raise ExternalFormatError(f"{at}: must be [category id, score]")
        category = ids.get(str(pair[0]))
        if category is None:
            raise ExternalFormatError(
                f"{at}: category {pair[0]!r} is not in classification_categories"
            )
        scores.append(ExternalScore(category.key, _score(pair[1], where=at)))
    scores.sort(key=lambda s: -s.score)
    return ExternalDetection(
        box=_md_box(det.get("bbox"), where=where),
        confidence=_score(det.get("conf", 0.0), where=f"{where} conf"),
        scores=tuple(scores),
    )


def _megadetector(document: object, *, sha256: str) -> ExternalFile:
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise ExternalFormatError("not MegaDetector output: no 'images' list")
    info = document.get("info", {})
    if not isinstance(info, dict):
        raise ExternalFormatError("'info' must be an object")
    version = info.get("format_version", "1.0")
    if not str(version).startswith("1."):
        raise ExternalFormatError(f"unsupported MegaDetector format_version {version!r} (1.x)")
    ids = _md_categories(document)
    images: list[ExternalImage] = []
    skipped: list[tuple[str, str]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(document["images"]):
        where = f"images[{i}]"
        try:
            entry, file, where = _entry_file(entry, "file", seen=seen, where=where)
            if entry.get("failure"):
                skipped.append((file, str(entry["failure"])))
                continue
            raw = entry.get("detections")
            if not isinstance(raw, list):
                raise ExternalFormatError(f"{where}: 'detections' must be a list")
            detections = [
                d
                for k, det in enumerate(raw)
                if (d := _md_detection(det, ids=ids, where=f"{where} detection {k}")) is not None
            ]
        except ExternalFormatError as exc:
            errors.append(str(exc))
            continue
        if detections:
            images.append(ExternalImage(file=file, detections=tuple(detections)))
    _raise_all(errors)
    classifier = info.get("classifier")
    return ExternalFile(
        format=MEGADETECTOR,
        model_name=str(classifier) if isinstance(classifier, str) else "",
        model_version="",
        sha256=sha256,
        categories={c.key: c for c in ids.values()},
        images=tuple(images),
        skipped=tuple(skipped),
    )


# --- SpeciesNet predictions -------------------------------------------------------------------


def _sn_scores(
    entry: Mapping[str, Any], *, categories: dict[str, ExternalCategory], where: str
) -> tuple[ExternalScore, ...]:
    """The ensemble's final prediction first, then the classifier's top classes not yet listed."""
    scores: list[ExternalScore] = []
    prediction = entry.get("prediction")
    if prediction is not None:
        if not isinstance(prediction, str) or not prediction.strip():
            raise ExternalFormatError(f"{where}: 'prediction' must be a taxonomy string")
        score = _score(entry.get("prediction_score"), where=f"{where} prediction_score")
        scores.append(ExternalScore(prediction.strip(), score))
    classifications = entry.get("classifications")
    if classifications is not None:
        if not isinstance(classifications, dict):
            raise ExternalFormatError(f"{where}: 'classifications' must be an object")
        classes = classifications.get("classes")
        values = classifications.get("scores")
        if not isinstance(classes, list) or not isinstance(values, list):
            raise ExternalFormatError(
                f"{where}: 'classifications' needs 'classes' and 'scores' lists"
            )
        if len(classes) != len(values):
            raise ExternalFormatError(
                f"{where}: {len(classes)} classes but {len(values)} scores in 'classifications'"
            )
        listed = {s.category for s in scores}
        for j, (label, value) in enumerate(zip(classes, values, strict=True)):
            if not isinstance(label, str) or not label.strip():
                raise ExternalFormatError(f"{where}: classes[{j}] must be a taxonomy string")
            score = _score(value, where=f"{where} scores[{j}]")
            if label.strip() not in listed:
                listed.add(label.strip())
                scores.append(ExternalScore(label.strip(), score))
    for s in scores:
        if s.category not in categories:
            categories[s.category] = taxon_parse(s.category)
    return tuple(scores)


def _speciesnet(document: object, *, sha256: str) -> ExternalFile:
    if not isinstance(document, dict) or not isinstance(document.get("predictions"), list):
        raise ExternalFormatError("not SpeciesNet predictions: no 'predictions' list")
    categories: dict[str, ExternalCategory] = {}
    images: list[ExternalImage] = []
    skipped: list[tuple[str, str]] = []
    errors: list[str] = []
    versions: set[str] = set()
    seen: set[str] = set()
    for i, entry in enumerate(document["predictions"]):
        where = f"predictions[{i}]"
        try:
            entry, file, where = _entry_file(entry, "filepath", seen=seen, where=where)
            version = entry.get("model_version")
            if isinstance(version, str) and version:
                versions.add(version)
            scores = _sn_scores(entry, categories=categories, where=where)
        except ExternalFormatError as exc:
            errors.append(str(exc))
            continue
        if scores:
            images.append(ExternalImage(file=file, scores=scores))
        else:
            failures = entry.get("failures") or ["no classification"]
            skipped.append((file, ", ".join(str(f) for f in failures)))
    _raise_all(errors)
    return ExternalFile(
        format=SPECIESNET,
        model_name="SpeciesNet",
        model_version=", ".join(sorted(versions)),
        sha256=sha256,
        categories=categories,
        images=tuple(images),
        skipped=tuple(skipped),
    )
