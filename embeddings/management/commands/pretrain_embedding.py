from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.core.management.base import BaseCommand, CommandError, CommandParser

from embeddings.cocodata import CropSet
from embeddings.management.commands._embedding_set import (
    add_coco_set_arguments,
    build_net,
    check_split_options,
    held_out_mask,
    read_crops,
    split_record,
)
from embeddings.model import (
    BACKBONES,
    BackboneInfo,
    EmbeddingNet,
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
        add_coco_set_arguments(parser, fold_help="hold out this fold (train on the others)")
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
