"""A project as a Camera Trap Data Package (Camtrap DP 1.0), written in constant memory.

The package is a zip of ``datapackage.json``, ``deployments.csv``, ``media.csv`` and
``observations.csv`` (https://camtrap-dp.tdwg.org). The media files themselves are not
included: ``media.filePath`` is the image's path relative to the folder it was imported from.

Deployments are the project's deployments (``projects.models.Deployment``: one camera at one
place for a time span, with its own coordinates, times, camera id and location name); media
and observations point to their image's deployment. Images without a deployment fall back to
the old form: one deployment per camera (``Image.camera``; images without one form the
deployment "unknown camera"), running from its first to its last image, at the one location
the person exporting gives (``PackageOptions``; Camtrap DP requires coordinates and has no
"unknown" value for them), which its ``deploymentComments`` says. Camera clocks carry no
time zone, so clock times (capture times and deployment spans) are written with the UTC
offset the person gives.

Species are published by their scientific name (``Species.scientific_name``, else the name)
with their ``taxonID`` where given; the package's ``taxonomic`` list carries both and the
common name as ``vernacularNames.eng``. Observations are both
media-based (one per crop, with its bounding box, or one per image without animals) and
event-based (one per species per capture event, counted as in the event CSV); the rule that
combines human and machine labels is ``activelearn.final_labels.final_label``.
"""

from __future__ import annotations

import csv
import io
import json
import mimetypes
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import IO

from django.db.models import Count, Max, Min

from activelearn.final_labels import AUTO, HUMAN, MACHINE
from activelearn.models import ClassifierVersion, LabelKind
from activelearn.selectors import classifier_latest
from annotator.exports import (
    CropRecord,
    EventSummary,
    ImageRecord,
    classifier_label,
    event_summaries,
    image_records,
)
from projects.deployments import CAMTRAP_DP_DEPLOYMENT_FIELDS
from projects.models import Deployment, Image, Membership, Project, Role, Species

CAMTRAP_DP_VERSION = "1.0"
PROFILE_URL = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{CAMTRAP_DP_VERSION}/camtrap-dp-profile.json"
UNKNOWN_CAMERA = "unknown camera"

SAMPLING_DESIGNS = (
    "simpleRandom",
    "systematicRandom",
    "clusteredRandom",
    "experimental",
    "targeted",
    "opportunistic",
)
CAPTURE_METHODS = ("activityDetection", "timeLapse")
# Data Package licence entries: an Open Definition id and a title. No ``path``: some versions
# of the Data Package schema accept a name or a path, not both.
LICENSES = {
    "CC0-1.0": "Creative Commons Zero v1.0 Universal",
    "CC-BY-4.0": "Creative Commons Attribution 4.0",
    "CC-BY-NC-4.0": "Creative Commons Attribution Non Commercial 4.0",
}

# Camtrap DP 1.0's deployment columns, named once (the package import reads them too).
DEPLOYMENT_FIELDS = list(CAMTRAP_DP_DEPLOYMENT_FIELDS)
MEDIA_FIELDS = [
    "mediaID",
    "deploymentID",
    "captureMethod",
    "timestamp",
    "filePath",
    "filePublic",
    "fileName",
    "fileMediatype",
    "exifData",
    "favorite",
    "mediaComments",
]
OBSERVATION_FIELDS = [
    "observationID",
    "deploymentID",
    "mediaID",
    "eventID",
    "eventStart",
    "eventEnd",
    "observationLevel",
    "observationType",
    "cameraSetupType",
    "scientificName",
    "count",
    "lifeStage",
    "sex",
    "behavior",
    "individualID",
    "individualPositionRadius",
    "individualPositionAngle",
    "individualSpeed",
    "bboxX",
    "bboxY",
    "bboxWidth",
    "bboxHeight",
    "classificationMethod",
    "classifiedBy",
    "classificationTimestamp",
    "classificationProbability",
    "observationTags",
    "observationComments",
]
RESOURCES = (
    ("deployments", DEPLOYMENT_FIELDS),
    ("media", MEDIA_FIELDS),
    ("observations", OBSERVATION_FIELDS),
)
# A bounding box side must be above zero in Camtrap DP.
MIN_BOX_SIDE = 1e-6


class CamtrapDpError(ValueError):
    """The project cannot make a valid Camtrap DP package; the message says why."""


@dataclass(frozen=True)
class PackageOptions:
    """What the person exporting supplies: the study's metadata, and a location for the
    images without a deployment (None: there are none)."""

    latitude: float | None = None
    longitude: float | None = None
    coordinate_uncertainty: int | None = None
    utc_offset: str = "+00:00"
    sampling_design: str = "opportunistic"
    capture_method: str = "activityDetection"
    data_license: str = "CC-BY-4.0"
    media_license: str = "CC-BY-4.0"


def schema_url(resource: str) -> str:
    """The published Camtrap DP table schema of ``resource`` (deployments, media, ...)."""
    return (
        f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{CAMTRAP_DP_VERSION}/"
        f"{resource}-table-schema.json"
    )


def camtrap_dp_check(*, project: Project, options: PackageOptions | None = None) -> None:
    """Raise CamtrapDpError when the project cannot make a valid package (three queries).

    Camtrap DP requires a timestamp for every media file: images without a capture time
    (no EXIF date) would have to be dropped, and an export never drops data silently. With
    ``options``, images without a deployment need its location.
    """
    images = Image.objects.filter(project=project)
    if options is not None and (options.latitude is None or options.longitude is None):
        loose = images.filter(deployment__isnull=True).count()
        if loose:
            raise CamtrapDpError(
                f"{loose} image(s) have no deployment: give the latitude and longitude to "
                "publish them with, or add deployments that hold them (the deployments page)."
            )
    if not images.exists():
        raise CamtrapDpError("the project has no images yet: there is nothing to export")
    untimed = images.filter(taken_at__isnull=True).count()
    if untimed:
        raise CamtrapDpError(
            f"{untimed} image(s) have no capture time (no EXIF date): Camtrap DP requires a "
            "timestamp for every media file, so this project cannot be exported as Camtrap DP. "
            "The CSV and COCO exports include them."
        )


def camtrap_dp_write(
    *,
    project: Project,
    options: PackageOptions,
    out: IO[bytes],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write the package as a zip to ``out``; call ``camtrap_dp_check`` first.

    ``progress(done, total)``, when given, is called after each chunk of images: the work is
    twice the project's images (media, then the events' observations, counted by their images).

    Values are written verbatim, without the spreadsheet-formula quote of the CSV exports
    (``annotator.csvsafe``): the package is read by programs (GBIF, camtrapdp, frictionless),
    which must find ``filePath``, ``scientificName`` and the ids exactly as they are.

    Reads the project in chunks (``annotator.exports``); observations are spooled to a
    temporary file while media.csv is written, so memory stays constant.
    """
    classifier = classifier_latest(project=project)
    writer = _PackageWriter(project=project, options=options, classifier=classifier)
    total = 2 * Image.objects.filter(project=project).count() if progress is not None else 0
    done = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as observations:
            obs_csv = csv.writer(observations)
            obs_csv.writerow(OBSERVATION_FIELDS)
            with _zip_text(archive, "deployments.csv") as text:
                deployments = csv.writer(text)
                deployments.writerow(DEPLOYMENT_FIELDS)
                for row in writer.deployment_rows():
                    deployments.writerow(row)
            with _zip_text(archive, "media.csv") as text:
                media = csv.writer(text)
                media.writerow(MEDIA_FIELDS)
                for chunk in image_records(project=project):
                    for record in chunk:
                        media.writerow(writer.media_row(record))
                        for row in writer.media_observations(record):
                            obs_csv.writerow(row)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            for summary, _ in event_summaries(project=project):
                for row in writer.event_observations(summary):
                    obs_csv.writerow(row)
                done += summary.n_images
                if progress is not None:
                    progress(done, total)  # cheap: the tracker writes about once a second
            observations.seek(0)
            with _zip_text(archive, "observations.csv") as text:
                shutil.copyfileobj(observations, text)
        archive.writestr("datapackage.json", json.dumps(writer.descriptor(), indent=2) + "\n")


class _zip_text:  # noqa: N801 - used like a function: ``with _zip_text(archive, name)``
    """A text stream into a new zip member (CSV wants text, zip members are bytes)."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        info = zipfile.ZipInfo(name, date_time=datetime.now(tz=UTC).timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        self._raw = archive.open(info, "w", force_zip64=True)
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")

    def __enter__(self) -> io.TextIOWrapper:
        return self._text

    def __exit__(self, *exc: object) -> None:
        self._text.close()


class _PackageWriter:
    """Formats the rows of the three tables and collects what the descriptor needs."""

    def __init__(
        self, *, project: Project, options: PackageOptions, classifier: ClassifierVersion | None
    ) -> None:
        self.project = project
        self.options = options
        self.classifier = classifier
        self.names_seen: set[str] = set()
        self.species = {s.name: s for s in Species.objects.filter(project=project)}
        self.deployments = list(
            Deployment.objects.filter(project=project).order_by("deployment_id")
        )
        # A camera's fallback deployment id must not be a real deployment's id.
        self.taken_ids = {d.deployment_id for d in self.deployments}

    # deployments

    def deployment_rows(self) -> Iterator[list[object]]:
        """The project's deployments, then one per camera of the images without one."""
        for deployment in self.deployments:
            row_values = {
                "deploymentID": deployment.deployment_id,
                "locationID": deployment.location_id,
                "locationName": deployment.location_name,
                "latitude": deployment.latitude,
                "longitude": deployment.longitude,
                "coordinateUncertainty": deployment.coordinate_uncertainty or "",
                "deploymentStart": self.timestamp(deployment.start),
                "deploymentEnd": self.timestamp(deployment.end),
                "cameraID": deployment.camera_id,
                "deploymentComments": deployment.setup_notes,
            }
            yield [row_values.get(name, "") for name in DEPLOYMENT_FIELDS]
        options = self.options
        cameras = (
            Image.objects.filter(project=self.project, deployment__isnull=True)
            .values("camera")
            .annotate(start=Min("taken_at"), end=Max("taken_at"), n=Count("id"))
            .order_by("camera")
        )
        for row in cameras.iterator():
            camera = row["camera"]
            row_values = {
                "deploymentID": self.camera_deployment(camera),
                "locationName": camera or UNKNOWN_CAMERA,
                "latitude": options.latitude,
                "longitude": options.longitude,
                "coordinateUncertainty": options.coordinate_uncertainty or "",
                "deploymentStart": self.timestamp(row["start"]),
                "deploymentEnd": self.timestamp(row["end"]),
                "deploymentComments": (
                    f"Trapwise camera {camera or UNKNOWN_CAMERA!r}, {row['n']} images without a "
                    "deployment. Latitude and longitude are the project's location given at "
                    "export, not measured for this camera."
                ),
            }
            yield [row_values.get(name, "") for name in DEPLOYMENT_FIELDS]

    def camera_deployment(self, camera: str) -> str:
        """The fallback deployment id of a camera's images without a deployment."""
        name = deployment_id(camera)
        return name if name not in self.taken_ids else f"{name} (camera)"

    def image_deployment(self, image: Image) -> str:
        """The deploymentID of an image: its deployment's, else its camera's fallback."""
        if image.deployment is not None:
            return image.deployment.deployment_id
        return self.camera_deployment(image.camera)

    # media

    def media_row(self, record: ImageRecord) -> list[object]:
        image = record.image
        media_type = mimetypes.guess_type(image.file_name)[0] or "image/jpeg"
        values = {
            "mediaID": str(image.pk),
            "deploymentID": self.image_deployment(image),
            "captureMethod": self.options.capture_method,
            "timestamp": self.timestamp(image.taken_at),
            "filePath": image.file_name,
            # The images stay on the Trapwise server: no public URL.
            "filePublic": "false",
            "fileName": PurePosixPath(image.file_name).name,
            "fileMediatype": media_type,
        }
        return [values.get(name, "") for name in MEDIA_FIELDS]

    def media_observations(self, record: ImageRecord) -> Iterator[list[object]]:
        """One media-based observation per crop that may be an animal, else one per image."""
        image = record.image
        base = {
            "deploymentID": self.image_deployment(image),
            "mediaID": str(image.pk),
            "eventID": record.event,
            "eventStart": self.timestamp(image.taken_at),
            "eventEnd": self.timestamp(image.taken_at),
            "observationLevel": "media",
        }
        emitted = False
        for item in record.crops:
            if item.final.kind == LabelKind.NOT_ANIMAL:
                continue  # People said the box holds no animal.
            emitted = True
            values = {**base, "observationID": f"crop-{item.crop.pk}", "count": 1}
            values.update(self._box(item))
            values.update(self._crop_classification(item))
            # Camtrap DP's behavior: the crop's attributes (final_labels.final_attributes),
            # "|"-joined.
            values["behavior"] = "|".join(item.attributes)
            yield [values.get(name, "") for name in OBSERVATION_FIELDS]
        if not emitted:
            detected = image.is_empty is not None
            values = {
                **base,
                "observationID": f"image-{image.pk}",
                "observationType": "blank" if detected else "unclassified",
                "observationComments": "" if detected else "Not run through a detector yet.",
            }
            yield [values.get(name, "") for name in OBSERVATION_FIELDS]

    def _box(self, item: CropRecord) -> dict[str, object]:
        det = item.crop.detection
        x, y = _clamp(det.x, 0.0), _clamp(det.y, 0.0)
        return {
            "bboxX": round(x, 6),
            "bboxY": round(y, 6),
            "bboxWidth": round(_clamp(det.w, MIN_BOX_SIDE), 6),
            "bboxHeight": round(_clamp(det.h, MIN_BOX_SIDE), 6),
        }

    def _crop_classification(self, item: CropRecord) -> dict[str, object]:
        final = item.final
        if final.kind == LabelKind.SPECIES:
            values: dict[str, object] = {"observationType": "animal", **self.taxon(final.species)}
            self.names_seen.add(final.species)
        elif final.kind == LabelKind.UNKNOWN:
            values = {"observationType": "unknown"}
        else:
            return {"observationType": "unclassified"}
        values["observationTags"] = f"labelSource:{final.source}"
        if final.source == HUMAN and item.consensus is not None:
            label = item.consensus.label
            values.update(
                classificationMethod="human",
                classifiedBy=label.user.get_username(),
                classificationTimestamp=self.timestamp(label.created_at, clock=False),
                classificationProbability=round(item.consensus.agreement, 4),
                observationTags=f"labelSource:human | votes:{item.consensus.votes}",
            )
        elif final.source in (AUTO, MACHINE) and self.classifier is not None:
            values.update(
                classificationMethod="machine",
                classifiedBy=classifier_label(self.classifier),
                classificationTimestamp=self.timestamp(self.classifier.created_at, clock=False),
                classificationProbability=round(final.confidence or 0.0, 4),
            )
        return values

    # events

    def event_observations(self, summary: EventSummary) -> Iterator[list[object]]:
        """One event-based observation per species of the event (count: the event count)."""
        event_deployment = summary.deployment or self.camera_deployment(
            summary.cameras[0] if summary.cameras else ""
        )
        base = {
            "deploymentID": event_deployment,
            "eventID": summary.event,
            "eventStart": self.timestamp(summary.start),
            "eventEnd": self.timestamp(summary.end),
            "observationLevel": "event",
        }
        n = 0
        for name, count in summary.tally.counts.items():
            n += 1
            self.names_seen.add(name)
            values = {
                **base,
                "observationID": f"event-{summary.event}-{n}",
                "observationType": "animal",
                **self.taxon(name),
                "count": count,
                "behavior": "|".join(summary.tally.species_attributes(name)),
            }
            values.update(self._event_classification(summary.crops.get(name, [])))
            if name in summary.corrected:
                # An admin's count replaced the one derived from the crops' labels.
                values["observationTags"] = (
                    f"{values.get('observationTags', '')}|countCorrected:true"
                )
                values["observationComments"] = "count corrected by a project admin"
            yield [values.get(field, "") for field in OBSERVATION_FIELDS]
        for kind, count in (
            ("unknown", summary.max_unknown),
            ("unclassified", summary.max_unlabelled),
        ):
            if count:
                n += 1
                values = {
                    **base,
                    "observationID": f"event-{summary.event}-{n}",
                    "observationType": kind,
                    "count": count,
                }
                yield [values.get(field, "") for field in OBSERVATION_FIELDS]
        if not n:
            detected = summary.n_undetected < summary.n_images
            values = {
                **base,
                "observationID": f"event-{summary.event}-blank",
                "observationType": "blank" if detected else "unclassified",
            }
            yield [values.get(field, "") for field in OBSERVATION_FIELDS]

    def _event_classification(self, crops: list[CropRecord]) -> dict[str, object]:
        """Human when every crop behind the count is human-labelled, else machine."""
        sources = {c.final.source for c in crops}
        tags = "labelSource:" + "+".join(s for s in (HUMAN, AUTO, MACHINE) if s in sources)
        people = sorted(
            {
                c.consensus.label.user.get_username()
                for c in crops
                if c.final.source == HUMAN and c.consensus
            }
        )
        if sources == {HUMAN}:
            newest = max(c.consensus.label.created_at for c in crops if c.consensus)
            return {
                "classificationMethod": "human",
                "classifiedBy": "; ".join(people),
                "classificationTimestamp": self.timestamp(newest, clock=False),
                "classificationProbability": round(
                    min(c.final.confidence or 0.0 for c in crops), 4
                ),
                "observationTags": tags,
            }
        if self.classifier is None:
            return {"observationTags": tags}
        machine = [c.final.confidence or 0.0 for c in crops if c.final.source in (AUTO, MACHINE)]
        return {
            "classificationMethod": "machine",
            "classifiedBy": "; ".join([classifier_label(self.classifier), *people]),
            "classificationTimestamp": self.timestamp(self.classifier.created_at, clock=False),
            # The least sure machine label behind the count.
            "classificationProbability": round(min(machine), 4) if machine else "",
            "observationTags": tags,
        }

    # datapackage.json

    def descriptor(self) -> dict[str, object]:
        project, options = self.project, self.options
        span = Image.objects.filter(project=project).aggregate(
            start=Min("taken_at"), end=Max("taken_at")
        )
        admins = (
            Membership.objects.filter(project=project, role=Role.ADMIN)
            .select_related("user")
            .order_by("user__username")
        )
        contributors = [
            {"title": m.user.get_full_name() or m.user.get_username(), "role": "contributor"}
            for m in admins
        ] or [{"title": "Trapwise", "role": "publisher"}]
        taxonomic: dict[str, dict[str, object]] = {}
        for name in sorted(self.names_seen, key=lambda n: self._position(n)):
            taxon = self.taxon(name)
            entry: dict[str, object] = dict(taxon)
            species = self.species.get(name)
            if species is not None and species.rank:
                entry["taxonRank"] = species.rank
            entry["vernacularNames"] = {"eng": name}
            # Two species with one scientific name are one taxon to Camtrap DP.
            taxonomic.setdefault(str(taxon["scientificName"]), entry)
        descriptor: dict[str, object] = {
            "profile": PROFILE_URL,
            "name": project.slug.lower(),
            "title": project.name,
            "created": datetime.now(tz=UTC).isoformat(timespec="seconds"),
            "contributors": contributors,
            "sources": [{"title": "Trapwise", "version": "0.1.0"}],
            "licenses": [
                _license(options.data_license, "data"),
                _license(options.media_license, "media"),
            ],
            "project": {
                "id": project.slug,
                "title": project.name,
                "description": project.description,
                "samplingDesign": options.sampling_design,
                "captureMethod": [options.capture_method],
                "individualAnimals": False,
                "observationLevel": ["media", "event"],
            },
            "spatial": self._spatial(),
            "temporal": {
                "start": self._date(span["start"]),
                "end": self._date(span["end"]),
            },
            "taxonomic": list(taxonomic.values()),
            "resources": [
                {
                    "name": name,
                    "path": f"{name}.csv",
                    "profile": "tabular-data-resource",
                    "format": "csv",
                    "mediatype": "text/csv",
                    "encoding": "utf-8",
                    "schema": schema_url(name),
                }
                for name, _ in RESOURCES
            ],
        }
        return descriptor

    def taxon(self, name: str) -> dict[str, str]:
        """A species' scientificName (its scientific name, else its name) and taxonID (the
        observations table has no taxonID column: rows drop it, the taxonomic list keeps it)."""
        species = self.species.get(name)
        if species is None:
            return {"scientificName": name}
        values = {"scientificName": species.scientific_name or name}
        if species.taxon_id:
            values["taxonID"] = species.taxon_id
        return values

    def _position(self, name: str) -> tuple[int, str]:
        species = self.species.get(name)
        return (species.position if species is not None else 2**31, name)

    def _spatial(self) -> dict[str, object]:
        """GeoJSON of the deployments' coordinates (and the fallback location): a point, or
        the bounding box of them all."""
        points = {
            (d.longitude, d.latitude)
            for d in self.deployments
            if d.longitude is not None and d.latitude is not None
        }
        loose = Image.objects.filter(project=self.project, deployment__isnull=True).exists()
        if (
            self.options.longitude is not None
            and self.options.latitude is not None
            and (loose or not points)
        ):
            points.add((self.options.longitude, self.options.latitude))
        if not points:
            return {"type": "Point", "coordinates": [0.0, 0.0]}
        if len(points) == 1:
            ((x, y),) = points
            return {"type": "Point", "coordinates": [x, y]}
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        west, east, south, north = min(xs), max(xs), min(ys), max(ys)
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        return {"type": "Polygon", "coordinates": [ring]}

    # formatting

    def timestamp(self, value: datetime | None, *, clock: bool = True) -> str:
        """ISO 8601 with a time zone designator.

        Camera clock times (``clock``) are stored as UTC-labelled local clock readings, so
        their clock value is written with the exporter's UTC offset; server times (labels,
        classifiers) are real UTC instants.
        """
        if value is None:
            return ""
        utc = value.astimezone(UTC)
        if not clock:
            return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        return utc.strftime("%Y-%m-%dT%H:%M:%S") + self.options.utc_offset

    @staticmethod
    def _date(value: datetime | None) -> str:
        return value.astimezone(UTC).date().isoformat() if value is not None else ""


def deployment_id(camera: str) -> str:
    """A camera's deployment id: the camera itself, or "unknown camera" for none."""
    return camera or UNKNOWN_CAMERA


def _license(name: str, scope: str) -> dict[str, str]:
    return {"name": name, "title": LICENSES[name], "scope": scope}


def _clamp(value: float, low: float) -> float:
    return min(max(value, low), 1.0)
