from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.core.management.base import BaseCommand, CommandError, CommandParser

from embeddings.evaluation import KnnResult, knn_accuracy
from embeddings.management.commands._embedding_set import (
    add_coco_set_arguments,
    build_net,
    check_split_options,
    held_out_mask,
    read_crops,
    split_record,
)
from embeddings.model import BACKBONES, BackboneInfo, EmbeddingNet, load_embedding_checkpoint
from embeddings.training import backbone_features, embed_from_features

RECORD_FORMAT = "trapwise-embedding-evaluation/1"


class Command(BaseCommand):
    help = (
        "Leave-one-sequence-out kNN accuracy (top-1, top-k = Recall@k, k-NN vote) of the "
        "embeddings of every box crop of a labelled COCO Camera Traps set: each crop's "
        "neighbours are searched among crops of other sequences only. Scores the checkpoint's "
        "embedding (or, without --checkpoint, the ImageNet backbone with a seeded random head) "
        "and the raw backbone features (cosine). With --folds/--fold only the crops of the "
        "held-out fold are scored (neighbours: all other sequences)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_coco_set_arguments(parser, fold_help="score only the crops of this fold")
        parser.add_argument("--checkpoint", type=Path, help="embedding checkpoint to evaluate")
        parser.add_argument("--backbone", choices=BACKBONES, default="efficientnet_lite0")
        parser.add_argument("--weights", default="imagenet", help="without --checkpoint")
        parser.add_argument("--seed", type=int, default=0, help="random head, without --checkpoint")
        parser.add_argument("--k", type=int, default=5, help="neighbours for top-k and vote")
        parser.add_argument("--padding", type=float, default=0.1, help="crop context fraction")
        parser.add_argument("--device", help="default: cuda if available, else cpu")
        parser.add_argument("--json", type=Path, help="also write the figures to this file")

    def handle(self, *args: Any, **options: Any) -> None:
        check_split_options(options)
        if options["k"] < 1:
            raise CommandError("--k must be >= 1")
        device = options["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
        net, info, source = self._net(options)
        with tempfile.TemporaryDirectory(prefix="trapwise-crops-") as tmp:
            crops = read_crops(options, Path(tmp))
            try:
                features = backbone_features(net, crops.paths, info=info, device=device)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        queries = held_out_mask(crops, options) if options["folds"] is not None else None
        embedding = embed_from_features(net, features, device=device)
        results = {
            "embedding": self._knn(embedding, crops.labels, crops.seq_ids, queries, "l2", options),
            "backbone_features": self._knn(
                features, crops.labels, crops.seq_ids, queries, "cosine", options
            ),
        }
        record = {
            "format": RECORD_FORMAT,
            "coco": str(options["coco"]),
            "network": source,
            "backbone": info.backbone,
            "weights_source": info.weights_source,
            "n_crops": len(crops),
            "n_sequences": len(set(crops.seq_ids.tolist())),
            "split": split_record(options),
            "skipped": [list(item) for item in crops.skipped],
            "results": {name: result.to_dict() for name, result in results.items()},
        }
        self._print(record, results)
        if options["json"]:
            options["json"].write_text(json.dumps(record, indent=2) + "\n")

    def _net(self, options: dict[str, Any]) -> tuple[EmbeddingNet, BackboneInfo, str]:
        """(net, info, description): the checkpoint, or ImageNet backbone + random head."""
        checkpoint = options["checkpoint"]
        if checkpoint is None:
            net, info = build_net(options)
            return (
                net,
                info,
                f"{info.backbone} {info.weights} + random head (seed {options['seed']})",
            )
        try:
            net, info = load_embedding_checkpoint(checkpoint)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CommandError(f"cannot load checkpoint {checkpoint}: {exc}") from exc
        return net, info, f"checkpoint {checkpoint}"

    def _knn(
        self,
        vectors: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray,
        queries: np.ndarray | None,
        metric: str,
        options: dict[str, Any],
    ) -> KnnResult:
        try:
            return knn_accuracy(
                vectors, labels, groups, k=options["k"], queries=queries, metric=metric
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _print(self, record: dict[str, Any], results: dict[str, KnnResult]) -> None:
        self.stdout.write(
            f"{record['network']}: {record['n_crops']} crops in {record['n_sequences']} sequences"
            + (f", split {record['split']}" if record["split"] else "")
        )
        for name, result in results.items():
            self.stdout.write(
                f"{name:>18}: top-1 {result.top1:.3f}  top-{result.k} {result.top_k:.3f}  "
                f"{result.k}-NN vote {result.vote:.3f}  ({result.n} queries, "
                f"{result.n_groups} sequences, {result.metric})"
            )
