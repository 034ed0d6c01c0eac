"""A Detector that runs MegaDetector (https://github.com/agentmorris/MegaDetector) locally.

Optional: needs the ``megadetector`` extra (``pip install -e '.[megadetector]'``), which
installs the ``yolov5`` package (and, through it, ``ultralytics``). Nothing here is
imported until a MegaDetector is constructed, so the rest of Trapwise works without it.

Supported weights:

* MegaDetector v5a / v5b (``md_v5a.0.0.pt`` ...): YOLOv5 checkpoints, run with the
  ``yolov5`` package's own letterbox, NMS and box rescaling in the same way as the
  megadetector package's default ("classic") mode: letterbox to 1280 px on the long side
  (stride 64), NMS IoU 0.45, class index 0/1/2 = animal/person/vehicle.
* Ultralytics-format MegaDetector checkpoints (MDv6 YOLOv9/YOLOv10/RT-DETR files): run
  with the ``ultralytics`` package's predictor at the same input size.

``weights`` is a local file or one of KNOWN_MODELS ("MDV5A", "MDV5B"), which is
downloaded once into a cache folder when the machine is online.

Security: checkpoints are pickles (``torch.load(weights_only=False)``), so loading one
runs code from it. Only use weights files from a trusted source.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import os
import shutil
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.base import CATEGORIES, Box, DetectorError, ImageDetections, box_validate
from detector.crops import ImageOpener, image_load
from detector.imported import normalise_relpath
from projects.atomic import atomic_path

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "INSTALL_HINT",
    "KNOWN_MODELS",
    "MIN_CONFIDENCE",
    "MegaDetector",
    "MegaDetectorNotInstalledError",
    "ModelUnavailableError",
    "default_cache_dir",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[megadetector]'"

# MegaDetector's own input size for MDv5 (the long side after letterboxing).
DEFAULT_IMAGE_SIZE = 1280

# Boxes below this confidence are dropped: the megadetector package's default output
# threshold. Choosing the working threshold is the caller's job.
MIN_CONFIDENCE = 0.005

# MegaDetector's "classic" NMS IoU threshold, and its cap on boxes per image.
_NMS_IOU = 0.45
_MAX_DETECTIONS = 300

# MDv5 is a P6 model (strides up to 64); the megadetector package letterboxes 1280 px
# inputs to multiples of 64.
_STRIDE_1280 = 64
_STRIDE_DEFAULT = 32

_CHUNK = 1 << 20


@dataclass(frozen=True)
class KnownModel:
    """A MegaDetector release that can be fetched by name.

    Attributes:
        file_name: the release's file name (also the name in the cache folder).
        url: where the megadetector project publishes it.
        md5: the checksum the megadetector package lists for it.
    """

    file_name: str
    url: str
    md5: str


_MD5_RELEASE = "https://github.com/agentmorris/MegaDetector/releases/download/v5.0/"

# Names as the megadetector package spells them (matched case-insensitively). URLs and
# checksums are copied from megadetector.detection.run_detector.known_models (10.0.x).
KNOWN_MODELS: dict[str, KnownModel] = {
    "MDV5A": KnownModel(
        "md_v5a.0.0.pt", _MD5_RELEASE + "md_v5a.0.0.pt", "ec1d7603ec8cf642d6e0cd008ba2be8c"
    ),
    "MDV5B": KnownModel(
        "md_v5b.0.0.pt", _MD5_RELEASE + "md_v5b.0.0.pt", "bc235e73f53c5c95e66ea0d1b2cbf542"
    ),
}


class ModelUnavailableError(DetectorError):
    """The weights file is missing, unreadable, not a MegaDetector, or cannot be downloaded."""


class MegaDetectorNotInstalledError(DetectorError, ImportError):
    """The optional packages MegaDetector needs are not installed.

    Both a DetectorError and an ImportError, so either ``except`` works.
    """


def default_cache_dir() -> Path:
    """Where named models are downloaded to: ``$TRAPWISE_MODEL_DIR`` or the user cache.

    ``$TRAPWISE_MODEL_DIR`` wins; otherwise ``$XDG_CACHE_HOME/trapwise/megadetector``
    (``~/.cache/trapwise/megadetector``).
    """
    explicit = os.environ.get("TRAPWISE_MODEL_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trapwise" / "megadetector"


def _file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at ``path``."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(model: KnownModel, name: str, target: Path) -> None:
    """Download ``model`` to ``target`` atomically, checking its md5.

    Raises ModelUnavailableError (offline, HTTP error, checksum mismatch, disk error)
    with where to put the file by hand.
    """
    manual = (
        f"download {model.url} on a machine with internet access and either pass its "
        f"path as weights, or copy it to {target}"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename, so an interrupted download never leaves a
    # truncated file where the next run would trust it.
    try:
        logger.info("downloading MegaDetector %s from %s to %s", name, model.url, target)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(model.url, timeout=60) as resp:
                shutil.copyfileobj(resp, out, _CHUNK)
            md5 = _file_digest(tmp, "md5")
            if md5 != model.md5:
                raise ModelUnavailableError(
                    f"downloaded {name} from {model.url} but its md5 is {md5}, expected "
                    f"{model.md5} (incomplete download?); {manual}"
                )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ModelUnavailableError(
            f"cannot download MegaDetector {name} from {model.url} ({exc}); {manual}"
        ) from exc


def _resolve_weights(weights: str | Path, cache_dir: Path | None) -> tuple[Path, str]:
    """Return (local weights file, label for the version string).

    A path that exists is used as is. A known model name is looked up in the cache
    folder and downloaded there if missing. Anything else raises ModelUnavailableError.
    """
    text = str(weights)
    path = Path(text).expanduser()
    if path.is_file():
        return path, path.name
    known = KNOWN_MODELS.get(text.upper()) if isinstance(weights, str) else None
    if known is None:
        if path.exists():
            raise ModelUnavailableError(f"MegaDetector weights {path} is not a file")
        names = ", ".join(KNOWN_MODELS)
        raise ModelUnavailableError(
            f"MegaDetector weights file {path} does not exist. Pass the path of a "
            f"MegaDetector .pt file (e.g. md_v5a.0.0.pt from {KNOWN_MODELS['MDV5A'].url}) "
            f"or one of the model names {names} to download it when online."
        )
    name = text.upper()
    target = (cache_dir or default_cache_dir()) / known.file_name
    if not target.is_file():
        _download(known, name, target)
    return target, f"{name}:{known.file_name}"


def _checkpoint_kind(path: Path) -> str:
    """ "ultralytics" or "yolov5": which library's classes the checkpoint pickles.

    Reads the pickle's bytes without unpickling them (unpickling needs the library
    already chosen). torch checkpoints are zip files with one ``*/data.pkl``; the module
    names of pickled classes appear there as text.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(pickles[0]) if pickles else b""
        else:  # the legacy (pre-zip) torch format: the pickle is at the start
            with path.open("rb") as handle:
                data = handle.read(16 * _CHUNK)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelUnavailableError(f"cannot read MegaDetector weights {path}: {exc}") from exc
    return "ultralytics" if b"ultralytics.nn" in data else "yolov5"


@contextlib.contextmanager
def _quiet_imports() -> Iterator[None]:
    """Import yolov5/ultralytics without side effects on the rest of the process.

    Silences the deprecation warnings yolov5 triggers (pkg_resources etc.), and undoes
    ultralytics' replacement of ``PIL.Image.open`` (it tries to pip-install a HEIF plugin on
    any unrecognised file, which would break the clear "not an image" errors everywhere else).
    """
    from PIL import Image as PILImage

    original_open = PILImage.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        PILImage.open = original_open  # type: ignore[method-assign]


def _import(module: str) -> Any:
    """Import an optional module or raise MegaDetectorNotInstalledError naming the extra."""
    try:
        with _quiet_imports():
            return importlib.import_module(module)
    except ImportError as exc:
        raise MegaDetectorNotInstalledError(
            f"MegaDetector needs the optional packages of the 'megadetector' extra "
            f"({module} could not be imported: {exc}). Install them with: {INSTALL_HINT}"
        ) from exc


def _pick_device(torch: Any, device: str | None) -> str:
    """``device`` as given, else "cuda" when a GPU is usable, else "cpu"."""
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _nms(torch: Any, torchvision: Any, prediction: Any, conf_thres: float) -> list[Any]:
    """MegaDetector's NMS for YOLOv5 output, as in megadetector.detection.pytorch_detector.

    ``prediction`` is [batch, anchors, 5 + classes] with (cx, cy, w, h, objectness,
    class scores). Returns per image an [n, 6] tensor of (x1, y1, x2, y2, conf, class),
    highest confidence first, at most 300 rows. Unlike yolov5's own
    non_max_suppression this has no time limit: on a slow CPU that limit silently
    drops the boxes of later images in a batch.
    """
    output = []
    for x in prediction:
        x = x[x[:, 4] > conf_thres]
        scores = x[:, 5:] * x[:, 4:5]  # class confidence = objectness * class score
        conf, cls = scores.max(1)
        keep = conf > conf_thres
        x, conf, cls = x[keep], conf[keep], cls[keep]
        boxes = torch.cat([x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2], 1)
        kept = torchvision.ops.batched_nms(boxes, conf, cls, _NMS_IOU)[:_MAX_DETECTIONS]
        output.append(torch.cat([boxes[kept], conf[kept, None], cls[kept, None].float()], 1))
    return output


def _category(class_index: int, *, where: str) -> str:
    """MegaDetector class index (0, 1, 2) -> "animal" / "person" / "vehicle"."""
    if not 0 <= class_index < len(CATEGORIES):
        raise DetectorError(
            f"{where}: model returned class {class_index}, not a MegaDetector class"
        )
    return CATEGORIES[class_index]


def _box_from_xyxy(
    x1: float, y1: float, x2: float, y2: float, conf: float, cls: int, *, width: int, height: int
) -> Box | None:
    """Normalised MegaDetector box from pixel corners, or None if nothing is left of it."""
    box = Box(
        x=x1 / width,
        y=y1 / height,
        w=(x2 - x1) / width,
        h=(y2 - y1) / height,
        confidence=min(max(conf, 0.0), 1.0),
        category=_category(cls, where="MegaDetector"),
    )
    try:
        return box_validate(box)
    except DetectorError:
        # Boxes rounded to whole pixels can collapse to zero width at the frame edge;
        # such a box marks nothing and is dropped rather than failing the image.
        return None


class MegaDetector:
    """Runs a MegaDetector model on image files under ``root``.

    Attributes:
        name: "megadetector".
        version: "<model>@sha256:<first 12 hex of the weights file>", e.g.
            "md_v5a.0.0.pt@sha256:94e88fe3bed3" or "MDV5A:md_v5a.0.0.pt@sha256:...".
        device: the torch device the model runs on ("cuda", "cpu", ...).
        image_size: the long side images are letterboxed to (1280 unless given).
        weights_path: the local weights file used.
        backend: "yolov5" (MDv5 checkpoints) or "ultralytics" (MDv6 checkpoints), the
            library the checkpoint's classes come from.
    """

    name = "megadetector"

    def __init__(
        self,
        *,
        root: Path,
        weights: str | Path,
        device: str | None = None,
        image_size: int | None = None,
        batch_size: int = 8,
        min_confidence: float = MIN_CONFIDENCE,
        cache_dir: Path | None = None,
        opener: ImageOpener | None = None,
    ) -> None:
        """Load the model.

        Args:
            root: folder the file paths given to ``detect`` are relative to.
            weights: a local .pt file, or a KNOWN_MODELS name ("MDV5A", "MDV5B"), which
                is downloaded into ``cache_dir`` (default ``default_cache_dir()``) if it
                is not there yet.
            device: torch device; None picks CUDA when available, else CPU.
            image_size: letterbox size (long side); None means 1280, MegaDetector's own.
            batch_size: images per forward pass (same-shaped images are batched).
            min_confidence: boxes below this are dropped (default 0.005, a floor, not a
                working threshold).
            cache_dir: download folder for named models.
            opener: reads an image by its relative name instead of ``root / name`` (images
                that are not files here, e.g. in an S3 bucket); ``root`` is then unused.

        Raises:
            ModelUnavailableError: no such file / unknown name / download failed /
                the file is not a loadable MegaDetector checkpoint.
            MegaDetectorNotInstalledError: the optional packages are missing.
            DetectorError: invalid arguments.
        """
        if batch_size < 1:
            raise DetectorError(f"batch_size must be >= 1, got {batch_size}")
        if image_size is not None and image_size < 32:
            raise DetectorError(f"image_size must be >= 32, got {image_size}")
        if not 0.0 <= min_confidence <= 1.0:
            raise DetectorError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.root = Path(root)
        self.opener = opener
        self.batch_size = batch_size
        self.min_confidence = min_confidence
        self.image_size = image_size or DEFAULT_IMAGE_SIZE
        # Weights are resolved before importing anything optional, so a wrong path is
        # reported as such even where the extra is not installed.
        self.weights_path, label = _resolve_weights(weights, cache_dir)
        self.version = f"{label}@sha256:{_file_digest(self.weights_path, 'sha256')[:12]}"
        self.backend = _checkpoint_kind(self.weights_path)
        self._torch = _import("torch")
        self.device = _pick_device(self._torch, device)
        if self.backend == "ultralytics":
            self._load_ultralytics()
        else:
            self._load_yolov5()

    # -- loading ----------------------------------------------------------------------

    def _load_yolov5(self) -> None:
        """Load a YOLOv5 (MDv5) checkpoint the way the megadetector package does."""
        torch = self._torch
        # Importing yolov5.models.yolo puts the yolov5 package folder on sys.path, so the
        # top-level "models.yolo" / "models.common" classes that MDv5 files pickle (they
        # were trained in the YOLOv5 repository) can be unpickled.
        _import("yolov5.models.yolo")
        general = _import("yolov5.utils.general")
        self._torchvision = _import("torchvision")
        self._letterbox = _import("yolov5.utils.augmentations").letterbox
        self._scale_boxes = general.scale_boxes
        try:
            with _quiet_imports():
                checkpoint = torch.load(self.weights_path, map_location="cpu", weights_only=False)
            model = checkpoint["model"] if isinstance(checkpoint, dict) else None
            if model is None or not hasattr(model, "fuse"):
                raise ModelUnavailableError(
                    f"{self.weights_path} is not a YOLOv5 MegaDetector checkpoint "
                    "(expected a dict with a 'model' entry)"
                )
            # Same compatibility fix as the megadetector package: MDv5 was saved with an
            # older torch whose Upsample lacked this attribute.
            for module in model.modules():
                if isinstance(module, torch.nn.Upsample) and not hasattr(
                    module, "recompute_scale_factor"
                ):
                    module.recompute_scale_factor = None
            with _quiet_imports(), contextlib.redirect_stdout(io.StringIO()):
                model = model.float().fuse().eval()
        except ModelUnavailableError:
            raise
        except Exception as exc:  # unpickling can fail in many library-specific ways
            raise ModelUnavailableError(
                f"cannot load MegaDetector weights {self.weights_path}: {exc}"
            ) from exc
        self._check_classes(getattr(model, "names", None))
        # .to("cpu") is a no-op that only triggers a torch warning about .grad.
        self._model = model if self.device == "cpu" else model.to(self.device)
        stride = _STRIDE_1280 if self.image_size == DEFAULT_IMAGE_SIZE else _STRIDE_DEFAULT
        model_stride = int(model.stride.max()) if hasattr(model, "stride") else stride
        self._stride = max(stride, model_stride)

    def _load_ultralytics(self) -> None:
        """Load an ultralytics-format (MDv6) checkpoint with the ultralytics package."""
        ultralytics = _import("ultralytics")
        try:
            with _quiet_imports():
                with zipfile.ZipFile(self.weights_path) as archive:
                    pickled = b"".join(
                        archive.read(n) for n in archive.namelist() if n.endswith("data.pkl")
                    )
                # RT-DETR checkpoints need the RTDETR wrapper; everything else is YOLO.
                wrapper = ultralytics.RTDETR if b"RTDETR" in pickled else ultralytics.YOLO
                model = wrapper(str(self.weights_path), task="detect")
        except Exception as exc:
            raise ModelUnavailableError(
                f"cannot load MegaDetector weights {self.weights_path}: {exc}"
            ) from exc
        names = model.names
        self._check_classes(names)
        self._model = model

    def _check_classes(self, names: object) -> None:
        """Refuse a model whose classes are not MegaDetector's animal/person/vehicle."""
        if isinstance(names, dict):
            labels = [str(names[k]).lower() for k in sorted(names)]
        elif isinstance(names, (list, tuple)):
            labels = [str(n).lower() for n in names]
        else:
            return  # nothing to check against; classes are checked per box instead
        if len(labels) != len(CATEGORIES):
            raise ModelUnavailableError(
                f"{self.weights_path} has {len(labels)} classes ({', '.join(labels[:5])}...), "
                f"not MegaDetector's {', '.join(CATEGORIES)}"
            )

    # -- inference --------------------------------------------------------------------

    def detect(self, files: Sequence[str]) -> list[ImageDetections]:
        """Return one ImageDetections per file, in order.

        ``files`` are relative to ``root``. An image that cannot be read gets
        ``failure`` set and empty boxes; the others are processed as usual. Boxes
        are normalised [x, y, w, h] of the EXIF-upright image, with confidence
        >= ``min_confidence``, highest confidence first.

        Raises:
            DetectorError: a path that is absolute or leaves ``root``.
        """
        names = [normalise_relpath(f) for f in files]
        results: list[ImageDetections] = []
        for start in range(0, len(names), self.batch_size):
            results.extend(self._detect_batch(names[start : start + self.batch_size]))
        return results

    def _read(self, name: str) -> Any:
        """The image as an upright RGB PIL image; raises OSError/ValueError if unreadable."""
        if self.opener is not None:
            with self.opener(name) as handle:
                return image_load(handle)
        return image_load(self.root / name)

    def _detect_batch(self, names: list[str]) -> list[ImageDetections]:
        """Detect on a few files; unreadable ones become failures."""
        images: dict[int, Any] = {}
        out: list[ImageDetections | None] = [None] * len(names)
        for i, name in enumerate(names):
            try:
                images[i] = self._read(name)
            except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three
                out[i] = ImageDetections(file=name, boxes=(), failure=f"cannot read image: {exc}")
        if images:
            run = self._run_ultralytics if self.backend == "ultralytics" else self._run_yolov5
            for i, boxes in run(images).items():
                out[i] = ImageDetections(file=names[i], boxes=boxes)
        return [r for r in out if r is not None]

    def _run_yolov5(self, images: dict[int, Any]) -> dict[int, tuple[Box, ...]]:
        """MegaDetector "classic" inference: letterbox, forward, NMS, rescale."""
        import numpy as np

        torch = self._torch
        # Letterboxing keeps the aspect ratio, so images of different shapes give
        # different tensor shapes; only same-shaped ones can share a forward pass.
        groups: dict[tuple[int, ...], list[tuple[int, Any, tuple[int, int]]]] = {}
        for i, image in images.items():
            array = np.asarray(image)
            padded = self._letterbox(
                array, new_shape=self.image_size, stride=self._stride, auto=True, scaleup=True
            )[0]
            groups.setdefault(padded.shape, []).append((i, padded, array.shape[:2]))
        results: dict[int, tuple[Box, ...]] = {}
        for group in groups.values():
            batch = np.stack([padded.transpose(2, 0, 1) for _, padded, _ in group])
            tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).float() / 255.0
            # no_grad, not inference_mode: scale_boxes edits the outputs in place, which
            # inference tensors forbid.
            with torch.no_grad():
                prediction = self._model(tensor)[0]
                detections = _nms(torch, self._torchvision, prediction, self.min_confidence)
            for (i, _, (height, width)), det in zip(group, detections, strict=True):
                det = det.cpu()
                if len(det):
                    det[:, :4] = self._scale_boxes(
                        tensor.shape[2:], det[:, :4], (height, width)
                    ).round()
                results[i] = self._boxes(det.tolist(), width=width, height=height)
        return results

    def _run_ultralytics(self, images: dict[int, Any]) -> dict[int, tuple[Box, ...]]:
        """Inference through the ultralytics predictor (its own letterbox and NMS)."""
        order = list(images)
        # ultralytics' NMS gives up after about 2 s + 0.5 s per image and drops the rest
        # with only a log warning; at a 0.005 floor a CPU can hit that on a batch, so on
        # CPU images go one at a time.
        chunk = 1 if str(self.device) == "cpu" else len(order)
        predictions = []
        for start in range(0, len(order), chunk):
            predictions.extend(
                self._model.predict(
                    [images[i] for i in order[start : start + chunk]],
                    imgsz=self.image_size,
                    conf=self.min_confidence,
                    iou=_NMS_IOU,
                    max_det=_MAX_DETECTIONS,
                    device=self.device,
                    batch=self.batch_size,
                    verbose=False,
                )
            )
        results: dict[int, tuple[Box, ...]] = {}
        for i, prediction in zip(order, predictions, strict=True):
            height, width = prediction.orig_shape
            boxes = prediction.boxes
            rows = [
                [*xyxy, conf, cls]
                for xyxy, conf, cls in zip(
                    boxes.xyxy.cpu().tolist(),
                    boxes.conf.cpu().tolist(),
                    boxes.cls.cpu().tolist(),
                    strict=True,
                )
            ]
            results[i] = self._boxes(rows, width=int(width), height=int(height))
        return results

    def _boxes(self, rows: list[list[float]], *, width: int, height: int) -> tuple[Box, ...]:
        """[x1, y1, x2, y2, conf, cls] pixel rows -> valid Boxes, highest confidence first."""
        boxes = [
            _box_from_xyxy(x1, y1, x2, y2, conf, int(cls), width=width, height=height)
            for x1, y1, x2, y2, conf, cls in rows
            if conf >= self.min_confidence
        ]
        kept = [b for b in boxes if b is not None]
        kept.sort(key=lambda b: b.confidence, reverse=True)
        return tuple(kept)
