"""The engine on an encoded synthetic population: quality, incremental updates, stable ids."""

from __future__ import annotations

import re

import numpy as np
import pytest

from evaluation._harness import Population, pair_scores
from linkage_service._engine import Delta, EngineConfig, LinkageEngine, _grow

from ._engine_helpers import (
    Rec,
    base_bits,
    batch,
    counter_ids,
    dice_model,
    labels,
    load_relink_remove,
    perturb,
    population,
)

__all__ = ["population"]  # the fixture, imported for pytest

PER = re.compile(r"^per_[0-9a-f]{16}$")
HH = re.compile(r"^hh_[0-9a-f]{16}$")


def _labels_now(eng: LinkageEngine, pop: Population) -> tuple[list[str], list[str]]:
    person_of = {rid: pid for pid in eng.pid_root for rid in eng.person_records(pid)}
    person = [person_of[int(i)] for i in pop.batch.ids]
    return person, [eng.person_hid[p] for p in person]


def test_quality_at_the_shipped_defaults(population: Population) -> None:
    eng = LinkageEngine()
    delta = eng.update(population.batch, [])
    person, household = labels(delta, population.batch)
    ps = pair_scores(person, population.truth_person)
    hs = pair_scores(household, population.truth_household)
    assert ps.f1 >= 0.98, ps
    assert hs.f1 >= 0.95, hs
    assert all(PER.match(p) for p in set(person))
    assert all(HH.match(h) for h in set(household))
    assert delta.stats["reduction_ratio"] > 0.99
    assert delta.review  # uncertain pairs are shown, not guessed
    assert not delta.merges and not delta.splits and not delta.persons_retired
    assert set(delta.families) == set(household)


def test_incremental_matches_linking_at_once_and_keeps_ids(population: Population) -> None:
    pop = population
    first = np.nonzero(pop.batch.agency < 4)[0]
    rest = np.nonzero(pop.batch.agency >= 4)[0]
    eng = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    d1 = eng.update(pop.batch.take(first), [])
    before = dict(d1.person_of)
    assert d1.persons_unheld == set(d1.person_of.values())
    assert d1.households_unheld == set(d1.household_of.values())
    held_persons, held_households = set(eng.pid_root), set(eng.hid_persons)
    d2 = eng.update(pop.batch.take(rest), [])
    # the ids the store must create (or revive): exactly those not held before
    assert d2.persons_unheld == set(d2.person_of.values()) - held_persons
    assert d2.households_unheld == set(d2.household_of.values()) - held_households
    assert d2.persons_unheld and d2.persons_unheld != set(d2.person_of.values())
    # of them, those made now (no store holds them: created without a look-up)
    assert d1.persons_made == d1.persons_unheld and d1.households_made == d1.households_unheld
    assert d2.persons_made == d2.persons_unheld - set(before.values())
    assert d2.households_made == d2.households_unheld - set(d1.household_of.values())
    person, household = _labels_now(eng, pop)
    assert pair_scores(person, pop.truth_person).f1 >= 0.98
    assert pair_scores(household, pop.truth_household).f1 >= 0.95
    merged = {a for a, _ in d2.merges}
    split = {a for a, _ in d2.splits}
    for rid, pid in before.items():
        now = d2.person_of.get(rid, pid)
        assert now == pid or pid in merged or pid in split
    assert set(d2.persons_retired) == merged - {b for _, b in d2.merges}
    # every new record got a person
    assert {int(i) for i in pop.batch.ids[rest]} <= set(d2.person_of)


def test_persons_ready_hands_over_final_persons_before_the_households(
    population: Population,
) -> None:
    # the service stores persons, links and review while the households are worked
    # out: what it is handed must be what the update ends with, and handed over once
    with_hook = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    without = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    for added, removed in load_relink_remove(population):
        seen: list[tuple[object, ...]] = []

        def ready(d: Delta, seen: list[tuple[object, ...]] = seen) -> None:
            assert not d.household_of and not d.households_retired and not d.families
            seen.append(
                (
                    dict(d.person_of),
                    list(d.persons_retired),
                    list(d.merges),
                    list(d.splits),
                    set(d.persons_unheld),
                    set(d.persons_made),
                    list(d.links),
                    list(d.review),
                )
            )

        d = with_hook.update(added, removed, persons_ready=ready)
        final = (
            d.person_of,
            d.persons_retired,
            d.merges,
            d.splits,
            d.persons_unheld,
            d.persons_made,
            list(d.links),
            list(d.review),
        )
        assert seen == [final]
        plain = without.update(added, removed)
        assert (d.person_of, d.household_of, d.families) == (
            plain.person_of,
            plain.household_of,
            plain.families,
        )
        assert d.household_of or removed  # the households came after the hand-over


def test_reapplying_the_same_batch_changes_nothing(population: Population) -> None:
    eng = LinkageEngine()
    eng.update(population.batch, [])
    again = eng.update(population.batch, [])
    assert again.person_of == {} and again.household_of == {}
    assert not again.merges and not again.splits and not again.persons_retired
    assert not again.households_retired and not again.families
    assert again.stats["records_added"] == 0


def test_removing_an_agency_retires_its_records(population: Population) -> None:
    pop = population
    eng = LinkageEngine()
    d = eng.update(pop.batch, [])
    gone = [int(i) for i in pop.batch.ids[pop.batch.agency == 0]]
    only_there = {
        pid for pid in set(d.person_of.values()) if set(eng.person_records(pid)) <= set(gone)
    }
    d2 = eng.update(pop.batch.take(np.zeros(0, dtype=np.int64)), gone)
    held = {rid for pid in eng.pid_root for rid in eng.person_records(pid)}
    assert held.isdisjoint(gone)
    assert only_there <= set(d2.persons_retired)
    assert all(eng.person_records(p) == [] for p in only_there)
    person_of = {rid: pid for pid in eng.pid_root for rid in eng.person_records(pid)}
    # the person of each live record, as the service asks it for a changed record's
    # predecessor; retired and unknown ids are left out
    some = sorted(person_of)[:50]
    unknown = max(person_of) + 1
    assert unknown not in person_of
    assert eng.record_persons([*some, *gone[:5], unknown]) == {r: person_of[r] for r in some}
    assert eng.record_persons([]) == {}
    keep = np.nonzero(pop.batch.agency != 0)[0].tolist()
    person = [person_of[int(pop.batch.ids[k])] for k in keep]
    assert pair_scores(person, [pop.truth_person[k] for k in keep]).f1 >= 0.98


def test_from_state_rebuilds_without_relinking(population: Population) -> None:
    pop = population
    eng = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    d = eng.update(pop.batch, [])
    again = LinkageEngine.from_state(pop.batch, d.person_of, d.household_of)
    assert again.pid_root.keys() == eng.pid_root.keys()
    for pid in list(eng.pid_root)[:200]:
        assert again.person_records(pid) == eng.person_records(pid)
    hid = d.household_of[d.person_of[int(pop.batch.ids[0])]]
    assert again.household_persons(hid) == eng.household_persons(hid)
    # and it goes on linking incrementally from there
    assert again.update(pop.batch, []).person_of == {}


def test_from_state_places_persons_without_a_household(population: Population) -> None:
    pop = population
    d = LinkageEngine().update(pop.batch, [])
    some = sorted(set(d.person_of.values()))[:50]
    partial = {p: h for p, h in d.household_of.items() if p not in some}
    again = LinkageEngine.from_state(pop.batch, d.person_of, partial)
    placed = again.update(pop.batch.take(np.zeros(0, dtype=np.int64)), []).household_of
    assert set(some) <= set(placed)
    # Placed with others, a person joins its old household or, where the first link
    # split a true household in two, the other part: either way, a household of its
    # own true household's people (the person ids, hence the 50, differ per run).
    row_of = {int(i): r for r, i in enumerate(pop.batch.ids.tolist())}
    truth: dict[str, set[str]] = {}
    for rid, pid in d.person_of.items():
        truth.setdefault(pid, set()).add(pop.truth_household[row_of[rid]])
    for p in some:
        others = set(again.household_persons(placed[p])) - {p}
        if others and placed[p] != d.household_of[p]:
            assert truth[p] & set().union(*(truth[q] for q in others)), p


def test_config_fingerprint_is_canonical() -> None:
    a, b = EngineConfig(), EngineConfig()
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    assert EngineConfig(match_threshold=0.9).fingerprint() != a.fingerprint()


def test_a_changed_record_keeps_its_person() -> None:
    me = base_bits(1)
    eng = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    d = eng.update(batch([Rec(1, me)]), [])
    pid = d.person_of[1]
    # the agency corrected a typo: same record id, slightly different filter
    d2 = eng.update(batch([Rec(1, perturb(me, 8, 2), age=41)]), [])
    assert d2.person_of == {1: pid}
    assert not d2.persons_retired and eng.person_records(pid) == [1]
    # removed and re-sent in one update: still there
    d3 = eng.update(batch([Rec(1, perturb(me, 8, 2), age=41)]), [1])
    assert d3.person_of == {1: pid}
    assert eng.person_records(pid) == [1]


def test_a_new_record_joins_an_existing_person_and_merges_are_reported() -> None:
    me = base_bits(3)
    eng = LinkageEngine(id_factory=counter_ids(), model=dice_model())  # type: ignore[arg-type]
    key = {"family_dob": b"f" * 12}
    # two records too far apart to link on their own, each its own person
    a, b = perturb(me, 70, 4), perturb(me, 70, 5)  # Dice about 0.76 apart, 0.86 to me
    d = eng.update(batch([Rec(1, a, block=key), Rec(2, b, agency=1, block=key)]), [])
    p1, p2 = d.person_of[1], d.person_of[2]
    assert p1 != p2
    # a clean copy links to both: one person, the other id merged into it
    d2 = eng.update(batch([Rec(3, me, agency=2, block=key)]), [])
    survivor = d2.person_of[3]
    assert survivor in (p1, p2)
    gone = p2 if survivor == p1 else p1
    assert d2.merges == [(gone, survivor)] and d2.persons_retired == [gone]
    assert eng.person_records(survivor) == [1, 2, 3]


def test_records_are_found_by_id_through_replacements_and_removals() -> None:
    me, other = base_bits(6), base_bits(7)
    eng = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    first = batch([Rec(5, me), Rec(9, other, agency=1)])
    d = eng.update(first, [])
    with pytest.raises(ValueError):
        first.clk[0, 0] = 1  # the engine kept the first batch's filters: read-only now
    # changed twice, then re-sent unchanged: the last content is the one held
    eng.update(batch([Rec(5, perturb(me, 8, 8), age=41)]), [])
    eng.update(batch([Rec(5, perturb(me, 8, 9), age=42)]), [])
    assert not eng.update(batch([Rec(5, perturb(me, 8, 9), age=42)]), []).person_of
    assert eng.person_records(d.person_of[5]) == [5]
    assert int(eng.alive.sum()) == 2
    d2 = eng.update(batch([]), [5, 12345])  # an unknown id is ignored
    assert d2.persons_retired == [d.person_of[5]]
    assert int(eng.alive.sum()) == 1 and eng.person_records(d.person_of[9]) == [9]
    with pytest.raises(ValueError, match="twice"):
        eng.update(batch([Rec(10, me), Rec(10, other)]), [])


def test_blocking_and_scoring_on_several_threads_link_as_one_thread(
    population: Population,
) -> None:
    one = LinkageEngine(id_factory=counter_ids(), threads=1)  # type: ignore[arg-type]
    three = LinkageEngine(id_factory=counter_ids(), threads=3)  # type: ignore[arg-type]
    # a first load, a second that re-estimates the model and re-links, a removal
    for added, removed in load_relink_remove(population):
        a, b = one.update(added, removed), three.update(added, removed)
        assert (a.person_of, a.household_of, a.families) == (
            b.person_of,
            b.household_of,
            b.families,
        )
        assert list(a.links) == list(b.links) and list(a.review) == list(b.review)
        for key in ("candidate_pairs", "address_candidate_pairs", "pairs_above_review"):
            assert a.stats[key] == b.stats[key], key


def test_default_ids_are_distinct_and_random() -> None:
    from linkage_service._engine import random_ids

    first = random_ids("per_", 1000)
    assert all(PER.match(p) for p in first) and len(set(first)) == len(first)
    again = random_ids("per_", 1000)
    assert not set(first) & set(again)
    assert random_ids("hh_", 0) == [] and random_ids("hh_", 1)[0].startswith("hh_")


def test_grow_appends_in_room_and_leaves_earlier_views_alone() -> None:
    room: dict[object, np.ndarray] = {}
    first = np.arange(8, dtype=np.int64).reshape(4, 2)
    held = _grow(np.zeros((0, 2), dtype=np.int64), first, room, "c")
    assert held is first and not room  # the first rows are kept as they are
    parts = [first]
    views = [held]
    for k in (3, 1, 0, 5, 40):
        more = np.arange(100 * len(parts), 100 * len(parts) + 2 * k, dtype=np.int64).reshape(k, 2)
        before = room.get("c")
        held = _grow(held, more, room, "c")
        parts.append(more)
        np.testing.assert_array_equal(held, np.concatenate(parts))
        assert held.base is room["c"] and held.flags.c_contiguous
        # a part that fits is written in the room held, not copied with every row
        fits = before is not None and before.shape[0] >= sum(map(len, parts))
        assert (room["c"] is before) == fits
        views.append(held)
    # every earlier view still reads what it held
    for view, n in zip(views, np.cumsum([len(p) for p in parts]), strict=True):
        np.testing.assert_array_equal(view, np.concatenate(parts)[:n])
    # a column replaced since (not a view of its buffer) starts a new buffer
    replaced = np.hstack([held, np.zeros((len(held), 1), dtype=np.int64)])
    grown = _grow(replaced, np.ones((2, 3), dtype=np.int64), room, "c")
    np.testing.assert_array_equal(grown[: len(held), :2], held)
    assert grown.shape == (len(held) + 2, 3) and grown.base is room["c"]


def test_pushes_give_the_columns_of_one_load(population: Population) -> None:
    pop = population
    whole = LinkageEngine()
    whole._append(pop.batch)
    pushed = LinkageEngine()
    for k in sorted(set(pop.batch.agency.tolist())):
        pushed._append(pop.batch.take(np.flatnonzero(pop.batch.agency == k)))
    order = np.argsort(pushed.ids, kind="stable")
    back = np.argsort(np.argsort(whole.ids, kind="stable"))  # rows of whole, by id
    for column in ("ids", "clk", "addr", "exact", "lsh", "addr_lsh", "age", "day", "alive"):
        got, want = getattr(pushed, column), getattr(whole, column)
        np.testing.assert_array_equal(got[order][back], want, err_msg=column)
    for name, col in whole.block_keys.items():
        np.testing.assert_array_equal(pushed.block_keys[name][order][back], col, err_msg=name)
