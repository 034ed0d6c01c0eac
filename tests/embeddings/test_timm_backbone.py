"""Tests for embeddings.timm_backbone: a small, randomly initialised timm ViT (the DINOv2
family) built here stands in for real weights; nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embeddings.model import (
    WeightsUnavailableError,
    build_embedding_net,
    load_embedding_checkpoint,
    save_embedding_checkpoint,
)
from tests.embeddings.hf_cache import hub_snapshot, isolate_hf_cache

timm = pytest.importorskip("timm")
pytest.importorskip("huggingface_hub")

NAME = "test_vit"  # timm's tiny ViT (64-d, 160 px): same code path as vit_*_dinov2
HUB_ID = "timm/test_vit.r160_in1k"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache, and any download attempt fails the test."""
    return isolate_hf_cache(monkeypatch, tmp_path)


def _reference(seed: int, name: str = NAME) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False).state_dict()  # with its 1000-way head


def _assert_trunk_equals(
    state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
) -> None:
    assert set(state) == {k for k in reference if not k.startswith("head.")}
    for key, value in state.items():
        assert torch.equal(value, reference[key]), key


def test_weights_file_loads_exactly_and_describes_the_model(tmp_path: Path) -> None:
    reference = _reference(1)
    path = tmp_path / "vit.pth"
    torch.save(reference, path)
    net, info = build_embedding_net(backbone=f"timm:{NAME}", weights=str(path), seed=0)
    _assert_trunk_equals(net.backbone.state_dict(), reference)
    assert (info.feature_dim, info.input_size, info.mean, info.std) == (
        64,
        160,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    )
    assert info.pretrained and str(path) in info.weights_source and "sha256=" in info.weights_source
    out = net(torch.randn(2, 3, 160, 160))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    save_embedding_checkpoint(net, info, tmp_path / "net.pt")
    loaded, loaded_info = load_embedding_checkpoint(tmp_path / "net.pt")
    assert loaded_info == info
    x = torch.randn(1, 3, 160, 160)
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_user_cache_is_read_without_downloading(no_downloads: Path) -> None:
    from safetensors.torch import save_file

    reference = _reference(2)
    snapshot = hub_snapshot(no_downloads, HUB_ID)
    save_file({k: v.contiguous() for k, v in reference.items()}, snapshot / "model.safetensors")
    net, info = build_embedding_net(backbone=f"timm:{NAME}", weights="imagenet", seed=0)
    _assert_trunk_equals(net.backbone.state_dict(), reference)
    assert "Hugging Face cache" in info.weights_source and str(snapshot) in info.weights_source


def test_not_cached_names_what_to_download() -> None:
    with pytest.raises(WeightsUnavailableError, match=f"hf download {HUB_ID}"):
        build_embedding_net(backbone=f"timm:{NAME}", weights="imagenet", seed=0)


def test_missing_file_names_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match=f"does not exist.*hf download {HUB_ID}"):
        build_embedding_net(backbone=f"timm:{NAME}", weights=str(tmp_path / "no.pth"), seed=0)


def test_file_of_another_architecture_raises(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(_reference(0, "test_vit2"), path)
    with pytest.raises(ValueError, match=f"does not fit timm:{NAME}"):
        build_embedding_net(backbone=f"timm:{NAME}", weights=str(path), seed=0)


def test_unknown_model_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown timm model"):
        build_embedding_net(backbone="timm:no_such_model_xyz", weights="random", seed=0)


def test_concat_with_a_timm_part() -> None:
    net, info = build_embedding_net(
        backbone=f"concat:mobilenet_v2+timm:{NAME}", weights="random", seed=0, embedding_dim=8
    )
    assert (info.feature_dim, info.input_size) == (1280 + 64, 224)
    with torch.inference_mode():
        features = net.backbone(torch.rand(1, 3, 224, 224))
    torch.testing.assert_close(features[:, 1280:].norm(dim=1), torch.ones(1))
