"""Retraining the species classifier: requests, the queue, and the retrain itself. A retrain
cross-validates each candidate classifier (``CANDIDATES``: class-balanced logistic regression,
and the project's MLP ensemble of ``ensemble_size``) on every species label of the current
embedding version, folds grouped by capture event, and keeps the one whose held-out
predictions, combined over each capture event (``activelearn.events``), score the better top-1
(ties to the first). Its probabilities are calibrated by a temperature fitted on those held-out
predictions; the threshold and the reports come from them too. It trains the attribute head
when enough crops have attributes, and stores for every crop its probabilities combined with
its capture event's (the version records the weight), and a prediction per capture event. It
runs in a Celery task, queued by name (``RETRAIN_TASK``) through the outbox:
``activelearn.tasks`` imports this package, so this package never imports it. One retrain per
project runs at a time (``locks.retrain_lock``), and a retrain with nothing new returns the
current classifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from django.db import transaction

from activelearn.attributes import AttributeHead, attributes_head_fit
from activelearn.choice import CANDIDATES, classifier_choose
from activelearn.classifier import (
    classifier_save,
    ensemble_member_path,
    ensemble_predict_proba,
    ensemble_train,
    probabilities_top_k,
)
from activelearn.evaluation import (
    CrossValidated,
    EvaluationError,
    accuracy_threshold,
    event_probabilities,
)
from activelearn.events import DEFAULT_EVENT_WEIGHT, event_probabilities_combine
from activelearn.metrics import ClassificationMetrics, MetricsError, classification_metrics
from activelearn.models import ClassifierVersion, Consensus, Label, LabelKind, Round
from activelearn.selectors import classifier_latest, labels_for_training
from activelearn.services.audit import classifier_gate, thresholds_per_species_compute
from activelearn.services.errors import LabelError
from activelearn.services.locks import retrain_lock
from activelearn.services.predictions import (
    event_predictions_store,
    predictions_prune,
    predictions_store,
)
from activelearn.services.rounds import ids_array, round_seed
from activelearn.thresholds import thresholds_accept
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_vectors_load, embedding_version_current
from projects.jobs import JobTracker, job_track
from projects.models import Attribute, Job, Project
from projects.sequences import capture_event
from projects.storage import stored_write
from projects.taskqueue import task_enqueue

__all__ = [
    "ATTRIBUTE_MIN_CROPS",
    "CANDIDATES",
    "CV_FOLDS",
    "PREDICTION_VERSIONS_KEPT",
    "RETRAIN_TASK",
    "classifier_retrain",
    "classifier_retrain_queue",
    "classifier_retrain_request",
    "labels_digest",
]

logger = logging.getLogger(__name__)

# The Celery task that runs ``classifier_retrain``, by name (``activelearn.tasks`` defines it
# and imports this package, so importing it here would be a cycle).
RETRAIN_TASK = "activelearn.tasks.classifier_retrain_task"

# Folds of the cross-validation behind the choice of classifier, thresholding and the curve.
CV_FOLDS = 5
# Dashboard steps of a retrain: start, the folds of each candidate, predict, store, done.
RETRAIN_STEPS = 4 + len(CANDIDATES) * CV_FOLDS
# Classifier versions whose crop predictions are kept (older ones are pruned).
PREDICTION_VERSIONS_KEPT = 3
# The attribute head is trained once this many decided species crops have attributes recorded:
# with fewer, its cross-validated scores would mean nothing.
ATTRIBUTE_MIN_CROPS = 10


def classifier_retrain_request(*, project: Project) -> None:
    """An admin's "Retrain now": queue a retrain if there is anything to train on.

    Raises LabelError when the project has no species label yet. A retrain with nothing new
    keeps the current classifier (the task is idempotent), so pressing twice costs nothing.
    """
    if not Label.objects.filter(project=project, kind=LabelKind.SPECIES).exists():
        raise LabelError("nothing to train on yet: label some crops with a species first")
    classifier_retrain_queue(project_id=project.pk)


def classifier_retrain_queue(*, project_id: int) -> None:
    """Queue a retrain once the current transaction commits (kept if the broker is down)."""
    task_enqueue(name=RETRAIN_TASK, args=[project_id])


def classifier_retrain(*, project_id: int) -> ClassifierVersion | None:
    """Train the classifier on every species label and predict every crop of the project.

    One retrain per project runs at a time (``locks.retrain_lock``).
    """
    with retrain_lock(project_id=project_id):
        return _classifier_retrain(project_id=project_id)


def _classifier_retrain(*, project_id: int) -> ClassifierVersion | None:
    """Train the classifier on every species label and predict every crop of the project.

    Returns None when there is nothing to train on. Safe to run twice: when neither the labels,
    the embedding version nor the class balance and ensemble settings changed since the last
    classifier, that classifier is returned.
    """
    project = Project.objects.get(pk=project_id)
    version = embedding_version_current(project=project)
    if version is None:
        return None
    # Higher taxa ("rodent") are not species: they train nothing (``activelearn.taxa``).
    latest = labels_for_training(project=project)
    if not any(kind == LabelKind.SPECIES for kind, _, _ in latest.values()):
        return None
    last_label_id = max(label_id for _, _, label_id in latest.values())
    digest = _attributes_digest(project=project, digest=labels_digest(latest))
    previous = project.classifier_versions.order_by("-number").first()
    if (
        previous is not None
        and previous.labels_digest == digest
        and previous.embedding_version_id == version.pk
        and previous.class_balance == project.class_balance
        and previous.ensemble_size == project.ensemble_size
    ):
        return previous
    number = (previous.number if previous else 0) + 1
    with job_track(
        project=project,
        kind=Job.Kind.RETRAIN,
        total=RETRAIN_STEPS,
        detail=f"classifier v{number}: loading the labelled crops",
    ) as job:
        return _classifier_fit_and_predict(
            project=project,
            version=version,
            latest=latest,
            last_label_id=last_label_id,
            digest=digest,
            previous_number=previous.number if previous else 0,
            job=job,
        )


def _attributes_digest(*, project: Project, digest: str) -> str:
    """``digest`` extended with the decided crops' attributes, so that a changed attribute
    (with the same species) retrains too; unchanged while no crop has attributes recorded."""
    rows = (
        Consensus.objects.filter(
            project=project, status=Consensus.Status.DONE, attributes__isnull=False
        )
        .order_by("crop_id")
        .values_list("crop_id", "attributes")
    )
    hasher = hashlib.sha256(digest.encode())
    seen = False
    for crop_id, ticked in rows.iterator(chunk_size=10_000):
        seen = True
        hasher.update(f"{crop_id}:{sorted(ticked or [])};".encode())
    return hasher.hexdigest() if seen else digest


def labels_digest(latest: dict[int, tuple[str, int | None, int]]) -> str:
    """SHA-256 (hex) of the sorted (crop id, species id) pairs of the species labels in
    ``latest`` (as ``labels_latest_by_crop``): equal digests, equal training sets."""
    pairs = np.asarray(
        sorted(
            (crop, species)
            for crop, (kind, species, _) in latest.items()
            if kind == LabelKind.SPECIES and species is not None
        ),
        dtype=np.int64,
    )
    return hashlib.sha256(pairs.tobytes()).hexdigest()


@dataclass(frozen=True)
class _TrainingSet:
    """The labelled crops of the current embedding version, rows aligned."""

    ids: np.ndarray  # (N,) int64 crop ids of the version
    vectors: np.ndarray  # (N, d) float32
    rows: np.ndarray  # (L,) int64 rows of the labelled crops with a species label
    labels: np.ndarray  # (L,) int64 species ids
    events: np.ndarray  # (N,) str capture event of every crop
    unlabelled: np.ndarray  # (N,) bool active crops without any human label


def _training_set(
    *, project: Project, version: EmbeddingVersion, latest: dict[int, tuple[str, int | None, int]]
) -> _TrainingSet:
    ids, vectors = embedding_vectors_load(version=version)
    position = {int(crop_id): i for i, crop_id in enumerate(ids)}
    pairs = sorted(
        (position[crop], species)
        for crop, (kind, species, _) in latest.items()
        if kind == LabelKind.SPECIES and species is not None and crop in position
    )
    events, active = _crop_events_and_active(project=project, ids=ids)
    return _TrainingSet(
        ids=ids,
        vectors=vectors,
        rows=np.asarray([r for r, _ in pairs], dtype=np.int64),
        labels=np.asarray([sp for _, sp in pairs], dtype=np.int64),
        events=events,
        unlabelled=active & ~np.isin(ids, ids_array(latest.keys())),
    )


def _classifier_fit_and_predict(
    *,
    project: Project,
    version: EmbeddingVersion,
    latest: dict[int, tuple[str, int | None, int]],
    last_label_id: int,
    digest: str,
    previous_number: int,
    job: JobTracker | None = None,
) -> ClassifierVersion:
    data = _training_set(project=project, version=version, latest=latest)
    number = previous_number + 1
    if job is not None:
        job.step(1, f"classifier v{number}: training on {data.rows.size} labelled crops")
    seed = round_seed(project=project, number=10_000 + number)
    relative = f"projects/{project.pk}/classifiers/v{number}.joblib"
    # The model and the files beside it (ensemble members, .cv.npz, .attributes.joblib) are
    # files of the data store named after ``relative``.
    name = PurePosixPath(relative)
    choice = _classifier_choose(project=project, data=data, seed=seed, name=name, job=job)
    started = time.perf_counter()
    members = [
        dataclasses.replace(member, temperature=choice.temperature)
        for member in ensemble_train(
            data.vectors[data.rows],
            data.labels,
            random_state=seed,
            class_balance=project.class_balance,
            size=project.ensemble_size,
            backend=choice.backend,
        )
    ]
    clf = members[0]
    train_seconds = time.perf_counter() - started
    for k, member in enumerate(members):  # as ensemble_save lays them out
        with stored_write(kind="data", name=str(ensemble_member_path(name, k))) as local:
            classifier_save(member, local)
    if job is not None:
        job.step(RETRAIN_STEPS - 2, f"classifier v{number}: predicting {data.ids.size} crops")
    started = time.perf_counter()
    probs, classes = ensemble_predict_proba(members, data.vectors)
    combined = event_probabilities_combine(probs, data.events)
    top_labels, top_probs = probabilities_top_k(combined.probabilities, classes=classes, k=5)
    events = event_probabilities(probs, data.events)
    del probs, combined
    predict_seconds = time.perf_counter() - started
    quality = choice.quality
    # The live classifier stays live unless the new one is not worse on its audit labels.
    gate = classifier_gate(
        parent=classifier_latest(project=project),
        crop_ids=data.ids[data.rows],
        cv_correct=choice.cv.correct if choice.cv is not None else None,
    )
    head = _attribute_head_fit(project=project, data=data, seed=seed, name=name)
    if job is not None:
        job.step(RETRAIN_STEPS - 1, f"classifier v{number}: storing {data.ids.size} predictions")
    with transaction.atomic():
        classifier = ClassifierVersion.objects.create(
            project=project,
            number=number,
            embedding_version=version,
            round=project.rounds.filter(status=Round.Status.CLOSED).order_by("-number").first(),
            last_label_id=last_label_id,
            labels_digest=digest,
            n_labels=int(data.rows.size),
            n_classes=len(classes),
            algorithm=clf.algorithm,
            class_balance=clf.class_balance,
            ensemble_size=len(members),
            seed=seed,
            path=relative,
            temperature=choice.temperature,
            event_weight=DEFAULT_EVENT_WEIGHT,
            candidates=choice.scores,
            gate=gate,
            status=ClassifierVersion.Status.READY
            if gate["decision"] == "kept"
            else ClassifierVersion.Status.REJECTED,
            train_seconds=train_seconds,
            predict_seconds=predict_seconds,
            n_iter=clf.n_iter,
            converged=clf.converged,
            n_unlabelled=int(data.unlabelled.sum()),
            auto_accept_share=_auto_accept_share(
                species=top_labels[data.unlabelled, 0],
                confidence=top_probs[data.unlabelled, 0],
                quality=quality,
            ),
            **quality,
            **_attribute_head_fields(head),
        )
        predictions_store(
            classifier=classifier,
            ids=data.ids,
            top_labels=top_labels,
            top_probs=top_probs,
            attributes=head.crop_json if head is not None else None,
        )
        event_predictions_store(
            classifier=classifier,
            events=events,
            classes=classes,
            attributes=head.event_json if head is not None else None,
        )
    predictions_prune(project=project, keep=PREDICTION_VERSIONS_KEPT)
    return classifier


def _auto_accept_share(
    *, species: np.ndarray, confidence: np.ndarray, quality: dict[str, Any]
) -> float:
    """Share of the (U,) unlabelled crops' machine labels (species ids, confidences) that
    are auto-accepted: each species at its own threshold where it has one, else the global."""
    if confidence.size == 0:
        return 0.0
    accepted = thresholds_accept(
        species=species,
        confidence=confidence,
        per_species={int(k): v for k, v in (quality.get("thresholds_per_species") or {}).items()},
        global_threshold=quality.get("threshold"),
    )
    return float(accepted.mean())


def _crop_events_and_active(*, project: Project, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) str capture event (``capture_event``) and (N,) bool active flag of each crop id.

    One pass over the project's crops: at a million crops each pass costs seconds.
    """
    event_of: dict[int, str] = {}
    active: set[int] = set()
    rows = Crop.objects.filter(project=project).values_list(
        "id", "image_id", "image__seq_id", "active"
    )
    for crop_id, image_id, seq_id, is_active in rows.iterator(chunk_size=10_000):
        event_of[crop_id] = capture_event(seq_id=seq_id, image_id=image_id)
        if is_active:
            active.add(crop_id)
    events = np.asarray([event_of.get(int(c), f"crop-{c}") for c in ids], dtype=object)
    return events.astype(str), np.isin(ids, ids_array(active))


@dataclass(frozen=True)
class _Choice:
    """The classifier a retrain keeps (``activelearn.choice``), its temperature, and the version
    fields from its held-out predictions (``quality``) and each candidate's scores."""

    backend: str
    temperature: float
    quality: dict[str, Any]
    scores: dict[str, Any]
    # The kept candidate's held-out predictions of the labelled crops (None: too few labels).
    cv: CrossValidated | None = None


def _classifier_choose(
    *,
    project: Project,
    data: _TrainingSet,
    seed: int,
    name: PurePosixPath,
    job: JobTracker | None = None,
) -> _Choice:
    """``activelearn.choice.classifier_choose`` on the labelled crops, folds grouped by capture
    event (frames of one burst never sit on both sides). The kept candidate's held-out
    predictions, tempered and pooled over each event as the stored predictions are, give the
    threshold and the reports; its per-crop confidences and hits, and the predicted and true
    species ids (for the confusion matrix), are saved next to the model (``.cv.npz``) so that a
    new target accuracy needs no retraining. ``job`` gets one step per fold of each candidate
    (steps 2 onwards).
    """
    steps = iter(range(2, 2 + len(CANDIDATES) * CV_FOLDS))
    folds: dict[str, int] = {}

    def on_fold(backend: str) -> None:
        folds[backend] = folds.get(backend, 0) + 1
        step = next(steps, 1 + len(CANDIDATES) * CV_FOLDS)
        if job is not None:
            job.step(step, f"cross-validating: fold {folds[backend]} ({backend})")

    started = time.perf_counter()
    try:
        choice = classifier_choose(
            data.vectors[data.rows],
            data.labels,
            groups=data.events[data.rows],
            random_state=seed,
            candidates=CANDIDATES,
            class_balance=project.class_balance,
            ensemble_size=project.ensemble_size,
            n_splits=CV_FOLDS,
            on_fold=on_fold,
        )
    except EvaluationError as exc:
        logger.info("no cross-validation for project %s: %s", project.pk, exc)
        return _Choice(CANDIDATES[0], 1.0, {"target_accuracy": project.target_accuracy}, {})
    quality = _cv_quality(project=project, cv=choice.cv, data=data, name=name, started=started)
    return _Choice(choice.backend, choice.temperature, quality, choice.scores, choice.cv)


def _cv_quality(
    *,
    project: Project,
    cv: CrossValidated,
    data: _TrainingSet,
    name: PurePosixPath,
    started: float,
) -> dict[str, Any]:
    """ClassifierVersion fields from the kept candidate's held-out predictions ``cv``."""
    metrics = _cv_metrics(project=project, cv=cv, data=data)
    # Published whole like the model file: a worker killed mid-write leaves no truncated file.
    cv_name = str(name.with_suffix(".cv.npz"))
    with stored_write(kind="data", name=cv_name) as local, local.open("wb") as handle:
        np.savez(
            handle,
            confidence=cv.confidence,
            correct=cv.correct,
            predicted=cv.predicted,
            true=data.labels,
            **_cv_metrics_arrays(metrics),
        )
    threshold = accuracy_threshold(cv.confidence, cv.correct, target=project.target_accuracy)
    per_species = thresholds_per_species_compute(
        project=project,
        cv_predicted=cv.predicted,
        cv_confidence=cv.confidence,
        cv_correct=cv.correct,
        target=project.target_accuracy,
    )
    return {
        "cv_accuracy": float(cv.correct.mean()),
        "cv_top5_accuracy": cv.top5_accuracy,
        "cv_n_splits": cv.n_splits,
        "cv_seconds": time.perf_counter() - started,
        "target_accuracy": project.target_accuracy,
        "threshold": threshold.threshold,
        "threshold_accuracy": threshold.accuracy_at_threshold,
        "thresholds_per_species": per_species,
        **_cv_metrics_fields(metrics),
    }


def _cv_metrics(
    *, project: Project, cv: CrossValidated, data: _TrainingSet
) -> ClassificationMetrics | None:
    """``activelearn.metrics`` on the out-of-fold probabilities, events for event accuracy;
    None (logged) when they cannot be scored, so a retrain never fails on its report."""
    try:
        return classification_metrics(
            cv.probabilities, data.labels, classes=cv.classes, events=data.events[data.rows]
        )
    except MetricsError as exc:
        logger.warning("no cross-validated metrics for project %s: %s", project.pk, exc)
        return None


def _cv_metrics_fields(metrics: ClassificationMetrics | None) -> dict[str, Any]:
    """ClassifierVersion fields from ``metrics``: the summary, per species {id: [accuracy or
    null, support]}, and the learning curve's top-1 / top-5 from the same computation."""
    if metrics is None:
        return {}
    return {
        "cv_accuracy": metrics.top1,
        "cv_top5_accuracy": metrics.top5,
        "cv_metrics": metrics.summary(),
        "cv_per_species": {
            str(label): [accuracy, support]
            for label, (accuracy, support) in metrics.per_class().items()
        },
    }


def _cv_metrics_arrays(metrics: ClassificationMetrics | None) -> dict[str, Any]:
    """What the ``.cv.npz`` keeps of ``metrics`` (arrays by name): the confusion matrix and
    its classes, which the admin page draws without recomputing."""
    if metrics is None:
        return {}
    return {"confusion": metrics.confusion, "confusion_classes": metrics.classes}


def _attribute_head_fit(
    *, project: Project, data: _TrainingSet, seed: int, name: PurePosixPath
) -> AttributeHead | None:
    """Train, cross-validate and apply the attribute head, when enough crops have attributes
    (None otherwise: fewer than ``ATTRIBUTE_MIN_CROPS``, or no attribute at all).

    Training rows: crops of the embedding version whose consensus is done as a species and
    records attributes (``Consensus.attributes`` not null); the targets are the project's
    current attributes (ids of removed attributes are ignored). The head is saved beside the
    classifier (``.attributes.joblib``); its cross-validated scores (folds grouped by capture
    event, probability > 0.5 is yes) go to ``attribute_metrics`` (``attributes_head_fit``).
    """
    attributes = list(Attribute.objects.filter(project=project).values_list("id", "name"))
    decided = Consensus.objects.filter(
        project=project,
        status=Consensus.Status.DONE,
        kind=LabelKind.SPECIES,
        attributes__isnull=False,
    ).values_list("crop_id", "attributes")
    position = {int(crop_id): i for i, crop_id in enumerate(data.ids.tolist())}
    recorded = {
        position[crop_id]: set(ticked or ())
        for crop_id, ticked in decided.iterator(chunk_size=10_000)
        if crop_id in position
    }
    if not attributes or len(recorded) < ATTRIBUTE_MIN_CROPS:
        return None
    rows = np.asarray(sorted(recorded), dtype=np.int64)
    ids = [a for a, _ in attributes]
    truth = np.asarray([[a in recorded[int(r)] for a in ids] for r in rows], dtype=bool)
    with stored_write(kind="data", name=str(name.with_suffix(".attributes.joblib"))) as local:
        return attributes_head_fit(
            data.vectors,
            rows=rows,
            truth=truth,
            events=data.events,
            ids=ids,
            names=[n for _, n in attributes],
            random_state=seed,
            n_splits=CV_FOLDS,
            path=local,
        )


def _attribute_head_fields(head: AttributeHead | None) -> dict[str, object]:
    """ClassifierVersion's ``attribute_ids`` and ``attribute_metrics`` for ``head``; none
    without a head (the version keeps the fields' defaults)."""
    if head is None:
        return {}
    return {"attribute_ids": head.ids, "attribute_metrics": head.metrics}
