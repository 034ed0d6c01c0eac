"""Reads of other tools' species predictions (``detector.services_external`` stores them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Count, Q

from detector.external import taxon_parse
from detector.models import Crop, ExternalModel, ExternalPrediction
from projects.models import Project

__all__ = ["ExternalSuggestion", "external_models", "external_suggestions"]


@dataclass(frozen=True)
class ExternalSuggestion:
    """One of an external model's predictions for a crop, as the pages show it.

    ``species_id`` is None when the tool's label maps to no species of the project; ``name`` is
    then the tool's own (the common name of a SpeciesNet taxonomy string). ``per_image``: the
    tool predicted for the whole image (SpeciesNet), not for this crop's box.
    """

    model: str
    version: str
    species_id: int | None
    name: str
    label: str
    score: float
    per_image: bool


def external_models(*, project: Project) -> list[ExternalModel]:
    """The project's imported models, newest import first, with their prediction counts."""
    return list(
        ExternalModel.objects.filter(project=project)
        .annotate(n_predictions=Count("predictions"))
        .select_related("imported_by")
    )


def external_suggestions(
    *, crops: Sequence[Crop], k: int = 3
) -> dict[int, list[ExternalSuggestion]]:
    """{crop id: suggestions}: each imported model's top ``k`` for the crop, newest model
    first. A model's predictions for the crop's box win over its predictions for the crop's
    whole image; a model with neither is left out. One query whatever the number of crops."""
    crop_ids = [c.pk for c in crops]
    image_ids = {c.image_id for c in crops}
    rows = (
        ExternalPrediction.objects.filter(
            Q(crop_id__in=crop_ids) | Q(crop__isnull=True, image_id__in=image_ids)
        )
        .select_related("model", "species")
        .order_by("-model__imported_at", "-model_id", "rank")
    )
    by_crop: dict[tuple[int, int], list[ExternalPrediction]] = defaultdict(list)
    by_image: dict[tuple[int, int], list[ExternalPrediction]] = defaultdict(list)
    models: list[ExternalModel] = []
    for row in rows:
        if row.model not in models:
            models.append(row.model)
        if row.crop_id is not None:
            by_crop[(row.crop_id, row.model_id)].append(row)
        else:
            by_image[(row.image_id, row.model_id)].append(row)
    result: dict[int, list[ExternalSuggestion]] = {}
    for crop in crops:
        out: list[ExternalSuggestion] = []
        for model in models:
            own = by_crop.get((crop.pk, model.pk))
            chosen = own or by_image.get((crop.image_id, model.pk), [])
            out += [_suggestion(model, row, per_image=not own) for row in chosen[:k]]
        result[crop.pk] = out
    return result


def _suggestion(
    model: ExternalModel, row: ExternalPrediction, *, per_image: bool
) -> ExternalSuggestion:
    name = row.species.name if row.species is not None else taxon_parse(row.label).name
    return ExternalSuggestion(
        model=model.name,
        version=model.version,
        species_id=row.species_id,
        name=name,
        label=row.label,
        score=row.score,
        per_image=per_image,
    )
