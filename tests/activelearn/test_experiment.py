"""Tests for activelearn.experiment: the simulated active-learning loop and its parts."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from activelearn import classifier as classifier_module
from activelearn import experiment, experiment_data
from activelearn.classifier import classifier_probabilities, classifier_train
from activelearn.experiment import (
    CropFeatures,
    LoopConfig,
    coco_split,
    crop_features,
    evaluate,
    full_pool_scores,
    pick_diagnostics,
    resolve_strategy,
    run_benchmark,
    run_loop,
    summarise,
)
from activelearn.metrics import classification_metrics
from activelearn.selection import random_selection
from embeddings.model import EmbeddingNet, build_embedding_net

# --- coco_split ------------------------------------------------------------------------------


def _doc() -> dict[str, Any]:
    """Category 1: sequences c, a, b (+ d whose main category is 1); category 2: x, y."""
    images, annotations = [], []
    layout = {"c": [1, 1], "a": [1], "b": [1, 1, 1], "x": [2], "y": [2, 2], "d": [1, 1, 2]}
    for seq, cats in layout.items():
        for i, cat in enumerate(cats):
            image_id = f"{seq}{i}"
            images.append({"id": image_id, "file_name": f"{seq}/{i}.jpg", "seq_id": seq})
            annotations.append({"id": f"ann-{image_id}", "image_id": image_id, "category_id": cat})
    images.append({"id": "lonely", "file_name": "lonely.jpg"})  # no seq_id, no annotation
    return {
        "info": {"version": "1"},
        "licenses": [{"id": 1}],
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
        "images": images,
        "annotations": annotations,
    }


def test_coco_split_ranks_sequences_within_their_main_category() -> None:
    split = coco_split(_doc(), test_ranks={3})
    # Category 1 sorted: a, b, c, d -> rank 3 is c; category 2 has only two sequences.
    assert split.test_sequences == ["c"]
    assert split.pool_sequences == ["a", "b", "d", "lonely", "x", "y"]
    assert {image["seq_id"] for image in split.test["images"]} == {"c"}
    assert {a["image_id"] for a in split.test["annotations"]} == {"c0", "c1"}
    for part in (split.pool, split.test):
        assert part["info"] == {"version": "1"} and part["licenses"] == [{"id": 1}]
        assert len(part["categories"]) == 2


def test_coco_split_never_splits_a_sequence() -> None:
    split = coco_split(_doc(), test_ranks={2, 4})
    assert split.test_sequences == ["b", "d", "y"]
    pool_images = {i["id"] for i in split.pool["images"]}
    test_images = {i["id"] for i in split.test["images"]}
    assert not pool_images & test_images
    assert len(pool_images | test_images) == len(_doc()["images"])
    # d's image annotated with category 2 follows its sequence.
    assert "d2" in test_images


def test_coco_split_rejects_a_non_coco_document() -> None:
    with pytest.raises(ValueError, match="images"):
        coco_split({"images": []}, test_ranks={1})


def test_coco_split_on_the_real_sample(sample_dir: Path) -> None:
    document = json.loads((sample_dir / "annotations.json").read_text())
    split = coco_split(document, test_ranks={1})  # each species' lowest seq_id is tested
    assert len(split.test_sequences) == 10 and len(split.pool_sequences) == 11
    assert {"SEQ75179", "SEQ75520", "SEQ75186"} <= set(split.test_sequences)
    assert {"SEQ75183", "SEQ75585", "SEQ75187", "SEQ75458"} <= set(split.pool_sequences)
    # Every species of the sample has a sequence on both sides, and no sequence is split.
    for part in (split.pool, split.test):
        assert {a["category_id"] for a in part["annotations"]} == {
            c["id"] for c in document["categories"]
        }
    pool_seqs = {i["seq_id"] for i in split.pool["images"]}
    assert pool_seqs.isdisjoint(i["seq_id"] for i in split.test["images"])


# --- configuration and scoring -------------------------------------------------------------------


def test_schedule() -> None:
    assert LoopConfig(init=20, step=20, budget=300).schedule(476) == list(range(20, 301, 20))
    assert LoopConfig(init=20, step=30, budget=100).schedule(476) == [20, 50, 80, 100]
    assert LoopConfig(init=5, step=5, budget=30).schedule(12) == [5, 10, 12]
    assert LoopConfig(init=5, step=5, budget=5).schedule(12) == [5]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"init": 0, "step": 1, "budget": 5},
        {"init": 5, "step": 0, "budget": 5},
        {"init": 5, "step": 1, "budget": 4},
        {"init": 5, "step": 1, "budget": 9, "finetune_every": -1},
        {"init": 5, "step": 1, "budget": 9, "selection_space": "pixels"},
        {"init": 5, "step": 1, "budget": 9, "class_balance": "smote"},
        {"init": 5, "step": 1, "budget": 9, "ensemble_size": 0},
        {"init": 5, "step": 1, "budget": 9, "ensemble_mode": "bagging"},
    ],
)
def test_loop_config_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LoopConfig(**kwargs)


def test_resolve_strategy() -> None:
    assert resolve_strategy("kcenter") == "k_center"
    assert resolve_strategy(" Margin ") == "margin"
    assert resolve_strategy("typiclust") == "typiclust"
    with pytest.raises(ValueError, match="known"):
        resolve_strategy("oracle")


def test_sequence_scores_average_crop_probabilities() -> None:
    """Sequence top-1 (the metrics module's event accuracy, which evaluate() reports)."""
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    seq_ids = np.array(["s", "s", "s", "t"])
    scores = classification_metrics(probs, labels, classes=np.arange(2), events=seq_ids)
    # s: mean (0.467, 0.533) -> 1, majority label 1; t: 0 and 0.
    assert (scores.event_top1, scores.n_events) == (1.0, 2)
    # t labelled 1 instead: its prediction 0 is now wrong.
    wrong_t = classification_metrics(
        probs, np.array([0, 1, 1, 1]), classes=np.arange(2), events=seq_ids
    )
    assert wrong_t.event_top1 == 0.5


def test_evaluate_counts_top1_top5_and_sequences() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(6, 8, dtype=np.float32) * 5
    y = np.repeat(np.arange(6), 4)
    x = centres[y] + rng.normal(0, 0.1, (24, 8)).astype(np.float32)
    clf = classifier_train(x, y, random_state=0)
    seq_ids = np.repeat(np.array([f"s{i}" for i in range(12)]), 2)
    right = evaluate(clf, x, y, seq_ids, n_classes=6)
    assert (right.top1, right.top5, right.seq_top1) == (1.0, 1.0, 1.0)
    wrong = evaluate(clf, x, (y + 3) % 6, seq_ids, n_classes=6)
    assert wrong.top1 == 0.0 and wrong.seq_top1 == 0.0 and 0.0 <= wrong.top5 < 1.0


def test_evaluate_reports_the_metrics_module_figures() -> None:
    """evaluate() is activelearn.metrics on the (ensemble's) probabilities, classes never
    trained on at 0; per species is each class's share right, None without test crops."""
    rng = np.random.default_rng(1)
    centres = np.eye(4, 8, dtype=np.float32) * 2
    y = np.repeat(np.arange(4), 6)
    x = centres[y] + rng.normal(0, 0.8, (24, 8)).astype(np.float32)
    models = [classifier_train(x, y, random_state=s, max_iter=30) for s in (0, 1)]
    x_test = centres[y] + rng.normal(0, 0.8, (24, 8)).astype(np.float32)
    seq_ids = np.repeat(np.array([f"s{i}" for i in range(8)]), 3)
    probs = np.zeros((24, 5))  # class 4 exists but nobody trained on it
    probs[:, :4] = np.mean([classifier_probabilities(m, x_test) for m in models], axis=0)
    probs /= probs.sum(axis=1, keepdims=True)
    expected = classification_metrics(probs, y, classes=np.arange(5), events=seq_ids)
    scores = evaluate(models, x_test, y, seq_ids, n_classes=5)
    assert scores.top1 == pytest.approx(expected.top1)
    assert scores.f1_macro == pytest.approx(expected.f1_macro)
    assert scores.log_loss == pytest.approx(expected.log_loss, rel=1e-4)
    assert scores.seq_top1 == pytest.approx(expected.event_top1)
    assert scores.per_species[4] is None and len(scores.per_species) == 5
    np.testing.assert_allclose(
        [a for a in scores.per_species if a is not None], expected.per_class_accuracy[:4]
    )
    single = evaluate(models[0], x_test, y, seq_ids, n_classes=5)
    assert single != scores  # the ensemble is not its first member


# --- the loop on synthetic features --------------------------------------------------------------


def _synthetic(seed: int, n_per_seq: int = 6, views: int = 1) -> CropFeatures:
    """3 classes x 2 sequences of 12-d features: class centre + sequence offset + noise.

    The class centres are the same for every seed; sequences (offsets) differ by seed.
    """
    centres = np.random.default_rng(100).normal(0, 3, (3, 12))
    rng = np.random.default_rng(seed)
    rows, labels, seqs = [], [], []
    for label in range(3):
        for s in range(2):
            offset = rng.normal(0, 1, 12)
            rows.append(centres[label] + offset + rng.normal(0, 0.3, (n_per_seq, 12)))
            labels += [label] * n_per_seq
            seqs += [f"{seed}-{label}-{s}"] * n_per_seq
    x = np.vstack(rows).astype(np.float32)
    noise = rng.normal(0, 0.1, (views, *x.shape)).astype(np.float32)
    return CropFeatures(
        features=x,
        views=x[None] + noise,
        labels=np.array(labels, dtype=np.int64),
        label_names=["a", "b", "c"],
        seq_ids=np.array(seqs),
        crop_pixels=np.full(len(labels), 100, dtype=np.int64),
    )


def _net() -> EmbeddingNet:
    torch.manual_seed(0)
    return EmbeddingNet(nn.Identity(), nn.Linear(12, 8)).eval()


@pytest.mark.parametrize("strategy", ["k_center", "random", "margin", "k_center_robust", "typical"])
def test_run_loop_labels_each_row_once_and_scores_every_round(strategy: str) -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    config = LoopConfig(init=6, step=4, budget=20)
    run = run_loop(strategy, pool, test, net=_net(), config=config, seed=2)
    assert [r.n_labels for r in run.rounds] == [6, 10, 14, 18, 20]
    assert len(set(run.picks.tolist())) == 20
    first = random_selection(
        pool.features, labeled_mask=np.zeros(36, dtype=bool), budget=6, random_state=2
    )
    assert run.picks[:6].tolist() == first.indices.tolist()  # the product's random round
    for r in run.rounds:
        assert 0.0 <= r.scores.top1 <= r.scores.top5 <= 1.0 and 0.0 <= r.scores.seq_top1 <= 1.0
        assert not r.finetuned
    again = run_loop(strategy, pool, test, net=_net(), config=config, seed=2)
    assert again.picks.tolist() == run.picks.tolist() and again.rounds == run.rounds


def test_run_loop_finetunes_a_copy_of_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    net = _net()
    before = copy.deepcopy(net.head.state_dict())
    calls: list[tuple[int, int]] = []
    real_train_head = experiment.train_head

    def spy(tuned: EmbeddingNet, x: np.ndarray, y: np.ndarray, *, config: Any) -> Any:
        calls.append((x.shape[0], config.epochs))
        weight = tuned.head.weight.detach().clone()
        result = real_train_head(tuned, x, y, config=config)
        assert not torch.equal(weight, tuned.head.weight)  # it does train
        return result

    monkeypatch.setattr(experiment, "train_head", spy)
    config = LoopConfig(init=6, step=4, budget=18, finetune_every=8, finetune_epochs=2)
    run = run_loop("k_center", pool, test, net=net, config=config, seed=0)
    # Labels 6, 10 (tune: 10 new), 14, 18 (tune: 8 new since 10); plain + 1 view each.
    assert [r.finetuned for r in run.rounds] == [False, True, False, True]
    assert calls == [(20, 2), (36, 2)]
    for key, value in net.head.state_dict().items():
        assert torch.equal(value, before[key])  # the caller's net is untouched


def test_selection_space_backbone_uses_raw_features() -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    config = LoopConfig(init=6, step=4, budget=14, selection_space="backbone")
    run = run_loop("k_center", pool, test, net=_net(), config=config, seed=1)
    from activelearn.selection import k_center_greedy

    labeled = np.zeros(36, dtype=bool)
    labeled[run.picks[:6]] = True
    expected = k_center_greedy(pool.features, labeled_mask=labeled, budget=4, random_state=0)
    assert run.picks[6:10].tolist() == expected.indices.tolist()


def test_run_benchmark_summary_and_json_shape() -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    config = LoopConfig(init=6, step=6, budget=18)
    result = run_benchmark(
        ["kcenter", "random"], pool, test, net=_net(), config=config, seeds=[0, 1]
    )
    record = result.to_dict()
    assert list(record["strategies"]) == ["k_center", "random"]

    def name_of(curve: dict[str, Any]) -> str:
        return next(n for n, c in record["strategies"].items() if c is curve)

    for curve in record["strategies"].values():
        assert curve["labels"] == [6, 12, 18]
        for key in ("top1_mean", "top1_sd", "top5_mean", "seq_top1_mean", "f1_macro_mean"):
            assert len(curve[key]) == 3
        assert len(curve["log_loss_sd"]) == 3
        assert len(curve["per_seed"]["top1"]) == 2
        assert len(curve["diagnostics"]["classes_covered"]) == 3
        assert len(curve["per_species_mean"]) == 3  # after the last round, one per class
        last = [run.rounds[-1].scores.per_species for run in result.runs[name_of(curve)]]
        expected = np.array(last, dtype=np.float64).mean(axis=0)  # every class has test crops
        np.testing.assert_allclose(curve["per_species_mean"], expected, atol=1e-5)
    assert 0.0 <= record["full_pool_top1"] <= record["full_pool_top5"] <= 1.0
    assert record["species"] == ["a", "b", "c"] and len(record["full_pool_per_species"]) == 3
    assert set(record["full_pool_sd"]) == {"top1", "top5", "seq_top1", "f1_macro", "log_loss"}
    json.dumps(record)  # plain JSON types only
    summary = result.summaries["random"]
    per_seed = np.array([[r.scores.top1 for r in run.rounds] for run in result.runs["random"]])
    np.testing.assert_allclose(summary.mean("top1"), per_seed.mean(axis=0))
    np.testing.assert_allclose(summary.sd("top1"), per_seed.std(axis=0, ddof=1))


def test_pick_diagnostics_describe_what_was_labelled() -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    config = LoopConfig(init=6, step=6, budget=18)
    runs = [run_loop("random", pool, test, net=_net(), config=config, seed=s) for s in (0, 1)]
    diag = pick_diagnostics(runs, pool, pool.features)
    for i, n in enumerate([6, 12, 18]):
        picked = [run.picks[:n] for run in runs]
        classes = np.mean([np.unique(pool.labels[p]).size for p in picked])
        seqs = np.mean([np.unique(pool.seq_ids[p]).size for p in picked])
        assert diag.classes_covered[i] == classes and diag.sequences_covered[i] == seqs
    assert 0.0 < diag.class_entropy[-1] <= 1.0
    assert 0.0 <= diag.sparsity_pct <= 1.0 and 0.0 <= diag.size_pct <= 1.0
    assert set(diag.to_dict()) == {
        "classes_covered",
        "sequences_covered",
        "class_entropy",
        "sparsity_pct",
        "size_pct",
    }


def test_summarise_rejects_mixed_runs() -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    config = LoopConfig(init=6, step=6, budget=12)
    runs = [
        run_loop(s, pool, test, net=_net(), config=config, seed=0) for s in ("random", "margin")
    ]
    with pytest.raises(ValueError, match="one strategy"):
        summarise(runs)


def test_full_pool_scores_uses_the_starting_embedding() -> None:
    pool, test = _synthetic(0), _synthetic(0, n_per_seq=6, views=0)
    scores = full_pool_scores(pool, test, net=_net(), seeds=[0, 1])
    assert len(scores) == 2 and all(s.top1 == 1.0 for s in scores)  # test == pool here


def test_run_benchmark_rejects_different_categories() -> None:
    pool, test = _synthetic(0), _synthetic(1, views=0)
    test = CropFeatures(**{**test.__dict__, "label_names": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="categories"):
        run_benchmark(["random"], pool, test, net=_net(), config=LoopConfig(6, 6, 12), seeds=[0])


# --- crops and cached backbone features (real images) ---------------------------------------------


def test_crop_features_cuts_embeds_and_caches(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, info = build_embedding_net(backbone="efficientnet_lite0", seed=0)
    coco, cache = small_folder / "annotations.json", tmp_path / "cache"
    got = crop_features(coco, small_folder, net=net, info=info, cache_dir=cache, n_views=1)
    assert got.features.shape == (11, 1280) and got.views.shape == (1, 11, 1280)
    assert got.label_names[0] == "agouti" and set(got.seq_ids.tolist()) == {
        "SEQ75179",
        "SEQ75520",
    }
    assert (got.crop_pixels > 0).all()
    assert not np.allclose(got.views[0], got.features)  # augmented, not the plain crop

    def no_backbone(*args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(experiment_data, "backbone_features", no_backbone)
    shutil.rmtree(small_folder / "images")  # the cache needs no image any more
    again = crop_features(coco, small_folder, net=net, info=info, cache_dir=cache, n_views=1)
    np.testing.assert_array_equal(again.features, got.features)
    np.testing.assert_array_equal(again.views, got.views)


def test_crop_features_cache_is_keyed_by_geometry(small_folder: Path, tmp_path: Path) -> None:
    """A square geometry cuts and caches its own crops; the box's cache is left as it was."""
    net, info = build_embedding_net(backbone="efficientnet_lite0", seed=0)
    coco, cache = small_folder / "annotations.json", tmp_path / "cache"
    box = crop_features(coco, small_folder, net=net, info=info, cache_dir=cache)
    square = crop_features(coco, small_folder, net=net, info=info, cache_dir=cache, shape="square")
    assert len(list(cache.glob("*.npz"))) == 2
    assert not np.array_equal(box.crop_pixels, square.crop_pixels)
    assert not np.allclose(box.features, square.features)


# --- class balance and ensembles in the loop ---------------------------------------------------


def test_loop_trains_with_the_class_balance_and_the_ensemble(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    fits: list[tuple[int, int, str]] = []
    # The loop trains through activelearn.classifier.ensemble_train, which looks it up there.
    real = classifier_module.classifier_train

    def spy(x: np.ndarray, y: np.ndarray, **kwargs: Any) -> Any:
        fits.append((x.shape[0], kwargs["random_state"], kwargs["class_balance"]))
        return real(x, y, **kwargs)

    monkeypatch.setattr(classifier_module, "classifier_train", spy)
    config = LoopConfig(init=6, step=6, budget=12, class_balance="weighted", ensemble_size=3)
    run = run_loop("k_center", pool, test, net=_net(), config=config, seed=2)
    # Each round: three seeds on the same labels (the product's: run seed + k), all weighted.
    assert fits == [(n, 2 + k, "weighted") for n in (6, 12) for k in range(3)]
    assert len(run.rounds) == 2
    fits.clear()
    versions = dataclasses.replace(config, ensemble_mode="versions", ensemble_size=2)
    run_loop("k_center", pool, test, net=_net(), config=versions, seed=2)
    assert fits == [(6, 2, "weighted"), (12, 2, "weighted")]  # one new model per round


def test_versions_ensemble_averages_the_newest_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    scored: list[int] = []
    real = experiment.evaluate

    def spy(models: Any, *args: Any) -> Any:
        scored.append(len(models))
        return real(models, *args)

    monkeypatch.setattr(experiment, "evaluate", spy)
    config = LoopConfig(init=6, step=4, budget=18, ensemble_size=2, ensemble_mode="versions")
    run_loop("random", pool, test, net=_net(), config=config, seed=0)
    assert scored == [1, 2, 2, 2]  # the first round has no older model yet
    scored.clear()
    tuned = dataclasses.replace(config, finetune_every=8, finetune_epochs=1)
    run_loop("random", pool, test, net=_net(), config=tuned, seed=0)
    # Fine-tuning at 10 and 18 labels changes the embedding: older models are dropped.
    assert scored == [1, 1, 2, 1]


def test_finetuning_in_the_loop_takes_the_class_balance(monkeypatch: pytest.MonkeyPatch) -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    balances: list[str] = []
    real_train_head = experiment.train_head

    def spy(tuned: EmbeddingNet, x: np.ndarray, y: np.ndarray, *, config: Any) -> Any:
        balances.append(config.class_balance)
        return real_train_head(tuned, x, y, config=config)

    monkeypatch.setattr(experiment, "train_head", spy)
    config = LoopConfig(
        init=6, step=4, budget=10, finetune_every=4, finetune_epochs=1, class_balance="none"
    )
    run_loop("random", pool, test, net=_net(), config=config, seed=0)
    assert balances == ["none", "none"]


def test_full_pool_scores_with_an_ensemble_of_seeds() -> None:
    pool, test = _synthetic(0), _synthetic(1, n_per_seq=3, views=0)
    single = full_pool_scores(pool, test, net=_net(), seeds=[0])
    ensemble = full_pool_scores(pool, test, net=_net(), seeds=[0], ensemble_size=3)
    embedder = experiment._Embedder(_net())
    x_pool, x_test = embedder.embed(pool.features), embedder.embed(test.features)
    models = [classifier_train(x_pool, pool.labels, random_state=s) for s in (0, 1, 2)]
    assert ensemble[0] == evaluate(models, x_test, test.labels, test.seq_ids, 3)
    assert single[0] == evaluate(models[0], x_test, test.labels, test.seq_ids, 3)
