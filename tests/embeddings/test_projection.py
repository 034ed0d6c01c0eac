"""The PCA head against brute force: scikit-learn's PCA, and what it keeps of the features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from embeddings.projection import head_from_projection, pca_projection_fit


def test_components_and_projection_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12)) + 3.0
    got = pca_projection_fit(x, dim=5, seed=0)
    ref = PCA(5, svd_solver="full").fit(x)
    # Same subspace and the same coordinates up to each component's sign.
    np.testing.assert_allclose(np.abs(got.components), np.abs(ref.components_), atol=1e-5)
    np.testing.assert_allclose(np.abs(got.apply(x)), np.abs(ref.transform(x)), atol=1e-4)
    np.testing.assert_allclose(got.explained, ref.explained_variance_ratio_, atol=1e-6)
    # No whitening: the projected variances are the data's own.
    np.testing.assert_allclose(got.apply(x).var(axis=0, ddof=1), ref.explained_variance_, rtol=1e-4)


def test_the_head_computes_the_projection() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    projection = pca_projection_fit(x, dim=3, seed=0)
    head = head_from_projection(projection)
    with torch.no_grad():
        out = head(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, projection.apply(x), atol=1e-5)


def test_full_width_keeps_every_distance() -> None:
    """With dim = D the projection is a rotation about the mean: distances are unchanged."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6))
    y = pca_projection_fit(x, dim=6, seed=0).apply(x)
    d_x = np.linalg.norm(x[:, None] - x[None], axis=2)
    d_y = np.linalg.norm(y[:, None] - y[None], axis=2)
    np.testing.assert_allclose(d_x, d_y, atol=1e-4)


def test_fewer_crops_than_dimensions_still_give_an_orthonormal_head() -> None:
    x = np.random.default_rng(3).normal(size=(4, 10))
    projection = pca_projection_fit(x, dim=8, seed=0)
    c = projection.components.astype(np.float64)
    np.testing.assert_allclose(c @ c.T, np.eye(8), atol=1e-5)
    assert projection.explained[3:].sum() == 0.0  # 4 points span 3 directions


def test_the_same_data_gives_the_same_head() -> None:
    x = np.random.default_rng(4).normal(size=(30, 6))
    a, b = pca_projection_fit(x, dim=4, seed=0), pca_projection_fit(x, dim=4, seed=0)
    np.testing.assert_array_equal(a.components, b.components)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="dim"):
        pca_projection_fit(np.ones((5, 3)), dim=4, seed=0)
    with pytest.raises(ValueError, match="finite"):
        pca_projection_fit(np.full((5, 3), np.nan), dim=2, seed=0)
    with pytest.raises(ValueError, match="features must be"):
        pca_projection_fit(np.ones(3), dim=1, seed=0)
