"""Tests for embeddings.open_clip_backbone: a tiny, randomly initialised open_clip ViT CLIP
registered here stands in for BioCLIP's weights; nothing is ever downloaded."""

from __future__ import annotations

import json
import logging
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from embeddings.model import (
    WeightsUnavailableError,
    build_embedding_net,
    load_embedding_checkpoint,
    save_embedding_checkpoint,
)
from tests.embeddings.hf_cache import hub_snapshot, isolate_hf_cache

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("huggingface_hub")

NAME = "trapwise-test-tiny-clip"
HUB_ID = "trapwise-tests/tiny-bioclip"
TINY: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
# BioCLIP's own preprocessing statistics are OpenAI CLIP's; these differ, to see they are read.
HUB_MEAN = (0.25, 0.5, 0.75)
HUB_STD = (0.2, 0.3, 0.4)


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The tiny architecture registered under NAME, an empty Hugging Face cache, and any
    download attempt fails the test. Returns the cache directory."""
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, NAME, deepcopy(TINY))
    cache = isolate_hf_cache(monkeypatch, tmp_path)
    # open_clip imported hf_hub_download by name: that copy must not download either.
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", _fail)
    return cache


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("unexpected download")


def _reference(seed: int, cfg: dict[str, Any] = TINY) -> dict[str, torch.Tensor]:
    """A whole-model (image and text tower) open_clip state dict, as checkpoints hold."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.CLIP(**deepcopy(cfg)).state_dict()


def _image_features(path: Path, x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]):
    """Brute force: open_clip's own loader and ``encode_image`` on normalised pixels."""
    model = open_clip.create_model(NAME, pretrained=str(path)).eval()
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model.encode_image((x - m) / s)


def _cache_repo(cache: Path, state: dict[str, torch.Tensor]) -> Path:
    """Lay out HUB_ID in the Hugging Face cache as `hf download` does; the snapshot dir."""
    snapshot = hub_snapshot(cache, HUB_ID)
    config = {"model_cfg": TINY, "preprocess_cfg": {"mean": HUB_MEAN, "std": HUB_STD}}
    (snapshot / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(state, snapshot / "open_clip_pytorch_model.bin")
    return snapshot


def test_weights_file_gives_encode_image_features(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(_reference(1), path)
    with caplog.at_level(logging.INFO):
        net, info = build_embedding_net(
            backbone=f"open_clip:{NAME}", weights=str(path), seed=0, embedding_dim=8
        )
    # open_clip's "initialized randomly" notice is wrong here (the file is loaded after).
    assert "Instantiating model" in caplog.text and "initialized randomly" not in caplog.text
    clip_mean = open_clip.OPENAI_DATASET_MEAN
    clip_std = open_clip.OPENAI_DATASET_STD
    assert (info.feature_dim, info.input_size, info.mean, info.std) == (
        16,
        32,
        tuple(clip_mean),
        tuple(clip_std),
    )
    assert info.pretrained and str(path) in info.weights_source and "sha256=" in info.weights_source
    # Only the image tower is kept.
    assert all(k.startswith("visual.") for k in net.backbone.state_dict())
    x = torch.rand(3, 3, 32, 32)
    expected = _image_features(path, x, clip_mean, clip_std)
    m = torch.tensor(info.mean).view(1, 3, 1, 1)
    s = torch.tensor(info.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        features = net.backbone((x - m) / s)
        out = net((x - m) / s)
    assert features.shape == (3, 16)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    assert out.shape == (3, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    with torch.inference_mode():
        torch.testing.assert_close(out, F.normalize(net.head(expected), dim=1))
    save_embedding_checkpoint(net, info, tmp_path / "net.pt")
    loaded, loaded_info = load_embedding_checkpoint(tmp_path / "net.pt")
    assert loaded_info == info
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_user_cache_is_read_without_downloading(tiny_model: Path) -> None:
    reference = _reference(2)
    snapshot = _cache_repo(tiny_model, reference)
    net, info = build_embedding_net(
        backbone=f"open_clip:hf-hub:{HUB_ID}", weights="imagenet", seed=0
    )
    assert "Hugging Face cache" in info.weights_source and str(snapshot) in info.weights_source
    assert (info.feature_dim, info.input_size, info.mean, info.std) == (16, 32, HUB_MEAN, HUB_STD)
    x = torch.rand(2, 3, 32, 32)
    expected = _image_features(snapshot / "open_clip_pytorch_model.bin", x, HUB_MEAN, HUB_STD)
    m = torch.tensor(HUB_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(HUB_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        torch.testing.assert_close(net.backbone((x - m) / s), expected, rtol=0, atol=0)


def test_not_cached_names_what_to_download() -> None:
    with pytest.raises(WeightsUnavailableError, match=f"hf download {HUB_ID}"):
        build_embedding_net(backbone=f"open_clip:hf-hub:{HUB_ID}", weights="imagenet", seed=0)


def test_cached_config_without_weights_names_what_to_download(tiny_model: Path) -> None:
    snapshot = _cache_repo(tiny_model, _reference(0))
    (snapshot / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(WeightsUnavailableError, match=f"not in the Hugging Face cache.*{HUB_ID}"):
        build_embedding_net(backbone=f"open_clip:hf-hub:{HUB_ID}", weights="imagenet", seed=0)


def test_missing_file_names_what_to_download(tmp_path: Path) -> None:
    missing = str(tmp_path / "no.bin")
    with pytest.raises(WeightsUnavailableError, match=f"does not exist.*hf download {HUB_ID}"):
        build_embedding_net(backbone=f"open_clip:hf-hub:{HUB_ID}", weights=missing, seed=0)
    # A built-in architecture names the hub repositories of its pretrained tags.
    with pytest.raises(
        WeightsUnavailableError,
        match="does not exist.*hf download timm/vit_base_patch16_clip_224.openai",
    ):
        build_embedding_net(backbone="open_clip:ViT-B-16", weights=missing, seed=0)


def test_builtin_name_needs_a_file_for_pretrained_weights() -> None:
    with pytest.raises(WeightsUnavailableError, match="no single default.*hf-hub"):
        build_embedding_net(backbone=f"open_clip:{NAME}", weights="imagenet", seed=0)


def test_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    wider = deepcopy(TINY)
    wider["vision_cfg"]["width"] = 48
    path = tmp_path / "other.pt"
    torch.save(_reference(0, wider), path)
    with pytest.raises(ValueError, match=f"does not fit open_clip:{NAME}"):
        build_embedding_net(backbone=f"open_clip:{NAME}", weights=str(path), seed=0)
    # Text-tower-only weights leave the image tower unloaded: refused, not left random.
    text_only = tmp_path / "text.pt"
    torch.save({k: v for k, v in _reference(0).items() if not k.startswith("visual.")}, text_only)
    with pytest.raises(ValueError, match=r"image tower: \d+ missing keys"):
        build_embedding_net(backbone=f"open_clip:{NAME}", weights=str(text_only), seed=0)


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="cannot read weights file"):
        build_embedding_net(backbone=f"open_clip:{NAME}", weights=str(path), seed=0)


def test_unknown_model_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown open_clip model"):
        build_embedding_net(backbone="open_clip:no-such-model-xyz", weights="random", seed=0)


def test_concat_with_an_open_clip_part() -> None:
    net, info = build_embedding_net(
        backbone=f"concat:mobilenet_v2+open_clip:{NAME}", weights="random", seed=0, embedding_dim=8
    )
    assert (info.feature_dim, info.input_size) == (1280 + 16, 224)
    with torch.inference_mode():
        features = net.backbone(torch.rand(1, 3, 224, 224))
    torch.testing.assert_close(features[:, 1280:].norm(dim=1), torch.ones(1))
