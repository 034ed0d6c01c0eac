from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.core.management.base import BaseCommand, CommandError, CommandParser

from detector.base import DetectorError
from embeddings.cocodata import CocoCropsError, CropSet, coco_crops
from embeddings.evaluation import sequence_folds
from embeddings.model import (
    BACKBONES,
    BackboneInfo,
    EmbeddingNet,
    WeightsUnavailableError,
    build_embedding_net,
    save_embedding_checkpoint,
)
from embeddings.training import (
    MODES,
    TrainConfig,
    TrainResult,
    backbone_features,
    default_mode,
    train_full,
    train_head,
)

SIDECAR_FORMAT = "trapwise-embedding-training/1"
DEFAULT_EPOCHS = {"head": 30, "full": 5}


def sidecar_path(checkpoint: Path) -> Path:
    """Where the training metadata of ``checkpoint`` goes: ``<checkpoint>.json``."""
    return checkpoint.with_name(checkpoint.name + ".json")


class Command(BaseCommand):
    help = (
        "Train an embedding with triplet loss (semi-hard mining, P x K class-balanced batches) on "
        "the boxes of a labelled COCO Camera Traps set and save it as an embedding checkpoint, "
        "with training metadata in CHECKPOINT.json. --folds/--fold hold out whole sequences for "
        "an honest evaluate_embedding run with the same --folds/--fold/--split-seed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--coco", type=Path, required=True, help="COCO Camera Traps JSON")
        parser.add_argument(
            "--images", type=Path, required=True, help="folder the file_name paths are under"
        )
        parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
        parser.add_argument("--backbone", choices=BACKBONES, default="efficientnet_lite0")
        parser.add_argument(
            "--weights", default="imagenet", help="imagenet or a .pt/.pth backbone state dict"
        )
        parser.add_argument("--mode", choices=MODES, help="default: full with CUDA, else head")
        parser.add_argument("--epochs", type=int, help="default: 30 (head) or 5 (full)")
        parser.add_argument("--seed", type=int, default=0, help="head init, batches, augmentation")
        parser.add_argument("--batch-p", type=int, default=8, help="classes per batch")
        parser.add_argument("--batch-k", type=int, default=4, help="crops per class per batch")
        parser.add_argument("--lr", type=float, default=1e-3)
        parser.add_argument("--margin", type=float, default=0.2)
        parser.add_argument(
            "--aug-views",
            type=int,
            default=0,
            help="head mode: also cache this many augmented views per crop (one pass each)",
        )
        parser.add_argument("--padding", type=float, default=0.1, help="crop context fraction")
        parser.add_argument("--device", help="default: cuda if available, else cpu")
        parser.add_argument("--folds", type=int, help="split sequences into this many folds")
        parser.add_argument("--fold", type=int, help="hold out this fold (train on the others)")
        parser.add_argument("--split-seed", type=int, default=0, help="seed of the fold split")
        parser.add_argument("--json", type=Path, help="also write the training record here")

    def handle(self, *args: Any, **options: Any) -> None:
        check_split_options(options)
        mode = options["mode"] or default_mode()
        config = self._config(mode, options)
        with tempfile.TemporaryDirectory(prefix="trapwise-crops-") as tmp:
            crops = read_crops(options, Path(tmp))
            train = crops.subset(~held_out_mask(crops, options))
            self.stdout.write(
                f"crops: {len(crops)} in the set, {len(train)} for training "
                f"({len(set(train.seq_ids.tolist()))} sequences)"
            )
            net, info = build_net(options)
            try:
                result = self._train(net, info, train, config, options)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        save_embedding_checkpoint(net, info, options["out"])
        record = self._record(info, crops, train, result, options)
        text = json.dumps(record, indent=2) + "\n"
        sidecar_path(options["out"]).write_text(text)
        if options["json"]:
            options["json"].write_text(text)
        self._print(result, options["out"])

    def _config(self, mode: str, options: dict[str, Any]) -> TrainConfig:
        device = options["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
        if options["aug_views"] < 0 or (options["aug_views"] and mode != "head"):
            raise CommandError("--aug-views must be >= 0 and applies to --mode head only")
        try:
            return TrainConfig(
                mode=mode,
                epochs=options["epochs"] or DEFAULT_EPOCHS[mode],
                batch_p=options["batch_p"],
                batch_k=options["batch_k"],
                lr=options["lr"],
                margin=options["margin"],
                seed=options["seed"],
                device=device,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _train(
        self,
        net: EmbeddingNet,
        info: BackboneInfo,
        train: CropSet,
        config: TrainConfig,
        options: dict[str, Any],
    ) -> TrainResult:
        if config.mode == "full":
            return train_full(net, train.paths, train.labels, info=info, config=config)
        views = [backbone_features(net, train.paths, info=info, device=config.device)]
        for view in range(options["aug_views"]):
            # Distinct, recorded seeds per view: reproducible, never the plain view.
            views.append(
                backbone_features(
                    net,
                    train.paths,
                    info=info,
                    device=config.device,
                    augment_seed=config.seed * 1000 + view,
                )
            )
        labels = np.concatenate([train.labels] * len(views))
        return train_head(net, np.concatenate(views), labels, config=config)

    def _record(
        self,
        info: BackboneInfo,
        crops: CropSet,
        train: CropSet,
        result: TrainResult,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "checkpoint": str(options["out"]),
            "coco": str(options["coco"]),
            "images": str(options["images"]),
            "padding": options["padding"],
            "backbone_info": dataclasses.asdict(info),
            "split": split_record(options),
            "aug_views": options["aug_views"],
            "aug_view_seeds": [result.seed * 1000 + v for v in range(options["aug_views"])],
            "n_crops_in_set": len(crops),
            "n_crops_trained": len(train),
            "n_sequences_trained": len(set(train.seq_ids.tolist())),
            "label_names": crops.label_names,
            "skipped": [list(item) for item in crops.skipped],
            "training": result.to_dict(),
        }

    def _print(self, result: TrainResult, out: Path) -> None:
        curve = ", ".join(f"{loss:.4f}" for loss in result.loss_curve)
        self.stdout.write(
            f"trained ({result.mode}, {result.epochs} epochs, seed {result.seed}) on "
            f"{result.n_samples} rows of {result.n_classes} classes in {result.seconds:.1f} s"
        )
        if result.n_dropped:
            self.stdout.write(f"dropped {result.n_dropped} rows of classes with < 2 crops")
        self.stdout.write(f"loss per epoch: {curve}")
        self.stdout.write(f"checkpoint: {out}\nmetadata: {sidecar_path(out)}")


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
