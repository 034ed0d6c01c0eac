"""The offline detector with and without sequence ids on missouri-dev (image-level accuracy).

Two ways in, scored the same (``detector.evaluation.detector_evaluate`` at confidence 0.1,
boxes under 8 pixels a side dropped as ``evaluate_detector`` does with the project default):

* given: the COCO file's sequence ids, each sequence in its folder (as ``import_images
  --coco`` gives them);
* removed: every image linked into one camera folder as ``IMG_0001.JPG`` ... in sequence and
  frame order (as one camera would write them), no times, no ids; sequences are the bursts
  ``projects.sequences.bursts_infer`` finds (file counters + similar frames), as the import
  does.

For each ``OfflineParams`` variant in ``VARIANTS``. Writes var/bench/offline_untimed.json.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._result import result_write
from benchmarks.offline_detector import _data_dir
from detector.base import Box
from detector.evaluation import coco_truth_read, detector_evaluate
from detector.offline import OfflineDetector, OfflineParams, _grey_load
from projects.sequences import JUMP_RATIO, BurstFrame, bursts_infer, grey_thumbnail

THRESHOLD = 0.1
MIN_BOX_PIXELS = 8
# Burst inference at import (detector.imports): the same numbers.
BURST_SIMILARITY, BURST_MAX = 0.9, 20

CHOSEN = "burst max 20 jump 50"  # the defaults
NO_JUMP = 1e9  # a jump ratio that never splits
# label -> (detector parameters, longest inferred burst, jump ratio of bursts_infer)
VARIANTS: dict[str, tuple[OfflineParams, int, float]] = {
    "burst max 20 jump 50": (OfflineParams(), BURST_MAX, JUMP_RATIO),
    "burst max 10 no jump": (OfflineParams(), 10, NO_JUMP),
    "burst max 20 no jump": (OfflineParams(), 20, NO_JUMP),
    "burst max 10 jump 50": (OfflineParams(), 10, JUMP_RATIO),
    "burst max 15 jump 50": (OfflineParams(), 15, JUMP_RATIO),
    "burst max 30 jump 50": (OfflineParams(), 30, JUMP_RATIO),
    "burst max 20 jump 20": (OfflineParams(), BURST_MAX, 20.0),
}


def _kept(boxes: tuple[Box, ...], *, size: int) -> list[Box]:
    return [b for b in boxes if b.w * size >= MIN_BOX_PIXELS and b.h * size >= MIN_BOX_PIXELS]


def _score(
    detector: OfflineDetector, files: list[str], truth: dict[str, list[Box]], names: dict[str, str]
) -> dict[str, Any]:
    """Metrics of ``detector`` over ``files`` (``names``: detector file -> truth file)."""
    start = time.perf_counter()
    results = detector.detect(files)
    seconds = time.perf_counter() - start
    predicted = {names[r.file]: _kept(r.boxes, size=640) for r in results}
    metrics = detector_evaluate(truth=truth, predicted=predicted, threshold=THRESHOLD)
    failed = sum(r.failure is not None for r in results)
    return {**metrics.to_dict(), "failed": failed, "seconds": round(seconds, 1)}


def main() -> None:
    root = _data_dir()
    doc = json.loads((root / "annotations.json").read_text())
    images = sorted(doc["images"], key=lambda i: (str(i["seq_id"]), i["frame_num"]))
    truth = coco_truth_read(root / "annotations.json")
    given = {i["file_name"]: str(i["seq_id"]) for i in images}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cam"
        folder.mkdir()
        renamed: dict[str, str] = {}
        for n, image in enumerate(images, start=1):
            name = f"cam/IMG_{n:04d}.JPG"
            (Path(tmp) / name).symlink_to(root / image["file_name"])
            renamed[name] = image["file_name"]
        thumbs = [
            BurstFrame(
                key=name,
                camera="cam",
                name=name,
                thumb=grey_thumbnail(np.asarray(_grey_load(Path(tmp) / name, work_size=160))),
            )
            for name in renamed
        ]
        bursts = bursts_infer(thumbs, min_similarity=BURST_SIMILARITY, max_frames=BURST_MAX)
        true_pairs = sum(
            given[renamed[a]] == given[renamed[b]] for a, b in itertools.pairwise(renamed)
        )
        kept_pairs = sum(
            bursts[a] == bursts[b] and given[renamed[a]] == given[renamed[b]]
            for a, b in itertools.pairwise(renamed)
        )
        wrong_pairs = sum(
            bursts[a] == bursts[b] and given[renamed[a]] != given[renamed[b]]
            for a, b in itertools.pairwise(renamed)
        )
        out["bursts"] = {
            "n_bursts": len(set(bursts.values())),
            "n_sequences": len(set(given.values())),
            "neighbour_pairs_same_sequence_kept_together": f"{kept_pairs}/{true_pairs}",
            "neighbour_pairs_of_two_sequences_joined": wrong_pairs,
        }
        print(out["bursts"])
        for label, (params, longest, jump) in VARIANTS.items():
            used = bursts_infer(
                thumbs, min_similarity=BURST_SIMILARITY, max_frames=longest, jump_ratio=jump
            )
            with_ids = OfflineDetector(root=root, sequences=given, params=params)
            without = OfflineDetector(root=Path(tmp), sequences=used, params=params)
            alone = OfflineDetector(
                root=Path(tmp), sequences={f: f for f in renamed}, params=params
            )
            same = {f: f for f in given}
            out[label] = {
                "given": _score(with_ids, list(given), truth, same),
                "removed, bursts inferred": _score(without, list(renamed), truth, renamed),
                # Every frame its own event: each is modelled by its neighbours only.
                "removed, no bursts": _score(alone, list(renamed), truth, renamed),
            }
            for case, m in out[label].items():
                print(
                    f"{label:12s} {case:26s} acc {m['image_accuracy']:.3f} "
                    f"P {m['image_precision']:.3f} R {m['image_recall']:.3f} "
                    f"boxP {m['box_precision_iou50']:.3f} boxR {m['box_recall_iou50']:.3f} "
                    f"failed {m['failed']} {m['seconds']} s"
                )
    chosen = out[CHOSEN]
    result_write(
        name="offline_untimed",
        unit="image accuracy without sequence ids",
        value=chosen["removed, bursts inferred"]["image_accuracy"],
        baseline_name="image accuracy with the COCO file's sequence ids",
        baseline=chosen["given"]["image_accuracy"],
        params={"threshold": THRESHOLD, "min_box_pixels": MIN_BOX_PIXELS, "chosen": CHOSEN},
        extra={"variants": out},
    )


if __name__ == "__main__":
    main()
