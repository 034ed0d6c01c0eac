"""Batch inference: image crop files -> unit-norm float32 embeddings.

Preprocessing (``preprocess_image``) is the single definition shared by inference and any
later fine-tuning: convert to RGB, squash-resize to ``info.input_size`` square (crops are
already tight around the animal, so no centre crop), scale to [0, 1], normalise with
``info.mean``/``info.std``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from embeddings.model import BackboneInfo, EmbeddingNet


def load_rgb(path: Path) -> Image.Image:
    """Decode the image at ``path`` fully and return it in RGB mode (L/RGBA/CMYK/P...).

    Raises ValueError naming ``path`` if it is missing, not an image, or truncated.
    """
    try:
        with Image.open(path) as image:
            image.load()  # decode now so truncated files fail here, not later
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {type(error).__name__}: {error}") from error


def preprocess_image(image: Image.Image, info: BackboneInfo) -> torch.Tensor:
    """PIL image -> normalised float32 tensor of shape ``(3, S, S)``, S = info.input_size."""
    size = info.input_size
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0  # (S, S, 3) in [0, 1]
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)
    mean = torch.tensor(info.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(3, 1, 1)
    return ((tensor - mean) / std).contiguous()


class _CropDataset(Dataset[tuple[torch.Tensor, int]]):
    """Item ``i`` is ``(preprocessed image (3,S,S), i)``; the index restores input order."""

    def __init__(self, paths: Sequence[Path], info: BackboneInfo) -> None:
        self.paths = list(paths)
        self.info = info

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return preprocess_image(load_rgb(self.paths[index]), self.info), index


def _check_compatible(net: EmbeddingNet, info: BackboneInfo, batch_size: int) -> None:
    """Reject mismatched net/info pairs and nonsensical batch sizes up front."""
    if net.feature_dim != info.feature_dim:
        raise ValueError(
            f"net feature_dim {net.feature_dim} != info.feature_dim {info.feature_dim}: "
            "info does not describe this net"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _run(
    net: EmbeddingNet, loader: DataLoader[tuple[torch.Tensor, int]], out: np.ndarray, device: str
) -> None:
    """Fill ``out`` (N, embedding_dim) row by row from ``loader``, in eval/inference mode."""
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            for batch, indices in loader:
                vectors = net(batch.to(device, non_blocking=True))
                out[indices.numpy()] = vectors.float().cpu().numpy()
    finally:
        net.train(was_training)  # leave the caller's training/eval mode as it was


def embed_images(
    net: EmbeddingNet,
    paths: Sequence[Path | str],
    *,
    info: BackboneInfo,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
) -> np.ndarray:
    """Embed image files with ``net``.

    Args:
        net: the embedding network; moved to ``device`` in place (``nn.Module.to``).
            Its train/eval mode is restored on return.
        paths: image files of any size/mode (converted to RGB).
        info: the ``BackboneInfo`` returned with ``net`` (input size, mean, std).
        batch_size, num_workers: DataLoader settings; order never depends on them.
        device: torch device string, e.g. "cpu" or "cuda:0".

    Returns:
        float32 array of shape ``(len(paths), net.embedding_dim)``; row i is the unit-norm
        embedding of ``paths[i]``. Empty ``paths`` gives shape ``(0, embedding_dim)``.

    Raises:
        ValueError: an image cannot be read (the message names its path), or ``net`` and
            ``info`` disagree.
        RuntimeError: the network produced non-finite values.
    """
    _check_compatible(net, info, batch_size)
    out = np.empty((len(paths), net.embedding_dim), dtype=np.float32)
    if len(paths) == 0:
        return out
    loader: DataLoader[tuple[torch.Tensor, int]] = DataLoader(
        _CropDataset([Path(p) for p in paths], info),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.startswith("cuda"),
    )
    net.to(device)
    _run(net, loader, out, device)
    if not np.isfinite(out).all():
        raise RuntimeError("embedding network produced non-finite values (NaN/inf)")
    return out
