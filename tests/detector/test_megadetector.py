"""Tests for detector.megadetector: loading and running MegaDetector checkpoints.

Real MegaDetector weights cannot be downloaded in CI, so the inference tests build a
small randomly initialised model of the same format (a YOLOv5 P6 model with MegaDetector's
three classes, pickled as the YOLOv5 repository pickles it) and run the real loading and
inference code on it. Those tests need the optional ``megadetector`` extra and are skipped
without it. ``test_real_weights_find_animals`` needs a real MDv5 file: set
``TRAPWISE_MEGADETECTOR_WEIGHTS=/path/to/md_v5a.0.0.pt`` to run it.
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from detector.base import CATEGORIES, Detector, DetectorError, box_validate
from detector.megadetector import (
    INSTALL_HINT,
    MegaDetector,
    MegaDetectorNotInstalledError,
    ModelUnavailableError,
)

SAMPLE = Path(__file__).resolve().parents[2] / "annotator" / "fixtures" / "missouri-sample"
IMAGES = SAMPLE / "images"
TWO_FILES = [
    "Ocelot/SEQ75294/SEQ75294_IMG_0001.JPG",
    "Agouti\\SEQ75520\\SEQ75520_IMG_0003.JPG",  # backslashes are accepted
]
EXTRA_MISSING = f"the optional 'megadetector' extra is not installed ({INSTALL_HINT})"


@pytest.fixture(autouse=True, scope="module")
def _pil_open_restored() -> Any:
    """These tests import yolov5/ultralytics directly too; ultralytics replaces PIL.Image.open
    on import. Put it back so that tests of other modules see the real one."""
    from PIL import Image as PILImage

    original = PILImage.open
    yield
    PILImage.open = original  # type: ignore[method-assign]


def _yolov5_yolo() -> Any:
    """The yolov5 model module under the name MDv5 checkpoints pickle ("models.yolo")."""
    pytest.importorskip("yolov5", reason=EXTRA_MISSING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("yolov5.models.yolo")  # puts "models" on sys.path
        return importlib.import_module("models.yolo")


def make_md5_like_checkpoint(path: Path, *, cfg: str = "yolov5n6.yaml") -> Path:
    """Save a random YOLOv5 P6 model with MegaDetector's classes as MDv5 files are saved.

    Objectness biases are raised so the random model yields boxes above the 0.005 floor,
    which exercises NMS, rescaling and box conversion.
    """
    torch = pytest.importorskip("torch")
    yolo = _yolov5_yolo()
    cfg_path = Path(yolo.__file__).parent / "hub" / cfg
    torch.manual_seed(0)
    model = yolo.Model(str(cfg_path), ch=3, nc=3)
    model.names = list(CATEGORIES)
    detect = model.model[-1]
    with torch.no_grad():
        for conv in detect.m:
            conv.bias.view(detect.na, -1)[:, 4] = 2.0
    # YOLOv5's train.py saves a half-precision model inside a dict.
    torch.save({"epoch": -1, "model": model.half(), "optimizer": None}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_md5_like_checkpoint(tmp_path_factory.mktemp("md") / "md_random.pt")


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> MegaDetector:
    return MegaDetector(root=IMAGES, weights=checkpoint, device="cpu", image_size=640)


def test_detects_on_sample_images(detector: MegaDetector, checkpoint: Path) -> None:
    import hashlib

    assert isinstance(detector, Detector)
    assert detector.backend == "yolov5"
    assert detector.name == "megadetector"
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    assert detector.version == f"md_random.pt@sha256:{sha}"

    results = detector.detect(TWO_FILES)

    assert [r.file for r in results] == [
        "Ocelot/SEQ75294/SEQ75294_IMG_0001.JPG",
        "Agouti/SEQ75520/SEQ75520_IMG_0003.JPG",
    ]
    for result in results:
        assert result.failure is None
        assert result.boxes, "the biased random model should give boxes"
        assert len(result.boxes) <= 300  # NMS max_det
        confidences = [b.confidence for b in result.boxes]
        assert confidences == sorted(confidences, reverse=True)
        for box in result.boxes:
            assert box_validate(box) == box  # valid, normalised, inside the frame
            assert box.category in CATEGORIES
            assert box.confidence >= 0.005


def test_batches_give_the_same_boxes(checkpoint: Path) -> None:
    one = MegaDetector(root=IMAGES, weights=checkpoint, device="cpu", image_size=640, batch_size=1)
    two = MegaDetector(root=IMAGES, weights=checkpoint, device="cpu", image_size=640, batch_size=2)
    a, b = one.detect(TWO_FILES), two.detect(TWO_FILES)
    for x, y in zip(a, b, strict=True):
        assert len(x.boxes) == len(y.boxes)
        for bx, by in zip(x.boxes[:20], y.boxes[:20], strict=True):
            assert bx.category == by.category
            assert bx.confidence == pytest.approx(by.confidence, abs=1e-4)
            assert bx.x == pytest.approx(by.x, abs=2e-3)


def test_unreadable_image_fails_alone(detector: MegaDetector, tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "cam").mkdir(parents=True)
    (root / "cam" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = IMAGES / TWO_FILES[0]
    (root / "cam" / "good.jpg").write_bytes(good.read_bytes())
    detector_here = MegaDetector(
        root=root, weights=detector.weights_path, device="cpu", image_size=640
    )

    results = detector_here.detect(["cam/broken.jpg", "cam/good.jpg", "cam/missing.jpg"])

    assert [r.file for r in results] == ["cam/broken.jpg", "cam/good.jpg", "cam/missing.jpg"]
    assert results[0].failure and "cannot read image" in results[0].failure
    assert results[0].boxes == ()
    assert results[1].failure is None and results[1].boxes
    assert results[2].failure and results[2].boxes == ()


def test_paths_outside_root_are_refused(detector: MegaDetector) -> None:
    with pytest.raises(DetectorError):
        detector.detect(["../secrets.jpg"])
    with pytest.raises(DetectorError):
        detector.detect(["/etc/passwd"])
    assert detector.detect([]) == []


def test_default_input_size_is_megadetectors(checkpoint: Path) -> None:
    md = MegaDetector(root=IMAGES, weights=checkpoint, device="cpu")
    assert md.image_size == 1280
    assert md.device == "cpu"
    (result,) = md.detect(TWO_FILES[:1])
    assert result.failure is None
    assert all(box_validate(b) == b for b in result.boxes)


def test_device_defaults_to_cuda_when_available(checkpoint: Path) -> None:
    torch = pytest.importorskip("torch")
    md = MegaDetector(root=IMAGES, weights=checkpoint, image_size=640)
    assert md.device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_non_megadetector_model_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    yolo = _yolov5_yolo()
    model = yolo.Model(str(Path(yolo.__file__).parent / "hub" / "yolov5n6.yaml"), ch=3, nc=80)
    path = tmp_path / "coco.pt"
    torch.save({"model": model.half()}, path)
    with pytest.raises(ModelUnavailableError, match="80 classes"):
        MegaDetector(root=IMAGES, weights=path, device="cpu")


def test_not_a_checkpoint_is_model_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("yolov5", reason=EXTRA_MISSING)
    path = tmp_path / "junk.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(ModelUnavailableError, match="cannot load"):
        MegaDetector(root=IMAGES, weights=path, device="cpu")


# -- errors that do not need the extra ------------------------------------------------


def test_missing_weights_file_says_where_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "md_v5a.0.0.pt"
    with pytest.raises(ModelUnavailableError) as info:
        MegaDetector(root=IMAGES, weights=missing)
    message = str(info.value)
    assert str(missing) in message
    assert "md_v5a.0.0.pt" in message and "MDV5A" in message
    assert isinstance(info.value, DetectorError)


def test_unreachable_download_is_model_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error
    import urllib.request

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ModelUnavailableError) as info:
        MegaDetector(root=IMAGES, weights="mdv5a", cache_dir=tmp_path)
    message = str(info.value)
    assert "cannot download MegaDetector MDV5A" in message
    assert str(tmp_path / "md_v5a.0.0.pt") in message  # where to put it by hand
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_missing_packages_name_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "md_v5a.0.0.pt"
    weights.write_bytes(b"placeholder")
    real_import = builtins.__import__

    def no_yolov5(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "yolov5" or name.startswith("yolov5."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    # importlib.import_module consults sys.modules first: hide any loaded yolov5.
    for module in [m for m in sys.modules if m == "yolov5" or m.startswith("yolov5.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "yolov5", None)
    monkeypatch.setattr(builtins, "__import__", no_yolov5)

    with pytest.raises(MegaDetectorNotInstalledError) as info:
        MegaDetector(root=IMAGES, weights=weights, device="cpu")
    assert INSTALL_HINT in str(info.value)
    assert isinstance(info.value, DetectorError) and isinstance(info.value, ImportError)


def test_bad_arguments(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    with pytest.raises(DetectorError, match="batch_size"):
        MegaDetector(root=IMAGES, weights=weights, batch_size=0)
    with pytest.raises(DetectorError, match="min_confidence"):
        MegaDetector(root=IMAGES, weights=weights, min_confidence=2.0)


# -- real weights ---------------------------------------------------------------------


needs_real_weights = pytest.mark.skipif(
    not os.environ.get("TRAPWISE_MEGADETECTOR_WEIGHTS"),
    reason="needs real MegaDetector v5 weights: "
    "set TRAPWISE_MEGADETECTOR_WEIGHTS=/path/to/md_v5a.0.0.pt",
)


@needs_real_weights
def test_real_weights_find_animals() -> None:
    """Real MDv5 weights find the annotated animal in most frames of each sequence."""
    pytest.importorskip("yolov5", reason=EXTRA_MISSING)
    annotations = json.loads((SAMPLE / "annotations.json").read_text(encoding="utf-8"))
    files = {image["id"]: image["file_name"] for image in annotations["images"]}
    visible: dict[str, list[str]] = defaultdict(list)  # sequence folder -> frames with a box
    for annotation in annotations["annotations"]:
        if "bbox" in annotation:
            relpath = files[annotation["image_id"]].removeprefix("images/")
            visible[relpath.rsplit("/", 1)[0]].append(relpath)
    md = MegaDetector(root=IMAGES, weights=os.environ["TRAPWISE_MEGADETECTOR_WEIGHTS"])

    hits_per_sequence = {}
    for sequence, frames in visible.items():
        results = md.detect(sorted(set(frames)))
        hits = sum(
            any(b.category == "animal" and b.confidence > 0.2 for b in r.boxes) for r in results
        )
        hits_per_sequence[sequence] = hits / len(results)
    assert sum(hits_per_sequence.values()) / len(hits_per_sequence) >= 0.7, hits_per_sequence
    assert sum(rate >= 0.5 for rate in hits_per_sequence.values()) >= 0.8 * len(
        hits_per_sequence
    ), hits_per_sequence


# -- ultralytics-format (MDv6) checkpoints --------------------------------------------


@pytest.mark.parametrize("cfg", ["yolov9t.yaml", "yolov10n.yaml"])
def test_ultralytics_checkpoint(cfg: str, tmp_path: Path) -> None:
    """MDv6-style checkpoints (ultralytics YOLOv9 / YOLOv10) go through ultralytics."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics", reason=EXTRA_MISSING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=3, verbose=False)
    model.names = dict(enumerate(CATEGORIES))
    with torch.no_grad():  # raise class scores so the random model yields boxes
        head = model.model[-1]  # type: ignore[index]
        for branch in ("cv3", "one2one_cv3"):
            for seq in getattr(head, branch, []):
                seq[-1].bias.fill_(0.0)
    path = tmp_path / f"mdv6_random_{cfg}.pt"
    torch.save({"model": model.half(), "train_args": {"imgsz": 1280}}, path)

    md = MegaDetector(root=IMAGES, weights=path, device="cpu", image_size=640)
    assert md.backend == "ultralytics"
    results = md.detect(TWO_FILES)

    assert [r.file for r in results] == [TWO_FILES[0], TWO_FILES[1].replace("\\", "/")]
    for result in results:
        assert result.failure is None
        assert result.boxes
        for box in result.boxes:
            assert box_validate(box) == box
            assert box.category in CATEGORIES
            assert box.confidence >= 0.005


def test_importing_the_backends_leaves_pil_open_alone() -> None:
    """ultralytics patches PIL.Image.open on import; the detector must undo that."""
    import importlib.util

    from PIL import Image as PILImage

    if (
        importlib.util.find_spec("ultralytics") is None
        or importlib.util.find_spec("yolov5") is None
    ):
        pytest.skip("the megadetector extra is not installed: pip install -e '.[megadetector]'")
    from detector.megadetector import _import

    original = PILImage.open
    _import("ultralytics")
    _import("yolov5.models.yolo")
    assert PILImage.open is original
