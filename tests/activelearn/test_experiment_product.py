"""activelearn.experiment_product: the product's loop as al_benchmark runs it, on tiny
synthetic crops (brute-force checks of the folds, the audit summary and the reference)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import activelearn.experiment_product as product
from activelearn.audit import AccuracyEstimate
from activelearn.experiment import CropFeatures, resolve_strategy, round_strategy, run_benchmark
from activelearn.experiment_product import (
    AuditPoint,
    ProductConfig,
    audit_count,
    crops_subset,
    interval_summary,
    pca_embedding,
    product_run,
    product_summary,
    sequence_folds,
)
from activelearn.selection_rule import strategy_for_round

N_CLASSES = 4


def _crops(n_seqs: int = 24, per_seq: int = 5, seed: int = 0) -> CropFeatures:
    """Sequences of ``per_seq`` crops of one class each, classes in turn; features are
    well-separated class centres plus noise (F = 16)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLASSES, 16)) * 3
    labels = np.repeat(np.arange(n_seqs) % N_CLASSES, per_seq)
    seqs = np.repeat([f"S{i:03d}" for i in range(n_seqs)], per_seq)
    features = (centres[labels] + rng.normal(size=(labels.size, 16))).astype(np.float32)
    return CropFeatures(
        features=features,
        views=np.empty((0, *features.shape), np.float32),
        labels=labels.astype(np.int64),
        label_names=[f"sp{i}" for i in range(N_CLASSES)],
        seq_ids=seqs,
        crop_pixels=np.full(labels.size, 100, dtype=np.int64),
    )


def _config(**overrides: Any) -> ProductConfig:
    values: dict[str, Any] = {
        "init": 8,
        "step": 8,
        "budgets": (16, 24),
        "first_round_strategy": "random",
        "class_balance": "none",
        "ensemble_size": 1,
        "audit_share": 0.25,
        "cv_folds": 3,
        **overrides,
    }
    return ProductConfig(**values)


# --- Folds -------------------------------------------------------------------------------------


def test_sequence_folds_are_disjoint_by_sequence_and_cover_everything() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=300)
    seqs = np.array([f"seq{i // 4}" for i in range(300)])  # 75 sequences, mixed labels
    labels[seqs == "seq0"] = [0, 0, 1, 2]  # main label 0 (most frequent)
    fold = sequence_folds(labels, seqs, n_folds=3)
    assert fold.shape == (300,) and set(fold.tolist()) == {0, 1, 2}  # every crop has a fold
    for seq in set(seqs.tolist()):  # a sequence never straddles folds
        assert np.unique(fold[seqs == seq]).size == 1
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(3)]
    tests = np.concatenate([test for _, test in splits])
    assert np.array_equal(np.sort(tests), np.arange(300))  # the test folds partition the crops
    for pool, test in splits:
        assert not set(seqs[pool].tolist()) & set(seqs[test].tolist())


def test_sequence_folds_rotate_sequence_ranks_within_each_main_label() -> None:
    # Brute force: per main label, sorted seq ids, rank r -> fold r mod k.
    labels = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    seqs = np.array(["b", "b", "a", "a", "c", "c", "d", "d", "e", "e", "f", "f"])
    fold = sequence_folds(labels, seqs, n_folds=2)
    # main labels: a 0, b 1, c tie -> 0, d 1, e 0, f 1; label 0: a c e, label 1: b d f
    expected = {"a": 0, "c": 1, "e": 0, "b": 0, "d": 1, "f": 0}
    assert {s: int(fold[seqs == s][0]) for s in expected} == expected


def test_sequence_folds_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="n_folds"):
        sequence_folds(np.zeros(3, int), np.array(["a", "b", "c"]), n_folds=1)
    with pytest.raises(ValueError, match="must be"):
        sequence_folds(np.zeros(3, int), np.array(["a", "b"]), n_folds=2)


def test_crops_subset_keeps_rows_aligned() -> None:
    crops = _crops()
    mask = crops.labels == 2
    part = crops_subset(crops, mask)
    assert len(part) == int(mask.sum()) and (part.labels == 2).all()
    assert np.array_equal(part.features, crops.features[mask])
    assert np.array_equal(part.seq_ids, crops.seq_ids[mask])


def test_pca_embedding_is_fitted_on_the_pool_alone() -> None:
    crops = _crops()
    pool, test = crops.features[:60], crops.features[60:]
    x_pool, x_test = pca_embedding(pool, test, dim=8, seed=0)
    assert x_pool.shape == (60, 8) and x_test.shape == (60, 8)
    assert np.allclose(np.linalg.norm(x_test, axis=1), 1.0, atol=1e-5)
    other, _ = pca_embedding(pool, test * 5 + 1, dim=8, seed=0)  # the test set changes nothing
    assert np.allclose(other, x_pool)


# --- Strategy rule and configuration ----------------------------------------------------------


def test_default_names_the_new_project_rule() -> None:
    assert resolve_strategy("default") == "default"
    kwargs: dict[str, Any] = {
        "n_labels": 40,
        "n_crops": 400,
        "n_species": 20,
        "first_round_strategy": "random",
    }
    assert round_strategy("default", round_index=0, **kwargs) == "random"
    # After the first round, the product's rule on the same counts (typical below 3 labels
    # per species, then k-Center).
    assert round_strategy("default", round_index=3, **kwargs) == "typical"
    assert round_strategy("default", round_index=3, **{**kwargs, "n_labels": 80}) == "k_center"
    for n_labels in (0, 40, 59, 60, 200):
        rule = strategy_for_round(n_labels=n_labels, n_crops=400, n_species=20).strategy
        assert round_strategy("default", round_index=1, **{**kwargs, "n_labels": n_labels}) == rule
    assert round_strategy("margin", round_index=0, **kwargs) == "random"
    assert round_strategy("margin", round_index=1, **kwargs) == "margin"


def test_the_research_loop_refuses_the_default_rule() -> None:
    crops = _crops()
    with pytest.raises(ValueError, match="product loop"):
        run_benchmark(["default"], crops, crops, net=None, config=None, seeds=[0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"budgets": (12, 24)}, "not reached"),
        ({"budgets": (24, 16)}, "ascend"),
        ({"budgets": (4,)}, "ascend"),
        ({"audit_share": 1.0}, "audit_share"),
        ({"step": 0}, "step"),
    ],
)
def test_product_config_rejects_bad_settings(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_audit_count_rounds_half_up() -> None:
    assert [audit_count(n, 0.1) for n in (20, 15, 14, 100, 4)] == [2, 2, 1, 10, 0]
    assert audit_count(20, 0.0) == 0


# --- The loop ----------------------------------------------------------------------------------


def _run(strategy: str = "default", **config: Any) -> tuple[Any, CropFeatures, CropFeatures]:
    crops = _crops()
    fold = sequence_folds(crops.labels, crops.seq_ids, n_folds=3)
    pool, test = crops_subset(crops, fold != 0), crops_subset(crops, fold == 0)
    x_pool, x_test = pca_embedding(pool.features, test.features, dim=8, seed=0)
    run = product_run(
        strategy, pool, test, x_pool=x_pool, x_test=x_test, config=_config(**config), seed=1
    )
    return run, pool, test


def test_product_run_scores_each_budget_with_a_disjoint_audit_stream() -> None:
    run, pool, _ = _run()
    assert [p.n_labels for p in run.points] == [16, 24]
    assert run.picks.size == 24 and np.unique(run.picks).size == 24
    # 2 audit crops per round of 8 (three rounds), never among the training picks.
    assert run.audit_picks.size == 6 and not set(run.audit_picks) & set(run.picks)
    for point in run.points:
        assert 0.0 <= point.stored.top1 <= point.stored.top5 <= 1.0
        assert point.audit is not None and point.audit.n == point.n_labels // 8 * 2
        assert point.audit.n_unlabelled == len(pool) - point.n_labels - point.audit.n
        assert point.backend in ("logistic", "torch") and point.temperature > 0


def test_product_run_truth_is_the_stored_labels_accuracy_on_unlabelled_crops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[AuditPoint] = []
    original = product._audit_point

    def spy(stored: np.ndarray, pool: CropFeatures, unlabelled: np.ndarray, audited: np.ndarray):  # type: ignore[no-untyped-def]
        point = original(stored, pool, unlabelled, audited)
        hits = stored.argmax(axis=1) == pool.labels
        assert point is not None and point.truth == pytest.approx(hits[unlabelled].mean())
        assert point.wilson.estimate == pytest.approx(hits[audited].mean())
        seen.append(point)
        return point

    monkeypatch.setattr(product, "_audit_point", spy)
    run, _, _ = _run()
    # Per budget: the stored labels' audit, then the crop-only labels'.
    assert len(seen) == 4 and [p.audit for p in run.points] == seen[0::2]
    assert [p.audit_crop for p in run.points] == seen[1::2]


def test_the_reference_uses_exactly_the_loops_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[np.ndarray, np.ndarray, str]] = []
    original = product.classifier_train

    def spy(features: np.ndarray, labels: np.ndarray, **kwargs: Any):  # type: ignore[no-untyped-def]
        calls.append((features.copy(), labels.copy(), kwargs["backend"]))
        return original(features, labels, **kwargs)

    monkeypatch.setattr(product, "classifier_train", spy)
    run, pool, test = _run()
    assert len(calls) == 2  # one reference per budget
    raw = pool.features / np.linalg.norm(pool.features, axis=1, keepdims=True)
    for (features, labels, backend), point in zip(calls, run.points, strict=True):
        rows = run.picks[: point.n_labels]
        assert backend == "logistic"
        assert np.allclose(features, raw[rows], atol=1e-6)  # raw L2-normalised, the loop's rows
        assert np.array_equal(labels, pool.labels[rows])
    again = product.reference_scores(pool.features, pool.labels, run.picks[:24], test, seed=1)
    assert again == run.points[-1].reference


def test_uncertainty_strategies_retrain_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    counts: list[int] = []
    original = product._retrain

    def spy(x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        counts.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(product, "_retrain", spy)
    for model_free in ("k_center", "typical"):
        counts.clear()
        _run(model_free)
        assert counts == [16, 24]  # random, k-Center and typical never read the classifier
    counts.clear()
    _run("margin")
    assert counts == [8, 16, 24]  # margin reads the live classifier's probabilities each round


def test_product_run_refuses_a_pool_too_small() -> None:
    with pytest.raises(ValueError, match="crops left"):
        _run(budgets=(16, 24, 32, 40, 48, 56, 64, 72, 80))


# --- Coverage and width -----------------------------------------------------------------------


def test_interval_summary_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    truth, low = rng.uniform(size=25), rng.uniform(0, 0.6, size=25)
    high = low + rng.uniform(0, 0.5, size=25)
    low[0] = high[0] = truth[0]  # an interval that is exactly the truth covers it
    covered, widths = 0, 0.0
    for t, lo, hi in zip(truth, low, high, strict=True):
        covered += int(lo <= t <= hi)
        widths += hi - lo
    coverage, width = interval_summary(truth, low, high)
    assert coverage == pytest.approx(covered / 25) and width == pytest.approx(widths / 25)
    with pytest.raises(ValueError):
        interval_summary(np.array([]), np.array([]), np.array([]))
    with pytest.raises(ValueError):
        interval_summary(np.ones(2), np.ones(3), np.ones(2))


def _estimate(low: float, high: float, method: str) -> AccuracyEstimate:
    return AccuracyEstimate((low + high) / 2, low, high, 10, 0.95, method)


def test_product_summary_audit_coverage_and_width_against_brute_force() -> None:
    run, _, _ = _run()
    # Replace the audit points by hand-made ones: truth 0.5; Wilson [0.4, 0.6] and [0.6, 0.8]
    # (covers 1 of 2, width 0.2); PPI [0.45, 0.55] and [0.55, 0.65] (covers 1 of 2, width 0.1).
    audits = [
        AuditPoint(10, 50, 0.5, _estimate(0.4, 0.6, "binomial"), _estimate(0.45, 0.55, "ppi")),
        AuditPoint(20, 40, 0.5, _estimate(0.6, 0.8, "binomial"), _estimate(0.55, 0.65, "ppi")),
    ]
    points = [dataclasses.replace(p, audit=a) for p, a in zip(run.points, audits, strict=True)]
    record = product_summary([[dataclasses.replace(run, points=points)]], budgets=(16, 24))
    overall = record["audit"]
    assert overall["points"] == 2 and overall["n_audit_mean"] == 15
    assert overall["wilson_coverage"] == 0.5 and overall["wilson_width"] == pytest.approx(0.2)
    assert overall["ppi_coverage"] == 0.5 and overall["ppi_width"] == pytest.approx(0.1)
    assert overall["ppi_narrower"] == pytest.approx(0.5)
    per_budget = record["strategies"]["default"]["audit"]  # type: ignore[index]
    assert per_budget["16"]["wilson_coverage"] == 1.0 and per_budget["24"]["ppi_coverage"] == 0.0


def test_product_summary_reports_mean_and_worst_fold() -> None:
    a, _, _ = _run()
    b = dataclasses.replace(
        a,
        points=[
            dataclasses.replace(p, stored=dataclasses.replace(p.stored, top1=p.stored.top1 - 0.1))
            for p in a.points
        ],
    )
    record = product_summary([[a], [b]], budgets=(16, 24))
    stored = record["strategies"]["default"]["stored_top1"]  # type: ignore[index]
    for i, point in enumerate(a.points):
        assert stored["mean"][i] == pytest.approx(point.stored.top1 - 0.05, abs=1e-4)
        assert stored["worst"][i] == pytest.approx(point.stored.top1 - 0.1, abs=1e-4)
        assert stored["per_fold"][1][i] == pytest.approx(point.stored.top1 - 0.1, abs=1e-4)


def test_the_strategy_never_sees_the_audit_crops(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[int] = []
    strategies = product.all_strategies()

    def spy(name: str) -> Any:
        def pick(x: np.ndarray, **kwargs: Any) -> Any:
            shown.append(x.shape[0])
            return strategies[name](x, **kwargs)

        return pick

    monkeypatch.setattr(product, "all_strategies", lambda: {n: spy(n) for n in strategies})
    run, pool, _ = _run()
    # Rounds of 8 with 2 audit crops each: the strategy sees the pool less the audits so far.
    assert shown == [len(pool) - 2, len(pool) - 4, len(pool) - 6]
    assert not set(run.audit_picks) & set(run.picks)
