"""Writes of the active-learning loop: rounds, labels, classifier versions and predictions."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from activelearn.attributes import (
    AttributeHeadError,
    attributes_cross_validate,
    attributes_probabilities,
    attributes_save,
    attributes_train,
)
from activelearn.classifier import (
    TrainedClassifier,
    classifier_probabilities,
    classifier_save,
    classifier_train,
    probabilities_average,
    probabilities_top_k,
)
from activelearn.consensus import attributes_decide, consensus_decide
from activelearn.evaluation import (
    CrossValidated,
    EvaluationError,
    EventProbabilities,
    accuracy_threshold,
    coverage_at,
    cross_validated_probabilities,
    event_probabilities,
)
from activelearn.metrics import (
    ClassificationMetrics,
    MetricsError,
    classification_metrics,
    multilabel_metrics,
)
from activelearn.models import (
    UNCERTAINTY_STRATEGIES,
    ClassifierVersion,
    Consensus,
    CropClaim,
    EventPrediction,
    Label,
    LabelKind,
    Prediction,
    Round,
    RoundCrop,
    Strategy,
)
from activelearn.selection import min_sq_distances_update, select
from activelearn.selectors import classifier_latest, labels_latest_by_crop, round_open_get
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import (
    embedding_vectors_dir,
    embedding_vectors_load,
    embedding_version_current,
)
from embeddings.services import embedding_finetune_create, embedding_finetune_run
from projects.atomic import atomic_path
from projects.jobs import JobTracker, job_track
from projects.models import Attribute, ClassBalance, Job, Project, Species
from projects.sequences import capture_event
from projects.taskqueue import task_enqueue

logger = logging.getLogger(__name__)

# The Celery tasks this module queues, by name (``activelearn.tasks`` defines them and imports
# this module, so importing them here would be a cycle).
RETRAIN_TASK = "activelearn.tasks.classifier_retrain_task"
FINETUNE_TASK = "activelearn.tasks.embedding_finetune_task"

# Folds of the cross-validation behind thresholding and the learning curve.
CV_FOLDS = 5
# Classifier versions whose crop predictions are kept (older ones are pruned).
PREDICTION_VERSIONS_KEPT = 3
# Crops per batch when consensus rows are recomputed.
CONSENSUS_CHUNK = 2000
# Consensus states that take a crop out of its round's queue.
_SETTLED = frozenset({Consensus.Status.DONE, Consensus.Status.REVIEW})


class RoundError(ValueError):
    """A round cannot start; the message says why. Nothing was changed."""


class LabelError(ValueError):
    """A label was refused; the message says why. Nothing was changed."""


def round_seed(*, project: Project, number: int) -> int:
    """The seed of round ``number``: derived from the project's seed, and stored on the round."""
    return int(np.random.SeedSequence([project.seed, number]).generate_state(1)[0] % 2**31)


# The strategy of every round after the first when the admin does not choose one.
DEFAULT_STRATEGY = Strategy.K_CENTER

# Strategies that use the per-version k-Center min-distance cache.
_CACHED_STRATEGIES = frozenset({"k_center", "hybrid", "species"})
# Round strategies that run another selection function on restricted candidates: a species
# round is k-Center greedy among the crops predicted as the target species.
_SELECTION_OF = {str(Strategy.SPECIES): "k_center"}


def round_strategy_default(*, project: Project) -> str:
    """The strategy a new round uses unless the admin picks one: the project's first-round
    strategy (random by default) before any round, the default strategy after."""
    if not project.rounds.exists():
        return project.first_round_strategy
    return str(DEFAULT_STRATEGY)


def round_start(
    *,
    project: Project,
    user: User | None,
    strategy: str | None = None,
    size: int,
    target_species: Species | None = None,
) -> Round:
    """Open the next round: pick up to ``size`` crops by ``strategy`` among the unlabelled ones.

    ``strategy`` None means ``round_strategy_default``. Crops with any label (species, not an
    animal, unknown) count as covered and are never picked again. The "species" strategy needs
    ``target_species`` (one of the project's, and only with that strategy): it runs k-Center
    greedy among the active unlabelled crops the latest classifier predicts as that species.
    """
    if strategy is None:
        strategy = round_strategy_default(project=project)
    if strategy not in Strategy.values:
        raise RoundError(
            f"unknown strategy {strategy!r}; choose one of {', '.join(Strategy.values)}"
        )
    if size < 1:
        raise RoundError("a round needs at least one crop")
    _round_target_check(project=project, strategy=strategy, target_species=target_species)
    version = embedding_version_current(project=project)
    if version is None:
        raise RoundError("the project has no embeddings yet: import images and run the pipeline")
    try:
        with transaction.atomic():
            return _round_create(
                project=project,
                user=user,
                strategy=strategy,
                size=size,
                version=version,
                target_species=target_species,
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
    target_species: Species | None = None,
) -> Round:
    if round_open_get(project=project) is not None:
        raise RoundError("a round is already open for this project; finish it first")
    ids, vectors = embedding_vectors_load(version=version)
    # Crops with any vote count as covered: decided, disputed or waiting for more votes.
    labelled = _ids(Consensus.objects.filter(project=project).values_list("crop_id", flat=True))
    active = _ids(Crop.objects.filter(project=project, active=True).values_list("id", flat=True))
    labeled_mask = np.isin(ids, labelled)
    # Crops deactivated by the thresholds are never picked, but still cover their neighbours
    # if they were labelled.
    candidate_mask = np.isin(ids, active) & ~labeled_mask
    if target_species is not None:
        candidate_mask &= _species_round_candidates(
            project=project, target_species=target_species, ids=ids
        )
    if not candidate_mask.any():
        raise RoundError("every crop is labelled already: nothing left to select")
    number = (project.rounds.aggregate(n=Max("number"))["n"] or 0) + 1
    seed = round_seed(project=project, number=number)
    selection = select(
        _SELECTION_OF.get(strategy, strategy),
        vectors,
        labeled_mask=labeled_mask,
        budget=size,
        random_state=seed,
        candidate_mask=candidate_mask,
        probabilities=_probabilities(project=project, ids=ids)
        if strategy in UNCERTAINTY_STRATEGIES
        else None,
        min_sq_distances=kcenter_cache_update(version=version, ids=ids, vectors=vectors)
        if strategy in _CACHED_STRATEGIES and labeled_mask.any()
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
        target_species=target_species,
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


def _round_target_check(*, project: Project, strategy: str, target_species: Species | None) -> None:
    """Refuse a species round without a target of the project's, and a target elsewhere."""
    if strategy == Strategy.SPECIES and target_species is None:
        raise RoundError("a species round needs a target species: choose one")
    if strategy != Strategy.SPECIES and target_species is not None:
        raise RoundError(f"a target species goes with the {Strategy.SPECIES.label!r} strategy only")
    if target_species is not None and target_species.project_id != project.pk:
        raise RoundError(f"species #{target_species.pk} is not a species of this project")


def _species_round_candidates(
    *, project: Project, target_species: Species, ids: np.ndarray
) -> np.ndarray:
    """(N,) bool: the crops of ``ids`` whose latest classifier top-1 is ``target_species``.

    Raises RoundError without a classifier, or when no active unlabelled crop is predicted as
    the species (the caller intersects with the unlabelled active crops; this checks both).
    """
    classifier = classifier_latest(project=project)
    if classifier is None:
        raise RoundError(
            "a species round picks among the crops the classifier predicts as that species: "
            "there is no classifier yet, finish a round first"
        )
    predicted = Prediction.objects.filter(
        classifier=classifier,
        species=target_species,
        crop__active=True,
        crop__consensus__isnull=True,
    ).values_list("crop_id", flat=True)
    mask = np.isin(ids, _ids(predicted.iterator(chunk_size=20_000)))
    if not mask.any():
        raise RoundError(
            f"no unlabelled crop is predicted as {target_species.name!r} by classifier "
            f"v{classifier.number}: choose another species or strategy"
        )
    return mask


def kcenter_cache_update(
    *, version: EmbeddingVersion, ids: np.ndarray, vectors: np.ndarray
) -> np.ndarray:
    """(N,) float32 squared distance of each crop of ``version`` to the labelled crops.

    Kept per embedding version next to its vectors (``kcenter_min_sq.npy`` + a JSON note of
    the newest label folded in). Each call folds in only the crops labelled since, so a round
    costs O(N x new labels), never O(N x all labels); the files are replaced atomically.
    ``ids`` (N,) and ``vectors`` (N, d) are the version's, as ``embedding_vectors_load``.
    """
    folder = embedding_vectors_dir(version=version)
    cache_file, note_file = folder / "kcenter_min_sq.npy", folder / "kcenter_min_sq.json"
    cache: np.ndarray | None = None
    since = 0
    note: dict[str, int] = {}
    if cache_file.exists() and note_file.exists():
        note = json.loads(note_file.read_text())
        cached = np.load(cache_file)
        if note.get("n") == ids.size and cached.shape == (ids.size,):
            cache, since = cached, int(note["last_label_id"])
    # An undone label can uncover a crop, which a running minimum cannot forget: rebuild then.
    undone = Label.objects.filter(project_id=version.project_id, undone_at__isnull=False).count()
    if cache is not None and note.get("undone", 0) != undone:
        cache, since = None, 0
    covered = Consensus.objects.filter(project_id=version.project_id, label_id__gt=since)
    last_label_id = covered.aggregate(n=Max("label_id"))["n"]
    if cache is not None and last_label_id is None:
        return cache
    rows = np.flatnonzero(np.isin(ids, _ids(covered.values_list("crop_id", flat=True))))
    cache = min_sq_distances_update(vectors, min_sq=cache, new_rows=rows)
    with atomic_path(cache_file) as tmp, tmp.open("wb") as handle:
        np.save(handle, cache)
    note = {"n": int(ids.size), "last_label_id": last_label_id or since, "undone": undone}
    with atomic_path(note_file) as tmp:
        tmp.write_text(json.dumps(note))
    return cache


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
    idempotency_key: str = "",
    attributes: Sequence[int] | None = None,
) -> Label:
    """Store a volunteer's vote on a crop and update the crop's consensus.

    A volunteer's newer label on the same crop replaces their earlier vote (the row stays).
    When the vote decides the last crop of the open round, the round closes and a retrain is
    queued. Raises LabelError (and stores nothing) for a crop of another project, an unknown
    kind or a species not in the project. With an ``idempotency_key``, a repeat of the same
    submission returns the stored label and stores nothing (see ``labels_submit``).
    ``attributes``: the ids of the project's attributes ticked yes (see ``labels_submit``).
    """
    return labels_submit(
        project=project,
        crop_ids=[crop_id],
        user=user,
        kind=kind,
        species_id=species_id,
        idempotency_key=idempotency_key,
        attributes=attributes,
    )[0]


def labels_submit(
    *,
    project: Project,
    crop_ids: Sequence[int],
    user: User,
    kind: str,
    species_id: int | None = None,
    is_review: bool = False,
    idempotency_key: str = "",
    attributes: Sequence[int] | None = None,
) -> list[Label]:
    """Store the same label on several crops at once (grid mode), all or nothing.

    Same contract as ``label_submit``; ``is_review`` marks an admin's decision on a disputed
    crop, which overrides the votes (the view checks the role).

    ``idempotency_key`` (up to 200 characters, chosen by the client per submission): when this
    user already submitted it, the labels stored then are returned and nothing is written, also
    when two copies race (the database's unique constraint decides). Reusing a key for a
    different label raises LabelError.

    ``attributes``: ids of the project's attributes ticked yes (behaviours), stored on every
    label; None when not recorded, [] for all no. Only species labels carry them (an empty
    crop has no behaviour): for other kinds, [] and None store None and any id is refused.
    LabelError (nothing stored) for an id that is not one of the project's attributes.
    """
    unique_ids = list(dict.fromkeys(int(c) for c in crop_ids))
    if not unique_ids:
        raise LabelError("no crop given")
    if len(idempotency_key) > 200:
        raise LabelError("the idempotency key is longer than 200 characters")
    ticked = _label_attributes(project=project, kind=kind, attributes=attributes)
    if idempotency_key:
        replay = _labels_replayed(
            user=user,
            key=idempotency_key,
            crop_ids=unique_ids,
            kind=kind,
            species_id=species_id,
            attributes=ticked,
        )
        if replay is not None:
            return replay
    crops = {c.pk: c for c in Crop.objects.filter(project=project, pk__in=unique_ids)}
    missing = [c for c in unique_ids if c not in crops]
    if missing:
        raise LabelError(
            f"crop {', '.join(map(str, missing))} is not part of project {project.name!r}"
        )
    species = _label_species(project=project, kind=kind, species_id=species_id)
    with transaction.atomic():
        open_round = round_open_get(project=project)
        in_round = (
            set(open_round.items.filter(crop_id__in=unique_ids).values_list("crop_id", flat=True))
            if open_round is not None
            else set()
        )
        new = [
            Label(
                project=project,
                crop=crops[crop_id],
                user=user,
                kind=kind,
                species=species,
                round=open_round if crop_id in in_round else None,
                is_review=is_review,
                client_key=f"{idempotency_key}:{crop_id}" if idempotency_key else "",
                attributes=ticked,
            )
            for crop_id in unique_ids
        ]
        try:
            with transaction.atomic():  # a savepoint: a lost race must not spoil the outer one
                labels = Label.objects.bulk_create(new)
        except IntegrityError:
            # The same key was stored by a concurrent copy of this submission since we looked.
            replay = _labels_replayed(
                user=user,
                key=idempotency_key,
                crop_ids=unique_ids,
                kind=kind,
                species_id=species_id,
                attributes=ticked,
            )
            if not idempotency_key or replay is None:
                raise
            return replay
        settled = consensus_update(project=project, crop_ids=unique_ids)
        if open_round is not None:
            CropClaim.objects.filter(round=open_round, user=user, crop_id__in=unique_ids).delete()
            # The round can be complete only if these crops are settled: a vote that leaves
            # them waiting for more votes skips the round's lock (measured by `make loadtest`).
            if in_round & settled:
                _round_close_if_done(round_=open_round)
        embedding_finetune_queue(project=project)
    return labels


def _labels_replayed(
    *,
    user: User,
    key: str,
    crop_ids: list[int],
    kind: str,
    species_id: int | None,
    attributes: list[int] | None = None,
) -> list[Label] | None:
    """The labels ``user`` stored under ``key`` for ``crop_ids``, or None if none exists."""
    keys = {f"{key}:{crop_id}": crop_id for crop_id in crop_ids}
    stored = {
        label.crop_id: label for label in Label.objects.filter(user=user, client_key__in=list(keys))
    }
    if not stored:
        return None
    same = set(stored) == set(crop_ids) and all(
        label.kind == kind
        and label.species_id == species_id
        and _attributes_same(label.attributes, attributes)
        for label in stored.values()
    )
    if not same:
        raise LabelError(f"the idempotency key {key!r} was already used for a different label")
    return [stored[crop_id] for crop_id in crop_ids]


def label_review(
    *,
    project: Project,
    crop_id: int,
    user: User,
    kind: str,
    species_id: int | None = None,
    attributes: Sequence[int] | None = None,
) -> Label:
    """An admin decides a crop the volunteers disagreed on (or overrules a decided one).

    With ``attributes`` recorded, the admin's attributes decide the crop's too.
    """
    return labels_submit(
        project=project,
        crop_ids=[crop_id],
        user=user,
        kind=kind,
        species_id=species_id,
        is_review=True,
        attributes=attributes,
    )[0]


def label_undo(*, project: Project, user: User) -> Label:
    """Withdraw ``user``'s latest label in ``project``: the row stays, marked undone.

    The crop's consensus is recomputed without it. While its round is open the crop goes back
    to the queue, claimed by ``user`` so that the labelling page shows it next. Raises
    LabelError when there is nothing to undo.
    """
    with transaction.atomic():
        label = (
            Label.objects.select_for_update()
            .filter(project=project, user=user, undone_at__isnull=True)
            .order_by("-id")
            .first()
        )
        if label is None:
            raise LabelError("nothing to undo: you have no label in this project")
        label.undone_at = timezone.now()
        label.save(update_fields=["undone_at"])
        consensus_update(project=project, crop_ids=[label.crop_id])
        open_round = round_open_get(project=project)
        if open_round is not None and open_round.items.filter(crop_id=label.crop_id).exists():
            _claims_create(round_=open_round, user=user, crop_ids=[label.crop_id])
    return label


def consensus_update(*, project: Project, crop_ids: Iterable[int]) -> set[int]:
    """Recompute the Consensus rows of ``crop_ids`` from their labels.

    Each user's latest label not undone is one vote; the latest review label, if any, decides.
    Crops left without a vote lose their row. Works in chunks, so it also rebuilds a whole
    project (a few queries per 2,000 crops). Returns the crops of ``crop_ids`` now settled
    (done, or waiting for an admin's review).
    """
    ids = sorted({int(c) for c in crop_ids})
    settled: set[int] = set()
    for start in range(0, len(ids), CONSENSUS_CHUNK):
        chunk = ids[start : start + CONSENSUS_CHUNK]
        _crops_lock(crop_ids=chunk)
        settled |= _consensus_chunk(project=project, crop_ids=chunk)
    return settled


def _crops_lock(*, crop_ids: list[int]) -> None:
    """Lock the crop rows (sorted ids, so two writers never deadlock) until the transaction ends.

    Two volunteers voting on one crop at the same moment would otherwise each count only their
    own vote and both try to create the crop's Consensus row: the second waits here instead and
    then reads the first one's committed vote. A no-op outside PostgreSQL (SQLite serialises
    writers anyway).
    """
    if connection.features.has_select_for_update and transaction.get_connection().in_atomic_block:
        list(Crop.objects.select_for_update().filter(pk__in=crop_ids).order_by("pk").values("pk"))


def _consensus_chunk(*, project: Project, crop_ids: list[int]) -> set[int]:
    votes: dict[int, dict[int, Label]] = {c: {} for c in crop_ids}
    reviews: dict[int, Label] = {}
    newest: dict[int, Label] = {}
    labels = Label.objects.filter(crop_id__in=crop_ids, undone_at__isnull=True).order_by("id")
    fields = ("id", "crop_id", "user_id", "kind", "species_id", "is_review", "attributes")
    for label in labels.only(*fields):
        if label.is_review:
            reviews[label.crop_id] = label
        else:
            # Re-inserting moves a changed vote to the end: votes stay in casting order.
            votes[label.crop_id].pop(label.user_id, None)
            votes[label.crop_id][label.user_id] = label
        newest[label.crop_id] = label
    existing = {c.crop_id: c for c in Consensus.objects.filter(crop_id__in=crop_ids)}
    create: list[Consensus] = []
    update: list[Consensus] = []
    for crop_id in crop_ids:
        if crop_id not in newest:
            continue
        review = reviews.get(crop_id)
        result = consensus_decide(
            [(v.kind, v.species_id) for v in votes[crop_id].values()],
            votes_needed=project.votes_per_crop,
            threshold=project.agreement_threshold,
            review=(review.kind, review.species_id) if review else None,
        )
        row = existing.get(crop_id) or Consensus(project=project, crop_id=crop_id)
        row.status, row.kind, row.species_id = result.status, result.kind, result.species_id
        row.votes, row.agreement, row.reviewed = result.votes, result.agreement, review is not None
        row.label = newest[crop_id]
        row.attributes = _consensus_attributes(
            kind=result.kind, votes=votes[crop_id].values(), review=review
        )
        (update if row.pk else create).append(row)
    Consensus.objects.filter(crop_id__in=[c for c in existing if c not in newest]).delete()
    Consensus.objects.bulk_create(create)
    Consensus.objects.bulk_update(
        update,
        ["status", "kind", "species", "votes", "agreement", "reviewed", "label", "attributes"],
    )
    return {row.crop_id for row in (*create, *update) if row.status in _SETTLED}


def _consensus_attributes(
    *, kind: str, votes: Iterable[Label], review: Label | None
) -> list[int] | None:
    """The crop's attributes by ``attributes_decide``: None unless it is decided an animal."""
    if kind != LabelKind.SPECIES:
        return None
    return attributes_decide(
        [v.attributes for v in votes], review=review.attributes if review is not None else None
    )


def crop_claim_next(
    *, round_: Round, user: User, skipped: Collection[int] = (), limit: int = 1
) -> list[Crop]:
    """Claim up to ``limit`` crops of ``round_`` for ``user`` to label, in pick order.

    Crops ``user`` holds already come first (newest claim first: an undone crop is shown
    again). Others are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two volunteers
    asking at the same moment never get the same crop unless the project wants several votes:
    a crop is offered while its votes plus other volunteers' live claims are fewer than the
    votes per crop. Claims expire after ``TRAPWISE_CLAIM_SECONDS``. Crops decided, sent to
    review, already voted on by ``user`` or in ``skipped`` are never offered.
    """
    now = timezone.now()
    skip = [int(c) for c in skipped]
    with transaction.atomic():
        mine = list(
            CropClaim.objects.filter(round=round_, user=user, expires_at__gt=now)
            .exclude(crop_id__in=skip)
            .exclude(_crop_voted_by(user))
            .exclude(_crop_settled())
            .order_by("-id")
            .values_list("crop_id", flat=True)[:limit]
        )
        new: list[int] = []
        if len(mine) < limit:
            new = _claimable(
                round_=round_, user=user, now=now, exclude=[*skip, *mine], limit=limit - len(mine)
            )
        _claims_create(round_=round_, user=user, crop_ids=[*mine, *new])
    crops = Crop.objects.filter(pk__in=[*mine, *new]).select_related("image", "detection")
    by_id = {c.pk: c for c in crops}
    return [by_id[c] for c in [*mine, *new] if c in by_id]


def crop_claim_release(*, round_: Round, user: User, crop_id: int) -> None:
    """Give a claimed crop back (the volunteer skipped it), so that others are offered it."""
    CropClaim.objects.filter(round=round_, user=user, crop_id=crop_id).delete()


def _claimable(
    *, round_: Round, user: User, now: datetime, exclude: list[int], limit: int
) -> list[int]:
    others = (
        CropClaim.objects.filter(round=round_, crop=OuterRef("crop_id"), expires_at__gt=now)
        .exclude(user=user)
        .values("crop")
        .annotate(n=Count("id"))
        .values("n")
    )
    votes = Consensus.objects.filter(crop=OuterRef("crop_id")).values("votes")
    items = (
        RoundCrop.objects.filter(round=round_)
        .exclude(crop_id__in=exclude)
        .exclude(_crop_voted_by(user))
        .exclude(_crop_settled())
        .annotate(
            n_votes=Coalesce(Subquery(votes), 0),
            n_claims=Coalesce(Subquery(others), 0),
        )
        .filter(n_votes__lt=round_.project.votes_per_crop - F("n_claims"))
        .order_by("position")
        # Rows another volunteer's transaction is claiming right now are skipped, not waited
        # for; "of self" because the subqueries must not be locked.
        .select_for_update(skip_locked=True, of=("self",))
    )
    return list(items.values_list("crop_id", flat=True)[:limit])


def _crop_voted_by(user: User) -> Exists:
    return Exists(
        Label.objects.filter(
            crop=OuterRef("crop_id"), user=user, undone_at__isnull=True, is_review=False
        )
    )


def _crop_settled() -> Exists:
    return Exists(Consensus.objects.filter(crop=OuterRef("crop_id"), status__in=_SETTLED))


def _claims_create(*, round_: Round, user: User, crop_ids: list[int]) -> None:
    """Claim (or re-claim, renewing the expiry) ``crop_ids`` for ``user``."""
    if not crop_ids:
        return
    expires = timezone.now() + timedelta(seconds=settings.TRAPWISE_CLAIM_SECONDS)
    CropClaim.objects.filter(round=round_, user=user, crop_id__in=crop_ids).delete()
    CropClaim.objects.bulk_create(
        CropClaim(round=round_, user=user, crop_id=crop_id, expires_at=expires)
        for crop_id in reversed(crop_ids)  # the first crop gets the newest claim id
    )


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


def _label_attributes(
    *, project: Project, kind: str, attributes: Sequence[int] | None
) -> list[int] | None:
    """``attributes`` as sorted unique ids of ``project``'s attributes (None: not recorded).

    LabelError for ids of another project (or of none), and for any id on a label that is not
    a species: only an animal has a behaviour.
    """
    if attributes is None:
        return None
    ids = sorted({int(a) for a in attributes})
    if kind != LabelKind.SPECIES:
        if ids:
            raise LabelError(f"attributes are only for species labels, not for {kind!r}")
        return None
    known = set(Attribute.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True))
    unknown = [a for a in ids if a not in known]
    if unknown:
        raise LabelError(
            f"attribute {', '.join(map(str, unknown))} is not part of project {project.name!r}"
        )
    return ids


def _attributes_same(stored: list[int] | None, sent: list[int] | None) -> bool:
    if stored is None or sent is None:
        return stored is None and sent is None
    return sorted(stored) == sorted(sent)


def _round_close_if_done(*, round_: Round) -> None:
    # Lock the round first: two volunteers settling its last two crops at once each see the
    # other's crop as open without the lock, and neither would close it. With it the second
    # one waits, then reads the first one's committed vote and closes the round.
    locked = Round.objects.select_for_update().filter(pk=round_.pk, status=Round.Status.OPEN)
    if not list(locked.values_list("pk", flat=True)):
        return  # closed meanwhile
    if round_.items.exclude(_crop_settled()).exists():
        return
    round_.status = Round.Status.CLOSED
    round_.closed_at = timezone.now()
    round_.save(update_fields=["status", "closed_at"])
    round_.claims.all().delete()
    classifier_retrain_queue(project_id=round_.project_id)


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


# First key of the PostgreSQL advisory lock that lets one retrain per project run at a time.
_RETRAIN_LOCK = 7201


@contextmanager
def _retrain_lock(*, project_id: int) -> Iterator[None]:
    """Hold the project's retrain lock (a PostgreSQL session advisory lock) for the block.

    Two workers retraining one project at once would both write ``v<n>`` files and race for the
    version number; the second now waits, then finds nothing new and returns the first one's
    classifier. A no-op elsewhere (SQLite runs one worker).
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_RETRAIN_LOCK, project_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_RETRAIN_LOCK, project_id])


def classifier_retrain(*, project_id: int) -> ClassifierVersion | None:
    """Train the classifier on every species label and predict every crop of the project.

    One retrain per project runs at a time (``_retrain_lock``).
    """
    with _retrain_lock(project_id=project_id):
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
    latest = labels_latest_by_crop(project=project)
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
    # Steps on the dashboard: load, train, predict, up to CV_FOLDS folds, store.
    with job_track(
        project=project,
        kind=Job.Kind.RETRAIN,
        total=4 + CV_FOLDS,
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
        unlabelled=active & ~np.isin(ids, _ids(latest.keys())),
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
    started = time.perf_counter()
    members = _ensemble_train(
        data.vectors[data.rows],
        data.labels,
        seed,
        class_balance=project.class_balance,
        size=project.ensemble_size,
    )
    clf = members[0]
    train_seconds = time.perf_counter() - started
    relative = f"projects/{project.pk}/classifiers/v{number}.joblib"
    path = Path(settings.TRAPWISE_DATA_DIR) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    _ensemble_save(members, path)
    if job is not None:
        job.step(2, f"classifier v{number}: predicting {data.ids.size} crops")
    started = time.perf_counter()
    probs, classes = _ensemble_predict_proba(members, data.vectors)
    top_labels, top_probs = probabilities_top_k(probs, classes=classes, k=5)
    events = event_probabilities(probs, data.events)
    del probs
    predict_seconds = time.perf_counter() - started
    quality = _cross_validate(project=project, data=data, seed=seed, path=path, job=job)
    head = _attribute_head_fit(project=project, data=data, seed=seed, path=path)
    if job is not None:
        job.step(3 + CV_FOLDS, f"classifier v{number}: storing {data.ids.size} predictions")
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
            train_seconds=train_seconds,
            predict_seconds=predict_seconds,
            n_iter=clf.n_iter,
            converged=clf.converged,
            n_unlabelled=int(data.unlabelled.sum()),
            auto_accept_share=coverage_at(top_probs[data.unlabelled, 0], quality.get("threshold")),
            **quality,
            **head.fields,
        )
        predictions_store(
            classifier=classifier,
            ids=data.ids,
            top_labels=top_labels,
            top_probs=top_probs,
            attributes=head.crop_json,
        )
        _event_predictions_store(
            classifier=classifier, events=events, classes=classes, attributes=head.event_json
        )
    predictions_prune(project=project, keep=PREDICTION_VERSIONS_KEPT)
    return classifier


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
    return events.astype(str), np.isin(ids, _ids(active))


def _cross_validate(
    *, project: Project, data: _TrainingSet, seed: int, path: Path, job: JobTracker | None = None
) -> dict[str, Any]:
    """Cross-validated accuracy and the confidence threshold, as ClassifierVersion fields.

    Folds are grouped by capture event, so near-identical frames of one burst never sit on
    both sides. The per-crop confidences and hits, and the predicted and true species ids
    (for the confusion matrix), are saved next to the model (``.cv.npz``) so that a new
    target accuracy needs no retraining. ``job`` gets one step per fold (steps 3 to 3 + folds).
    """
    started = time.perf_counter()
    folds_started = 0

    def train_fold(x: np.ndarray, y: np.ndarray, random_state: int) -> list[TrainedClassifier]:
        nonlocal folds_started
        if job is not None:
            job.step(3 + folds_started, f"cross-validating: fold {folds_started + 1}")
        folds_started += 1
        # The folds train what the retrain stores: same class balance, same ensemble.
        return _ensemble_train(
            x, y, random_state, class_balance=project.class_balance, size=project.ensemble_size
        )

    try:
        cv = cross_validated_probabilities(
            data.vectors[data.rows],
            data.labels,
            groups=data.events[data.rows],
            train=train_fold,
            predict_proba=_ensemble_predict_proba,
            n_splits=CV_FOLDS,
            random_state=seed,
        )
    except EvaluationError as exc:
        logger.info("no cross-validation for project %s: %s", project.pk, exc)
        return {"target_accuracy": project.target_accuracy}
    metrics = _cv_metrics(project=project, cv=cv, data=data)
    # Atomic like the model file: a worker killed mid-write leaves no truncated file behind.
    with atomic_path(path.with_suffix(".cv.npz")) as tmp, tmp.open("wb") as handle:
        np.savez(
            handle,
            confidence=cv.confidence,
            correct=cv.correct,
            predicted=cv.predicted,
            true=data.labels,
            **_cv_metrics_arrays(metrics),
        )
    threshold = accuracy_threshold(cv.confidence, cv.correct, target=project.target_accuracy)
    return {
        "cv_accuracy": cv.accuracy,
        "cv_top5_accuracy": cv.top5_accuracy,
        "cv_n_splits": cv.n_splits,
        "cv_seconds": time.perf_counter() - started,
        "target_accuracy": project.target_accuracy,
        "threshold": threshold.threshold,
        "threshold_accuracy": threshold.accuracy_at_threshold,
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


def _ensemble_train(
    x: np.ndarray, y: np.ndarray, seed: int, *, class_balance: str, size: int
) -> list[TrainedClassifier]:
    """The project's classifier: ``size`` (>= 1) MLPs with seeds seed, seed + 1, ..., all
    with ``class_balance``. More than one is an ensemble whose probabilities are averaged
    (``_ensemble_predict_proba``; the preprint's S.2). The first is the classifier itself."""
    return [
        classifier_train(x, y, random_state=(seed + k) % 2**31, class_balance=class_balance)
        for k in range(max(1, size))
    ]


def _ensemble_predict_proba(
    members: list[TrainedClassifier], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """((N, C) probabilities averaged over the members, (C,) classes): one member's own."""
    if len(members) == 1:
        return classifier_probabilities(members[0], x), members[0].classes
    return probabilities_average(
        [classifier_probabilities(m, x) for m in members], [m.classes for m in members]
    )


def _ensemble_save(members: list[TrainedClassifier], path: Path) -> None:
    """The first member at ``path``, member k (k >= 1) beside it as ``<stem>.m<k>.joblib``."""
    classifier_save(members[0], path)
    for k, member in enumerate(members[1:], start=1):
        classifier_save(member, path.with_name(f"{path.stem}.m{k}{path.suffix}"))


# The attribute head is trained once this many decided species crops have attributes recorded:
# with fewer, its cross-validated scores would mean nothing.
ATTRIBUTE_MIN_CROPS = 10


@dataclass(frozen=True)
class _AttributeHead:
    """What a retrain stores of the attribute head (all empty when none was trained).

    ``fields``: ClassifierVersion's ``attribute_ids`` and ``attribute_metrics``;
    ``crop_json`` (N,) and ``event_json`` (E,): ``{attribute id: probability}`` JSON text per
    crop of the training set's ids and per event of ``event_probabilities`` order.
    """

    fields: dict[str, object]
    crop_json: list[str] | None = None
    event_json: list[str] | None = None


def _attribute_head_fit(
    *, project: Project, data: _TrainingSet, seed: int, path: Path
) -> _AttributeHead:
    """Train, cross-validate and apply the attribute head, when enough crops have attributes.

    Training rows: crops of the embedding version whose consensus is done as a species and
    records attributes (``Consensus.attributes`` not null); the targets are the project's
    current attributes (ids of removed attributes are ignored). The head is saved beside the
    classifier (``.attributes.joblib``); its cross-validated scores (folds grouped by capture
    event, probability > 0.5 is yes) go to ``attribute_metrics``.
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
        return _AttributeHead(fields={})
    rows = np.asarray(sorted(recorded), dtype=np.int64)
    ids = [a for a, _ in attributes]
    truth = np.asarray([[a in recorded[int(r)] for a in ids] for r in rows], dtype=bool)
    head = attributes_train(data.vectors[rows], truth, random_state=seed)
    attributes_save(head, path.with_suffix(".attributes.joblib"))
    probabilities = attributes_probabilities(head, data.vectors)
    events = event_probabilities(probabilities, data.events)
    return _AttributeHead(
        fields={
            "attribute_ids": ids,
            "attribute_metrics": _attribute_metrics(
                vectors=data.vectors[rows],
                truth=truth,
                groups=data.events[rows],
                names=[n for _, n in attributes],
                ids=ids,
                seed=seed,
            ),
        },
        crop_json=_attributes_json_rows(ids, probabilities),
        event_json=_attributes_json_rows(ids, events.probabilities),
    )


def _attribute_metrics(
    *,
    vectors: np.ndarray,
    truth: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    ids: list[int],
    seed: int,
) -> dict[str, object] | None:
    """Cross-validated multi-label scores as JSON, or None with fewer than 2 capture events."""
    try:
        cv = attributes_cross_validate(
            vectors, truth, groups=groups, n_splits=CV_FOLDS, random_state=seed
        )
    except AttributeHeadError as exc:
        logger.info("attribute head not cross-validated: %s", exc)
        return None
    scores = multilabel_metrics(cv.probabilities, truth, names=names)
    return {
        **scores.summary(),
        "n_splits": cv.n_splits,
        "threshold": scores.threshold,
        "per_attribute": [
            {
                "id": attribute_id,
                "name": name,
                "accuracy": float(scores.per_attribute_accuracy[i]),
                "precision": float(scores.per_attribute_precision[i]),
                "recall": float(scores.per_attribute_recall[i]),
                "support": int(scores.per_attribute_support[i]),
            }
            for i, (attribute_id, name) in enumerate(zip(ids, names, strict=True))
        ],
    }


def _attributes_json_rows(ids: list[int], probabilities: np.ndarray) -> list[str]:
    """Per row of (N, A) ``probabilities``, ``{"<id>": p, ...}`` as JSON text (4 places).

    One ``%`` per row over a pre-built template, as ``_top_json_rows``.
    """
    template = "{" + ",".join(f'"{a}":%.4f' for a in ids) + "}"
    return [template % tuple(row) for row in probabilities.astype(np.float64).tolist()]


def predictions_store(
    *,
    classifier: ClassifierVersion,
    ids: np.ndarray,
    top_labels: np.ndarray,
    top_probs: np.ndarray,
    attributes: Sequence[str] | None = None,
) -> None:
    """Insert one Prediction per crop: ids (N,), top_labels (N, k) int64, top_probs (N, k).

    ``attributes``: per crop, the attribute head's ``{id: probability}`` as JSON text (N,), or
    None without a head (the column stays null). Call inside the transaction that creates
    ``classifier``.
    """
    tops = _top_json_rows(top_labels, top_probs)
    rows = zip(
        ids.tolist(),
        itertools.repeat(classifier.pk),
        top_labels[:, 0].tolist(),
        top_probs[:, 0].astype(np.float64).tolist(),
        tops,
        strict=False,  # repeat() is endless; the other four have N items each
    )
    columns = ("crop_id", "classifier_id", "species_id", "confidence", "top")
    _rows_insert(Prediction, *_with_attributes(columns, rows, attributes))


def _with_attributes(
    columns: tuple[str, ...],
    rows: Iterable[tuple[int | float | str, ...]],
    attributes: Sequence[str] | None,
) -> tuple[tuple[str, ...], Iterable[tuple[int | float | str, ...]]]:
    """``columns`` and ``rows`` with the ``attributes`` JSON column added, when there is one
    (without a head the column is left out, so it stays null)."""
    if attributes is None:
        return columns, rows
    extended = (row + (text,) for row, text in zip(rows, attributes, strict=True))
    return (*columns, "attributes"), extended


def _rows_insert(
    model: type[models.Model],
    columns: tuple[str, ...],
    rows: Iterable[tuple[int | float | str, ...]],
) -> None:
    """Insert many rows fast: COPY on PostgreSQL, one executemany elsewhere.

    A million rows through ``bulk_create`` take minutes; this takes seconds. Values must
    already be in database form (JSON columns as JSON text).
    """
    table = model._meta.db_table
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # the psycopg cursor behind Django's wrapper
            with raw.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))


def _top_json_rows(labels: np.ndarray, probs: np.ndarray) -> list[str]:
    """Per row, ``[[species_id, probability], ...]`` as JSON text (probabilities to 6 places).

    labels (N, k) int, probs (N, k). One ``%`` per row over a pre-built template: a million
    rows format in about a second, several times faster than joining per pair.
    """
    k = labels.shape[1]
    template = "[" + ",".join(["[%d,%.6f]"] * k) + "]"
    pairs = np.empty((labels.shape[0], 2 * k), dtype=np.float64)
    pairs[:, 0::2] = labels
    pairs[:, 1::2] = probs
    return [template % tuple(row) for row in pairs.tolist()]


def _event_predictions_store(
    *,
    classifier: ClassifierVersion,
    events: EventProbabilities,
    classes: np.ndarray,
    attributes: Sequence[str] | None = None,
) -> None:
    """Insert one EventPrediction per event of ``events``; ``attributes`` as in
    ``predictions_store``, one per event in ``events.event_ids`` order."""
    labels, probs = probabilities_top_k(events.probabilities, classes=classes, k=5)
    tops = _top_json_rows(labels, probs)
    rows = (
        (classifier.pk, str(event), int(top[0]), float(p[0]), text, int(n))
        for event, top, p, text, n in zip(
            events.event_ids, labels, probs, tops, events.n_crops, strict=True
        )
    )
    columns = ("classifier_id", "event", "species_id", "confidence", "top", "n_crops")
    _rows_insert(EventPrediction, *_with_attributes(columns, rows, attributes))


def predictions_prune(*, project: Project, keep: int) -> int:
    """Delete the predictions of all but the newest ``keep`` classifier versions.

    Predictions are recomputable from the saved model files; a million rows per version would
    otherwise pile up with every round. The versions themselves (and their files) stay.
    Returns the number of crop predictions deleted.
    """
    numbers = project.classifier_versions.order_by("-number").values_list("number", flat=True)
    cutoff = list(numbers[:keep])
    if len(cutoff) < keep:
        return 0
    old = Prediction.objects.filter(classifier__project=project, classifier__number__lt=cutoff[-1])
    deleted, _ = old.delete()
    return int(deleted)


# Longer than embedding_finetune_task's time limit (24 h): a version building for longer than
# this has no task left that could finish it.
FINETUNE_ABANDONED_AFTER = timedelta(hours=25)


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
    species_labels = Label.objects.filter(project=project, kind=LabelKind.SPECIES)
    # Every label submission asks; almost always too few labels are new. Answer that with one
    # count, before the project lock: taken on every submission, that lock made all of a
    # project's label writes wait for each other (measured by `make loadtest`).
    if not force and (
        species_labels.filter(id__gt=current.last_label_id).count() < project.finetune_every
    ):
        return None
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one queuer at a time
    building = EmbeddingVersion.objects.filter(
        project=project, status=EmbeddingVersion.Status.BUILDING
    )
    # A version still building past the task's time limit was abandoned (its task is gone):
    # it must not block fine-tuning for good.
    building.filter(created_at__lt=timezone.now() - FINETUNE_ABANDONED_AFTER).update(
        status=EmbeddingVersion.Status.FAILED,
        error="abandoned: not finished within the fine-tuning time limit",
    )
    if building.exists():
        if force:
            raise FinetuneError("the embedding is being fine-tuned already")
        return None
    if species_labels.values("species_id").distinct().count() < 2:
        if force:
            raise FinetuneError("fine-tuning needs labels of at least two species")
        return None
    last_label_id = Label.objects.filter(project=project).aggregate(n=Max("id"))["n"] or 0
    version = embedding_finetune_create(
        project=project, parent=current, last_label_id=last_label_id
    )
    task_enqueue(name=FINETUNE_TASK, args=[version.pk])
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


class SettingsError(ValueError):
    """Settings were refused; the message says why. Nothing was changed."""


def project_learning_update(
    *,
    project: Project,
    first_round_strategy: str,
    target_accuracy: float,
    seconds_per_image: float | None = None,
    class_balance: str | None = None,
    ensemble_size: int | None = None,
) -> Project:
    """Change the first round's strategy, the auto-accept target accuracy and, when given,
    the volunteer seconds per image (effort saved), the class balance and the ensemble size
    (both used by the next retrain). None leaves a setting as it is.

    The latest classifier's threshold and auto-acceptable share are recomputed from its saved
    cross-validated predictions, so a new target applies at once, without retraining. A new
    class balance or ensemble size queues a retrain (when a classifier exists).
    """
    if first_round_strategy not in Strategy.values:
        raise SettingsError(f"unknown strategy {first_round_strategy!r}")
    if not 0.0 < target_accuracy <= 1.0:
        raise SettingsError("the target accuracy must be in (0, 1], e.g. 0.966 for 96.6%")
    extra = _learning_extra_settings(
        seconds_per_image=seconds_per_image,
        class_balance=class_balance,
        ensemble_size=ensemble_size,
    )
    with transaction.atomic():
        retrain = any(
            getattr(project, name) != extra[name]
            for name in ("class_balance", "ensemble_size")
            if name in extra
        )
        project.first_round_strategy = first_round_strategy
        project.target_accuracy = target_accuracy
        for name, value in extra.items():
            setattr(project, name, value)
        project.save(update_fields=["first_round_strategy", "target_accuracy", *extra])
        classifier = classifier_latest(project=project)
        if classifier is not None:
            classifier_threshold_update(classifier=classifier, target=target_accuracy)
            if retrain:  # the classifier was trained under the old setting
                classifier_retrain_queue(project_id=project.pk)
    return project


# Longest volunteer time per image the effort estimate accepts (an hour per image).
SECONDS_PER_IMAGE_MAX = 3600.0
ENSEMBLE_SIZE_MAX = 10


def _learning_extra_settings(
    *, seconds_per_image: float | None, class_balance: str | None, ensemble_size: int | None
) -> dict[str, float | str | int]:
    """The optional learning settings that were given, validated (SettingsError if not)."""
    extra: dict[str, float | str | int] = {}
    if seconds_per_image is not None:
        if not (0.0 < seconds_per_image <= SECONDS_PER_IMAGE_MAX):  # NaN fails too
            raise SettingsError(
                f"seconds per image must be more than 0 and at most {SECONDS_PER_IMAGE_MAX:g}"
            )
        extra["seconds_per_image"] = float(seconds_per_image)
    if class_balance is not None:
        if class_balance not in ClassBalance.values:
            raise SettingsError(
                f"unknown class balance {class_balance!r}; "
                f"choose one of {', '.join(ClassBalance.values)}"
            )
        extra["class_balance"] = class_balance
    if ensemble_size is not None:
        if not 1 <= ensemble_size <= ENSEMBLE_SIZE_MAX:
            raise SettingsError(f"the ensemble size must be between 1 and {ENSEMBLE_SIZE_MAX}")
        extra["ensemble_size"] = int(ensemble_size)
    return extra


def project_consensus_update(
    *, project: Project, votes_per_crop: int, agreement_threshold: float
) -> int:
    """Change how many votes a crop needs and the agreement that decides it.

    Every crop's consensus is recomputed under the new rule (votes are never dropped): raising
    the votes sends decided crops of the open round back to the queue for more votes, lowering
    them can decide pending crops. Returns the number of crops recomputed.
    """
    if not 1 <= votes_per_crop <= 10:
        raise SettingsError("votes per crop must be between 1 and 10")
    if not 0.0 <= agreement_threshold <= 1.0:
        raise SettingsError("the agreement threshold must be within [0, 1], e.g. 0.66")
    with transaction.atomic():
        project.votes_per_crop = votes_per_crop
        project.agreement_threshold = agreement_threshold
        project.save(update_fields=["votes_per_crop", "agreement_threshold"])
        crop_ids = list(Consensus.objects.filter(project=project).values_list("crop_id", flat=True))
        consensus_update(project=project, crop_ids=crop_ids)
        open_round = round_open_get(project=project)
        if open_round is not None:
            _round_close_if_done(round_=open_round)
    return len(crop_ids)


def classifier_threshold_update(*, classifier: ClassifierVersion, target: float) -> None:
    """Re-derive ``classifier``'s threshold for ``target`` from its ``.cv.npz`` file."""
    path = (Path(settings.TRAPWISE_DATA_DIR) / classifier.path).with_suffix(".cv.npz")
    if not path.exists():
        ClassifierVersion.objects.filter(pk=classifier.pk).update(target_accuracy=target)
        return
    with np.load(path) as cv:
        threshold = accuracy_threshold(cv["confidence"], cv["correct"], target=target)
    predictions = classifier.predictions.filter(
        crop__active=True, crop__consensus__isnull=True
    ).values_list("confidence", flat=True)
    unlabelled = np.fromiter(predictions.iterator(chunk_size=20_000), dtype=np.float32)
    ClassifierVersion.objects.filter(pk=classifier.pk).update(
        target_accuracy=target,
        threshold=threshold.threshold,
        threshold_accuracy=threshold.accuracy_at_threshold,
        auto_accept_share=coverage_at(unlabelled, threshold.threshold),
    )
