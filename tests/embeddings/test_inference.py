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


# --- Fast path (folded, channels_last, bf16) against the fp32 reference -------------------


def _reference(net: EmbeddingNet, info: BackboneInfo, paths: list[Path]) -> np.ndarray:
    """Plain eager fp32 NCHW forward of the unmodified net: the definition of correct."""
    from embeddings.inference import load_rgb

    batch = torch.stack([preprocess_image(load_rgb(p), info) for p in paths])
    with torch.inference_mode():
        return net.eval()(batch).numpy()


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))  # rows are unit-norm


def test_fp32_fast_path_matches_eager_reference(
    tmp_path: Path, lite0: tuple[EmbeddingNet, BackboneInfo]
) -> None:
    net, info = lite0
    paths = _write_crops(tmp_path)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = embed_images(net, paths, info=info, precision="fp32")
    assert _min_cosine(out, _reference(net, info, paths)) >= 0.999
    np.testing.assert_allclose(out, _reference(net, info, paths), atol=1e-4)
    for key, value in net.state_dict().items():  # folding/casting happened on a copy
        assert value.dtype == before[key].dtype and torch.equal(value, before[key]), key


def test_resnet50_fast_paths_match_reference(tmp_path: Path) -> None:
    """Conv+BN folding applies to ResNet-50 (torchvision traces); bf16 stays close."""
    net, info = build_embedding_net(backbone="resnet50", weights="random", seed=0)
    paths = _write_crops(tmp_path)[:2]
    reference = _reference(net, info, paths)
    fp32 = embed_images(net, paths, info=info, precision="fp32")
    assert _min_cosine(fp32, reference) >= 0.999
    bf16 = embed_images(net, paths, info=info, precision="bf16")
    assert _min_cosine(bf16, reference) >= 0.99
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)


def test_concatenated_backbone_fast_paths_match_reference(tmp_path: Path) -> None:
    """A concatenation (parts of different input sizes) through the fast path: fp32 equals
    the eager net, bf16 stays close, rows unit-norm."""
    net, info = build_embedding_net(
        backbone="concat:efficientnet_lite1+mobilenet_v2", weights="imagenet", seed=0
    )
    paths = [p for p in REAL_IMAGES if p.is_file()] or _write_crops(tmp_path)[:2]
    reference = _reference(net, info, paths)
    fp32 = embed_images(net, paths, info=info, precision="fp32")
    np.testing.assert_allclose(fp32, reference, atol=1e-4)
    bf16 = embed_images(net, paths, info=info, precision="bf16")
    assert _min_cosine(bf16, reference) >= 0.99
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)


def test_bf16_close_to_fp32_on_real_images(
    tmp_path: Path, lite0: tuple[EmbeddingNet, BackboneInfo]
) -> None:
    net, info = lite0
    paths = [p for p in REAL_IMAGES if p.is_file()] or _write_crops(tmp_path)
    fp32 = embed_images(net, paths, info=info, precision="fp32")
    bf16 = embed_images(net, paths, info=info, precision="bf16")
    assert bf16.dtype == np.float32
    assert _min_cosine(fp32, bf16) >= 0.99
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)  # head is fp32


def test_auto_precision_resolution() -> None:
    from embeddings.inference import native_bf16_available, resolve_precision

    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16_available() else "fp32")
    assert resolve_precision("auto", "cuda:0") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")


def test_order_preserved_with_two_workers_and_threads_restored(
    tmp_path: Path, lite0: tuple[EmbeddingNet, BackboneInfo]
) -> None:
    net, info = lite0
    paths = _write_crops(tmp_path)
    threads = torch.get_num_threads()
    in_process = embed_images(net, paths, info=info, batch_size=1)
    workers = embed_images(net, paths[::-1], info=info, batch_size=3, num_workers=2)
    np.testing.assert_allclose(workers[::-1], in_process, atol=1e-5)
    embed_images(net, paths[:1], info=info, num_threads=1)
    assert torch.get_num_threads() == threads


# --- Head-only re-embedding of cached backbone features -----------------------------------


def _head(features: int = 48, dim: int = 8) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(features, dim)


def test_embed_features_equals_torch_head_and_normalise() -> None:
    from embeddings.inference import embed_features

    head = _head()
    features = np.random.default_rng(0).random((103, 48), dtype=np.float32)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(head(torch.from_numpy(features)), dim=1).numpy()
    out = embed_features(head, features, batch_size=10)  # 10 full chunks + 3 rows
    assert out.shape == (103, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(embed_features(head, features), out, atol=1e-6)  # one chunk


def test_embed_features_accepts_net_and_memmap(
    tmp_path: Path, lite0: tuple[EmbeddingNet, BackboneInfo]
) -> None:
    from embeddings.inference import embed_features

    net, _ = lite0
    features = np.random.default_rng(1).random((37, net.feature_dim), dtype=np.float32)
    np.save(tmp_path / "features.npy", features)
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    out = embed_features(net, mapped, batch_size=16)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(net.head(torch.from_numpy(features)), dim=1)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-6)
    assert embed_features(net, mapped[:0]).shape == (0, net.embedding_dim)


def test_embed_features_rejects_bad_input() -> None:
    from embeddings.inference import embed_features

    head = _head()
    with pytest.raises(ValueError, match="float32"):
        embed_features(head, np.zeros((2, 48), np.float64))
    with pytest.raises(ValueError, match=r"\(N, 48\)"):
        embed_features(head, np.zeros((2, 47), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        embed_features(head, np.zeros((2, 48), np.float32), batch_size=0)


def test_load_rgb_turns_upright_and_scales_16_bit(tmp_path: Path) -> None:
    """COCO boxes cut for training (cocodata) are relative to the upright image too."""
    from embeddings.inference import load_rgb

    ramp = np.tile(np.arange(0, 200, dtype=np.uint8), (100, 1))  # 200 x 100, brighter rightwards
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(ramp).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "t.png", exif=exif)
    upright = load_rgb(tmp_path / "t.png")
    assert upright.mode == "RGB" and upright.size == (200, 100)
    assert np.array_equal(np.asarray(upright)[..., 0], ramp)
    Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "s.png")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "s.png"))[..., 1], ramp)
