"""Tests for embeddings.inference: order, shape, modes, preprocessing, error reporting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embeddings.inference import embed_images, preprocess_image
from embeddings.model import BackboneInfo, EmbeddingNet, build_embedding_net

REAL_IMAGES = [
    Path("/work/shared/data/missouri-dev/images/Red_Squirrel/SEQ75116/SEQ75116_IMG_0003.JPG"),
    Path("/work/shared/data/missouri-dev/images/Red_Squirrel/SEQ75116/SEQ75116_IMG_0009.JPG"),
]


@pytest.fixture(scope="module")
def lite0() -> tuple[EmbeddingNet, BackboneInfo]:
    return build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=0)


def _write_crops(directory: Path) -> list[Path]:
    """Small synthetic crops of different sizes and modes (RGB, L, RGBA, CMYK)."""
    rng = np.random.default_rng(0)
    specs = [
        ("rgb.jpg", "RGB", (40, 30)),
        ("gray.jpg", "L", (17, 50)),
        ("alpha.png", "RGBA", (33, 33)),
        ("cmyk.jpg", "CMYK", (64, 20)),
    ]
    paths = []
    for name, mode, size in specs:
        channels = len(mode)
        pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
        image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
        image.save(directory / name)
        paths.append(directory / name)
    return paths


def test_shape_order_and_unit_norm(
    tmp_path: Path,
    lite0: tuple[EmbeddingNet, BackboneInfo],
) -> None:
    net, info = lite0
    paths = _write_crops(tmp_path)
    out = embed_images(net, paths, info=info, batch_size=3)  # batches of 3 + 1
    assert out.shape == (4, 256) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    reversed_out = embed_images(net, [str(p) for p in reversed(paths)], info=info, batch_size=2)
    np.testing.assert_allclose(reversed_out[::-1], out, atol=1e-5)
    for i, path in enumerate(paths):  # each row equals embedding the image alone
        np.testing.assert_allclose(embed_images(net, [path], info=info)[0], out[i], atol=1e-5)
    assert np.abs(out[0] - out[1]).max() > 1e-3  # different images, different embeddings


@pytest.mark.skipif(not all(p.is_file() for p in REAL_IMAGES), reason="shared data not present")
def test_real_camera_trap_images(lite0: tuple[EmbeddingNet, BackboneInfo]) -> None:
    net, info = lite0
    out = embed_images(net, REAL_IMAGES + REAL_IMAGES[:1], info=info, batch_size=2)
    assert out.shape == (3, 256)
    np.testing.assert_allclose(out[2], out[0], atol=1e-5)
    # Two frames of the same sequence are similar but not identical.
    assert 0.5 < float(out[0] @ out[1]) < 0.99999


def test_worker_processes_give_same_result(
    tmp_path: Path,
    lite0: tuple[EmbeddingNet, BackboneInfo],
) -> None:
    net, info = lite0
    paths = _write_crops(tmp_path)
    in_process = embed_images(net, paths, info=info, batch_size=2)
    with_worker = embed_images(net, paths, info=info, batch_size=2, num_workers=1)
    np.testing.assert_allclose(with_worker, in_process, atol=1e-6)


def test_empty_paths(lite0: tuple[EmbeddingNet, BackboneInfo]) -> None:
    net, info = lite0
    out = embed_images(net, [], info=info)
    assert out.shape == (0, 256) and out.dtype == np.float32


def test_unreadable_image_raises_naming_path(
    tmp_path: Path,
    lite0: tuple[EmbeddingNet, BackboneInfo],
) -> None:
    net, info = lite0
    good = _write_crops(tmp_path)[0]
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a JPEG")
    with pytest.raises(ValueError, match="notes.jpg"):
        embed_images(net, [good, bad], info=info)
    with pytest.raises(ValueError, match="missing.jpg"):
        embed_images(net, [tmp_path / "missing.jpg"], info=info)


def test_eval_mode_used_and_training_mode_restored(
    tmp_path: Path,
    lite0: tuple[EmbeddingNet, BackboneInfo],
) -> None:
    net, info = lite0
    paths = _write_crops(tmp_path)[:2]
    expected = embed_images(net, paths, info=info)
    net.train()
    try:
        # BatchNorm in train mode would use batch statistics and change the result.
        np.testing.assert_allclose(embed_images(net, paths, info=info), expected, atol=1e-6)
        assert net.training
    finally:
        net.eval()


def test_preprocess_uses_info_size_mean_std(lite0: tuple[EmbeddingNet, BackboneInfo]) -> None:
    _, info = lite0
    image = Image.new("RGB", (10, 30), color=(255, 0, 128))
    tensor = preprocess_image(image, info)
    assert tensor.shape == (3, info.input_size, info.input_size)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(info.mean)) / torch.tensor(
        info.std
    )
    torch.testing.assert_close(tensor[:, 5, 5], expected)
