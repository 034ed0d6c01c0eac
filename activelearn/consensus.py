"""Consensus of volunteers' votes on one crop. Pure: no Django, votes in, a dataclass out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# A vote: (label kind, species id or None), e.g. ("species", 7) or ("not_animal", None).
Vote = tuple[str, int | None]

PENDING, DONE, REVIEW = "pending", "done", "review"


@dataclass(frozen=True)
class ConsensusResult:
    """``status`` is pending (fewer than the votes needed), done or review (no agreement).

    ``kind``/``species_id`` are the plurality's (the earliest-cast of tied votes: a stable
    choice); ``agreement`` is its share of the votes.
    """

    status: str
    kind: str
    species_id: int | None
    votes: int
    agreement: float


def consensus_decide(
    votes: Sequence[Vote],
    *,
    votes_needed: int,
    threshold: float,
    review: Vote | None = None,
    ancestors: Mapping[int, Sequence[int]] | None = None,
) -> ConsensusResult:
    """Decide a crop from its votes (oldest first, one per volunteer).

    Done when at least ``votes_needed`` votes are in, one answer has strictly more votes than
    any other, and its share is at least ``threshold``. With the votes in but no such answer
    the crop goes to review. An admin's ``review`` vote decides regardless.

    ``ancestors`` ({species id: the ids of the higher taxa it belongs to}) lets a vote for a
    higher taxon agree with every answer below it: an answer's votes are its own plus those of
    its ancestors. "rodent" and "house mouse" decide "house mouse" (2 of 2); "house mouse",
    "brown rat" and "rodent" tie (2 and 2) and go to review; "rodent" twice decides "rodent".
    """
    if not votes and review is None:
        raise ValueError("a consensus needs at least one vote")
    if votes_needed < 1 or not 0.0 <= threshold <= 1.0:
        raise ValueError("votes_needed must be >= 1 and threshold within [0, 1]")
    if review is not None:
        return ConsensusResult(DONE, review[0], review[1], len(votes), 1.0)
    counts = Counter(votes)
    if ancestors:
        own = dict(counts)
        for answer in counts:
            kind, species = answer
            for above in ancestors.get(species, ()) if species is not None else ():
                counts[answer] += own.get((kind, above), 0)
    # Counter keeps first-seen order (most_common sorts stably), so ties resolve to the
    # earliest vote.
    (top, top_n), *rest = counts.most_common()
    agreement = top_n / len(votes)
    if len(votes) < votes_needed:
        status = PENDING
    elif (not rest or rest[0][1] < top_n) and agreement >= threshold:
        status = DONE
    else:
        status = REVIEW
    return ConsensusResult(status, top[0], top[1], len(votes), agreement)


def attributes_decide(
    votes: Sequence[Sequence[int] | None], *, review: Sequence[int] | None = None
) -> list[int] | None:
    """The attribute ids decided yes for a crop, from its votes' ticked attribute ids.

    Each vote is the list of ids one volunteer ticked, or None when that vote recorded no
    attributes (an older label, a client that does not send them, a label that is not a
    species). An id is yes when strictly more than half of the votes recording attributes
    ticked it (a tie is no: an attribute needs a majority to be claimed). An admin's ``review``
    that recorded attributes decides regardless of the votes. Returns the sorted ids, or None
    when nothing was recorded.
    """
    if review is not None:
        return sorted({int(a) for a in review})
    recorded = [set(map(int, v)) for v in votes if v is not None]
    if not recorded:
        return None
    ticks = Counter(a for vote in recorded for a in vote)
    return sorted(a for a, n in ticks.items() if 2 * n > len(recorded))
