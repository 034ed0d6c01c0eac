"""Reads behind the ecologists' exports, in constant memory.

Every export reads the project in chunks of ``EXPORT_CHUNK`` rows by primary key (or by
capture event, then key), with a fixed number of queries per chunk, so memory and the number
of queries grow with the number of chunks, never with the project held at once.

Every export serialises the labels ``activelearn.final_labels`` decides (humans always win;
then auto-accepted, then unconfirmed machine labels; attributes follow the same rule).

Counts: an image's count of a species is the number of its crops whose final label is that
species. An event's count of a species is the maximum of that count over the event's images
(animals are seen again in consecutive frames, so summing would count them twice).
An admin's corrected count of a species in an event (``activelearn.models.CountCorrection``)
replaces the derived one in the event exports, which name the species so corrected
(``counts_corrected``).

The crop CSV has ``attributes_human`` (the consensus's, ``;``-joined names, whatever its
status), ``attributes_machine`` (``name:probability`` for p > 0.5, ``;``-joined) and the final
``attributes``. The image and event CSVs have ``attributes`` aligned with ``species``: per
species, ``+``-joined, the attributes any of its crops (of the image, or of the event) has, e.g.
``species`` ``agouti;red fox`` and ``attributes`` ``standing+eating;moving``; the event CSV adds
``event_machine_attributes`` (the event's mean probabilities, p > 0.5). Names are in the
project's attribute order; an empty cell means none (or none recorded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from django.contrib.auth.models import User
from django.db.models import Count, Max, Model, Q, QuerySet

from activelearn.final_labels import (
    AUTO,
    HUMAN,
    MACHINE,
    AutoAccept,
    FinalLabel,
    final_attributes,
    final_label,
    human_attributes,
    machine_attributes,
)
from activelearn.models import (
    ClassifierVersion,
    Consensus,
    EventPrediction,
    LabelKind,
    Prediction,
    Round,
    RoundCrop,
)
from activelearn.selectors import classifier_latest
from activelearn.selectors_empties import count_corrections
from annotator.exports_external import EXTERNAL_HEADER, csv_external
from detector.models import Crop
from projects.models import Attribute, Image, Project
from projects.sequences import capture_event

EXPORT_CHUNK = 2000

M = TypeVar("M", bound=Model)

EXPORT_HEADER = [
    "crop_id",
    "image_file",
    "seq_id",
    "frame_num",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "detection_confidence",
    "crop_active",
    "image_count",
    "event_count",
    "human_label",
    "consensus_status",
    "votes",
    "agreement",
    "labelled_by",
    "labelled_at",
    "machine_label",
    "machine_confidence",
    "auto_accepted",
    "final_label",
    "label_source",
    "event_id",
    "event_machine_label",
    "event_machine_confidence",
    "classifier_version",
    "embedding_version",
    "round",
    "strategy",
    "attributes_human",
    "attributes_machine",
    "attributes",
    # Who drew the box (a person's username) or dropped it; empty for a detector's live box.
    "box_drawn_by",
    "box_dropped_by",
    *EXTERNAL_HEADER,
    "deployment_id",
]

# The columns of ``Tally.columns``, shared by the image and the event CSV.
TALLY_HEADER = [
    "species",
    "counts",
    "label_sources",
    "attributes",
    "n_crops",
    "n_human_labelled",
    "n_auto_accepted",
    "n_machine_only",
    "n_unlabelled",
    "n_unknown",
    "n_not_animal",
]

IMAGE_HEADER = [
    "image_id",
    "image_file",
    "seq_id",
    "event_id",
    "frame_num",
    "camera",
    "deployment_id",
    "taken_at",
    # Where taken_at came from (exif, exif_offset, coco, camtrap_dp); "none": no capture time.
    "time_source",
    "width",
    "height",
    "is_empty",
    "image_count",
    *TALLY_HEADER,
]

EVENT_HEADER = [
    "event_id",
    "seq_id",
    "camera",
    "n_images",
    "start",
    "end",
    *TALLY_HEADER,
    "event_machine_label",
    "event_machine_confidence",
    "event_machine_attributes",
    "classifier_version",
    # The species whose count an admin corrected (";"-separated, as ``species``).
    "counts_corrected",
]


def attribute_names(*, project: Project) -> dict[int, str]:
    """{attribute id: name} in the project's order: one query per export, never per chunk."""
    return dict(Attribute.objects.filter(project=project).values_list("id", "name"))


def _machine_text(attributes: dict[str, float] | None, names: dict[int, str]) -> str:
    return ";".join(f"{n}:{p:.2f}" for n, p in machine_attributes(attributes, names))


def crop_event(image: Image) -> str:
    """A crop's capture event (``capture_event`` of its image)."""
    return capture_event(seq_id=image.seq_id, image_id=image.pk)


def consensus_of(crop: Crop) -> Consensus | None:
    """The crop's Consensus row, or None when no one voted (reverse one-to-one)."""
    return getattr(crop, "consensus", None)


def classifier_label(classifier: ClassifierVersion) -> str:
    """How exports name a classifier: its version and the embedding it reads."""
    embedding = classifier.embedding_version.number
    return f"Trapwise classifier v{classifier.number} (embedding v{embedding})"


# --- crop level -------------------------------------------------------------------------------


def export_crop_rows(*, project: Project) -> Iterator[list[object]]:
    """One row per crop (EXPORT_HEADER order), read in chunks so memory stays constant.

    Crops are exported when active, or inactive but with a human vote: labels are never
    dropped from an export. Six queries per chunk of crops.
    """
    classifier = classifier_latest(project=project)
    threshold = AutoAccept.of(classifier)
    names = attribute_names(project=project)
    crops = (
        Crop.objects.filter(project=project)
        .filter(Q(active=True) | Q(consensus__isnull=False))
        .select_related(
            "image__deployment",
            "detection",
            "detection__drawn_by",
            "detection__dropped_by",
            "consensus",
            "consensus__species",
            "consensus__label__user",
        )
        .order_by("id")
    )
    for chunk in keyset_chunks(crops):
        ids = [c.pk for c in chunk]
        predictions = _predictions(classifier, ids)
        events = _event_predictions(classifier, {crop_event(c.image) for c in chunk})
        counts = _event_counts(project, {c.image.seq_id for c in chunk if c.image.seq_id})
        external = csv_external(chunk)
        rounds = {
            item.crop_id: item.round
            for item in RoundCrop.objects.filter(crop_id__in=ids)
            .select_related("round")
            .order_by("round__number")
        }
        for crop in chunk:
            consensus = consensus_of(crop)
            prediction = predictions.get(crop.pk)
            final = final_label(consensus=consensus, prediction=prediction, threshold=threshold)
            row = _crop_row(
                crop,
                consensus,
                prediction,
                final,
                events.get(crop_event(crop.image)),
                counts.get(crop.image.seq_id, "") if crop.image.seq_id else "",
                rounds.get(crop.pk),
                classifier,
            )
            yield [
                *row,
                ";".join(human_attributes(consensus, names)),
                _machine_text(prediction.attributes if prediction else None, names),
                ";".join(
                    final_attributes(
                        final=final, consensus=consensus, prediction=prediction, names=names
                    )
                ),
                _username(crop.detection.drawn_by),
                _username(crop.detection.dropped_by),
                *external[crop.pk],
                getattr(crop.image.deployment, "deployment_id", ""),
            ]


def _username(user: User | None) -> str:
    return user.get_username() if user is not None else ""


def _crop_row(
    crop: Crop,
    consensus: Consensus | None,
    prediction: Prediction | None,
    final: FinalLabel,
    event: EventPrediction | None,
    event_count: object,
    round_: Round | None,
    classifier: ClassifierVersion | None,
) -> list[object]:
    det = crop.detection
    human = ""
    if consensus is not None:
        human = consensus.species.name if consensus.species else consensus.kind
    return [
        crop.pk,
        crop.image.file_name,
        crop.image.seq_id,
        crop.image.frame_num,
        round(det.x, 5),
        round(det.y, 5),
        round(det.w, 5),
        round(det.h, 5),
        round(det.confidence, 4),
        int(crop.active),
        crop.image.count,
        event_count,
        human,
        consensus.status if consensus else "",
        consensus.votes if consensus else "",
        round(consensus.agreement, 4) if consensus else "",
        consensus.label.user.get_username() if consensus else "",
        consensus.label.created_at.isoformat() if consensus else "",
        prediction.species.name if prediction else "",
        round(prediction.confidence, 4) if prediction else "",
        int(final.source == AUTO),
        final.species or final.kind,
        final.source,
        crop_event(crop.image),
        event.species.name if event else "",
        round(event.confidence, 4) if event else "",
        f"classifier v{classifier.number}" if prediction and classifier else "",
        f"embedding v{classifier.embedding_version.number}" if prediction and classifier else "",
        round_.number if round_ else "",
        round_.strategy if round_ else "",
    ]


# --- images and their crops -------------------------------------------------------------------


@dataclass(frozen=True)
class CropRecord:
    """A crop of an image with its human consensus, latest prediction and final label."""

    crop: Crop
    consensus: Consensus | None
    prediction: Prediction | None
    final: FinalLabel
    # ``final_attributes``: names of the attributes that go with the final label.
    attributes: tuple[str, ...] = ()


@dataclass
class Tally:
    """Crops counted by final label: per species (in first-seen order) and per source."""

    counts: dict[str, int] = field(default_factory=dict)
    sources: dict[str, set[str]] = field(default_factory=dict)
    # Per species: the attributes any of its crops has (union).
    attributes: dict[str, set[str]] = field(default_factory=dict)
    # The project's attribute names in order, to write each species' set in that order.
    attribute_order: tuple[str, ...] = ()
    n_crops: int = 0
    n_human: int = 0
    n_auto: int = 0
    n_machine: int = 0
    n_unlabelled: int = 0
    n_unknown: int = 0
    n_not_animal: int = 0

    def add(self, final: FinalLabel, attributes: tuple[str, ...] = ()) -> None:
        self.n_crops += 1
        if final.source == HUMAN:
            self.n_human += 1
        elif final.source == AUTO:
            self.n_auto += 1
        elif final.source == MACHINE:
            self.n_machine += 1
        else:
            self.n_unlabelled += 1
        if final.kind == LabelKind.SPECIES:
            self.counts[final.species] = self.counts.get(final.species, 0) + 1
            self.sources.setdefault(final.species, set()).add(final.source)
            self.attributes.setdefault(final.species, set()).update(attributes)
        elif final.kind == LabelKind.UNKNOWN:
            self.n_unknown += 1
        elif final.kind == LabelKind.NOT_ANIMAL:
            self.n_not_animal += 1

    def merge_max(self, other: Tally) -> None:
        """Fold an image's tally into an event's: species counts by maximum, crops by sum."""
        for name, count in other.counts.items():
            self.counts[name] = max(self.counts.get(name, 0), count)
            self.sources.setdefault(name, set()).update(other.sources[name])
            self.attributes.setdefault(name, set()).update(other.attributes.get(name, ()))
        self.attribute_order = self.attribute_order or other.attribute_order
        self.n_crops += other.n_crops
        self.n_human += other.n_human
        self.n_auto += other.n_auto
        self.n_machine += other.n_machine
        self.n_unlabelled += other.n_unlabelled
        self.n_unknown += other.n_unknown
        self.n_not_animal += other.n_not_animal

    def columns(self) -> list[object]:
        """species, counts, label_sources, n_crops, ... n_not_animal (IMAGE_HEADER order)."""
        names = list(self.counts)
        return [
            ";".join(names),
            ";".join(str(self.counts[n]) for n in names),
            ";".join(_sources_text(self.sources[n]) for n in names),
            ";".join("+".join(self.species_attributes(n)) for n in names),
            self.n_crops,
            self.n_human,
            self.n_auto,
            self.n_auto + self.n_machine,
            self.n_unlabelled,
            self.n_unknown,
            self.n_not_animal,
        ]

    def species_attributes(self, species: str) -> list[str]:
        """The attributes of ``species``' crops (any of them), in the project's order."""
        present = self.attributes.get(species, set())
        return [a for a in self.attribute_order if a in present]


def _sources_text(sources: set[str]) -> str:
    order = (HUMAN, AUTO, MACHINE)
    return "+".join(s for s in order if s in sources)


@dataclass(frozen=True)
class ImageRecord:
    """An image with its counted crops (see the module docstring) and their tally."""

    image: Image
    crops: list[CropRecord]
    tally: Tally

    @property
    def event(self) -> str:
        return crop_event(self.image)


def image_records(*, project: Project, by_event: bool = False) -> Iterator[list[ImageRecord]]:
    """The project's images with their counted crops, a chunk at a time.

    Ordered by id, or with ``by_event`` by (sequence id, id) so that each capture event's
    images come together (images without a sequence id, each its own event, come first).
    Two or three queries per chunk (images, crops, predictions).
    """
    classifier = classifier_latest(project=project)
    threshold = AutoAccept.of(classifier)
    names = attribute_names(project=project)
    order = tuple(names.values())
    images = Image.objects.filter(project=project).select_related("deployment")
    chunks = _event_ordered_chunks(images) if by_event else keyset_chunks(images.order_by("id"))
    for chunk in chunks:
        crops = list(
            Crop.objects.filter(image_id__in=[i.pk for i in chunk])
            .filter(Q(active=True) | Q(consensus__status=Consensus.Status.DONE))
            # A box a person dropped or redrew shows no (other) animal: its labels stay in the
            # crop table, but it is no longer counted.
            .filter(detection__dropped_at__isnull=True)
            .select_related(
                "detection",
                "detection__drawn_by",
                "consensus",
                "consensus__species",
                "consensus__label__user",
            )
            .order_by("id")
        )
        predictions = _predictions(classifier, [c.pk for c in crops])
        by_image: dict[int, list[CropRecord]] = defaultdict(list)
        for crop in crops:
            consensus = consensus_of(crop)
            prediction = predictions.get(crop.pk)
            final = final_label(consensus=consensus, prediction=prediction, threshold=threshold)
            attributes = final_attributes(
                final=final, consensus=consensus, prediction=prediction, names=names
            )
            by_image[crop.image_id].append(
                CropRecord(crop, consensus, prediction, final, attributes)
            )
        records = []
        for image in chunk:
            tally = Tally(attribute_order=order)
            for record in by_image.get(image.pk, []):
                tally.add(record.final, record.attributes)
            records.append(ImageRecord(image, by_image.get(image.pk, []), tally))
        yield records


def export_image_rows(*, project: Project) -> Iterator[list[object]]:
    """One row per image (IMAGE_HEADER order), empty images included."""
    for chunk in image_records(project=project):
        for record in chunk:
            image = record.image
            yield [
                image.pk,
                image.file_name,
                image.seq_id,
                record.event,
                image.frame_num,
                image.camera,
                getattr(image.deployment, "deployment_id", ""),
                _iso(image.taken_at),
                "none" if image.taken_at is None else (image.time_source or "unknown"),
                image.width,
                image.height,
                "" if image.is_empty is None else int(image.is_empty),
                image.count,
                *record.tally.columns(),
            ]


# --- events -----------------------------------------------------------------------------------


@dataclass
class EventSummary:
    """A capture event: its images' tallies folded by ``Tally.merge_max``."""

    event: str
    seq_id: str
    cameras: list[str] = field(default_factory=list)
    deployment: str = ""  # its first image's deployment id ('' for none)
    n_images: int = 0
    start: datetime | None = None
    end: datetime | None = None
    tally: Tally = field(default_factory=Tally)
    # Images the detector has not seen yet, and images it found empty.
    n_undetected: int = 0
    n_empty: int = 0
    # The most unknown and unlabelled animals in one image (their event counts).
    max_unknown: int = 0
    max_unlabelled: int = 0
    prediction: EventPrediction | None = None
    # Per species: the crops behind its count, for who classified them and how sure.
    crops: dict[str, list[CropRecord]] = field(default_factory=dict)
    # The species whose count an admin corrected (``corrections_apply``).
    corrected: list[str] = field(default_factory=list)

    def corrections_apply(self, corrections: dict[str, int]) -> None:
        """Replace derived counts by an admin's ({species name: count}) and note which."""
        for name, count in corrections.items():
            self.tally.counts[name] = count
            # A species only the admin saw has no crop behind it, hence no label source.
            self.tally.sources.setdefault(name, set())
            self.corrected.append(name)

    def add(self, record: ImageRecord) -> None:
        image = record.image
        self.n_images += 1
        if image.camera not in self.cameras:
            self.cameras.append(image.camera)
        self.deployment = self.deployment or getattr(image.deployment, "deployment_id", "")
        if image.taken_at is not None:
            self.start = min(self.start or image.taken_at, image.taken_at)
            self.end = max(self.end or image.taken_at, image.taken_at)
        self.n_undetected += image.is_empty is None
        self.n_empty += image.is_empty is True
        self.tally.merge_max(record.tally)
        self.max_unknown = max(self.max_unknown, record.tally.n_unknown)
        self.max_unlabelled = max(self.max_unlabelled, record.tally.n_unlabelled)
        for crop in record.crops:
            if crop.final.kind == LabelKind.SPECIES:
                self.crops.setdefault(crop.final.species, []).append(crop)


def event_summaries(*, project: Project) -> Iterator[tuple[EventSummary, ClassifierVersion | None]]:
    """Each capture event of the project with the latest classifier, in (seq_id, id) order.

    An event that straddles two chunks is carried over, so memory holds one chunk plus one
    event. Three or four queries per chunk (images, crops, predictions, event predictions).
    """
    classifier = classifier_latest(project=project)
    corrections = count_corrections(project=project)
    current: EventSummary | None = None
    for chunk in image_records(project=project, by_event=True):
        predictions = _event_predictions(classifier, {r.event for r in chunk})
        for record in chunk:
            if current is None or record.event != current.event:
                if current is not None:
                    current.corrections_apply(corrections.get(current.event, {}))
                    yield current, classifier
                current = EventSummary(
                    event=record.event,
                    seq_id=record.image.seq_id,
                    prediction=predictions.get(record.event),
                )
            current.add(record)
    if current is not None:
        current.corrections_apply(corrections.get(current.event, {}))
        yield current, classifier


def export_event_rows(*, project: Project) -> Iterator[list[object]]:
    """One row per capture event (EVENT_HEADER order)."""
    names = attribute_names(project=project)
    for summary, classifier in event_summaries(project=project):
        prediction = summary.prediction
        yield [
            summary.event,
            summary.seq_id,
            ";".join(summary.cameras),
            summary.n_images,
            _iso(summary.start),
            _iso(summary.end),
            *summary.tally.columns(),
            prediction.species.name if prediction else "",
            round(prediction.confidence, 4) if prediction else "",
            _machine_text(prediction.attributes if prediction else None, names),
            f"classifier v{classifier.number}" if prediction and classifier else "",
            ";".join(summary.corrected),
        ]


def keyset_chunks(queryset: QuerySet[M]) -> Iterator[list[M]]:
    """Rows of an id-ordered queryset, EXPORT_CHUNK at a time (``id > last`` pagination)."""
    last_id = 0
    while True:
        chunk = list(queryset.filter(id__gt=last_id)[:EXPORT_CHUNK])
        if not chunk:
            return
        last_id = chunk[-1].pk
        yield chunk


def _event_ordered_chunks(images: QuerySet[Image]) -> Iterator[list[Image]]:
    """Images ordered by (seq_id, id), EXPORT_CHUNK at a time (keyset on both columns)."""
    ordered = images.order_by("seq_id", "id")
    last: tuple[str, int] | None = None
    while True:
        page = ordered
        if last is not None:
            # The redundant range lets the database seek the (project, seq_id) index instead
            # of walking it from the start for every chunk (quadratic at a million crops).
            page = ordered.filter(seq_id__gte=last[0]).filter(
                Q(seq_id__gt=last[0]) | Q(seq_id=last[0], id__gt=last[1])
            )
        chunk = list(page[:EXPORT_CHUNK])
        if not chunk:
            return
        last = (chunk[-1].seq_id, chunk[-1].pk)
        yield chunk


def _predictions(
    classifier: ClassifierVersion | None, crop_ids: list[int]
) -> dict[int, Prediction]:
    if classifier is None or not crop_ids:
        return {}
    rows = Prediction.objects.filter(classifier=classifier, crop_id__in=crop_ids)
    return {p.crop_id: p for p in rows.select_related("species")}


def _event_predictions(
    classifier: ClassifierVersion | None, events: set[str]
) -> dict[str, EventPrediction]:
    if classifier is None or not events:
        return {}
    rows = EventPrediction.objects.filter(classifier=classifier, event__in=events)
    return {e.event: e for e in rows.select_related("species")}


def _event_counts(project: Project, seq_ids: set[str]) -> dict[str, int]:
    """Count per sequence: the maximum image count over its frames (the paper's rule)."""
    if not seq_ids:
        return {}
    rows = (
        Image.objects.filter(project=project, seq_id__in=seq_ids, count__isnull=False)
        .values("seq_id")
        .annotate(n=Max("count"))
        .values_list("seq_id", "n")
    )
    return {seq_id: n or 0 for seq_id, n in rows}


def frames_per_sequence(project: Project, seq_ids: set[str]) -> dict[str, int]:
    if not seq_ids:
        return {}
    rows = (
        Image.objects.filter(project=project, seq_id__in=seq_ids)
        .values("seq_id")
        .annotate(n=Count("id"))
        .values_list("seq_id", "n")
    )
    return dict(rows)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""
