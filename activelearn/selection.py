"""Choose which unlabelled images to label next.

Strategies over embedding vectors and classifier probabilities, as compared by
Norouzzadeh et al. (2019):

* ``k_center_greedy``: the greedy k-Center (core-set) selection of Sener & Savarese
  (ICLR 2018), as implemented in google/active-learning ``kcenter_greedy``: repeatedly
  pick the candidate farthest (Euclidean) from everything already covered (labelled
  rows plus earlier picks).
* ``random_selection``: uniform sampling without replacement, the usual baseline.
* ``confidence_selection``, ``margin_selection``, ``entropy_selection``: uncertainty
  sampling on the current classifier's class probabilities (least confident, smallest
  top-two margin, highest entropy first).
* ``hybrid_selection``: k-Center greedy restricted to the least confident candidates,
  i.e. diversity among the uncertain.
* ``typical_selection`` (``activelearn.selection_typical``): the most typical crop of each
  least-covered kNN neighbourhood (TypiClust-style, O(N k) from FAISS), for low budgets.

All strategies share one keyword-only signature (see ``select``); the uncertainty
strategies need ``probabilities``, the others ignore it. Everything here works on
plain numpy arrays and row positions; mapping rows to database ids is the caller's
job. All randomness comes from ``random_state``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from activelearn._checks import check_int
from activelearn.selection_types import Selection, SelectionError
from activelearn.selection_types import candidate_rows as _candidate_rows
from activelearn.selection_types import empty_selection as _empty_selection
from activelearn.selection_typical import typical_selection

__all__ = [
    "STRATEGIES",
    "Selection",
    "SelectionError",
    "confidence_selection",
    "entropy_selection",
    "hybrid_selection",
    "k_center_greedy",
    "margin_selection",
    "min_sq_distances_update",
    "random_selection",
    "select",
    "typical_selection",
]

# Cap on the number of float32 elements in one temporary block (64 MiB), so the
# default chunk_size stays safe for wide embeddings (e.g. d=2048).
_MAX_BLOCK_ELEMENTS = 1 << 24
# Bytes of features one streamed pass (a pick's distance update, the squared norms) reads
# per block: large enough that BLAS runs at memory bandwidth, small enough that the block's
# temporaries are negligible beside the data (issue 19: 10M x 256 memory-mapped).
_STREAM_BLOCK_BYTES = 16 << 20
# k-Center keeps the rows with the largest distances in memory between passes (``_Held``):
# 64 MiB (65,536 rows at d=256) keeps most picks of a round off the data, and is small beside
# 10M x 256 float32 (10 GB, whose size + 10% is the memory goal of issue 19).
_HELD_BYTES = 64 << 20
# Picks to wait, at most, before trying a held copy again after one that did not pay.
_HELD_WAIT_MAX = 32
# Centres multiplied with a block of features at once when a pass folds several in.
_FOLD_GROUP = 256

# A float32 softmax row can sum to slightly more than 1 by rounding; anything beyond
# this slack means the caller passed something that is not probabilities.
_ROW_SUM_TOLERANCE = 1e-3


def _check_int(value: object, *, name: str, minimum: int) -> int:
    return check_int(value, name=name, minimum=minimum, error=SelectionError)


def _as_float32_features(features: object, *, check_finite: bool = True) -> np.ndarray:
    """Return features as a C-contiguous float32 (N, d) array, without copying one that is
    already float32 and C-contiguous (a memory-mapped .npy stays on disk).

    ``check_finite`` reads every row (in blocks) and raises SelectionError on NaN or
    infinity; callers that go on to ``_row_sq_norms``, which checks the same as it reads,
    pass False and save that pass.
    """
    arr = features if isinstance(features, np.ndarray) else np.asarray(features)
    if arr.ndim != 2:
        raise SelectionError(f"features must be 2-D (N, d), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise SelectionError(f"features must be real numbers, got dtype {arr.dtype}")
    if not (arr.dtype == np.float32 and arr.flags.c_contiguous):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if check_finite:
        step = _stream_step(arr.shape[1])
        for r0 in range(0, arr.shape[0], step):
            if not np.isfinite(arr[r0 : r0 + step]).all():
                raise SelectionError("features contain NaN or infinite values")
    return arr


def _stream_step(n_dims: int) -> int:
    """Rows per streamed block: ``_STREAM_BLOCK_BYTES`` of float32, at least one row."""
    return max(1, _STREAM_BLOCK_BYTES // (4 * max(n_dims, 1)))


def _row_sq_norms(features: np.ndarray) -> np.ndarray:
    """(N,) float32 squared L2 norm of each row of a (N, d) float32 array, read in blocks
    (one pass; a memory map is never loaded whole).

    Raises SelectionError when a row holds NaN or infinity: its squared norm is then
    NaN or +inf (as it is for values above ~1e19, whose squares overflow float32).
    """
    norms = np.empty(features.shape[0], dtype=np.float32)
    step = _stream_step(features.shape[1])
    for r0 in range(0, features.shape[0], step):
        np.einsum(
            "ij,ij->i",
            features[r0 : r0 + step],
            features[r0 : r0 + step],
            out=norms[r0 : r0 + step],
        )
    if not np.isfinite(norms).all():
        raise SelectionError("features contain NaN or infinite values (or values above 1e19)")
    return norms


def _min_sq_dist_to_set(
    features: np.ndarray,
    sq_norms: np.ndarray,
    *,
    rows: np.ndarray,
    centres: np.ndarray,
    chunk_size: int,
) -> np.ndarray:
    """(len(rows),) float32 min squared distance from each of ``rows`` to ``centres``.

    Uses ||a||^2 + ||b||^2 - 2 a.b over blocks of rows x centres so that no
    len(rows) x len(centres) matrix is ever held; each block is capped at
    ``_MAX_BLOCK_ELEMENTS`` float32 elements.
    """
    n_dims = max(features.shape[1], 1)
    row_step = max(1, min(chunk_size, _MAX_BLOCK_ELEMENTS // n_dims))
    col_step = max(1, min(chunk_size, _MAX_BLOCK_ELEMENTS // row_step))
    out = np.full(rows.size, np.inf, dtype=np.float32)
    for r0 in range(0, rows.size, row_step):
        row_ids = rows[r0 : r0 + row_step]
        block_rows = features[row_ids]
        row_norms = sq_norms[row_ids][:, None]
        best = out[r0 : r0 + row_step]  # view: updated in place
        for c0 in range(0, centres.size, col_step):
            col_ids = centres[c0 : c0 + col_step]
            sq = block_rows @ features[col_ids].T
            sq *= -2.0
            sq += row_norms
            sq += sq_norms[col_ids][None, :]
            np.minimum(best, sq.min(axis=1), out=best)
    # Cancellation in the expansion can give tiny negatives for near-duplicates.
    np.maximum(out, 0.0, out=out)
    return out


def _update_min_sq(
    min_sq: np.ndarray,
    features: np.ndarray,
    sq_norms: np.ndarray,
    *,
    vector: np.ndarray,
    vector_sq_norm: np.float32,
) -> None:
    """Lower ``min_sq`` (N,) in place with squared distances to one centre ``vector`` (d,)
    whose squared norm is ``vector_sq_norm``: O(N d), one streaming pass over ``features``
    (N, d) in blocks of ``_STREAM_BLOCK_BYTES`` (a BLAS matrix-vector product each), so that
    memory-mapped features are read once and the temporaries stay block-sized.

    Rows excluded from picking hold -inf and stay -inf.
    """
    # Scaling the d-vector instead of the N-vector saves one pass over N (exact: x -2).
    scaled = np.asarray(vector, dtype=np.float32) * np.float32(-2.0)
    step = _stream_step(features.shape[1])
    sq = np.empty(min(step, features.shape[0]), dtype=np.float32)
    for r0 in range(0, features.shape[0], step):
        r1 = min(r0 + step, features.shape[0])
        block = sq[: r1 - r0]
        np.matmul(features[r0:r1], scaled, out=block)
        block += sq_norms[r0:r1]
        block += vector_sq_norm
        np.maximum(block, 0.0, out=block)
        np.minimum(min_sq[r0:r1], block, out=min_sq[r0:r1])


def _fold_centres(
    min_sq: np.ndarray,
    features: np.ndarray,
    *,
    centres: np.ndarray,
    sq_norms: np.ndarray | None,
    group: int,
) -> None:
    """Lower ``min_sq`` (N,) in place with the squared distance of every row of ``features``
    (N, d) to its nearest row of ``centres`` (C, d), C >= 1: one streaming pass over the
    features, each block multiplied by up to ``group`` centres at a time (a BLAS
    matrix-matrix product, so many centres cost one read of the data, not one each).

    ``sq_norms`` (N,) are the rows' squared norms, or None to compute them block by block
    (and raise SelectionError, leaving ``min_sq`` partly lowered, on a non-finite row: callers
    pass a copy). Blocks hold ``_STREAM_BLOCK_BYTES`` of features and at most 2**20 distances,
    so temporaries stay small. Rows holding -inf stay -inf.
    """
    n_rows, n_dims = features.shape
    scaled = centres.astype(np.float32) * np.float32(-2.0)  # (C, d), exact scaling
    centre_norms = np.einsum("ij,ij->i", centres, centres).astype(np.float32)
    if not np.isfinite(centre_norms).all():
        raise SelectionError("features contain NaN or infinite values (or values above 1e19)")
    group = max(1, min(group, centres.shape[0]))
    step = max(1, min(_stream_step(n_dims), (1 << 20) // group))
    for r0 in range(0, n_rows, step):
        r1 = min(r0 + step, n_rows)
        block = features[r0:r1]
        if sq_norms is None:
            norms = np.einsum("ij,ij->i", block, block)
            if not np.isfinite(norms).all():
                raise SelectionError(
                    "features contain NaN or infinite values (or values above 1e19)"
                )
        else:
            norms = sq_norms[r0:r1]
        best = np.full(r1 - r0, np.inf, dtype=np.float32)
        for c0 in range(0, centres.shape[0], group):
            sq = block @ scaled[c0 : c0 + group].T
            sq += centre_norms[None, c0 : c0 + group]
            np.minimum(best, sq.min(axis=1), out=best)
        best += norms
        # Cancellation in the expansion can give tiny negatives for near-duplicates.
        np.maximum(best, 0.0, out=best)
        np.minimum(min_sq[r0:r1], best, out=min_sq[r0:r1])


def min_sq_distances_update(
    features: np.ndarray,
    *,
    min_sq: np.ndarray | None,
    new_rows: np.ndarray,
    chunk_size: int = 65536,
) -> np.ndarray:
    """Squared distance from every row to a growing covered set: the k-Center cache.

    Args:
        features: (N, d) embeddings (finite; converted to float32).
        min_sq: (N,) float32 squared distance of each row to the rows covered so far,
            +inf where nothing is covered yet; None means nothing is covered.
        new_rows: (M,) int row positions newly covered (e.g. crops labelled since the
            last round); M may be 0.
        chunk_size: at most this many new rows are multiplied with a block of features at
            once (a block also holds at most 2**20 distances). Results do not depend on it.

    Returns:
        A new (N,) float32 array, ``min(min_sq, distance to new_rows) ** 2``, clipped at
        0. Costs O(N M d) time, one read of the features (a matrix product per block) and
        O(N + M d + block) memory: an N x M matrix is never held, so a round's update only
        pays for the labels added since the last one.

    Raises:
        SelectionError: bad shapes, non-finite features, row positions out of range.
    """
    chunk_size = _check_int(chunk_size, name="chunk_size", minimum=1)
    x = _as_float32_features(features, check_finite=False)
    n_rows = x.shape[0]
    base = _check_min_sq(min_sq, n_rows=n_rows)
    rows = np.asarray(new_rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise SelectionError(f"new_rows must be a 1-D integer array, got {rows.dtype} {rows.shape}")
    rows = np.unique(rows.astype(np.int64))
    if rows.size and (rows[0] < 0 or rows[-1] >= n_rows):
        raise SelectionError(f"new_rows must lie in [0, {n_rows}), got {rows[0]}..{rows[-1]}")
    fresh = base.copy()
    if rows.size == 0:
        _row_sq_norms(x)  # the finiteness check the update would have made
        return fresh
    # The norms are computed in the same pass as the products (one read of the data).
    _fold_centres(fresh, x, centres=np.asarray(x[rows]), sq_norms=None, group=chunk_size)
    return fresh


def _check_min_sq(min_sq: np.ndarray | None, *, n_rows: int) -> np.ndarray:
    """Return a (n_rows,) float32 cache (all +inf for None) or raise SelectionError."""
    if min_sq is None:
        return np.full(n_rows, np.inf, dtype=np.float32)
    arr = np.asarray(min_sq)
    if arr.shape != (n_rows,) or arr.dtype != np.float32:
        raise SelectionError(
            f"min_sq_distances must be float32 of shape ({n_rows},), got {arr.dtype} {arr.shape}"
        )
    if np.isnan(arr).any() or (arr < 0).any():
        raise SelectionError("min_sq_distances must be >= 0 (or +inf), without NaN")
    return arr


@dataclasses.dataclass
class _Held:
    """The rows of ``_greedy_picks`` most likely to hold the next picks, copied into memory.

    ``min_sq`` (H,) is exact for every centre picked so far; every row not held had a
    squared distance of at most ``bound`` when the set was taken, and distances only shrink,
    so while the largest held value exceeds ``bound`` it is the largest of all rows.
    """

    rows: np.ndarray  # (H,) int64 row positions, ascending (argmax ties -> lowest row)
    features: np.ndarray  # (H, d) float32 copy of those rows
    sq_norms: np.ndarray  # (H,) float32
    min_sq: np.ndarray  # (H,) float32
    bound: float


def _held_take(min_sq: np.ndarray, features: np.ndarray, sq_norms: np.ndarray) -> _Held | None:
    """The (at most) ``_HELD_BYTES`` worth of rows with the largest ``min_sq``, or None when
    no row is strictly above the rest (ties at the top: nothing to gain)."""
    n_rows, n_dims = features.shape
    size = max(1, _HELD_BYTES // (4 * max(n_dims, 1)))
    if size >= n_rows:
        bound = -np.inf
    else:
        bound = float(np.partition(min_sq, n_rows - size - 1)[n_rows - size - 1])
    rows = np.flatnonzero(min_sq > bound)
    if rows.size == 0:
        return None
    return _Held(
        rows=rows,
        features=np.ascontiguousarray(features[rows], dtype=np.float32),
        sq_norms=sq_norms[rows],
        min_sq=min_sq[rows],
        bound=bound,
    )


def _greedy_picks(
    min_sq: np.ndarray,
    features: np.ndarray,
    sq_norms: np.ndarray,
    *,
    n_picks: int,
    picks: list[int],
    dists: list[float],
) -> None:
    """Append greedy farthest-first picks to ``picks``/``dists`` until there are ``n_picks``.

    ``min_sq`` (N,) holds each candidate's squared distance to the covered set (-inf for rows
    that may not be picked) and is used as scratch. Each pick is the row of largest
    ``min_sq`` (lowest row on ties), exactly as one full pass over the features per pick
    would find it, but most picks read far less (issue 19: a pass over 10M x 256 is 10 GB):

    * The rows with the largest distances (``_Held``, ``_HELD_BYTES`` of them) are copied
      into memory and updated for each pick; the rest keep their distances from when the copy
      was taken, an upper bound as distances only shrink. A held maximum above every other
      row's bound is the true maximum, so the pick needs no pass over the data.
    * When the held rows no longer hold the maximum, one pass brings every row up to date
      with all the centres picked since (a matrix product per block), and a new copy is taken.
    * Where the copy does not pay (it served a single pick: distances too even for the
      largest to stay ahead), picks fall back to one pass each and the next copy waits twice
      as many picks as the last (at most ``_HELD_WAIT_MAX``).
    """
    pending: list[int] = []  # picks not yet folded into the rows outside the held copy
    held: _Held | None = None
    served, wait, retry_at = 0, 1, len(picks)
    while len(picks) < n_picks:
        if held is None and len(picks) >= retry_at:
            held, served = _held_take(min_sq, features, sq_norms), 0
            if held is None:
                wait = min(2 * wait, _HELD_WAIT_MAX)
                retry_at = len(picks) + wait
        if held is not None:
            j = int(np.argmax(held.min_sq))
            if held.min_sq[j] > held.bound:
                pick = int(held.rows[j])
                dists.append(float(np.sqrt(held.min_sq[j])))
                picks.append(pick)
                pending.append(pick)
                served += 1
                held.min_sq[j] = -np.inf
                min_sq[pick] = -np.inf
                _update_min_sq(
                    held.min_sq,
                    held.features,
                    held.sq_norms,
                    vector=held.features[j],
                    vector_sq_norm=held.sq_norms[j],
                )
                continue
            _fold_centres(
                min_sq,
                features,
                centres=features[np.asarray(pending)],
                sq_norms=sq_norms,
                group=_FOLD_GROUP,
            )
            pending, held = [], None
            wait = 1 if served > 1 else min(2 * wait, _HELD_WAIT_MAX)
            retry_at = len(picks) + (0 if served > 1 else wait)
            continue
        pick = int(np.argmax(min_sq))  # first maximum = lowest index on ties
        dists.append(float(np.sqrt(min_sq[pick])))
        picks.append(pick)
        min_sq[pick] = -np.inf
        _update_min_sq(
            min_sq, features, sq_norms, vector=features[pick], vector_sq_norm=sq_norms[pick]
        )


def k_center_greedy(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
    chunk_size: int = 65536,
) -> Selection:
    """Greedy k-Center selection (Sener & Savarese 2018).

    Repeatedly picks the candidate with the largest Euclidean distance to the covered
    set (labelled rows plus rows picked so far). Ties go to the lowest row index
    (ties meaning exactly equal float32 distances). If nothing is labelled, the first
    centre is drawn uniformly from the candidates with
    ``np.random.default_rng(random_state)``; every later pick is deterministic.

    Args:
        features: (N, d) embeddings; converted to float32 (copied if not already
            C-contiguous float32). Must be finite.
        labeled_mask: (N,) bool, True for rows already labelled (the covered set).
        budget: maximum number of rows to pick, > 0. If fewer candidates exist, all
            candidates are returned (fewer picks), in greedy order.
        random_state: seed >= 0, used only for the first pick when nothing is labelled.
        candidate_mask: (N,) bool, rows that may be picked; default ``~labeled_mask``.
            Labelled rows are never picked even if marked as candidates.
        probabilities: ignored (accepted so that every strategy shares one signature).
        min_sq_distances: optional (N,) float32 cache of each row's squared distance
            to the labelled rows (``min_sq_distances_update``). When given, the O(N L d)
            distances to the labelled set are not recomputed; it must describe exactly
            the rows of ``labeled_mask`` (the picks are then the same as without it).
        chunk_size: maximum rows per block when computing distances to the labelled
            set (both axes); blocks are also capped at 2**24 float32 elements.
            Results do not depend on it.

    Returns:
        Selection with ``strategy="k_center"``; ``distances`` are the pick's distance
        to the covered set at pick time (NaN for a seeded first pick).

    Raises:
        SelectionError (a ValueError): bad shapes/dtypes, non-finite features,
        budget <= 0, negative seed or chunk_size <= 0.

    Memory is O(N + block) plus the ``_HELD_BYTES`` (64 MiB) of rows ``_greedy_picks`` holds,
    never N x L; time O(N L d + budget N d) at worst, but most picks read only the held rows
    (one pass over the data per pick at worst; a handful for a whole round on clustered
    embeddings: see ``_greedy_picks``).
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    chunk_size = _check_int(chunk_size, name="chunk_size", minimum=1)
    x = _as_float32_features(features, check_finite=False)
    sq_norms = _row_sq_norms(x)  # also the finiteness check
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    n_picks = min(budget, candidates.size)
    if n_picks == 0:
        return _empty_selection(strategy="k_center", random_state=random_state)

    # -inf marks rows that can never be picked; argmax then ignores them.
    min_sq = np.full(x.shape[0], -np.inf, dtype=np.float32)
    picks: list[int] = []
    dists: list[float] = []
    labelled_rows = np.flatnonzero(labeled)
    if labelled_rows.size and min_sq_distances is not None:
        min_sq[candidates] = _check_min_sq(min_sq_distances, n_rows=x.shape[0])[candidates]
    elif labelled_rows.size and 2 * candidates.size >= x.shape[0]:
        # Most rows are candidates: one streaming pass over all of them beats gathering.
        covered = np.full(x.shape[0], np.inf, dtype=np.float32)
        _fold_centres(
            covered, x, centres=np.asarray(x[labelled_rows]), sq_norms=sq_norms, group=chunk_size
        )
        min_sq[candidates] = covered[candidates]
    elif labelled_rows.size:
        min_sq[candidates] = _min_sq_dist_to_set(
            x, sq_norms, rows=candidates, centres=labelled_rows, chunk_size=chunk_size
        )
    else:
        # Seeded first centre: index 0 would bias every run towards the same image.
        first = int(np.random.default_rng(random_state).choice(candidates))
        min_sq[candidates] = np.inf
        min_sq[first] = -np.inf
        _update_min_sq(min_sq, x, sq_norms, vector=x[first], vector_sq_norm=sq_norms[first])
        picks.append(first)
        dists.append(float("nan"))

    _greedy_picks(min_sq, x, sq_norms, n_picks=n_picks, picks=picks, dists=dists)
    return Selection(
        indices=np.asarray(picks, dtype=np.int64),
        distances=np.asarray(dists, dtype=np.float32),
        strategy="k_center",
        random_state=random_state,
    )


def random_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Uniform random selection without replacement among the candidates.

    Args and errors as ``k_center_greedy`` (features are used only for N and are not
    checked for finiteness; ``probabilities`` is ignored). Returns Selection with
    ``strategy="random"``, indices in the order drawn by
    ``np.random.default_rng(random_state)`` and NaN distances.
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    arr = np.asarray(features)
    _, candidates = _candidate_rows(arr, labeled_mask=labeled_mask, candidate_mask=candidate_mask)
    n_picks = min(budget, candidates.size)
    if n_picks == 0:
        return _empty_selection(strategy="random", random_state=random_state)
    rng = np.random.default_rng(random_state)
    picks = rng.choice(candidates, size=n_picks, replace=False).astype(np.int64)
    return Selection(
        indices=picks,
        distances=np.full(n_picks, np.nan, dtype=np.float32),
        strategy="random",
        random_state=random_state,
    )


def _as_probabilities(probabilities: object, *, n_rows: int) -> np.ndarray:
    """Return ``probabilities`` as a (n_rows, C) float64 array or raise SelectionError.

    Checks: present, 2-D with one row per feature row and C >= 1, real, finite,
    non-negative, and each row summing to at most 1 (plus float32 rounding slack).
    Scores are computed in float64 so that float32 rounding does not create ties.
    """
    if probabilities is None:
        raise SelectionError(
            "this strategy needs probabilities: the (N, C) class probabilities of the "
            "current classifier for every row, got None"
        )
    arr = np.asarray(probabilities)
    if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] < 1:
        raise SelectionError(
            f"probabilities must have shape ({n_rows}, C) with C >= 1 to match features, "
            f"got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise SelectionError(f"probabilities must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise SelectionError("probabilities contain NaN or infinite values")
    if (arr < 0).any():
        raise SelectionError("probabilities must be >= 0")
    if (arr.sum(axis=1) > 1.0 + _ROW_SUM_TOLERANCE).any():
        raise SelectionError("probabilities rows must sum to at most 1")
    return arr


def _missing_mass(probs: np.ndarray) -> np.ndarray:
    """(N,) probability not listed in each row of a top-k truncated (N, C) matrix (>= 0)."""
    missing: np.ndarray = np.clip(1.0 - probs.sum(axis=1), 0.0, None)
    return missing


def _confidence_scores(probs: np.ndarray) -> np.ndarray:
    """(N,) top-class probability; lower is more uncertain.

    For a top-k truncated row every unseen class has at most the smallest listed
    probability, so the largest listed value is the true top-1: the missing mass is
    irrelevant here.
    """
    top: np.ndarray = probs.max(axis=1)
    return top


def _margin_scores(probs: np.ndarray) -> np.ndarray:
    """(N,) top-1 minus top-2 probability; lower is more uncertain.

    Under top-k truncation an unseen class holds at most ``min(missing mass, smallest
    listed probability)``; the runner-up is the larger of that and the second listed
    value. With C >= 2 this is just the second listed value; with C == 1 (top-1 rows)
    it is ``min(1 - p1, p1)``, the smallest margin consistent with the row.
    """
    n_classes = probs.shape[1]
    if n_classes >= 2:
        top_two = np.partition(probs, (n_classes - 2, n_classes - 1), axis=1)[:, -2:]
        top, listed_second = top_two[:, 1], top_two[:, 0]
    else:
        top, listed_second = probs[:, 0], np.zeros(probs.shape[0])
    unseen_cap = np.minimum(_missing_mass(probs), probs.min(axis=1))
    margin: np.ndarray = top - np.maximum(listed_second, unseen_cap)
    return margin


def _entropy_scores(probs: np.ndarray) -> np.ndarray:
    """(N,) Shannon entropy in nats; higher is more uncertain.

    The missing mass of a truncated row counts as one extra "other" class. Spreading it
    over several unseen classes could only raise the entropy, so this is a lower bound
    for truncated rows and exact for complete ones (missing mass 0 adds nothing).
    """
    missing = _missing_mass(probs)
    # p log p with 0 log 0 = 0; log(1) = 0 avoids the warning for zeros.
    listed = (probs * np.log(np.where(probs > 0, probs, 1.0))).sum(axis=1)
    other = missing * np.log(np.where(missing > 0, missing, 1.0))
    entropy: np.ndarray = -(listed + other)
    return np.maximum(entropy, 0.0)


def _rank(scores: np.ndarray, candidates: np.ndarray, *, highest_first: bool) -> np.ndarray:
    """Candidates (sorted row positions) ordered by score; ties keep the lowest index first.

    A stable sort over ascending candidates gives the lowest-index tie-break; negating
    (exact in floating point) turns "highest first" into an ascending sort.
    """
    key = scores[candidates]
    order = np.argsort(-key if highest_first else key, kind="stable")
    ranked: np.ndarray = candidates[order]
    return ranked


def _uncertainty_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None,
    probabilities: np.ndarray | None,
    strategy: str,
    score: Callable[[np.ndarray], np.ndarray],
    highest_first: bool,
) -> Selection:
    """Shared body of the uncertainty strategies: rank candidates by ``score``, take the top."""
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    arr = np.asarray(features)
    _, candidates = _candidate_rows(arr, labeled_mask=labeled_mask, candidate_mask=candidate_mask)
    probs = _as_probabilities(probabilities, n_rows=arr.shape[0])
    if candidates.size == 0:
        return _empty_selection(strategy=strategy, random_state=random_state)
    scores = score(probs)
    picks = _rank(scores, candidates, highest_first=highest_first)[:budget]
    return Selection(
        indices=picks,
        distances=scores[picks].astype(np.float32),
        strategy=strategy,
        random_state=random_state,
    )


def confidence_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Least-confidence sampling: lowest top-class probability first.

    Args:
        features: (N, d) array; only N is used (not checked for finiteness).
        labeled_mask, budget, random_state, candidate_mask: as ``k_center_greedy``.
            The selection is deterministic; ``random_state`` is only recorded.
        probabilities: (N, C) class probabilities of the current classifier, one row
            per feature row, each row >= 0 and summing to <= 1. A row may be a top-k
            truncation (sum < 1); for confidence the missing mass does not matter
            because every unseen class is at most the smallest listed value.

    Returns:
        Selection with ``strategy="confidence"``, at most ``budget`` candidates in
        increasing top-class probability (ties: lowest row index first);
        ``distances`` hold each pick's top-class probability.

    Raises:
        SelectionError (a ValueError): as ``k_center_greedy``, plus missing or
        misshaped probabilities, negative values, NaN/inf or rows summing above 1.
    """
    return _uncertainty_selection(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
        probabilities=probabilities,
        strategy="confidence",
        score=_confidence_scores,
        highest_first=False,
    )


def margin_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Margin sampling: smallest gap between the two most probable classes first.

    Args and errors as ``confidence_selection``. For a top-k truncated row the
    runner-up is the second listed value; a top-1 row (C == 1) has runner-up
    ``min(1 - p1, p1)``, treating the missing mass as one possible class (so the
    margin is the smallest one consistent with the row).

    Returns:
        Selection with ``strategy="margin"``, at most ``budget`` candidates in
        increasing margin (ties: lowest row index first); ``distances`` hold each
        pick's margin (top-1 minus top-2 probability, in [0, 1]).
    """
    return _uncertainty_selection(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
        probabilities=probabilities,
        strategy="margin",
        score=_margin_scores,
        highest_first=False,
    )


def entropy_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Entropy sampling: highest Shannon entropy of the class probabilities first.

    Args and errors as ``confidence_selection``. The entropy is
    ``-sum(p log p) - m log m`` in nats, where ``m = max(0, 1 - sum(p))`` is the
    missing mass of a top-k truncated row counted as one extra "other" class (a lower
    bound on the true entropy; exact for complete rows, where m = 0).

    Returns:
        Selection with ``strategy="entropy"``, at most ``budget`` candidates in
        decreasing entropy (ties: lowest row index first); ``distances`` hold each
        pick's entropy in nats.
    """
    return _uncertainty_selection(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
        probabilities=probabilities,
        strategy="entropy",
        score=_entropy_scores,
        highest_first=True,
    )


def hybrid_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
    pool_factor: int = 10,
    chunk_size: int = 65536,
) -> Selection:
    """Diversity among the uncertain: k-Center greedy over the least confident candidates.

    The pool is the ``pool_factor * budget`` candidates with the lowest top-class
    probability (ranked as ``confidence_selection``, ties by lowest index); then
    ``k_center_greedy`` picks ``budget`` rows from that pool with the labelled rows as
    the covered set. Uncertainty alone tends to pick near-duplicates (a burst of
    frames of one animal); the k-Center step spreads the picks out.

    Args:
        features: (N, d) embeddings for the k-Center step (finite; see k_center_greedy).
        labeled_mask, budget, random_state, candidate_mask, chunk_size: as
            ``k_center_greedy``; ``random_state`` seeds the first pick only when
            nothing is labelled (drawn uniformly from the pool).
        probabilities: as ``confidence_selection``.
        pool_factor: pool size as a multiple of ``budget``, >= 1. With 1 the result is
            the least confident rows in k-Center order.

    Returns:
        Selection with ``strategy="hybrid"``; ``distances`` are the k-Center
        distances to the covered set at pick time (NaN for a seeded first pick).

    Raises:
        SelectionError (a ValueError): as ``confidence_selection`` and
        ``k_center_greedy``, plus pool_factor < 1.
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    pool_factor = _check_int(pool_factor, name="pool_factor", minimum=1)
    x = _as_float32_features(features)
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    probs = _as_probabilities(probabilities, n_rows=x.shape[0])
    ranked = _rank(_confidence_scores(probs), candidates, highest_first=False)
    pool_mask = np.zeros(x.shape[0], dtype=bool)
    pool_mask[ranked[: pool_factor * budget]] = True
    picked = k_center_greedy(
        x,
        labeled_mask=labeled,
        budget=budget,
        random_state=random_state,
        candidate_mask=pool_mask,
        min_sq_distances=min_sq_distances,
        chunk_size=chunk_size,
    )
    return dataclasses.replace(picked, strategy="hybrid")


STRATEGIES: dict[str, Callable[..., Selection]] = {
    "k_center": k_center_greedy,
    "typical": typical_selection,
    "random": random_selection,
    "confidence": confidence_selection,
    "margin": margin_selection,
    "entropy": entropy_selection,
    "hybrid": hybrid_selection,
}


def select(
    strategy: str,
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Run the strategy named ``strategy`` (a key of STRATEGIES) with these arguments.

    ``probabilities`` ((N, C) class probabilities, see ``confidence_selection``) is
    required by "confidence", "margin", "entropy" and "hybrid", ignored by the others;
    ``min_sq_distances`` (the k-Center cache, see ``k_center_greedy``) is used by
    "k_center" and "hybrid" and ignored by the others.
    Strategy-specific tuning arguments (``chunk_size``, ``pool_factor``) keep their
    defaults here; call the strategy function directly to change them.

    Raises:
        SelectionError (a ValueError): unknown strategy (the message lists the known
        ones), or anything the strategy itself rejects.
    """
    try:
        func = STRATEGIES[strategy]
    except (KeyError, TypeError):
        known = ", ".join(sorted(STRATEGIES))
        raise SelectionError(
            f"unknown selection strategy {strategy!r}; known strategies: {known}"
        ) from None
    return func(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
        probabilities=probabilities,
        min_sq_distances=min_sq_distances,
    )
