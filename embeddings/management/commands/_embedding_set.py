"""What pretrain_embedding and evaluate_embedding share: the labelled set and its split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import CommandError, CommandParser

from detector.base import DetectorError
from embeddings.cocodata import CocoCropsError, CropSet, coco_crops
from embeddings.evaluation import sequence_folds
from embeddings.model import (
    BackboneInfo,
    EmbeddingNet,
    WeightsUnavailableError,
    build_embedding_net,
)


def add_coco_set_arguments(parser: CommandParser, *, fold_help: str) -> None:
    """--coco, --images and the sequence split (--folds, --fold, --split-seed)."""
    parser.add_argument("--coco", type=Path, required=True, help="COCO Camera Traps JSON")
    parser.add_argument(
        "--images", type=Path, required=True, help="folder the file_name paths are under"
    )
    parser.add_argument("--folds", type=int, help="split sequences into this many folds")
    parser.add_argument("--fold", type=int, help=fold_help)
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the fold split")


def check_split_options(options: dict[str, Any]) -> None:
    """--folds and --fold go together, with 0 <= fold < folds and folds >= 2; padding >= 0."""
    folds, fold = options["folds"], options["fold"]
    if (folds is None) != (fold is None):
        raise CommandError("--folds and --fold must be given together")
    if folds is not None and (folds < 2 or not 0 <= fold < folds):
        raise CommandError(f"need --folds >= 2 and 0 <= --fold < --folds, got {folds}, {fold}")
    if not options["padding"] >= 0:
        raise CommandError(f"--padding must be >= 0, got {options['padding']}")


def split_record(options: dict[str, Any]) -> dict[str, Any] | None:
    """The split as stored in JSON records (None: the whole set)."""
    if options["folds"] is None:
        return None
    return {
        "scheme": "sequence_folds (stratified by species)",
        "folds": options["folds"],
        "held_out_fold": options["fold"],
        "split_seed": options["split_seed"],
    }


def held_out_mask(crops: CropSet, options: dict[str, Any]) -> np.ndarray:
    """(N,) bool: crops whose sequence is in the held-out fold (all False without --folds)."""
    if options["folds"] is None:
        return np.zeros(len(crops), dtype=bool)
    folds = sequence_folds(
        crops.labels, crops.seq_ids, n_folds=options["folds"], seed=options["split_seed"]
    )
    mask: np.ndarray = folds == options["fold"]
    return mask


def read_crops(options: dict[str, Any], out_dir: Path) -> CropSet:
    """Cut the set's crops into ``out_dir``; CommandError if the set is unusable or empty."""
    try:
        crops = coco_crops(
            options["coco"], options["images"], padding=options["padding"], out_dir=out_dir
        )
    except (CocoCropsError, DetectorError) as exc:
        raise CommandError(str(exc)) from exc
    if len(crops) == 0:
        raise CommandError(f"{options['coco']}: no readable box annotation")
    return crops


def build_net(options: dict[str, Any]) -> tuple[EmbeddingNet, BackboneInfo]:
    """The pretrained backbone + a head seeded by --seed; CommandError if weights are missing."""
    try:
        return build_embedding_net(
            backbone=options["backbone"], weights=options["weights"], seed=options["seed"]
        )
    except (WeightsUnavailableError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
