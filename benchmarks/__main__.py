"""Run every benchmark (`python -m benchmarks`, what `make bench` does), or the ones named
(`python -m benchmarks learning_core kcenter`). ``--crops N`` sets explore_paging's crop count
(`python -m benchmarks explore_paging --crops 1000000`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from benchmarks import (
    backbone_probe,
    classifier_loop,
    crop_geometry,
    crop_urls,
    crops_10m,
    embedding_speed,
    explore_10m,
    explore_paging,
    export_stream,
    faiss_10m,
    kcenter,
    kcenter_10m,
    learning_core,
    offline_detector,
    offline_untimed,
    reembed,
    retrain_predict_10m,
    selection_rule,
)

BENCHMARKS: dict[str, Callable[[], None]] = {
    "kcenter": kcenter.main,
    "kcenter_10m": kcenter_10m.main,
    "faiss_10m": faiss_10m.main,
    "retrain_predict_10m": retrain_predict_10m.main,
    "explore_10m": explore_10m.main,
    "classifier_loop": classifier_loop.main,
    "export_stream": export_stream.main,
    "explore_paging": explore_paging.main,
    "offline_detector": offline_detector.main,
    "offline_untimed": offline_untimed.main,
    "embedding_speed": embedding_speed.main,
    "reembed": reembed.main,
    "learning_core": learning_core.main,
    "selection_rule": selection_rule.main,
    "crop_geometry": crop_geometry.main,
    "backbone_probe": backbone_probe.main,
    "crop_urls": crop_urls.main,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Trapwise's benchmarks.")
    parser.add_argument("names", nargs="*", help="benchmarks to run (all when none)")
    parser.add_argument("--crops", type=int, help="explore_paging's crop count")
    parser.add_argument("--n", type=int, help="crop count of the *_10m benchmarks")
    args = parser.parse_args(sys.argv[1:])
    if args.n is not None:
        crops_10m.N = args.n
    if args.crops is not None:
        explore_paging.N_CROPS = args.crops
    names = args.names or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
