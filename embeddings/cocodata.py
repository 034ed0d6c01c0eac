"""Labelled crops from a COCO Camera Traps file: the data for embedding training/evaluation.

Every annotation with a ``bbox`` becomes one crop file (``detector.crops.crop_box``, the
same cutting as the import pipeline), labelled with its category and grouped by its
image's ``seq_id``. Annotations without a bbox (empty frames, image-level labels) are
ignored.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.base import Box, DetectorError
from detector.crops import crop_box
from detector.imported import coco_box, normalise_relpath
from embeddings.inference import load_rgb

# Same encoding as the crops the import pipeline writes.
_JPEG_QUALITY = 90


class CocoCropsError(ValueError):
    """The COCO Camera Traps file cannot be read as labelled boxes."""


@dataclass(frozen=True)
class CropSet:
    """Labelled crops, row i describing ``paths[i]``.

    Attributes:
        paths: crop JPEG files.
        labels: (N,) int64 index into ``label_names``.
        label_names: every category name of the file, sorted by category id (so
            indices agree between subsets of one file, whether or not a class has boxes).
        seq_ids: (N,) str sequence id of the crop's image (its image id if it has none).
        image_files: (N,) str image path relative to the images folder.
        annotation_ids: (N,) str annotation id.
        skipped: (file or annotation, reason) for images that could not be read and
            boxes that could not be cut; those crops are absent.
    """

    paths: list[Path]
    labels: np.ndarray
    label_names: list[str]
    seq_ids: np.ndarray
    image_files: np.ndarray
    annotation_ids: np.ndarray
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, mask: np.ndarray) -> CropSet:
        """The rows where the (N,) bool ``mask`` is True (label_names/skipped unchanged)."""
        rows = np.flatnonzero(np.asarray(mask, dtype=bool))
        return CropSet(
            paths=[self.paths[i] for i in rows],
            labels=self.labels[rows],
            label_names=self.label_names,
            seq_ids=self.seq_ids[rows],
            image_files=self.image_files[rows],
            annotation_ids=self.annotation_ids[rows],
            skipped=self.skipped,
        )


@dataclass(frozen=True)
class _Wanted:
    """One annotation to cut: box normalised by the JSON image size."""

    annotation_id: str
    label: int
    box: Box


def _load(coco: Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(coco).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CocoCropsError(f"{coco}: cannot read COCO Camera Traps JSON: {exc}") from exc
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise CocoCropsError(f"{coco}: needs 'images', 'annotations' and 'categories' lists")
    return document


def _categories(document: dict[str, Any], coco: Path) -> tuple[list[str], dict[Any, int]]:
    """(names sorted by category id, category id -> label index)."""
    try:
        ordered = sorted(document["categories"], key=lambda c: c["id"])
        names = [str(c["name"]).strip() for c in ordered]
        index = {c["id"]: i for i, c in enumerate(ordered)}
    except (KeyError, TypeError) as exc:
        raise CocoCropsError(f"{coco}: every category needs an id and a name") from exc
    return names, index


def _images(document: dict[str, Any], coco: Path) -> dict[Any, dict[str, Any]]:
    """image id -> record with a normalised relative ``file_name``."""
    images: dict[Any, dict[str, Any]] = {}
    for i, image in enumerate(document["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise CocoCropsError(f"{coco}: images[{i}] needs an id and a file_name")
        try:
            images[image["id"]] = {**image, "file_name": normalise_relpath(image["file_name"])}
        except DetectorError as exc:
            raise CocoCropsError(f"{coco}: images[{i}]: {exc}") from exc
    return images


def _wanted_by_image(
    document: dict[str, Any],
    images: dict[Any, dict[str, Any]],
    categories: dict[Any, int],
    coco: Path,
    skipped: list[tuple[str, str]],
) -> dict[Any, list[_Wanted]]:
    """Annotations with a bbox, grouped by image id in annotation order."""
    wanted: dict[Any, list[_Wanted]] = defaultdict(list)
    for i, ann in enumerate(document["annotations"]):
        if not isinstance(ann, dict) or ann.get("bbox") is None:
            continue
        ann_id = str(ann.get("id", f"annotations[{i}]"))
        if ann.get("image_id") not in images or ann.get("category_id") not in categories:
            raise CocoCropsError(
                f"{coco}: annotation {ann_id} refers to an unknown image or category"
            )
        try:
            box = coco_box(images[ann["image_id"]], ann["bbox"], where=f"annotation {ann_id}")
        except DetectorError as exc:
            skipped.append((ann_id, str(exc)))
            continue
        wanted[ann["image_id"]].append(_Wanted(ann_id, categories[ann["category_id"]], box))
    return wanted


def coco_crops(coco: Path, images: Path, *, padding: float = 0.1, out_dir: Path) -> CropSet:
    """Cut every bbox annotation of a COCO Camera Traps file into a labelled crop.

    Args:
        coco: the COCO Camera Traps JSON (images with file_name/width/height and
            optional seq_id; annotations with image_id, category_id, bbox in pixels).
        images: folder that the images' ``file_name`` paths are relative to.
        padding: context around each box, as a fraction of its size (``crop_box``).
        out_dir: created if needed; crops are written as ``<row:06d>.jpg`` (JPEG q90),
            overwriting files of the same name.

    Returns:
        CropSet grouped by image, images in the order of their first annotation,
        annotations in file order within an image (images missing or unreadable are listed in
        ``skipped`` and contribute no crop).

    Raises:
        CocoCropsError: unreadable JSON, missing lists, an annotation naming an unknown
            image or category, a bad file_name.
    """
    coco, images = Path(coco), Path(images)
    document = _load(coco)
    label_names, category_index = _categories(document, coco)
    image_records = _images(document, coco)
    skipped: list[tuple[str, str]] = []
    wanted = _wanted_by_image(document, image_records, category_index, coco, skipped)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Path, int, str, str, str]] = []
    for image_id, items in wanted.items():
        record = image_records[image_id]
        rows += _cut_image(
            images / record["file_name"],
            record,
            items,
            padding=padding,
            out_dir=out_dir,
            first_row=len(rows),
            skipped=skipped,
        )
    seq = [r[2] for r in rows]
    return CropSet(
        paths=[r[0] for r in rows],
        labels=np.array([r[1] for r in rows], dtype=np.int64),
        label_names=label_names,
        seq_ids=np.array(seq, dtype=str),
        image_files=np.array([r[3] for r in rows], dtype=str),
        annotation_ids=np.array([r[4] for r in rows], dtype=str),
        skipped=skipped,
    )


def _cut_image(
    source: Path,
    record: dict[str, Any],
    items: list[_Wanted],
    *,
    padding: float,
    out_dir: Path,
    first_row: int,
    skipped: list[tuple[str, str]],
) -> list[tuple[Path, int, str, str, str]]:
    """Decode one image once and write its crops; (path, label, seq, file, ann id) rows."""
    file_name = record["file_name"]
    try:
        image = load_rgb(source)
    except ValueError as exc:
        skipped.append((file_name, str(exc)))
        return []
    seq_id = str(record.get("seq_id") or record["id"])
    rows: list[tuple[Path, int, str, str, str]] = []
    for item in items:
        try:
            crop = crop_box(image, item.box, padding=padding)
        except DetectorError as exc:
            skipped.append((item.annotation_id, str(exc)))
            continue
        path = out_dir / f"{first_row + len(rows):06d}.jpg"
        crop.save(path, format="JPEG", quality=_JPEG_QUALITY)
        rows.append((path, item.label, seq_id, file_name, item.annotation_id))
    return rows
