"""Selection of whole capture events instead of single crops. Django-free.

A volunteer who answers for a capture event labels all its crops with one decision, so a round
of events spends the volunteers' decisions where crops spend them one by one. Each event is a
point in the embedding space: the mean of its crops' L2-normalised embeddings, normalised
again (a burst's frames look alike, so the mean is a fair summary and stays on the same unit
sphere as a single crop). k-Center greedy (``selection.k_center_greedy``) then spreads the
picked events over that space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from activelearn.selection import k_center_greedy


@dataclass(frozen=True)
class EventEmbeddings:
    """``keys`` (E,) the distinct event labels in order of first appearance; ``index`` (N,)
    int64 row of ``keys`` of each crop; ``vectors`` (E, d) float32 unit rows (a row of
    zeros only where all of an event's crops have zero embeddings)."""

    keys: np.ndarray
    index: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class EventSelection:
    """Events picked in greedy order: ``events`` (k,) rows of ``EventEmbeddings.keys``,
    ``crop_rows`` the crop rows (ascending) of each picked event that are candidates, and
    ``distances`` (k,) each pick's distance to the covered events (NaN for a seeded first
    pick)."""

    events: np.ndarray
    crop_rows: list[np.ndarray]
    distances: np.ndarray


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def event_embeddings(vectors: np.ndarray, events: np.ndarray) -> EventEmbeddings:
    """Embeddings of the capture events of crops ``vectors`` (N, d) with labels ``events``
    (N,) (any hashable values; equal labels share an event).

    Each crop row is L2-normalised, the rows of an event averaged and the mean normalised
    again. ValueError for mismatched shapes or non-finite vectors.
    """
    x = np.asarray(vectors, dtype=np.float64)
    ev = np.asarray(events)
    if x.ndim != 2 or ev.shape != (x.shape[0],):
        raise ValueError(f"vectors (N, d) and events (N,) expected, got {x.shape}, {ev.shape}")
    if not np.isfinite(x).all():
        raise ValueError("vectors must be finite")
    first: dict[object, int] = {}
    index = np.empty(x.shape[0], dtype=np.int64)
    for row, key in enumerate(ev.tolist()):
        index[row] = first.setdefault(key, len(first))
    keys = np.array(list(first), dtype=ev.dtype) if first else ev[:0]
    sums = np.zeros((len(first), x.shape[1]), dtype=np.float64)
    np.add.at(sums, index, _unit_rows(x))
    return EventEmbeddings(keys, index, _unit_rows(sums).astype(np.float32))


def event_k_center(
    vectors: np.ndarray,
    events: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    candidate_mask: np.ndarray,
    budget: int,
    random_state: int,
) -> EventSelection:
    """k-Center greedy over capture events: up to ``budget`` events, farthest first.

    ``labeled_mask`` (N,) bool marks labelled crops: an event with any labelled crop is covered
    and never picked. ``candidate_mask`` (N,) bool marks the crops that may be offered (active,
    unlabelled); an event may be picked when it has a candidate crop and no labelled one. The
    first pick, when no event is covered, is drawn with ``random_state`` as in
    ``k_center_greedy``; ties go to the event that appears first. ValueError for bad shapes,
    SelectionError (a ValueError) for a budget below 1.
    """
    emb = event_embeddings(vectors, events)
    labeled = np.asarray(labeled_mask, dtype=bool)
    candidates = np.asarray(candidate_mask, dtype=bool)
    n = emb.index.size
    if labeled.shape != (n,) or candidates.shape != (n,):
        raise ValueError(
            f"labeled_mask and candidate_mask must be ({n},), got {labeled.shape}, "
            f"{candidates.shape}"
        )
    n_events = emb.keys.size
    covered = np.zeros(n_events, dtype=bool)
    covered[emb.index[labeled]] = True
    has_candidate = np.zeros(n_events, dtype=bool)
    has_candidate[emb.index[candidates & ~labeled]] = True
    if n_events == 0:
        empty = np.zeros(0, dtype=np.int64)
        return EventSelection(empty, [], np.zeros(0, dtype=np.float32))
    picked = k_center_greedy(
        emb.vectors,
        labeled_mask=covered,
        budget=budget,
        random_state=random_state,
        candidate_mask=has_candidate & ~covered,
    )
    rows = [np.flatnonzero((emb.index == e) & candidates) for e in picked.indices.tolist()]
    return EventSelection(
        picked.indices.astype(np.int64), rows, np.asarray(picked.distances, dtype=np.float32)
    )
