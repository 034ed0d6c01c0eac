"""The al_benchmark's data: crops of a COCO Camera Traps file and their cached backbone
features (``crop_features``), and the split of such a file into pool and test by capture
sequence (``coco_split``).

The simulated loop (``activelearn.experiment``) runs on what this returns. Arrays and plain
dicts in, dataclasses out; no Django. Backbone features are computed once per file, crop
geometry (shape and padding) and backbone and cached on disk, so a whole benchmark reads them
back instead of re-running the backbone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from detector.cct import CctDocument, CctId, cct_parse
from embeddings.cocodata import CropSet, coco_crops
from embeddings.model import BackboneInfo, EmbeddingNet
from embeddings.training import backbone_features
from projects.atomic import atomic_path

__all__ = ["CocoSplit", "CropFeatures", "coco_split", "crop_features"]

# Bump when what the cache holds or how it is computed changes.
_CACHE_VERSION = 1
# Seeds of the cached augmented views: fixed (not the run seed) so every run shares them.
_VIEW_SEED_BASE = 1000


# --- Crops and cached backbone features ---------------------------------------------------


@dataclass(frozen=True)
class CropFeatures:
    """Backbone features of every labelled box crop of one COCO Camera Traps file.

    Attributes:
        features: (N, F) float32 pooled backbone outputs of the plain crops.
        views: (V, N, F) float32 backbone outputs of V augmented views per crop (V may be
            0); used only to fine-tune the embedding head.
        labels: (N,) int64 index into ``label_names``.
        label_names: category names sorted by category id.
        seq_ids: (N,) str capture sequence of each crop.
        crop_pixels: (N,) int64 width x height of each cut crop (box size, for diagnostics).
    """

    features: np.ndarray
    views: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    seq_ids: np.ndarray
    crop_pixels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _cache_key(coco: Path, images: Path, info: BackboneInfo, padding: float, shape: str) -> str:
    """Hex digest of everything the cached crops and features depend on."""
    digest = hashlib.sha256(Path(coco).read_bytes())
    parts = [str(Path(images).resolve()), repr(padding), info.backbone, info.weights_source]
    if shape != "box":  # box keys stay what they were, so existing caches stay valid
        parts.append(shape)
    digest.update("\0".join([*parts, str(_CACHE_VERSION)]).encode())
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class _Source:
    """One COCO file's crops: what they are cut and embedded from, and where they are cached."""

    coco: Path
    images: Path
    net: EmbeddingNet
    info: BackboneInfo
    padding: float
    shape: str
    crops_dir: Path
    base: Path  # .npz: plain features and metadata; view v: <base stem>-view<v>.npy

    def view_path(self, index: int) -> Path:
        return self.base.with_name(f"{self.base.stem}-view{index}.npy")

    def crop_paths(self, n_rows: int) -> list[Path]:
        """The crop files ``coco_crops`` writes (it names row i ``<i:06d>.jpg``)."""
        return [self.crops_dir / f"{i:06d}.jpg" for i in range(n_rows)]

    def cut(self) -> CropSet:
        """Cut (or re-cut: the output is deterministic) every box into ``crops_dir``."""
        return coco_crops(
            self.coco, self.images, padding=self.padding, shape=self.shape, out_dir=self.crops_dir
        )


def _cut_and_embed(source: _Source) -> None:
    """Cut the crops and cache their plain features and metadata."""
    crops = source.cut()
    if len(crops) == 0:
        raise ValueError(f"{source.coco}: no readable box annotation")
    arrays = {
        "features": backbone_features(source.net, crops.paths, info=source.info),
        "labels": crops.labels,
        "label_names": np.array(crops.label_names, dtype=str),
        "seq_ids": crops.seq_ids,
        "crop_pixels": np.array([_pixels(p) for p in crops.paths], dtype=np.int64),
    }
    with atomic_path(source.base) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def _view(source: _Source, index: int, n_rows: int) -> np.ndarray:
    """(N, F) features of augmented view ``index``, from the cache or computed now."""
    path = source.view_path(index)
    if not path.is_file():
        paths = source.crop_paths(n_rows)
        if not all(p.is_file() for p in paths):  # crops deleted since: cut them again
            paths = source.cut().paths
        features = backbone_features(
            source.net, paths, info=source.info, augment_seed=_VIEW_SEED_BASE + index
        )
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, features)
    view: np.ndarray = np.load(path, allow_pickle=False)
    return view


def crop_features(
    coco: Path,
    images: Path,
    *,
    net: EmbeddingNet,
    info: BackboneInfo,
    cache_dir: Path,
    padding: float = 0.1,
    shape: str = "box",
    n_views: int = 0,
) -> CropFeatures:
    """Cut the labelled boxes of ``coco`` and return their backbone features, cached.

    The first call cuts the crops into ``cache_dir/crops/<key>/`` and stores plain
    features and metadata in ``cache_dir/<stem>-<key>.npz``; augmented view v goes to
    ``<stem>-<key>-view<v>.npy`` when first asked for. The key covers the JSON bytes,
    the images folder, crop geometry and backbone weights, so later calls only read files.

    Args:
        coco: COCO Camera Traps JSON (see ``embeddings.cocodata.coco_crops``).
        images: folder the JSON's ``file_name`` paths are relative to.
        net, info: the embedding network (only its backbone runs) and its description.
        cache_dir: created if needed.
        padding: box context fraction, as everywhere else in the project.
        shape: crop geometry, "box" or "square" (``detector.crops.crop_rect``).
        n_views: augmented views per crop wanted (view v uses augment seed 1000 + v).

    Raises:
        embeddings.cocodata.CocoCropsError, detector.base.DetectorError: unusable JSON.
        ValueError: no readable box, or an unreadable crop.
    """
    key = _cache_key(coco, images, info, padding, shape)
    source = _Source(
        coco=Path(coco),
        images=Path(images),
        net=net,
        info=info,
        padding=padding,
        shape=shape,
        crops_dir=cache_dir / "crops" / key,
        base=cache_dir / f"{Path(coco).stem}-{key}.npz",
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not source.base.is_file():
        _cut_and_embed(source)
    with np.load(source.base, allow_pickle=False) as data:
        base = {name: data[name] for name in data.files}
    plain = base["features"]
    views = [_view(source, v, plain.shape[0]) for v in range(n_views)]
    return CropFeatures(
        features=plain,
        views=np.stack(views) if views else np.empty((0, *plain.shape), np.float32),
        labels=base["labels"],
        label_names=[str(name) for name in base["label_names"]],
        seq_ids=base["seq_ids"],
        crop_pixels=base["crop_pixels"],
    )


def _pixels(path: Path) -> int:
    """Width x height of an image file (reads the header only)."""
    with Image.open(path) as image:
        return int(image.width * image.height)


# --- Pool / test split by capture sequence ---------------------------------------------------


@dataclass(frozen=True)
class CocoSplit:
    """A COCO Camera Traps document split by whole sequences.

    Attributes:
        pool, test: complete documents (every top-level key of the source, e.g. info,
            licenses, categories, with ``images``/``annotations`` filtered; entries as in
            the source).
        test_sequences: sorted seq_ids that went to the test document.
        pool_sequences: sorted seq_ids that went to the pool document.
    """

    pool: dict[str, Any]
    test: dict[str, Any]
    test_sequences: list[str]
    pool_sequences: list[str]


def _sequence_categories(document: CctDocument) -> dict[str, CctId]:
    """seq_id -> its main category: the most annotated one, ties to the first listed."""
    position = {c.id: i for i, c in enumerate(document.categories or ())}
    counts: dict[str, dict[CctId, int]] = {}
    for ann in document.annotations:
        if ann.category_id is not None:
            per_seq = counts.setdefault(document.images[ann.image_index].sequence, {})
            per_seq[ann.category_id] = per_seq.get(ann.category_id, 0) + 1
    return {
        seq: min(per_seq, key=lambda c: (-per_seq[c], position[c]))
        for seq, per_seq in counts.items()
    }


def coco_split(document: CctDocument | Mapping[str, Any], *, test_ranks: set[int]) -> CocoSplit:
    """Split a COCO Camera Traps document into pool and test by capture sequence.

    Each sequence (``CctImage.sequence``: its seq_id, else the image alone) belongs to its
    main category (most annotations; ties to the category listed first). Within a category
    the sequences are sorted by seq_id and ranked 1, 2, ...; the test gets every sequence
    whose rank is in ``test_ranks``, the pool the rest (including sequences without
    annotations). A sequence is never split.

    ``document`` is what ``detector.cct.cct_read`` read, or a parsed JSON object that is
    checked here the same way (``cct_parse``).

    Raises:
        detector.cct.CctError (a ValueError): an object that is not a COCO Camera Traps
        document with images/annotations/categories lists (see ``cct_parse``).
    """
    if not isinstance(document, CctDocument):
        document = cct_parse(document, source="COCO Camera Traps document")
    main = _sequence_categories(document)
    by_category: dict[CctId, list[str]] = {}
    for seq, category in main.items():
        by_category.setdefault(category, []).append(seq)
    test_seqs = {
        seq
        for seqs in by_category.values()
        for rank, seq in enumerate(sorted(seqs), start=1)
        if rank in test_ranks
    }
    all_seqs = {image.sequence for image in document.images}
    return CocoSplit(
        pool=_subset(document, all_seqs - test_seqs),
        test=_subset(document, test_seqs),
        test_sequences=sorted(test_seqs),
        pool_sequences=sorted(all_seqs - test_seqs),
    )


def _subset(document: CctDocument, sequences: set[str]) -> dict[str, Any]:
    """The document restricted to the images of ``sequences`` and their annotations."""
    kept = {image.index for image in document.images if image.sequence in sequences}
    return {
        **document.record,
        "images": [dict(image.record) for image in document.images if image.index in kept],
        "annotations": [dict(a.record) for a in document.annotations if a.image_index in kept],
    }
