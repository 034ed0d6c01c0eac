"""Streamed squared distances for k-Center over (N, d) float32 features that may be a memory map.

What ``activelearn.selection``'s k-Center and its cache update are built on (issue 19: 10M x
256 vectors, 10 GB, read from disk): squared norms and distance updates read the features in
blocks of ``STREAM_BLOCK_BYTES`` through BLAS, several centres fold into one pass as a matrix
product (``fold_centres``), and ``greedy_picks`` serves most picks from the rows it holds in
memory. Plain numpy in, plain numpy out; errors are ``SelectionError``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from activelearn.selection_types import SelectionError

# Cap on the number of float32 elements in one temporary block (64 MiB), so the
# default chunk_size stays safe for wide embeddings (e.g. d=2048).
MAX_BLOCK_ELEMENTS = 1 << 24
# Bytes of features one streamed pass (a pick's distance update, the squared norms) reads
# per block: large enough that BLAS runs at memory bandwidth, small enough that the block's
# temporaries are negligible beside the data (issue 19: 10M x 256 memory-mapped).
STREAM_BLOCK_BYTES = 16 << 20
# k-Center keeps the rows with the largest distances in memory between passes (``_Held``):
# 64 MiB (65,536 rows at d=256) keeps most picks of a round off the data, and is small beside
# 10M x 256 float32 (10 GB, whose size + 10% is the memory goal of issue 19).
HELD_BYTES = 64 << 20
# Picks to wait, at most, before trying a held copy again after one that did not pay.
HELD_WAIT_MAX = 32
# Centres multiplied with a block of features at once when a pass folds several in.
FOLD_GROUP = 256
# A row whose squared norm is not finite holds NaN or infinity (or values whose squares
# overflow float32).
_NOT_FINITE = "features contain NaN or infinite values (or values above 1e19)"


def as_float32_features(features: object, *, check_finite: bool = True) -> np.ndarray:
    """Return features as a C-contiguous float32 (N, d) array, without copying one that is
    already float32 and C-contiguous (a memory-mapped .npy stays on disk).

    ``check_finite`` reads every row (in blocks) and raises SelectionError on NaN or
    infinity; callers that go on to ``row_sq_norms``, which checks the same as it reads,
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
        step = stream_step(arr.shape[1])
        for r0 in range(0, arr.shape[0], step):
            if not np.isfinite(arr[r0 : r0 + step]).all():
                raise SelectionError("features contain NaN or infinite values")
    return arr


def stream_step(n_dims: int) -> int:
    """Rows per streamed block: ``STREAM_BLOCK_BYTES`` of float32, at least one row."""
    return max(1, STREAM_BLOCK_BYTES // (4 * max(n_dims, 1)))


def row_sq_norms(features: np.ndarray) -> np.ndarray:
    """(N,) float32 squared L2 norm of each row of a (N, d) float32 array, read in blocks
    (one pass; a memory map is never loaded whole).

    Raises SelectionError when a row holds NaN or infinity: its squared norm is then
    NaN or +inf (as it is for values above ~1e19, whose squares overflow float32).
    """
    norms = np.empty(features.shape[0], dtype=np.float32)
    step = stream_step(features.shape[1])
    for r0 in range(0, features.shape[0], step):
        np.einsum(
            "ij,ij->i",
            features[r0 : r0 + step],
            features[r0 : r0 + step],
            out=norms[r0 : r0 + step],
        )
    if not np.isfinite(norms).all():
        raise SelectionError(_NOT_FINITE)
    return norms


def min_sq_dist_to_set(
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
    ``MAX_BLOCK_ELEMENTS`` float32 elements.
    """
    n_dims = max(features.shape[1], 1)
    row_step = max(1, min(chunk_size, MAX_BLOCK_ELEMENTS // n_dims))
    col_step = max(1, min(chunk_size, MAX_BLOCK_ELEMENTS // row_step))
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


def update_min_sq(
    min_sq: np.ndarray,
    features: np.ndarray,
    sq_norms: np.ndarray,
    *,
    vector: np.ndarray,
    vector_sq_norm: np.float32,
) -> None:
    """Lower ``min_sq`` (N,) in place with squared distances to one centre ``vector`` (d,)
    whose squared norm is ``vector_sq_norm``: O(N d), one streaming pass over ``features``
    (N, d) in blocks of ``STREAM_BLOCK_BYTES`` (a BLAS matrix-vector product each), so that
    memory-mapped features are read once and the temporaries stay block-sized.

    Rows excluded from picking hold -inf and stay -inf.
    """
    # Scaling the d-vector instead of the N-vector saves one pass over N (exact: x -2).
    scaled = np.asarray(vector, dtype=np.float32) * np.float32(-2.0)
    step = stream_step(features.shape[1])
    sq = np.empty(min(step, features.shape[0]), dtype=np.float32)
    for r0 in range(0, features.shape[0], step):
        r1 = min(r0 + step, features.shape[0])
        block = sq[: r1 - r0]
        np.matmul(features[r0:r1], scaled, out=block)
        block += sq_norms[r0:r1]
        block += vector_sq_norm
        np.maximum(block, 0.0, out=block)
        np.minimum(min_sq[r0:r1], block, out=min_sq[r0:r1])


def fold_centres(
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
    pass a copy). Blocks hold ``STREAM_BLOCK_BYTES`` of features and at most 2**20 distances,
    so temporaries stay small. Rows holding -inf stay -inf.
    """
    n_rows, n_dims = features.shape
    scaled = centres.astype(np.float32) * np.float32(-2.0)  # (C, d), exact scaling
    centre_norms = np.einsum("ij,ij->i", centres, centres).astype(np.float32)
    if not np.isfinite(centre_norms).all():
        raise SelectionError(_NOT_FINITE)
    group = max(1, min(group, centres.shape[0]))
    step = max(1, min(stream_step(n_dims), (1 << 20) // group))
    for r0 in range(0, n_rows, step):
        r1 = min(r0 + step, n_rows)
        block = features[r0:r1]
        if sq_norms is None:
            norms = np.einsum("ij,ij->i", block, block)
            if not np.isfinite(norms).all():
                raise SelectionError(_NOT_FINITE)
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


@dataclasses.dataclass
class _Held:
    """The rows of ``greedy_picks`` most likely to hold the next picks, copied into memory.

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
    """The (at most) ``HELD_BYTES`` worth of rows with the largest ``min_sq``, or None when
    no row is strictly above the rest (ties at the top: nothing to gain)."""
    n_rows, n_dims = features.shape
    size = max(1, HELD_BYTES // (4 * max(n_dims, 1)))
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


def _held_later(wait: int, *, picked: int) -> tuple[int, int]:
    """After a held copy that did not pay (or none to take): the doubled wait (at most
    ``HELD_WAIT_MAX``) and the pick count at which to try a copy again."""
    wait = min(2 * wait, HELD_WAIT_MAX)
    return wait, picked + wait


def greedy_picks(
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

    * The rows with the largest distances (``_Held``, ``HELD_BYTES`` of them) are copied
      into memory and updated for each pick; the rest keep their distances from when the copy
      was taken, an upper bound as distances only shrink. A held maximum above every other
      row's bound is the true maximum, so the pick needs no pass over the data.
    * When the held rows no longer hold the maximum, one pass brings every row up to date
      with all the centres picked since (a matrix product per block), and a new copy is taken.
    * Where the copy does not pay (it served a single pick: distances too even for the
      largest to stay ahead), picks fall back to one pass each and the next copy waits twice
      as many picks as the last (at most ``HELD_WAIT_MAX``).
    """
    pending: list[int] = []  # picks not yet folded into the rows outside the held copy
    held: _Held | None = None
    served, wait, retry_at = 0, 1, len(picks)
    while len(picks) < n_picks:
        if held is None and len(picks) >= retry_at:
            held, served = _held_take(min_sq, features, sq_norms), 0
            if held is None:
                wait, retry_at = _held_later(wait, picked=len(picks))
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
                update_min_sq(
                    held.min_sq,
                    held.features,
                    held.sq_norms,
                    vector=held.features[j],
                    vector_sq_norm=held.sq_norms[j],
                )
                continue
            fold_centres(
                min_sq,
                features,
                centres=features[np.asarray(pending)],
                sq_norms=sq_norms,
                group=FOLD_GROUP,
            )
            pending, held = [], None
            if served > 1:  # the copy paid: take a new one at once
                wait, retry_at = 1, len(picks)
            else:
                wait, retry_at = _held_later(wait, picked=len(picks))
            continue
        pick = int(np.argmax(min_sq))  # first maximum = lowest index on ties
        dists.append(float(np.sqrt(min_sq[pick])))
        picks.append(pick)
        min_sq[pick] = -np.inf
        update_min_sq(
            min_sq, features, sq_norms, vector=features[pick], vector_sq_norm=sq_norms[pick]
        )
