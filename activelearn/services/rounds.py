"""Rounds: which crops the volunteers label next.

``round_start`` opens a round of crops picked by a selection strategy among the unlabelled
ones; the round closes when its last crop is settled (``labels.round_close_if_done``). The
k-Center strategies fold new labels into a per-embedding-version cache
(``kcenter_cache_update``), so a round costs O(crops x new labels). Round seeds derive from the
project's seed, so a round's picks can be reproduced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef

from activelearn.models import (
    UNCERTAINTY_STRATEGIES,
    Consensus,
    Label,
    Prediction,
    Round,
    RoundCrop,
    RoundUnit,
    Strategy,
)
from activelearn.selection import min_sq_distances_update, select
from activelearn.selection_rule import StrategyChoice, strategy_for_round
from activelearn.selectors import classifier_latest, round_open_get
from activelearn.selectors_audit import audit_outcomes_get
from activelearn.services.errors import RoundError
from activelearn.services.round_events import event_round_picks
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import (
    embedding_vectors_dir,
    embedding_vectors_load,
    embedding_version_current,
)
from projects.models import Project, Species
from projects.storage import stored_delete, stored_list, stored_local, stored_write

__all__ = [
    "SETTLED",
    "audit_count",
    "audit_interleave",
    "crop_settled",
    "ids_array",
    "kcenter_cache_update",
    "round_seed",
    "round_start",
    "round_strategy_choice",
    "round_strategy_default",
]

# Strategies that use the per-version k-Center min-distance cache.
_CACHED_STRATEGIES = frozenset({"k_center", "hybrid", "species"})
# Round strategies that run another selection function on restricted candidates: a species
# round is k-Center greedy among the crops predicted as the target species.
_SELECTION_OF = {str(Strategy.SPECIES): "k_center"}

# Consensus states that take a crop out of its round's queue.
# Audit labels the default rule needs before it reads their accuracy (a share of 10 has a
# Wilson interval about +-0.3 wide: enough only to tell a useless classifier from a working one).
AUDIT_RULE_MIN = 10

SETTLED = frozenset({Consensus.Status.DONE, Consensus.Status.REVIEW})


def round_seed(*, project: Project, number: int) -> int:
    """The seed of round ``number``: derived from the project's seed, and stored on the round."""
    return int(np.random.SeedSequence([project.seed, number]).generate_state(1)[0] % 2**31)


def round_strategy_choice(
    *, project: Project, audit_accuracy: float | None = None
) -> StrategyChoice:
    """The strategy a new round uses unless the admin picks one, and why.

    Before any round: the project's first-round strategy (random by default). After: the
    measured rule ``selection_rule.strategy_for_round`` on the project's labelled crops, active
    crops and species, the latest classifier's existence and ``audit_accuracy`` (the audit
    stream's accuracy of the live machine labels in [0, 1], None without audit evidence).
    """
    if not project.rounds.exists():
        return StrategyChoice(
            project.first_round_strategy, "the project's first-round strategy (no round yet)"
        )
    if audit_accuracy is None:
        audit_accuracy = _audit_accuracy(project=project)
    return strategy_for_round(
        n_labels=Consensus.objects.filter(project=project).count(),
        n_crops=Crop.objects.filter(project=project).count(),
        n_species=project.species.count(),
        audit_accuracy=audit_accuracy,
        has_classifier=classifier_latest(project=project) is not None,
    )


def _audit_accuracy(*, project: Project) -> float | None:
    """Share right of the newest audited classifier's machine labels on its audit crops, or
    None with fewer than ``AUDIT_RULE_MIN`` audit labels (too few to steer the rule)."""
    outcomes = audit_outcomes_get(project=project)
    if outcomes is None or outcomes.correct.size < AUDIT_RULE_MIN:
        return None
    return float(outcomes.correct.mean())


def round_strategy_default(*, project: Project) -> str:
    """The name of ``round_strategy_choice``'s strategy."""
    return round_strategy_choice(project=project).strategy


def crop_settled() -> Exists:
    """For a query over rows with a ``crop_id`` (round crops, claims): whether the crop is
    settled (decided, or waiting for an admin's review), which takes it out of the queue."""
    return Exists(Consensus.objects.filter(crop=OuterRef("crop_id"), status__in=SETTLED))


def ids_array(values: Iterable[int]) -> np.ndarray:
    """(N,) int64 array of the ids in ``values`` (a query's ``values_list``, read once)."""
    return np.fromiter(values, dtype=np.int64)


def round_start(
    *,
    project: Project,
    user: User | None,
    strategy: str | None = None,
    size: int,
    target_species: Species | None = None,
    unit: str = RoundUnit.CROP,
) -> Round:
    """Open the next round: pick up to ``size`` crops by ``strategy`` among the unlabelled ones.

    ``unit`` "event": pick up to ``size`` whole capture events instead, by k-Center greedy over
    event embeddings (``selection_events``; the only strategy of an event round, the default
    then), every active unlabelled crop of each; an event with a labelled crop is covered.
    Volunteers are served an event's crops together and answer once for all of them. Event
    rounds have no audit crops (an audit crop is a single crop drawn at random).

    ``strategy`` None means ``round_strategy_choice`` (its reason is kept on the round). Crops
    with any label (species, not an animal, unknown) count as covered and are never picked
    again. The "species" strategy needs
    ``target_species`` (one of the project's, and only with that strategy): it runs k-Center
    greedy among the active unlabelled crops the latest classifier predicts as that species.

    The project's ``audit_share`` of ``size`` (``audit_count``) is not picked by the strategy
    but drawn uniformly at random from all active unlabelled crops and interleaved with the
    picks (``audit_interleave``): those round crops are marked ``is_audit``.
    """
    reason = ""
    if unit not in RoundUnit.values:
        raise RoundError(f"unknown unit {unit!r}; choose one of {', '.join(RoundUnit.values)}")
    if unit == RoundUnit.EVENT:
        if strategy is None:
            strategy, reason = Strategy.K_CENTER, "event rounds pick by k-Center over events"
        elif strategy != Strategy.K_CENTER:
            raise RoundError(
                f"an event round picks by {Strategy.K_CENTER.label}; not by {strategy!r}"
            )
    if strategy is None:
        choice = round_strategy_choice(project=project)
        strategy, reason = choice.strategy, choice.reason
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
                reason=reason,
                unit=unit,
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
    reason: str = "",
    unit: str = RoundUnit.CROP,
) -> Round:
    if round_open_get(project=project) is not None:
        raise RoundError("a round is already open for this project; finish it first")
    ids, vectors = embedding_vectors_load(version=version)
    # Crops with any vote count as covered: decided, disputed or waiting for more votes.
    labelled = ids_array(
        Consensus.objects.filter(project=project).values_list("crop_id", flat=True)
    )
    active = ids_array(
        Crop.objects.filter(project=project, active=True).values_list("id", flat=True)
    )
    labeled_mask = np.isin(ids, labelled)
    # Crops deactivated by the thresholds are never picked, but still cover their neighbours
    # if they were labelled.
    unlabelled_mask = np.isin(ids, active) & ~labeled_mask
    candidate_mask = unlabelled_mask.copy()
    if target_species is not None:
        candidate_mask &= _species_round_candidates(
            project=project, target_species=target_species, ids=ids
        )
    if not candidate_mask.any():
        raise RoundError("every crop is labelled already: nothing left to select")
    number = (project.rounds.aggregate(n=Max("number"))["n"] or 0) + 1
    seed = round_seed(project=project, number=number)
    if unit == RoundUnit.EVENT:
        picks = event_round_picks(
            project=project,
            ids=ids,
            vectors=vectors,
            labeled_mask=labeled_mask,
            candidate_mask=candidate_mask,
            size=size,
            seed=seed,
        )
        if not picks:
            raise RoundError("every capture event has a labelled crop: nothing left to select")
    else:
        picks = _crop_picks(
            project=project,
            strategy=strategy,
            size=size,
            version=version,
            ids=ids,
            vectors=vectors,
            labeled_mask=labeled_mask,
            unlabelled_mask=unlabelled_mask,
            candidate_mask=candidate_mask,
            seed=seed,
        )
    new_round = Round.objects.create(
        project=project,
        number=number,
        strategy=strategy,
        strategy_reason=reason[:300],
        size=size,
        seed=seed,
        embedding_version=version,
        created_by=user,
        target_species=target_species,
        unit=unit,
    )
    RoundCrop.objects.bulk_create(
        RoundCrop(
            round=new_round,
            crop_id=int(ids[index]),
            position=position,
            distance=distance,
            is_audit=is_audit,
        )
        for position, (index, distance, is_audit) in enumerate(picks)
    )
    return new_round


def _crop_picks(
    *,
    project: Project,
    strategy: str,
    size: int,
    version: EmbeddingVersion,
    ids: np.ndarray,
    vectors: np.ndarray,
    labeled_mask: np.ndarray,
    unlabelled_mask: np.ndarray,
    candidate_mask: np.ndarray,
    seed: int,
) -> list[tuple[int, float | None, bool]]:
    """A crop round's picks by ``strategy`` (row, distance, False) with its audit crops
    interleaved (row, None, True)."""
    n_audit = audit_count(share=project.audit_share, size=size)
    selection = select(
        _SELECTION_OF.get(strategy, strategy),
        vectors,
        labeled_mask=labeled_mask,
        budget=size - n_audit,
        random_state=seed,
        candidate_mask=candidate_mask,
        probabilities=_probabilities(project=project, ids=ids)
        if strategy in UNCERTAINTY_STRATEGIES
        else None,
        min_sq_distances=kcenter_cache_update(version=version, ids=ids, vectors=vectors)
        if strategy in _CACHED_STRATEGIES and labeled_mask.any()
        else None,
    )
    picks = [
        (int(index), None if np.isnan(distance) else float(distance), False)
        for index, distance in zip(selection.indices, selection.distances, strict=True)
    ]
    return audit_interleave(
        picks=picks, unlabelled_mask=unlabelled_mask, n_audit=n_audit, seed=seed
    )


def audit_count(*, share: float, size: int) -> int:
    """How many of a round of ``size`` crops are audit crops: ``share`` of it, rounded half
    up, leaving the strategy at least one crop."""
    return max(0, min(size - 1, math.floor(share * size + 0.5)))


def audit_interleave(
    *,
    picks: list[tuple[int, float | None, bool]],
    unlabelled_mask: np.ndarray,
    n_audit: int,
    seed: int,
) -> list[tuple[int, float | None, bool]]:
    """The strategy's ``picks`` (row, distance, False) with up to ``n_audit`` audit crops
    (row, None, True) drawn uniformly at random from ``unlabelled_mask`` (N,) less the picks,
    each put at a uniformly random position of the round, all seeded by the round's ``seed``.

    Uniform over every unlabelled active crop (not the strategy's candidates, which a
    species round narrows), so that audit labels are an unbiased sample of the crops the
    machine labels. Fewer audit crops when fewer are left.
    """
    pool = unlabelled_mask.copy()
    pool[[row for row, _, _ in picks]] = False
    rows = np.flatnonzero(pool)
    if n_audit < 1 or rows.size == 0:
        return picks
    # Its own stream of the round's seed: the strategy's random draws stay as they were.
    rng = np.random.default_rng([seed, 1])
    drawn = rng.choice(rows, size=min(n_audit, rows.size), replace=False)
    total = len(picks) + drawn.size
    audit_positions = set(rng.choice(total, size=drawn.size, replace=False).tolist())
    strategy_picks, audit_rows = iter(picks), iter(drawn.tolist())
    return [
        (int(next(audit_rows)), None, True) if position in audit_positions else next(strategy_picks)
        for position in range(total)
    ]


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
    mask = np.isin(ids, ids_array(predicted.iterator(chunk_size=20_000)))
    if not mask.any():
        raise RoundError(
            f"no unlabelled crop is predicted as {target_species.name!r} by classifier "
            f"v{classifier.number}: choose another species or strategy"
        )
    return mask


# The k-Center cache of a vectors folder: kcenter_min_sq-<newest label folded in>-<undone>.npy.
KCENTER_FILE = re.compile(r"kcenter_min_sq-(\d+)-(\d+)\.npy")


def kcenter_cache_update(
    *, version: EmbeddingVersion, ids: np.ndarray, vectors: np.ndarray
) -> np.ndarray:
    """(N,) float32 squared distance of each crop of ``version`` to the labelled crops.

    Kept per embedding version in its vectors folder of the data store, as
    ``kcenter_min_sq-<newest label folded in>-<undone labels>.npy``: the name says what the file
    holds, so a new state is a new file (names are immutable) and the older ones are deleted
    once it is published. Each call folds in only the crops labelled since, so a round costs
    O(N x new labels), never O(N x all labels). ``ids`` (N,) and ``vectors`` (N, d) are the
    version's, as ``embedding_vectors_load``.
    """
    # The vectors folder is cached whole before any single file of it is: a worker's cache
    # takes a folder that exists as complete (``stored_folder_local``).
    embedding_vectors_dir(version=version)
    folder = version.vectors_dir
    listed = stored_list(kind="data", prefix=folder)
    saved = {
        name: (int(match.group(1)), int(match.group(2)))
        for name in listed
        if (match := KCENTER_FILE.fullmatch(name)) is not None
    }
    # An undone label can uncover a crop, which a running minimum cannot forget: rebuild then.
    undone = Label.objects.filter(project_id=version.project_id, undone_at__isnull=False).count()
    cache: np.ndarray | None = None
    since = 0
    usable = sorted((last, name) for name, (last, count) in saved.items() if count == undone)
    if usable:
        last, name = usable[-1]
        try:
            cached = np.load(stored_local(kind="data", name=f"{folder}/{name}"))
        except FileNotFoundError:  # replaced by a concurrent round since the listing
            cached = None
        if cached is not None and cached.shape == (ids.size,):
            cache, since = cached, last
    covered = Consensus.objects.filter(project_id=version.project_id, label_id__gt=since)
    last_label_id = covered.aggregate(n=Max("label_id"))["n"]
    if cache is not None and last_label_id is None:
        return cache
    rows = np.flatnonzero(np.isin(ids, ids_array(covered.values_list("crop_id", flat=True))))
    cache = min_sq_distances_update(vectors, min_sq=cache, new_rows=rows)
    name = f"kcenter_min_sq-{last_label_id or since}-{undone}.npy"
    with stored_write(kind="data", name=f"{folder}/{name}") as local, local.open("wb") as handle:
        np.save(handle, cache)
    # Older states, and the unversioned files of before (kcenter_min_sq.npy and .json).
    for old in listed:
        if old.startswith("kcenter_min_sq") and old != name:
            stored_delete(kind="data", name=f"{folder}/{old}")
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
