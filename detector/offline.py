"""An offline animal detector that needs no model weights: background subtraction over a
frame's capture sequence or, failing that, its neighbouring frames.

Camera traps shoot bursts (capture sequences) from a fixed camera, so whatever changes
between the frames of one burst is probably the animal. A frame's background frames are its
sequence when that has at least ``min_frames`` readable frames; otherwise (an untimed folder,
where every image is its own event, or a single-frame trigger) they are the ``window`` nearest
frames on each side from the same camera (folder or deployment), ordered by capture time or
else by file name (camera counters: ``IMG_0042``), among those that look alike
(``projects.sequences.similarity`` >= ``min_similarity``: another view, or day against night,
is no background). Over those frames this detector

1. decodes every frame as greyscale at reduced resolution (JPEG DCT scaling via
   ``Image.draft``, then a ``work_size`` grid), and smooths it slightly;
2. models the background as the per-pixel median over the background frames, after
   matching each frame's brightness and contrast to it (a robust linear fit, because
   infrared exposure flickers from frame to frame);
3. scores each pixel by ``z = |frame - background| / sigma``, where ``sigma`` is the
   per-pixel median absolute deviation over the burst (high where leaves move), floored
   by a global noise level;
4. thresholds ``z`` with hysteresis (seeds above ``z_high``, grown through ``z_low``),
   ignores the camera's info bars at the top and bottom, cleans the mask with binary
   opening / closing, takes connected components, merges boxes closer than ``merge_gap``,
   drops those smaller than ``min_area``;
5. gives each box a confidence from its foreground strength and size (``_confidence``).

Good at: animals that move across a burst of 3+ frames from a fixed camera, day or night, and
(nearly as well) across the neighbouring frames of an untimed folder.

Bad at (know this before trusting it):

* animals that stay still for most of the burst, or are present in more than half of the
  frames at the same place: they become background (missed), and the frames where they
  are absent then show a "ghost" box where they stood;
* a camera with fewer than ``min_frames`` alike frames around an image (a lone picture, a
  view seen once): there is no background to compare with. Such images get ``failure`` set
  (result unknown, not "empty"), saying what would help (times, a COCO file, MegaDetector);
* untimed neighbours far apart in time (a sparse trigger rate): lighting and vegetation
  change between them, so expect more false boxes than within a burst;
* wind-blown vegetation, moving shadows and sun flecks, rain, insects near the lens:
  false boxes (the per-pixel noise estimate only damps regular motion);
* strong infrared flicker or auto-exposure changes beyond a global gain and offset;
* groups: touching animals merge into one box, so counts are low for herds;
* box extent: a box covers what changed, which may be only the moving part of an animal.

Measured on missouri-dev (748 images, 60 sequences; the same data the defaults were tuned
on, so expect somewhat less elsewhere), keeping boxes with confidence >= 0.1 (recommended):
with the COCO file's sequence ids, image accuracy 0.917 (precision 0.963, recall 0.926;
always saying "animal" scores 0.759), box precision 0.564 and recall 0.592 at IoU 0.5, exact
count on 78 % of animal images. The same frames in one folder without times or ids
(``IMG_0001.JPG``... in sequence order, bursts inferred by the import): image accuracy 0.917
(precision 0.952, recall 0.938), box precision 0.518 and recall 0.575; 1 image failed
(``python -m benchmarks offline_untimed``; before, every such image failed). On the bundled
209-image sample 0.919 untimed against 0.909 with ids (the "Done when" test bounds the
gap): see benchmarks/README.md.
Roughly 190 images/s on 2 CPU cores including full decode and crop writing when sequences
are given; frames modelled by their neighbours cost about one background per frame (tens of
images/s).

Deterministic: the same files and parameters give the same boxes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from scipy import ndimage

from detector.base import (
    Box,
    DetectorError,
    ImageDetections,
    UnknownFileError,
    box_validate,
)
from detector.crops import ImageOpener, exif_orientation, image_rgb, image_upright
from detector.imported import normalise_relpath
from projects.sequences import grey_thumbnail, natural_key, similarity

__all__ = [
    "OfflineDetector",
    "OfflineParams",
    "frames_order",
    "sequence_boxes",
    "window_boxes",
    "window_bounds",
]

# Pixel rectangle on the working grid: (row0, col0, row1, col1), exclusive ends.
_Rect = tuple[int, int, int, int]

# Failure message for frames with too few like frames nearby (format: min, file, camera, n).
_TOO_FEW_FRAMES = (
    "offline-background needs at least {min} readable frames of the same camera view to "
    "model the background; image {file!r} (camera {camera!r}) has {n} among its neighbours "
    "in time or file order, so no detection was attempted. More frames from this camera, "
    "capture times or sequence ids (a COCO Camera Traps file with seq_id: import_images "
    "--coco), or boxes from MegaDetector (detect --detector megadetector, or "
    "megadetector-json --file results.json) would make detection possible"
)


@dataclass(frozen=True)
class OfflineParams:
    """Every tunable of OfflineDetector (defaults tuned on missouri-dev, 748 images).

    Attributes:
        work_size: long side of the working grid in pixels (640 px frames -> 160).
        min_frames: fewest readable frames a sequence needs; shorter ones get a failure.
        blur_sigma: Gaussian smoothing of each working frame, in working pixels.
        bar_top, bar_bottom: fractions of the height ignored at the top / bottom
            (the burnt-in camera id and time change between frames).
        noise_floor: lowest sigma in grey levels (0-255), so flat areas don't explode.
        noise_global_weight: sigma is at least this times the median per-pixel sigma.
        z_high: a component needs a pixel with z above this to count (seed).
        z_low: pixels with z above this grow a seeded component.
        open_size: side of the square structuring element of the binary opening.
        close_size: side of the square structuring element of the binary closing.
        merge_gap: boxes closer than this (fraction of the long side) are merged.
        min_area: smallest kept box area, fraction of the frame area.
        max_area: largest kept box area (fraction); bigger ones are global changes.
        score_z: z excess over z_low at which the strength term reaches 1 - 1/e.
        score_area: box area fraction at which the size term reaches 1 - 1/e.
        window: frames taken on each side of a frame that is modelled by its neighbours.
        min_similarity: ``projects.sequences.similarity`` below which two neighbouring
            frames are different views (a moved camera, day and night) and not each
            other's background.
        mode: "burst": a sequence of ``min_frames`` or more is its own background, other
            frames use their neighbours; "window": every frame uses its neighbours.
    """

    work_size: int = 160
    min_frames: int = 3
    blur_sigma: float = 0.75
    bar_top: float = 0.035
    bar_bottom: float = 0.045
    noise_floor: float = 1.5
    noise_global_weight: float = 1.0
    z_high: float = 7.0
    z_low: float = 2.0
    open_size: int = 2
    close_size: int = 5
    merge_gap: float = 0.06
    min_area: float = 0.002
    max_area: float = 0.95
    score_z: float = 4.0
    score_area: float = 0.01
    window: int = 8
    min_similarity: float = 0.8
    mode: str = "burst"

    def __post_init__(self) -> None:
        """Reject values that would make the pipeline meaningless."""
        if self.work_size < 16:
            raise DetectorError(f"work_size must be >= 16, got {self.work_size}")
        if self.min_frames < 3:
            raise DetectorError(
                f"min_frames must be >= 3 (a median of 2 is no background), got {self.min_frames}"
            )
        if not 0 <= self.bar_top < 0.5 or not 0 <= self.bar_bottom < 0.5:
            raise DetectorError("bar_top and bar_bottom must be in [0, 0.5)")
        if not 0 < self.z_low <= self.z_high:
            raise DetectorError(f"need 0 < z_low <= z_high, got {self.z_low}, {self.z_high}")
        if self.score_z <= 0 or self.score_area <= 0 or self.noise_floor <= 0:
            raise DetectorError("score_z, score_area and noise_floor must be > 0")
        if self.window < 1 or not -1 <= self.min_similarity <= 1:
            raise DetectorError("window must be >= 1 and min_similarity in [-1, 1]")
        if self.mode not in ("burst", "window"):
            raise DetectorError(f"mode must be 'burst' or 'window', got {self.mode!r}")

    def digest(self) -> str:
        """Short stable hash of the parameter values (for the detector version)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


class OfflineDetector:
    """Detector protocol implementation by background subtraction over neighbouring frames.

    Each camera's frames are put in order (by capture time when every frame of the camera
    has one, else by file name with counters compared as numbers: ``IMG_9`` before
    ``IMG_10``). A frame whose capture sequence has at least ``min_frames`` readable frames
    is compared with the median of its sequence, as before; any other frame (an untimed
    folder, a single-frame trigger) with the median of its ``window`` nearest frames on each
    side in that order, within the run of frames that look alike (``min_similarity``: a
    change of view or day to night starts a new run).

    Attributes:
        name: "offline-background".
        version: "2.0 <8 hex digits of the parameter hash>".
        params: the OfflineParams in use.
    """

    name = "offline-background"

    def __init__(
        self,
        *,
        root: Path,
        sequences: Mapping[str, str],
        cameras: Mapping[str, str] | None = None,
        times: Mapping[str, datetime | None] | None = None,
        params: OfflineParams = OfflineParams(),  # noqa: B008 - frozen, so sharing is safe
        opener: ImageOpener | None = None,
    ) -> None:
        """Index the frames of each sequence and each camera.

        Args:
            root: folder the file paths are relative to.
            sequences: file (relative to ``root``) -> sequence key; files sharing a key
                are frames of one burst from one fixed camera. Every file to detect is here.
            cameras: file -> camera key (a camera, folder or deployment); a file not in it
                is its folder's.
            times: file -> capture time or None; a camera with an untimed frame is ordered
                by file name.
            params: tunables.
            opener: reads a frame by its relative name instead of ``root / file`` (images
                that are not files here, e.g. in an S3 bucket); ``root`` is then unused.

        Raises:
            DetectorError: an absolute or escaping path, or two spellings of one file.
        """
        self.root = Path(root)
        self.opener = opener
        self.params = params
        self.version = f"2.0 {params.digest()}"
        clean_cameras = {normalise_relpath(f): str(c) for f, c in (cameras or {}).items()}
        clean_times = {normalise_relpath(f): t for f, t in (times or {}).items()}
        self._sequence_of: dict[str, str] = {}
        self._frames: dict[str, list[str]] = defaultdict(list)
        by_camera: dict[str, list[str]] = defaultdict(list)
        self._camera_of: dict[str, str] = {}
        for file, key in sequences.items():
            clean = normalise_relpath(file)
            if clean in self._sequence_of:
                raise DetectorError(f"file {clean!r} is listed twice in sequences")
            self._sequence_of[clean] = str(key)
            self._frames[str(key)].append(clean)
            camera = clean_cameras.get(clean, str(PurePosixPath(clean).parent))
            self._camera_of[clean] = camera
            by_camera[camera].append(clean)
        for frames in self._frames.values():
            frames.sort()  # frame order doesn't change a median, but keeps runs identical
        self._order: dict[str, list[str]] = {}
        self._position: dict[str, int] = {}
        for camera, files in by_camera.items():
            self._order[camera] = frames_order(files, times=clean_times)
            self._position.update({f: i for i, f in enumerate(self._order[camera])})

    def detect(self, files: Sequence[str]) -> list[ImageDetections]:
        """Return one ImageDetections per file, same order.

        A frame's result depends only on its sequence or its ``2 * window`` neighbours on
        each side, never on which other files are asked for. Frames are decoded once per
        call; results are not kept between calls.

        Raises:
            UnknownFileError: a file not in ``sequences`` (checked before any work).
            DetectorError: ``files`` is a single string, or a path is absolute/invalid.
        """
        if isinstance(files, str):
            raise DetectorError("detect() takes a sequence of paths, not a single string")
        keys = [normalise_relpath(f) for f in files]
        for key in keys:
            if key not in self._sequence_of:
                raise UnknownFileError(
                    f"{self.name}: image {key!r} is not in any known capture sequence"
                )
        cache = _FrameCache(root=self.root, work_size=self.params.work_size, opener=self.opener)
        done: dict[str, dict[str, ImageDetections]] = {}
        out: list[ImageDetections] = []
        for key in keys:
            seq = self._sequence_of[key]
            if self.params.mode == "burst" and seq not in done:
                done[seq] = self._detect_sequence(seq, cache=cache)
            if key in done.get(seq, {}):
                out.append(done[seq][key])
            else:
                out.append(self._detect_window(key, cache=cache))
        return out

    def _detect_sequence(self, seq: str, *, cache: _FrameCache) -> dict[str, ImageDetections]:
        """Detections for the frames of sequence ``seq`` (file -> result), or {} when it has
        fewer than ``min_frames`` readable frames (its frames then go by their neighbours)."""
        files = self._frames[seq]
        frames, failures = cache.load(files)
        results = {f: ImageDetections(file=f, boxes=(), failure=msg) for f, msg in failures.items()}
        if len(frames) < self.params.min_frames:
            return results
        names = list(frames)
        boxes = sequence_boxes(np.stack([frames[f] for f in names]), params=self.params)
        results.update(
            {f: ImageDetections(file=f, boxes=b) for f, b in zip(names, boxes, strict=True)}
        )
        return results

    def _detect_window(self, file: str, *, cache: _FrameCache) -> ImageDetections:
        """Detections for ``file`` against the median of its nearest similar frames."""
        camera = self._camera_of[file]
        order = self._order[camera]
        position = self._position[file]
        reach = 2 * self.params.window
        nearby = order[max(0, position - reach) : position + reach + 1]
        frames, failures = cache.load(nearby)
        if file in failures:
            return ImageDetections(file=file, boxes=(), failure=failures[file])
        names = [f for f in nearby if f in frames]
        index = names.index(file)
        alike = [
            similarity(cache.thumb(a), cache.thumb(b)) >= self.params.min_similarity
            for a, b in itertools.pairwise(names)
        ]
        start, stop = window_bounds(alike, index=index, k=self.params.window)
        if stop - start < self.params.min_frames:
            msg = _TOO_FEW_FRAMES.format(
                min=self.params.min_frames, file=file, camera=camera, n=stop - start
            )
            return ImageDetections(file=file, boxes=(), failure=msg)
        window = np.stack([frames[f] for f in names[start:stop]])
        boxes = window_boxes(window, index=index - start, params=self.params)
        return ImageDetections(file=file, boxes=boxes)


def frames_order(files: Sequence[str], *, times: Mapping[str, datetime | None]) -> list[str]:
    """One camera's ``files`` in capture order: by (time, file) when every file has a time in
    ``times``, else by file name with digit runs compared as numbers (camera counters)."""
    stamps = [times.get(f) for f in files]
    if files and all(t is not None for t in stamps):
        return sorted(files, key=lambda f: (_utc_naive(times[f]), natural_key(f), f))
    return sorted(files, key=lambda f: (natural_key(f), f))


def _utc_naive(moment: datetime | None) -> datetime:
    """``moment`` as a naive UTC time, so aware and naive times sort together."""
    assert moment is not None
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def window_bounds(alike: Sequence[bool], *, index: int, k: int) -> tuple[int, int]:
    """The background window of frame ``index`` among n = len(alike) + 1 ordered frames.

    ``alike[i]`` says frames i and i + 1 look alike; the frame's run is the longest stretch
    around ``index`` joined by alike pairs. The window is the ``2k + 1`` frames of the run
    nearest ``index`` (k before and k after, more on one side where the run ends on the
    other), or the whole run when it is shorter. Returns (start, stop), stop exclusive.
    """
    start = index
    while start > 0 and alike[start - 1]:
        start -= 1
    stop = index + 1
    while stop <= len(alike) and alike[stop - 1]:
        stop += 1
    size = min(2 * k + 1, stop - start)
    first = min(max(start, index - k), stop - size)
    return first, first + size


class _FrameCache:
    """Working frames and their thumbnails, decoded at most once per ``detect`` call."""

    def __init__(self, *, root: Path, work_size: int, opener: ImageOpener | None = None) -> None:
        self.root, self.work_size, self.opener = root, work_size, opener
        self.frames: dict[str, np.ndarray] = {}
        self.failures: dict[str, str] = {}
        self.thumbs: dict[str, np.ndarray] = {}

    def load(self, files: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(file -> frame, file -> failure) for ``files``, in their order."""
        todo = [f for f in files if f not in self.frames and f not in self.failures]
        for file in todo:
            try:
                self.frames[file] = np.asarray(
                    _grey_load(
                        self.root / file, work_size=self.work_size, opener=self.opener, name=file
                    ),
                    dtype=np.float32,
                )
            except DetectorError as exc:
                self.failures[file] = str(exc)
        frames = {f: self.frames[f] for f in files if f in self.frames}
        if frames:
            # Frames of one window share a grid: the first frame's (boxes are normalised).
            grid = next(iter(frames.values())).shape
            frames = {f: _grid_fit(a, grid) for f, a in frames.items()}
        return frames, {f: self.failures[f] for f in files if f in self.failures}

    def thumb(self, file: str) -> np.ndarray:
        """``grey_thumbnail`` of a loaded frame."""
        if file not in self.thumbs:
            self.thumbs[file] = grey_thumbnail(self.frames[file])
        return self.thumbs[file]


def _grid_fit(frame: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """``frame`` resized onto ``grid`` (rows, cols) when its shape differs."""
    if frame.shape == grid:
        return frame
    image = Image.fromarray(frame, mode="F").resize((grid[1], grid[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def _frames_load(
    root: Path, files: Sequence[str], *, work_size: int
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Decode ``files`` to one working grid; return (file -> frame, file -> failure message).

    The grid is (rows, cols) with long side ``work_size`` and the aspect ratio of the first
    readable frame; other frames are resized onto it (boxes are normalised anyway). Frames
    are float32 arrays of shape (rows, cols), grey levels 0-255.
    """
    frames: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}
    grid: tuple[int, int] | None = None
    for file in files:
        try:
            image = _grey_load(root / file, work_size=work_size)
        except DetectorError as exc:
            failures[file] = str(exc)
            continue
        if grid is None:
            grid = _grid(image.size, work_size=work_size)
        if image.size != grid:
            image = image.resize(grid, Image.Resampling.BILINEAR)
        frames[file] = np.asarray(image, dtype=np.float32)
    return frames, failures


def _grid(size: tuple[int, int], *, work_size: int) -> tuple[int, int]:
    """PIL (width, height) of the working grid for an image of ``size``."""
    width, height = size
    scale = work_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _grey_load(
    path: Path, *, work_size: int, opener: ImageOpener | None = None, name: str = ""
) -> Image.Image:
    """Decode ``path`` as a greyscale image of long side about ``work_size`` (mode "L"); with
    ``opener``, the image ``opener(name)`` instead.

    Raises:
        DetectorError: missing, unreadable, corrupt or truncated file, or a decompression
        bomb (PIL's DecompressionBombWarning is treated as an error, as is the Error).
    """
    try:
        with warnings.catch_warnings(), ExitStack() as stack:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = stack.enter_context(opener(name)) if opener is not None else path
            with Image.open(source) as image:
                # Boxes are relative to the upright image; draft/convert drop the EXIF block,
                # so the orientation is read first and applied to the small grey image.
                orientation = exif_orientation(image)
                # JPEG decodes straight to greyscale at 1/2, 1/4 or 1/8 size (DCT scaling):
                # several times faster than a full decode; a no-op for other formats.
                image.draft("L", _grid(image.size, work_size=work_size))
                # 16-bit greyscale is scaled, not clipped at 255 (image_rgb).
                grey = (image_rgb(image) if image.mode.startswith("I") else image).convert("L")
                grey = image_upright(grey, orientation=orientation)
                if max(grey.size) != work_size:
                    grey = grey.resize(
                        _grid(grey.size, work_size=work_size), Image.Resampling.BILINEAR
                    )
                return grey
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DetectorError(f"refused image {path.name}: too many pixels ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
        # Mostly OSError (missing file, UnidentifiedImageError, truncated data), but image
        # plugins raise assorted types (SyntaxError, struct.error, ...), and a library that
        # patches Image.open (ultralytics does) may raise ImportError on an unknown format:
        # one bad file must not stop the rest of the batch.
        raise DetectorError(f"cannot read image {path.name}: {type(exc).__name__}: {exc}") from exc


def sequence_boxes(frames: np.ndarray, *, params: OfflineParams) -> list[tuple[Box, ...]]:
    """Boxes for each frame of one burst.

    Args:
        frames: float32 array (n_frames, rows, cols), grey levels 0-255, n_frames >= 3.
        params: tunables.

    Returns:
        One tuple of validated "animal" boxes per frame, largest confidence first.
    """
    return [_frame_boxes(z_frame, params=params) for z_frame in _z_maps(frames, params=params)]


def window_boxes(frames: np.ndarray, *, index: int, params: OfflineParams) -> tuple[Box, ...]:
    """Boxes of frame ``index`` of ``frames`` (n >= 3, rows, cols), the rest its background:
    the same as ``sequence_boxes(frames)[index]``."""
    if not 0 <= index < frames.shape[0]:
        raise DetectorError(f"index {index} outside {frames.shape[0]} frames")
    return _frame_boxes(_z_maps(frames, params=params)[index], params=params)


def _z_maps(frames: np.ndarray, *, params: OfflineParams) -> np.ndarray:
    """Per-frame z-maps (n, rows, cols) of a stack against its median background."""
    if frames.ndim != 3 or frames.shape[0] < 3:
        raise DetectorError(f"need an array (n >= 3, rows, cols), got shape {frames.shape}")
    if params.blur_sigma > 0:
        frames = ndimage.gaussian_filter(frames, sigma=(0, params.blur_sigma, params.blur_sigma))
    valid = _valid_mask(frames.shape[1:], params=params)
    frames = _gain_match(frames, valid=valid)
    background = np.median(frames, axis=0)
    diff = frames - background  # (n, rows, cols)
    # Per-pixel robust spread over the burst: leaves that move in most frames get a
    # large sigma; an animal passing through fewer than half the frames does not.
    sigma = 1.4826 * np.median(np.abs(diff), axis=0)
    floor = max(params.noise_floor, params.noise_global_weight * float(np.median(sigma[valid])))
    z = np.abs(diff) / np.maximum(sigma, floor)
    z[:, ~valid] = 0.0
    return z


def _valid_mask(shape: tuple[int, ...], *, params: OfflineParams) -> np.ndarray:
    """Boolean (rows, cols) mask, False on the top and bottom info bars."""
    rows = shape[0]
    valid = np.ones(shape, dtype=bool)
    valid[: int(round(params.bar_top * rows))] = False
    bottom = int(round(params.bar_bottom * rows))
    if bottom:
        valid[rows - bottom :] = False
    return valid


def _gain_match(frames: np.ndarray, *, valid: np.ndarray) -> np.ndarray:
    """Map each frame linearly (gain, offset) onto the burst's median frame.

    Infrared flash and auto-exposure change the whole frame's brightness; a robust fit
    (least squares, then again on pixels within 2.5 MAD of the first fit, so an animal
    does not pull it) removes that before differencing. Shape (n, rows, cols) kept.
    """
    reference = np.median(frames, axis=0)[valid]
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        values = frame[valid]
        gain, offset = _line_fit(values, reference)
        residual = np.abs(gain * values + offset - reference)
        keep = residual <= 2.5 * 1.4826 * np.median(residual) + 1e-6
        if keep.sum() >= 16:
            gain, offset = _line_fit(values[keep], reference[keep])
        out[i] = gain * frame + offset
    return out


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (gain, offset) with y ~ gain * x + offset; gain 1 for a flat x."""
    xm, ym = float(x.mean()), float(y.mean())
    var = float(((x - xm) ** 2).mean())
    if var < 1e-6:
        return 1.0, ym - xm
    gain = float(((x - xm) * (y - ym)).mean()) / var
    # A gain far from 1 means the fit latched onto something else; keep the offset only.
    if not 0.5 <= gain <= 2.0:
        return 1.0, ym - xm
    return gain, ym - gain * xm


def _frame_boxes(z: np.ndarray, *, params: OfflineParams) -> tuple[Box, ...]:
    """Boxes from one frame's z-map (rows, cols)."""
    low = z > params.z_low
    if params.open_size > 1:
        low = ndimage.binary_opening(low, structure=np.ones((params.open_size,) * 2, dtype=bool))
    if params.close_size > 1:
        low = ndimage.binary_closing(low, structure=np.ones((params.close_size,) * 2, dtype=bool))
    labels, n = ndimage.label(low)
    if n == 0:
        return ()
    # Hysteresis: keep components that contain at least one strong pixel.
    peak = ndimage.maximum(z, labels=labels, index=np.arange(1, n + 1))
    strong = np.flatnonzero(np.asarray(peak) > params.z_high) + 1
    slices = ndimage.find_objects(labels)
    rects: list[_Rect] = []
    for label in strong:
        rs, cs = slices[label - 1]
        rects.append((rs.start, cs.start, rs.stop, cs.stop))
    rows, cols = z.shape
    rects = _rects_merge(rects, gap=params.merge_gap * max(rows, cols))
    foreground = z > params.z_low
    boxes = [
        box
        for rect in rects
        if (box := _rect_box(rect, z=z, foreground=foreground, params=params)) is not None
    ]
    return tuple(sorted(boxes, key=lambda b: -b.confidence))


def _rects_merge(rects: list[_Rect], *, gap: float) -> list[_Rect]:
    """Merge rectangles whose gap (in pixels, along both axes) is at most ``gap``, repeatedly."""
    merged = sorted(rects)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                dr = max(0, max(a[0], b[0]) - min(a[2], b[2]))
                dc = max(0, max(a[1], b[1]) - min(a[3], b[3]))
                if dr <= gap and dc <= gap:
                    merged[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def _rect_box(
    rect: _Rect, *, z: np.ndarray, foreground: np.ndarray, params: OfflineParams
) -> Box | None:
    """The scored, normalised Box of pixel rectangle ``rect``, or None if too small / big."""
    rows, cols = z.shape
    r0, c0, r1, c1 = rect
    area = (r1 - r0) * (c1 - c0) / (rows * cols)
    if area < params.min_area or area > params.max_area:
        return None
    inside = foreground[r0:r1, c0:c1]
    strength = float(z[r0:r1, c0:c1][inside].mean()) if inside.any() else params.z_low
    confidence = _confidence(strength=strength, area=area, params=params)
    box = Box(
        x=c0 / cols,
        y=r0 / rows,
        w=(c1 - c0) / cols,
        h=(r1 - r0) / rows,
        confidence=confidence,
        category="animal",
    )
    return box_validate(box)


def _confidence(*, strength: float, area: float, params: OfflineParams) -> float:
    """Box confidence in [0, 1] from foreground strength and box size.

    ``confidence = (1 - exp(-(strength - z_low) / score_z)) * (1 - exp(-area / score_area))``

    where ``strength`` is the mean z of the box's foreground pixels and ``area`` the box
    area as a fraction of the frame: strong and large changes score near 1, faint or
    small ones near 0. A ranking heuristic, not a calibrated probability.
    """
    strength_term = 1.0 - np.exp(-max(0.0, strength - params.z_low) / params.score_z)
    size_term = 1.0 - np.exp(-area / params.score_area)
    return float(np.clip(strength_term * size_term, 0.0, 1.0))
