"""The picks of an event round: whole capture events by k-Center over event embeddings."""

from __future__ import annotations

import numpy as np

from activelearn.selection_events import event_k_center
from activelearn.selectors_events import crop_events_get
from projects.models import Project

__all__ = ["event_round_picks"]


def event_round_picks(
    *,
    project: Project,
    ids: np.ndarray,
    vectors: np.ndarray,
    labeled_mask: np.ndarray,
    candidate_mask: np.ndarray,
    size: int,
    seed: int,
) -> list[tuple[int, float | None, bool]]:
    """Up to ``size`` capture events of ``project``, farthest first (``event_k_center``), as
    round picks (row of ``ids``, distance, False): each event's candidate crops in row order,
    all with the event's distance (None for a seeded first pick). An event with a labelled
    crop is covered and never picked; crops of ``ids`` unknown to the project are left out."""
    events_of = crop_events_get(project=project, crop_ids=ids.tolist())
    # A crop of the vectors that no longer exists is an event of its own, never a candidate.
    events = np.array([events_of.get(int(c), f"gone-{int(c)}") for c in ids], dtype=object)
    known = np.isin(ids, np.fromiter(events_of, dtype=np.int64, count=len(events_of)))
    chosen = event_k_center(
        vectors,
        events,
        labeled_mask=labeled_mask,
        candidate_mask=candidate_mask & known,
        budget=size,
        random_state=seed,
    )
    return [
        (int(row), None if np.isnan(distance) else float(distance), False)
        for rows, distance in zip(chosen.crop_rows, chosen.distances.tolist(), strict=True)
        for row in rows.tolist()
    ]
