"""Other tools' prediction files for a project's real sample images (test helper).

Made in each tool's documented format: MegaDetector batch output 1.4 with ``classifications``
per box (the boxes are the project's own, as when detection ran from the same file), and
SpeciesNet's predictions JSON (``run_model --predictions_json``) with absolute file paths.
"""

from __future__ import annotations

import json
from typing import Any

from detector.models import Crop
from detector.services_external import external_predictions_import
from projects.models import Image, Project

FOX = "b1352069-a39c-4a84-a949-60044271c0c1;mammalia;carnivora;canidae;vulpes;vulpes;red fox"
AGOUTI = (
    "9e9d3d5e-1a8b-4f3c-9d36-3c2f4b0b8f61;mammalia;rodentia;dasyproctidae;dasyprocta;punctata;"
    "central american agouti"
)
MD_NAME = "md-classifier-test"
SN_VERSION = "4.0.1a"


def _is_fox(file_name: str) -> bool:
    return "Red_Fox" in file_name


def megadetector_file(project: Project) -> dict[str, Any]:
    """Every crop of ``project`` classified per box: foxes 0.83 red fox, agoutis 0.77 agouti."""
    images: dict[str, list[dict[str, Any]]] = {}
    for crop in Crop.objects.filter(project=project).select_related("image", "detection"):
        det = crop.detection
        first, second = ("0", "1") if _is_fox(crop.image.file_name) else ("1", "0")
        images.setdefault(crop.image.file_name, []).append(
            {
                "category": "1",
                "conf": det.confidence,
                "bbox": [det.x, det.y, det.w, det.h],
                "classifications": [[first, 0.83 if first == "0" else 0.77], [second, 0.11]],
            }
        )
    return {
        "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt", "classifier": MD_NAME},
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "classification_categories": {"0": "red fox", "1": "agouti"},
        "classification_category_descriptions": {"0": FOX, "1": AGOUTI},
        "images": [{"file": f, "detections": d} for f, d in images.items()],
    }


def speciesnet_file(project: Project) -> dict[str, Any]:
    """Every image of ``project`` classified whole: foxes 0.91 red fox, agoutis 0.64 agouti."""
    predictions = []
    for image in Image.objects.filter(project=project).order_by("id"):
        top, other = (FOX, AGOUTI) if _is_fox(image.file_name) else (AGOUTI, FOX)
        score = 0.91 if top == FOX else 0.64
        predictions.append(
            {
                "filepath": image.path,
                "classifications": {"classes": [top, other], "scores": [score, 0.05]},
                "detections": [],
                "prediction": top,
                "prediction_score": score,
                "prediction_source": "classifier",
                "model_version": SN_VERSION,
            }
        )
    return {"predictions": predictions}


def with_external(project: Project) -> None:
    """Import both files into ``project`` (agouti named by its scientific name only)."""
    project.species.filter(name="agouti").update(scientific_name="Dasyprocta punctata")
    for document, name in (
        (megadetector_file(project), "md.json"),
        (speciesnet_file(project), "sn.json"),
    ):
        external_predictions_import(
            project=project, raw=json.dumps(document).encode(), source_file=name
        )
