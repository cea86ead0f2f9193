"""The engine honours clerical decisions: must-link merges, cannot-link splits, in every update."""

from __future__ import annotations

import numpy as np
import pytest

from linkage_service._engine import LinkageEngine

from ._engine_helpers import Rec, base_bits, batch, counter_ids, dice_model, persons, perturb


def _engine() -> LinkageEngine:
    return LinkageEngine(id_factory=counter_ids(), model=dice_model())  # type: ignore[arg-type]


def test_a_match_decision_merges_two_persons_at_the_next_update_and_they_stay_merged() -> None:
    me = base_bits(11)
    key = {"family_dob": b"k" * 12}
    eng = _engine()
    # Dice about 0.76: the review band of the dice model, not a link
    a, b = perturb(me, 70, 12), perturb(me, 70, 13)
    d = eng.update(batch([Rec(1, a, block=key), Rec(2, b, agency=1, block=key)]), [])
    p1, p2 = d.person_of[1], d.person_of[2]
    assert p1 != p2 and [(x, y) for x, y, _s, _e in d.review] == [(1, 2)]
    eng.set_decisions({(2, 1): "match"})
    other = base_bits(99)
    d2 = eng.update(batch([Rec(7, other, agency=2)]), [])
    assert persons(eng, [1, 2])[0] == persons(eng, [1, 2])[1]
    assert d2.merges and len(d2.persons_retired) == 1
    assert not list(d2.review)  # a decided pair never re-enters the queue
    # later updates, and a record re-sent with changed content, keep them one person
    for k in range(3):
        eng.update(batch([Rec(20 + k, base_bits(200 + k), agency=2)]), [])
    eng.update(batch([Rec(2, perturb(b, 2, 14), agency=1, block=key)]), [])
    p_a, p_b = persons(eng, [1, 2])
    assert p_a == p_b


def test_a_non_match_decision_splits_a_linked_person_and_it_stays_split() -> None:
    me = base_bits(21)
    eng = _engine()
    d = eng.update(batch([Rec(1, me), Rec(2, perturb(me, 10, 22), agency=1)]), [])
    assert d.person_of[1] == d.person_of[2]
    [(x, y, _s, evidence)] = list(d.links)
    assert (x, y) == (1, 2) and "clerical_decision" not in evidence
    eng.set_decisions({(1, 2): "non_match"})
    d2 = eng.update(batch([]), [])
    p1, p2 = persons(eng, [1, 2])
    assert p1 != p2 and d2.splits
    # a third record that links strongly to both may join one of them, never both
    d3 = eng.update(batch([Rec(3, perturb(me, 5, 23), agency=2)]), [])
    assert len(set(persons(eng, [1, 2]))) == 2
    assert not any({x, y} == {1, 2} for x, y, _s, _e in d3.review)
    # re-sending both records with changed content: still apart
    eng.update(batch([Rec(1, perturb(me, 1, 24)), Rec(2, perturb(me, 9, 25), agency=1)]), [])
    assert len(set(persons(eng, [1, 2]))) == 2


def test_decisions_survive_a_rebuild_from_state_and_a_full_relink() -> None:
    me = base_bits(31)
    eng = _engine()
    eng.update(batch([Rec(1, me), Rec(2, perturb(me, 10, 32), agency=1)]), [])
    eng.set_decisions({(1, 2): "non_match"})
    eng.update(batch([]), [])
    person_of = {r: p for p in eng.pid_root for r in eng.person_records(p)}
    recs = [Rec(1, me), Rec(2, perturb(me, 10, 32), agency=1)]
    again = LinkageEngine.from_state(
        batch(recs),
        person_of,
        {},
        id_factory=counter_ids(),  # type: ignore[arg-type]
        model=dice_model(),
        decisions={(1, 2): "non_match"},
    )
    again.update(batch([Rec(3, perturb(me, 4, 33), agency=2)]), [])
    assert len(set(persons(again, [1, 2]))) == 2
    # a person merged from the database in spite of a non-match is split at the next update
    stale = LinkageEngine.from_state(
        batch(recs),
        {1: "per_x", 2: "per_x"},
        {},
        model=dice_model(),
        decisions={(1, 2): "non_match"},
    )
    stale.update(batch([]), [])
    assert len(set(persons(stale, [1, 2]))) == 2


def test_a_match_never_joins_a_cannot_linked_pair() -> None:
    a, b, c = base_bits(41), base_bits(42), base_bits(43)
    eng = _engine()
    eng.update(batch([Rec(1, a), Rec(2, b, agency=1), Rec(3, c, agency=2)]), [])
    eng.set_decisions({(1, 2): "match", (2, 3): "match", (1, 3): "non_match"})
    eng.update(batch([]), [])
    p1, p2, p3 = persons(eng, [1, 2, 3])
    assert p1 != p3 and p2 in (p1, p3)


def test_decisions_are_checked() -> None:
    eng = _engine()
    with pytest.raises(ValueError, match="not match or non_match"):
        eng.set_decisions({(1, 2): "maybe"})
    with pytest.raises(ValueError, match="against itself"):
        eng.set_decisions({(1, 1): "match"})
    assert eng.decisions == {}
    assert not eng._decided_mask(np.array([0]), np.array([1])).any()


def test_a_cannot_linked_pair_of_new_records_is_never_one_person() -> None:
    me = base_bits(51)
    eng = _engine()
    eng.set_decisions({(1, 2): "non_match"})
    d = eng.update(batch([Rec(1, me), Rec(2, perturb(me, 10, 52), agency=1)]), [])
    assert d.person_of[1] != d.person_of[2]
    assert not list(d.links) and not list(d.review)
    # both re-sent changed, alone: the edge between two lone records is dropped too
    eng.update(batch([Rec(1, perturb(me, 3, 53)), Rec(2, perturb(me, 9, 54), agency=1)]), [])
    assert len(set(persons(eng, [1, 2]))) == 2
