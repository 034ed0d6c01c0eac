"""Tests for embeddings.training: triplet training in head and full mode, feature caching."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses
from torch import nn

from embeddings.cocodata import CropSet, coco_crops
from embeddings.evaluation import knn_accuracy
from embeddings.inference import load_rgb, preprocess_image
from embeddings.model import BackboneInfo, EmbeddingNet, build_embedding_net
from embeddings.training import (
    TrainConfig,
    backbone_features,
    default_mode,
    embed_from_features,
    train_full,
    train_head,
)

# The bundled demo sample (69 missouri-dev images); a plain path keeps Django out.
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "annotator" / "fixtures" / "missouri-sample"
N_CLASSES, SEQS, PER_SEQ, SIGNAL, NUISANCE = 6, 4, 5, 4, 28


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (120, 32) float32, labels, sequence ids).

    Classes are separable on 4 signal dimensions, but each sequence adds a large random
    offset on 28 nuisance dimensions, so raw distances are dominated by the sequence:
    a head must learn to ignore the nuisance dimensions.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.0, size=(N_CLASSES, SIGNAL))
    rows, labels, groups = [], [], []
    for label in range(N_CLASSES):
        for seq in range(SEQS):
            offset = rng.normal(scale=3.0, size=NUISANCE)
            for _ in range(PER_SEQ):
                signal = centres[label] + rng.normal(scale=0.1, size=SIGNAL)
                rows.append(np.concatenate([signal, offset + rng.normal(scale=0.3, size=NUISANCE)]))
                labels.append(label)
                groups.append(label * SEQS + seq)
    return np.array(rows, dtype=np.float32), np.array(labels), np.array(groups)


def _tiny_net(seed: int = 0) -> EmbeddingNet:
    """Identity 'backbone' (features are the input) + a seeded Linear(32, 16) head."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(SIGNAL + NUISANCE, 16)
    return EmbeddingNet(nn.Identity(), head)


def _head_config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {"mode": "head", "epochs": 15, "batch_p": 4, "batch_k": 4}
    return TrainConfig(**{**values, **overrides})  # type: ignore[arg-type]


def _all_triplets_loss(net: EmbeddingNet, features: np.ndarray, labels: np.ndarray) -> float:
    """Triplet margin loss over every triplet of the set (no mining): the training objective."""
    vectors = torch.from_numpy(embed_from_features(net, features))
    return float(losses.TripletMarginLoss(margin=0.2)(vectors, torch.from_numpy(labels)))


def test_head_training_lowers_loss_and_improves_knn() -> None:
    features, labels, groups = _synthetic()
    net = _tiny_net()
    before = knn_accuracy(embed_from_features(net, features), labels, groups)
    loss_before = _all_triplets_loss(net, features, labels)
    result = train_head(net, features, labels, config=_head_config())
    after = knn_accuracy(embed_from_features(net, features), labels, groups)
    assert _all_triplets_loss(net, features, labels) < 0.6 * loss_before
    # The mined (semi-hard) loss is noisy as the mined set changes, but trends down, and
    # fewer triplets stay semi-hard as the classes separate.
    assert len(result.loss_curve) == len(result.triplets_curve) == 15
    assert np.mean(result.loss_curve[-3:]) < np.mean(result.loss_curve[:3])
    assert np.mean(result.triplets_curve[-3:]) < 0.6 * np.mean(result.triplets_curve[:3])
    assert before.top1 < 0.3
    assert after.top1 > before.top1 + 0.4
    assert (result.n_samples, result.n_classes, result.n_dropped) == (120, 6, 0)
    assert result.batches_per_epoch == 120 // 16
    assert not net.training


def test_head_training_is_deterministic_for_a_seed() -> None:
    features, labels, _ = _synthetic()
    nets = [_tiny_net(), _tiny_net(), _tiny_net()]
    results = [
        train_head(net, features, labels, config=_head_config(epochs=3, seed=seed))
        for net, seed in zip(nets, (1, 1, 2), strict=True)
    ]
    assert results[0].loss_curve == results[1].loss_curve
    assert torch.equal(nets[0].head.weight, nets[1].head.weight)
    assert not torch.equal(nets[0].head.weight, nets[2].head.weight)


def test_head_training_leaves_global_rngs_alone() -> None:
    features, labels, _ = _synthetic()
    np.random.seed(3)
    expected = np.random.rand()
    np.random.seed(3)
    train_head(_tiny_net(), features, labels, config=_head_config(epochs=1))
    assert np.random.rand() == expected


def test_singleton_classes_are_dropped_and_batch_p_lowered() -> None:
    features, labels, _ = _synthetic()
    labels = labels.copy()
    labels[0] = 99  # a class with one crop: no positive pair
    result = train_head(_tiny_net(), features, labels, config=_head_config(epochs=1, batch_p=50))
    assert (result.n_dropped, result.n_samples, result.n_classes) == (1, 119, 6)
    assert result.batch_p == 6


def test_needs_two_usable_classes() -> None:
    features, _, _ = _synthetic()
    labels = np.zeros(features.shape[0], dtype=np.int64)
    labels[0] = 1
    with pytest.raises(ValueError, match=">= 2 classes"):
        train_head(_tiny_net(), features, labels, config=_head_config())


def test_wrong_mode_and_shapes_rejected() -> None:
    features, labels, _ = _synthetic()
    with pytest.raises(ValueError, match="mode == 'head'"):
        train_head(_tiny_net(), features, labels, config=_head_config(mode="full"))
    with pytest.raises(ValueError, match="float32"):
        train_head(_tiny_net(), features[:, :5], labels, config=_head_config())
    with pytest.raises(ValueError, match="labels"):
        train_head(_tiny_net(), features, labels[:-1], config=_head_config())
    with pytest.raises(ValueError, match="unknown mode"):
        TrainConfig(mode="tail")
    with pytest.raises(ValueError, match="batch_k"):
        TrainConfig(mode="head", batch_k=1)


def test_embed_from_features_is_head_plus_l2_norm() -> None:
    features, _, _ = _synthetic()
    net = _tiny_net()
    vectors = embed_from_features(net, features, batch_size=7)
    expected = net(torch.from_numpy(features)).detach().numpy()
    assert vectors.shape == (120, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_default_mode_follows_cuda() -> None:
    assert default_mode() == ("full" if torch.cuda.is_available() else "head")


@pytest.fixture(scope="module")
def sample_crops(tmp_path_factory: pytest.TempPathFactory) -> CropSet:
    return coco_crops(
        SAMPLE_DIR / "annotations.json", SAMPLE_DIR, out_dir=tmp_path_factory.mktemp("crops")
    )


@pytest.fixture(scope="module")
def lite0() -> tuple[EmbeddingNet, BackboneInfo]:
    return build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=0)


def _two_per_class(crops: CropSet, n_classes: int) -> tuple[list[Path], np.ndarray]:
    """Two crops of each of the first ``n_classes`` labels with >= 2 crops."""
    rows: list[int] = []
    for label in np.unique(crops.labels):
        found = np.flatnonzero(crops.labels == label)
        if found.size >= 2 and len(rows) < 2 * n_classes:
            rows += found[:2].tolist()
    return [crops.paths[i] for i in rows], crops.labels[rows]


def test_backbone_features_feed_the_same_embedding_as_inference(
    sample_crops: CropSet, lite0: tuple[EmbeddingNet, BackboneInfo]
) -> None:
    net, info = lite0
    paths = sample_crops.paths[:2]
    features = backbone_features(net, paths, info=info, batch_size=2)
    assert features.shape == (2, info.feature_dim) and features.dtype == np.float32
    batch = torch.stack([preprocess_image(load_rgb(p), info) for p in paths])
    with torch.inference_mode():
        expected = net(batch).numpy()  # the float32 reference forward pass
    np.testing.assert_allclose(embed_from_features(net, features), expected, atol=1e-5)
    augmented = backbone_features(net, paths, info=info, augment_seed=4)
    again = backbone_features(net, paths, info=info, augment_seed=4, batch_size=1)
    np.testing.assert_allclose(augmented, again, atol=1e-5)
    assert not np.allclose(augmented, features, atol=1e-3)


def test_full_mode_one_tiny_epoch_changes_the_backbone(sample_crops: CropSet) -> None:
    net, info = build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=0)
    paths, labels = _two_per_class(sample_crops, n_classes=3)
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    head_before = net.head.weight.detach().clone()
    config = TrainConfig(mode="full", epochs=1, batch_p=3, batch_k=2, margin=1.0, lr=1e-3)
    result = train_full(net, paths, labels, info=info, config=config)
    assert result.mode == "full" and len(result.loss_curve) == 1
    assert np.isfinite(result.loss_curve[0]) and result.triplets_curve[0] > 0
    changed = [k for k, v in net.backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert any("weight" in k for k in changed)
    # Frozen BatchNorm: running statistics are not updated by the small P x K batches.
    assert not any(k.endswith("running_mean") for k in changed)
    assert not torch.equal(net.head.weight, head_before)
    assert not net.training
    with pytest.raises(ValueError, match="mode == 'full'"):
        train_full(net, paths, labels, info=info, config=dataclasses.replace(config, mode="head"))


# --- class balance of the triplet sampler -------------------------------------------------------


def _imbalanced() -> tuple[np.ndarray, np.ndarray]:
    """The synthetic set with class 0 kept whole and classes 1..5 cut to 4 rows each."""
    features, labels, _ = _synthetic()
    keep = np.concatenate(
        [np.flatnonzero(labels == 0)] + [np.flatnonzero(labels == c)[:4] for c in range(1, 6)]
    )
    return features[keep], labels[keep]


def _batch_labels(
    monkeypatch: pytest.MonkeyPatch, balance: str, seed: int = 0
) -> tuple[list[list[int]], Any]:
    """Labels of every batch one epoch of ``train_head`` trains on, and the result."""
    from embeddings import training

    seen: list[list[int]] = []
    real = training._step

    def spy(optimizer: Any, objective: Any, embeddings: torch.Tensor, labels: torch.Tensor) -> Any:
        seen.append(labels.tolist())
        return real(optimizer, objective, embeddings, labels)

    monkeypatch.setattr(training, "_step", spy)
    features, labels = _imbalanced()  # 20 rows of class 0, 4 of each other: 40 rows
    result = train_head(
        _tiny_net(),
        features,
        labels,
        config=_head_config(epochs=1, class_balance=balance, seed=seed),
    )
    monkeypatch.undo()  # the next call wraps the real _step again
    return seen, result


def test_oversample_draws_p_classes_by_k_crops(monkeypatch: pytest.MonkeyPatch) -> None:
    batches, result = _batch_labels(monkeypatch, "oversample")
    assert len(batches) == result.batches_per_epoch == 40 // 16
    for batch in batches:
        counts = np.bincount(batch)
        assert sorted(counts[counts > 0].tolist()) == [4, 4, 4, 4]  # P = 4 classes x K = 4


@pytest.mark.parametrize("balance", ["none", "weighted"])
def test_natural_batches_cover_each_row_at_most_once(
    monkeypatch: pytest.MonkeyPatch, balance: str
) -> None:
    batches, result = _batch_labels(monkeypatch, balance)
    assert len(batches) == result.batches_per_epoch == 40 // 16
    drawn = np.concatenate(batches)
    # A shuffle of the 40 rows (the last 8 dropped): no class count can exceed the data's.
    counts = np.bincount(drawn, minlength=6)
    assert counts[0] <= 20 and all(counts[c] <= 4 for c in range(1, 6))
    assert drawn.size == 32
    again, _ = _batch_labels(monkeypatch, balance)
    other, _ = _batch_labels(monkeypatch, balance, seed=5)
    assert again == batches and other != batches  # seeded


def test_weighted_triplet_loss_weighs_each_triplet_by_its_anchor_class() -> None:
    from pytorch_metric_learning import miners

    from embeddings.training import _TripletObjective

    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(12, 4, generator=generator), dim=1)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    weights = np.array([12 / 18, 12 / 9, 12 / 9], dtype=np.float32)  # N / (C n_i)
    loss, n_triplets = _TripletObjective(1.0, weights)(embeddings, labels)
    anchors, positives, negatives = miners.TripletMarginMiner(
        margin=1.0, type_of_triplets="semihard"
    )(embeddings, labels)
    assert n_triplets == anchors.numel() > 0
    d_ap = (embeddings[anchors] - embeddings[positives]).norm(dim=1)
    d_an = (embeddings[anchors] - embeddings[negatives]).norm(dim=1)
    per_triplet = torch.relu(d_ap - d_an + 1.0)
    expected = (per_triplet * torch.from_numpy(weights)[labels[anchors]]).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    plain, _ = _TripletObjective(1.0)(embeddings, labels)
    assert float(plain) == pytest.approx(float(per_triplet.mean()), rel=1e-5)


def test_weighted_training_gets_the_normalised_class_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from embeddings import training

    made: list[np.ndarray | None] = []
    real = training._TripletObjective

    def spy(margin: float, weights: np.ndarray | None = None) -> Any:
        made.append(weights)
        return real(margin, weights)

    monkeypatch.setattr(training, "_TripletObjective", spy)
    features, labels = _imbalanced()
    train_head(
        _tiny_net(), features, labels, config=_head_config(epochs=1, class_balance="weighted")
    )
    train_head(_tiny_net(), features, labels, config=_head_config(epochs=1))
    weights = made[0]
    assert weights is not None and made[1] is None  # the default (oversample) is unweighted
    # f_i = N / (C n_i) with N = 40, C = 6: 40 / 120 for class 0, 40 / 24 for the others.
    np.testing.assert_allclose(weights, [40 / 120] + [40 / 24] * 5, rtol=1e-6)
    np.testing.assert_allclose((weights * np.array([20, 4, 4, 4, 4, 4])).sum(), 40, rtol=1e-6)


def test_unknown_class_balance_rejected() -> None:
    with pytest.raises(ValueError, match="unknown class_balance 'smote'"):
        TrainConfig(mode="head", class_balance="smote")
