"""Project settings that other layers interpret must agree with them."""

from __future__ import annotations

from detector.crops import CROP_SHAPES
from embeddings.model import BACKBONES
from projects.models import DEFAULT_BACKBONE, CropShape, Project


def test_crop_shapes_are_the_cutters() -> None:
    assert tuple(CropShape.values) == CROP_SHAPES
    assert Project._meta.get_field("crop_shape").default in CROP_SHAPES


def test_default_backbone_is_offline_and_known() -> None:
    assert DEFAULT_BACKBONE == "efficientnet_lite0" in BACKBONES
    assert Project._meta.get_field("backbone").default == DEFAULT_BACKBONE
