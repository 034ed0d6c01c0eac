"""Deployments CSV parsing and the rule that assigns images to deployments. Django-free.

A deployments CSV has Camtrap DP 1.0's deployment columns (``deploymentID, locationName,
latitude, longitude, coordinateUncertainty, deploymentStart, deploymentEnd, cameraID``, and
optionally ``locationID``, ``setupBy``, ``deploymentComments``) plus two of Trapwise's:
``folder`` (the images' folder, relative to the import folder, that holds this camera's
images) and ``clockOffset`` (``±hh:mm``: how far the camera's clock ran ahead of true time).

Times: Trapwise keeps capture times as the camera's wall-clock reading labelled UTC (camera
clocks carry no zone; the Camtrap DP export writes them with the exporter's UTC offset).
Deployment start and end are kept the same way: their wall-clock reading in the offset the
CSV gives, labelled UTC, so they compare directly with the images' times.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, TypeVar

T = TypeVar("T")

REQUIRED_COLUMNS = ("deploymentID", "latitude", "longitude", "deploymentStart", "deploymentEnd")
OPTIONAL_COLUMNS = (
    "locationName",
    "locationID",
    "coordinateUncertainty",
    "cameraID",
    "folder",
    "clockOffset",
    "setupBy",
    "deploymentComments",
)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# Every deployment column of Camtrap DP 1.0, in its order.
CAMTRAP_DP_DEPLOYMENT_FIELDS = (
    "deploymentID",
    "locationID",
    "locationName",
    "latitude",
    "longitude",
    "coordinateUncertainty",
    "deploymentStart",
    "deploymentEnd",
    "setupBy",
    "cameraID",
    "cameraModel",
    "cameraDelay",
    "cameraHeight",
    "cameraDepth",
    "cameraTilt",
    "cameraHeading",
    "detectionDistance",
    "timestampIssues",
    "baitUse",
    "featureType",
    "habitat",
    "deploymentGroups",
    "deploymentTags",
    "deploymentComments",
)
# The database's limits (projects.models.Deployment).
ID_MAX = 200
LOCATION_NAME_MAX = 300
FOLDER_MAX = 1000
UNCERTAINTY_MAX = 2**31 - 1
# A camera clock more than two days off is a typo (a date, not an offset).
OFFSET_MAX_SECONDS = 48 * 3600
# Problems named in one error before "and N more".
PROBLEMS_SHOWN = 10
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class DeploymentCsvError(ValueError):
    """The deployments CSV (or one deployment) is invalid; the message names every problem."""


@dataclass(frozen=True)
class DeploymentFields:
    """One deployment's values, checked (``deployment_fields_check``)."""

    deployment_id: str
    latitude: float
    longitude: float
    start: datetime
    end: datetime
    location_name: str = ""
    location_id: str = ""
    coordinate_uncertainty: int | None = None
    camera_id: str = ""
    folder: str = ""
    clock_offset_seconds: int = 0
    setup_notes: str = ""


def _control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text if ch not in "\n\t")


def folder_normalise(folder: str) -> str:
    """``folder`` as image file names spell folders: POSIX, no leading ./ or /, no trailing /.

    Raises DeploymentCsvError for a folder that climbs out (``..``).
    """
    text = folder.strip().replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("/", ".")]
    if ".." in parts:
        raise DeploymentCsvError(f"folder {folder!r} may not contain '..'")
    return "/".join(parts)


def clock_offset_parse(text: str) -> int:
    """``±hh:mm`` (empty: 0) as seconds; DeploymentCsvError when malformed or over 48 h."""
    text = text.strip()
    if not text:
        return 0
    match = _OFFSET.match(text)
    if match is None:
        raise DeploymentCsvError(f"clockOffset {text!r} is not ±hh:mm (e.g. +01:30)")
    sign, hours, minutes = match.groups()
    if int(minutes) >= 60:
        raise DeploymentCsvError(f"clockOffset {text!r}: minutes must be below 60")
    seconds = int(hours) * 3600 + int(minutes) * 60
    if seconds > OFFSET_MAX_SECONDS:
        raise DeploymentCsvError(f"clockOffset {text!r} is more than 48 hours")
    return -seconds if sign == "-" else seconds


def clock_offset_format(seconds: int) -> str:
    """The inverse of ``clock_offset_parse`` (whole minutes)."""
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def time_parse(text: str, *, column: str, offset_required: bool = True) -> datetime:
    """An ISO 8601 time with a UTC offset, as its wall-clock reading labelled UTC (see the
    module docstring); DeploymentCsvError when it is not one or (``offset_required``) has no
    offset. Without the requirement, a time without offset is read as that wall clock."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DeploymentCsvError(
            f"{column} {text!r} is not an ISO 8601 time (e.g. 2021-05-01T06:30:00+02:00)"
        ) from None
    if value.tzinfo is None and offset_required:
        raise DeploymentCsvError(f"{column} {text!r} has no UTC offset (add e.g. Z or +02:00)")
    return value.replace(tzinfo=UTC)


def _number(text: str, *, column: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DeploymentCsvError(f"{column} {text!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise DeploymentCsvError(f"{column} {text!r} is outside {low:g}..{high:g}")
    return value


def deployment_fields_check(fields: DeploymentFields) -> DeploymentFields:
    """``fields`` with texts stripped, or DeploymentCsvError naming every problem.

    Checks: a non-empty id of at most 200 characters, texts without control characters and
    within the database's lengths, latitude -90..90, longitude -180..180, start before end,
    an uncertainty of at least 1 metre, a clock offset within 48 hours.
    """
    problems: list[str] = []
    deployment_id = fields.deployment_id.strip()
    if not deployment_id:
        problems.append("deploymentID is empty")
    for column, text, limit in (
        ("deploymentID", deployment_id, ID_MAX),
        ("locationName", fields.location_name.strip(), LOCATION_NAME_MAX),
        ("locationID", fields.location_id.strip(), ID_MAX),
        ("cameraID", fields.camera_id.strip(), ID_MAX),
        ("folder", fields.folder, FOLDER_MAX),
        ("setup notes", fields.setup_notes, 10_000),
    ):
        if len(text) > limit:
            problems.append(f"{column} is longer than {limit} characters")
        if _control(text):
            problems.append(f"{column} contains control characters")
    if not (math.isfinite(fields.latitude) and -90 <= fields.latitude <= 90):
        problems.append(f"latitude {fields.latitude} is outside -90..90")
    if not (math.isfinite(fields.longitude) and -180 <= fields.longitude <= 180):
        problems.append(f"longitude {fields.longitude} is outside -180..180")
    if fields.start >= fields.end:
        problems.append("deploymentStart must be before deploymentEnd")
    uncertainty = fields.coordinate_uncertainty
    if uncertainty is not None and not 1 <= uncertainty <= UNCERTAINTY_MAX:
        problems.append(f"coordinateUncertainty {uncertainty} must be a whole number of metres ≥ 1")
    if abs(fields.clock_offset_seconds) > OFFSET_MAX_SECONDS:
        problems.append("the clock offset is more than 48 hours")
    try:
        folder = folder_normalise(fields.folder)
    except DeploymentCsvError as exc:
        problems.append(str(exc))
        folder = fields.folder
    if problems:
        raise DeploymentCsvError("; ".join(problems))
    return replace(
        fields,
        deployment_id=deployment_id,
        location_name=fields.location_name.strip(),
        location_id=fields.location_id.strip(),
        camera_id=fields.camera_id.strip(),
        folder=folder,
        setup_notes=fields.setup_notes.strip(),
    )


def setup_notes_join(*, setup_by: str, comments: str) -> str:
    """Camtrap DP's ``setupBy`` and ``deploymentComments`` as one note."""
    setup_by, comments = setup_by.strip(), comments.strip()
    return "\n".join(p for p in (f"Set up by {setup_by}." if setup_by else "", comments) if p)


def _row_fields(row: dict[str, str]) -> DeploymentFields:
    problems: list[str] = []

    def guard(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return parse(*args, **kwargs)
        except DeploymentCsvError as exc:
            problems.append(str(exc))
            return None

    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    for column in REQUIRED_COLUMNS:
        if not get(column):
            problems.append(f"{column} is empty")
    latitude = longitude = start = end = None
    if get("latitude"):
        latitude = guard(_number, get("latitude"), column="latitude", low=-90, high=90)
    if get("longitude"):
        longitude = guard(_number, get("longitude"), column="longitude", low=-180, high=180)
    if get("deploymentStart"):
        start = guard(time_parse, get("deploymentStart"), column="deploymentStart")
    if get("deploymentEnd"):
        end = guard(time_parse, get("deploymentEnd"), column="deploymentEnd")
    uncertainty: int | None = None
    if get("coordinateUncertainty"):
        text = get("coordinateUncertainty")
        if text.isdigit():
            uncertainty = int(text)
        else:
            problems.append(f"coordinateUncertainty {text!r} is not a whole number of metres")
    offset = guard(clock_offset_parse, get("clockOffset")) or 0
    if problems or latitude is None or longitude is None or start is None or end is None:
        raise DeploymentCsvError("; ".join(problems))
    return deployment_fields_check(
        DeploymentFields(
            deployment_id=get("deploymentID"),
            latitude=latitude,
            longitude=longitude,
            start=start,
            end=end,
            location_name=get("locationName"),
            location_id=get("locationID"),
            coordinate_uncertainty=uncertainty,
            camera_id=get("cameraID"),
            folder=row.get("folder") or "",
            clock_offset_seconds=offset,
            setup_notes=setup_notes_join(
                setup_by=get("setupBy"), comments=row.get("deploymentComments") or ""
            ),
        )
    )


def deployments_csv_parse(text: str, *, ignored: Iterable[str] = ()) -> list[DeploymentFields]:
    """Every row of a deployments CSV, checked; DeploymentCsvError naming every problem
    (up to ``PROBLEMS_SHOWN``, with row numbers as a spreadsheet counts them).

    Columns outside ``KNOWN_COLUMNS`` are an error unless named in ``ignored`` (the
    Camtrap DP import passes the deployment columns Trapwise does not store). Deployment ids
    must be unique within the file.
    """
    text = text.removeprefix("\ufeff")  # spreadsheets save UTF-8 with a byte-order mark
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    if not header:
        raise DeploymentCsvError("the file is empty: it needs a header row")
    reader.fieldnames = header
    problems: list[str] = []
    unknown = [h for h in header if h not in KNOWN_COLUMNS and h not in set(ignored)]
    if unknown:
        problems.append(
            f"unknown column(s) {', '.join(map(repr, unknown))}; the known ones are "
            + ", ".join(KNOWN_COLUMNS)
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        problems.append("a column name appears twice")
    if problems:
        raise DeploymentCsvError("; ".join(problems))
    rows: list[DeploymentFields] = []
    seen: dict[str, int] = {}
    try:
        for number, row in enumerate(reader, start=2):
            if None in row:
                problems.append(f"row {number}: more values than columns")
                continue
            try:
                fields = _row_fields(row)
            except DeploymentCsvError as exc:
                problems.append(f"row {number}: {exc}")
                continue
            if fields.deployment_id in seen:
                problems.append(
                    f"row {number}: deploymentID {fields.deployment_id!r} is also on row "
                    f"{seen[fields.deployment_id]}"
                )
            seen.setdefault(fields.deployment_id, number)
            rows.append(fields)
    except csv.Error as exc:
        problems.append(f"not a readable CSV: {exc}")
    if problems:
        more = len(problems) - PROBLEMS_SHOWN
        raise DeploymentCsvError(
            "; ".join(problems[:PROBLEMS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        )
    if not rows:
        raise DeploymentCsvError("the file has a header but no deployments")
    return rows


# Assignment


@dataclass(frozen=True)
class DeploymentSpan:
    """What assignment needs of a deployment."""

    key: int
    folder: str
    start: datetime | None
    end: datetime | None
    clock_offset_seconds: int


@dataclass(frozen=True)
class ImageClock:
    """What assignment needs of an image: its file name and the camera's time."""

    key: int
    file_name: str
    camera_taken_at: datetime | None


def _covers(span: DeploymentSpan, camera_time: datetime) -> bool:
    true_time = camera_time - timedelta(seconds=span.clock_offset_seconds)
    return (span.start is None or span.start <= true_time) and (
        span.end is None or true_time <= span.end
    )


def deployments_assign(
    deployments: Sequence[DeploymentSpan], images: Iterable[ImageClock]
) -> dict[int, DeploymentSpan | None]:
    """Each image's deployment (None: none fits), by folder and time.

    A deployment fits an image in its folder (or a folder below it) whose camera time, less
    the deployment's clock offset, lies in start..end (inclusive). Of several that fit, the
    one with the most specific (longest) folder wins, then the latest start. An image without
    a time goes to the deployment of its most specific folder when that folder has only one.
    """
    by_folder: dict[str, list[DeploymentSpan]] = {}
    for span in deployments:
        by_folder.setdefault(span.folder, []).append(span)
    result: dict[int, DeploymentSpan | None] = {}
    for image in images:
        # The deployments of the image's folder and of every folder above it (one look-up
        # per level, not a scan of every deployment).
        parts = image.file_name.split("/")[:-1]
        candidates = [
            span
            for depth in range(len(parts) + 1)
            for span in by_folder.get("/".join(parts[:depth]), ())
        ]
        chosen: DeploymentSpan | None = None
        if image.camera_taken_at is not None:
            camera_time = image.camera_taken_at
            fitting = [d for d in candidates if _covers(d, camera_time)]
            if fitting:
                chosen = max(
                    fitting,
                    key=lambda d: (len(d.folder), d.start or datetime.min.replace(tzinfo=UTC)),
                )
        elif candidates:
            deepest = max(len(d.folder) for d in candidates)
            inner = [d for d in candidates if len(d.folder) == deepest]
            chosen = inner[0] if len(inner) == 1 else None
        result[image.key] = chosen
    return result


def true_time(camera_taken_at: datetime | None, span: DeploymentSpan | None) -> datetime | None:
    """The true capture time: the camera's time less its deployment's clock offset."""
    if camera_taken_at is None or span is None:
        return camera_taken_at
    return camera_taken_at - timedelta(seconds=span.clock_offset_seconds)
