"""Detector metrics against ground-truth boxes (pure functions, no I/O except truth reading).

Three views of a detector, after Norouzzadeh et al. (2019):

* image level, empty vs. animal (their Table 1): an image is "positive" when it has at
  least one box; "animal" is the positive class;
* box level: greedy one-to-one matching at IoU >= 0.5, highest confidence first
  (the PASCAL VOC rule), giving box precision and recall;
* counting: the number of boxes per image against the true number, exact and within
  one count bin (bins of Sec. 4.2: 0, 1, 2, ..., 10, 11-50, 51+; see ``count_bin``).

Only predicted boxes with ``confidence >= threshold`` take part; truth boxes always do.
Categories are ignored (a truth "animal" matches a predicted "person"): the detector's
job here is to find things, the classifier names them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from detector.base import Box, DetectorError
from detector.imported import ImportedDetector

__all__ = [
    "COUNT_BIN_EDGES",
    "IOU_MATCH",
    "DetectorMetrics",
    "coco_truth_read",
    "count_bin",
    "detector_evaluate",
    "iou",
]

# IoU at which a predicted box matches a truth box.
IOU_MATCH = 0.5

# Lower edges of the count bins after the single counts 0..10: 11-50 and 51+.
COUNT_BIN_EDGES: tuple[int, ...] = (11, 51)


@dataclass(frozen=True)
class DetectorMetrics:
    """Detector quality at one confidence threshold.

    A ratio whose denominator is 0 is ``None`` (e.g. precision with no predictions),
    never 0 or 1, so "undefined" cannot be mistaken for a score.

    Attributes:
        threshold: predicted boxes with confidence >= threshold were counted.
        n_images: images scored (the files of the truth).
        n_truth_positive: images whose truth has at least one box.
        n_predicted_positive: images with at least one counted predicted box.
        image_accuracy: share of images whose empty/animal call is right.
        image_precision: TP / (TP + FP) over images, "animal" = positive.
        image_recall: TP / (TP + FN) over images.
        n_truth_boxes, n_predicted_boxes, n_matched_boxes: box totals.
        box_precision_iou50: matched / predicted boxes (IoU >= 0.5, one-to-one).
        box_recall_iou50: matched / truth boxes.
        count_exact: over images with >= 1 truth box, share whose predicted box count
            equals the true count.
        count_within_1_bin: over the same images, share whose predicted count bin is
            at most one bin away from the true count's bin (``count_bin``).
    """

    threshold: float
    n_images: int
    n_truth_positive: int
    n_predicted_positive: int
    image_accuracy: float | None
    image_precision: float | None
    image_recall: float | None
    n_truth_boxes: int
    n_predicted_boxes: int
    n_matched_boxes: int
    box_precision_iou50: float | None
    box_recall_iou50: float | None
    count_exact: float | None
    count_within_1_bin: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        """The metrics as a JSON-ready dict (field name -> value)."""
        return asdict(self)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes in the same normalised frame, in [0, 1].

    Boxes with non-positive area have IoU 0 with everything (no division by zero).
    """
    return box_iou((a.x, a.y, a.w, a.h), (b.x, b.y, b.w, b.h))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """``iou`` of two ``[x, y, w, h]`` boxes given as numbers (stored detections, a tool's
    boxes); 0 when either has no area."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = max(0.0, aw) * max(0.0, ah) + max(0.0, bw) * max(0.0, bh) - inter
    return inter / union if union > 0 else 0.0


def count_bin(count: int) -> int:
    """Index of the count bin of ``count``: 0..10 are their own bins, 11-50 is bin 11, 51+ is 12.

    These are the bins of Norouzzadeh et al. (counts 1..10 one by one, then 11-50 and 51+),
    with 0 (empty) added as the bin below 1, so "within one bin" means "off by at most one
    animal" up to 10, and "10 vs 11-50" or "11-50 vs 51+" are neighbours.

    Raises:
        DetectorError: a negative count.
    """
    if count < 0:
        raise DetectorError(f"count must be >= 0, got {count}")
    if count < COUNT_BIN_EDGES[0]:
        return count
    return COUNT_BIN_EDGES[0] + sum(count >= edge for edge in COUNT_BIN_EDGES[1:])


def _matches(truth: Sequence[Box], predicted: Sequence[Box]) -> int:
    """Greedy one-to-one matches at IoU >= IOU_MATCH, predictions by descending confidence.

    Each prediction takes the unmatched truth box it overlaps most (ties: the first
    truth box), as in PASCAL VOC. Sorting is stable, so equal confidences keep input
    order and the result is deterministic.
    """
    free = list(range(len(truth)))
    matched = 0
    for pred in sorted(predicted, key=lambda b: -b.confidence):
        best, best_iou = -1, IOU_MATCH
        for j in free:
            overlap = iou(pred, truth[j])
            if overlap >= best_iou and (best < 0 or overlap > best_iou):
                best, best_iou = j, overlap
        if best >= 0:
            free.remove(best)
            matched += 1
    return matched


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def detector_evaluate(
    *,
    truth: Mapping[str, Sequence[Box]],
    predicted: Mapping[str, Sequence[Box]],
    threshold: float,
) -> DetectorMetrics:
    """Score ``predicted`` against ``truth`` over the files of ``truth``.

    Args:
        truth: file -> true boxes (empty sequence = empty image). Confidences ignored.
        predicted: file -> predicted boxes. Files not in ``truth`` are ignored; a truth
            file missing here counts as "no boxes".
        threshold: only predicted boxes with confidence >= threshold count.

    Returns:
        DetectorMetrics (see its docstring for every definition).
    """
    tp = fp = fn = tn = 0
    n_truth = n_pred = n_matched = 0
    counted = exact = within = 0
    for file, true_boxes in truth.items():
        kept = [b for b in predicted.get(file, ()) if b.confidence >= threshold]
        has_truth, has_pred = len(true_boxes) > 0, len(kept) > 0
        tp += has_truth and has_pred
        fn += has_truth and not has_pred
        fp += has_pred and not has_truth
        tn += not has_truth and not has_pred
        n_truth += len(true_boxes)
        n_pred += len(kept)
        n_matched += _matches(true_boxes, kept)
        if has_truth:
            counted += 1
            exact += len(kept) == len(true_boxes)
            within += abs(count_bin(len(kept)) - count_bin(len(true_boxes))) <= 1
    n_images = len(truth)
    return DetectorMetrics(
        threshold=float(threshold),
        n_images=n_images,
        n_truth_positive=tp + fn,
        n_predicted_positive=tp + fp,
        image_accuracy=_ratio(tp + tn, n_images),
        image_precision=_ratio(tp, tp + fp),
        image_recall=_ratio(tp, tp + fn),
        n_truth_boxes=n_truth,
        n_predicted_boxes=n_pred,
        n_matched_boxes=n_matched,
        box_precision_iou50=_ratio(n_matched, n_pred),
        box_recall_iou50=_ratio(n_matched, n_truth),
        count_exact=_ratio(exact, counted),
        count_within_1_bin=_ratio(within, counted),
    )


def coco_truth_read(path: Path) -> dict[str, list[Box]]:
    """Read COCO Camera Traps annotations as file -> true boxes (normalised, confidence 1).

    Annotations without ``bbox`` (and images without annotations) give an empty list,
    meaning "empty image". Every box is category "animal".

    Raises:
        DetectorError: as ``ImportedDetector.from_coco_camera_traps``.
    """
    source = ImportedDetector.from_coco_camera_traps(Path(path))
    return {item.file: list(item.boxes) for item in source.detect(source.files)}
