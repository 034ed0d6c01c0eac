"""The readers of other tools' predictions, against tiny files in each tool's documented format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from detector.external import (
    ExternalFormatError,
    external_parse,
    format_detect,
    name_key,
    path_suffixes,
    taxon_parse,
)

FOX = "b1352069-a39c-4a84-a949-60044271c0c1;mammalia;carnivora;canidae;vulpes;vulpes;red fox"
RODENT = "3ee5a4c3-2ba4-4a82-a6a1-0b1b3b0aa0a0;mammalia;rodentia;;;;rodent"
BLANK = "f1856211-cfb7-4a5b-9158-c0f72fd09ee6;;;;;;blank"


def md_document(**overrides: Any) -> dict[str, Any]:
    """MegaDetector batch output 1.4 with two classified boxes, as the format's page shows it."""
    document: dict[str, Any] = {
        "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt", "classifier": "fox-clf"},
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "classification_categories": {"0": "fox", "1": "agouti"},
        "classification_category_descriptions": {
            "0": "animalia;chordata;mammalia;carnivora;canidae;vulpesvulpes",
            "1": "animalia;chordata;mammalia;rodentia;dasyproctidae;dasyproctapunctata",
        },
        "images": [
            {
                "file": "cam1\\a.jpg",
                "detections": [
                    {
                        "category": "1",
                        "conf": 0.9,
                        "bbox": [0.1, 0.2, 0.3, 0.4],
                        "classifications": [["1", 0.2], ["0", 0.7]],
                    },
                    {"category": "1", "conf": 0.05, "bbox": [0.5, 0.5, 0.1, 0.1]},
                ],
            },
            {"file": "cam1/b.jpg", "detections": []},
            {"file": "cam1/c.jpg", "failure": "Failure image access", "detections": None},
        ],
    }
    document.update(overrides)
    return document


def sn_document() -> dict[str, Any]:
    """SpeciesNet predictions (run_model --predictions_json), one image classified, one failed."""
    return {
        "predictions": [
            {
                "filepath": "/data/traps/cam1/a.jpg",
                "classifications": {"classes": [FOX, RODENT, BLANK], "scores": [0.8, 0.15, 0.05]},
                "detections": [
                    {"category": "1", "label": "animal", "conf": 0.9, "bbox": [0.1, 0.2, 0.3, 0.4]}
                ],
                "prediction": FOX,
                "prediction_score": 0.8,
                "prediction_source": "classifier",
                "model_version": "4.0.1a",
            },
            {
                "filepath": "/data/traps/cam1/b.jpg",
                "failures": ["CLASSIFIER", "DETECTOR"],
                "model_version": "4.0.1a",
            },
        ]
    }


def _raw(document: object) -> bytes:
    return json.dumps(document).encode()


def test_name_key_ignores_case_spaces_and_punctuation() -> None:
    assert name_key("Vulpes vulpes") == name_key("vulpesvulpes") == name_key("VULPES_VULPES")
    assert name_key("Vulpes vulpes") != name_key("Vulpes lagopus")


def test_path_suffixes_longest_first_any_separator() -> None:
    assert path_suffixes("C:\\traps\\cam1\\a.jpg") == ["traps/cam1/a.jpg", "cam1/a.jpg", "a.jpg"]
    assert path_suffixes("/data/./a.jpg") == ["data/a.jpg", "a.jpg"]


def test_taxon_strings() -> None:
    fox = taxon_parse(FOX)
    assert (fox.name, fox.scientific_name, fox.rank) == ("red fox", "Vulpes vulpes", "species")
    rodent = taxon_parse(RODENT)
    assert (rodent.name, rodent.scientific_name, rodent.rank) == ("rodent", "Rodentia", "order")
    blank = taxon_parse(BLANK)
    assert (blank.name, blank.scientific_name, blank.rank) == ("blank", "", "")
    lineage = taxon_parse("animalia;chordata;mammalia;carnivora;canidae;vulpesvulpes")
    assert lineage.scientific_name == "vulpesvulpes"
    assert taxon_parse("fox").name == "fox"


def test_megadetector_classifications_per_box_best_first() -> None:
    parsed = external_parse(_raw(md_document()))
    assert parsed.format == "megadetector"
    assert parsed.model_name == "fox-clf"
    assert [i.file for i in parsed.images] == ["cam1/a.jpg"]  # boxes without species left out
    (det,) = parsed.images[0].detections
    assert det.box == (0.1, 0.2, 0.3, 0.4)
    assert [(s.category, s.score) for s in det.scores] == [("fox", 0.7), ("agouti", 0.2)]
    fox = parsed.categories["fox"]
    assert fox.scientific_name == "vulpesvulpes" and fox.name == "fox"
    assert parsed.skipped == (("cam1/c.jpg", "Failure image access"),)


def test_megadetector_speciesnet_style_descriptions() -> None:
    """run_md_and_speciesnet names categories by common name, described by the taxonomy."""
    document = md_document(
        classification_categories={"0": "red fox", "1": "rodent"},
        classification_category_descriptions={"0": FOX, "1": RODENT},
    )
    parsed = external_parse(_raw(document), format="megadetector")
    assert parsed.categories["red fox"].scientific_name == "Vulpes vulpes"
    assert parsed.categories["rodent"].rank == "order"


def test_speciesnet_per_image_ensemble_first() -> None:
    parsed = external_parse(_raw(sn_document()))
    assert parsed.format == "speciesnet"
    assert (parsed.model_name, parsed.model_version) == ("SpeciesNet", "4.0.1a")
    (image,) = parsed.images
    assert image.file == "/data/traps/cam1/a.jpg"
    assert [s.category for s in image.scores] == [FOX, RODENT, BLANK]  # the prediction once
    assert image.detections == ()
    assert parsed.categories[FOX].name == "red fox"
    assert parsed.skipped == (("/data/traps/cam1/b.jpg", "CLASSIFIER, DETECTOR"),)


def test_speciesnet_rolled_up_prediction_kept_before_the_classes() -> None:
    document = sn_document()
    document["predictions"][0]["prediction"] = RODENT
    document["predictions"][0]["prediction_score"] = 0.95
    parsed = external_parse(_raw(document), format="speciesnet")
    scores = parsed.images[0].scores
    assert [(s.category, s.score) for s in scores][:2] == [(RODENT, 0.95), (FOX, 0.8)]


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "neither MegaDetector output"),
        (_raw({"images": []}), "no 'classification_categories'"),
        (_raw(md_document(info={"format_version": "2.0"})), "unsupported MegaDetector"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(ExternalFormatError, match=message):
        external_parse(raw)


def _md_with_det(**det: Any) -> bytes:
    base = {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]}
    return _raw(md_document(images=[{"file": "x.jpg", "detections": [base | det]}]))


@pytest.mark.parametrize(
    "det,message",
    [
        ({"classifications": [["9", 0.5]]}, "category '9' is not in classification_categories"),
        ({"classifications": [["0", 1.5]]}, r"not in \[0, 1\]"),
        ({"classifications": [["0"]]}, r"must be \[category id, score\]"),
        ({"classifications": [["0", 0.5]], "bbox": [0.9, 0.9, 0.5, 0.5]}, "not a normalised box"),
        ({"classifications": "fox"}, "must be a list"),
    ],
)
def test_bad_megadetector_entries_name_the_image(det: dict[str, Any], message: str) -> None:
    with pytest.raises(ExternalFormatError, match=r"images\[0\] \(x.jpg\) detection 0") as exc:
        external_parse(_md_with_det(**det))
    assert exc.match(message)


def test_bad_speciesnet_entries_are_all_listed() -> None:
    document = sn_document()
    document["predictions"][0]["classifications"]["scores"] = [0.8]
    document["predictions"].append({"filepath": "/data/traps/cam1/a.jpg"})
    document["predictions"].append({"prediction": FOX})
    with pytest.raises(ExternalFormatError, match="3 problems") as exc:
        external_parse(_raw(document), format="speciesnet")
    assert exc.match("3 classes but 1 scores")
    assert exc.match("appears more than once")
    assert exc.match(r"predictions\[3\]: 'filepath' must be a non-empty string")


def test_format_detect_and_unknown_format() -> None:
    assert format_detect(md_document()) == "megadetector"
    assert format_detect(sn_document()) == "speciesnet"
    with pytest.raises(ExternalFormatError, match="unknown format"):
        external_parse(b"{}", format="coco")
    with pytest.raises(ExternalFormatError, match="no 'predictions' list"):
        external_parse(_raw(md_document()), format="speciesnet")
