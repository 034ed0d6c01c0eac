"""Writes of the active-learning loop: rounds, labels, classifier versions and predictions."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from activelearn.classifier import classifier_predict, classifier_save, classifier_train
from activelearn.models import (
    UNCERTAINTY_STRATEGIES,
    ClassifierVersion,
    Label,
    LabelKind,
    Prediction,
    Round,
    RoundCrop,
    Strategy,
)
from activelearn.selection import select
from activelearn.selectors import classifier_latest, labels_latest_by_crop, round_open_get
from annotator.models import Project, Species
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_vectors_load, embedding_version_current
from embeddings.services import embedding_finetune_create, embedding_finetune_run

logger = logging.getLogger(__name__)


class RoundError(ValueError):
    """A round cannot start; the message says why. Nothing was changed."""


class LabelError(ValueError):
    """A label was refused; the message says why. Nothing was changed."""


def round_seed(*, project: Project, number: int) -> int:
    """The seed of round ``number``: derived from the project's seed, and stored on the round."""
    return int(np.random.SeedSequence([project.seed, number]).generate_state(1)[0] % 2**31)


def round_start(*, project: Project, user: User | None, strategy: str, size: int) -> Round:
    """Open the next round: pick up to ``size`` crops by ``strategy`` among the unlabelled ones."""
    if strategy not in Strategy.values:
        raise RoundError(
            f"unknown strategy {strategy!r}; choose one of {', '.join(Strategy.values)}"
        )
    if size < 1:
        raise RoundError("a round needs at least one crop")
    version = embedding_version_current(project=project)
    if version is None:
        raise RoundError("the project has no embeddings yet: import images and run the pipeline")
    try:
        with transaction.atomic():
            return _round_create(
                project=project, user=user, strategy=strategy, size=size, version=version
            )
    except IntegrityError as exc:
        # The partial unique index on open rounds decides races between two admins.
        raise RoundError("a round is already open for this project; finish it first") from exc


def _round_create(
    *,
    project: Project,
    user: User | None,
    strategy: str,
    size: int,
    version: EmbeddingVersion,
) -> Round:
    if round_open_get(project=project) is not None:
        raise RoundError("a round is already open for this project; finish it first")
    ids, vectors = embedding_vectors_load(version=version)
    labelled = _ids(Label.objects.filter(project=project).values_list("crop_id", flat=True))
    active = _ids(Crop.objects.filter(project=project, active=True).values_list("id", flat=True))
    labeled_mask = np.isin(ids, labelled)
    # Crops deactivated by the thresholds are never picked, but still cover their neighbours
    # if they were labelled.
    candidate_mask = np.isin(ids, active) & ~labeled_mask
    if not candidate_mask.any():
        raise RoundError("every crop is labelled already: nothing left to select")
    number = (project.rounds.aggregate(n=Max("number"))["n"] or 0) + 1
    seed = round_seed(project=project, number=number)
    selection = select(
        strategy,
        vectors,
        labeled_mask=labeled_mask,
        budget=size,
        random_state=seed,
        candidate_mask=candidate_mask,
        probabilities=_probabilities(project=project, ids=ids)
        if strategy in UNCERTAINTY_STRATEGIES
        else None,
    )
    new_round = Round.objects.create(
        project=project,
        number=number,
        strategy=strategy,
        size=size,
        seed=seed,
        embedding_version=version,
        created_by=user,
    )
    RoundCrop.objects.bulk_create(
        RoundCrop(
            round=new_round,
            crop_id=int(ids[index]),
            position=position,
            distance=None if np.isnan(distance) else float(distance),
        )
        for position, (index, distance) in enumerate(
            zip(selection.indices, selection.distances, strict=True)
        )
    )
    return new_round


def _probabilities(*, project: Project, ids: np.ndarray) -> np.ndarray:
    """(N, 5) float32 top-5 probabilities of the latest classifier for crops ``ids`` (N,).

    Rows are top-5 truncations (they sum to at most 1), which the uncertainty strategies
    expect. A crop the classifier has not seen yet (imported since) counts as fully uncertain.
    """
    classifier = classifier_latest(project=project)
    if classifier is None:
        raise RoundError("uncertainty strategies need a trained classifier: finish a round first")
    position = {int(crop_id): i for i, crop_id in enumerate(ids)}
    # Uniform over five classes: the least confident, smallest margin, high entropy.
    probs = np.full((ids.size, 5), 0.2, dtype=np.float32)
    rows = Prediction.objects.filter(classifier=classifier).values_list("crop_id", "top")
    for crop_id, top in rows.iterator(chunk_size=5000):
        if crop_id in position:
            values = [p for _, p in top][:5]
            probs[position[crop_id]] = 0.0
            probs[position[crop_id], : len(values)] = values
    return probs


def _ids(values: Iterable[int]) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64)


def label_submit(
    *,
    project: Project,
    crop_id: int,
    user: User,
    kind: str,
    species_id: int | None = None,
) -> Label:
    """Store a human label. When it completes the open round, close it and queue a retrain."""
    crop = Crop.objects.filter(project=project, pk=crop_id).first()
    if crop is None:
        raise LabelError(f"crop {crop_id} is not part of project {project.name!r}")
    species = _label_species(project=project, kind=kind, species_id=species_id)
    with transaction.atomic():
        open_round = round_open_get(project=project)
        in_round = open_round is not None and open_round.items.filter(crop=crop).exists()
        label = Label.objects.create(
            project=project,
            crop=crop,
            user=user,
            kind=kind,
            species=species,
            round=open_round if in_round else None,
        )
        if open_round is not None and in_round:
            _round_close_if_done(round_=open_round)
        embedding_finetune_queue(project=project)
    return label


def _label_species(*, project: Project, kind: str, species_id: int | None) -> Species | None:
    if kind not in LabelKind.values:
        raise LabelError(f"unknown label kind {kind!r}")
    if kind != LabelKind.SPECIES:
        return None
    if species_id is None:
        raise LabelError("a species label needs a species")
    species = Species.objects.filter(project=project, pk=species_id).first()
    if species is None:
        raise LabelError(f"species {species_id} is not in project {project.name!r}")
    return species


def _round_close_if_done(*, round_: Round) -> None:
    remaining = round_.items.exclude(crop__labels__isnull=False).exists()
    if remaining:
        return
    round_.status = Round.Status.CLOSED
    round_.closed_at = timezone.now()
    round_.save(update_fields=["status", "closed_at"])
    classifier_retrain_queue(project_id=round_.project_id)


def classifier_retrain_queue(*, project_id: int) -> None:
    """Queue a retrain once the current transaction commits."""
    from activelearn.tasks import classifier_retrain_task

    transaction.on_commit(lambda: classifier_retrain_task.delay(project_id))


def classifier_retrain(*, project_id: int) -> ClassifierVersion | None:
    """Train the classifier on every species label and predict every crop of the project.

    Returns None when there is nothing to train on. Safe to run twice: when neither the labels
    nor the embedding version changed since the last classifier, that classifier is returned.
    """
    project = Project.objects.get(pk=project_id)
    version = embedding_version_current(project=project)
    if version is None:
        return None
    latest = labels_latest_by_crop(project=project)
    species_labels = {
        crop: sp for crop, (kind, sp, _) in latest.items() if kind == "species" and sp is not None
    }
    if not species_labels:
        return None
    last_label_id = max(label_id for _, _, label_id in latest.values())
    previous = project.classifier_versions.order_by("-number").first()
    if (
        previous is not None
        and previous.last_label_id == last_label_id
        and previous.embedding_version_id == version.pk
    ):
        return previous
    return _classifier_fit_and_predict(
        project=project,
        version=version,
        species_labels=species_labels,
        last_label_id=last_label_id,
        previous_number=previous.number if previous else 0,
    )


def _classifier_fit_and_predict(
    *,
    project: Project,
    version: EmbeddingVersion,
    species_labels: dict[int, int],
    last_label_id: int,
    previous_number: int,
) -> ClassifierVersion:
    ids, vectors = embedding_vectors_load(version=version)
    position = {int(crop_id): i for i, crop_id in enumerate(ids)}
    train_crops = [c for c in species_labels if c in position]
    x_train = vectors[[position[c] for c in train_crops]]
    y_train = np.asarray([species_labels[c] for c in train_crops], dtype=np.int64)
    number = previous_number + 1
    seed = round_seed(project=project, number=10_000 + number)
    started = time.perf_counter()
    clf = classifier_train(x_train, y_train, random_state=seed)
    train_seconds = time.perf_counter() - started
    relative = f"projects/{project.pk}/classifiers/v{number}.joblib"
    path = Path(settings.TRAPWISE_DATA_DIR) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    classifier_save(clf, path)
    predictions = classifier_predict(clf, vectors)
    with transaction.atomic():
        classifier = ClassifierVersion.objects.create(
            project=project,
            number=number,
            embedding_version=version,
            round=project.rounds.filter(status=Round.Status.CLOSED).order_by("-number").first(),
            last_label_id=last_label_id,
            n_labels=len(train_crops),
            n_classes=len(clf.classes),
            seed=seed,
            path=relative,
            train_seconds=train_seconds,
        )
        Prediction.objects.bulk_create(
            (
                Prediction(
                    crop_id=int(crop_id),
                    classifier=classifier,
                    species_id=int(labels[0]),
                    confidence=float(probs[0]),
                    top=[[int(s), round(float(p), 6)] for s, p in zip(labels, probs, strict=True)],
                )
                for crop_id, labels, probs in zip(
                    ids, predictions.top_labels, predictions.top_probs, strict=True
                )
            ),
            batch_size=2000,
        )
    return classifier


class FinetuneError(ValueError):
    """A fine-tuning run cannot start; the message says why. Nothing was changed."""


def embedding_finetune_queue(*, project: Project, force: bool = False) -> EmbeddingVersion | None:
    """Queue fine-tuning of the embedding when ``finetune_every`` species labels are new.

    ``force`` (an admin's button) skips the count. At most one version is fine-tuned at a time;
    returns the version queued, or None when none is due.
    """
    current = embedding_version_current(project=project)
    if current is None or (project.finetune_every == 0 and not force):
        return None
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one queuer at a time
    building = EmbeddingVersion.objects.filter(
        project=project, status=EmbeddingVersion.Status.BUILDING
    )
    if building.exists():
        if force:
            raise FinetuneError("the embedding is being fine-tuned already")
        return None
    species_labels = Label.objects.filter(project=project, kind=LabelKind.SPECIES)
    new_labels = species_labels.filter(id__gt=current.last_label_id).count()
    if not force and new_labels < project.finetune_every:
        return None
    if species_labels.values("species_id").distinct().count() < 2:
        if force:
            raise FinetuneError("fine-tuning needs labels of at least two species")
        return None
    last_label_id = Label.objects.filter(project=project).aggregate(n=Max("id"))["n"] or 0
    version = embedding_finetune_create(
        project=project, parent=current, last_label_id=last_label_id
    )
    from activelearn.tasks import embedding_finetune_task

    transaction.on_commit(lambda: embedding_finetune_task.delay(version.pk))
    return version


def embedding_finetune_and_retrain(*, version_id: int) -> ClassifierVersion | None:
    """Fine-tune the embedding on every species label, switch to it, then retrain the classifier.

    Labels that arrive while it trains count toward the next fine-tuning and the next retrain;
    none is lost.
    """
    version = EmbeddingVersion.objects.select_related("project").get(pk=version_id)
    latest = labels_latest_by_crop(project=version.project)
    pairs = sorted(
        (crop, species)
        for crop, (kind, species, _) in latest.items()
        if kind == LabelKind.SPECIES and species is not None
    )
    crop_ids = np.asarray([c for c, _ in pairs], dtype=np.int64)
    labels = np.asarray([s for _, s in pairs], dtype=np.int64)
    embedding_finetune_run(version_id=version_id, crop_ids=crop_ids, labels=labels)
    return classifier_retrain(project_id=version.project_id)
