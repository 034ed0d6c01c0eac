"""The COCO Camera Traps export, written piece by piece in constant memory.

Reads like the other exports (``annotator.exports``): chunks by primary key, a fixed number
of queries per chunk, labels as ``activelearn.final_labels`` decides them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from activelearn.final_labels import AUTO, HUMAN, MACHINE
from activelearn.models import LabelKind
from activelearn.selectors_empties import count_corrections
from annotator.exports import (
    CropRecord,
    ImageRecord,
    attribute_names,
    frames_per_sequence,
    image_records,
    keyset_chunks,
)
from annotator.exports_external import coco_external
from projects.models import Image, Project
from projects.sequences import capture_event
from projects.taxonomy import coco_category


def export_coco_json(
    *, project: Project, progress: Callable[[int, int], None] | None = None
) -> Iterator[str]:
    """The project as COCO Camera Traps JSON, written piece by piece.

    ``progress(done, total)``, when given, is called after each chunk of images: the work is
    twice the project's images (the images list, then their annotations).

    ``images`` carry id (``coco_image_id``: the primary key as a string; annotations name
    it in ``image_id``), file_name, width, height, seq_id, seq_num_frames, frame_num, location
    (the deployment, else the camera) and datetime (the camera's clock). ``annotations`` are one per
    counted crop that is an animal by its final label, with its box in absolute pixels
    ``[x, y, w, h]``, ``classification_method`` (human or machine) and, for machine labels,
    ``conf`` and ``auto_accepted``, and for species with attributes recorded (by people) or
    predicted (by the attribute head) ``attributes``: {name: yes/no for every attribute of
    the project}, by ``final_attributes``, with ``attributes_conf`` {name: probability} for
    machine labels; an image without any such crop gets one annotation of
    category 0 ("empty") without a box. Categories, written last because ids are only known
    once all crops are seen, are 0 "empty" (when used), the species from 1 (``coco_category``),
    and "unknown" (crops that are animals of no known species) when used. The images of an
    event whose counts an admin corrected carry ``event_counts_corrected`` {species: count};
    annotations carry ``bbox_drawn_by`` (who drew the box) and ``external_prediction``, if any.
    """
    taxa = list(project.species.all())
    names = attribute_names(project=project)
    category_ids = {s.name: i + 1 for i, s in enumerate(taxa)}
    unknown_id = len(taxa) + 1
    used: set[int] = set()
    info = {
        "version": "1.0",
        "description": f"Trapwise export of project {project.name!r}",
        "date_created": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "contributor": "Trapwise",
    }
    total = 2 * project.images.count() if progress is not None else 0
    done = 0
    yield '{"info": ' + json.dumps(info) + ', "images": ['
    first = True
    corrections = count_corrections(project=project)
    for chunk in keyset_chunks(project.images.select_related("deployment").order_by("id")):
        frames = frames_per_sequence(project, {i.seq_id for i in chunk if i.seq_id})
        for image in chunk:
            entry = _coco_image(image, frames)
            corrected = corrections.get(str(entry["seq_id"]))
            if corrected:
                # An admin's counts of the image's event, per species (COCO has no field).
                entry["event_counts_corrected"] = corrected
            yield ("" if first else ",\n") + json.dumps(entry)
            first = False
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    yield '],\n"annotations": ['
    first = True
    for records in image_records(project=project):
        external = coco_external([item.crop for record in records for item in record.crops])
        for record in records:
            annotations = _coco_annotations(record, category_ids, unknown_id, names)
            for category_id, annotation in annotations:
                annotation.update(external.get(str(annotation["id"]), {}))
                used.add(category_id)
                yield ("" if first else ",\n") + json.dumps(annotation)
                first = False
        done += len(records)
        if progress is not None:
            progress(done, total)
    categories = [{"id": 0, "name": "empty"}] if 0 in used else []
    categories += [coco_category(category_ids[s.name], s) for s in taxa]
    if unknown_id in used:
        categories.append({"id": unknown_id, "name": "unknown"})
    yield '],\n"categories": ' + json.dumps(categories) + "}\n"


def coco_image_id(pk: int) -> str:
    """An image's COCO id: its primary key as a string, stable across exports.

    Strings, as COCO Camera Traps files (LILA's, this one's sample) write them and as
    MegaDetector's integrity checker expects by default (it refuses integer ids).
    """
    return str(pk)


def _coco_image(image: Image, frames: dict[str, int]) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": coco_image_id(image.pk),
        "file_name": image.file_name,
        "width": image.width,
        "height": image.height,
        "seq_id": capture_event(seq_id=image.seq_id, image_id=image.pk),
        "seq_num_frames": frames.get(image.seq_id, 1),
        "location": getattr(image.deployment, "deployment_id", "") or image.camera,
    }
    if image.frame_num is not None:
        entry["frame_num"] = image.frame_num
    if image.taken_at is not None:
        entry["datetime"] = image.taken_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return entry


def _coco_annotations(
    record: ImageRecord, category_ids: dict[str, int], unknown_id: int, names: dict[int, str]
) -> Iterator[tuple[int, dict[str, object]]]:
    """(category id, annotation) of each animal crop of the image, or its "empty" annotation."""
    image = record.image
    animals = 0
    for item in record.crops:
        final = item.final
        if final.kind == LabelKind.NOT_ANIMAL:
            continue
        animals += 1
        det = item.crop.detection
        category_id = category_ids.get(final.species, unknown_id)
        annotation: dict[str, object] = {
            "id": f"crop-{item.crop.pk}",
            "image_id": coco_image_id(image.pk),
            "category_id": category_id,
            "bbox": [
                round(det.x * image.width, 2),
                round(det.y * image.height, 2),
                round(det.w * image.width, 2),
                round(det.h * image.height, 2),
            ],
        }
        if final.source == HUMAN:
            annotation["classification_method"] = "human"
        elif final.source in (AUTO, MACHINE):
            annotation["classification_method"] = "machine"
            annotation["conf"] = round(final.confidence or 0.0, 4)
            annotation["auto_accepted"] = final.source == AUTO
        if det.drawn_by_id is not None and det.drawn_by is not None:
            annotation["bbox_drawn_by"] = det.drawn_by.get_username()
        annotation.update(_coco_attributes(item, names))
        yield category_id, annotation
    if not animals and image.is_empty is not None:
        yield 0, {"id": f"image-{image.pk}", "image_id": coco_image_id(image.pk), "category_id": 0}


def _coco_attributes(item: CropRecord, names: dict[int, str]) -> dict[str, object]:
    """``attributes`` (and for machine labels ``attributes_conf``) of a species annotation;
    nothing when its source recorded no attributes."""
    final = item.final
    if final.kind != LabelKind.SPECIES or not names:
        return {}
    yes = {name: name in item.attributes for name in names.values()}
    if final.source == HUMAN:
        recorded = item.consensus is not None and item.consensus.attributes is not None
        return {"attributes": yes} if recorded else {}
    probs = item.prediction.attributes if item.prediction is not None else None
    if not probs:
        return {}
    conf = {n: round(float(probs[str(a)]), 4) for a, n in names.items() if str(a) in probs}
    return {"attributes": yes, "attributes_conf": conf}


# --- shared helpers ---------------------------------------------------------------------------
