"""Test helpers for backbones read from the Hugging Face cache: an empty private cache where
any download fails the test, and a repository snapshot laid out as `hf download` leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def isolate_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point ``$HF_HUB_CACHE`` at an empty folder and make every download raise; the folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("unexpected download")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    return cache


def hub_snapshot(cache: Path, repo_id: str) -> Path:
    """Create ``repo_id``'s snapshot folder (revision ``main``) in ``cache``; the folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    return snapshot
