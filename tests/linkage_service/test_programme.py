"""Assessing one family: windows, groups, missing data, problems, eligibility, score, rank."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage_service.programme._programme import (
    Event,
    FamilyInput,
    MemberInput,
    assess_family,
    member_groups,
    rank,
)
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from protocols import IndicatorType

AS_AT = dt.date(2026, 11, 1)
TF = default_ruleset("troubled-families-phase2")
SF = default_ruleset("supporting-families-2022")
MODEL = default_model()
AGENCY_OF = {
    "youth_offending": "police",
    "adult_offending": "police",
    "asb_further_action": "police",
    "asb_no_further_action": "police",
    "dv_incidents": "police",
    "police_callouts": "police",
    "marac_referral": "police",
    "attendance_pct": "school",
    "fixed_term_exclusions": "school",
    "in_education_or_training": "school",
    "child_in_need": "csc",
    "child_protection_plan": "csc",
    "exploitation_risk": "csc",
    "early_help_assessment": "early_help",
    "out_of_work_benefits": "dwp",
    "months_neet": "dwp",
    "months_mental_health": "health",
    "months_alcohol_misuse": "health",
    "months_drug_misuse": "health",
    "expectant_parent": "health",
    "rent_arrears_gbp": "housing",
}
TYPE_OF = {
    "police": "police_incidents",
    "school": "education",
    "csc": "social_care",
    "early_help": "early_help",
    "dwp": "benefits",
    "health": "health",
    "housing": "housing",
}


def member(
    pid: int,
    age: int,
    events: list[tuple[str, float, dt.date]] = (),  # type: ignore[assignment]
    agencies: tuple[str, ...] = (),
    sex: str = "F",
) -> MemberInput:
    evs = tuple(
        Event(t, v, d, AGENCY_OF[t], f"{pid:016x}{k:016x}") for k, (t, v, d) in enumerate(events)
    )
    held = sorted(set(agencies) | {e.agency_id for e in evs})
    return MemberInput(
        person_id=f"per_{pid:016x}",
        age=age,
        age_date=AS_AT,
        sex=sex,
        records=tuple((a, f"{pid:016x}{a:0>16}"[-32:], TYPE_OF[a]) for a in held),
        events=evs,
        dependent=age <= 15,
        expectant=any(e.type == "expectant_parent" for e in evs),
    )


def family(*members: MemberInput, n: int = 1) -> FamilyInput:
    return FamilyInput(f"fam_{n:016x}", f"hh_{n:016x}", "M15", tuple(members))


def days_ago(n: int) -> dt.date:
    return AS_AT - dt.timedelta(days=n)


def test_window_edges_and_future_events():
    # window_days = 365: (as_at - 365, as_at]
    inside = family(member(1, 40, [("dv_incidents", 2, days_ago(364))]), member(2, 8))
    edge = family(member(1, 40, [("dv_incidents", 2, days_ago(365))]), member(2, 8))
    future = family(
        member(1, 40, [("dv_incidents", 2, AS_AT + dt.timedelta(days=1))]), member(2, 8)
    )
    today = family(member(1, 40, [("dv_incidents", 2, AS_AT)]), member(2, 8))
    assert assess_family(inside, TF, MODEL, AS_AT).measures["dv_incidents_12m"] == 2
    assert assess_family(edge, TF, MODEL, AS_AT).measures["dv_incidents_12m"] is None
    assert assess_family(future, TF, MODEL, AS_AT).measures["dv_incidents_12m"] is None
    assert assess_family(today, TF, MODEL, AS_AT).measures["dv_incidents_12m"] == 2


def test_missing_data_never_meets_a_threshold_or_counts_as_a_problem():
    # attendance < 90 would be met by 0 if missing were read as zero
    a = assess_family(family(member(1, 40), member(2, 9)), TF, MODEL, AS_AT)
    assert a.measures["attendance_min_12m"] is None
    assert "persistent_absence" not in a.indicators
    assert a.problems_met == [] and a.score == 0 and not a.eligible
    assert a.problems["education"]["no_data"] is True


def test_no_data_or_no_problem_names_the_agencies_that_could_have_reported():
    kids = member(2, 9, [("attendance_pct", 97.0, days_ago(30))], agencies=("school", "health"))
    a = assess_family(family(member(1, 40, agencies=("dwp",)), kids), TF, MODEL, AS_AT)
    edu = a.problems["education"]
    assert (edu["met"], edu["data_from"], edu["no_data"]) == (False, ["school"], False)
    assert a.problems["work_finance"]["data_from"] == ["dwp"]
    assert a.problems["domestic_abuse"]["no_data"] is True
    assert a.problems["health"]["data_from"] == ["health"]


def test_member_groups_decide_whose_events_count():
    assert member_groups(4) >= {"all", "children", "under_fives"}
    assert member_groups(15) >= {"children", "school_age"} and "young_people" not in member_groups(
        15
    )
    assert member_groups(17) >= {"children", "young_people"}
    assert member_groups(30) == frozenset({"all", "adults"})
    assert member_groups(None) == frozenset({"all"})
    # youth offending counts children only; an adult's offence is adult offending
    adult = member(1, 40, [("youth_offending", 1, days_ago(10))])
    a = assess_family(family(adult, member(2, 5)), TF, MODEL, AS_AT)
    assert a.measures["youth_offending_12m"] is None


def test_aggregates():
    ev = [
        ("attendance_pct", 85.0, days_ago(200)),
        ("attendance_pct", 92.0, days_ago(20)),
    ]
    kid1 = member(2, 9, ev)
    kid2 = member(3, 12, [("attendance_pct", 88.5, days_ago(100))])
    a = assess_family(family(member(1, 40), kid1, kid2), TF, MODEL, AS_AT)
    assert a.measures["attendance_min_12m"] == 85.0  # min over the window
    assert a.measures["attendance_min_term"] == 88.5  # 120 days
    dv = member(1, 40, [("dv_incidents", 2, days_ago(300)), ("dv_incidents", 3, days_ago(5))])
    b = assess_family(family(dv, member(2, 3)), TF, MODEL, AS_AT)
    assert b.measures["dv_incidents_12m"] == 5  # sum
    assert b.measures["domestic_abuse_6m"] == 3  # sum over 182 days
    benefits = [member(k, 30 + k, [("out_of_work_benefits", 1, days_ago(k))]) for k in (1, 2)]
    c = assess_family(family(*benefits, member(3, 6)), TF, MODEL, AS_AT)
    assert c.measures["out_of_work_adults_12m"] == 2  # people


def test_evidence_is_the_events_that_meet_the_indicator():
    """A lowest, highest or latest value is met by its own events, not its neighbours';
    a total by all of its events."""
    low = member(2, 9, [("attendance_pct", 56.0, days_ago(40))])
    fine = member(3, 11, [("attendance_pct", 94.7, days_ago(60))])
    parent = member(
        1,
        40,
        [
            ("dv_incidents", 1, days_ago(100)),
            ("dv_incidents", 2, days_ago(20)),
            ("rent_arrears_gbp", 400.0, days_ago(90)),
            ("rent_arrears_gbp", 0.0, days_ago(10)),
        ],
    )
    a = assess_family(family(parent, low, fine), TF, MODEL, AS_AT)
    assert "persistent_absence" in a.indicators
    assert [(e["person_id"], e["value"]) for e in a.evidence["persistent_absence"]] == [
        ("per_0000000000000002", 56.0)
    ]
    assert [e["value"] for e in a.evidence["domestic_violence"]] == [1, 2]
    # the arrears were paid off by the latest report: not met, so no evidence
    assert "rent_arrears" not in a.indicators and "rent_arrears" not in a.evidence
    owing = member(
        1, 40, [("rent_arrears_gbp", 0.0, days_ago(90)), ("rent_arrears_gbp", 250.0, days_ago(10))]
    )
    b = assess_family(family(owing, low), TF, MODEL, AS_AT)
    assert [e["value"] for e in b.evidence["rent_arrears"]] == [250.0]
    # the agencies that met a problem are those of its evidence
    assert a.problems["education"]["met_by"] == ["school"]


def test_two_problems_make_a_family_eligible_under_tf_but_not_under_sf():
    parent = member(
        1,
        35,
        [("dv_incidents", 1, days_ago(40)), ("months_mental_health", 6, days_ago(40))],
    )
    kid = member(2, 7)
    a = assess_family(family(parent, kid), TF, MODEL, AS_AT)
    assert a.problems_met == ["domestic_abuse", "health"] and a.eligible
    b = assess_family(family(parent, kid), SF, MODEL, AS_AT)
    assert sorted(b.problems_met) == ["mental_physical_health", "safe_from_domestic_abuse"]
    assert not b.eligible  # three needs required


def test_a_household_without_a_dependent_child_is_not_an_eligible_family():
    adults = [
        member(
            1, 35, [("dv_incidents", 1, days_ago(40)), ("months_mental_health", 6, days_ago(4))]
        ),
        member(2, 40),
    ]
    a = assess_family(family(*adults), TF, MODEL, AS_AT)
    assert len(a.problems_met) == 2 and not a.is_family and not a.eligible
    expectant = member(3, 25, [("expectant_parent", 1, days_ago(10))])
    assert assess_family(family(*adults, expectant), TF, MODEL, AS_AT).eligible


def test_sixteen_and_seventeen_year_olds_are_presumed_in_education_unless_neet():
    parent = member(1, 45)
    assert family(parent, member(2, 17)).is_family(17)
    assert not family(parent, member(2, 17)).is_family(15)
    assert not family(parent, member(2, 17, [("months_neet", 4, days_ago(30))])).is_family(17)
    assert not family(parent, member(2, 18)).is_family(17)  # 18 needs evidence
    in_ed = member(2, 18, [("in_education_or_training", 1, days_ago(30))])
    assert not family(parent, in_ed).is_family(17)  # dependent flag set by the loader, not here


def test_reason_codes_sum_to_the_score_and_critical_combinations_add_weight():
    trio = member(
        1,
        33,
        [
            ("dv_incidents", 2, days_ago(40)),
            ("months_mental_health", 6, days_ago(40)),
            ("months_alcohol_misuse", 3, days_ago(40)),
        ],
    )
    kid = member(2, 6, [("child_protection_plan", 1, days_ago(100))])
    a = assess_family(family(trio, kid), TF, MODEL, AS_AT)
    codes = {r.code: r.points for r in a.reasons}
    assert codes["TOXIC_TRIO"] == 20 and codes["ABUSE_AND_PROTECTION"] == 10
    assert codes["BREADTH"] == 4 * len(a.problems_met)
    assert sum(r.points for r in a.reasons) == a.score
    assert a.clearance_required == 3  # child protection raises it
    assert a.score >= MODEL.thresholds.unlock
    assert [r.points for r in a.reasons] == sorted((r.points for r in a.reasons), reverse=True)
    # evidence names the agency, record and date behind each indicator
    ev = a.evidence["child_protection"][0]
    assert (ev["agency_id"], ev["type"], ev["date"]) == (
        "csc",
        "child_protection_plan",
        "2026-07-24",
    )


EVENT = st.tuples(
    st.sampled_from(sorted(AGENCY_OF)),
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=800),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.lists(EVENT, max_size=6)), min_size=1, max_size=5))
def test_every_score_is_the_sum_of_its_reason_codes(people):
    members = [
        member(k + 1, age, [(t, float(v), days_ago(d)) for t, v, d in evs])
        for k, (age, evs) in enumerate(people)
    ]
    for ruleset in (TF, SF):
        a = assess_family(family(*members), ruleset, MODEL, AS_AT)
        assert a.score == sum(r.points for r in a.reasons)
        assert all(r.code for r in a.reasons)
        assert a.eligible == (
            len(a.problems_met) >= ruleset.eligibility.min_problems and a.is_family
        )
        for p, score in a.domains.items():
            assert (score == 1) == (not a.problems[p]["met"])


def test_rank_and_percentile_with_ties():
    ranks = rank([("a", 10), ("b", 30), ("c", 10), ("d", 0)])
    assert ranks == {"b": (1, 75.0), "a": (2, 25.0), "c": (2, 25.0), "d": (4, 0.0)}
    assert rank([]) == {}


@pytest.mark.parametrize("name", [t.value for t in IndicatorType])
def test_every_indicator_type_is_read_by_some_measure_or_is_context(name):
    read = {t.value for m in TF.measures.values() for t in m.events}
    context = {"in_education_or_training", "expectant_parent", "physical_health"}
    assert name in read or name in context
