"""Backbone adapter for timm models (DINOv2, ConvNeXt, EVA, ...) for users with internet.
Django-free.

``backbone="timm:<model name>"`` builds ``timm.create_model(name, num_classes=0)`` (pooled
features) and loads its weights from

* a file (``weights="/path/model.safetensors"`` or a ``.pth``/``.pt``/``.bin`` state dict), or
* ``weights="imagenet"``: the model's pretrained tag from the user's Hugging Face cache
  (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``). Nothing is downloaded here: a
  model that is not cached raises ``WeightsUnavailableError`` naming the repository to
  download (``hf download timm/<model>``) and the file alternative.

The file must fit the architecture (every parameter of the trunk present, nothing unknown),
otherwise ValueError: weights are never left randomly initialised unless ``weights="random"``.
Input size and mean/std come from the model's own pretrained config. ``timm`` is optional
(``pip install 'trapwise[timm]'``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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

# The file names timm's Hugging Face repositories use, in the order timm tries them.
_HUB_FILES: tuple[str, ...] = (
    "model.safetensors",
    "open_clip_model.safetensors",
    "pytorch_model.bin",
    "open_clip_pytorch_model.bin",
)


def _timm() -> Any:
    try:
        import timm
    except ImportError as error:
        raise WeightsUnavailableError(
            "timm backbones need the timm package, which is not importable "
            f"({error}); install it with `pip install 'trapwise[timm]'` (or `pip install timm`)"
        ) from error
    return timm


def _hub_id(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return str(cfg.get("hf_hub_id") or "")


def _download_hint(name: str, model: nn.Module) -> str:
    hub_id = _hub_id(model)
    url = (getattr(model, "pretrained_cfg", {}) or {}).get("url") or ""
    where = f"`hf download {hub_id}`" if hub_id else f"the file at {url or '(no known URL)'}"
    return (
        f'download {where} on a machine with internet (or run `python -c "import timm; '
        f"timm.create_model('{name}', pretrained=True)\"`, which fills the Hugging Face cache), "
        "or pass weights='/path/to/weights.safetensors'"
    )


def _cached_file(model: nn.Module) -> Path | None:
    """The model's pretrained weights in the local Hugging Face cache, or None."""
    hub_id = _hub_id(model)
    if not hub_id:
        return None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else list(_HUB_FILES)
    return hf_cached_file(hub_id, names)


def _load_file(model: nn.Module, path: Path, name: str) -> None:
    """Load ``path`` into ``model`` (num_classes=0): trunk keys must match exactly."""
    timm = _timm()
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as error:  # safetensors, pickle and zip errors have no common base
        raise WeightsUnavailableError(f"cannot read weights file {path}: {error}") from error
    # The model family's own converter (e.g. original DINOv2 / CLIP checkpoints to timm keys,
    # position embeddings resized to the model's grid), as timm applies when it loads weights.
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if convert is not None:
        state = convert(state, model)
    own = set(model.state_dict())
    classifier = str((getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or "head")
    # The classifier layer is dropped (num_classes=0), whatever number of classes it had.
    state = {k: v for k, v in state.items() if k in own or not k.startswith(f"{classifier}.")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise ValueError(f"weights file {path} does not fit timm:{name}: {error}") from error
    require_exact_load(
        result.missing_keys, result.unexpected_keys, f"weights file {path} does not fit timm:{name}"
    )


def _spec(model: nn.Module) -> BackboneSpec:
    timm = _timm()
    config = timm.data.resolve_model_data_config(model)
    _, height, width = config["input_size"]
    mean = tuple(float(v) for v in config["mean"])
    std = tuple(float(v) for v in config["std"])
    dim = getattr(model, "head_hidden_size", None) or model.num_features
    return BackboneSpec(int(dim), int(max(height, width)), mean, std)  # type: ignore[arg-type]


def timm_backbone_build(name: str, *, weights: str | None, seed: int) -> BuiltBackbone:
    """``timm.create_model(name, num_classes=0)`` with ``weights`` ("imagenet": the HF cache;
    "random"; a file path; None: the architecture only, to load a checkpoint into).

    Raises:
        ValueError: unknown model name, or a file that does not fit it.
        WeightsUnavailableError: timm missing, the file missing or unreadable, or the model
            not in the cache; the message names what to download.
    """
    timm = _timm()
    try:
        with seeded_cpu_rng(seed):
            model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as error:  # timm: "Unknown model (...)"
        raise ValueError(f"unknown timm model {name!r}: {error}") from error
    if weights is None:
        source = "architecture only"
    elif weights == "random":
        source = f"random init (seed {seed}) — explicitly requested, NOT pretrained"
    elif weights == "imagenet":
        path = _cached_file(model)
        if path is None:
            raise WeightsUnavailableError(
                f"pretrained weights of timm:{name} are not in the Hugging Face cache "
                f"and are never downloaded here; {_download_hint(name, model)}"
            )
        _load_file(model, path, name)
        source = f"timm {name} {timm.__version__} from Hugging Face cache {path}"
    else:
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"weights file {path} for timm:{name} does not exist; {_download_hint(name, model)}"
            )
        _load_file(model, path, name)
        source = f"timm {name} file {path} sha256={sha256_file(path)[:16]}"
    return BuiltBackbone(model.eval(), _spec(model), source)
