"""Tests for detector.evaluation: IoU, matching, image/box/count metrics, truth reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.base import Box, DetectorError
from detector.evaluation import (
    DetectorMetrics,
    coco_truth_read,
    count_bin,
    detector_evaluate,
    iou,
)

SAMPLE = Path(__file__).resolve().parents[2] / "annotator" / "fixtures" / "missouri-sample"


def box(x: float, y: float, w: float, h: float, confidence: float = 1.0) -> Box:
    return Box(x=x, y=y, w=w, h=h, confidence=confidence, category="animal")


def boxes(n: int, confidence: float = 1.0) -> list[Box]:
    """n small disjoint boxes along the diagonal-free top row (count tests)."""
    return [box(i / 100, 0.0, 0.005, 0.005, confidence) for i in range(n)]


# --- iou ---------------------------------------------------------------------------------


def test_iou_identical_disjoint_touching() -> None:
    a = box(0.125, 0.125, 0.25, 0.25)  # binary fractions: exact arithmetic
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, box(0.5, 0.5, 0.125, 0.125)) == 0.0
    assert iou(a, box(0.375, 0.125, 0.25, 0.25)) == 0.0  # shares an edge only


def test_iou_partial_and_contained() -> None:
    # Half-overlap along x: inter 0.1*0.2 = 0.02, union 0.04 + 0.04 - 0.02 = 0.06.
    assert iou(box(0.0, 0.0, 0.2, 0.2), box(0.1, 0.0, 0.2, 0.2)) == pytest.approx(1 / 3)
    # Contained: inter = small area 0.01, union = big area 0.04.
    assert iou(box(0.0, 0.0, 0.2, 0.2), box(0.05, 0.05, 0.1, 0.1)) == pytest.approx(0.25)
    # Symmetric.
    assert iou(box(0.05, 0.05, 0.1, 0.1), box(0.0, 0.0, 0.2, 0.2)) == pytest.approx(0.25)


def test_iou_degenerate_box_is_zero() -> None:
    assert iou(box(0.1, 0.1, 0.0, 0.2), box(0.1, 0.1, 0.0, 0.2)) == 0.0


# --- count bins ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, 0), (1, 1), (9, 9), (10, 10), (11, 11), (50, 11), (51, 12), (1000, 12)],
)
def test_count_bin_edges(count: int, expected: int) -> None:
    assert count_bin(count) == expected


def test_count_bin_rejects_negative() -> None:
    with pytest.raises(DetectorError, match=">= 0"):
        count_bin(-1)


# --- detector_evaluate ---------------------------------------------------------------------


def test_perfect_detector() -> None:
    truth = {"a": [box(0.1, 0.1, 0.2, 0.2)], "b": [], "c": [box(0.5, 0.5, 0.3, 0.3)]}
    m = detector_evaluate(truth=truth, predicted=truth, threshold=0.5)
    assert (m.n_images, m.n_truth_positive, m.n_predicted_positive) == (3, 2, 2)
    assert m.image_accuracy == m.image_precision == m.image_recall == 1.0
    assert m.box_precision_iou50 == m.box_recall_iou50 == 1.0
    assert m.count_exact == m.count_within_1_bin == 1.0


def test_all_missed() -> None:
    truth = {"a": [box(0.1, 0.1, 0.2, 0.2)], "b": []}
    m = detector_evaluate(truth=truth, predicted={}, threshold=0.5)
    assert m.image_accuracy == 0.5  # only the empty image is right
    assert m.image_precision is None  # no positive predictions: undefined, not 0
    assert m.image_recall == 0.0
    assert m.box_precision_iou50 is None
    assert m.box_recall_iou50 == 0.0
    assert m.count_exact == 0.0
    assert m.count_within_1_bin == 1.0  # predicted 0 vs true 1: neighbouring bins


def test_false_positives_and_threshold() -> None:
    truth = {"a": [box(0.1, 0.1, 0.2, 0.2)], "b": [], "c": []}
    predicted = {
        "a": [box(0.1, 0.1, 0.2, 0.2, 0.9)],
        "b": [box(0.5, 0.5, 0.1, 0.1, 0.8)],  # false positive on an empty image
        "c": [box(0.5, 0.5, 0.1, 0.1, 0.2)],  # below the threshold: ignored
        "ignored": [box(0.5, 0.5, 0.1, 0.1, 0.9)],  # not in truth: ignored
    }
    m = detector_evaluate(truth=truth, predicted=predicted, threshold=0.5)
    # TP=a, FP=b, TN=c.
    assert m.image_accuracy == pytest.approx(2 / 3)
    assert m.image_precision == pytest.approx(1 / 2)
    assert m.image_recall == 1.0
    assert (m.n_predicted_boxes, m.n_matched_boxes, m.n_truth_boxes) == (2, 1, 1)
    assert m.box_precision_iou50 == pytest.approx(1 / 2)
    assert m.box_recall_iou50 == 1.0
    low = detector_evaluate(truth=truth, predicted=predicted, threshold=0.2)
    assert low.image_accuracy == pytest.approx(1 / 3)  # confidence == threshold counts


def test_box_iou_below_half_is_a_miss_but_image_a_hit() -> None:
    truth = {"a": [box(0.0, 0.0, 0.2, 0.2)]}
    predicted = {"a": [box(0.1, 0.0, 0.2, 0.2, 0.9)]}  # IoU 1/3
    m = detector_evaluate(truth=truth, predicted=predicted, threshold=0.1)
    assert m.image_recall == 1.0
    assert m.box_precision_iou50 == 0.0 and m.box_recall_iou50 == 0.0
    assert m.count_exact == 1.0


def test_matching_is_one_to_one_highest_confidence_first() -> None:
    t = box(0.1, 0.1, 0.2, 0.2)
    truth = {"a": [t]}
    # Two predictions on one animal: only one may match.
    predicted = {"a": [box(0.1, 0.1, 0.2, 0.2, 0.6), box(0.11, 0.1, 0.2, 0.2, 0.9)]}
    m = detector_evaluate(truth=truth, predicted=predicted, threshold=0.0)
    assert (m.n_matched_boxes, m.n_predicted_boxes) == (1, 2)
    assert m.box_precision_iou50 == 0.5
    assert m.count_exact == 0.0 and m.count_within_1_bin == 1.0


def test_greedy_prefers_best_iou_for_each_prediction() -> None:
    # p (most confident) overlaps t1 at IoU 1 and t2 at 0.82; q overlaps only t2 (0.54; 0.43
    # with t1). p must take t1, its best, not t2 (listed first), leaving t2 for q.
    t1, t2 = box(0.0, 0.0, 0.2, 0.2), box(0.02, 0.0, 0.2, 0.2)
    p, q = box(0.0, 0.0, 0.2, 0.2, 0.9), box(0.08, 0.0, 0.2, 0.2, 0.5)
    assert iou(p, t2) > 0.5 and iou(q, t2) > 0.5 and iou(q, t1) < 0.5
    m = detector_evaluate(truth={"a": [t2, t1]}, predicted={"a": [q, p]}, threshold=0.0)
    assert m.n_matched_boxes == 2


@pytest.mark.parametrize(
    ("true_n", "pred_n", "exact", "within"),
    [
        (3, 3, True, True),
        (3, 4, False, True),
        (3, 5, False, False),
        (1, 0, False, True),
        (2, 0, False, False),
        (10, 11, False, True),  # bin 10 vs bin 11-50
        (9, 11, False, False),  # bin 9 vs bin 11-50: two bins apart
        (11, 50, False, True),  # same bin 11-50, not exact
        (50, 51, False, True),  # 11-50 vs 51+
        (10, 51, False, False),  # bin 10 vs 51+
        (60, 51, False, True),  # same bin 51+
    ],
)
def test_count_metrics(true_n: int, pred_n: int, exact: bool, within: bool) -> None:
    m = detector_evaluate(
        truth={"a": boxes(true_n)}, predicted={"a": boxes(pred_n, 0.9)}, threshold=0.5
    )
    assert m.count_exact == float(exact)
    assert m.count_within_1_bin == float(within)


def test_count_metrics_skip_empty_truth_images() -> None:
    truth = {"a": boxes(2), "empty": []}
    predicted = {"a": boxes(2, 0.9), "empty": boxes(5, 0.9)}
    m = detector_evaluate(truth=truth, predicted=predicted, threshold=0.5)
    assert m.count_exact == 1.0 and m.count_within_1_bin == 1.0
    none = detector_evaluate(truth={"empty": []}, predicted={}, threshold=0.5)
    assert none.count_exact is None and none.count_within_1_bin is None
    assert none.image_accuracy == 1.0 and none.image_recall is None


def test_empty_truth_mapping() -> None:
    m = detector_evaluate(truth={}, predicted={"a": boxes(1)}, threshold=0.5)
    assert m.n_images == 0 and m.image_accuracy is None


def test_to_dict_is_json_ready() -> None:
    m = detector_evaluate(truth={"a": boxes(1)}, predicted={"a": boxes(1)}, threshold=0.25)
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["threshold"] == 0.25 and d["box_recall_iou50"] == 1.0
    assert set(d) == set(DetectorMetrics.__dataclass_fields__)


# --- coco_truth_read -----------------------------------------------------------------------


def test_coco_truth_read_normalises_and_keeps_empty(tmp_path: Path) -> None:
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100},
            {"id": 3, "file_name": "c.jpg", "width": 200, "height": 100},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [20, 10, 100, 50]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10]},
            {"id": 3, "image_id": 2, "category_id": 5},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    truth = coco_truth_read(path)
    assert truth["a.jpg"][0] == box(0.1, 0.1, 0.5, 0.5)
    assert len(truth["a.jpg"]) == 2
    assert truth["b.jpg"] == [] and truth["c.jpg"] == []


def test_coco_truth_read_sample() -> None:
    truth = coco_truth_read(SAMPLE / "annotations.json")
    assert len(truth) == 209
    assert sum(len(b) for b in truth.values()) == 203
