"""Importing other tools' predictions: mapping to species, crops by box, problems, re-imports."""

from __future__ import annotations

import itertools
import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from detector.evaluation import box_iou
from detector.models import Crop, Detection, ExternalModel, ExternalPrediction
from detector.selectors_external import external_suggestions
from detector.services_external import ExternalImportError, external_predictions_import
from projects.models import Image, Project, Species
from tests.detector.test_external import BLANK, FOX, RODENT, md_document, sn_document

pytestmark = pytest.mark.django_db


@pytest.fixture
def traps(project: Project) -> tuple[Project, list[Crop]]:
    """Two images cam1/a.jpg (two crops) and cam1/b.jpg (one), species fox and agouti."""
    Species.objects.create(
        project=project, name="fox", scientific_name="Vulpes vulpes", common_names=["red fox"]
    )
    Species.objects.create(
        project=project, name="agouti", scientific_name="Dasyprocta punctata", position=1
    )
    crops = []
    boxes = {"cam1/a.jpg": [(0.1, 0.2, 0.3, 0.4), (0.6, 0.6, 0.2, 0.2)], "cam1/b.jpg": [(0.5,) * 4]}
    for file_name, image_boxes in boxes.items():
        image = Image.objects.create(
            project=project, path=f"/srv/{file_name}", file_name=file_name, width=100, height=80
        )
        for x, y, w, h in image_boxes:
            det = Detection.objects.create(
                image=image, x=x, y=y, w=w, h=h, confidence=0.9, detector_version="t"
            )
            crops.append(
                Crop.objects.create(
                    project=project, image=image, detection=det, file="c.jpg", padding=0.1
                )
            )
    return project, crops


def _raw(document: object) -> bytes:
    return json.dumps(document).encode()


def _import(project: Project, document: object, **kwargs: Any) -> Any:
    return external_predictions_import(
        project=project, raw=_raw(document), source_file="out.json", **kwargs
    )


def test_box_iou_against_a_pixel_count() -> None:
    """IoU of boxes on a 20x20 grid, against counting the covered cells."""
    grid = 20
    boxes = [(0, 0, 10, 10), (5, 5, 10, 10), (0, 5, 20, 5), (12, 0, 3, 20), (5, 5, 10, 10)]
    for a, b in itertools.product(boxes, repeat=2):
        cells_a = {(i, j) for i in range(a[0], a[0] + a[2]) for j in range(a[1], a[1] + a[3])}
        cells_b = {(i, j) for i in range(b[0], b[0] + b[2]) for j in range(b[1], b[1] + b[3])}
        expected = len(cells_a & cells_b) / len(cells_a | cells_b)
        got = box_iou([v / grid for v in a], [v / grid for v in b])
        assert got == pytest.approx(expected)


def test_megadetector_classifications_attach_to_the_crop_of_the_same_box(
    traps: tuple[Project, list[Crop]], admin_user: User
) -> None:
    project, crops = traps
    # The stored box moved a little (IoU about 0.95): still the same animal.
    document = md_document()
    document["images"][0]["detections"][0]["bbox"] = [0.1, 0.2, 0.3, 0.41]
    result = _import(project, document, user=admin_user)
    assert result.model.name == "fox-clf" and result.model.version.startswith("sha256:")
    assert result.model.imported_by == admin_user
    rows = list(ExternalPrediction.objects.order_by("rank"))
    assert [(r.crop_id, r.label, r.score, r.rank) for r in rows] == [
        (crops[0].pk, "fox", 0.7, 1),
        (crops[0].pk, "agouti", 0.2, 2),
    ]
    fox, agouti = Species.objects.get(name="fox"), Species.objects.get(name="agouti")
    assert [r.species_id for r in rows] == [fox.pk, agouti.pk]  # by scientific name
    assert result.mapped == {"fox": "fox", "agouti": "agouti"}
    # Not in the project, and the tool's own failure: reported, the rest stored.
    assert any("could not classify" in p for p in result.problems)
    suggestions = external_suggestions(crops=crops)
    assert [(s.name, s.score, s.per_image) for s in suggestions[crops[0].pk]] == [
        ("fox", 0.7, False),
        ("agouti", 0.2, False),
    ]
    assert suggestions[crops[1].pk] == [] and suggestions[crops[2].pk] == []


def test_boxes_matching_no_crop_are_problems(traps: tuple[Project, list[Crop]]) -> None:
    project, _ = traps
    document = md_document()
    extra = {"category": "1", "conf": 0.8, "bbox": [0.0, 0.0, 0.1, 0.1]}
    extra["classifications"] = [["0", 0.9]]
    document["images"][0]["detections"].append(extra)
    document["images"].append({"file": "elsewhere/z.jpg", "detections": [extra]})
    result = _import(project, document)
    assert result.predictions == 2
    assert any("1 classified boxes match no crop" in p for p in result.problems)
    assert any("1 images are not in the project: elsewhere/z.jpg" in p for p in result.problems)
    assert ExternalModel.objects.get().problems == result.problems


def test_speciesnet_per_image_by_path_suffix_and_common_names(
    traps: tuple[Project, list[Crop]],
) -> None:
    project, crops = traps
    result = _import(project, sn_document())
    assert (result.model.name, result.model.version) == ("SpeciesNet", "4.0.1a")
    fox = Species.objects.get(name="fox")
    rows = list(ExternalPrediction.objects.order_by("rank"))
    assert {r.crop_id for r in rows} == {None}
    assert {r.image.file_name for r in rows} == {"cam1/a.jpg"}
    assert [(r.label, r.species_id) for r in rows] == [(FOX, fox.pk), (RODENT, None), (BLANK, None)]
    assert any("2 labels match no species" in p and "rodent (1)" in p for p in result.problems)
    # Both crops of the image get the image's prediction; the crop of b.jpg none.
    suggestions = external_suggestions(crops=crops)
    assert [s.name for s in suggestions[crops[1].pk]] == ["fox", "rodent", "blank"]
    assert suggestions[crops[1].pk][0].per_image
    assert suggestions[crops[2].pk] == []


def test_create_species_adds_taxa_but_not_blank(traps: tuple[Project, list[Crop]]) -> None:
    project, _ = traps
    result = _import(project, sn_document(), create_species=True)
    assert result.created == ["rodent"]
    rodent = Species.objects.get(project=project, name="rodent")
    assert (rodent.scientific_name, rodent.rank) == ("Rodentia", "order")
    assert not Species.objects.filter(name="blank").exists()
    row = ExternalPrediction.objects.get(label=RODENT)
    assert row.species_id == rodent.pk


def test_reimport_replaces_and_a_new_version_adds(traps: tuple[Project, list[Crop]]) -> None:
    project, _ = traps
    first = _import(project, sn_document())
    assert not first.replaced
    document = sn_document()
    document["predictions"][0]["classifications"] = {"classes": [FOX], "scores": [0.6]}
    document["predictions"][0]["prediction_score"] = 0.6
    again = _import(project, document)
    assert again.replaced and again.model.pk == first.model.pk
    assert list(ExternalPrediction.objects.values_list("score", flat=True)) == [0.6]
    _import(project, document, version="4.0.2a")
    assert ExternalModel.objects.count() == 2
    assert ExternalPrediction.objects.count() == 2


def test_refused_file_changes_nothing(traps: tuple[Project, list[Crop]]) -> None:
    project, _ = traps
    _import(project, sn_document())
    before = list(ExternalPrediction.objects.values_list("pk", "score"))
    bad = sn_document()
    bad["predictions"][0]["prediction_score"] = "high"
    with pytest.raises(ExternalImportError, match="prediction_score"):
        _import(project, bad)
    elsewhere = sn_document()
    for i, entry in enumerate(elsewhere["predictions"]):
        entry["filepath"] = f"/other/x{i}.jpg"
    with pytest.raises(ExternalImportError, match="nothing imported"):
        _import(project, elsewhere, create_species=True)
    assert list(ExternalPrediction.objects.values_list("pk", "score")) == before
    assert not Species.objects.filter(name="rodent").exists()


def test_all_or_nothing_when_the_write_fails(
    traps: tuple[Project, list[Crop]], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = traps

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ExternalPrediction.objects, "bulk_create", boom)
    with pytest.raises(RuntimeError):
        _import(project, sn_document(), create_species=True)
    assert not ExternalModel.objects.exists()
    assert not Species.objects.filter(name="rodent").exists()


def test_command_imports_and_reports(traps: tuple[Project, list[Crop]], tmp_path: Any) -> None:
    project, _ = traps
    path = tmp_path / "speciesnet.json"
    path.write_text(json.dumps(sn_document()))
    out, err = StringIO(), StringIO()
    call_command("import_predictions", project.slug, str(path), stdout=out, stderr=err)
    assert "imported SpeciesNet 4.0.1a: 3 predictions on 1 images" in out.getvalue()
    assert "match no species" in err.getvalue()
    call_command(
        "import_predictions", project.slug, str(path), "--name", "SN", "--version", "x", stdout=out
    )
    assert ExternalModel.objects.filter(name="SN", version="x").exists()
    path.write_text("{")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("import_predictions", project.slug, str(path))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_predictions", project.slug, str(tmp_path / "missing.json"))


def test_a_merged_species_keeps_its_external_predictions(
    traps: tuple[Project, list[Crop]],
) -> None:
    from activelearn.services import species_merge

    project, crops = traps
    _import(project, sn_document(), create_species=True)
    rodent, fox = Species.objects.get(name="rodent"), Species.objects.get(name="fox")
    species_merge(project=project, source_id=rodent.pk, target_id=fox.pk)
    assert ExternalPrediction.objects.get(label=RODENT).species_id == fox.pk
