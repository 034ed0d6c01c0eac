"""Triplet-loss training of an ``EmbeddingNet`` (Norouzzadeh et al. 2019, section 2.3).

Loss: ``pytorch_metric_learning`` ``TripletMarginLoss`` on the L2-normalised embeddings,
over the triplets that ``TripletMarginMiner(type_of_triplets="semihard")`` mines in each
batch (negative farther from the anchor than the positive, but within the margin).

Class balance (``TrainConfig.class_balance``, the project's setting, as for the classifier):

* ``"oversample"`` (the default here, and what this module always did): class-balanced
  batches, ``MPerClassSampler`` draws P classes x K crops per batch, classes uniformly, so
  a rare species' crops come back many times per epoch: oversampling.
* ``"none"``: batches of P*K rows drawn from the natural distribution (a seeded shuffle,
  torch's ``RandomSampler``); common species fill most batches and a rare one often has no
  positive pair in a batch.
* ``"weighted"``: the same natural batches, with each mined triplet's loss multiplied by its
  anchor class's weight f_i = N / (C n_i) (pytorch-metric-learning's
  ``ClassWeightedReducer``; ``activelearn.classifier.class_weights`` gives the same numbers).
  Semi-hard triplets all have a positive loss, so its plain mean equals the unweighted
  loss's default (``AvgNonZeroReducer``) up to the weights.

Two modes:

* ``"full"``: every layer trains, on augmented crops decoded from disk (random resized
  crop, horizontal flip, colour jitter, random greyscale so that day crops also look
  like night infrared ones). The default where CUDA exists.
* ``"head"``: only the Linear head trains, on backbone features computed once per crop
  (``backbone_features``). Seconds instead of hours on a CPU, so the default without
  CUDA. Augmentation does not apply to cached features; callers may cache a few
  augmented views (``backbone_features(..., augment_seed=s)``) and stack them.

Determinism: everything random (head init is the caller's; here batch composition and
augmentations) derives from ``TrainConfig.seed``. On CPU the same seed, data and config
give bit-identical weights and loss curves. Item augmentations are seeded per item, so
``num_workers`` does not change results.

``MPerClassSampler`` draws from ``pytorch_metric_learning.utils.common_functions.NUMPY_RANDOM``
(numpy's global RNG by default); it is swapped for a seeded ``RandomState`` only while an
epoch's indices are drawn. Do not train in two threads of one process at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_metric_learning import losses, miners, reducers, samplers
from pytorch_metric_learning.utils import common_functions as pml_common
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from torchvision.transforms import v2

from embeddings.inference import embed_features, load_rgb, preprocess_image
from embeddings.model import BackboneInfo, EmbeddingNet

MODES: tuple[str, ...] = ("full", "head")
# The class-balance settings, as ``activelearn.classifier.CLASS_BALANCES`` (see above).
CLASS_BALANCES: tuple[str, ...] = ("none", "weighted", "oversample")

# Item key handed from the batch lists to the dataset: (row index, augmentation seed).
_ItemKey = tuple[int, int]


def default_mode() -> str:
    """ "full" if CUDA is available (fine-tuning every layer is affordable), else "head"."""
    return "full" if torch.cuda.is_available() else "head"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        mode: "full" (all layers) or "head" (Linear head on cached backbone features).
        epochs: passes over the data; one epoch is ``floor(N / (P*K))`` batches (>= 1).
        batch_p: classes per batch (P); lowered to the number of usable classes if larger.
        batch_k: crops per class per batch (K, >= 2); a class with fewer crops is drawn
            with replacement (``MPerClassSampler``'s behaviour).
        lr: Adam learning rate of the head.
        margin: triplet margin, on distances between unit vectors (range [0, 2]).
        seed: seeds batch composition and augmentations (not the head init: the caller
            built the net).
        device: torch device string, e.g. "cpu" or "cuda:0".
        weight_decay: Adam weight decay (all trained parameters).
        backbone_lr_scale: full mode: backbone learning rate = ``lr * backbone_lr_scale``
            (pretrained layers move slower than the fresh head).
        freeze_batchnorm: full mode: keep BatchNorm running statistics fixed (eval mode).
            Batches of P*K crops from few classes give poor batch statistics; the
            ImageNet ones are steadier. Affine BatchNorm weights still train.
        num_workers: full mode: DataLoader workers decoding and augmenting crops.
        class_balance: "oversample" (P x K class-balanced batches), "none" (natural
            batches) or "weighted" (natural batches, class-weighted triplet loss); see the
            module docstring.
    """

    mode: str
    epochs: int = 30
    batch_p: int = 8
    batch_k: int = 4
    lr: float = 1e-3
    margin: float = 0.2
    seed: int = 0
    device: str = "cpu"
    weight_decay: float = 1e-4
    backbone_lr_scale: float = 0.1
    freeze_batchnorm: bool = True
    num_workers: int = 0
    class_balance: str = "oversample"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; allowed values: {', '.join(MODES)}")
        if self.epochs < 1 or self.batch_p < 2 or self.batch_k < 2:
            raise ValueError(
                "epochs must be >= 1, batch_p >= 2 and batch_k >= 2, got "
                f"epochs={self.epochs} batch_p={self.batch_p} batch_k={self.batch_k}"
            )
        if not (self.lr > 0 and self.margin > 0 and self.weight_decay >= 0):
            raise ValueError("lr and margin must be > 0 and weight_decay >= 0")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.class_balance not in CLASS_BALANCES:
            raise ValueError(
                f"unknown class_balance {self.class_balance!r}; allowed values: "
                f"{', '.join(CLASS_BALANCES)}"
            )


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        mode, epochs, seed: as configured.
        loss_curve: mean triplet loss per epoch (mean over batches; a batch without any
            semi-hard triplet contributes 0), length ``epochs``.
        triplets_curve: mean number of mined semi-hard triplets per batch, per epoch.
        n_samples: rows trained on (after dropping classes with < 2 samples).
        n_classes: classes trained on (each with >= 2 samples).
        n_dropped: rows dropped because their class had < 2 samples (no positive pair).
        batch_p, batch_k: the batch shape actually used (P may be lowered).
        batches_per_epoch: optimiser steps per epoch.
        seconds: wall-clock training time.
        config: the full configuration.
    """

    mode: str
    epochs: int
    seed: int
    loss_curve: list[float]
    triplets_curve: list[float]
    n_samples: int
    n_classes: int
    n_dropped: int
    batch_p: int
    batch_k: int
    batches_per_epoch: int
    seconds: float
    config: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the config nested under "config")."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Plan:
    """Usable rows and batch shape derived from the labels."""

    rows: np.ndarray  # (n,) int64 indices into the caller's arrays
    labels: np.ndarray  # (n,) int64 labels of those rows
    n_classes: int
    batch_p: int
    dense: np.ndarray  # (n,) int64 class index 0..n_classes-1 of those rows (sorted classes)
    weights: np.ndarray  # (n_classes,) float32 f_i = n / (n_classes * n_i)


def _usable_rows(labels: np.ndarray, config: TrainConfig) -> _Plan:
    """Drop classes with < 2 samples (no positive pair); need >= 2 classes (no negative)."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.shape} {labels.dtype}")
    classes, counts = np.unique(labels, return_counts=True)
    keep = classes[counts >= 2]
    if keep.size < 2:
        raise ValueError(
            f"triplet training needs >= 2 classes with >= 2 samples each; got {keep.size} "
            f"(class sizes: {dict(zip(classes.tolist(), counts.tolist(), strict=True))})"
        )
    rows = np.flatnonzero(np.isin(labels, keep)).astype(np.int64)
    batch_p = min(config.batch_p, int(keep.size))
    kept, dense = np.unique(labels[rows], return_inverse=True)
    return _Plan(
        rows=rows,
        labels=labels[rows].astype(np.int64),
        n_classes=int(keep.size),
        batch_p=batch_p,
        dense=dense.reshape(-1).astype(np.int64),
        # f_i = N / (C n_i): scikit-learn's "balanced" weights, as the classifier's.
        weights=compute_class_weight("balanced", classes=kept, y=labels[rows]).astype(np.float32),
    )


@contextmanager
def _pml_numpy_rng(rng: np.random.RandomState) -> Iterator[None]:
    """Make pytorch-metric-learning's samplers draw from ``rng`` inside the block."""
    previous = pml_common.NUMPY_RANDOM
    pml_common.NUMPY_RANDOM = rng
    try:
        yield
    finally:
        pml_common.NUMPY_RANDOM = previous


def _epoch_batches(
    sampler: samplers.MPerClassSampler | None,
    rng: np.random.RandomState,
    batch_size: int,
    n_rows: int,
) -> list[list[int]]:
    """One epoch of ``batch_size``-row batches, as positions into the ``n_rows`` usable rows.

    With ``sampler`` (class balance "oversample"): its P x K batches. Without (the natural
    distribution): torch's ``RandomSampler`` shuffle, seeded from ``rng``, cut into
    batches; the last partial batch is dropped as ``MPerClassSampler``'s epoch does, unless
    it is the only one.
    """
    if sampler is None:
        generator = torch.Generator().manual_seed(int(rng.randint(0, 2**31 - 1)))
        batches = BatchSampler(
            RandomSampler(range(n_rows), generator=generator),
            batch_size=batch_size,
            drop_last=n_rows >= batch_size,
        )
        return [list(batch) for batch in batches]
    with _pml_numpy_rng(rng):
        order = [int(i) for i in sampler]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _sampler(plan: _Plan, config: TrainConfig) -> samplers.MPerClassSampler | None:
    """P x K sampler whose epoch covers about every usable row once; None unless the class
    balance is "oversample" (the other settings draw natural batches)."""
    if config.class_balance != "oversample":
        return None
    batch_size = plan.batch_p * config.batch_k
    return samplers.MPerClassSampler(
        plan.labels,
        m=config.batch_k,
        batch_size=batch_size,
        length_before_new_iter=max(batch_size, plan.rows.size),
    )


class _TripletObjective:
    """Semi-hard mining + triplet margin loss on one batch of unit-norm embeddings.

    ``weights`` (C,): per-class weights of the anchors' classes (``ClassWeightedReducer``);
    the labels handed to ``__call__`` must then be class indices 0..C-1.
    """

    def __init__(self, margin: float, weights: np.ndarray | None = None) -> None:
        self.miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")
        if weights is None:
            self.loss = losses.TripletMarginLoss(margin=margin)
        else:
            reducer = reducers.ClassWeightedReducer(torch.from_numpy(weights))
            self.loss = losses.TripletMarginLoss(margin=margin, reducer=reducer)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(loss scalar, number of mined triplets)."""
        triplets = self.miner(embeddings, labels)
        loss: torch.Tensor = self.loss(embeddings, labels, triplets)
        return loss, int(triplets[0].numel())


def _objective(plan: _Plan, config: TrainConfig) -> _TripletObjective:
    """The batch loss; the triplets are weighted by class only for "weighted"."""
    weights = plan.weights if config.class_balance == "weighted" else None
    return _TripletObjective(config.margin, weights)


def _step(
    optimizer: torch.optim.Optimizer,
    objective: _TripletObjective,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
) -> tuple[float, int]:
    """One optimiser step; a batch without semi-hard triplets has loss 0 and no step."""
    loss, n_triplets = objective(embeddings, labels)
    optimizer.zero_grad(set_to_none=True)
    if n_triplets > 0:
        loss.backward()
        optimizer.step()
    return float(loss.detach()), n_triplets


def _check_features(net: EmbeddingNet, features: np.ndarray, labels: np.ndarray) -> None:
    """features must be finite (N, net.feature_dim) float32 with one label per row."""
    if features.ndim != 2 or features.dtype != np.float32 or features.shape[1] != net.feature_dim:
        raise ValueError(
            f"features must be float32 (N, {net.feature_dim}), got {features.shape} "
            f"{features.dtype}"
        )
    if labels.shape != (features.shape[0],):
        raise ValueError(f"{features.shape[0]} feature rows but labels of shape {labels.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf")


def _result(
    config: TrainConfig,
    plan: _Plan,
    n_total: int,
    curves: tuple[list[float], list[float]],
    batches: int,
    started: float,
) -> TrainResult:
    return TrainResult(
        mode=config.mode,
        epochs=config.epochs,
        seed=config.seed,
        loss_curve=curves[0],
        triplets_curve=curves[1],
        n_samples=int(plan.rows.size),
        n_classes=plan.n_classes,
        n_dropped=n_total - int(plan.rows.size),
        batch_p=plan.batch_p,
        batch_k=config.batch_k,
        batches_per_epoch=batches,
        seconds=time.perf_counter() - started,
        config=config,
    )


def train_head(
    net: EmbeddingNet,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    config: TrainConfig,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``net.head`` in place on cached backbone features with semi-hard triplet loss.

    Args:
        net: its ``head`` is updated in place (and moved to ``config.device``); the
            backbone is neither used nor changed.
        features: (N, net.feature_dim) float32 pooled backbone outputs
            (``backbone_features``), possibly several augmented views per crop.
        labels: (N,) integer class of each row. Classes with < 2 rows are dropped.
        config: ``config.mode`` must be "head".
        progress: called as ``progress(epochs done, config.epochs)`` after every epoch.

    Returns:
        TrainResult. The net is left in eval mode.

    Raises:
        ValueError: wrong mode, shapes, non-finite features, or < 2 classes with >= 2 rows.
    """
    if config.mode != "head":
        raise ValueError(f"train_head needs config.mode == 'head', got {config.mode!r}")
    _check_features(net, features, labels)
    plan = _usable_rows(labels, config)
    started = time.perf_counter()
    head = net.head.to(config.device)
    x = torch.from_numpy(np.ascontiguousarray(features[plan.rows])).to(config.device)
    y = torch.from_numpy(plan.dense).to(config.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    objective = _objective(plan, config)
    sampler, rng = _sampler(plan, config), np.random.RandomState(config.seed)
    curves: tuple[list[float], list[float]] = ([], [])
    n_batches = 0
    net.train()
    for epoch in range(config.epochs):
        batches = _epoch_batches(sampler, rng, plan.batch_p * config.batch_k, plan.rows.size)
        stats = []
        for batch in batches:
            index = torch.tensor(batch, dtype=torch.long, device=config.device)
            embeddings = F.normalize(head(x[index]), p=2.0, dim=1)
            stats.append(_step(optimizer, objective, embeddings, y[index]))
        _record(curves, stats)
        n_batches = len(batches)
        if progress is not None:
            progress(epoch + 1, config.epochs)
    net.eval()
    return _result(config, plan, labels.shape[0], curves, n_batches, started)


def _record(curves: tuple[list[float], list[float]], stats: list[tuple[float, int]]) -> None:
    """Append an epoch's mean loss and mean mined-triplet count to the curves."""
    curves[0].append(float(np.mean([loss for loss, _ in stats])))
    curves[1].append(float(np.mean([n for _, n in stats])))


def augmentation(info: BackboneInfo) -> v2.Compose:
    """The training augmentation: PIL RGB crop -> normalised float32 ``(3, S, S)`` tensor.

    Random resized crop (scale 0.5-1: crops are already tight, keep most of the animal),
    horizontal flip (animals face either way; no vertical flip), colour jitter, and
    greyscale with p=0.3 because night infrared frames are greyscale and day frames are
    not: a species seen only by day must still match its night crops. Draws from torch's
    global CPU RNG.
    """
    size = info.input_size
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(
                (size, size), scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), antialias=True
            ),
            v2.RandomHorizontalFlip(p=0.5),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
            v2.RandomGrayscale(p=0.3),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(info.mean), std=list(info.std)),
        ]
    )


class _ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Item ``(index, seed)`` -> (image tensor (3,S,S), index).

    ``seed < 0`` means no augmentation (``preprocess_image``, as at inference); otherwise
    the augmentation runs under a torch CPU RNG seeded with ``seed``, so the result
    depends only on the key, not on worker processes or batch order.
    """

    def __init__(self, paths: Sequence[Path], info: BackboneInfo) -> None:
        self.paths = list(paths)
        self.info = info
        self.augment = augmentation(info)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: _ItemKey) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        index, seed = key
        image: Image.Image = load_rgb(self.paths[index])
        if seed < 0:
            return preprocess_image(image, self.info), index
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tensor: torch.Tensor = self.augment(image)
        return tensor, index


def _loader(
    dataset: _ImageDataset, batches: list[list[_ItemKey]], *, num_workers: int, device: str
) -> DataLoader[tuple[torch.Tensor, int]]:
    """DataLoader over explicit batches of item keys, in the given order."""
    return DataLoader(
        dataset,
        batch_sampler=batches,  # type: ignore[arg-type]
        num_workers=num_workers,
        pin_memory=device.startswith("cuda"),
    )


def _check_net_info(net: EmbeddingNet, info: BackboneInfo) -> None:
    if net.feature_dim != info.feature_dim:
        raise ValueError(
            f"net feature_dim {net.feature_dim} != info.feature_dim {info.feature_dim}"
        )


def backbone_features(
    net: EmbeddingNet,
    paths: Sequence[Path | str],
    *,
    info: BackboneInfo,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    augment_seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Pooled backbone outputs (no head) of image files: the cache that head mode trains on.

    Args:
        net: moved to ``device`` in place; its train/eval mode is restored on return
            (the backbone runs in eval mode).
        paths: image files (any size/mode).
        info: the net's ``BackboneInfo``.
        batch_size, num_workers: DataLoader settings; results do not depend on them.
        device: torch device string.
        augment_seed: None -> inference preprocessing (``preprocess_image``); an int ->
            one randomly augmented view per image (``augmentation``), reproducible from
            the seed (image i uses a seed derived from (augment_seed, i)).
        progress: called as ``progress(images done, images in all)`` after every batch.

    Returns:
        float32 (len(paths), info.feature_dim); row i belongs to paths[i].

    Raises:
        ValueError: an unreadable image (named), batch_size < 1, net/info mismatch.
        RuntimeError: non-finite features.
    """
    _check_net_info(net, info)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty((len(paths), info.feature_dim), dtype=np.float32)
    seeds = _item_seeds(augment_seed, len(paths))
    keys = [(i, int(s)) for i, s in enumerate(seeds)]
    batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
    dataset = _ImageDataset([Path(p) for p in paths], info)
    was_training = net.training
    net.to(device).eval()
    done = 0
    try:
        with torch.inference_mode():
            for images, indices in _loader(
                dataset, batches, num_workers=num_workers, device=device
            ):
                features = net.backbone(images.to(device, non_blocking=True))
                out[indices.numpy()] = features.float().cpu().numpy()
                if progress is not None:
                    done += int(indices.numel())
                    progress(done, out.shape[0])
    finally:
        net.train(was_training)
    if not np.isfinite(out).all():
        raise RuntimeError("backbone produced non-finite features (NaN/inf)")
    return out


def _item_seeds(seed: int | None, n: int) -> np.ndarray:
    """(n,) int64 per-item augmentation seeds from ``seed``; all -1 (no augmentation) if None."""
    if seed is None:
        return np.full(n, -1, dtype=np.int64)
    return np.random.default_rng(seed).integers(0, 2**62, size=n, dtype=np.int64)


def embed_from_features(
    net: EmbeddingNet, features: np.ndarray, *, batch_size: int = 65536, device: str = "cpu"
) -> np.ndarray:
    """Apply ``net.head`` + L2 normalisation to cached backbone features.

    Equals ``embed_images`` up to float rounding when ``features`` came from
    ``backbone_features`` of the same backbone, without decoding any image: re-embedding
    a million crops after head-mode training is one matrix product. The work is
    ``inference.embed_features`` (chunked, memmap-friendly); ``device`` is accepted for
    symmetry with the training functions, and the product runs on the CPU.

    Args:
        features: (N, net.feature_dim) float32.
    Returns:
        float32 (N, net.embedding_dim), unit-norm rows.
    """
    if features.ndim != 2 or features.shape[1] != net.feature_dim:
        raise ValueError(f"features must be (N, {net.feature_dim}), got {features.shape}")
    return embed_features(net.head.cpu(), features, batch_size=batch_size)


def _freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (fixed running statistics)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def _full_optimizer(net: EmbeddingNet, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam with a slower learning rate for the pretrained backbone than for the head."""
    return torch.optim.Adam(
        [
            {"params": net.backbone.parameters(), "lr": config.lr * config.backbone_lr_scale},
            {"params": net.head.parameters(), "lr": config.lr},
        ],
        weight_decay=config.weight_decay,
    )


@contextmanager
def _seeded_torch(seed: int, device: str) -> Iterator[None]:
    """Seed torch's RNGs (stochastic depth etc.) for the block; restore the caller's after."""
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def train_full(
    net: EmbeddingNet,
    paths: Sequence[Path | str],
    labels: np.ndarray,
    *,
    info: BackboneInfo,
    config: TrainConfig,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Fine-tune every layer of ``net`` in place on augmented image crops.

    Args:
        net: trained in place, moved to ``config.device``; left in eval mode.
        paths: crop image files, one per label.
        labels: (N,) integer class of each crop; classes with < 2 crops are dropped.
        info: the net's ``BackboneInfo`` (input size, normalisation).
        config: ``config.mode`` must be "full".
        progress: called as ``progress(epochs done, config.epochs)`` after every epoch.

    Returns:
        TrainResult (loss per epoch etc.).

    Raises:
        ValueError: wrong mode/shapes, an unreadable image, or < 2 usable classes.
    """
    if config.mode != "full":
        raise ValueError(f"train_full needs config.mode == 'full', got {config.mode!r}")
    _check_net_info(net, info)
    if labels.shape != (len(paths),):
        raise ValueError(f"{len(paths)} paths but labels of shape {labels.shape}")
    plan = _usable_rows(labels, config)
    started = time.perf_counter()
    dataset = _ImageDataset([Path(paths[i]) for i in plan.rows], info)
    optimizer = _full_optimizer(net.to(config.device), config)
    objective = _objective(plan, config)
    sampler, rng = _sampler(plan, config), np.random.RandomState(config.seed)
    curves: tuple[list[float], list[float]] = ([], [])
    n_batches = 0
    with _seeded_torch(config.seed, config.device):
        for epoch in range(config.epochs):
            batches = _epoch_batches(sampler, rng, plan.batch_p * config.batch_k, plan.rows.size)
            stats = _full_epoch(net, dataset, batches, plan, rng, optimizer, objective, config)
            _record(curves, stats)
            n_batches = len(batches)
            if progress is not None:
                progress(epoch + 1, config.epochs)
    net.eval()
    return _result(config, plan, labels.shape[0], curves, n_batches, started)


def _full_epoch(
    net: EmbeddingNet,
    dataset: _ImageDataset,
    batches: list[list[int]],
    plan: _Plan,
    rng: np.random.RandomState,
    optimizer: torch.optim.Optimizer,
    objective: _TripletObjective,
    config: TrainConfig,
) -> list[tuple[float, int]]:
    """One epoch of full fine-tuning; returns (loss, mined triplets) per batch."""
    keyed = [[(i, int(rng.randint(0, 2**31 - 1))) for i in batch] for batch in batches]
    net.train()
    if config.freeze_batchnorm:
        _freeze_batchnorm(net)
    y = torch.from_numpy(plan.dense)
    stats = []
    for images, indices in _loader(
        dataset, keyed, num_workers=config.num_workers, device=config.device
    ):
        embeddings = net(images.to(config.device, non_blocking=True))
        stats.append(_step(optimizer, objective, embeddings, y[indices].to(config.device)))
    return stats
