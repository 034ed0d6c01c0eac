"""Tests for detector.imported: MegaDetector JSON and COCO Camera Traps import."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from detector.base import Box, Detector, DetectorError, ImageDetections, UnknownFileError
from detector.imported import SUPPORTED_MEGADETECTOR_VERSIONS, ImportedDetector, normalise_relpath

MISSOURI = Path("/work/shared/data/missouri-dev/annotations.json")


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def md_document(version: str | None = "1.3") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "images": [
            {
                "file": "cam1\\IMG_0001.JPG",
                "detections": [
                    {"category": "1", "conf": 0.926, "bbox": [0.0, 0.2762, 0.1539, 0.2825]},
                    {"category": "2", "conf": 0.061, "bbox": [0.0451, 0.1849, 0.3642, 0.4636]},
                ],
            },
            {"file": "./cam1/IMG_0002.JPG", "detections": []},
            {"file": "cam2/IMG_0003.JPG", "detections": [], "failure": None},
            {"file": "cam2/IMG_0004.JPG", "failure": "Failure image access", "detections": None},
            {
                "file": "cam2/IMG_0005.JPG",
                # Slightly over the edge, as real detector output can be: clipped.
                "detections": [{"category": "3", "conf": 0.5, "bbox": [0.9, 0.5, 0.2, 0.25]}],
            },
        ],
    }
    if version is not None:
        doc["info"] = {"format_version": version, "detector": "md_v5a.0.0.pt"}
    return doc


def test_megadetector_parse(tmp_path: Path) -> None:
    path = write_json(tmp_path / "md.json", md_document())
    det = ImportedDetector.from_megadetector_json(path)
    assert isinstance(det, Detector)
    assert det.name == "megadetector-json"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert det.version == f"md.json@sha256:{digest}"
    assert det.source_detector == "md_v5a.0.0.pt"
    assert det.files == (
        "cam1/IMG_0001.JPG",
        "cam1/IMG_0002.JPG",
        "cam2/IMG_0003.JPG",
        "cam2/IMG_0004.JPG",
        "cam2/IMG_0005.JPG",
    )
    first, empty, clipped = det.detect(
        ["cam1/IMG_0001.JPG", "cam1/IMG_0002.JPG", "cam2/IMG_0005.JPG"]
    )
    assert first.boxes == (
        Box(x=0.0, y=0.2762, w=0.1539, h=0.2825, confidence=0.926, category="animal"),
        Box(x=0.0451, y=0.1849, w=0.3642, h=0.4636, confidence=0.061, category="person"),
    )
    assert empty == ImageDetections(file="cam1/IMG_0002.JPG", boxes=(), failure=None)
    (vehicle,) = clipped.boxes
    assert vehicle.category == "vehicle" and vehicle.x == 0.9 and vehicle.w == pytest.approx(0.1)


def test_megadetector_failure_reported(tmp_path: Path) -> None:
    det = ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", md_document()))
    assert det.failures == {"cam2/IMG_0004.JPG": "Failure image access"}
    (failed,) = det.detect(["cam2/IMG_0004.JPG"])
    assert failed.failure == "Failure image access" and failed.boxes == ()
    assert det.detect(["cam2/IMG_0003.JPG"])[0].failure is None


def test_detect_order_and_path_forms(tmp_path: Path) -> None:
    det = ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", md_document()))
    got = det.detect(
        ["cam2/IMG_0005.JPG", "cam1\\IMG_0001.JPG", "./cam1/IMG_0002.JPG", "cam2/IMG_0005.JPG"]
    )
    assert [d.file for d in got] == [
        "cam2/IMG_0005.JPG",
        "cam1/IMG_0001.JPG",
        "cam1/IMG_0002.JPG",
        "cam2/IMG_0005.JPG",
    ]
    with pytest.raises(UnknownFileError, match="nope.jpg"):
        det.detect(["cam1/IMG_0001.JPG", "nope.jpg"])
    with pytest.raises(KeyError):
        det.detect(["nope.jpg"])
    with pytest.raises(DetectorError, match="sequence"):
        det.detect("cam1/IMG_0001.JPG")


@pytest.mark.parametrize("version", SUPPORTED_MEGADETECTOR_VERSIONS)
def test_megadetector_supported_versions(tmp_path: Path, version: str) -> None:
    det = ImportedDetector.from_megadetector_json(
        write_json(tmp_path / "md.json", md_document(version))
    )
    assert len(det.files) == 5


@pytest.mark.parametrize("version", ["0.9", "1.7", "2.0", None])
def test_megadetector_unknown_version(tmp_path: Path, version: str | None) -> None:
    doc = md_document("1.0")
    doc["info"]["format_version"] = version
    if version is None:
        del doc["info"]["format_version"]
    with pytest.raises(DetectorError, match=r"supported versions: 1\.0, 1\.1, 1\.2, 1\.3, 1\.4"):
        ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", doc))


def test_megadetector_without_info_is_1_0(tmp_path: Path) -> None:
    det = ImportedDetector.from_megadetector_json(
        write_json(tmp_path / "md.json", md_document(None))
    )
    assert len(det.files) == 5 and det.source_detector is None


def test_megadetector_unlisted_category_skipped(tmp_path: Path) -> None:
    doc = md_document()
    doc["images"][1]["detections"] = [{"category": "9", "conf": 0.9, "bbox": [0.1, 0.1, 0.1, 0.1]}]
    det = ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", doc))
    assert det.detect(["cam1/IMG_0002.JPG"])[0].boxes == ()
    assert det.skipped_detections == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("images"), "no 'images' list"),
        (lambda d: d.pop("detection_categories"), "detection_categories"),
        (lambda d: d["detection_categories"].update({"4": "group"}), "'group'"),
        (lambda d: d["images"][0]["detections"][0].pop("conf"), "conf"),
        (lambda d: d["images"][1].pop("detections"), "detections"),
        (
            lambda d: d["images"].append({"file": "cam1/IMG_0001.JPG", "detections": []}),
            "more than once",
        ),
        (lambda d: d["images"][1].update(file="/abs/IMG.JPG"), "absolute"),
        (lambda d: d["images"][1].update(file="C:\\data\\IMG.JPG"), "absolute"),
        (lambda d: d["images"][1].update(file="../IMG.JPG"), "inside the image folder"),
        (lambda d: d["images"][1].update(frame_rate=20), "video"),
    ],
)
def test_megadetector_invalid(tmp_path: Path, mutate: Any, message: str) -> None:
    doc = md_document()
    mutate(doc)
    with pytest.raises(DetectorError, match=message):
        ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", doc))


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([0.1, 0.1, 0.0, 0.2], "positive width"),
        ([0.1, 0.1], "4 numbers"),
        ([1.5, 0.1, 0.1, 0.1], "outside"),
    ],
)
def test_megadetector_bad_box_fails_only_its_image(
    tmp_path: Path, bbox: list[float], message: str
) -> None:
    clean = ImportedDetector.from_megadetector_json(write_json(tmp_path / "a.json", md_document()))
    doc = md_document()
    doc["images"][0]["detections"][0]["bbox"] = bbox
    detector = ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", doc))
    first, *others = detector.detect(detector.files)
    assert first.boxes == () and first.failure is not None and message in first.failure
    assert others == clean.detect(clean.files)[1:]  # every other image as before


@pytest.mark.parametrize(
    ("bbox", "message"), [([10, 10, 0, 5], "positive width"), ([700, 10, 5, 5], "outside")]
)
def test_coco_bad_box_fails_only_its_image(tmp_path: Path, bbox: list[float], message: str) -> None:
    doc = coco_document()
    doc["annotations"][0]["bbox"] = bbox
    detector = ImportedDetector.from_coco_camera_traps(write_json(tmp_path / "cct.json", doc))
    results = dict(zip(detector.files, detector.detect(detector.files), strict=True))
    failed = [r for r in results.values() if r.failure is not None]
    assert len(failed) == 1 and message in (failed[0].failure or "")
    assert failed[0].boxes == ()


def test_coco_box_on_image_without_size_fails_only_that_image(tmp_path: Path) -> None:
    doc = coco_document()
    doc["annotations"].append({"image_id": "d", "bbox": [1, 1, 2, 2]})
    detector = ImportedDetector.from_coco_camera_traps(write_json(tmp_path / "cct.json", doc))
    failures = detector.failures
    assert len(failures) == 1 and "width" in next(iter(failures.values()))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="cannot read"):
        ImportedDetector.from_megadetector_json(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(DetectorError, match="not valid JSON"):
        ImportedDetector.from_coco_camera_traps(broken)


def coco_document() -> dict[str, Any]:
    return {
        "info": {"version": "1.0"},
        "categories": [{"id": 1, "name": "agouti"}],
        "images": [
            {"id": "a", "file_name": "images/a.jpg", "width": 640, "height": 480},
            {"id": "b", "file_name": "images\\b.jpg", "width": 640, "height": 480},
            {"id": 3, "file_name": "images/c.jpg", "width": 100, "height": 200},
            {"id": "d", "file_name": "images/d.jpg"},
        ],
        "annotations": [
            {"id": "1", "image_id": "a", "category_id": 1, "bbox": [64, 48, 320, 240]},
            {"id": "2", "image_id": "a", "category_id": 1, "bbox": [0, 0, 32, 24]},
            {"id": "3", "image_id": "b", "category_id": 1},
            {"id": "4", "image_id": 3, "category_id": 1, "bbox": [90, 150, 20, 100]},
        ],
    }


def test_coco_parse(tmp_path: Path) -> None:
    det = ImportedDetector.from_coco_camera_traps(
        write_json(tmp_path / "cct.json", coco_document())
    )
    assert det.name == "coco-camera-traps" and det.version.startswith("cct.json@sha256:")
    a, b, c, d = det.detect(["images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg"])
    assert a.boxes == (
        Box(x=0.1, y=0.1, w=0.5, h=0.5, confidence=1.0, category="animal"),
        Box(x=0.0, y=0.0, w=0.05, h=0.05, confidence=1.0, category="animal"),
    )
    assert b.boxes == () and b.failure is None  # annotation without bbox: no box
    (clipped,) = c.boxes  # 90 + 20 > 100 px wide, 150 + 100 > 200 px tall: clipped
    assert clipped.x == 0.9 and clipped.w == pytest.approx(0.1)
    assert clipped.y == 0.75 and clipped.h == pytest.approx(0.25)
    assert d.boxes == ()  # no annotation at all, and no size needed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["annotations"].append({"image_id": "zzz", "category_id": 1}),
            "'zzz' is not in 'images'",
        ),
        (lambda d: d["images"].append({"id": "a", "file_name": "x.jpg"}), "duplicate image id"),
        (
            lambda d: d["images"].append({"id": "z", "file_name": "images/a.jpg"}),
            "duplicate file_name",
        ),
        (lambda d: d.pop("annotations"), "annotations"),
    ],
)
def test_coco_invalid(tmp_path: Path, mutate: Any, message: str) -> None:
    doc = coco_document()
    mutate(doc)
    with pytest.raises(DetectorError, match=message):
        ImportedDetector.from_coco_camera_traps(write_json(tmp_path / "cct.json", doc))


def test_normalise_relpath() -> None:
    assert normalise_relpath("a\\b\\c.jpg") == "a/b/c.jpg"
    assert normalise_relpath("./a//b/./c.jpg") == "a/b/c.jpg"
    for bad in ("", "/x.jpg", "\\\\server\\share\\x.jpg", "D:/x.jpg", "a/../../x.jpg", "."):
        with pytest.raises(DetectorError):
            normalise_relpath(bad)


@pytest.mark.skipif(not MISSOURI.exists(), reason="missouri-dev data set not present")
def test_coco_real_missouri() -> None:
    det = ImportedDetector.from_coco_camera_traps(MISSOURI)
    assert len(det.files) == 748
    known, hidden = det.detect(
        [
            "images/Agouti/SEQ75520/SEQ75520_IMG_0001.JPG",
            "images/Agouti/SEQ75520/SEQ75520_IMG_0007.JPG",
        ]
    )
    # annotations.json: bbox [373.67, 498.37, 90.33, 124.44] in a 640 x 640 image.
    (b,) = known.boxes
    assert (b.x, b.y, b.w, b.h) == pytest.approx(
        (373.67 / 640, 498.37 / 640, 90.33 / 640, 124.44 / 640)
    )
    assert (b.confidence, b.category) == (1.0, "animal")
    assert hidden.boxes == ()  # the annotation for frame 7 has no bbox
    n_boxes = sum(len(d.boxes) for d in det.detect(list(det.files)))
    assert n_boxes == 637  # the README's count of animal boxes
    assert all(
        0.0 <= v <= 1.0 for d in det.detect(list(det.files)) for bx in d.boxes for v in (bx.x, bx.y)
    )


def test_megadetector_bad_entries_are_all_listed(tmp_path: Path) -> None:
    doc = md_document()
    del doc["images"][1]["file"]
    del doc["images"][2]["detections"]
    doc["images"][4]["detections"][0]["category"] = None
    doc["images"].append({"file": "cam1/IMG_0001.JPG", "detections": []})
    with pytest.raises(DetectorError) as exc:
        ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", doc))
    message = str(exc.value)
    assert message.startswith(f"{tmp_path / 'md.json'}: 4 bad image entries: ")
    for where in (
        "images[1]: missing required field 'file'",
        "images[2] (cam2/IMG_0003.JPG): missing required field 'detections'",
        "images[4] (cam2/IMG_0005.JPG) detection 0: field 'category' has the wrong type",
        "images[5]: image 'cam1/IMG_0001.JPG' appears more than once",
    ):
        assert where in message


def test_megadetector_detection_without_bbox_fails_only_its_image(tmp_path: Path) -> None:
    doc = md_document()
    del doc["images"][0]["detections"][1]["bbox"]
    detector = ImportedDetector.from_megadetector_json(write_json(tmp_path / "md.json", doc))
    assert detector.failures == {
        "cam1/IMG_0001.JPG": "images[0] (cam1/IMG_0001.JPG) detection 1: "
        "bbox must be a list of 4 numbers, got None",
        "cam2/IMG_0004.JPG": "Failure image access",
    }


def test_coco_unknown_category_ids_are_listed(tmp_path: Path) -> None:
    doc = coco_document()
    doc["annotations"][1]["category_id"] = 5
    doc["annotations"][3]["category_id"] = 5
    with pytest.raises(DetectorError, match=r"2 annotation\(s\) .* 5 in annotations\[1, 3\]"):
        ImportedDetector.from_coco_camera_traps(write_json(tmp_path / "cct.json", doc))
    del doc["categories"]  # a boxes-only file names no species: nothing to check
    assert (
        len(ImportedDetector.from_coco_camera_traps(write_json(tmp_path / "b.json", doc)).files)
        == 4
    )
