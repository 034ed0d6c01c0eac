"""Batch inference: image crop files -> unit-norm float32 embeddings, and head-only
re-embedding of cached backbone features.

Preprocessing (``preprocess_image``) is the single definition shared by inference and any
later fine-tuning: convert to RGB, squash-resize to ``info.input_size`` square (crops are
already tight around the animal, so no centre crop), scale to [0, 1], normalise with
``info.mean``/``info.std``.

Speed (measured by ``benchmarks/embedding_speed.py`` on a 2-core CPU): the fast path runs a
private copy of the backbone with Conv+BatchNorm folded (where the backbone traces with
torch.fx), in channels_last memory format and, where the CPU has native bfloat16 matmul
(AVX512-BF16/AMX), in bfloat16. The head and the L2 normalisation always run in float32,
so rows stay unit-norm to float32 precision. ``precision="fp32"`` is the float32
reference; bf16 embeddings agree with it to cosine >= 0.999 on real crops.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from detector.crops import image_load
from embeddings.model import BackboneInfo, EmbeddingNet

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
# CPU flags that mean oneDNN runs bfloat16 convolutions/matmuls natively; without them
# bf16 is emulated and slower than float32.
_NATIVE_BF16_FLAGS: frozenset[str] = frozenset({"avx512_bf16", "amx_bf16"})


def load_rgb(path: Path) -> Image.Image:
    """Decode the image at ``path`` fully and return it upright in 8-bit RGB mode.

    Any mode is accepted (L/RGBA/CMYK/P, 16-bit greyscale scaled to 8 bits); the EXIF
    orientation is applied, as boxes are relative to the upright image (``detector.crops``).
    Raises ValueError naming ``path`` if it is missing, not an image, or truncated.
    """
    try:
        return image_load(path)
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


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it does not exist, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16_available() -> bool:
    """True if this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool(_cpu_flags() & _NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: str) -> str:
    """Map ``precision`` ("auto", "fp32", "bf16") to the concrete "fp32" or "bf16".

    "auto" is "bf16" on a CPU with native bfloat16 and "fp32" otherwise (including every
    non-CPU device: CUDA users opt into reduced precision explicitly).
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; allowed values: {', '.join(PRECISIONS)}"
        )
    if precision != "auto":
        return precision
    on_cpu = torch.device(device).type == "cpu"
    return "bf16" if on_cpu and native_bf16_available() else "fp32"


def available_cpus() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity where exposed)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads; restore the caller's setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fold_batchnorm(backbone: nn.Module) -> nn.Module:
    """Eval-mode ``backbone`` with each Conv2d+BatchNorm2d pair folded into one Conv2d.

    Folding removes one full pass over every activation map (~20% of ResNet-50's CPU time).
    It needs a torch.fx trace; a backbone that does not trace is returned unchanged.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(backbone)
    except Exception:  # noqa: BLE001 - tracing arbitrary modules can raise anything
        return backbone


def _inference_backbone(net: EmbeddingNet, precision: str, device: str) -> nn.Module:
    """A private, eval-mode, speed-tuned copy of ``net.backbone``; ``net`` is not modified.

    channels_last lets oneDNN use its blocked NHWC convolution kernels on CPU (about 2x
    over NCHW for ResNet-50 and EfficientNet-Lite0 here).
    """
    backbone = copy.deepcopy(net.backbone).eval().to(device)
    if torch.device(device).type == "cpu":
        backbone = _fold_batchnorm(backbone)
    backbone = backbone.to(memory_format=torch.channels_last)
    if precision == "bf16":
        backbone = backbone.to(torch.bfloat16)
    return backbone


def _embed_batch(
    backbone: nn.Module, head: nn.Linear, batch: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """(B, 3, S, S) float32 -> (B, D) float32 unit rows; the head always runs in float32."""
    x = batch.to(dtype=dtype, memory_format=torch.channels_last)
    features = backbone(x).float()
    return F.normalize(head(features), p=2.0, dim=1)


def _run(
    net: EmbeddingNet,
    loader: DataLoader[tuple[torch.Tensor, int]],
    out: np.ndarray,
    *,
    device: str,
    precision: str,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Fill ``out`` (N, embedding_dim) row by row from ``loader``, in eval/inference mode.

    ``progress(rows done, rows in all)`` is called after every batch."""
    was_training = net.training
    net.eval()
    try:
        backbone = _inference_backbone(net, precision, device)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        done = 0
        with torch.inference_mode():
            for batch, indices in loader:
                vectors = _embed_batch(
                    backbone, net.head, batch.to(device, non_blocking=True), dtype
                )
                out[indices.numpy()] = vectors.cpu().numpy()
                if progress is not None:
                    done += int(indices.numel())
                    progress(done, out.shape[0])
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
    precision: str = "fp32",
    num_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Embed image files with ``net``.

    Args:
        net: the embedding network; moved to ``device`` in place (``nn.Module.to``).
            Its train/eval mode and weights are left as they were: inference runs on a
            private copy of the backbone (Conv+BN folded, channels_last, maybe bf16).
        paths: image files of any size/mode (converted to RGB).
        info: the ``BackboneInfo`` returned with ``net`` (input size, mean, std).
        batch_size, num_workers: DataLoader settings; order never depends on them.
            Decoding small crops costs ~2% of the network's time on CPU, so worker
            processes (which compete with the network for the same cores) do not pay off
            on a small machine; the default is to decode in this process.
        device: torch device string, e.g. "cpu" or "cuda:0".
        precision: "fp32" (default: the reference, and what ``embed_features`` on
            float32 cached features reproduces to 1e-5), "bf16" (backbone in bfloat16, head
            in float32; ~2x faster on CPUs with native bf16, cosine >= 0.999 to fp32) or
            "auto" (bf16 on a CPU with native bfloat16, else fp32).
        num_threads: torch intra-op threads while embedding (restored afterwards);
            None means every CPU this process may use.
        progress: called as ``progress(images done, images in all)`` after every batch
            (e.g. to report a job's progress); None for no reports.

    Returns:
        float32 array of shape ``(len(paths), net.embedding_dim)``; row i is the unit-norm
        embedding of ``paths[i]``. Empty ``paths`` gives shape ``(0, embedding_dim)``.

    Raises:
        ValueError: an image cannot be read (the message names its path), ``net`` and
            ``info`` disagree, or an unknown precision.
        RuntimeError: the network produced non-finite values.
    """
    _check_compatible(net, info, batch_size)
    resolved = resolve_precision(precision, device)
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
    with torch_threads(num_threads or available_cpus()):
        _run(net, loader, out, device=device, precision=resolved, progress=progress)
    if not np.isfinite(out).all():
        raise RuntimeError("embedding network produced non-finite values (NaN/inf)")
    return out


def _head_arrays(head: nn.Linear | EmbeddingNet) -> tuple[np.ndarray, np.ndarray]:
    """The projection as numpy float32: weight transposed ``(F, D)`` and bias ``(D,)``."""
    linear = head.head if isinstance(head, EmbeddingNet) else head
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"head must be an nn.Linear or an EmbeddingNet, got {type(head).__name__}")
    with torch.no_grad():
        weight = linear.weight.detach().to("cpu", torch.float32).numpy().T.copy()
        if linear.bias is None:
            bias = np.zeros(linear.out_features, dtype=np.float32)
        else:
            bias = linear.bias.detach().to("cpu", torch.float32).numpy().copy()
    return np.ascontiguousarray(weight), bias


def embed_features(
    head: nn.Linear | EmbeddingNet, features: np.ndarray, *, batch_size: int = 65536
) -> np.ndarray:
    """Re-embed cached backbone features: ``normalize(features @ W.T + b)``, chunked.

    Equals ``net(x)`` for the images whose backbone features are ``features``, without
    running the backbone: what head-only fine-tuning needs after every training round.

    Args:
        head: the projection ``nn.Linear(F, D)``, or an ``EmbeddingNet`` (its ``.head``).
        features: ``(N, F)`` float32, e.g. a read-only ``np.load(..., mmap_mode="r")``
            memmap; it is read ``batch_size`` rows at a time and never copied whole.
        batch_size: rows per matmul; 65536 x 2048 float32 is 512 MiB of input pages.

    Returns:
        ``(N, D)`` float32, unit-norm rows (a zero projection stays zero).

    Raises:
        ValueError: wrong shape/dtype, non-positive batch_size, or non-finite output.
        TypeError: ``head`` is neither an ``nn.Linear`` nor an ``EmbeddingNet``.
    """
    weight, bias = _head_arrays(head)
    if features.ndim != 2 or features.dtype != np.float32 or features.shape[1] != weight.shape[0]:
        raise ValueError(
            f"features must be float32 (N, {weight.shape[0]}), got shape {features.shape} "
            f"dtype {features.dtype}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty((features.shape[0], weight.shape[1]), dtype=np.float32)
    for start in range(0, features.shape[0], batch_size):
        _project_chunk(
            features[start : start + batch_size], weight, bias, out[start : start + batch_size]
        )
    if not np.isfinite(out).all():
        raise ValueError("embed_features: non-finite values (NaN/inf) in features or head")
    return out


def _project_chunk(
    chunk: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray
) -> None:
    """``out[:] = normalize(chunk @ weight + bias)`` in place, all float32, no temporaries
    of the input's size (a memmap chunk is read straight into the BLAS call)."""
    np.matmul(chunk, weight, out=out)
    out += bias
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    np.maximum(norms, 1e-12, out=norms)  # same epsilon as F.normalize: zero rows stay zero
    out /= norms[:, None]
