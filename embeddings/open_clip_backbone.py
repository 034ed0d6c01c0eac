"""Backbone adapter for open_clip image towers (BioCLIP, CLIP, SigLIP, ...). Django-free.

``backbone="open_clip:<model>"`` builds the open_clip model and keeps its image tower only:
the features are ``model.encode_image(x)`` (the projected, unnormalised image embedding),
``(B, 3, S, S) -> (B, embed_dim)``. ``<model>`` is

* a built-in architecture (``open_clip:ViT-B-16``), weights from a file
  (``weights="/path/open_clip_pytorch_model.bin"`` or ``.safetensors``/``.pth``/``.pt``; for
  OpenAI's original checkpoints use the ``-quickgelu`` architecture, e.g. ``ViT-B-16-quickgelu``);
* or a Hugging Face repository (``open_clip:hf-hub:imageomics/bioclip``): its
  ``open_clip_config.json`` and, with ``weights="imagenet"``, its weights come from the user's
  Hugging Face cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``).

Nothing is downloaded here: a file or cache entry that is missing raises
``WeightsUnavailableError`` naming what to download (``hf download imageomics/bioclip``). The
file must fit the image tower (every ``visual.*`` parameter present, no unknown ``visual.*``
key; the text tower's keys are ignored, it is discarded), otherwise ValueError: weights are
never left randomly initialised unless ``weights="random"``. Input size and mean/std come
from the model's own preprocessing config (open_clip's resize mode and interpolation are not
reproduced: crops are resized to S x S like every other backbone's). ``open_clip_torch`` is
optional (``pip install 'trapwise[openclip]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.base import WeightsUnavailableError
from embeddings.backbone_base import (
    BackboneSpec,
    BuiltBackbone,
    hf_cached_file,
    require_exact_load,
    seeded_cpu_rng,
    sha256_file,
)

HF_HUB_PREFIX = "hf-hub:"
_HUB_CONFIG = "open_clip_config.json"
# The weight files of open_clip's Hugging Face repositories, in the order open_clip tries them.
_HUB_FILES: tuple[str, ...] = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_VISUAL = "visual."


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as error:
        raise WeightsUnavailableError(
            "open_clip backbones need the open_clip_torch package, which is not importable "
            f"({error}); install it with `pip install 'trapwise[openclip]'` "
            "(or `pip install open_clip_torch`)"
        ) from error
    return open_clip


class OpenClipImageTower(nn.Module):
    """An open_clip model's image tower: ``(B, 3, S, S) -> (B, embed_dim)``, equal to the
    whole model's ``encode_image(x)`` (CLIP, CustomTextCLIP: ``visual(x)``; CoCa's tower
    returns (pooled, tokens) and only the pooled embedding is kept)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x)
        features: torch.Tensor = out[0] if isinstance(out, tuple) else out
        return features


def _hub_repo(name: str) -> str:
    return name[len(HF_HUB_PREFIX) :] if name.startswith(HF_HUB_PREFIX) else ""


def _download_hint(name: str) -> str:
    repo = _hub_repo(name)
    if repo:
        return (
            f"download `hf download {repo}` on a machine with internet (it fills the Hugging "
            "Face cache), or pass weights='/path/to/open_clip_pytorch_model.bin' "
            "(the architecture still comes from the cached open_clip_config.json)"
        )
    open_clip = _open_clip()
    hubs = []
    for tag in open_clip.list_pretrained_tags_by_model(name):
        hub = str((open_clip.get_pretrained_cfg(name, tag) or {}).get("hf_hub") or "")
        if hub:
            hubs.append(f"`hf download {hub.rstrip('/')}` (tag {tag!r})")
    where = f"e.g. {', or '.join(hubs[:2])}, " if hubs else ""
    return (
        f"download a weights file of open_clip {name} on a machine with internet ({where}"
        "see open_clip.list_pretrained()) and pass weights='/path/to/open_clip_model.safetensors'"
    )


class _OpenClipRandomInitNotice(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded ... initialized randomly" warning: the
    weights are loaded here afterwards, and the message would tell an admin the opposite."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextmanager
def _quiet_random_init_notice() -> Iterator[None]:
    # open_clip logs through the root logger (logging.warning).
    notice = _OpenClipRandomInitNotice()
    logging.root.addFilter(notice)
    try:
        yield
    finally:
        logging.root.removeFilter(notice)


def _new_model(name: str) -> nn.Module:
    """The whole open_clip model, randomly initialised (global CPU RNG); nothing downloaded.

    A hub name reads its config from the cache (``local-dir:`` on the cached snapshot, with
    ``load_weights=False`` so open_clip loads nothing itself)."""
    open_clip = _open_clip()
    repo = _hub_repo(name)
    if repo:
        config = hf_cached_file(repo, [_HUB_CONFIG])
        if config is None:
            raise WeightsUnavailableError(
                f"the {_HUB_CONFIG} of open_clip:{name} is not in the Hugging Face cache and "
                f"is never downloaded here; {_download_hint(name)}"
            )
        source = f"local-dir:{config.parent}"
    else:
        source = name
    try:
        with _quiet_random_init_notice():
            model: nn.Module = open_clip.create_model(
                source, pretrained=None, load_weights=False, pretrained_text=False
            )
    except RuntimeError as error:  # open_clip: "Model config for '...' not found in built-ins"
        raise ValueError(f"unknown open_clip model {name!r}: {error}") from error
    return model


def _load_file(model: nn.Module, path: Path, name: str) -> None:
    """Load ``path`` (a whole-model open_clip state dict) into ``model``'s image tower."""
    open_clip = _open_clip()
    try:
        state = open_clip.factory.load_state_dict(str(path), weights_only=True)
    except Exception as error:  # safetensors, pickle and zip errors have no common base
        raise WeightsUnavailableError(f"cannot read weights file {path}: {error}") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    try:
        # open_clip's own loading steps for the image tower (load_checkpoint): third-party
        # formats converted, the position embedding resized to the model's grid.
        state = open_clip.convert.convert_state_dict(model, dict(state))
        open_clip.model.resize_pos_embed(state, model)
        visual = {k[len(_VISUAL) :]: v for k, v in state.items() if k.startswith(_VISUAL)}
        result = model.visual.load_state_dict(visual, strict=False)  # type: ignore[union-attr]
    except (RuntimeError, KeyError, ValueError) as error:  # mis-shaped keys
        raise ValueError(f"weights file {path} does not fit open_clip:{name}: {error}") from error
    require_exact_load(
        result.missing_keys,
        result.unexpected_keys,
        f"weights file {path} does not fit open_clip:{name}'s image tower",
    )


def _spec(tower: OpenClipImageTower) -> BackboneSpec:
    cfg: dict[str, Any] = getattr(tower.visual, "preprocess_cfg", None) or {}
    size: Any = cfg.get("size") or getattr(tower.visual, "image_size", 224)
    side = max(size) if isinstance(size, tuple | list) else int(size)
    mean = tuple(float(v) for v in cfg["mean"])
    std = tuple(float(v) for v in cfg["std"])
    dim = getattr(tower.visual, "output_dim", None)
    if not isinstance(dim, int):  # towers without the attribute: measure one image
        with torch.inference_mode():
            dim = int(tower(torch.zeros(1, 3, side, side)).shape[1])
    return BackboneSpec(dim, int(side), mean, std)  # type: ignore[arg-type]


def _weights_file(name: str, weights: str) -> tuple[Path, str]:
    """The file ``weights`` ("imagenet" or a path) designates, and how to describe it.

    Checked before the model is built, so a missing file costs no model construction."""
    if weights != "imagenet":
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"weights file {path} for open_clip:{name} does not exist; {_download_hint(name)}"
            )
        return path, f"open_clip {name} file {path} sha256={sha256_file(path)[:16]}"
    repo = _hub_repo(name)
    if not repo:
        raise WeightsUnavailableError(
            f"open_clip:{name} has no single default set of pretrained weights; "
            f"{_download_hint(name)}, or name a Hugging Face repository "
            "(open_clip:hf-hub:<org>/<repo>) cached locally"
        )
    cached = hf_cached_file(repo, _HUB_FILES)
    if cached is None:
        raise WeightsUnavailableError(
            f"pretrained weights of open_clip:{name} are not in the Hugging Face cache "
            f"and are never downloaded here; {_download_hint(name)}"
        )
    version = _open_clip().__version__
    return cached, f"open_clip {name} {version} from Hugging Face cache {cached}"


def open_clip_backbone_build(name: str, *, weights: str | None, seed: int) -> BuiltBackbone:
    """The image tower of open_clip model ``name`` with ``weights`` ("imagenet": a hub
    model's weights from the HF cache; "random"; a file path; None: the architecture only,
    to load a checkpoint into).

    Raises:
        ValueError: unknown model name, or a file that does not fit it.
        WeightsUnavailableError: open_clip missing, the file missing or unreadable, or the
            hub model (config or weights) not in the cache; the message names what to download.
    """
    _open_clip()
    path = None
    if weights is None:
        source = "architecture only"
    elif weights == "random":
        source = f"random init (seed {seed}) — explicitly requested, NOT pretrained"
    else:
        path, source = _weights_file(name, weights)
    with seeded_cpu_rng(seed):
        model = _new_model(name)
    if path is not None:
        _load_file(model, path, name)
    tower = OpenClipImageTower(model.visual)  # type: ignore[arg-type]
    return BuiltBackbone(tower.eval(), _spec(tower), source)
