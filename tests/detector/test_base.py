"""Tests for detector.base: Box validation and the Detector protocol."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from detector.base import (
    Box,
    Detector,
    DetectorError,
    ImageDetections,
    UnknownFileError,
    box_validate,
)


def box(x: float, y: float, w: float, h: float, conf: float = 0.9, cat: str = "animal") -> Box:
    return Box(x=x, y=y, w=w, h=h, confidence=conf, category=cat)


def test_inside_box_unchanged() -> None:
    b = box(0.1, 0.2, 0.3, 0.4)
    assert box_validate(b) == b


def test_clips_to_frame() -> None:
    got = box_validate(box(-0.1, 0.5, 0.3, 0.7))
    assert got.x == 0.0 and got.w == pytest.approx(0.2)
    assert got.y == 0.5 and got.h == pytest.approx(0.5)
    assert (got.confidence, got.category) == (0.9, "animal")


def test_numpy_numbers_accepted() -> None:
    got = box_validate(
        box(np.float32(0.25), 0.25, np.float64(0.5), 0.5, conf=np.float32(0.5))  # type: ignore[arg-type]
    )
    assert isinstance(got.x, float) and got.x == 0.25 and got.confidence == 0.5


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (box(0.1, 0.1, 0.0, 0.2), "positive width"),
        (box(0.1, 0.1, 0.2, -0.1), "positive width"),
        (box(1.0, 0.1, 0.2, 0.2), "outside"),
        (box(-0.5, 0.1, 0.4, 0.2), "outside"),
        (box(0.1, 1.5, 0.2, 0.2), "outside"),
        (box(0.1, 0.1, 0.2, 0.2, conf=1.5), "confidence"),
        (box(0.1, 0.1, 0.2, 0.2, cat="dog"), "category"),
        (box(float("nan"), 0.1, 0.2, 0.2), "finite"),
        (box("0.1", 0.1, 0.2, 0.2), "number"),  # type: ignore[arg-type]
    ],
)
def test_invalid_boxes(bad: Box, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        box_validate(bad)


def test_errors_are_value_errors() -> None:
    assert issubclass(DetectorError, ValueError)
    err = UnknownFileError("no result for 'a.jpg'")
    assert isinstance(err, KeyError) and isinstance(err, DetectorError)
    assert str(err) == "no result for 'a.jpg'"


class FakeDetector:
    name = "fake"
    version = "1"

    def detect(self, files: Sequence[str]) -> list[ImageDetections]:
        return [ImageDetections(file=f, boxes=()) for f in files]


def test_protocol_structural() -> None:
    det: Detector = FakeDetector()
    assert isinstance(det, Detector)
    assert det.detect(["a.jpg"]) == [ImageDetections(file="a.jpg", boxes=(), failure=None)]
