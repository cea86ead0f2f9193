"""The review queue: each pair's impact on families, queue order, summary (SQLite, PostgreSQL).

Hand-built households (``TinyDb``) with review pairs between their members'
records; the expected scores come from the default scorecard's published
points (DOMESTIC_VIOLENCE 14, MENTAL_HEALTH 6, MARAC 12, CHILD_PROTECTION 20,
the ABUSE_AND_PROTECTION combination 10, BREADTH 4 per problem met; unlock
threshold 40) and the Phase 2 rule of at
least 2 problems.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from linkage_service import _store as store
from linkage_service._review import (
    WhatIf,
    iter_queue,
    merge_members,
    queue_csv,
    review_queue,
    review_summary,
)
from linkage_service.programme import _store as pstore
from linkage_service.programme._assessment import load_families, run_cycle
from linkage_service.programme._programme import Event, MemberInput
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset

from ._programme_helpers import AS_AT, Member, TinyDb

TF = default_ruleset("troubled-families-phase2")
MODEL = default_model()


def ago(days: int) -> dt.date:
    return AS_AT - dt.timedelta(days=days)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> Any:
    if request.param == "sqlite":
        tiny = TinyDb(tmp_path / "review.db")
    else:
        tiny = TinyDb(request.getfixturevalue("empty_postgres_url"))
    yield tiny
    tiny.engine.dispose()


def comparisons(person: str, sex: str) -> dict[str, dict[str, object]]:
    return {
        "person": {"level": person, "weight": 1.5},
        "sex": {"level": sex, "weight": 0.3 if sex == "agree" else -2.0},
    }


def build(db: TinyDb) -> dict[str, Any]:
    """Six households and five review pairs, one of each kind of impact (and two of none)."""
    h1, (mum1, _child1) = db.household(
        1,  # one problem (domestic abuse): not eligible, 14 + 4 = 18
        [Member(34, "F", ("health",), [("police", "dv_incidents", 3, ago(30))]), Member(9, "M")],
    )
    h2, (single2,) = db.household(
        2,  # not a family; her mental health would be the family's second problem
        [Member(34, "F", ("health",), [("health", "months_mental_health", 6, ago(60))])],
    )
    h3, (mum3, _child3) = db.household(
        3,  # eligible, 14 + 6 + 8 = 28: below the unlock threshold of 40
        [
            Member(
                30,
                "F",
                ("health",),
                [
                    ("police", "dv_incidents", 3, ago(30)),
                    ("health", "months_mental_health", 6, ago(60)),
                ],
            ),
            Member(9, "M"),
        ],
    )
    h4, (single4,) = db.household(
        4,  # a MARAC referral: 28 + 12 = 40 for household 3, the same problems
        [Member(31, "F", ("police",), [("police", "marac_referral", 1, ago(40))])],
    )
    h5, (mum5, _child5) = db.household(
        5,  # a child protection plan: one problem, 20 + 4 = 24
        [
            Member(36, "F", ("health",)),
            Member(8, "M", ("school",), [("csc", "child_protection_plan", 1, ago(100))]),
        ],
    )
    h6, (single6,) = db.household(
        6,  # domestic violence: 20 + 14 + 10 + 8 = 52 for household 5, and eligible
        [Member(37, "F", ("police",), [("police", "dv_incidents", 2, ago(20))])],
    )
    quiet, (dad7, child7) = db.household(7, [Member(40, "M", ("dwp",)), Member(7, "F")])
    r = db.records
    pairs = {
        # (records, probability): uncertainty |p - 0.5| in brackets
        "eligibility": (r[(mum1, "health")], r[(single2, "health")], 0.10),  # (0.40)
        "threshold": (r[(mum3, "police")], r[(single4, "police")], 0.45),  # (0.05)
        "both": (r[(mum5, "health")], r[(single6, "police")], 0.30),  # (0.20)
        "none_near": (r[(dad7, "dwp")], r[(single2, "health")], 0.49),  # (0.01)
        "none_inside": (r[(dad7, "dwp")], r[(child7, "health")], 0.20),  # (0.30)
    }
    levels = {
        "eligibility": ("dice 0.85-0.90, 1 keys agree", "agree"),
        "threshold": ("dice 0.85-0.90, 1 keys agree", "disagree"),
        "both": ("dice 0.90-0.95, 2+ keys agree", "agree"),
        "none_near": ("dice 0.85-0.90, 1 keys agree", "agree"),
    }
    for name, (a, b, p) in pairs.items():
        if name in levels:
            db.review(a, b, p, comparisons=comparisons(*levels[name]))
        else:
            db.review(a, b, p)  # no match model: no comparison levels
    return {
        "pairs": pairs,
        "family": {n: "fam_" + h[3:] for n, h in enumerate((h1, h2, h3, h4, h5, h6, quiet), 1)},
        "persons": {"mum1": mum1, "single2": single2, "mum3": mum3, "single4": single4},
    }


def by_pair(queue: Any) -> dict[tuple[int, int], Any]:
    return {(c.a.record_id, c.b.record_id): c for c in queue.candidates}


def key(pair: tuple[int, int, float]) -> tuple[int, int]:
    a, b, _p = pair
    return (min(a, b), max(a, b))


def state(f: Any) -> tuple[bool, int | None, bool]:
    return (f.eligible, f.score, f.at_unlock_threshold)


def test_a_match_that_would_make_a_family_eligible_and_one_that_changes_nothing(db):
    case = build(db)
    result = run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    assert result.stats.review == {
        "none": 2,
        "eligibility": 1,
        "threshold": 1,
        "both": 1,
        "not_assessed": 0,
        # households 1, 3, 5, 7 (twice); single adults stay no family (not assessed),
        # and household 2 with the father's eventless record reads as before
        "households_reassessed": 5,
    }
    pairs, fam = by_pair(review_queue(db.engine)), case["family"]

    eligible = pairs[key(case["pairs"]["eligibility"])]
    assert eligible.impact == "eligibility" and eligible.impact_cycle == result.cycle_id
    # household 2 is a single adult: not a family with or without the match
    [f] = eligible.families
    assert f.family_id == fam[1] and f.eligibility_changes and not f.threshold_changes
    assert (state(f.before), state(f.after)) == ((False, 18, False), (True, 28, False))

    threshold = pairs[key(case["pairs"]["threshold"])]
    [f] = threshold.families
    assert threshold.impact == "threshold" and f.family_id == fam[3]
    assert (state(f.before), state(f.after)) == ((True, 28, False), (True, 40, True))

    both = pairs[key(case["pairs"]["both"])]
    [f] = both.families
    assert both.impact == "both" and f.family_id == fam[5]
    assert (state(f.before), state(f.after)) == ((False, 24, False), (True, 52, True))

    # a quiet family's father and a single adult with mental health months: the
    # family gains one problem, not two; the adult's household is no family
    near = pairs[key(case["pairs"]["none_near"])]
    [f] = near.families
    assert near.impact == "none" and f.family_id == fam[7]
    assert (state(f.before), state(f.after)) == ((False, 0, False), (False, 10, False))
    # two persons of one household: the household is assessed once
    inside = pairs[key(case["pairs"]["none_inside"])]
    assert inside.impact == "none" and [f.family_id for f in inside.families] == [fam[7]]
    assert state(inside.families[0].after) == (False, 0, False)
    # the snapshots are the "before" the impacts were measured against
    with db.engine.connect() as c:
        s = pstore.snapshots
        q = sa.select(s.c.family_id, s.c.score).where(s.c.cycle_id == result.cycle_id)
        rows = {str(f): int(score) for f, score in c.execute(q)}
    assert (rows[fam[1]], rows[fam[3]], rows[fam[5]], rows[fam[7]]) == (18, 28, 24, 0)


def test_the_what_if_agrees_with_assessing_the_merged_person_for_real(tmp_path):
    # Reference: give the other person's records to the family's member in the
    # database (what a "match" decision would do, the person staying at home) and
    # run a cycle: the family's snapshot must be the stored "after".
    db = TinyDb(tmp_path / "merge.db")
    case = build(db)
    run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    expected = {
        f.family_id: (f.after.eligible, f.after.score)
        for c in review_queue(db.engine).candidates
        if c.impact != "none"
        for f in c.families
    }
    p = case["persons"]
    rp = store.record_person
    with db.engine.begin() as c:
        for home, other in (("mum1", "single2"), ("mum3", "single4")):
            c.execute(rp.update().where(rp.c.person_id == p[other]).values(person_id=p[home]))
    second = run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    for fid in (case["family"][1], case["family"][3]):
        a = second.assessments[fid]
        assert (a.eligible, a.score) == expected[fid]


def test_the_queue_puts_impactful_pairs_first_then_the_least_certain(db):
    case = build(db)
    run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    order = [key(case["pairs"][n]) for n in ("threshold", "both", "eligibility")]
    order += [key(case["pairs"][n]) for n in ("none_near", "none_inside")]
    queue = review_queue(db.engine)
    assert [(c.a.record_id, c.b.record_id) for c in queue.candidates] == order
    assert [c.uncertainty for c in queue.candidates] == pytest.approx([0.05, 0.2, 0.4, 0.01, 0.3])
    assert queue.next_offset is None and queue.cycle_id == 1
    only = review_queue(db.engine, impactful_only=True)
    assert [(c.a.record_id, c.b.record_id) for c in only.candidates] == order[:3]
    page = review_queue(db.engine, offset=1, limit=2)
    assert [(c.a.record_id, c.b.record_id) for c in page.candidates] == order[1:3]
    assert page.next_offset == 3
    assert review_queue(db.engine, offset=5).candidates == []


def test_a_pair_written_after_the_cycle_waits_unassessed_for_the_next(db):
    case = build(db)
    run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    a, b, _p = case["pairs"]["eligibility"]
    with db.engine.begin() as c:  # the engine rescored the pair: a new row
        c.execute(store.review.delete().where(store.review.c.record_a == min(a, b)))
    db.review(a, b, 0.5)
    queue = review_queue(db.engine)
    fresh = by_pair(queue)[(min(a, b), max(a, b))]
    assert (fresh.impact, fresh.impact_cycle, fresh.families) == (None, None, [])
    # after the impactful pairs, and first of the rest (probability 0.5 exactly)
    assert queue.candidates.index(fresh) == 2
    assert review_summary(db.engine).impact.not_assessed == 1
    run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    again = by_pair(review_queue(db.engine))[(min(a, b), max(a, b))]
    assert (again.impact, again.impact_cycle) == ("eligibility", 2)


def test_the_summary_counts_impacts_probabilities_and_comparison_levels(db):
    empty = review_summary(db.engine)
    assert (empty.pairs, empty.cycle_id, empty.impactful, empty.comparisons) == (0, None, 0, [])
    case = build(db)
    before = review_summary(db.engine)
    assert before.impact.not_assessed == 5 and before.impactful == 0
    run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    s = review_summary(db.engine)
    assert (s.pairs, s.cycle_id, s.impactful, s.families_affected) == (5, 1, 3, 3)
    assert s.impact.model_dump() == {
        "none": 2,
        "eligibility": 1,
        "threshold": 1,
        "both": 1,
        "not_assessed": 0,
    }
    # probabilities 0.10, 0.45, 0.30, 0.49, 0.20 in tenths
    bands = {(b.low, b.high): b.pairs for b in s.probability}
    assert len(bands) == 10 and sum(bands.values()) == 5
    assert bands[(0.1, 0.2)] == 1 and bands[(0.2, 0.3)] == 1 and bands[(0.3, 0.4)] == 1
    assert bands[(0.4, 0.5)] == 2 and bands[(0.0, 0.1)] == 0
    # four pairs explain their score; levels in the match model's order
    assert s.unexplained == 1
    levels = {c.comparison: [(lv.level, lv.pairs) for lv in c.levels] for c in s.comparisons}
    assert list(levels) == ["person", "sex"]
    assert levels["person"] == [
        ("dice 0.85-0.90, 1 keys agree", 3),
        ("dice 0.90-0.95, 2+ keys agree", 1),
    ]
    assert levels["sex"] == [("agree", 3), ("disagree", 1)]
    assert case  # the pairs of build()


def test_the_export_is_the_impactful_queue_with_ids_and_numbers(db):
    case = build(db)
    run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    lines = queue_csv(iter_queue(db.engine)).splitlines()
    assert lines[0].startswith("position,agency_a,record_ref_a,agency_b,record_ref_b,probability")
    rows = [line.split(",") for line in lines[1:]]
    assert [r[6] for r in rows] == ["threshold", "both", "eligibility"]
    assert rows[0][7:] == [case["family"][3], "True", "True", "28", "40", "False", "True"]
    everything = queue_csv(iter_queue(db.engine, impactful_only=False)).splitlines()
    assert len(everything) == 1 + 5  # each pair touches one family here


def _member(pid: str, age: int | None, day: dt.date, **kw: Any) -> MemberInput:
    return MemberInput(
        person_id=pid,
        age=age,
        age_date=day,
        sex=kw.pop("sex", None),
        records=kw.pop("records", ()),
        events=kw.pop("events", ()),
        **kw,
    )


def test_merge_members_builds_one_person_as_the_loader_would():
    old, new = dt.date(2025, 1, 1), dt.date(2026, 1, 1)
    school = Event("in_education_or_training", 1.0, old, "school", "r1")
    home = _member("per_a", 16, old, sex="F", records=(("school", "r1", "education"),))
    other = _member("per_b", 17, new, records=(("health", "r2", "health"),), events=(school,))
    merged = merge_members(home, other)
    # the later record's age and date; the home member's id; records and events pooled
    assert (merged.person_id, merged.age, merged.age_date, merged.sex) == ("per_a", 17, new, "F")
    assert merged.records == (("health", "r2", "health"), ("school", "r1", "education"))
    # 17 at the latest date and in education (reported on the other record): dependent
    assert merged.dependent and not merged.expectant
    adult = _member("per_c", 35, new, expectant=True)
    both = merge_members(_member("per_d", 9, old, dependent=True), adult)
    # the child's record is older: the merged person is the 35-year-old, not a child
    assert (both.age, both.dependent, both.expectant) == (35, False, True)
    same_day = merge_members(_member("per_e", 9, new, dependent=True), adult)
    assert same_day.dependent and same_day.age == 9


def test_what_if_without_a_person_or_within_one_person(tmp_path):
    db = TinyDb(tmp_path / "w.db")
    _h, (mum, child) = db.household(1, [Member(34, "F"), Member(9, "M")])
    with db.engine.connect() as c:
        families = load_families(c)
    what_if = WhatIf(families, {}, TF, MODEL, AS_AT)
    assert what_if.impact(mum, mum) is not None and what_if.impact(mum, mum).impact == "none"
    assert what_if.impact(mum, None) is None and what_if.impact(mum, "per_gone") is None
    # not in the cycle's cohort before (no assessment given): "not a family" before
    found = what_if.impact(mum, child)
    assert found is not None and found.families[0].before.score is None


def test_migration_fills_in_the_uncertainty_of_pairs_already_held(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = store.create_engine(url)
    config = Config()
    config.set_main_option("script_location", "linkage_service:_migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.execute(
            sa.text(
                "INSERT INTO review (record_a, record_b, score, evidence, run_id) "
                "VALUES (1, 2, 0.2, '{}', 1), (3, 4, 0.9, '{}', 1)"
            )
        )
    store.migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                store.review.c.record_a,
                store.review.c.uncertainty,
                store.review.c.queue_rank,
                store.review.c.impact,
            ).order_by(store.review.c.record_a)
        ).all()
    engine.dispose()
    assert [(a, round(u, 6), r, i) for a, u, r, i in rows] == [(1, 0.3, 1, None), (3, 0.4, 1, None)]


def test_detail_holds_ids_and_numbers_only(db):
    build(db)
    run_cycle(db.engine, TF, MODEL, AS_AT, actor="test")
    with db.engine.connect() as c:
        details = [json.loads(d) for (d,) in c.execute(sa.select(store.review.c.impact_detail))]
    for detail in details:
        for f in detail:
            assert set(f) == {"family_id", "household_id", "before", "after"}
            assert set(f["before"]) == set(f["after"]) == {"eligible", "score", "unlock"}


def test_record_pairs_of_the_same_two_persons_share_one_what_if(tmp_path):
    db = TinyDb(tmp_path / "twice.db")
    case = build(db)
    p, r = case["persons"], db.records
    db.review(r[(p["mum1"], "police")], r[(p["single2"], "health")], 0.3)
    stats = run_cycle(db.engine, TF, MODEL, AS_AT, actor="test").stats.review
    assert (stats["eligibility"], stats["households_reassessed"]) == (2, 5)
    eligible = [c for c in review_queue(db.engine).candidates if c.impact == "eligibility"]
    assert len(eligible) == 2 and eligible[0].families == eligible[1].families
    assert eligible[0].families[0].family_id == case["family"][1]
