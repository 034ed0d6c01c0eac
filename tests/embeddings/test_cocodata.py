"""Tests for embeddings.cocodata: labelled crops from COCO Camera Traps files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detector.cct import CctError
from embeddings.cocodata import CocoCropsError, CropSet, coco_crops

# The bundled demo sample (209 missouri-dev images); a plain path keeps Django out.
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "annotator" / "fixtures" / "missouri-sample"


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SAMPLE_DIR / "annotations.json").read_text())
    return document


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> CropSet:
    return coco_crops(
        SAMPLE_DIR / "annotations.json", SAMPLE_DIR, out_dir=tmp_path_factory.mktemp("crops")
    )


def test_sample_gives_203_labelled_crops(sample: CropSet) -> None:
    document = _document()
    names = {c["id"]: c["name"] for c in document["categories"]}
    images = {i["id"]: i for i in document["images"]}
    boxed = {str(a["id"]): a for a in document["annotations"] if a.get("bbox") is not None}
    assert len(sample) == len(boxed) == 203
    assert sample.skipped == []
    assert sample.labels.dtype == np.int64 and sample.labels.shape == (203,)
    assert sample.label_names == [names[i] for i in sorted(names)]
    assert sorted(sample.annotation_ids.tolist()) == sorted(boxed)
    for i, ann_id in enumerate(sample.annotation_ids):
        annotation = boxed[ann_id]
        image = images[annotation["image_id"]]
        assert sample.label_names[sample.labels[i]] == names[annotation["category_id"]]
        assert sample.seq_ids[i] == image["seq_id"]
        assert sample.image_files[i] == image["file_name"]
        assert sample.paths[i].is_file()
    assert len(set(sample.seq_ids.tolist())) == 21


def test_crop_covers_the_padded_box(sample: CropSet) -> None:
    document = _document()
    annotation = next(
        a for a in document["annotations"] if str(a["id"]) == sample.annotation_ids[0]
    )
    image = next(i for i in document["images"] if i["id"] == annotation["image_id"])
    x, y, w, h = annotation["bbox"]
    x0, x1 = max(0.0, x - 0.1 * w), min(image["width"], x + 1.1 * w)
    y0, y1 = max(0.0, y - 0.1 * h), min(image["height"], y + 1.1 * h)
    with Image.open(sample.paths[0]) as crop:
        assert crop.mode == "RGB"
        assert abs(crop.width - (math.ceil(x1) - math.floor(x0))) <= 1
        assert abs(crop.height - (math.ceil(y1) - math.floor(y0))) <= 1


def test_subset_keeps_rows_aligned(sample: CropSet) -> None:
    mask = sample.labels == sample.labels[0]
    part = sample.subset(mask)
    assert len(part) == int(mask.sum())
    assert (part.labels == sample.labels[0]).all()
    assert part.paths == [p for p, keep in zip(sample.paths, mask, strict=True) if keep]
    assert part.label_names == sample.label_names


def _small_set(tmp_path: Path, edit: Any) -> Path:
    """A copy of two sample sequences with the sample's JSON edited by ``edit``."""
    folder = tmp_path / "set"
    for seq in ("Red_Fox/SEQ75179", "Agouti/SEQ75520"):
        shutil.copytree(SAMPLE_DIR / "images" / seq, folder / "images" / seq)
    document = _document()
    kept = {i["id"] for i in document["images"] if "SEQ75179" in i["id"] or "SEQ75520" in i["id"]}
    document["images"] = [i for i in document["images"] if i["id"] in kept]
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] in kept]
    edit(document)
    (folder / "annotations.json").write_text(json.dumps(document))
    return folder


def test_unreadable_images_are_skipped_with_a_reason(tmp_path: Path) -> None:
    folder = _small_set(tmp_path, lambda d: None)
    full = coco_crops(folder / "annotations.json", folder, out_dir=tmp_path / "a")
    broken_file = full.image_files[0]
    (folder / broken_file).write_bytes(b"not a jpeg")
    lost = int((full.image_files == broken_file).sum())
    crops = coco_crops(folder / "annotations.json", folder, out_dir=tmp_path / "b")
    assert len(crops) == len(full) - lost
    assert crops.skipped and crops.skipped[0][0] == broken_file
    assert "cannot read image" in crops.skipped[0][1]


def test_missing_seq_id_falls_back_to_the_image_id(tmp_path: Path) -> None:
    def drop_seq(document: dict[str, Any]) -> None:
        for image in document["images"]:
            image.pop("seq_id", None)

    folder = _small_set(tmp_path, drop_seq)
    crops = coco_crops(folder / "annotations.json", folder, out_dir=tmp_path / "c")
    document = json.loads((folder / "annotations.json").read_text())
    by_file = {i["file_name"]: i["id"] for i in document["images"]}
    assert [by_file[f] for f in crops.image_files] == crops.seq_ids.tolist()


def test_box_outside_the_frame_is_skipped(tmp_path: Path) -> None:
    def move_box(document: dict[str, Any]) -> None:
        boxed = [a for a in document["annotations"] if a.get("bbox")]
        boxed[0]["bbox"] = [5000, 5000, 10, 10]
        boxed[0]["id"] = "far-away"

    folder = _small_set(tmp_path, move_box)
    crops = coco_crops(folder / "annotations.json", folder, out_dir=tmp_path / "d")
    assert [item[0] for item in crops.skipped] == ["far-away"]
    assert "far-away" not in crops.annotation_ids.tolist()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["annotations"].__setitem__(0, {**d["annotations"][0], "category_id": 999}),
            "unknown image or category",
        ),
        (lambda d: d.pop("categories"), "needs 'images'"),
        (lambda d: d["images"][0].__setitem__("file_name", "../../etc/passwd"), "inside"),
    ],
)
def test_malformed_files_raise(tmp_path: Path, edit: Any, message: str) -> None:
    folder = _small_set(tmp_path, edit)
    with pytest.raises(CocoCropsError, match=message):
        coco_crops(folder / "annotations.json", folder, out_dir=tmp_path / "e")


def test_unreadable_json_raises(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CocoCropsError, match="cannot read"):
        coco_crops(tmp_path / "bad.json", tmp_path, out_dir=tmp_path / "f")


def test_coco_crops_error_is_the_readers_error() -> None:
    assert CocoCropsError is CctError  # the commands' ``except CocoCropsError`` still catches


def test_box_without_category_raises(tmp_path: Path) -> None:
    def drop_category(document: dict[str, Any]) -> None:
        next(a for a in document["annotations"] if a.get("bbox")).pop("category_id")

    folder = _small_set(tmp_path, drop_category)
    with pytest.raises(CocoCropsError, match="has a box but no category"):
        coco_crops(folder / "annotations.json", folder, out_dir=tmp_path / "g")
