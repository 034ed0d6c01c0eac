from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from activelearn.classifier import CLASS_BALANCES
from activelearn.experiment import (
    ENSEMBLE_MODES,
    SELECTION_SPACES,
    CropFeatures,
    ExperimentResult,
    LoopConfig,
    RunResult,
    crop_features,
    resolve_strategy,
    run_benchmark,
)
from activelearn.management.commands import _al_product, _al_units
from activelearn.management.commands._al_output import format_table, write_plot
from detector.base import DetectorError
from embeddings.backbones import backbone_parts
from embeddings.cocodata import CocoCropsError
from embeddings.management.commands._embedding_set import build_net
from embeddings.model import BackboneInfo, EmbeddingNet

RECORD_FORMAT = "trapwise-al-benchmark/1"
PRODUCT_FORMAT = "trapwise-al-benchmark-product/1"
# Options of the research loop only (``--research``), with the value meaning "not given".
_RESEARCH_ONLY = {
    "finetune_every": 0,
    "ensembles": "1",
    "ensemble_mode": "seeds",
    "selection_space": "embedding",
    "class_balance": None,
    "head_seed": 0,
    "budget": None,
    "plot": None,
}


def _default_cache() -> Path:
    return Path(settings.BASE_DIR) / "var" / "al" / "cache"


@contextmanager
def _benchmark_process(threads: int) -> Iterator[None]:
    """Quiet classifier logs and ``threads`` torch threads for the block; restored after.

    The classifier logs a convergence warning per fit (hundreds per run). The work is
    thousands of small matrix products, where extra threads cost more in sync than
    they gain (one thread was 25% faster than two on the 2-core dev machine).
    """
    logger = logging.getLogger("activelearn.classifier")
    level, previous = logger.level, torch.get_num_threads()
    logger.setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        logger.setLevel(level)
        torch.set_num_threads(previous)


def _backbone_name(value: str) -> str:
    """``--backbone``: any name a project takes (``embeddings.backbones.backbone_parts``)."""
    try:
        backbone_parts(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


class Command(BaseCommand):
    help = (
        "Simulated active learning (Norouzzadeh et al. 2019): a simulated oracle labels the "
        "pool's crops (ground-truth boxes) round by round, as each selection strategy asks; "
        "after every round the classifier is retrained and scored on the test set (crop "
        "top-1/top-5, sequence top-1). With --finetune-every N the embedding head is "
        "fine-tuned with triplet loss every N new labels. Pool and test must not share "
        "sequences (see coco_split). --class-balance and --ensembles compare settings on the "
        "same pool with the same seeds (every combination), per species (all with --research). "
        "Without --research it runs the product: its defaults, its retrain (classifier choice, "
        "temperature, capture-event pooling), the PCA head, an audit stream, and the linear-probe "
        "reference on the same labels, on --folds rotated sequence folds of --data (default: "
        "missouri-dev, 3 folds) or on --pool/--test."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pool", type=Path, help="pool COCO Camera Traps JSON")
        parser.add_argument("--pool-images", type=Path, help="pool images folder")
        parser.add_argument("--test", type=Path, help="test COCO Camera Traps JSON")
        parser.add_argument("--test-images", type=Path, help="test images folder")
        parser.add_argument(
            "--data", type=Path, help="with --folds: the whole labelled set (default missouri-dev)"
        )
        parser.add_argument("--data-images", type=Path, help="default: the folder of --data")
        parser.add_argument(
            "--folds", type=int, help="rotated sequence folds of --data (default 3 without --pool)"
        )
        parser.add_argument(
            "--budgets", default="100,200,300", help="label counts where the product is scored"
        )
        parser.add_argument(
            "--research",
            action="store_true",
            help="the research loop (head fine-tuning, ensembles, --budget) on --pool/--test",
        )
        parser.add_argument(
            "--strategies",
            help="comma-separated names; default: the rule a new project uses and random "
            "(default,random); with --research kcenter,random,margin",
        )
        parser.add_argument("--init", type=int, default=20, help="random first-round labels")
        parser.add_argument("--step", type=int, default=20, help="labels per later round")
        parser.add_argument("--budget", type=int, help="--research: stop here (default 300)")
        parser.add_argument("--seeds", type=int, default=3, help="runs per strategy (seeds 0..)")
        parser.add_argument(
            "--finetune-every", type=int, default=0, help="tune the head every N labels; 0: never"
        )
        parser.add_argument("--finetune-epochs", type=int, default=10)
        parser.add_argument(
            "--aug-views", type=int, default=4, help="augmented views per crop for fine-tuning"
        )
        parser.add_argument("--selection-space", choices=SELECTION_SPACES, default="embedding")
        parser.add_argument(
            "--backbone",
            type=_backbone_name,
            default="efficientnet_lite0",
            help="a backbone name as a project takes it, e.g. efficientnet_lite0 or "
            "concat:efficientnet_lite0+efficientnet_lite1+efficientnet_lite2",
        )
        parser.add_argument("--weights", default="imagenet", help="imagenet or a .pt/.pth file")
        parser.add_argument("--head-seed", type=int, default=0, help="seed of the starting head")
        parser.add_argument(
            "--padding", type=float, help="crop context fraction (default: the product's)"
        )
        parser.add_argument("--cache-dir", type=Path, help="default: var/al/cache")
        parser.add_argument("--threads", type=int, default=1, help="torch threads for the loop")
        parser.add_argument(
            "--class-balance",
            help=f"comma-separated settings to compare ({', '.join(CLASS_BALANCES)})",
        )
        parser.add_argument(
            "--ensembles",
            default="1",
            help="comma-separated ensemble sizes to compare (1: a single model), e.g. 1,5",
        )
        parser.add_argument(
            "--ensemble-mode",
            default="seeds",
            help="comma-separated: seeds (K seeds on the same labels) and/or versions (the "
            "newest K rounds' classifiers)",
        )
        parser.add_argument(
            "--unit",
            help="compare labelling units instead of the product loop: crop, event or "
            "crop,event (k-Center, one event answer = one decision; --budgets in decisions)",
        )
        parser.add_argument("--json", type=Path, help="write the results here")
        parser.add_argument("--plot", type=Path, help="write a PNG learning curve here")

    def handle(self, *args: Any, **options: Any) -> None:
        product = _al_product.product_settings()
        if options["padding"] is None:
            options["padding"] = product["padding"]
        if options["unit"] is not None:
            if options["research"]:
                raise CommandError("--unit compares labelling units outside --research")
            self._units(options, product)
            return
        if not options["research"]:
            self._product(options, product)
            return
        if options["pool"] is None or options["test"] is None:
            raise CommandError("--research needs --pool, --pool-images, --test and --test-images")
        options["strategies"] = options["strategies"] or "kcenter,random,margin"
        options["budget"] = options["budget"] if options["budget"] is not None else 300
        options["class_balance"] = options["class_balance"] or "none"
        strategies = self._strategies(options["strategies"])
        config = self._config(options)
        variants = self._variants(config, options)
        self._check_paths(options)
        net, info = build_net({**options, "seed": options["head_seed"]})
        n_views = options["aug_views"] if config.finetune_every else 0
        pool = self._features(options["pool"], options["pool_images"], net, info, options, n_views)
        test = self._features(options["test"], options["test_images"], net, info, options, 0)
        self._check_sets(pool, test, config.budget)
        self.stdout.write(
            f"pool {len(pool)} crops / {len(set(pool.seq_ids.tolist()))} sequences, test "
            f"{len(test)} crops / {len(set(test.seq_ids.tolist()))} sequences; "
            f"{len(strategies)} strategies x {options['seeds']} seeds"
        )
        records = []
        with _benchmark_process(options["threads"]):
            for variant in variants:
                if len(variants) > 1:
                    self.stdout.write(f"setting: {_variant_name(variant)}")
                result = run_benchmark(
                    strategies,
                    pool,
                    test,
                    net=net,
                    config=variant,
                    seeds=range(options["seeds"]),
                    progress=self._progress,
                )
                records.append(self._record(result, pool, test, info, options))
        # The first setting's figures stay at the top level (the format of one setting).
        record = dict(records[0])
        record.update(_counts(pool, test))
        if len(records) > 1:
            record["variants"] = [
                {"name": _variant_name(v), **r} for v, r in zip(variants, records, strict=True)
            ]
        self.stdout.write(format_table(record))
        self._write(record, options)

    def _product(self, options: dict[str, Any], product: dict[str, Any]) -> None:
        """The product's loop with its settings (``_al_product``), on folds or pool/test."""
        given = [
            f"--{k.replace('_', '-')}" for k, unset in _RESEARCH_ONLY.items() if options[k] != unset
        ]
        if given:
            raise CommandError(f"{', '.join(given)}: research loop options, add --research")
        strategies = self._strategies(options["strategies"] or "default,random")
        config = _al_product.product_config(options, product)
        if min(options["seeds"], options["threads"]) < 1:
            raise CommandError("need --seeds >= 1 and --threads >= 1")
        if not options["padding"] >= 0:
            raise CommandError(f"--padding must be >= 0, got {options['padding']}")
        if options["json"] is not None and not options["json"].parent.is_dir():
            raise CommandError(f"--json: folder {options['json'].parent} does not exist")
        splits, source, net_dim = self._product_splits(options, product)
        self.stdout.write(
            f"{len(splits)} split(s) of {source}: pool/test crops "
            + ", ".join(f"{len(s.pool)}/{len(s.test)}" for s in splits)
            + f"; {len(strategies)} strategies x {options['seeds']} seeds; product settings "
            + ", ".join(f"{k}={v}" for k, v in product.items())
        )
        with _benchmark_process(options["threads"]):
            record = _al_product.product_benchmark(
                splits,
                strategies,
                config,
                seeds=range(options["seeds"]),
                embedding_dim=net_dim,
                seed=product["seed"],
                write=self.stdout.write,
            )
        record.update(
            format=PRODUCT_FORMAT,
            source=source,
            product=product,
            params={
                **{k: options[k] for k in ("init", "step", "backbone", "weights", "padding")},
                "budgets": list(config.budgets),
                "seeds": list(range(options["seeds"])),
                "strategies": strategies,
            },
            species=list(splits[0].pool.label_names),
        )
        self.stdout.write(_al_product.product_table(record))
        if options["json"]:
            options["json"].write_text(json.dumps(record, indent=1) + "\n")
            self.stdout.write(f"results: {options['json']}")

    def _units(self, options: dict[str, Any], product: dict[str, Any]) -> None:
        """``--unit``: crop against event labelling on the product's splits."""
        units = _al_units.units_parse(options["unit"])
        if options["seeds"] < 1:
            raise CommandError("need --seeds >= 1")
        if options["json"] is not None and not options["json"].parent.is_dir():
            raise CommandError(f"--json: folder {options['json'].parent} does not exist")
        splits, source, net_dim = self._product_splits(options, product)
        self.stdout.write(f"{len(splits)} split(s) of {source}; units {', '.join(units)}")
        record = _al_units.units_benchmark(
            splits,
            units,
            budgets_raw=options["budgets"],
            seeds=range(options["seeds"]),
            embedding_dim=net_dim,
            seed=product["seed"],
            write=self.stdout.write,
        )
        record["source"] = source
        self.stdout.write(_al_units.units_table(record))
        if options["json"]:
            options["json"].write_text(json.dumps(record, indent=1) + "\n")
            self.stdout.write(f"results: {options['json']}")

    def _product_splits(
        self, options: dict[str, Any], product: dict[str, Any]
    ) -> tuple[list[_al_product.Split], str, int]:
        """The splits the product runs on (--pool/--test, or --folds of --data), a description,
        and the embedding width of the product's head."""
        net, info = build_net({**options, "seed": product["seed"]})
        if options["pool"] is not None or options["test"] is not None:
            if options["folds"] is not None or options["data"] is not None:
                raise CommandError("--folds/--data rotate one set; not with --pool/--test")
            self._check_paths(options)
            pool = self._features(options["pool"], options["pool_images"], net, info, options, 0)
            test = self._features(options["test"], options["test_images"], net, info, options, 0)
            self._check_sets(pool, test, 0)
            source = f"{options['pool']} / {options['test']}"
            return [_al_product.Split("pool/test", pool, test)], source, net.embedding_dim
        data = options["data"] or _al_product.default_data()
        images = options["data_images"] or data.parent
        if not data.is_file() or not images.is_dir():
            raise CommandError(f"--data {data} (images {images}) not found")
        n_folds = options["folds"] if options["folds"] is not None else 3
        if n_folds < 2:
            raise CommandError(f"--folds must be >= 2, got {n_folds}")
        crops = self._features(data, images, net, info, options, 0)
        source = f"{data} ({n_folds} folds)"
        return _al_product.fold_splits(crops, n_folds), source, net.embedding_dim

    def _variants(self, config: LoopConfig, options: dict[str, Any]) -> list[LoopConfig]:
        """Every combination of --class-balance, --ensembles and --ensemble-mode (a single
        model is the same in both modes, so it is run once)."""
        balances = _choices(options["class_balance"], CLASS_BALANCES, "--class-balance")
        modes = _choices(options["ensemble_mode"], ENSEMBLE_MODES, "--ensemble-mode")
        try:
            sizes = [int(part) for part in options["ensembles"].split(",") if part.strip()]
        except ValueError as exc:
            raise CommandError(f"--ensembles needs integers, got {options['ensembles']!r}") from exc
        if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
            raise CommandError(f"--ensembles needs distinct sizes >= 1, got {options['ensembles']}")
        variants = []
        for balance in balances:
            for size in sizes:
                for mode in modes if size > 1 else modes[:1]:
                    variants.append(
                        dataclasses.replace(
                            config, class_balance=balance, ensemble_size=size, ensemble_mode=mode
                        )
                    )
        return variants

    def _strategies(self, raw: str) -> list[str]:
        names = [name for name in (part.strip() for part in raw.split(",")) if name]
        if not names:
            raise CommandError("--strategies needs at least one name")
        try:
            resolved = [resolve_strategy(name) for name in names]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if len(set(resolved)) != len(resolved):
            raise CommandError(f"--strategies names a strategy twice: {raw}")
        return resolved

    def _config(self, options: dict[str, Any]) -> LoopConfig:
        if options["budget"] < options["init"]:
            raise CommandError(
                f"--budget ({options['budget']}) must be >= --init ({options['init']})"
            )
        if min(options["seeds"], options["threads"]) < 1 or options["aug_views"] < 0:
            raise CommandError("need --seeds >= 1, --threads >= 1 and --aug-views >= 0")
        if not options["padding"] >= 0:
            raise CommandError(f"--padding must be >= 0, got {options['padding']}")
        try:
            return LoopConfig(
                init=options["init"],
                step=options["step"],
                budget=options["budget"],
                finetune_every=options["finetune_every"],
                finetune_epochs=options["finetune_epochs"],
                selection_space=options["selection_space"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _check_paths(self, options: dict[str, Any]) -> None:
        for flag in ("pool", "test"):
            if not options[flag].is_file():
                raise CommandError(f"--{flag} {options[flag]} is not a file")
            folder = options[f"{flag}_images"]
            if not folder.is_dir():
                raise CommandError(f"--{flag}-images {folder} is not a folder")
        for flag in ("json", "plot"):
            target = options[flag]
            if target is not None and not target.parent.is_dir():
                raise CommandError(f"--{flag}: folder {target.parent} does not exist")

    def _features(
        self,
        coco: Path,
        images: Path,
        net: EmbeddingNet,
        info: BackboneInfo,
        options: dict[str, Any],
        n_views: int,
    ) -> CropFeatures:
        self.stdout.write(f"crops and backbone features of {coco} (cached after the first run)")
        try:
            return crop_features(
                coco,
                images,
                net=net,
                info=info,
                cache_dir=options["cache_dir"] or _default_cache(),
                padding=options["padding"],
                n_views=n_views,
            )
        except (CocoCropsError, DetectorError, ValueError) as exc:
            raise CommandError(str(exc)) from exc

    def _check_sets(self, pool: CropFeatures, test: CropFeatures, budget: int) -> None:
        if pool.label_names != test.label_names:
            raise CommandError("pool and test JSON must list the same categories")
        shared = set(pool.seq_ids.tolist()) & set(test.seq_ids.tolist())
        if shared:
            example = ", ".join(sorted(shared)[:3])
            raise CommandError(f"pool and test share {len(shared)} sequences (e.g. {example})")
        if budget > len(pool):
            raise CommandError(f"--budget {budget} exceeds the pool's {len(pool)} crops")

    def _progress(self, run: RunResult) -> None:
        last = run.rounds[-1]
        self.stdout.write(
            f"  {run.strategy} seed {run.seed}: top-1 {last.scores.top1:.3f} at "
            f"{last.n_labels} labels ({run.seconds:.1f} s)"
        )

    def _record(
        self,
        result: ExperimentResult,
        pool: CropFeatures,
        test: CropFeatures,
        info: BackboneInfo,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        record = result.to_dict()
        record.update(
            format=RECORD_FORMAT,
            n_pool=len(pool),
            n_test=len(test),
            pool=str(options["pool"]),
            test=str(options["test"]),
            backbone=info.backbone,
            weights_source=info.weights_source,
            head_seed=options["head_seed"],
            aug_views=options["aug_views"] if result.config.finetune_every else 0,
        )
        return record

    def _write(self, record: dict[str, Any], options: dict[str, Any]) -> None:
        if options["json"]:
            options["json"].write_text(json.dumps(record, indent=1) + "\n")
            self.stdout.write(f"results: {options['json']}")
        if options["plot"]:
            tuned = record["params"]["finetune_every"]
            title = f"{Path(options['pool']).stem}: " + (
                f"head fine-tuned every {tuned} labels" if tuned else "frozen embedding"
            )
            write_plot(record, options["plot"], title=title)
            self.stdout.write(f"plot: {options['plot']}")


def _choices(raw: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    """The comma-separated names of ``raw``, each one of ``allowed``, none twice."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in allowed]
    if not names or unknown or len(set(names)) != len(names):
        raise CommandError(f"{flag} takes distinct names among {', '.join(allowed)}, got {raw!r}")
    return names


def _variant_name(config: LoopConfig) -> str:
    """E.g. "balance=weighted ensemble=5 (seeds)"."""
    name = f"balance={config.class_balance} ensemble={config.ensemble_size}"
    return name + (f" ({config.ensemble_mode})" if config.ensemble_size > 1 else "")


def _counts(pool: CropFeatures, test: CropFeatures) -> dict[str, list[int]]:
    """Crops per species (label index order) in the pool and the test set."""
    n = len(pool.label_names)
    return {
        "species_n_pool": [int(c) for c in np.bincount(pool.labels, minlength=n)],
        "species_n_test": [int(c) for c in np.bincount(test.labels, minlength=n)],
    }
