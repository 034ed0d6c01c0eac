"""The al_benchmark and coco_split management commands, on real sample images."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotator.demo import SAMPLE_DIR
from projects.models import Project

MISSOURI_DEV = Path("/work/shared/data/missouri-dev")
# The commands' tests use ten sequences of the bundled sample, one per species (68 crops): they
# need no more, and every crop costs embedding time. Two of them form the test set, the other
# eight the pool.
ONE_PER_SPECIES = {
    *("SEQ75179", "SEQ75520", "SEQ75637", "SEQ85811", "SEQ75218"),
    *("SEQ75458", "SEQ75294", "SEQ83577", "SEQ85787", "SEQ76323"),
}
TEST_SEQUENCES = {"SEQ75179", "SEQ75520"}


def _part(keep: Any) -> dict[str, Any]:
    """The sample's COCO document cut down to the sequences ``keep`` (seq_id -> bool) keeps."""
    document = json.loads((SAMPLE_DIR / "annotations.json").read_text())
    images = [image for image in document["images"] if keep(image["seq_id"])]
    ids = {image["id"] for image in images}
    annotations = [a for a in document["annotations"] if a["image_id"] in ids]
    return {**document, "images": images, "annotations": annotations}


def _write_part(keep: Any, path: Path) -> Path:
    path.write_text(json.dumps(_part(keep)))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """pool.json / test.json over the sample's images, and a cache shared by the tests."""
    folder = tmp_path_factory.mktemp("al")
    return {
        "pool": _write_part(
            ONE_PER_SPECIES.difference(TEST_SEQUENCES).__contains__, folder / "pool.json"
        ),
        "test": _write_part(TEST_SEQUENCES.__contains__, folder / "test.json"),
        "cache": folder / "cache",
        "out": folder,
    }


def _args(sets: dict[str, Path], *, research: bool = True, **overrides: Any) -> list[str]:
    """The research loop's arguments (``--research``), or without it the product loop's."""
    options = {
        "--pool": sets["pool"],
        "--pool-images": SAMPLE_DIR,
        "--test": sets["test"],
        "--test-images": SAMPLE_DIR,
        "--strategies": "kcenter,random",
        "--init": 10,
        "--step": 10,
        "--budget": 30,
        "--seeds": 2,
        "--cache-dir": sets["cache"],
        **{f"--{k.replace('_', '-')}": v for k, v in overrides.items()},
    }
    if not research and "budget" not in overrides:
        options.pop("--budget")
        options["--budgets"] = options.pop("--budgets", "10,20")
    flags = ["--research"] if research else []
    return flags + [str(part) for key, value in options.items() for part in (key, value)]


def test_benchmark_with_finetuning_writes_json_plot_and_table(sets: dict[str, Path]) -> None:
    out, plot = sets["out"] / "result.json", sets["out"] / "curve.png"
    stdout = StringIO()
    call_command(
        "al_benchmark",
        *_args(sets, finetune_every=10, aug_views=1, json=out, plot=plot),
        stdout=stdout,
    )
    record = json.loads(out.read_text())
    assert list(record["strategies"]) == ["k_center", "random"]
    for curve in record["strategies"].values():
        assert curve["labels"] == [10, 20, 30]
        for key in ("top1_mean", "top1_sd", "top5_mean", "seq_top1_mean"):
            assert len(curve[key]) == 3 and all(0.0 <= v <= 1.0 for v in curve[key])
    assert 0.0 <= record["full_pool_top1"] <= record["full_pool_top5"] <= 1.0
    assert record["params"]["finetune_every"] == 10 and record["params"]["seeds"] == [0, 1]
    assert record["n_pool"] == 57 and record["n_test"] == 11
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = stdout.getvalue()
    assert "test top-1 (crop)" in text and "full pool (57 labels" in text
    assert "test F1 macro (crop)" in text and "per-species test accuracy" in text
    assert "variants" not in record  # one setting: the format as before
    assert record["params"]["class_balance"] == "none" and record["params"]["ensemble_size"] == 1


def test_benchmark_without_finetuning_runs_uncertainty_strategies(sets: dict[str, Path]) -> None:
    out = sets["out"] / "frozen.json"
    call_command(
        "al_benchmark",
        *_args(sets, strategies="margin,k_center_robust", budget=20, seeds=1, json=out),
        stdout=StringIO(),
    )
    record = json.loads(out.read_text())
    assert record["strategies"]["margin"]["labels"] == [10, 20]
    assert record["strategies"]["margin"]["top1_sd"] == [0.0, 0.0]  # one seed
    assert record["params"]["finetune_every"] == 0 and record["aug_views"] == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pool": "/nonexistent/pool.json"}, "is not a file"),
        ({"test_images": "/nonexistent"}, "is not a folder"),
        ({"strategies": "kcenter,oracle"}, "unknown strategy 'oracle'"),
        ({"strategies": "kcenter,k_center"}, "twice"),
        ({"budget": 5}, "--budget (5) must be >= --init (10)"),
        ({"step": 0}, "step >= 1"),
        ({"json": "/nonexistent/dir/out.json"}, "does not exist"),
        ({"weights": "/nonexistent/weights.pt"}, "does not exist"),
        ({"class_balance": "none,smote"}, "--class-balance takes distinct names"),
        ({"class_balance": "none,none"}, "--class-balance takes distinct names"),
        ({"ensembles": "1,0"}, "--ensembles needs distinct sizes >= 1"),
        ({"ensembles": "one"}, "--ensembles needs integers"),
        ({"ensemble_mode": "bagging"}, "--ensemble-mode takes distinct names"),
    ],
)
def test_benchmark_rejects_bad_arguments(
    sets: dict[str, Path], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("al_benchmark", *_args(sets, **overrides), stdout=StringIO())


def test_benchmark_rejects_a_budget_beyond_the_pool(sets: dict[str, Path]) -> None:
    with pytest.raises(CommandError, match="exceeds the pool's 57 crops"):
        call_command("al_benchmark", *_args(sets, budget=100), stdout=StringIO())


def test_benchmark_rejects_shared_sequences(sets: dict[str, Path]) -> None:
    with pytest.raises(CommandError, match="share 2 sequences"):
        call_command("al_benchmark", *_args(sets, pool=sets["test"]), stdout=StringIO())


def test_benchmark_compares_class_balance_and_ensembles_per_species(
    sets: dict[str, Path],
) -> None:
    out = sets["out"] / "settings.json"
    stdout = StringIO()
    call_command(
        "al_benchmark",
        *_args(
            sets,
            strategies="random",
            budget=20,
            seeds=2,
            class_balance="none,weighted",
            ensembles="1,2",
            ensemble_mode="seeds,versions",
            json=out,
        ),
        stdout=stdout,
    )
    record = json.loads(out.read_text())
    names = [v["name"] for v in record["variants"]]
    # Every combination; a single model once (the modes differ only for K > 1).
    assert names == [
        "balance=none ensemble=1",
        "balance=none ensemble=2 (seeds)",
        "balance=none ensemble=2 (versions)",
        "balance=weighted ensemble=1",
        "balance=weighted ensemble=2 (seeds)",
        "balance=weighted ensemble=2 (versions)",
    ]
    params = [
        (v["params"]["class_balance"], v["params"]["ensemble_size"]) for v in record["variants"]
    ]
    assert params == [
        ("none", 1),
        ("none", 2),
        ("none", 2),
        ("weighted", 1),
        ("weighted", 2),
        ("weighted", 2),
    ]
    # The top level is the first setting, as with one setting.
    assert record["full_pool_top1"] == record["variants"][0]["full_pool_top1"]
    # Same pool and seeds: the same random picks under every setting.
    picks = {json.dumps(v["strategies"]["random"]["picks"]) for v in record["variants"]}
    assert len(picks) == 1
    n_species = len(record["species"])
    assert sum(record["species_n_pool"]) == 57 and sum(record["species_n_test"]) == 11
    for variant in record["variants"]:
        assert len(variant["full_pool_per_species"]) == n_species
        curve = variant["strategies"]["random"]
        assert len(curve["per_species_mean"]) == n_species
        for n_test, accuracy in zip(
            record["species_n_test"], curve["per_species_mean"], strict=True
        ):
            assert (accuracy is None) == (n_test == 0)
        assert (
            all(0.0 <= v <= 1.0 for v in curve["f1_macro_mean"]) and curve["log_loss_mean"][0] > 0
        )
    text = stdout.getvalue()
    assert "settings compared on the same pool and seeds" in text
    assert "per-species test accuracy, full pool, per setting" in text
    assert "weighted K=2 (versions)" in text


# --- the product loop (the default) -----------------------------------------------------------


def test_benchmark_defaults_to_the_product_loop(sets: dict[str, Path]) -> None:
    out = sets["out"] / "product.json"
    stdout = StringIO()
    call_command(
        "al_benchmark",
        *_args(sets, research=False, strategies="default,random", seeds=1, json=out),
        stdout=stdout,
    )
    record = json.loads(out.read_text())
    assert record["format"] == "trapwise-al-benchmark-product/1"
    # The settings are the product's own (Project field defaults, the rounds' default strategy).
    assert record["product"]["class_balance"] == Project._meta.get_field("class_balance").default
    assert record["product"]["first_round_strategy"] == (
        Project._meta.get_field("first_round_strategy").default
    )
    assert record["params"]["padding"] == Project._meta.get_field("crop_padding").default
    assert list(record["strategies"]) == ["default", "random"]
    for entry in record["strategies"].values():
        for key in ("stored_top1", "crop_top1", "stored_top5", "reference_top1"):
            assert len(entry[key]["mean"]) == 2 and entry[key]["mean"] == entry[key]["worst"]
        assert entry["audit"]["all"]["points"] == 2  # one split, one seed, two budgets
    assert record["splits"] == [{"name": "pool/test", "n_pool": 57, "n_test": 11}]
    text = stdout.getvalue()
    assert "crop-only top-1" in text and "reference top-1 (linear probe" in text
    assert "stored audit at 20" in text and "crop-only audit at 20" in text
    assert "Wilson coverage" in text and "PPI coverage" in text
    assert record["audit_crop"]["points"] == 4  # two strategies


def _two_species(tmp_path: Path) -> Path:
    """The sample's ten sequences relabelled as two species of five sequences each
    (alternating by seq_id)."""
    document = _part(ONE_PER_SPECIES.__contains__)
    seqs = sorted({image["seq_id"] for image in document["images"]})
    species = {image["id"]: 1 + seqs.index(image["seq_id"]) % 2 for image in document["images"]}
    for annotation in document["annotations"]:
        annotation["category_id"] = species[annotation["image_id"]]
    document["categories"] = document["categories"][:2]
    path = tmp_path / "two.json"
    path.write_text(json.dumps(document))
    return path


def test_benchmark_rotates_sequence_folds(tmp_path: Path) -> None:
    out = tmp_path / "folds.json"
    call_command(
        "al_benchmark",
        *["--data", str(_two_species(tmp_path)), "--data-images", str(SAMPLE_DIR)],
        "--folds",
        "2",
        *["--strategies", "random", "--seeds", "1", "--init", "6", "--step", "6"],
        *["--budgets", "12", "--cache-dir", str(tmp_path / "cache"), "--json", str(out)],
        stdout=StringIO(),
    )
    record = json.loads(out.read_text())
    assert [s["name"] for s in record["splits"]] == ["fold 1", "fold 2"]
    # Each crop is a test crop exactly once; a fold's pool is the other fold.
    assert sum(s["n_test"] for s in record["splits"]) == 68
    assert all(s["n_pool"] + s["n_test"] == 68 for s in record["splits"])
    assert len(record["strategies"]["random"]["stored_top1"]["per_fold"]) == 2


def test_benchmark_refuses_an_empty_fold(tmp_path: Path) -> None:
    # One sequence per species in these ten: a second fold would get nothing.
    ten = _write_part(ONE_PER_SPECIES.__contains__, tmp_path / "ten.json")
    with pytest.raises(CommandError, match=r"fold\(s\) \[2\] of 2 get no crop"):
        call_command(
            "al_benchmark",
            *["--data", str(ten), "--data-images", str(SAMPLE_DIR), "--folds", "2"],
            *["--cache-dir", str(tmp_path / "cache")],
            stdout=StringIO(),
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"finetune_every": 10}, "--finetune-every: research loop options, add --research"),
        ({"ensembles": "1,2"}, "--ensembles: research loop options"),
        ({"budget": 20}, "--budget: research loop options"),
        ({"folds": 3}, "not with --pool/--test"),
        ({"budgets": "20,10"}, "distinct ascending"),
        ({"budgets": "15,20"}, "not reached"),
        ({"strategies": "default,oracle"}, "unknown strategy 'oracle'"),
        # Any backbone a project takes, concatenations included; bad names are refused.
        ({"backbone": "vgg16"}, "unknown backbone 'vgg16'"),
        ({"backbone": "concat:efficientnet_lite0"}, "at least two parts"),
    ],
)
def test_product_loop_rejects_bad_arguments(
    sets: dict[str, Path], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("al_benchmark", *_args(sets, research=False, **overrides), stdout=StringIO())


def test_research_loop_needs_pool_and_test() -> None:
    with pytest.raises(CommandError, match="--research needs --pool"):
        call_command("al_benchmark", "--research", stdout=StringIO())


# --- coco_split ---------------------------------------------------------------------------------


def test_coco_split_command(tmp_path: Path) -> None:
    images, annotations = [], []
    for category in (1, 2):
        for rank, seq in enumerate(("s3", "s1", "s2")):
            image_id = f"{category}-{seq}"
            images.append({"id": image_id, "file_name": f"{image_id}.jpg", "seq_id": image_id})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": category})
            del rank
    source = tmp_path / "all.json"
    source.write_text(
        json.dumps(
            {
                "info": {"version": "x"},
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                "images": images,
                "annotations": annotations,
            }
        )
    )
    pool, test = tmp_path / "pool.json", tmp_path / "test.json"
    stdout = StringIO()
    call_command(
        "coco_split", str(source), "--out-pool", str(pool), "--out-test", str(test), stdout=stdout
    )
    test_doc, pool_doc = json.loads(test.read_text()), json.loads(pool.read_text())
    assert [i["seq_id"] for i in test_doc["images"]] == ["1-s3", "2-s3"]
    assert sorted(i["seq_id"] for i in pool_doc["images"]) == ["1-s1", "1-s2", "2-s1", "2-s2"]
    assert test_doc["info"] == {"version": "x"} and len(test_doc["categories"]) == 2
    assert "test: 2 sequences" in stdout.getvalue()


@pytest.mark.parametrize("rank", ["0", "x", ""])
def test_coco_split_rejects_bad_ranks(tmp_path: Path, rank: str) -> None:
    with pytest.raises(CommandError, match="test-seq-rank"):
        call_command(
            "coco_split",
            str(SAMPLE_DIR / "annotations.json"),
            "--out-pool",
            str(tmp_path / "p.json"),
            "--out-test",
            str(tmp_path / "t.json"),
            "--test-seq-rank",
            rank,
        )


def test_coco_split_rejects_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command(
            "coco_split",
            str(tmp_path / "missing.json"),
            "--out-pool",
            str(tmp_path / "p.json"),
            "--out-test",
            str(tmp_path / "t.json"),
        )


@pytest.mark.skipif(not MISSOURI_DEV.is_dir(), reason="needs /work/shared/data/missouri-dev")
def test_coco_split_on_missouri_dev(tmp_path: Path) -> None:
    pool, test = tmp_path / "pool.json", tmp_path / "test.json"
    call_command(
        "coco_split",
        str(MISSOURI_DEV / "annotations.json"),
        "--out-pool",
        str(pool),
        "--out-test",
        str(test),
        "--test-seq-rank",
        "3",
        stdout=StringIO(),
    )
    pool_seqs = {i["seq_id"] for i in json.loads(pool.read_text())["images"]}
    test_seqs = {i["seq_id"] for i in json.loads(test.read_text())["images"]}
    assert (len(pool_seqs), len(test_seqs)) == (40, 20) and not pool_seqs & test_seqs


def test_benchmark_compares_crop_and_event_units(sets: dict[str, Path]) -> None:
    out = sets["out"] / "units.json"
    text = StringIO()
    call_command(
        "al_benchmark",
        *_args(sets, research=False, unit="crop,event", budgets="2,4", json=out),
        stdout=text,
    )
    record = json.loads(out.read_text())
    assert record["format"] == "trapwise-al-benchmark-units/1"
    assert record["budgets"] == [2, 4]
    crop, event = record["units"]["crop"], record["units"]["event"]
    assert crop["crops_labelled"] == [2.0, 4.0]  # one crop a decision
    assert all(e >= c for e, c in zip(event["crops_labelled"], crop["crops_labelled"], strict=True))
    assert all(0 <= w <= m <= 1 for w, m in zip(event["worst"], event["mean"], strict=True))
    assert "decisions" in text.getvalue()


def test_benchmark_refuses_an_unknown_unit(sets: dict[str, Path]) -> None:
    with pytest.raises(CommandError, match="--unit takes"):
        call_command(
            "al_benchmark", *_args(sets, research=False, unit="crop,frame"), stdout=StringIO()
        )
