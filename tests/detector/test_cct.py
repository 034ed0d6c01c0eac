"""Tests for detector.cct: the one COCO Camera Traps reader, on tiny hand-written files."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from detector.base import Box, DetectorError
from detector.cct import CctError, cct_box, cct_parse, cct_read

NAN, INF = float("nan"), float("inf")  # json.dumps writes them as the literals NaN, Infinity


def _document() -> dict[str, Any]:
    return {
        "info": {"version": "1.0"},
        "categories": [{"id": 2, "name": " fox "}, {"id": 1, "name": "agouti"}],
        "images": [
            {
                "id": "a",
                "file_name": "cam\\a.jpg",
                "width": 200,
                "height": 100,
                "seq_id": "s1",
                "frame_num": 1,
            },
            {"id": 7, "file_name": "./cam/b.jpg", "width": 200, "height": 100},
        ],
        "annotations": [
            {"id": 10, "image_id": "a", "category_id": 2, "bbox": [20, 10, 100, 50]},
            {"id": "11", "image_id": 7, "category_id": 1},
        ],
    }


def _write(tmp_path: Path, document: object, name: str = "cct.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_reads_a_valid_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _document())
    doc = cct_read(path)
    assert doc.source == str(path)
    assert doc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    a, b = doc.images
    assert (a.index, a.id, a.file_name, a.seq_id, a.frame_num) == (0, "a", "cam/a.jpg", "s1", 1)
    assert (b.index, b.id, b.file_name, b.seq_id, b.frame_num) == (1, 7, "cam/b.jpg", "", None)
    assert (a.sequence, b.sequence) == ("s1", "7")  # no seq_id: the image is its own sequence
    assert a.record["file_name"] == "cam\\a.jpg"  # the entry as written
    first, second = doc.annotations
    assert (first.id, first.image_index, first.category_id, first.bbox) == (
        "10",
        0,
        2,
        [20, 10, 100, 50],
    )
    assert (second.id, second.image_index, second.category_id, second.bbox) == ("11", 1, 1, None)
    assert doc.categories is not None
    assert [(c.id, c.name) for c in doc.categories] == [(2, "fox"), (1, "agouti")]  # file order
    assert [c.name for c in doc.categories_by_id()] == ["agouti", "fox"]
    assert doc.record["info"] == {"version": "1.0"}


def test_the_document_is_frozen_and_a_copy(tmp_path: Path) -> None:
    data = _document()
    doc = cct_parse(data, source="mem")
    with pytest.raises(dataclasses.FrozenInstanceError):
        doc.images[0].file_name = "x.jpg"  # type: ignore[misc]
    with pytest.raises(TypeError):
        doc.images[0].record["file_name"] = "x.jpg"  # type: ignore[index]
    data["images"][0]["file_name"] = "changed.jpg"
    assert doc.images[0].record["file_name"] == "cam\\a.jpg"
    assert doc.sha256 == ""


def test_optional_lists(tmp_path: Path) -> None:
    boxes_only = _document()
    del boxes_only["categories"]
    boxes_only["annotations"][0]["category_id"] = 99  # nothing to check it against
    doc = cct_read(_write(tmp_path, boxes_only), optional=("categories",))
    assert doc.categories is None and doc.categories_by_id() == []
    no_annotations = _document()
    del no_annotations["annotations"]
    assert cct_read(_write(tmp_path, no_annotations), optional=("annotations",)).annotations == ()
    null_categories = {**_document(), "categories": None}
    assert cct_parse(null_categories, source="mem", optional=("categories",)).categories is None
    with pytest.raises(CctError, match="'categories' must be a list"):
        cct_parse({**_document(), "categories": {}}, source="mem", optional=("categories",))
    with pytest.raises(ValueError, match="may be optional"):
        cct_read(_write(tmp_path, _document()), optional=("images",))


def test_images_without_ids_are_allowed(tmp_path: Path) -> None:
    """The importer reads files that name images only by file_name."""
    data = {"images": [{"file_name": "x.jpg"}, {"file_name": "y.jpg"}], "categories": []}
    doc = cct_read(_write(tmp_path, data), optional=("annotations",))
    assert [(i.id, i.sequence) for i in doc.images] == [(None, "x.jpg"), (None, "y.jpg")]


def _mutated(edit: Any) -> dict[str, Any]:
    document = copy.deepcopy(_document())
    edit(document)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], r"not COCO Camera Traps JSON \(needs 'images', .* its top level is not an object\)"),
        (
            _mutated(lambda d: d.pop("annotations")),
            r"needs 'images', 'annotations' and 'categories' lists",
        ),
        (_mutated(lambda d: d.__setitem__("images", {})), "needs 'images'"),
        (_mutated(lambda d: d["images"].append("x.jpg")), r"images\[2\] must be an object"),
        (_mutated(lambda d: d["images"].append({"id": 3})), r"images\[2\] has no file_name"),
        (
            _mutated(lambda d: d["images"].append({"id": 3, "file_name": "/abs/x.jpg"})),
            r"images\[2\]: image path must be relative",
        ),
        (
            _mutated(lambda d: d["images"].append({"id": 3, "file_name": "../x.jpg"})),
            r"images\[2\]: image path must stay inside",
        ),
        (
            _mutated(lambda d: d["images"].append({"id": 1.5, "file_name": "x.jpg"})),
            r"images\[2\]: id must be a string or an integer, got 1\.5",
        ),
        (
            _mutated(lambda d: d["images"].append({"file_name": "x.jpg", "frame_num": "two"})),
            r"images\[2\] \(x\.jpg\): frame_num must be a whole number >= 0 or null, got 'two'",
        ),
        (
            _mutated(lambda d: d["images"].append({"id": 3, "file_name": "cam/a.jpg"})),
            r"duplicate file_name in 'images', file_name listed more than once: cam/a\.jpg",
        ),
        (
            _mutated(lambda d: d["images"].append({"id": 7, "file_name": "c.jpg"})),
            r"duplicate image id in 'images', id listed more than once: 7",
        ),
        (
            _mutated(lambda d: d["categories"].append({"id": 3})),
            r"categories\[2\] needs an id and a name",
        ),
        (
            _mutated(lambda d: d["categories"].append({"id": [3], "name": "x"})),
            r"categories\[2\]: id must be a string or an integer",
        ),
        (_mutated(lambda d: d["annotations"].append(5)), r"annotations\[2\] must be an object"),
        (
            _mutated(lambda d: d["annotations"].append({"category_id": 1})),
            r"annotations\[2\] has no image_id",
        ),
        (
            _mutated(lambda d: d["annotations"].append({"image_id": "a", "category_id": True})),
            r"annotations\[2\]: category_id must be a string or an integer, got True",
        ),
        (
            _mutated(lambda d: d["annotations"].append({"image_id": "zzz"})),
            r"unknown image or category: image_id 'zzz' is not in 'images' \(annotations\[2\]\)",
        ),
        (
            _mutated(
                lambda d: d["annotations"].extend(
                    [
                        {"image_id": "a", "category_id": 5},
                        {"image_id": 7, "category_id": "1"},
                        {"image_id": 7, "category_id": 5},
                        {"image_id": 7, "category_id": None},
                    ]
                )
            ),
            r"4 annotation\(s\) name a category_id that is not in 'categories': "
            r"5 in annotations\[2, 4\]; '1' in annotations\[3\]; None in annotations\[5\]",
        ),
    ],
)
def test_refusals_name_the_problem(tmp_path: Path, document: object, message: str) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(CctError, match=message) as exc:
        cct_read(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CctError, match="cannot read COCO Camera Traps JSON"):
        cct_read(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CctError, match="cannot read COCO Camera Traps JSON: not valid JSON"):
        cct_read(broken)


def test_long_lists_are_cut(tmp_path: Path) -> None:
    data = _document()
    data["images"] += [{"id": f"d{i}", "file_name": "cam/a.jpg"} for i in range(12)]
    with pytest.raises(CctError, match=r"cam/a\.jpg, cam/a\.jpg .*and 2 more$"):
        cct_read(_write(tmp_path, data))


def test_the_error_is_a_detector_error() -> None:
    """Callers that catch DetectorError or ValueError catch a refused file too."""
    assert issubclass(CctError, DetectorError) and issubclass(CctError, ValueError)


def test_cct_box_normalises_and_clips() -> None:
    image = cct_parse(_document(), source="mem").images[0]  # 200 x 100
    assert cct_box(image, [20, 10, 100, 50], where="here") == Box(
        x=0.1, y=0.1, w=0.5, h=0.5, confidence=1.0, category="animal"
    )
    clipped = cct_box(image, [150, 0, 100, 50], where="here")
    assert clipped.x == 0.75 and clipped.w == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("size", "bbox", "message"),
    [
        ({}, [1, 1, 2, 2], "here image: missing required field 'width'"),
        ({"width": "200", "height": 100}, [1, 1, 2, 2], "field 'width' has the wrong type"),
        ({"width": 0, "height": 100}, [1, 1, 2, 2], "here: image size must be positive"),
        ({"width": 200, "height": 100}, [1, 1, 2], "here: bbox must be a list of 4 numbers"),
        ({"width": 200, "height": 100}, [1, 1, 0, 2], "here: box must have positive width"),
        ({"width": 200, "height": 100}, [500, 1, 2, 2], "here: box .* lies outside"),
        ({"width": NAN, "height": 100}, [1, 1, 2, 2], "'width' must be a finite number, got nan"),
        ({"width": 200, "height": INF}, [1, 1, 2, 2], "'height' must be a finite number, got inf"),
        ({"width": 200, "height": 100}, [1, NAN, 2, 2], "here: .*finite"),
    ],
)
def test_cct_box_refusals_are_per_box(size: dict[str, Any], bbox: object, message: str) -> None:
    data = {"images": [{"id": 1, "file_name": "x.jpg", **size}], "annotations": []}
    image = cct_parse(data, source="mem", optional=("categories",)).images[0]
    with pytest.raises(DetectorError, match=message) as exc:
        cct_box(image, bbox, where="here")
    assert not isinstance(exc.value, CctError)  # a bad box fails its image, not the file


def _image(**fields: Any) -> dict[str, Any]:
    return {"images": [{"id": 1, "file_name": "x.jpg", **fields}], "categories": []}


@pytest.mark.parametrize(
    ("fields", "seq_id", "sequence", "frame_num"),
    [
        ({"seq_id": None, "frame_num": None}, "", "1", None),  # null: none, not "None"
        ({"seq_id": "  ", "frame_num": 0}, "", "1", 0),  # blank: none
        ({"seq_id": 12, "frame_num": 3.0}, "12", "12", 3),  # pandas' 3.0 is frame 3
        ({"seq_id": "S1", "frame_num": "4"}, "S1", "S1", 4),
        ({"seq_id": "None"}, "None", "None", None),  # a real id spelled None stays one
    ],
)
def test_sequence_fields_are_read_as_meant(
    tmp_path: Path, fields: dict[str, Any], seq_id: str, sequence: str, frame_num: int | None
) -> None:
    path = _write(tmp_path, _image(**fields))
    (image,) = cct_read(path, optional=("annotations",)).images
    assert (image.seq_id, image.sequence, image.frame_num) == (seq_id, sequence, frame_num)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_image(frame_num=NAN), r"images\[0\] \(x\.jpg\): frame_num must be .*, got nan"),
        (_image(frame_num=INF), "frame_num must be a whole number >= 0 or null, got inf"),
        (_image(frame_num=-INF), "frame_num must be a whole number >= 0 or null, got -inf"),
        (_image(frame_num=-1), "frame_num must be a whole number >= 0 or null, got -1"),
        (_image(frame_num=2.5), "frame_num must be a whole number >= 0 or null, got 2.5"),
        (_image(frame_num=True), "frame_num must be a whole number >= 0 or null, got True"),
        (_image(frame_num="-3"), "frame_num must be a whole number >= 0 or null, got '-3'"),
        (_image(seq_id=NAN), r"images\[0\] \(x\.jpg\): seq_id must be .*, got nan"),
        (_image(seq_id=1.5), "seq_id must be a string, an integer or null, got 1.5"),
        (_image(seq_id=False), "seq_id must be a string, an integer or null, got False"),
        (_image(seq_id=["a"]), r"seq_id must be a string, an integer or null, got \['a'\]"),
        (
            {"images": [], "categories": [{"id": 3, "name": None}]},
            r"categories\[0\] \(id 3\): name must be a string, got None",
        ),
        (
            {"images": [], "categories": [{"id": 3, "name": NAN}]},
            r"categories\[0\] \(id 3\): name must be a string, got nan",
        ),
    ],
)
def test_non_finite_and_null_values_are_refused_with_the_image_named(
    tmp_path: Path, document: object, message: str
) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(CctError, match=message):
        cct_read(path, optional=("annotations",))
