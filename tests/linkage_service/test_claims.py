"""Payment-by-results outcome rules on hand-built families, at the edge of every window."""

from __future__ import annotations

import datetime as dt

import pytest

from linkage_service._errors import ConflictError
from linkage_service.programme._claims import Snap, evaluate_outcomes, export_claims
from linkage_service.programme._ruleset import default_ruleset

TF = default_ruleset("troubled-families-phase2")
ATTACHED = dt.date(2026, 1, 10)


def snap(cycle: int, day: int, problems: tuple[str, ...] = (), **measures: float) -> Snap:
    return Snap(
        cycle_id=cycle,
        as_at=ATTACHED + dt.timedelta(days=day),
        measures=dict(measures),
        problems=problems,
        detail={"problems": {p: {"met": True, "indicators": [], "met_by": []} for p in problems}},
    )


def crime(after_day: int, baseline: float, now: float) -> dict:
    base = snap(1, 0, ("crime_asb",), crime_asb_6m=baseline)
    later = snap(2, after_day, (), crime_asb_6m=now)
    return evaluate_outcomes(TF, base, [later], ATTACHED)


def test_crime_needs_a_sixty_percent_fall_over_six_months():
    assert crime(182, 10, 4)["result"] == "progress"  # exactly 60%
    assert crime(182, 10, 4.1)["result"] is None  # 59%
    out = crime(181, 10, 0)  # one day short of six months after attachment
    assert out["result"] is None
    cond = out["problems"]["crime_asb"]["conditions"][0]
    assert "181 days since attachment < 182" in cond["why_not"]
    # missing now (no incident at all in 6 months) is not read as zero for a fall
    base = snap(1, 0, ("crime_asb",), crime_asb_6m=5)
    assert evaluate_outcomes(TF, base, [snap(2, 200)], ATTACHED)["result"] is None


def test_education_needs_three_terms_of_attendance_and_few_exclusions():
    base = snap(1, 0, ("education",), attendance_min_term=80)

    def terms(days: tuple[int, int, int], values=(91, 92, 93), exclusions=0.0):
        after = [
            snap(2 + k, d, (), attendance_min_term=v, fixed_term_exclusions_3_terms=exclusions)
            for k, (d, v) in enumerate(zip(days, values, strict=True))
        ]
        return evaluate_outcomes(TF, base, after, ATTACHED)

    assert terms((100, 220, 340))["result"] == "progress"  # span 240 days
    assert terms((100, 220, 339))["result"] is None  # span 239
    assert terms((100, 220, 340), values=(91, 89.9, 93))["result"] is None  # one term below
    assert terms((100, 220, 340), exclusions=2)["result"] == "progress"  # fewer than 3
    assert terms((100, 220, 340), exclusions=3)["result"] is None
    two = evaluate_outcomes(TF, base, [snap(2, 100, attendance_min_term=95)], ATTACHED)
    assert "needs 3 snapshots after attachment, has 1" in str(two)


def test_every_problem_including_ones_found_later_must_be_met():
    base = snap(1, 0, ("domestic_abuse",), domestic_abuse_6m=3)
    quiet = {"domestic_abuse_6m": 0.0}
    # DV quiet for 6 months in two snapshots 90 days apart: met
    after = [snap(2, 100, (), **quiet), snap(3, 190, (), **quiet)]
    assert evaluate_outcomes(TF, base, after, ATTACHED)["result"] == "progress"
    # a health problem found at the second review must be turned around too
    after = [snap(2, 100, ("health",), health_months_6m=6, **quiet), snap(3, 190, (), **quiet)]
    out = evaluate_outcomes(TF, base, after, ATTACHED)
    assert set(out["problems"]) == {"domestic_abuse", "health"}
    assert out["problems"]["domestic_abuse"]["met"] and not out["problems"]["health"]["met"]
    assert out["result"] is None
    assert out["problems"]["health"]["identified_cycle"] == 2


def test_missing_as_zero_means_no_incident_reported():
    base = snap(1, 0, ("domestic_abuse",), domestic_abuse_6m=3)
    after = [snap(2, 100), snap(3, 190)]  # nothing reported at all
    assert evaluate_outcomes(TF, base, after, ATTACHED)["result"] == "progress"
    after = [snap(2, 100), snap(3, 189 - 100 + 100)]  # 89 days apart: span 90 needed
    assert evaluate_outcomes(TF, base, after, ATTACHED)["result"] is None


def test_continuous_employment_is_the_alternative_result():
    base = snap(1, 0, ("work_finance", "health"), out_of_work_adults_12m=1, health_months_6m=4)
    job = {"continuous_employment_adults": 1.0, "health_months_6m": 4.0}
    out = evaluate_outcomes(TF, base, [snap(2, 30, (), **job), snap(3, 212, (), **job)], ATTACHED)
    assert out["result"] == "employment" and out["employment"]["met"]
    short = evaluate_outcomes(TF, base, [snap(2, 30, (), **job), snap(3, 211, (), **job)], ATTACHED)
    assert short["result"] is None  # 181 days, not 26 weeks
    never_on_benefits = snap(1, 0, ("health",), health_months_6m=4)
    none = evaluate_outcomes(
        TF, never_on_benefits, [snap(2, 30, (), **job), snap(3, 212, (), **job)], ATTACHED
    )
    assert none["result"] is None  # baseline had no adult on out-of-work benefits


def test_a_family_with_no_problem_has_no_result():
    assert evaluate_outcomes(TF, snap(1, 0), [snap(2, 400)], ATTACHED)["result"] is None


def test_export_samples_reproducibly():
    claims = [
        {
            "claim_id": k,
            "window_id": "2027-H1",
            "family_id": f"fam_{k:016x}",
            "kind": "result",
            "result": "progress",
            "amount_gbp": 800,
            "cycle_id": 3,
            "created_at": "2027-03-01T00:00:00+00:00",
            "created_by": "coordinator:test",
            "evidence": {"problems": {"crime_asb": {"source_agencies": ["police"]}}},
        }
        for k in range(1, 41)
    ]
    full = export_claims(claims).splitlines()
    assert len(full) == 41 and full[0].startswith("claim_id,window_id,family_id")
    assert ",crime_asb,police," in full[1]
    a = export_claims(claims, sample_pct=10, seed=7).splitlines()
    assert len(a) == 5 and a == export_claims(claims, sample_pct=10, seed=7).splitlines()
    assert a != export_claims(claims, sample_pct=10, seed=8).splitlines()
    with pytest.raises(ConflictError, match="sample_pct"):
        export_claims(claims, sample_pct=0)
