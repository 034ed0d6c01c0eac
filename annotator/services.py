"""Writes for projects, members, species and images."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from PIL import Image as PILImage

from activelearn.models import Consensus, EventPrediction, Label, Prediction
from activelearn.services import classifier_retrain_queue, consensus_update
from activelearn.services.locks import project_lock
from annotator.coco import CocoMetadata, coco_metadata_read
from detector.base import DetectorError
from detector.crops import upright_size
from detector.imported import ImportedDetector
from detector.models import DetectionJob
from detector.selectors import image_roots_pending, images_pending
from detector.services import (
    DETECTORS,
    MAX_PROBLEMS_KEPT,
    DeriveReport,
    DetectionReport,
    crops_rederive,
    detections_run,
    detector_for_root,
)
from embeddings.services import embedding_version_build, embeddings_sync
from projects.models import DEFAULT_ATTRIBUTES, Attribute, Image, Membership, Project, Role, Species
from projects.sequences import FrameInfo, exif_camera_and_time, sequences_infer
from projects.taskqueue import task_enqueue

logger = logging.getLogger(__name__)

# The Celery tasks this module queues, by name (their module imports this one).
DETECTION_TASK = "annotator.tasks.detection_job_task"
CROPS_REFRESH_TASK = "annotator.tasks.project_crops_refresh_task"

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


class FolderImportError(ValueError):
    """An import that cannot start (bad folder or metadata file). Nothing was changed."""


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def project_create(
    *,
    name: str,
    created_by: User | None,
    seed: int = 0,
    backbone: str = "resnet50",
    backbone_weights: str = "imagenet",
    embedding_checkpoint: str = "",
    round_size: int = 100,
) -> Project:
    """Create a project; its creator becomes its admin.

    ``embedding_checkpoint`` starts the project from a trained embedding (e.g. one made by
    ``pretrain_embedding`` on other camera-trap data, as the paper's did) instead of the
    backbone's ImageNet weights with a random head.
    """
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            slug=slugify(name)[:200] or "project",
            seed=seed,
            backbone=backbone,
            backbone_weights=backbone_weights,
            embedding_checkpoint=str(Path(embedding_checkpoint).resolve())
            if embedding_checkpoint
            else "",
            round_size=round_size,
            created_by=created_by,
        )
        Attribute.objects.bulk_create(
            Attribute(project=project, name=name, key=key, position=position)
            for position, (name, key) in enumerate(DEFAULT_ATTRIBUTES)
        )
        if created_by is not None:
            membership_set(project=project, user=created_by, role=Role.ADMIN)
    return project


def membership_set(*, project: Project, user: User, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``project`` (create or change)."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def species_ensure(*, project: Project, names: list[str]) -> list[Species]:
    """Add the species in ``names`` that the project lacks; return all of them in order."""
    existing = {s.name.lower(): s for s in project.species.all()}
    position = len(existing)
    for name in names:
        if name.lower() not in existing:
            existing[name.lower()] = Species.objects.create(
                project=project, name=name, position=position
            )
            position += 1
    return list(project.species.all())


def import_path_check(*, path: Path, what: str) -> Path:
    """``path`` resolved (symlinks and ``..`` followed); FolderImportError when outside the roots.

    The roots are ``settings.TRAPWISE_IMPORT_ROOTS``; with none set every path is allowed (the
    import is a command-line tool that only server operators can run).
    """
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise FolderImportError(f"{what} {path} cannot be resolved: {exc}") from exc
    roots = [Path(root).resolve() for root in settings.TRAPWISE_IMPORT_ROOTS]
    if roots and not any(resolved.is_relative_to(root) for root in roots):
        raise FolderImportError(
            f"{what} {path} (resolved: {resolved}) lies outside the allowed import roots "
            f"({os.pathsep.join(map(str, roots))}; see TRAPWISE_IMPORT_ROOTS); nothing imported"
        )
    return resolved


def images_import(*, project: Project, folder: Path, coco: Path | None = None) -> ImportReport:
    """Add each image under ``folder`` (recursive; jpg, jpeg, png) not yet in ``project``.

    With ``coco``, a COCO Camera Traps file supplies sequence ids, frame numbers and species
    names. Images it gives no sequence id are grouped into capture events by camera and EXIF
    time. Width and height are those of the upright image (EXIF orientation applied), as
    boxes are relative to it.

    A folder or COCO file outside the import roots (``import_path_check``), a missing folder
    or a bad COCO file raise FolderImportError/CocoError before anything is written. Files
    that are unreadable, truncated, decompression bombs, or (after following symlinks) outside
    the import roots are reported and skipped; the rest of the folder goes on.
    """
    folder = import_path_check(path=folder, what="the image folder")
    if not folder.is_dir():
        raise FolderImportError(f"{folder} is not a folder")
    if coco is not None:
        coco = import_path_check(path=coco, what="the COCO file")
    metadata = coco_metadata_read(coco) if coco is not None else None
    if metadata is not None:
        species_ensure(project=project, names=metadata.species)
    report = ImportReport()
    known = set(Image.objects.filter(project=project).values_list("path", flat=True))
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if path.is_dir():
            continue  # a folder named like an image: rglob walks into it
        if str(path) in known:
            report.already_present += 1
            continue
        _image_add(project=project, folder=folder, path=path, metadata=metadata, report=report)
    if report.added:
        images_sequences_infer(project=project)
    return report


# Image.path and Image.file_name are CharField(max_length=1000).
_PATH_MAX = 1000


def _image_add(
    *,
    project: Project,
    folder: Path,
    path: Path,
    metadata: CocoMetadata | None,
    report: ImportReport,
) -> None:
    file_name = path.relative_to(folder).as_posix()
    if len(str(path)) > _PATH_MAX:
        report.problems.append((file_name, f"path longer than {_PATH_MAX} characters"))
        return
    try:
        import_path_check(path=path, what="the file")
    except FolderImportError as exc:
        # A symlink inside the folder that points elsewhere: skipped, the rest goes on.
        report.problems.append((file_name, str(exc).removesuffix("; nothing imported")))
        return
    try:
        with warnings.catch_warnings():
            # Refuse decompression bombs outright instead of only warning about them.
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as img:
                width, height = upright_size(img)
                camera, taken_at = exif_camera_and_time(img, file_name=file_name)
                # Decode it all, so a truncated or corrupt file is refused now rather than
                # when its crops are cut; a JPEG decodes at 1/8 scale (still every byte).
                img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        report.problems.append((file_name, f"refused, could be a decompression bomb: {exc}"))
        return
    except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
        # Mostly OSError (UnidentifiedImageError, truncated data), but image plugins raise
        # assorted types (SyntaxError, struct.error, ValueError ...): one bad file must not
        # stop the rest of the folder.
        report.problems.append((file_name, f"not a readable image: {exc}"))
        return
    meta = metadata.by_file.get(file_name) if metadata is not None else None
    Image.objects.create(
        project=project,
        path=str(path),
        file_name=file_name,
        width=width,
        height=height,
        seq_id=meta.seq_id if meta and meta.seq_id else "",
        seq_source="metadata" if meta and meta.seq_id else "",
        frame_num=meta.frame_num if meta else None,
        camera=camera,
        # Camera clocks have no time zone: the clock time is kept as it is, labelled UTC.
        taken_at=taken_at.replace(tzinfo=UTC) if taken_at else None,
    )
    report.added += 1


def images_sequences_infer(*, project: Project) -> int:
    """Give every image without imported sequence id a capture event from camera + time gaps.

    Recomputed over all such images of the project, so events that span two imports join up.
    Returns the number of images whose sequence id changed.
    """
    images = list(
        Image.objects.filter(project=project).exclude(seq_source="metadata").order_by("id")
    )
    events = sequences_infer(
        (FrameInfo(key=str(i.pk), camera=i.camera, taken_at=i.taken_at) for i in images),
        gap_seconds=project.sequence_gap_seconds,
    )
    changed = [i for i in images if i.seq_id != events[str(i.pk)]]
    for image in changed:
        image.seq_id, image.seq_source = events[str(image.pk)], "time"
    Image.objects.bulk_update(changed, ["seq_id", "seq_source"], batch_size=1000)
    return len(changed)


@dataclass
class IngestReport:
    images: ImportReport
    detection: DetectionReport | None
    embedding_version: int | None


def folder_ingest(
    *,
    project: Project,
    folder: Path,
    coco: Path | None = None,
    megadetector: Path | None = None,
    boxes: bool = True,
) -> IngestReport:
    """Import a folder, take its boxes from ``coco`` or ``megadetector`` JSON, crop and embed.

    With ``boxes=False`` the COCO file gives sequences and species only; the images then wait
    for ``detect``. Every step only adds what is new, so running it again changes nothing.
    The folder and the JSON files must lie inside the import roots (``import_path_check``),
    and the JSON files are read in full before anything is written: a bad file raises
    FolderImportError, CocoError or DetectorError and changes nothing.
    """
    if coco is not None and megadetector is not None:
        raise FolderImportError("give boxes from either --coco or --megadetector, not both")
    import_path_check(path=folder, what="the image folder")
    if megadetector is not None:
        megadetector = import_path_check(path=megadetector, what="the MegaDetector file")
    if coco is not None:
        coco = import_path_check(path=coco, what="the COCO file")
    # Read the box file before anything is written: a bad file changes nothing.
    detector = _imported_detector(coco=coco, megadetector=megadetector) if boxes else None
    images = images_import(project=project, folder=folder, coco=coco)
    detection = detections_run(project=project, detector=detector) if detector else None
    version = embeddings_sync(project=project) if project.crops.exists() else None
    return IngestReport(
        images=images,
        detection=detection,
        embedding_version=version.number if version is not None else None,
    )


def _imported_detector(*, coco: Path | None, megadetector: Path | None) -> ImportedDetector | None:
    if megadetector is not None:
        return ImportedDetector.from_megadetector_json(megadetector)
    if coco is not None:
        return ImportedDetector.from_coco_camera_traps(coco)
    return None


def detection_job_create(
    *, project: Project, detector: str, options: dict[str, str] | None = None, queue: bool = True
) -> DetectionJob:
    """Record a detection job for the project's undetected images; queue it for the worker.

    With ``queue=False`` the caller runs it (``detection_job_run``), e.g. a command in a terminal.
    """
    if detector not in DETECTORS:
        raise DetectorError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if options and options.get("file"):
        # A detections file is read like an import's JSON, so it obeys the same roots.
        try:
            resolved = import_path_check(path=Path(options["file"]), what="the detections file")
        except FolderImportError as exc:
            raise DetectorError(str(exc)) from exc
        options = {**options, "file": str(resolved)}
    job = DetectionJob.objects.create(
        project=project,
        detector=detector,
        options=options or {},
        total=images_pending(project=project),
    )
    if queue:
        task_enqueue(name=DETECTION_TASK, args=[job.pk])  # kept if the broker is down
    return job


def detection_job_run(*, job_id: int) -> DetectionJob:
    """Run a detection job to the end, then embed the new crops. Safe to run again.

    Images already detected are skipped, so a job that was killed (or redelivered after a
    worker died) continues where it stopped. Progress is saved after every batch.
    """
    job = DetectionJob.objects.select_related("project").get(pk=job_id)
    if job.status == DetectionJob.Status.DONE:
        return job
    project = job.project
    job.status, job.started_at = DetectionJob.Status.RUNNING, job.started_at or timezone.now()
    job.total = job.done + job.failed + images_pending(project=project)
    job.save(update_fields=["status", "started_at", "total"])
    try:
        for root in image_roots_pending(project=project):
            detector = detector_for_root(
                project=project, name=job.detector, root=root, options=job.options
            )
            detections_run(
                project=project, detector=detector, root=root, progress=_job_progress(job)
            )
        embeddings_sync(project=project)
    except Exception as exc:
        job.status, job.error = DetectionJob.Status.FAILED, f"{type(exc).__name__}: {exc}"
        job.save(update_fields=["status", "error"])
        raise
    job.status, job.finished_at = DetectionJob.Status.DONE, timezone.now()
    job.save(update_fields=["status", "finished_at"])
    return job


def _job_progress(job: DetectionJob) -> Callable[[DetectionReport, int], None]:
    """Fold each batch's report into the job row: done, failed, crops and the first problems."""
    base_done, base_failed, base_crops = job.done, job.failed, job.crops
    base_problems = list(job.problems)

    def update(report: DetectionReport, remaining: int) -> None:
        job.done = base_done + report.images_done
        job.failed = base_failed + len(report.problems)
        job.crops = base_crops + report.crops
        job.problems = (base_problems + [list(p) for p in report.problems])[:MAX_PROBLEMS_KEPT]
        job.save(update_fields=["done", "failed", "crops", "problems", "updated_at"])

    return update


def project_thresholds_update(
    *,
    project: Project,
    detection_threshold: float,
    min_box_pixels: int,
    crop_padding: float,
    queue: bool = True,
) -> DeriveReport | None:
    """Change the thresholds; crops are then re-derived from the stored boxes (no detector).

    With ``queue`` (the web app) the re-derivation runs in the worker; without, here, and its
    report is returned.
    """
    if not 0.0 <= detection_threshold <= 1.0 or not 0.0 <= crop_padding <= 1.0:
        raise ValueError("the detection threshold and the crop padding must lie in [0, 1]")
    project.detection_threshold = detection_threshold
    project.min_box_pixels = min_box_pixels
    project.crop_padding = crop_padding
    project.save(update_fields=["detection_threshold", "min_box_pixels", "crop_padding"])
    if queue:
        task_enqueue(name=CROPS_REFRESH_TASK, args=[project.pk])
        return None
    return project_crops_refresh(project_id=project.pk)


def project_crops_refresh(*, project_id: int) -> DeriveReport:
    """Re-derive crops from stored boxes with the current thresholds; re-embed what changed.

    New crops join the current embedding version; recut crops (a changed padding) make the
    current vectors stale, so a new embedding version is built and switched to. Running it
    twice changes nothing the second time.
    """
    project = Project.objects.get(pk=project_id)
    report = crops_rederive(project=project)
    if report.recut:
        embedding_version_build(project=project)
    elif report.created:
        embeddings_sync(project=project)
    return report


# --- Members and species, managed by the project's admins ----------------------------------


class MemberError(ValueError):
    """A change to the members was refused; the message says why. Nothing was changed."""


def _admins_left(*, project: Project, without: Membership) -> bool:
    """Whether the project keeps an admin when ``without`` stops being one.

    Locks the project's membership rows, so that two admins demoting each other at the same
    moment cannot both succeed.
    """
    admins = list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.ADMIN)
        .values_list("pk", flat=True)
    )
    return any(pk != without.pk for pk in admins)


def member_add(*, project: Project, username: str, role: str) -> Membership:
    """Make the existing user ``username`` a member of ``project`` with ``role``.

    Raises MemberError for an unknown user, someone already a member (change their role
    instead) or an unknown role.
    """
    if role not in Role.values:
        raise MemberError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    user = User.objects.filter(username=username.strip()).first()
    if user is None:
        raise MemberError(f"there is no user {username.strip()!r}: they must sign up first")
    with transaction.atomic():
        if Membership.objects.filter(project=project, user=user).exists():
            raise MemberError(f"{user.username} is a member already; change their role instead")
        return Membership.objects.create(project=project, user=user, role=role)


def member_role_change(*, project: Project, membership_id: int, role: str) -> Membership:
    """Give the member ``membership_id`` of ``project`` the ``role``.

    Raises MemberError for an unknown member or role, or when it would leave the project
    without an admin.
    """
    if role not in Role.values:
        raise MemberError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    with transaction.atomic():
        membership = _member_get(project=project, membership_id=membership_id)
        if (
            membership.role == Role.ADMIN
            and role != Role.ADMIN
            and not _admins_left(project=project, without=membership)
        ):
            raise MemberError(
                f"{membership.user.username} is the project's last admin: make someone else "
                "admin first"
            )
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def member_remove(*, project: Project, membership_id: int) -> User:
    """Remove the member ``membership_id`` from ``project``; returns the user.

    Their labels stay (labels are never lost). Raises MemberError for an unknown member, or
    when the member is the project's last admin.
    """
    with transaction.atomic():
        membership = _member_get(project=project, membership_id=membership_id)
        if membership.role == Role.ADMIN and not _admins_left(project=project, without=membership):
            raise MemberError(
                f"{membership.user.username} is the project's last admin and cannot be removed"
            )
        membership.delete()
    return membership.user


def _member_get(*, project: Project, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(project=project, pk=membership_id)
        .first()
    )
    if membership is None:
        raise MemberError(f"member {membership_id} is not part of project {project.name!r}")
    return membership


class SpeciesError(ValueError):
    """A change to the species list was refused; the message says why. Nothing was changed."""


SPECIES_NAME_MAX = 200


def _species_name_clean(*, project: Project, name: str, exclude_id: int | None = None) -> str:
    """``name`` stripped; SpeciesError when empty, too long or (case-insensitively) taken."""
    name = " ".join(name.split())
    if not name:
        raise SpeciesError("a species needs a name")
    if len(name) > SPECIES_NAME_MAX:
        raise SpeciesError(f"a species name has at most {SPECIES_NAME_MAX} characters")
    taken = Species.objects.filter(project=project, name__iexact=name)
    if exclude_id is not None:
        taken = taken.exclude(pk=exclude_id)
    if taken.exists():
        raise SpeciesError(f"the project has a species called {name!r} already")
    return name


def species_add(*, project: Project, name: str) -> Species:
    """Add a species at the end of the project's list. SpeciesError for a taken name."""
    with transaction.atomic():
        project_lock(project_id=project.pk)  # one writer
        name = _species_name_clean(project=project, name=name)
        last = project.species.order_by("-position").values_list("position", flat=True).first()
        return Species.objects.create(
            project=project, name=name, position=0 if last is None else last + 1
        )


def species_rename(*, project: Project, species_id: int, name: str) -> Species:
    """Rename a species; its labels keep pointing at it. SpeciesError for a taken name."""
    with transaction.atomic():
        project_lock(project_id=project.pk)
        species = _species_get(project=project, species_id=species_id)
        species.name = _species_name_clean(project=project, name=name, exclude_id=species.pk)
        species.save(update_fields=["name"])
    return species


@dataclass(frozen=True)
class SpeciesMergeReport:
    source: str
    target: Species
    labels: int
    consensus: int
    predictions: int
    event_predictions: int


def species_merge(*, project: Project, source_id: int, target_id: int) -> SpeciesMergeReport:
    """Merge species ``source`` into ``target``: labels follow, then ``source`` is deleted.

    In one transaction every Label, Consensus, Prediction and EventPrediction naming
    ``source`` is moved to ``target``; the consensus of every crop with a vote for ``source``
    is recomputed (two volunteers who disagreed as "fox" and "red fox" now agree), and a
    retrain is queued (the classifier's training-set digest changes, so it is not skipped).

    ``Prediction.top``/``EventPrediction.top`` JSON lists ([[species id, p], ...]) are not
    rewritten (a million rows): they may name the deleted species until the queued retrain
    replaces them, so readers of ``top`` must tolerate unknown species ids (the only reader,
    the uncertainty strategies, uses the probabilities alone).
    """
    if source_id == target_id:
        raise SpeciesError("choose two different species to merge")
    with transaction.atomic():
        project_lock(project_id=project.pk)
        source = _species_get(project=project, species_id=source_id)
        target = _species_get(project=project, species_id=target_id)
        crop_ids = list(
            Label.objects.filter(species=source).values_list("crop_id", flat=True).distinct()
        )
        labels = Label.objects.filter(species=source).update(species=target)
        consensus = Consensus.objects.filter(species=source).update(species=target)
        predictions = Prediction.objects.filter(species=source).update(species=target)
        events = EventPrediction.objects.filter(species=source).update(species=target)
        consensus_update(project=project, crop_ids=crop_ids)
        name = source.name
        source.delete()
        if labels:
            # The training set changed (its digest does), so the retrain is not skipped.
            classifier_retrain_queue(project_id=project.pk)
    return SpeciesMergeReport(
        source=name,
        target=target,
        labels=labels,
        consensus=consensus,
        predictions=predictions,
        event_predictions=events,
    )


def _species_get(*, project: Project, species_id: int) -> Species:
    species = Species.objects.filter(project=project, pk=species_id).first()
    if species is None:
        raise SpeciesError(f"species {species_id} is not in project {project.name!r}")
    return species


class AttributeChangeError(ValueError):
    """A change to the attribute list was refused; the message says why. Nothing was changed."""


ATTRIBUTE_NAME_MAX = 100
# Keys the labelling pages use already (suggestions 1-5, not an animal, unknown, skip, undo,
# zoom, search): an attribute's hotkey must not take one of them.
LABELLING_KEYS = frozenset("12345nuszx/")


def _attribute_clean(
    *, project: Project, name: str, key: str, exclude_id: int | None = None
) -> tuple[str, str]:
    """(name, key) normalised; AttributeChangeError for an empty, long or taken name, or a
    key that is not one free lowercase letter or digit."""
    name = " ".join(name.split())
    key = key.strip().lower()
    if not name:
        raise AttributeChangeError("an attribute needs a name")
    if len(name) > ATTRIBUTE_NAME_MAX:
        raise AttributeChangeError(f"an attribute name has at most {ATTRIBUTE_NAME_MAX} characters")
    if len(key) != 1 or not (key.isascii() and key.isalnum()):
        raise AttributeChangeError(f"the key must be one letter or digit, not {key!r}")
    if key in LABELLING_KEYS:
        raise AttributeChangeError(
            f"the key {key!r} is taken by the labelling page "
            f"({' '.join(sorted(LABELLING_KEYS))} are reserved)"
        )
    others = Attribute.objects.filter(project=project)
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    if others.filter(name__iexact=name).exists():
        raise AttributeChangeError(f"the project has an attribute called {name!r} already")
    taken = others.filter(key=key).first()
    if taken is not None:
        raise AttributeChangeError(f"the key {key!r} is {taken.name!r}'s already")
    return name, key


def attribute_add(*, project: Project, name: str, key: str) -> Attribute:
    """Add a yes/no attribute at the end of the project's list, with its labelling hotkey."""
    with transaction.atomic():
        project_lock(project_id=project.pk)  # one writer
        name, key = _attribute_clean(project=project, name=name, key=key)
        last = project.attributes.order_by("-position").values_list("position", flat=True).first()
        return Attribute.objects.create(
            project=project, name=name, key=key, position=0 if last is None else last + 1
        )


def attribute_update(*, project: Project, attribute_id: int, name: str, key: str) -> Attribute:
    """Rename an attribute or change its key; labels keep pointing at it (they store its id)."""
    with transaction.atomic():
        project_lock(project_id=project.pk)
        attribute = _attribute_get(project=project, attribute_id=attribute_id)
        attribute.name, attribute.key = _attribute_clean(
            project=project, name=name, key=key, exclude_id=attribute.pk
        )
        attribute.save(update_fields=["name", "key"])
    return attribute


def attribute_remove(*, project: Project, attribute_id: int) -> str:
    """Remove an attribute no label has ticked; returns its name.

    An attribute some label ticked is kept (AttributeChangeError): labels are never lost, and
    the exports name attributes by their rows. Rename it instead.
    """
    with transaction.atomic():
        project_lock(project_id=project.pk)
        attribute = _attribute_get(project=project, attribute_id=attribute_id)
        # JSON containment is not portable (SQLite has none): scan the recorded lists.
        recorded = Label.objects.filter(project=project, attributes__isnull=False)
        used = sum(
            attribute.pk in (ticked or ())
            for ticked in recorded.values_list("attributes", flat=True).iterator(chunk_size=5000)
        )
        if used:
            raise AttributeChangeError(
                f"{used} label{'s' if used != 1 else ''} ticked {attribute.name!r}, so it stays "
                "(labels are never lost); rename it if it should read differently"
            )
        name = attribute.name
        attribute.delete()
    return name


def _attribute_get(*, project: Project, attribute_id: int) -> Attribute:
    attribute = Attribute.objects.filter(project=project, pk=attribute_id).first()
    if attribute is None:
        raise AttributeChangeError(f"attribute {attribute_id} is not in project {project.name!r}")
    return attribute
