"""What every backbone builder returns, and helpers they share. Django-free."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about one backbone: feature width, input size and normalisation, and the
    keys of its ImageNet classifier layer (which the feature extractor drops)."""

    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classifier_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BuiltBackbone:
    """A feature extractor ``(B, 3, S, S) -> (B, spec.feature_dim)``, what it expects and
    where its weights came from."""

    module: nn.Module
    spec: BackboneSpec
    source: str


@contextmanager
def seeded_cpu_rng(seed: int) -> Iterator[None]:
    """Run the block with the CPU RNG seeded by ``seed``; restore the caller's RNG after.

    Module constructors draw their initial weights from torch's global CPU generator;
    forking it makes construction deterministic without side effects on the caller.
    Only the CPU generator is touched (``torch.manual_seed`` would also reseed CUDA).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed so large weight files are not held in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hf_cached_file(repo: str, filenames: Sequence[str]) -> Path | None:
    """The first of ``filenames`` of Hugging Face repository ``repo`` in the local cache
    (``$HF_HUB_CACHE``), or None. Reads the cache only: never downloads."""
    from huggingface_hub import constants, try_to_load_from_cache

    # Read at call time: $HF_HUB_CACHE (and tests) may change it after import.
    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE)
        if isinstance(found, str):
            return Path(found)
    return None


def require_exact_load(missing: list[str], unexpected: list[str], what: str) -> None:
    """ValueError ``"{what}: N missing keys [...], M unexpected keys [...]"`` unless both
    lists (a ``load_state_dict(strict=False)`` result) are empty."""
    if missing or unexpected:
        raise ValueError(
            f"{what}: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
