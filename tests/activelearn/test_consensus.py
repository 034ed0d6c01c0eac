"""The pure consensus rule, case by case and against a brute-force reading of the rule."""

from __future__ import annotations

import itertools

import pytest

from activelearn.consensus import DONE, PENDING, REVIEW, attributes_decide, consensus_decide

FOX, DEER = ("species", 1), ("species", 2)
BLANK = ("not_animal", None)


def test_single_vote_is_done_with_full_agreement() -> None:
    result = consensus_decide([FOX], votes_needed=1, threshold=0.66)
    assert (result.status, result.kind, result.species_id) == (DONE, "species", 1)
    assert (result.votes, result.agreement) == (1, 1.0)


def test_waits_for_the_votes_needed() -> None:
    result = consensus_decide([FOX], votes_needed=3, threshold=0.66)
    assert result.status == PENDING and result.species_id == 1


def test_two_of_three_reach_two_thirds() -> None:
    result = consensus_decide([FOX, DEER, FOX], votes_needed=3, threshold=0.66)
    assert result.status == DONE and result.species_id == 1
    assert result.agreement == pytest.approx(2 / 3)


def test_disagreement_goes_to_review() -> None:
    result = consensus_decide([FOX, DEER, BLANK], votes_needed=3, threshold=0.66)
    assert result.status == REVIEW and result.agreement == pytest.approx(1 / 3)


def test_a_tie_goes_to_review_even_at_a_low_threshold() -> None:
    result = consensus_decide([FOX, DEER], votes_needed=2, threshold=0.5)
    assert result.status == REVIEW
    assert result.species_id == 1  # the earliest vote of the tie, for display


def test_review_decides() -> None:
    result = consensus_decide([FOX, DEER], votes_needed=2, threshold=0.9, review=BLANK)
    assert (result.status, result.kind, result.species_id) == (DONE, "not_animal", None)
    assert result.votes == 2 and result.agreement == 1.0


@pytest.mark.parametrize(
    "votes_needed,threshold,votes",
    [(0, 0.5, [FOX]), (1, 1.5, [FOX]), (1, 0.5, [])],
)
def test_bad_arguments_are_refused(votes_needed: int, threshold: float, votes: list) -> None:
    with pytest.raises(ValueError):
        consensus_decide(votes, votes_needed=votes_needed, threshold=threshold)


@pytest.mark.parametrize("needed,threshold", [(1, 0.66), (2, 0.5), (3, 0.66), (3, 1.0)])
def test_matches_brute_force_over_every_small_vote_list(needed: int, threshold: float) -> None:
    for n in range(1, 5):
        for votes in itertools.product([FOX, DEER, BLANK], repeat=n):
            result = consensus_decide(list(votes), votes_needed=needed, threshold=threshold)
            counts = {v: votes.count(v) for v in set(votes)}
            best = max(counts.values())
            winners = [v for v in counts if counts[v] == best]
            if n < needed:
                expected = PENDING
            elif len(winners) == 1 and best / n >= threshold:
                expected = DONE
            else:
                expected = REVIEW
            assert result.status == expected, votes
            assert result.agreement == pytest.approx(best / n)
            first_winner = next(v for v in votes if v in winners)
            assert (result.kind, result.species_id) == first_winner


# --- attributes: a strict majority of the votes that recorded attributes ----------------------

STANDING, EATING = 1, 2


def test_attributes_need_a_strict_majority() -> None:
    assert attributes_decide([[STANDING], [STANDING, EATING], []]) == [STANDING]
    # Two of four is a tie: not a majority, so no.
    assert attributes_decide([[STANDING], [STANDING], [], [EATING]]) == []


def test_votes_without_attributes_do_not_count() -> None:
    # One of the two votes recorded attributes: it alone decides.
    assert attributes_decide([None, [EATING]]) == [EATING]
    assert attributes_decide([None, None]) is None
    assert attributes_decide([[]]) == []


def test_a_review_with_attributes_decides() -> None:
    assert attributes_decide([[STANDING], [STANDING]], review=[EATING]) == [EATING]
    assert attributes_decide([[STANDING], [STANDING]], review=[]) == []
    # A review that recorded none leaves the votes to decide.
    assert attributes_decide([[STANDING], [STANDING]], review=None) == [STANDING]


def test_attributes_match_brute_force_over_every_small_vote_list() -> None:
    choices: list[list[int] | None] = [None, [], [STANDING], [EATING], [STANDING, EATING]]
    for n in range(1, 5):
        for votes in itertools.product(choices, repeat=n):
            result = attributes_decide(list(votes))
            recorded = [v for v in votes if v is not None]
            if not recorded:
                assert result is None, votes
                continue
            expected = [
                a for a in (STANDING, EATING) if sum(a in v for v in recorded) > len(recorded) / 2
            ]
            assert result == expected, votes


# Taxa: 1 house mouse, 2 brown rat (species) in 7 rodent (order) in 9 mammal (class); 3 a bird.
ANCESTORS = {1: (7, 9), 2: (7, 9), 7: (9,), 9: (), 3: ()}


def _decide(*species: int, needed: int = 2, threshold: float = 0.66) -> tuple[object, ...]:
    votes = [("species", s) for s in species]
    result = consensus_decide(votes, votes_needed=needed, threshold=threshold, ancestors=ANCESTORS)
    return result.status, result.species_id, round(result.agreement, 2)


def test_a_higher_taxon_vote_agrees_with_the_species_below_it() -> None:
    assert _decide(7, 1) == ("done", 1, 1.0)
    assert _decide(1, 7) == ("done", 1, 1.0)
    assert _decide(9, 7, 1, needed=3) == ("done", 1, 1.0)
    assert _decide(7, 7) == ("done", 7, 1.0)  # decided as the higher taxon: kept, not trained


def test_higher_taxon_votes_do_not_hide_a_species_conflict() -> None:
    assert _decide(1, 2, 7, needed=3) == ("review", 1, 0.67)  # mouse 2 and rat 2: a tie
    assert _decide(7, 3) == ("review", 7, 0.5)  # a rodent is no bird
    assert _decide(1, 3) == ("review", 1, 0.5)


def test_without_ancestors_higher_taxa_are_answers_of_their_own() -> None:
    votes = [("species", 7), ("species", 1)]
    assert consensus_decide(votes, votes_needed=2, threshold=0.66).status == "review"


def test_taxon_agreement_against_brute_force() -> None:
    """Every three votes over the taxa: an answer's support is the votes for it or for a
    taxon above it, and the decision is the earliest answer of the largest support."""

    for species in itertools.product((1, 2, 7, 9, 3), repeat=3):
        support = {
            s: sum(v == s or v in ANCESTORS[s] for v in species) for s in dict.fromkeys(species)
        }
        best = max(support.values())
        top = next(s for s in support if support[s] == best)
        unique = sum(n == best for n in support.values()) == 1
        status = "done" if unique and best / 3 >= 0.66 else "review"
        assert _decide(*species, needed=3) == (status, top, round(best / 3, 2)), species
