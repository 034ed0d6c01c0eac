"""A projection head fitted without labels: PCA of the project's own crop features. Django-free.

A randomly initialised 256-d head throws away part of what the backbone knows (a linear probe
on its output loses several points against the raw features); the leading principal
components of the project's own crops keep the directions along which its crops differ most,
so kNN, k-Center and a linear classifier on the 256-d vectors do as well as on the raw
backbone features. No whitening: every component keeps its natural scale, so that distances
stay dominated by the large-variance directions, as in the raw features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# At most this many crops are used for the fit: the components of a random sample of this
# size are as good as those of all crops, at a fraction of the cost.
FIT_MAX_ROWS = 50_000


@dataclass(frozen=True)
class Projection:
    """``x -> components @ (x - mean)``: ``components`` (dim, D) orthonormal rows, ``mean``
    (D,), ``explained`` (dim,) the share of the features' variance each component explains."""

    components: np.ndarray
    mean: np.ndarray
    explained: np.ndarray

    def apply(self, features: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, dim) float32 (not normalised)."""
        return ((features - self.mean) @ self.components.T).astype(np.float32)


def pca_projection_fit(features: np.ndarray, *, dim: int, seed: int) -> Projection:
    """The leading ``dim`` principal directions of ``features`` (N, D), N >= 1.

    Rows are sampled (``FIT_MAX_ROWS``, from ``seed``) when there are more. When the features
    span fewer than ``dim`` directions (N - 1 < dim, or D < dim), the remaining rows of
    ``components`` are completed with an orthonormal basis of the rest (drawn from ``seed``),
    so the head keeps its width and stays an isometry on what the data spans.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"features must be (N >= 1, D), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite")
    if dim < 1 or dim > x.shape[1]:
        raise ValueError(f"dim must lie in [1, {x.shape[1]}], got {dim}")
    rng = np.random.default_rng(seed)
    if x.shape[0] > FIT_MAX_ROWS:
        x = x[np.sort(rng.choice(x.shape[0], FIT_MAX_ROWS, replace=False))]
    mean = x.mean(axis=0)
    centred = x - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    # Fix each component's sign (largest coordinate positive): the same data, the same head.
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    variance = singular**2
    rank = int((singular > singular.max(initial=0.0) * 1e-9).sum()) if singular.size else 0
    keep = min(dim, rank)
    components = vt[:keep]
    if keep < dim:
        components = np.vstack([components, _complement(components, dim - keep, x.shape[1], rng)])
    total = float(variance.sum())
    explained = np.zeros(dim)
    if total > 0:
        explained[:keep] = variance[:keep] / total
    return Projection(components.astype(np.float32), mean.astype(np.float32), explained)


def _complement(basis: np.ndarray, k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` orthonormal rows orthogonal to the orthonormal rows of ``basis`` (m, d)."""
    random = rng.normal(size=(d, k))
    if basis.size:
        random -= basis.T @ (basis @ random)
    q, _ = np.linalg.qr(random)
    return q.T[:k]


def head_from_projection(projection: Projection) -> nn.Linear:
    """An ``nn.Linear`` computing ``projection.apply`` (weight = components, bias = -C @ mean)."""
    dim, d = projection.components.shape
    head = nn.Linear(d, dim)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(projection.components))
        head.bias.copy_(torch.from_numpy(-(projection.components @ projection.mean)))
    return head
