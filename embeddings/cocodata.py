"""Labelled crops from a COCO Camera Traps file: the data for embedding training/evaluation.

The file is read and checked by ``detector.cct.cct_read``. Every annotation with a ``bbox``
becomes one crop file (``detector.crops.crop_box``, the same cutting as the import
pipeline), labelled with its category and grouped by its image's ``seq_id``. Annotations
without a bbox (empty frames, image-level labels) are ignored.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.base import Box, DetectorError
from detector.cct import CctDocument, CctError, CctImage, cct_box, cct_read
from detector.crops import crop_box
from embeddings.inference import load_rgb

# Same encoding as the crops the import pipeline writes.
_JPEG_QUALITY = 90


# The COCO Camera Traps file cannot be read as labelled boxes: the reader's one error class,
# under the name that callers (al_benchmark, the embedding commands) catch.
CocoCropsError = CctError


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


def _wanted_by_image(
    document: CctDocument, labels: dict[str | int, int], *, skipped: list[tuple[str, str]]
) -> dict[int, list[_Wanted]]:
    """Annotations with a bbox, grouped by image position in annotation order.

    ``labels`` maps category id -> label index. A box that cannot be converted (bad box or
    image size) is added to ``skipped`` instead.
    """
    wanted: dict[int, list[_Wanted]] = defaultdict(list)
    for ann in document.annotations:
        if ann.bbox is None:
            continue
        ann_id = ann.id if ann.id is not None else f"annotations[{ann.index}]"
        if ann.category_id is None:
            raise CocoCropsError(
                f"{document.source}: annotation {ann_id} has a box but no category"
            )
        image = document.images[ann.image_index]
        try:
            box = cct_box(image, ann.bbox, where=f"annotation {ann_id}")
        except DetectorError as exc:
            skipped.append((ann_id, str(exc)))
            continue
        wanted[ann.image_index].append(_Wanted(ann_id, labels[ann.category_id], box))
    return wanted


def coco_crops(
    coco: Path, images: Path, *, padding: float = 0.1, shape: str = "box", out_dir: Path
) -> CropSet:
    """Cut every bbox annotation of a COCO Camera Traps file into a labelled crop.

    Args:
        coco: the COCO Camera Traps JSON (images with file_name/width/height and
            optional seq_id; annotations with image_id, category_id, bbox in pixels).
        images: folder that the images' ``file_name`` paths are relative to.
        padding: context around each box, as a fraction of its size (``crop_box``).
        shape: crop geometry, "box" or "square" (``detector.crops.crop_rect``).
        out_dir: created if needed; crops are written as ``<row:06d>.jpg`` (JPEG q90),
            overwriting files of the same name.

    Returns:
        CropSet grouped by image, images in the order of their first annotation,
        annotations in file order within an image (images missing or unreadable are listed in
        ``skipped`` and contribute no crop).

    Raises:
        CocoCropsError (``detector.cct.CctError``): whatever ``cct_read`` refuses
            (unreadable JSON, missing lists, an annotation naming an unknown image or
            category, a bad file_name, ...), or a box annotation without a category.
    """
    coco, images = Path(coco), Path(images)
    document = cct_read(coco)
    categories = document.categories_by_id()
    label_names = [c.name for c in categories]
    labels: dict[str | int, int] = {c.id: i for i, c in enumerate(categories)}
    skipped: list[tuple[str, str]] = []
    wanted = _wanted_by_image(document, labels, skipped=skipped)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Path, int, str, str, str]] = []
    for image_index, items in wanted.items():
        image = document.images[image_index]
        rows += _cut_image(
            images / image.file_name,
            image,
            items,
            padding=padding,
            shape=shape,
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
    image_entry: CctImage,
    items: list[_Wanted],
    *,
    padding: float,
    shape: str,
    out_dir: Path,
    first_row: int,
    skipped: list[tuple[str, str]],
) -> list[tuple[Path, int, str, str, str]]:
    """Decode one image once and write its crops; (path, label, seq, file, ann id) rows."""
    file_name = image_entry.file_name
    try:
        image = load_rgb(source)
    except ValueError as exc:
        skipped.append((file_name, str(exc)))
        return []
    seq_id = image_entry.sequence
    rows: list[tuple[Path, int, str, str, str]] = []
    for item in items:
        try:
            crop = crop_box(image, item.box, padding=padding, shape=shape)
        except DetectorError as exc:
            skipped.append((item.annotation_id, str(exc)))
            continue
        path = out_dir / f"{first_row + len(rows):06d}.jpg"
        crop.save(path, format="JPEG", quality=_JPEG_QUALITY)
        rows.append((path, item.label, seq_id, file_name, item.annotation_id))
    return rows
