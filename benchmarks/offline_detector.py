"""Offline background-subtraction detector throughput on missouri-dev, against the I/O floor.

Ours: OfflineDetector over every image (sequences from ``seq_id``), then, as the pipeline
does next, a full decode of each image and one JPEG crop per box written to a temporary
folder. Baseline, timed in the same run: a plain full-resolution PIL decode plus
``convert("RGB")`` of the same images, the least any detector reading them must spend.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks._result import result_write
from detector.crops import crop_box
from detector.offline import OfflineDetector, OfflineParams

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".." / "shared" / "data" / "missouri-dev"
CROP_THRESHOLD = 0.1  # boxes at or above this confidence are cropped (the recommended one)


def _data_dir() -> Path:
    """missouri-dev folder: $TRAPWISE_MISSOURI_DIR (relative to the repo root) or the default."""
    raw = os.environ.get("TRAPWISE_MISSOURI_DIR")
    path = Path(raw) if raw else DEFAULT_DIR
    return (path if path.is_absolute() else REPO / path).resolve()


def _sequences(root: Path) -> dict[str, str]:
    """file_name -> seq_id from the COCO Camera Traps annotations."""
    doc = json.loads((root / "annotations.json").read_text())
    return {image["file_name"]: str(image["seq_id"]) for image in doc["images"]}


def _ours(root: Path, files: list[str], sequences: dict[str, str], out: Path) -> tuple[float, int]:
    """Seconds to detect all files and write their crops; also the number of crops."""
    detector = OfflineDetector(root=root, sequences=sequences, params=OfflineParams())
    start = time.perf_counter()
    crops = 0
    for result in detector.detect(files):
        kept = [b for b in result.boxes if b.confidence >= CROP_THRESHOLD]
        if not kept:
            continue
        with Image.open(root / result.file) as image:
            image.load()
            for i, box in enumerate(kept):
                name = f"{crops:06d}_{i}.jpg"
                crop_box(image, box).save(out / name, quality=90)
                crops += 1
    return time.perf_counter() - start, crops


def _baseline(root: Path, files: list[str]) -> float:
    """Seconds to fully decode every file to RGB with PIL."""
    start = time.perf_counter()
    for file in files:
        with Image.open(root / file) as image:
            image.convert("RGB")
    return time.perf_counter() - start


def main() -> None:
    root = _data_dir()
    sequences = _sequences(root)
    files = list(sequences)
    _baseline(root, files[:50])  # warm the page cache so neither side pays first reads
    with tempfile.TemporaryDirectory() as tmp:
        ours_s, crops = _ours(root, files, sequences, Path(tmp))
    baseline_s = _baseline(root, files)
    ours, baseline = len(files) / ours_s, len(files) / baseline_s
    path = result_write(
        name="offline_detector",
        unit="images/s",
        value=ours,
        baseline_name="full-resolution PIL decode + convert('RGB') of the same images",
        baseline=baseline,
        params={
            "images": len(files),
            "sequences": len(set(sequences.values())),
            "crops_written": crops,
            "crop_threshold": CROP_THRESHOLD,
            "detector_version": OfflineDetector(root=root, sequences={}).version,
        },
    )
    print(
        f"offline_detector: {ours:.1f} images/s incl. {crops} crops "
        f"vs decode-only {baseline:.1f} images/s -> {path}"
    )


if __name__ == "__main__":
    main()
