"""The pretrain_embedding / evaluate_embedding commands on the bundled sample (no database)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from annotator.demo import SAMPLE_DIR
from embeddings.cocodata import coco_crops
from embeddings.evaluation import sequence_folds
from embeddings.model import build_embedding_net, load_embedding_checkpoint

COCO = SAMPLE_DIR / "annotations.json"


def _run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _fold0_size(tmp_path: Path) -> tuple[int, int]:
    """(crops in fold 0 of 3 with split seed 0, crops in the sample)."""
    crops = coco_crops(COCO, SAMPLE_DIR, out_dir=tmp_path / "ref")
    folds = sequence_folds(crops.labels, crops.seq_ids, n_folds=3, seed=0)
    return int((folds == 0).sum()), len(crops)


def test_pretrain_then_evaluate_a_held_out_fold(tmp_path: Path) -> None:
    checkpoint = tmp_path / "emb.pt"
    split = ["--folds", "3", "--fold", "0", "--split-seed", "0"]
    output = _run(
        "pretrain_embedding",
        *["--coco", str(COCO), "--images", str(SAMPLE_DIR), "--out", str(checkpoint)],
        *["--mode", "head", "--epochs", "2", "--seed", "3", "--json", str(tmp_path / "t.json")],
        *split,
    )
    held_out, total = _fold0_size(tmp_path)
    sidecar: dict[str, Any] = json.loads((tmp_path / "emb.pt.json").read_text())
    assert json.loads((tmp_path / "t.json").read_text()) == sidecar
    assert sidecar["training"]["mode"] == "head" and sidecar["training"]["seed"] == 3
    assert len(sidecar["training"]["loss_curve"]) == 2
    assert sidecar["split"]["held_out_fold"] == 0 and sidecar["split"]["folds"] == 3
    assert sidecar["n_crops_in_set"] == total == 203
    assert sidecar["n_crops_trained"] == total - held_out
    assert sidecar["backbone_info"]["backbone"] == "efficientnet_lite0"
    assert "loss per epoch" in output

    net, info = load_embedding_checkpoint(checkpoint)
    untrained, _ = build_embedding_net(backbone="efficientnet_lite0", seed=3)
    assert info.backbone == "efficientnet_lite0"
    assert not torch.equal(net.head.weight, untrained.head.weight)  # the head was trained
    # Head mode leaves the backbone exactly as it was.
    trained_backbone = net.backbone.state_dict()
    for key, value in untrained.backbone.state_dict().items():
        assert torch.equal(trained_backbone[key], value), key

    report = tmp_path / "eval.json"
    args = ["--coco", str(COCO), "--images", str(SAMPLE_DIR), "--checkpoint", str(checkpoint)]
    printed = _run("evaluate_embedding", *args, *split, "--json", str(report))
    record = json.loads(report.read_text())
    embedding = record["results"]["embedding"]
    assert embedding["n"] == held_out and embedding["k"] == 5
    assert 0.0 <= embedding["top1"] <= embedding["top_k"] <= 1.0
    assert record["results"]["backbone_features"]["metric"] == "cosine"
    assert record["network"] == f"checkpoint {checkpoint}"
    assert "top-1" in printed


def _two_sequences(tmp_path: Path) -> Path:
    """The sample's COCO file cut down to two sequences (11 boxes), images left in place."""
    document = json.loads(COCO.read_text())
    document["images"] = [i for i in document["images"] if i["seq_id"] in ("SEQ75179", "SEQ75520")]
    kept = {i["id"] for i in document["images"]}
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] in kept]
    path = tmp_path / "two.json"
    path.write_text(json.dumps(document))
    return path


def test_evaluate_without_checkpoint_reports_backbone_and_random_head(tmp_path: Path) -> None:
    report = tmp_path / "eval.json"
    coco = _two_sequences(tmp_path)
    _run(
        "evaluate_embedding",
        "--coco",
        str(coco),
        "--images",
        str(SAMPLE_DIR),
        "--json",
        str(report),
        "--k",
        "3",
    )
    record = json.loads(report.read_text())
    assert record["split"] is None and record["n_crops"] == 11 and record["n_sequences"] == 2
    assert "random head (seed 0)" in record["network"]
    for name in ("embedding", "backbone_features"):
        result = record["results"][name]
        # Every crop is scored against the other sequence (a different species here).
        assert result["n"] == 11 and result["n_groups"] == 2 and result["k"] == 3
        assert result["top1"] == 0.0


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    [
        ("pretrain_embedding", ["--fold", "1"], "together"),
        ("pretrain_embedding", ["--folds", "3", "--fold", "3"], "--fold < --folds"),
        ("pretrain_embedding", ["--mode", "full", "--aug-views", "2"], "head only"),
        ("pretrain_embedding", ["--weights", "weights.bin"], "unknown weights"),
        ("pretrain_embedding", ["--batch-k", "1"], "batch_k"),
        ("evaluate_embedding", ["--checkpoint", "/nonexistent.pt"], "cannot load checkpoint"),
        ("evaluate_embedding", ["--k", "0"], "--k"),
    ],
)
def test_bad_input_is_a_command_error(
    tmp_path: Path, command: str, extra: list[str], message: str
) -> None:
    args = ["--coco", str(COCO), "--images", str(SAMPLE_DIR), *extra]
    if command == "pretrain_embedding":
        args += ["--out", str(tmp_path / "x.pt")]
    with pytest.raises(CommandError, match=message):
        _run(command, *args)
    assert not (tmp_path / "x.pt").exists()


def test_unreadable_coco_file_is_a_command_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(CommandError, match="needs 'images'"):
        _run(
            "pretrain_embedding",
            "--coco",
            str(tmp_path / "bad.json"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "x.pt"),
            "--mode",
            "head",
        )
