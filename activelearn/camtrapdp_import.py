"""A Camera Trap Data Package (Camtrap DP 1.0) imported into a new project.

Reads ``datapackage.json``, ``deployments.csv``, ``media.csv`` and ``observations.csv`` from a
package folder or zip, then creates the project with its deployments, its species (the
package's ``taxonomic`` list: ``scientificName`` becomes the scientific name, the English
vernacular name the name), its images and their people's labels:

* Media: ``filePath`` relative to the package (for a zip: to the folder holding the zip) or
  absolute; either must lie under ``TRAPWISE_IMPORT_ROOTS`` when set. ``timestamp`` becomes the
  capture time (``time_source`` camtrap_dp), the observations' ``eventID`` the sequence id.
* Media-based observations with a bounding box become the images' boxes (a detector named
  ``camtrap-dp``) and their crops; a media's ``blank`` observation makes it an empty image.
  Images without media-based observations stay undetected (run a detector on them).
* Observations of type ``animal`` classified by people (``classificationMethod`` human or
  empty; machine classifications are not labels) become the importing admin's labels with
  origin ``imported``: a media-based one labels its box's crop; an event-based one labels
  every crop of the event without a media-based label when the event names one species.

Everything is checked before anything is written (a clear error listing the problems); the
project, deployments, species and images are then written in one transaction. Boxes and
labels follow, each image committed on its own as detection does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from PIL import Image as PILImage

from activelearn.models import LabelKind, LabelOrigin
from activelearn.services import labels_import
from detector.base import Box, ImageDetections
from detector.crops import upright_size
from detector.imported import ImportedDetector
from detector.models import Crop
from detector.services import detections_run
from projects.deployments import (
    CAMTRAP_DP_DEPLOYMENT_FIELDS,
    KNOWN_COLUMNS,
    DeploymentCsvError,
    deployments_csv_parse,
    time_parse,
)
from projects.import_roots import FolderImportError, import_path_check
from projects.models import Deployment, Image, Project, Species, TaxonRank, TimeSource
from projects.services import (
    ProjectError,
    SpeciesError,
    project_create,
    species_ensure,
    species_name_check,
)
from projects.services_deployments import deployments_import, images_deployments_assign

TABLES = ("deployments", "media", "observations")
# The Camtrap DP deployment columns Trapwise does not keep (passed over, not refused).
IGNORED_DEPLOYMENT_COLUMNS = tuple(
    c for c in CAMTRAP_DP_DEPLOYMENT_FIELDS if c not in KNOWN_COLUMNS
)
PROBLEMS_SHOWN = 10
DETECTOR_NAME = "camtrap-dp"
# How close (normalised units) a stored box must be to the observation's to be its crop.
BOX_TOLERANCE = 1e-4


class CamtrapDpImportError(ValueError):
    """The package cannot be imported; the message names the problems. Nothing was written."""


@dataclass
class CamtrapImportReport:
    project: Project
    deployments: int = 0
    species: int = 0
    images: int = 0
    boxes: int = 0
    labels: int = 0
    # Images whose folder and time put them in another deployment than the package's, which
    # the import kept (a later re-assignment may move them).
    deployment_mismatches: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Media:
    media_id: str
    deployment_id: str
    path: Path
    file_name: str
    timestamp: datetime
    width: int
    height: int


@dataclass
class _Package:
    descriptor: dict[str, Any]
    tables: dict[str, str]
    base: Path
    version: str


def _package_read(source: Path) -> _Package:
    """The descriptor and the three tables' text, from a folder or a zip."""
    source = import_path_check(path=source, what="the package")
    texts: dict[str, str] = {}
    try:
        if source.is_dir():
            base = source

            def read(name: str) -> str:
                return (source / name).read_text(encoding="utf-8-sig")
        elif zipfile.is_zipfile(source):
            base = source.parent
            archive = zipfile.ZipFile(source)
            names = {PurePosixPath(n).name: n for n in archive.namelist()}

            def read(name: str) -> str:
                if name not in names:
                    raise FileNotFoundError(f"{name} is not in the zip")
                return archive.read(names[name]).decode("utf-8-sig")
        else:
            raise CamtrapDpImportError(f"{source} is neither a folder nor a zip")
        raw = read("datapackage.json")
        descriptor = json.loads(raw)
        if not isinstance(descriptor, dict):
            raise CamtrapDpImportError("datapackage.json is not a JSON object")
        paths = {
            r.get("name"): r.get("path")
            for r in descriptor.get("resources", [])
            if isinstance(r, dict)
        }
        for table in TABLES:
            path = paths.get(table)
            if not isinstance(path, str):
                raise CamtrapDpImportError(f"datapackage.json names no {table} resource")
            texts[table] = read(PurePosixPath(path).name)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
        raise CamtrapDpImportError(f"cannot read the package {source}: {exc}") from exc
    version = f"{source.name}@sha256:{hashlib.sha256(raw.encode()).hexdigest()[:12]}"
    return _Package(descriptor=descriptor, tables=texts, base=base, version=version)


def _rows(text: str) -> list[dict[str, str]]:
    return [
        {k: (v or "").strip() for k, v in row.items() if k is not None}
        for row in csv.DictReader(io.StringIO(text, newline=""))
    ]


def _species_from(
    descriptor: dict[str, Any], observations: list[dict[str, str]]
) -> dict[str, dict[str, str]]:
    """scientificName -> {name, taxon_id, rank}: the taxonomic list, then any name the
    observations use that the list lacks."""
    taxa: dict[str, dict[str, str]] = {}
    for entry in descriptor.get("taxonomic") or []:
        if not isinstance(entry, dict) or not entry.get("scientificName"):
            continue
        scientific = str(entry["scientificName"]).strip()
        vernacular = entry.get("vernacularNames") or {}
        name = vernacular.get("eng") if isinstance(vernacular, dict) else None
        rank = str(entry.get("taxonRank") or "")
        taxa[scientific] = {
            "name": str(name or scientific).strip(),
            "taxon_id": str(entry.get("taxonID") or "").strip(),
            "rank": rank if rank in TaxonRank.values else TaxonRank.SPECIES,
        }
    for row in observations:
        scientific = row.get("scientificName", "")
        if scientific and scientific not in taxa:
            taxa[scientific] = {"name": scientific, "taxon_id": "", "rank": TaxonRank.SPECIES}
    return taxa


def _media_check(
    package: _Package, rows: list[dict[str, str]], deployment_ids: set[str], problems: list[str]
) -> list[_Media]:
    media: list[_Media] = []
    seen: set[str] = set()
    paths: set[Path] = set()
    for number, row in enumerate(rows, start=2):
        where = f"media.csv row {number}"
        media_id, file_path = row.get("mediaID", ""), row.get("filePath", "")
        if not media_id or media_id in seen:
            problems.append(f"{where}: mediaID {media_id!r} is empty or repeated")
            continue
        seen.add(media_id)
        if row.get("deploymentID", "") not in deployment_ids:
            problems.append(
                f"{where}: deploymentID {row.get('deploymentID')!r} is not in deployments.csv"
            )
            continue
        if "://" in file_path or not file_path:
            problems.append(f"{where}: filePath {file_path!r} is not a file on this server")
            continue
        try:
            timestamp = time_parse(row.get("timestamp", ""), column="timestamp")
        except DeploymentCsvError as exc:
            problems.append(f"{where}: {exc}")
            continue
        given = Path(file_path)
        path = given if given.is_absolute() else package.base / file_path
        try:
            path = import_path_check(path=path, what="the file")
            with PILImage.open(path) as img:
                width, height = upright_size(img)
        except (FolderImportError, OSError, ValueError, SyntaxError) as exc:
            problems.append(f"{where}: {file_path}: {exc}")
            continue
        if path in paths:
            problems.append(f"{where}: {file_path} is also another media's file")
            continue
        paths.add(path)
        file_name = (
            PurePosixPath(file_path).as_posix()
            if not given.is_absolute()
            else path.relative_to(package.base).as_posix()
            if path.is_relative_to(package.base)
            else path.name
        )
        media.append(
            _Media(
                media_id=media_id,
                deployment_id=row["deploymentID"],
                path=path,
                file_name=file_name.removeprefix("./"),
                timestamp=timestamp,
                width=width,
                height=height,
            )
        )
    return media


def _problems_raise(problems: list[str]) -> None:
    if problems:
        more = len(problems) - PROBLEMS_SHOWN
        raise CamtrapDpImportError(
            "nothing imported: "
            + "; ".join(problems[:PROBLEMS_SHOWN])
            + (f"; and {more} more" if more > 0 else "")
        )


def _human(row: dict[str, str]) -> bool:
    return row.get("observationType") == "animal" and row.get("classificationMethod", "") in (
        "",
        "human",
    )


def _box(row: dict[str, str]) -> tuple[float, float, float, float] | None:
    try:
        values = tuple(float(row[k]) for k in ("bboxX", "bboxY", "bboxWidth", "bboxHeight"))
    except (KeyError, ValueError):
        return None
    return values  # type: ignore[return-value]


def camtrap_dp_import(*, name: str, source: Path, admin: User) -> CamtrapImportReport:
    """Import the package at ``source`` (a folder or a zip) into a new project ``name`` whose
    admin (and the author of the imported labels) is ``admin``.

    Raises:
        CamtrapDpImportError: an unreadable package, a missing table, media that cannot be
        read, references to unknown deployments or media, a bad deployments table, a name
        a project has. Nothing is written.
    """
    package = _package_read(source)
    deployments_text = package.tables["deployments"]
    media_rows = _rows(package.tables["media"])
    observations = _rows(package.tables["observations"])
    deployment_ids = {r.get("deploymentID", "") for r in _rows(deployments_text)}
    problems: list[str] = []
    try:
        deployments_csv_parse(deployments_text, ignored=IGNORED_DEPLOYMENT_COLUMNS)
    except DeploymentCsvError as exc:
        problems.append(
            f"deployments.csv {exc}" if str(exc).startswith("row") else f"deployments.csv: {exc}"
        )
    media = _media_check(package, media_rows, deployment_ids, problems)
    media_ids = {m["mediaID"] for m in media_rows if m.get("mediaID")}
    for number, row in enumerate(observations, start=2):
        if row.get("observationLevel") not in ("media", "event"):
            problems.append(
                f"observations.csv row {number}: observationLevel must be media or event"
            )
        elif row["observationLevel"] == "media" and row.get("mediaID") not in media_ids:
            problems.append(
                f"observations.csv row {number}: mediaID {row.get('mediaID')!r} is not in media.csv"
            )
    taxa = _species_from(package.descriptor, observations)
    for scientific, taxon in taxa.items():
        try:
            taxon["name"] = species_name_check(taxon["name"])
        except SpeciesError as exc:
            problems.append(f"taxon {scientific[:40]!r}: {exc}")
        if len(scientific) > 200 or len(taxon["taxon_id"]) > 300:
            problems.append(f"taxon {scientific[:40]!r}: scientificName or taxonID too long")
    _problems_raise(problems)
    events = _events(observations)
    try:
        with transaction.atomic():
            project = project_create(name=name, created_by=admin)
            report = CamtrapImportReport(project=project)
            try:
                result = deployments_import(
                    project=project,
                    text=deployments_text,
                    ignored_columns=IGNORED_DEPLOYMENT_COLUMNS,
                )
            except DeploymentCsvError as exc:
                raise CamtrapDpImportError(f"nothing imported: deployments.csv: {exc}") from exc
            report.deployments = result.created
            species = _species_write(project=project, taxa=taxa)
            report.species = len(species)
            report.images, report.deployment_mismatches = _images_write(
                project=project, media=media, events=events
            )
    except ProjectError as exc:
        raise CamtrapDpImportError(f"nothing imported: {exc}") from exc
    report.boxes = _boxes_store(
        project=project, package=package, media=media, observations=observations, report=report
    )
    report.labels = _labels_write(
        project=project, admin=admin, species=species, media=media, observations=observations
    )
    return report


def _events(observations: list[dict[str, str]]) -> dict[str, str]:
    """mediaID -> eventID, from the media-based observations."""
    return {
        row["mediaID"]: row["eventID"]
        for row in observations
        if row.get("observationLevel") == "media" and row.get("mediaID") and row.get("eventID")
    }


def _species_write(*, project: Project, taxa: dict[str, dict[str, str]]) -> dict[str, Species]:
    """The package's taxa as species; scientificName -> species."""
    names = list(dict.fromkeys(t["name"] for t in taxa.values()))
    by_name = {s.name: s for s in species_ensure(project=project, names=names)}
    out: dict[str, Species] = {}
    for scientific, taxon in taxa.items():
        species = by_name[taxon["name"]]
        species.scientific_name = scientific
        species.taxon_id = taxon["taxon_id"]
        species.rank = taxon["rank"]
        species.save(update_fields=["scientific_name", "taxon_id", "rank"])
        out[scientific] = species
    return out


def _images_write(
    *, project: Project, media: list[_Media], events: dict[str, str]
) -> tuple[int, int]:
    """The media as images (with their events and deployments); returns (images, images whose
    folder and time pointed to another deployment than the package's)."""
    deployments = {d.deployment_id: d for d in Deployment.objects.filter(project=project)}
    by_deployment: dict[str, list[str]] = defaultdict(list)
    for item in media:
        by_deployment[item.deployment_id].append(item.file_name)
    # Each deployment's folder: the folder all its media share, so that images added later
    # (and re-assignment) find it.
    for deployment_id, files in by_deployment.items():
        parents = [PurePosixPath(f).parent.parts for f in files]
        common: list[str] = []
        for level in zip(*parents, strict=False):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        deployment = deployments[deployment_id]
        deployment.folder = "/".join(common)
        deployment.save(update_fields=["folder"])
    frames: dict[str, int] = defaultdict(int)
    images = []
    for item in sorted(media, key=lambda m: (events.get(m.media_id, ""), m.timestamp, m.file_name)):
        event = events.get(item.media_id, "")[:200]
        frame = frames[event] if event else None
        if event:
            frames[event] += 1
        deployment = deployments[item.deployment_id]
        images.append(
            Image(
                project=project,
                path=str(item.path),
                file_name=item.file_name,
                width=item.width,
                height=item.height,
                seq_id=event,
                seq_source="metadata" if event else "",
                frame_num=frame,
                camera=(deployment.camera_id or deployment.deployment_id)[:300],
                camera_taken_at=item.timestamp,
                taken_at=item.timestamp,
                time_source=TimeSource.CAMTRAP_DP,
                deployment=deployment,
            )
        )
    Image.objects.bulk_create(images, batch_size=1000)
    images_deployments_assign(project=project)
    # The package's word wins over folder and time (its timestamps are true times already).
    wanted = {
        str(item.path): (deployments[item.deployment_id].pk, item.timestamp) for item in media
    }
    mismatched = [
        Image(pk=pk, deployment_id=wanted[path][0], taken_at=wanted[path][1])
        for pk, path, deployment_pk in Image.objects.filter(project=project).values_list(
            "pk", "path", "deployment_id"
        )
        if deployment_pk != wanted[path][0]
    ]
    Image.objects.bulk_update(mismatched, ["deployment", "taken_at"], batch_size=1000)
    return len(images), len(mismatched)


def _boxes_store(
    *,
    project: Project,
    package: _Package,
    media: list[_Media],
    observations: list[dict[str, str]],
    report: CamtrapImportReport,
) -> int:
    """The media-based observations' boxes as detections and crops; media with only blank
    media-based observations are empty images. Returns the number of boxes."""
    by_file = {m.media_id: m.file_name for m in media}
    boxes: dict[str, list[Box]] = {}
    for row in observations:
        if row.get("observationLevel") != "media" or row.get("mediaID") not in by_file:
            continue
        file_name, kind, box = by_file[row["mediaID"]], row.get("observationType"), _box(row)
        if kind == "blank":
            boxes.setdefault(file_name, [])
        elif box is not None and kind not in ("human", "vehicle"):
            x, y, w, h = box
            boxes.setdefault(file_name, []).append(
                Box(x=x, y=y, w=w, h=h, confidence=1.0, category="animal")
            )
    if not boxes:
        return 0
    detector = ImportedDetector(
        name=DETECTOR_NAME,
        version=package.version,
        images=[ImageDetections(file=f, boxes=tuple(b)) for f, b in boxes.items()],
    )
    listed = list(Image.objects.filter(project=project, file_name__in=list(boxes)))
    report.problems += _detections_for(project=project, detector=detector, images=listed)
    return sum(len(b) for b in boxes.values())


def _detections_for(
    *, project: Project, detector: ImportedDetector, images: list[Image]
) -> list[tuple[str, str]]:
    """Store ``detector``'s boxes and cut their crops; the images it has no result for stay
    undetected (``detections_run`` notes them as problems, dropped here: not errors)."""
    report = detections_run(project=project, detector=detector)
    listed = {i.file_name for i in images}
    return [(f, why) for f, why in report.problems if f in listed]


def _labels_write(
    *,
    project: Project,
    admin: User,
    species: dict[str, Species],
    media: list[_Media],
    observations: list[dict[str, str]],
) -> int:
    """People's animal observations as the admin's labels (origin imported)."""
    file_of = {m.media_id: m.file_name for m in media}
    crops_by_file: dict[str, list[Crop]] = defaultdict(list)
    for crop in Crop.objects.filter(project=project).select_related("detection", "image"):
        crops_by_file[crop.image.file_name].append(crop)
    chosen: dict[int, int] = {}  # crop id -> species id
    for row in observations:
        if row.get("observationLevel") != "media" or not _human(row):
            continue
        target = species.get(row.get("scientificName", ""))
        box = _box(row)
        if target is None or box is None:
            continue
        for crop in crops_by_file.get(file_of.get(row.get("mediaID", ""), ""), []):
            det = crop.detection
            if all(
                abs(a - b) <= BOX_TOLERANCE
                for a, b in zip((det.x, det.y, det.w, det.h), box, strict=True)
            ):
                chosen.setdefault(crop.pk, target.pk)
                break
    # Event-based: an event that names one species, and whose media have no boxed
    # observations of their own, labels every crop of the event with it.
    boxed_events = {
        row.get("eventID")
        for row in observations
        if row.get("observationLevel") == "media" and _box(row) is not None
    }
    event_species: dict[str, set[int]] = defaultdict(set)
    for row in observations:
        if (
            row.get("observationLevel") == "event"
            and _human(row)
            and row.get("eventID")
            and row["eventID"] not in boxed_events
        ):
            target = species.get(row.get("scientificName", ""))
            if target is not None:
                event_species[row["eventID"]].add(target.pk)
    for event, targets in event_species.items():
        if len(targets) != 1:
            continue
        (target_pk,) = targets
        for crop in Crop.objects.filter(project=project, image__seq_id=event, active=True):
            chosen.setdefault(crop.pk, target_pk)
    grouped: dict[int, list[int]] = defaultdict(list)
    for crop_pk, species_pk in chosen.items():
        grouped[species_pk].append(crop_pk)
    count = 0
    for species_pk, crop_ids in grouped.items():
        count += len(
            labels_import(
                project=project,
                crop_ids=crop_ids,
                user=admin,
                kind=LabelKind.SPECIES,
                species_id=species_pk,
                origin=LabelOrigin.IMPORTED,
            )
        )
    return count
