"""Crop embedding throughput of our path against plain eager fp32 torchvision ResNet-50.

Crops: 300 animal boxes cut from missouri-dev (``annotations.json`` boxes, the pipeline's
``crop_box`` padding, JPEG quality 90), written to a temporary folder, i.e. the files the
embedding stage reads. Ours (the JSON value): ``embed_images`` with its defaults (fp32),
for each backbone; also recorded: ``precision="auto"`` (bf16 where the CPU has native bf16).
Baseline, timed in the same run on the same files: torchvision ``resnet50()`` eager,
float32, NCHW, 224 px, batch 32, decoding in the main process (``num_workers=0``), torch's
default threads.
Backbone weights are random for ResNet-50 (its ImageNet weights are not downloadable here;
the arithmetic, hence the time, is the same) and ImageNet for the others (EfficientNet-Lite0/1/2 at
224/240/260 px, MobileNetV2, and a concatenation, whose input is the largest part's size).
Each side is warmed up on one batch first so one-off kernel selection is not timed, and
each is the best of ROUNDS interleaved rounds.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from benchmarks._result import result_write
from detector.base import Box
from detector.crops import crop_box
from embeddings.inference import embed_images, resolve_precision
from embeddings.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneInfo,
    EmbeddingNet,
    build_embedding_net,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".." / "shared" / "data" / "missouri-dev"
N_CROPS, BATCH, SIZE, SEED, ROUNDS = 300, 32, 224, 0, 2
BACKBONES = {
    "resnet50": "random",
    "efficientnet_lite0": "imagenet",
    "efficientnet_lite1": "imagenet",
    "efficientnet_lite2": "imagenet",
    "mobilenet_v2": "imagenet",
    # A multi-backbone feature set: every part runs on every crop, so its time is their sum.
    "concat:efficientnet_lite0+efficientnet_lite1+efficientnet_lite2": "imagenet",
}


def result_name(backbone: str) -> str:
    """``embedding_speed_<backbone>`` with ``:`` and ``+`` made file-name safe."""
    return "embedding_speed_" + backbone.replace(":", "_").replace("+", "_")


def _data_dir() -> Path:
    """missouri-dev folder: $TRAPWISE_MISSOURI_DIR (relative to the repo root) or the default."""
    raw = os.environ.get("TRAPWISE_MISSOURI_DIR")
    path = Path(raw) if raw else DEFAULT_DIR
    return (path if path.is_absolute() else REPO / path).resolve()


def cut_crops(root: Path, out: Path, *, limit: int = N_CROPS) -> list[Path]:
    """Write up to ``limit`` JPEG crops of annotated boxes, spread evenly over the data set."""
    doc = json.loads((root / "annotations.json").read_text())
    images = {image["id"]: image for image in doc["images"]}
    boxed = [a for a in doc["annotations"] if a.get("bbox")]
    picks = np.unique(np.linspace(0, len(boxed) - 1, num=min(limit, len(boxed))).astype(int))
    paths = []
    for n, pick in enumerate(picks):
        annotation = boxed[pick]
        image = images[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        width, height = image["width"], image["height"]
        box = Box(x / width, y / height, w / width, h / height, 1.0, "animal")
        with Image.open(root / image["file_name"]) as frame:
            path = out / f"{n:04d}.jpg"
            crop_box(frame, box).save(path, quality=90)
        paths.append(path)
    return paths


def _baseline_model() -> torch.nn.Module:
    """torchvision ResNet-50, random init (same arithmetic as ImageNet weights), eval."""
    torch.manual_seed(SEED)
    return torchvision.models.resnet50(weights=None).eval()


def _baseline_loader(paths: list[Path]) -> DataLoader:  # type: ignore[type-arg]
    """The textbook pipeline: PIL open, Resize, ToTensor, Normalize, batch 32, no workers."""
    transform = transforms.Compose(
        [
            transforms.Resize((SIZE, SIZE)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )

    class Files(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            with Image.open(paths[i]) as image:
                return transform(image.convert("RGB"))  # type: ignore[no-any-return]

    return DataLoader(Files(), batch_size=BATCH, num_workers=0)


def baseline_crops_per_s(paths: list[Path]) -> float:
    """Crops/s of the plain eager fp32 ResNet-50 pipeline over ``paths`` (after warm-up)."""
    model = _baseline_model()
    with torch.inference_mode():
        model(next(iter(_baseline_loader(paths[:BATCH]))))
        start = time.perf_counter()
        for batch in _baseline_loader(paths):
            model(batch)
        return len(paths) / (time.perf_counter() - start)


def ours_crops_per_s(
    net: EmbeddingNet, info: BackboneInfo, paths: list[Path], **options: Any
) -> float:
    """Crops/s of ``embed_images`` (its defaults unless ``options``) over ``paths``."""
    embed_images(net, paths[:BATCH], info=info, **options)  # warm-up: oneDNN kernel choice
    start = time.perf_counter()
    embed_images(net, paths, info=info, **options)
    return len(paths) / (time.perf_counter() - start)


def _nets() -> dict[str, tuple[EmbeddingNet, BackboneInfo]]:
    return {
        name: build_embedding_net(backbone=name, weights=weights, seed=SEED)
        for name, weights in BACKBONES.items()
    }


def _measure(
    paths: list[Path], nets: dict[str, tuple[EmbeddingNet, BackboneInfo]]
) -> dict[str, float]:
    """Best-of-ROUNDS crops/s for the baseline and each (backbone, precision) path.

    Paths are interleaved round by round, and the best round kept, so that a burst of
    load from other processes on a small shared machine does not decide the comparison.
    """
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        runs = {"baseline": lambda: baseline_crops_per_s(paths)}
        for name, (net, info) in nets.items():
            for precision in ("fp32", "auto"):
                runs[f"{name}/{precision}"] = partial(
                    ours_crops_per_s, net, info, paths, precision=precision
                )
        for key, run in runs.items():
            best[key] = max(best.get(key, 0.0), run())
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = cut_crops(_data_dir(), Path(tmp))
        nets = _nets()
        best = _measure(paths, nets)
    baseline = best["baseline"]
    for name in BACKBONES:
        value, fast = best[f"{name}/fp32"], best[f"{name}/auto"]
        path = result_write(
            name=result_name(name),
            unit="crops/s",
            value=value,
            baseline_name=(
                "plain eager fp32 torchvision ResNet-50, 224 px, batch 32, NCHW, "
                "decode in main process, same crops"
            ),
            baseline=baseline,
            params={
                "backbone": name,
                "weights": BACKBONES[name],
                "crops": len(paths),
                "batch_size": BATCH,
                "input_size": nets[name][1].input_size,
                "baseline_input_size": SIZE,
                "value_path": "embed_images defaults: fp32, folded Conv+BN, channels_last",
                "auto_precision": resolve_precision("auto", "cpu"),
                "auto_precision_crops_per_s": fast,
                "auto_precision_ratio": fast / baseline,
                "rounds_best_of": ROUNDS,
                "torch_threads": torch.get_num_threads(),
            },
        )
        print(
            f"{result_name(name)}: {value:.1f} crops/s fp32 ({fast:.1f} with precision=auto "
            f"-> {resolve_precision('auto', 'cpu')}) vs baseline {baseline:.1f} crops/s -> {path}"
        )


if __name__ == "__main__":
    main()
