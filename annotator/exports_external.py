"""Other tools' predictions in the exports (README "Existing AI output"): the newest imported
model's top prediction for a crop, per box where it classified boxes, else for its image."""

from __future__ import annotations

from collections.abc import Sequence

from detector.models import Crop
from detector.selectors_external import ExternalSuggestion, external_suggestions

# The crops CSV's last columns.
EXTERNAL_HEADER = ["external_model", "external_label", "external_score"]


def external_columns(suggestions: list[ExternalSuggestion]) -> list[object]:
    """external_model ("name version"), external_label, external_score of the first; blanks
    without one."""
    if not suggestions:
        return ["", "", ""]
    top = suggestions[0]
    return [f"{top.model} {top.version}", top.name, round(top.score, 4)]


def csv_external(crops: Sequence[Crop]) -> dict[int, list[object]]:
    """{crop id: its EXTERNAL_HEADER columns} (one query)."""
    return {c: external_columns(s) for c, s in external_suggestions(crops=crops, k=1).items()}


def coco_external(crops: Sequence[Crop]) -> dict[str, dict[str, object]]:
    """{COCO annotation id ("crop-N"): {"external_prediction": {model, label, score}}} for the
    crops with one (one query; none without crops)."""
    if not crops:
        return {}
    out: dict[str, dict[str, object]] = {}
    for crop_id, suggestions in external_suggestions(crops=crops, k=1).items():
        if suggestions:
            model, label, score = external_columns(suggestions)
            out[f"crop-{crop_id}"] = {
                "external_prediction": {"model": model, "label": label, "score": score}
            }
    return out
