"""Exploring and verifying crops: the final label rule in SQL, filters, keyset pages.

``final_labels.final_label`` decides a crop's label in Python; ``final_label_annotate`` is the
same rule as queryset annotations, so the explore page and the API's crop list can filter and
sort a million crops in the database (tests/activelearn/test_selectors_explore.py checks the
two agree on many random small cases).

Pages are keyset-paginated on (sort key, crop id): a page's cursor is the last row's key and id,
and the next page starts strictly after it, so page 10,000 costs what page 1 does (OFFSET would
read and drop every row before it). A page that filters or sorts on the final label reads it
per source instead (``_explore_parts``: done consensus, prediction, none), each part from its
own index, and merges them: a filter on the CASE would read every crop of the project.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import (
    Case,
    Exists,
    F,
    FilteredRelation,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from activelearn.final_labels import AUTO, HUMAN, MACHINE, NO_LABEL, AutoAccept
from activelearn.models import (
    ClassifierVersion,
    Consensus,
    Label,
    LabelKind,
    LabelOrigin,
    RoundCrop,
)
from detector.models import Crop
from projects.models import IMAGE_NO_TIME, Image, Project, Species

# Label sources a filter can name: "none" is the empty source (no label at all).
SOURCES = {"human": HUMAN, "auto": AUTO, "machine": MACHINE, "none": NO_LABEL}
# Sort orders: by crop id (import order), by the final label's confidence (lowest or highest
# first), by when the image was taken.
SORTS = ("id", "confidence", "-confidence", "time")
# A missing confidence or capture time sorts as this (keyset comparisons need a value).
NO_CONFIDENCE = -1.0
NO_TIME = IMAGE_NO_TIME  # the index image_time_order is on this expression
PAGE_MAX = 500

_DONE = Q(consensus__status=Consensus.Status.DONE)


def final_label_annotate(
    crops: QuerySet[Crop], *, classifier: ClassifierVersion | None, crops_after: int | None = None
) -> QuerySet[Crop]:
    """``crops`` annotated with ``final_label``'s answer: ``final_source`` (human, auto,
    machine or ""), ``final_kind``, ``final_species_id`` and ``final_confidence``, plus the
    latest prediction's ``machine_species_id`` and ``machine_confidence`` (None without one).

    ``classifier`` is the project's latest READY classifier (``classifier_latest``); its
    predictions are joined once (a crop has at most one per classifier). ``crops_after``:
    the caller keeps only crops with ids above it; the join reads only predictions of those
    (PostgreSQL carries no range across a join: a merge join read the predictions from the
    first crop on, at every page).
    """
    if classifier is None:
        return crops.annotate(
            machine_species_id=Value(None, output_field=IntegerField()),
            machine_confidence=Value(None, output_field=FloatField()),
            final_source=Case(When(_DONE, then=Value(HUMAN)), default=Value(NO_LABEL)),
            final_kind=Case(When(_DONE, then=F("consensus__kind")), default=Value("")),
            final_species_id=Case(
                When(_DONE, then=F("consensus__species_id")),
                default=None,
                output_field=IntegerField(),
            ),
            final_confidence=Case(
                When(_DONE, then=F("consensus__agreement")),
                default=None,
                output_field=FloatField(),
            ),
        )
    latest = Q(predictions__classifier=classifier)
    if crops_after is not None:
        latest &= Q(predictions__crop_id__gt=crops_after)
    predicted = Q(latest__id__isnull=False)
    auto = predicted & AutoAccept.of(classifier).q(prefix="latest__")
    return crops.annotate(
        latest=FilteredRelation("predictions", condition=latest),
        machine_species_id=F("latest__species_id"),
        machine_confidence=F("latest__confidence"),
        final_source=Case(
            When(_DONE, then=Value(HUMAN)),
            When(auto, then=Value(AUTO)),
            When(predicted, then=Value(MACHINE)),
            default=Value(NO_LABEL),
        ),
        final_kind=Case(
            When(_DONE, then=F("consensus__kind")),
            When(predicted, then=Value(LabelKind.SPECIES.value)),
            default=Value(""),
        ),
        final_species_id=Case(
            When(_DONE, then=F("consensus__species_id")),
            When(predicted, then=F("latest__species_id")),
            default=None,
            output_field=IntegerField(),
        ),
        final_confidence=Case(
            When(_DONE, then=F("consensus__agreement")),
            When(predicted, then=F("latest__confidence")),
            default=None,
            output_field=FloatField(),
        ),
    )


def final_source_q(sources: list[str]) -> Q:
    """Crops (annotated by ``final_label_annotate``) whose final label's source is one of
    ``sources`` (keys of ``SOURCES``)."""
    return Q(final_source__in=[SOURCES[s] for s in sources])


def final_species_q(species_id: int) -> Q:
    """Crops (annotated) whose final label is the species ``species_id``."""
    return Q(final_kind=LabelKind.SPECIES, final_species_id=species_id)


@dataclass(frozen=True)
class ExploreFilters:
    """What the explore page and the API's crop list filter on; every field optional.

    ``confidence_min``/``max`` bound the final label's confidence (the machine's, or the
    humans' agreement); ``event`` is a capture event (a sequence id, or ``image-<id>``);
    ``folder`` a prefix of the image's file name; ``deployment`` the id of the image's
    deployment; ``date_from``/``date_to`` the days (UTC) the
    images were taken, both included; ``empty`` whether the detector called the image empty;
    ``in_review`` crops whose votes wait for an admin's decision; ``no_time`` crops of images
    without a capture time (no EXIF or COCO time).
    """

    species_id: int | None = None
    sources: list[str] = field(default_factory=list)
    confidence_min: float | None = None
    confidence_max: float | None = None
    round_number: int | None = None
    camera: str = ""
    folder: str = ""
    deployment: str = ""
    date_from: date | None = None
    date_to: date | None = None
    event: str = ""
    empty: bool | None = None
    in_review: bool | None = None
    no_time: bool = False


def images_untimed_count(*, project: Project) -> int:
    """How many of the project's images have no capture time."""
    return Image.objects.filter(project=project, taken_at__isnull=True).count()


def _crops_listed(*, project: Project) -> QuerySet[Crop]:
    """The project's crops the exports list: active ones, and inactive ones with a human vote."""
    return Crop.objects.filter(project=project).filter(Q(active=True) | Q(consensus__isnull=False))


def _final_label_filter(crops: QuerySet[Crop], *, filters: ExploreFilters) -> QuerySet[Crop]:
    """``crops`` (annotated) whose final label matches ``filters``' species, sources and
    confidence bounds: filters on the CASE, which no index serves (``_explore_parts``)."""
    f = filters
    if f.species_id is not None:
        crops = crops.filter(final_species_q(f.species_id))
    if f.sources:
        crops = crops.filter(final_source_q(f.sources))
    return _confidence_bound(crops, "final_confidence", f)


def _crop_filter(
    crops: QuerySet[Crop], *, project: Project, filters: ExploreFilters
) -> QuerySet[Crop]:
    """``crops`` matching ``filters``' conditions other than the final label's."""
    f = filters
    if f.round_number is not None:
        picked = RoundCrop.objects.filter(
            crop=OuterRef("pk"), round__project=project, round__number=f.round_number
        )
        crops = crops.filter(Exists(picked))
    if f.camera:
        crops = crops.filter(image__camera=f.camera)
    if f.folder:
        crops = crops.filter(image__file_name__startswith=f.folder.rstrip("/") + "/")
    if f.deployment:
        crops = crops.filter(image__deployment__deployment_id=f.deployment)
    if f.date_from is not None:
        crops = crops.filter(image__taken_at__gte=datetime.combine(f.date_from, time(), UTC))
    if f.date_to is not None:
        after = datetime.combine(f.date_to + timedelta(days=1), time(), UTC)
        crops = crops.filter(image__taken_at__lt=after)
    if f.no_time:
        crops = crops.filter(image__taken_at__isnull=True)
    if f.event:
        crops = crops.filter(_event_q(f.event))
    if f.empty is not None:
        crops = crops.filter(image__is_empty=f.empty)
    if f.in_review is not None:
        review = Q(consensus__status=Consensus.Status.REVIEW)
        crops = crops.filter(review if f.in_review else ~review)
    return crops


def explore_queryset(
    *,
    project: Project,
    filters: ExploreFilters,
    classifier: ClassifierVersion | None,
    crops_after: int | None = None,
) -> QuerySet[Crop]:
    """The project's crops the exports list (active ones, and inactive ones with a human
    vote), annotated with their final label (``final_label_annotate``) and filtered; only
    those with ids above ``crops_after`` where given."""
    crops = _crops_listed(project=project)
    if crops_after is not None:
        crops = crops.filter(id__gt=crops_after)
    crops = final_label_annotate(crops, classifier=classifier, crops_after=crops_after)
    crops = _final_label_filter(crops, filters=filters)
    return _crop_filter(crops, project=project, filters=filters)


def _event_q(event: str) -> Q:
    """Crops of the capture event ``event`` (``projects.sequences.capture_event``'s rule)."""
    if event.startswith("image-") and event[6:].isascii() and event[6:].isdigit():
        return Q(image__seq_id="", image_id=int(event[6:])) | Q(image__seq_id=event)
    return Q(image__seq_id=event)


class CursorError(ValueError):
    """A page cursor that this sort order did not make."""


def _sort_key(sort: str) -> tuple[Any, bool]:
    """(the sort key's expression, whether it descends)."""
    if sort == "id":
        return F("id"), False
    if sort in ("confidence", "-confidence"):
        return Coalesce("final_confidence", Value(NO_CONFIDENCE)), sort.startswith("-")
    if sort == "time":
        return Coalesce("image__taken_at", Value(NO_TIME)), False
    raise CursorError(f"unknown sort {sort!r}; choose from {', '.join(SORTS)}")


def cursor_encode(*, sort: str, key: Any, crop_id: int) -> str:
    """The cursor after a row: its sort key and id, as text (``cursor_decode`` reads it)."""
    if sort == "id":
        return str(crop_id)
    if sort == "time":
        return f"{key.isoformat()}~{crop_id}"
    return f"{float(key)!r}~{crop_id}"


def cursor_decode(*, sort: str, cursor: str) -> tuple[Any, int]:
    """(sort key, crop id) of a cursor; CursorError for text ``cursor_encode`` cannot have
    made for ``sort``."""
    try:
        if sort == "id":
            crop_id = int(cursor) if cursor.isascii() and cursor.isdigit() else -1
            key: Any = crop_id
        else:
            text, _, id_text = cursor.rpartition("~")
            crop_id = int(id_text) if id_text.isascii() and id_text.isdigit() else -1
            if sort == "time":
                key = datetime.fromisoformat(text)
                if key.tzinfo is None:
                    raise ValueError("no time zone")
            else:
                key = float(text)
                if key != key or key in (float("inf"), float("-inf")):
                    raise ValueError("not finite")
    except ValueError as exc:
        raise CursorError(f"cursor {cursor[:40]!r} is not one this page gave") from exc
    if not 0 <= crop_id < 2**63:
        raise CursorError(f"cursor {cursor[:40]!r} is not one this page gave")
    return key, crop_id


@dataclass(frozen=True)
class ExplorePage:
    """One page of crops (annotated by ``final_label_annotate``) and the next page's cursor
    (None on the last page)."""

    crops: list[Crop]
    next_cursor: str | None


@dataclass(frozen=True)
class _Part:
    """The crops of one final-label source that a page may show: ``crops`` (annotated and
    filtered on that source's own columns, which an index can serve, instead of on the
    CASE), ``confidence`` its final confidence in those columns, ``tie`` its crop id (the
    prediction's column where the prediction index should give the order)."""

    crops: QuerySet[Crop]
    confidence: Any
    tie: Any


def _confidence_bound(
    crops: QuerySet[Crop], column: str, filters: ExploreFilters
) -> QuerySet[Crop]:
    """``crops`` whose ``column`` lies within ``filters``' confidence bounds."""
    if filters.confidence_min is not None:
        crops = crops.filter(Q(**{f"{column}__gte": filters.confidence_min}))
    if filters.confidence_max is not None:
        crops = crops.filter(Q(**{f"{column}__lte": filters.confidence_max}))
    return crops


def _explore_parts(
    *,
    project: Project,
    filters: ExploreFilters,
    classifier: ClassifierVersion | None,
    sort: str,
    crops_after: int | None,
) -> list[_Part] | None:
    """``explore_queryset``'s crops split by the source of their final label, where a page
    filters or sorts on the final label; None where one query serves (no such filter or sort).

    A CASE over the consensus and the prediction can be neither estimated nor read from an
    index, so filtering or sorting on it reads every crop of the project. ``final_label``'s
    rule splits the crops in three disjoint parts, each with the final label in a column of
    its own: a done consensus (the humans' label), else a prediction of ``classifier`` (auto
    or machine), else none. ``explore_page`` pages each part on its indexes and merges them.
    ``crops_after``: only crops with ids above it (``explore_queryset``).
    """
    f = filters
    label_filtered = any(v is not None for v in (f.species_id, f.confidence_min, f.confidence_max))
    if not (label_filtered or f.sources or sort in ("confidence", "-confidence")):
        return None
    wanted = set(f.sources) or set(SOURCES)
    crops = Crop.objects.filter(project=project)
    done = Consensus.objects.filter(crop=OuterRef("pk"), status=Consensus.Status.DONE)
    if crops_after is not None:
        # The bound on each side of a join, as in final_label_annotate.
        crops = crops.filter(id__gt=crops_after)
        done = done.filter(crop_id__gt=crops_after)
    crops = final_label_annotate(crops, classifier=classifier, crops_after=crops_after)
    crops = _crop_filter(crops, project=project, filters=f)
    listed = Q(active=True) | Q(consensus__isnull=False)
    # NOT EXISTS rather than a condition on the joined consensus row: the database estimates
    # an anti-join, but not that the outer join's missing rows make "status IS NULL" common
    # (it took "not done" for almost nothing and chose plans that read every crop).
    not_done = ~Exists(done)
    parts = []
    if "human" in wanted:
        # Listed: it has a consensus. The consensus is of the crop's project
        # (activelearn.services.labels); said here, the index (project, status, agreement,
        # crop) gives the confidence order.
        human = crops.filter(_DONE, consensus__project=project)
        if f.species_id is not None:
            human = human.filter(
                consensus__kind=LabelKind.SPECIES, consensus__species_id=f.species_id
            )
        human = _confidence_bound(human, "consensus__agreement", f)
        parts.append(_Part(human, F("consensus__agreement"), F("id")))
    if classifier is not None and wanted & {"auto", "machine"}:
        # Conditions on the prediction name final_label_annotate's annotations: a filter()
        # on "latest__..." would join the predictions once more (a multi-valued relation).
        machine = crops.filter(listed, not_done, Q(machine_confidence__isnull=False))
        if f.species_id is not None:
            machine = machine.filter(Q(machine_species_id=f.species_id))
        machine = _confidence_bound(machine, "machine_confidence", f)
        if not {"auto", "machine"} <= wanted:
            # "machine_": the annotations machine_species_id and machine_confidence.
            auto = AutoAccept.of(classifier).q(prefix="machine_")
            machine = machine.filter(auto if "auto" in wanted else ~auto)
        parts.append(_Part(machine, F("machine_confidence"), F("latest__crop_id")))
    if "none" in wanted and not label_filtered:
        unlabelled = crops.filter(listed, not_done)
        if classifier is not None:
            unlabelled = unlabelled.filter(Q(machine_confidence__isnull=True))
        parts.append(_Part(unlabelled, Value(NO_CONFIDENCE), F("id")))
    return parts


def _rows_after(
    crops: QuerySet[Crop],
    *,
    key: Any,
    tie: Any,
    sort: str,
    after: tuple[Any, int] | None,
    limit: int,
) -> list[Crop]:
    """Up to ``limit`` of ``crops`` after the cursor ``after`` (sort key, crop id) in
    (``key``, ``tie``) order (descending for "-confidence"), annotated ``sort_key``."""
    descending = sort.startswith("-")
    crops = crops.annotate(sort_key=key, tie=tie)
    if after is not None:
        value, crop_id = after
        if sort == "id":
            crops = crops.filter(tie__gt=crop_id)
        elif descending:
            # The first condition repeats the second's bound, as a range an index can seek to.
            crops = crops.filter(Q(sort_key__lte=value), Q(sort_key__lt=value) | Q(tie__lt=crop_id))
        else:
            crops = crops.filter(Q(sort_key__gte=value), Q(sort_key__gt=value) | Q(tie__gt=crop_id))
    if sort == "id" or isinstance(key, Value):  # a constant key: the crop id alone orders
        order = ["-tie" if descending else "tie"]
    else:
        order = ["-sort_key", "-tie"] if descending else ["sort_key", "tie"]
    return list(crops.order_by(*order)[:limit])


def _enough(found: list[list[Crop]], count: int) -> bool:
    """Whether ``found`` (rows in descending key order) holds ``count`` rows whose keys lie
    above NO_CONFIDENCE (no unlabelled crop can come before them)."""
    keys = heapq.nlargest(count, (c.sort_key for rows in found for c in rows))  # type: ignore[attr-defined]
    return len(keys) == count and keys[-1] > NO_CONFIDENCE


def explore_page(
    *,
    project: Project,
    filters: ExploreFilters,
    classifier: ClassifierVersion | None,
    sort: str = "id",
    cursor: str = "",
    limit: int = 60,
    related: tuple[str, ...] = (),
) -> ExplorePage:
    """Up to ``limit`` crops matching ``filters`` after ``cursor``, in ``sort`` order, with
    ties broken by crop id: ``explore_queryset``'s crops, whatever the page's depth. Walking
    ``next_cursor`` visits each crop once. ``related``: relations to load with them
    (``select_related``). One query; up to three (one per final-label source, merged) where
    the page filters or sorts on the final label (``_explore_parts``). CursorError for a bad
    sort or cursor."""
    expression, descending = _sort_key(sort)
    after = cursor_decode(sort=sort, cursor=cursor) if cursor else None
    crops_after = after[1] if after is not None and sort == "id" else None
    parts = _explore_parts(
        project=project, filters=filters, classifier=classifier, sort=sort, crops_after=crops_after
    )
    if parts is None:
        crops = explore_queryset(
            project=project, filters=filters, classifier=classifier, crops_after=crops_after
        )
        parts = [_Part(crops, expression, F("id"))]
    found: list[list[Crop]] = []
    for part in parts:
        if descending and isinstance(part.confidence, Value) and _enough(found, limit + 1):
            # Crops without a label sort last, and finding them reads every crop without a
            # done consensus: read them only when the labelled ones do not fill the page.
            continue
        crops = part.crops.select_related(*related) if related else part.crops
        if sort == "time":
            # A crop's image is in the crop's project (detector.services cuts the crops of the
            # project's images); said here, it lets the images' index on (project, time) give
            # the order, instead of one over every project's images.
            crops = crops.filter(image__project=project)
        if sort == "id":
            key = part.tie
        elif sort == "time":
            key = expression
        else:
            key = part.confidence
        rows = _rows_after(crops, key=key, tie=part.tie, sort=sort, after=after, limit=limit + 1)
        found.append(rows)
    # Each part is in (sort key, crop id) order; so is their merge.
    merged = heapq.merge(*found, key=lambda c: (c.sort_key, c.pk), reverse=descending)  # type: ignore[attr-defined]
    rows = list(itertools.islice(merged, limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    next_cursor = (
        cursor_encode(sort=sort, key=last.sort_key, crop_id=last.pk)  # type: ignore[attr-defined]
        if more and last is not None
        else None
    )
    return ExplorePage(crops=rows, next_cursor=next_cursor)


def explore_page_offset(
    *,
    project: Project,
    filters: ExploreFilters,
    classifier: ClassifierVersion | None,
    offset: int,
    limit: int = 60,
) -> list[Crop]:
    """The same crops as ``explore_page`` in id order, by OFFSET: the benchmark's baseline
    (the database reads and drops ``offset`` rows first)."""
    crops = explore_queryset(project=project, filters=filters, classifier=classifier)
    return list(crops.order_by("id")[offset : offset + limit])


@dataclass(frozen=True)
class VerifyDecision:
    """One bulk verification: its labels share ``decision``."""

    decision: uuid.UUID
    user: str
    created_at: datetime
    crops: int
    kind: str
    species: str
    undone: bool


def verify_decisions_recent(*, project: Project, limit: int = 5) -> list[VerifyDecision]:
    """The project's newest verification decisions (explore page), newest first; two
    queries."""
    rows = (
        Label.objects.filter(project=project, origin=LabelOrigin.VERIFIED)
        .exclude(decision__isnull=True)
        .order_by("-id")
        .values_list("decision", flat=True)
    )
    decisions = list(dict.fromkeys(rows[: limit * PAGE_MAX]))[:limit]
    labels = (
        Label.objects.filter(project=project, decision__in=decisions)
        .select_related("user", "species")
        .order_by("id")
    )
    grouped: dict[uuid.UUID, list[Label]] = {d: [] for d in decisions if d is not None}
    for label in labels:
        grouped[label.decision].append(label)  # type: ignore[index]
    out = []
    for decision, group in grouped.items():
        if not group:
            continue
        first = group[0]
        names = {label.species.name if label.species else "" for label in group}
        out.append(
            VerifyDecision(
                decision=decision,
                user=first.user.get_username(),
                created_at=first.created_at,
                crops=len(group),
                kind=first.kind,
                species=names.pop() if len(names) == 1 else "several species",
                undone=all(label.undone_at is not None for label in group),
            )
        )
    return out


@dataclass(frozen=True)
class ImageBox:
    """One detection box of an image, in image pixels, with its crop's final label (a box
    below the project's thresholds has no active crop: ``crop_id`` None or ``active`` False).
    """

    detection_id: int
    crop_id: int | None
    active: bool
    x: float
    y: float
    w: float
    h: float
    confidence: float
    final_kind: str
    final_species: str
    final_source: str


def image_boxes(*, crop: Crop, classifier: ClassifierVersion | None) -> list[ImageBox]:
    """Every detection box of ``crop``'s image (image loaded), best first; three queries."""
    image = crop.image
    crops = {
        c["detection_id"]: c
        for c in final_label_annotate(
            Crop.objects.filter(image=image), classifier=classifier
        ).values("id", "detection_id", "active", "final_kind", "final_species_id", "final_source")  # type: ignore[misc]
    }
    names = {s.pk: s.name for s in Species.objects.filter(project_id=crop.project_id)}
    boxes = []
    for det in image.detections.order_by("-confidence", "id"):
        row = crops.get(det.pk)
        boxes.append(
            ImageBox(
                detection_id=det.pk,
                crop_id=row["id"] if row else None,
                active=bool(row and row["active"]),
                x=det.x * image.width,
                y=det.y * image.height,
                w=det.w * image.width,
                h=det.h * image.height,
                confidence=det.confidence,
                final_kind=row["final_kind"] if row else "",
                final_species=names.get(row["final_species_id"], "") if row else "",
                final_source=row["final_source"] if row else "",
            )
        )
    return boxes
