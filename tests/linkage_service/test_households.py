"""Households and families: places from address filters, movers, family status."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation._harness import Population, pair_scores
from linkage_service._engine import LinkageEngine, _PlaceView
from linkage_service._households import (
    current_row,
    current_rows,
    dependents_or_expectants,
    is_dependent_or_expectant,
)

from ._engine_helpers import (
    DAY,
    Rec,
    base_bits,
    batch,
    counter_ids,
    engine,
    labels,
    persons,
    perturb,
    population,
)

__all__ = ["population"]  # the fixture, imported for pytest

HOME = base_bits(100, 300)
AWAY = base_bits(200, 300)


def _household(eng: LinkageEngine, rid: int) -> str:
    pid = next(p for p in eng.pid_root if rid in eng.person_records(p))
    return eng.person_hid[pid]


def test_people_at_one_address_share_a_household_despite_typos() -> None:
    recs = [
        Rec(1, base_bits(1), addr=HOME, age=40),
        Rec(2, base_bits(2), addr=perturb(HOME, 4, 3), age=38, sex=2, agency=1),
        Rec(3, base_bits(4), addr=AWAY, age=70),
    ]
    eng = engine()
    delta = eng.update(batch(recs), [])
    assert _household(eng, 1) == _household(eng, 2) != _household(eng, 3)
    assert delta.families == {_household(eng, 1): False, _household(eng, 3): False}


def test_neighbours_are_different_households() -> None:
    # same street and postcode, another house number: a few features apart
    eng = engine()
    eng.update(
        batch([Rec(1, base_bits(1), addr=HOME), Rec(2, base_bits(2), addr=perturb(HOME, 20, 5))]),
        [],
    )
    assert _household(eng, 1) != _household(eng, 2)


def test_family_needs_a_dependent_child_or_an_expectant_parent() -> None:
    eng = engine()
    d = eng.update(
        batch([Rec(1, base_bits(1), addr=HOME), Rec(2, base_bits(2), addr=HOME, age=17)]), []
    )
    assert d.families == {_household(eng, 1): False}  # 17 and not in education
    d = eng.update(batch([Rec(3, base_bits(3), addr=HOME, age=10)]), [])
    assert d.families == {_household(eng, 1): True}
    d = eng.update(batch([Rec(4, base_bits(4), addr=AWAY, age=30, expectant=True)]), [])
    assert d.families == {_household(eng, 4): True}
    d = eng.update(batch([Rec(5, base_bits(5), addr=AWAY, age=17, dependent=True)]), [])
    assert d.families == {_household(eng, 4): True}  # membership changed: reported again
    assert _household(eng, 5) == _household(eng, 4)


def test_a_person_who_moves_moves_household() -> None:
    me = base_bits(1)
    eng = engine()
    eng.update(
        batch(
            [
                Rec(1, me, addr=HOME),
                Rec(2, base_bits(2), addr=HOME),
                Rec(3, base_bits(3), addr=AWAY),
            ]
        ),
        [],
    )
    home, away = _household(eng, 1), _household(eng, 3)
    assert _household(eng, 2) == home
    pid = next(p for p in eng.pid_root if 1 in eng.person_records(p))
    # a newer extract from another agency knows the same person at the other address
    d = eng.update(
        batch([Rec(9, perturb(me, 5, 7), addr=perturb(AWAY, 3, 8), agency=1, day=DAY + 30)]), []
    )
    assert d.person_of == {9: pid}
    assert d.household_of == {pid: away}
    assert _household(eng, 1) == away and _household(eng, 2) == home
    other = next(p for p in eng.pid_root if 3 in eng.person_records(p))
    assert eng.household_persons(away) == sorted([pid, other])


def test_household_quality_at_the_shipped_defaults(population: Population) -> None:
    delta = LinkageEngine().update(population.batch, [])
    _, household = labels(delta, population.batch)
    hs = pair_scores(household, population.truth_household)
    assert hs.f1 >= 0.95, hs
    assert hs.precision >= 0.99, hs


def test_stale_copies_follow_a_household_that_moved() -> None:
    # a family of three moved from HOME to AWAY; one agency still has the child at HOME
    a, b, c = base_bits(1), base_bits(2), base_bits(3)
    recs = [
        Rec(1, a, addr=HOME),
        Rec(2, b, addr=HOME),
        Rec(3, c, addr=HOME, age=8),
        Rec(11, perturb(a, 5, 11), addr=AWAY, agency=1),
        Rec(12, perturb(b, 5, 12), addr=AWAY, agency=1),
        Rec(13, perturb(a, 5, 13), addr=AWAY, agency=2),
        Rec(14, perturb(b, 5, 14), addr=AWAY, agency=2),
    ]
    eng = engine()
    eng.update(batch(recs), [])
    assert _household(eng, 3) == _household(eng, 1) == _household(eng, 2)
    assert _household(eng, 1) == _household(eng, 11)


def test_one_persons_records_join_an_address_written_two_ways() -> None:
    # the same address with a street typo (Dice about 0.9, below the place threshold)
    # is one place when one person has records at both; a neighbour is not
    home = base_bits(40, 300)
    typo = perturb(home, 30, 41)  # Dice 0.9
    neighbour = perturb(home, 75, 42)  # Dice 0.75
    me, child, other = base_bits(43), base_bits(44), base_bits(45)
    eng = engine()
    eng.update(
        batch(
            [
                Rec(1, me, addr=home, agency=0, day=DAY + 30),  # the newer record
                Rec(2, perturb(me, 4, 46), addr=typo, agency=1),
                Rec(3, child, addr=typo, agency=1, age=8),
                Rec(4, other, addr=neighbour, agency=1),
            ]
        ),
        [],
    )
    p = persons(eng, [1, 2, 3, 4])
    assert p[0] == p[1]
    hid = eng.person_hid
    assert hid[p[0]] == hid[p[2]] != hid[p[3]]


# --- the array forms against the row-at-a-time reference --------------------------


@st.composite
def _people(draw: st.DrawFn) -> tuple[list[list[int]], list[int], list[int], list[int]]:
    """Persons' rows, every row's place (-1: none), extract day and age."""
    n = draw(st.integers(1, 40))
    place = draw(st.lists(st.integers(-1, 6), min_size=n, max_size=n))
    day = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    age = draw(st.lists(st.integers(-1, 20), min_size=n, max_size=n))
    owner = draw(st.lists(st.integers(0, 7), min_size=n, max_size=n))
    rows: list[list[int]] = [[] for _ in range(8)]
    for r, p in enumerate(owner):
        rows[p].append(r)
    return rows, place, day, age


def _columns(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    person = np.array([p for p, rs in enumerate(rows) for _ in rs], dtype=np.int64)
    row = np.array([r for rs in rows for r in rs], dtype=np.int64)
    return person, row


@settings(max_examples=300, deadline=None)
@given(_people())
def test_current_rows_is_current_row_for_every_person(people) -> None:  # type: ignore[no-untyped-def]
    rows, place, day, _ = people
    size = {pl: place.count(pl) for pl in set(place)}
    person, row = _columns(rows)
    place_a, day_a = np.array(place, dtype=np.int64), np.array(day, dtype=np.int32)
    size_a = np.array([size[place[r]] for r in row.tolist()], dtype=np.int64)
    got = current_rows(person, row, place_a[row], day_a[row], size_a, len(rows)).tolist()
    want = [current_row(rs, place, day_a, lambda pl: size[pl]) for rs in rows]
    assert got == [-1 if w is None else w for w in want]


@settings(max_examples=300, deadline=None)
@given(_people(), st.data())
def test_dependents_or_expectants_is_the_row_at_a_time_check(people, data) -> None:  # type: ignore[no-untyped-def]
    rows, _, day, age = people
    n = len(day)
    dep = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    exp = data.draw(
        st.lists(st.booleans(), min_size=n, max_size=n).map(
            lambda b: [False] * n if data.draw(st.booleans()) else b
        )
    )
    person, row = _columns(rows)
    got = dependents_or_expectants(
        person,
        np.array(age, dtype=np.int16)[row],
        np.array(day, dtype=np.int32)[row],
        np.array(dep, dtype=np.bool_)[row],
        np.array(exp, dtype=np.bool_)[row],
        len(rows),
    ).tolist()
    assert got == [is_dependent_or_expectant(rs, age, day, dep, exp) for rs in rows]


# --- the incremental household pass against a full one ---------------------------


def _full_pass(eng: LinkageEngine) -> set[frozenset[str]]:
    """Households of every person from scratch, a row at a time (the reference).

    Checks on the way that the engine's base and chosen rows are what the
    reference gives for every person, not only those the last update touched.
    """
    view = _PlaceView(eng)
    base = {pid: view.current_row(pid) for pid in eng.pid_root}
    assert {p: eng.base_row.get(p) for p in eng.pid_root} == base
    chosen = {pid: eng._follow(pid, view) for pid in eng.pid_root}
    assert {p: eng.chosen_row.get(p) for p in eng.pid_root} == chosen
    at: dict[object, set[str]] = {}
    for pid, row in chosen.items():
        at.setdefault(("place", view.roots[row]) if row is not None else ("alone", pid), set()).add(
            pid
        )
    return {frozenset(g) for g in at.values()}


def _pushed(population: Population) -> Iterator[tuple[int, LinkageEngine]]:
    """An engine given the population agency by agency, as the service links pushes:
    (agency, the engine) after each push."""
    eng = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    agencies = population.batch.agency
    for k in range(int(agencies.max()) + 1):
        eng.update(population.batch.take(np.flatnonzero(agencies == k)), [])
        yield k, eng


def test_incremental_households_equal_a_full_pass_after_every_push(
    population: Population,
) -> None:
    # each update's household pass looks only at what it touched, and must leave
    # what a full pass would
    for k, eng in _pushed(population):
        held = {frozenset(ps) for ps in eng.hid_persons.values() if ps}
        assert held == _full_pass(eng), f"after agency {k}"


def test_the_array_steps_of_a_household_pass_answer_as_the_reads_a_person_at_a_time(
    population: Population,
) -> None:
    # the pass works on arrays of person numbers (_PlaceView.affected, have_movers,
    # residents_of, current_row_array); each must answer what reading the engine's
    # dicts and clusters one person (or place) at a time answers
    *_, (_, eng) = _pushed(population)
    view, fresh = _PlaceView(eng), _PlaceView(eng)
    alive = eng.alive.tolist()
    places = np.unique(view.place[view.place >= 0])
    assert view.have_movers(places).tolist() == [fresh.has_mover(p) for p in places.tolist()]
    assert view.have_movers(places).any() and not view.have_movers(places).all()
    at: dict[int, list[str]] = {}
    for pid, row in sorted(eng.chosen_row.items()):
        at.setdefault(view.roots[row], []).append(pid)
    assert view.residents_of(places) == [at[p] for p in sorted(at)]
    pids = sorted(eng.pid_root)
    roots = np.asarray([eng.pid_root[p] for p in pids], dtype=np.int64)
    best = view.current_row_array(roots).tolist()
    assert best == [-1 if (r := view.current_row(p)) is None else r for p in pids]
    # roots repeated, in any order, and a root of no person (-1: no address)
    mixed = np.r_[roots[::-1][:7], -1, roots[:3]]
    assert view.current_row_array(mixed).tolist() == [*best[::-1][:7], -1, *best[:3]]
    # a person not held counts for nothing in a household's family flag
    families = view.families([(f"hh_{k}", [p]) for k, p in enumerate(pids)])
    assert any(families.values()) and not all(families.values())
    for k, p in enumerate(pids[:40]):
        flag = view.families([("hh", [p, "per_not_held"]), ("hh_alone", ["per_not_held"])])
        assert flag == {"hh": families[f"hh_{k}"], "hh_alone": False}
    rng = np.random.default_rng(5)
    for _ in range(5):
        changed = set(rng.choice(pids, size=50, replace=False).tolist()) | {"per_not_held"}
        place_roots = set(rng.choice(places, size=20, replace=False).tolist())
        want = (changed & eng.pid_root.keys()) | {
            q
            for r, q in enumerate(eng.row_pid)
            if q is not None and alive[r] and view.roots[r] in place_roots
        }
        homes = {
            view.roots[r] for p in want for r in eng.persons.members(eng.pid_root[p]) if alive[r]
        }
        want |= {
            q
            for r, q in enumerate(eng.row_pid)
            if q is not None and alive[r] and view.roots[r] in homes - {-1}
        }
        got = view.affected(changed, place_roots).tolist()
        assert {view.pids[k] for k in got} == want and len(got) == len(want)
    assert view.affected(set(pids), set()).tolist() == list(range(len(pids)))
    everyone = view.affected(set(pids) | {"per_not_held"}, set()).tolist()
    assert everyone == list(range(len(pids)))
