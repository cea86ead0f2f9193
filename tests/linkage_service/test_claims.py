"""Payment-by-results outcome rules on hand-built families, at the edge of every window.

Rules are stated in calendar months. Attached on 10 January 2026, "6 months
since attachment" is due on 10 July; the calendar's 7 days' allowance for
cycle dates makes a snapshot on 3 July the first that counts, 2 July too soon.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from linkage_service._errors import ConflictError, RulesetError, StorageError
from linkage_service.programme import _store as pstore
from linkage_service.programme._assessment import run_cycle
from linkage_service.programme._claims import (
    EVIDENCE_COLUMNS,
    Snap,
    _evidence_json,
    claim_window,
    evaluate_outcomes,
    export_claims,
    export_claims_json,
    list_claims,
)
from linkage_service.programme._programme import OutcomeDetail
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import (
    Calendar,
    Ruleset,
    add_months,
    default_ruleset,
    load_ruleset,
    shipped_rulesets,
)
from protocols import (
    AttachmentEvidence,
    ClaimList,
    ClaimView,
    ConditionOutcome,
    EvidenceEvent,
    FamilyOutcomes,
    HeldSince,
    SnapshotProblem,
)

from ._programme_helpers import Member, TinyDb

TF = default_ruleset("troubled-families-phase2")
MODEL = default_model()
ATTACHED = dt.date(2026, 1, 10)
D = dt.date


def met(*indicators: str, by: tuple[str, ...] = ()) -> SnapshotProblem:
    return SnapshotProblem(
        met=True, indicators=list(indicators), data_from=list(by), met_by=list(by), no_data=False
    )


def snap(
    cycle: int,
    day: dt.date,
    problems: tuple[str, ...] = (),
    detail: OutcomeDetail | None = None,
    **measures: float,
) -> Snap:
    return Snap(
        cycle_id=cycle,
        as_at=day,
        measures=dict(measures),
        problems=problems,
        detail=detail
        or OutcomeDetail(problems={p: met() for p in problems}, domains={}, measures=measures),
    )


def crime(day: dt.date, baseline: float | None, now: float | None) -> FamilyOutcomes:
    base = snap(
        1, ATTACHED, ("crime_asb",), **({} if baseline is None else {"crime_asb_6m": baseline})
    )
    later = snap(2, day, (), **({} if now is None else {"crime_asb_6m": now}))
    return evaluate_outcomes(TF, base, [later], ATTACHED)


def cond(out: FamilyOutcomes, problem: str, k: int = 0) -> ConditionOutcome:
    conditions = out.problems[problem].conditions
    assert conditions is not None
    return conditions[k]


def test_add_months_keeps_the_day_or_takes_the_month_end():
    assert add_months(D(2026, 1, 10), 6) == D(2026, 7, 10)
    assert add_months(D(2026, 8, 31), 6) == D(2027, 2, 28)
    assert add_months(D(2027, 11, 30), 3) == D(2028, 2, 29)


def test_crime_needs_a_sixty_percent_fall_six_months_after_attachment():
    assert crime(D(2026, 7, 10), 10, 4).result == "progress"  # exactly 60%
    out = crime(D(2026, 7, 10), 10, 4.1)  # 59%
    assert out.result is None
    assert cond(out, "crime_asb").reason == "NOT_MET"
    assert "fell 59%" in cond(out, "crime_asb").why_not
    assert crime(D(2026, 7, 3), 10, 0).result == "progress"  # inside the 7 days' allowance
    out = crime(D(2026, 7, 2), 10, 0)  # one day before the allowance
    assert out.result is None
    c = cond(out, "crime_asb")
    assert c.reason == "TOO_SOON" and c.due_on == "2026-07-10"
    assert "on or after 2026-07-03" in c.why_not
    assert out.unmet[0].problem == "crime_asb" and out.unmet[0].reason == "TOO_SOON"


def test_offending_that_stops_is_a_hundred_percent_fall_not_missing():
    out = crime(D(2026, 8, 1), 5, None)  # no incident at all in the last 6 months
    assert out.result == "progress"
    c = cond(out, "crime_asb")
    assert c.snapshots is not None
    assert c.snapshots[0].value == 0.0 and c.snapshots[0].fall_pct == 100.0


def test_a_missing_or_zero_baseline_is_explained():
    out = crime(D(2026, 8, 1), None, None)
    c = cond(out, "crime_asb")
    assert out.result is None and c.reason == "BASELINE_MISSING"
    assert "no value at the baseline, cycle 1 (2026-01-10)" in c.why_not
    assert "60% fall cannot be measured" in c.why_not
    zero = cond(crime(D(2026, 8, 1), 0, 0), "crime_asb")
    assert zero.reason == "BASELINE_ZERO" and "nothing to fall" in zero.why_not


def test_value_missing_without_missing_as_zero_says_so():
    base = snap(1, ATTACHED, ("education",), attendance_min_term=80)
    out = evaluate_outcomes(TF, base, [snap(2, D(2026, 9, 1))], ATTACHED)
    c = cond(out, "education")
    assert c.reason == "VALUE_MISSING" and "missing_as_zero" in c.why_not


def terms(*days_values: tuple[dt.date, float], exclusions: float = 0.0) -> FamilyOutcomes:
    base = snap(1, ATTACHED, ("education",), attendance_min_term=80)
    after = [
        snap(2 + k, d, (), attendance_min_term=v, fixed_term_exclusions_3_terms=exclusions)
        for k, (d, v) in enumerate(days_values)
    ]
    return evaluate_outcomes(TF, base, after, ATTACHED)


def test_education_sustained_six_months_from_the_first_snapshot_of_the_run():
    # quarterly: held at 1 April, 1 July and 1 October -> six months on 1 October
    quarterly = [(D(2026, 4, 1), 91.0), (D(2026, 7, 1), 92.0), (D(2026, 10, 1), 93.0)]
    out = terms(*quarterly)
    assert out.result == "progress"
    c = cond(out, "education")
    assert c.held_since == HeldSince(cycle_id=2, as_at="2026-04-01")
    assert c.sustained_until == "2026-10-01"
    # the 7 days' allowance: 24 September counts, 23 September does not
    assert terms(*quarterly[:2], (D(2026, 9, 24), 93.0)).result == "progress"
    short = terms(*quarterly[:2], (D(2026, 9, 23), 93.0))
    assert short.result is None
    c = cond(short, "education")
    assert c.reason == "NOT_SUSTAINED"
    assert "since cycle 2 (2026-04-01)" in c.why_not and "2026-09-24" in c.why_not
    # one term below 90% restarts the run
    broken = terms((D(2026, 4, 1), 91.0), (D(2026, 7, 1), 89.9), (D(2026, 10, 1), 93.0))
    c = cond(broken, "education")
    assert c.reason == "NOT_SUSTAINED" and "did not hold at cycle 3 (2026-07-01)" in c.why_not
    # the latest below 90% is plainly not met
    assert cond(terms(*quarterly[:2], (D(2026, 10, 1), 85.0)), "education").reason == "NOT_MET"


def test_education_exclusions_across_three_terms():
    quarterly = [(D(2026, 4, 1), 91.0), (D(2026, 7, 1), 92.0), (D(2026, 10, 1), 93.0)]
    assert terms(*quarterly, exclusions=2).result == "progress"  # fewer than 3
    out = terms(*quarterly, exclusions=3)
    assert out.result is None and cond(out, "education", 1).reason == "NOT_MET"


def test_sustained_is_decided_from_monthly_and_irregular_cycles_alike():
    # monthly, 30 days apart from 1 February: the run reaches six months on 31 July
    # (180 days, 1 day short of 1 August, inside the allowance)
    monthly = [(D(2026, 2, 1) + dt.timedelta(days=30 * k), 95.0) for k in range(7)]
    assert monthly[-1][0] == D(2026, 7, 31)
    assert terms(*monthly).result == "progress"
    assert terms(*monthly[:-1]).result is None  # 30 June: five months
    # irregular: 20 February, 3 May, 29 August
    irregular = [(D(2026, 2, 20), 95.0), (D(2026, 5, 3), 96.0), (D(2026, 8, 29), 97.0)]
    assert terms(*irregular).result == "progress"  # 6 months and 9 days
    assert terms(*irregular[:2], (D(2026, 8, 12), 97.0)).result is None  # 8 days short


def test_every_problem_including_ones_found_later_must_be_met():
    base = snap(1, ATTACHED, ("domestic_abuse",), domestic_abuse_6m=3)
    quiet = {"domestic_abuse_6m": 0.0}
    after = [snap(2, D(2026, 4, 10), (), **quiet), snap(3, D(2026, 7, 10), (), **quiet)]
    assert evaluate_outcomes(TF, base, after, ATTACHED).result == "progress"
    # a health problem found at the first review must be turned around too
    after = [
        snap(2, D(2026, 4, 10), ("health",), health_months_6m=6, **quiet),
        snap(3, D(2026, 7, 10), (), health_months_6m=6, **quiet),
    ]
    out = evaluate_outcomes(TF, base, after, ATTACHED)
    assert set(out.problems) == {"domestic_abuse", "health"}
    assert out.problems["domestic_abuse"].met and not out.problems["health"].met
    assert out.problems["health"].identified_cycle == 2
    # measured from where it was found (cycle 2), not from the family's baseline, which
    # had no value for it: no fall yet
    assert out.problems["health"].reason == "NOT_MET"
    assert {c.baseline_cycle for c in out.problems["health"].conditions or []} == {2}
    assert cond(out, "domestic_abuse").baseline_cycle == 1
    assert out.result is None and {u.problem for u in out.unmet} >= {"health"}
    # it halves, six months after attachment: every problem is turned around
    after[-1] = snap(3, D(2026, 7, 10), (), health_months_6m=3, **quiet)
    out = evaluate_outcomes(TF, base, after, ATTACHED)
    assert out.problems["health"].met and out.result == "progress"
    assert cond(out, "health").baseline == 6
    # found only at the latest snapshot: nothing to measure its fall against yet
    latest = snap(3, D(2026, 7, 10), ("crime_asb",), health_months_6m=3, crime_asb_6m=2, **quiet)
    out = evaluate_outcomes(TF, base, [after[0], latest], ATTACHED)
    assert out.problems["crime_asb"].reason == "NO_SNAPSHOT_SINCE_BASELINE"
    assert "cycle 3" in (out.problems["crime_asb"].why_not or "")


def test_no_incident_reported_is_zero_where_the_ruleset_says_so():
    base = snap(1, ATTACHED, ("domestic_abuse",), domestic_abuse_6m=3)
    assert evaluate_outcomes(TF, base, [snap(2, D(2026, 7, 10))], ATTACHED).result == "progress"
    out = evaluate_outcomes(TF, base, [snap(2, D(2026, 4, 10))], ATTACHED)
    assert out.problems["domestic_abuse"].reason == "TOO_SOON"


def test_continuous_employment_is_the_alternative_result():
    base = snap(
        1, ATTACHED, ("work_finance", "health"), out_of_work_adults_12m=1, health_months_6m=4
    )
    job = {"continuous_employment_adults": 1.0, "health_months_6m": 4.0}
    on = [snap(2, D(2026, 2, 10), (), **job), snap(3, D(2026, 8, 10), (), **job)]
    out = evaluate_outcomes(TF, base, on, ATTACHED)
    assert out.result == "employment" and out.employment.met
    short = [snap(2, D(2026, 2, 10), (), **job), snap(3, D(2026, 8, 2), (), **job)]
    out = evaluate_outcomes(TF, base, short, ATTACHED)
    assert out.result is None
    assert out.employment.reason == "NOT_SUSTAINED"
    never_on_benefits = snap(1, ATTACHED, ("health",), health_months_6m=4)
    none = evaluate_outcomes(TF, never_on_benefits, on, ATTACHED)
    assert none.result is None
    assert none.employment.reason == "BASELINE_MISSING"


def test_a_family_with_no_problem_has_no_result_and_says_why():
    out = evaluate_outcomes(TF, snap(1, ATTACHED), [snap(2, D(2027, 3, 1))], ATTACHED)
    assert out.result is None and out.unmet[0].reason == "NO_PROBLEM"


def test_no_snapshot_since_baseline():
    base = snap(1, ATTACHED, ("domestic_abuse",), domestic_abuse_6m=3)
    out = evaluate_outcomes(TF, base, [], ATTACHED)
    assert out.problems["domestic_abuse"].reason == "NO_SNAPSHOT_SINCE_BASELINE"


def test_every_unmet_rule_has_a_code_and_words():
    base = snap(1, ATTACHED, ("crime_asb", "education", "health", "work_finance"))
    out = evaluate_outcomes(TF, base, [snap(2, D(2026, 3, 1))], ATTACHED)
    assert out.result is None and out.unmet
    for u in out.unmet:
        assert u.reason.isupper() and len(u.why_not) > 20


# --- the calendar -------------------------------------------------------------------------


def test_claim_windows_come_from_the_calendar():
    w = claim_window(TF, "2026-H1")
    assert (w.opens, w.closes) == (D(2026, 1, 1), D(2026, 6, 30))
    assert claim_window(TF, "2026-H2").closes == D(2026, 12, 31)
    for bad in ("2014-H2", "2026-H3", "2026-Q1", "26-H1", "2026-h1"):
        with pytest.raises(ConflictError, match="not in the calendar of troubled-families-phase2"):
            claim_window(TF, bad)
    sf = default_ruleset("supporting-families-2022")
    assert claim_window(sf, "2022-H1").window_id == "2022-H1"
    with pytest.raises(ConflictError, match="from 2022-H1 to no end"):
        claim_window(sf, "2021-H2")


def test_a_quarterly_calendar_with_an_end():
    cal = Calendar(claim_windows="quarters", starts=D(2023, 4, 1), ends=D(2025, 3, 31))
    assert cal.window("2023-Q2") is not None and cal.window("2023-Q1") is None
    assert cal.window("2025-Q1") is not None and cal.window("2025-Q2") is None
    q3 = cal.window_of(D(2024, 8, 15))
    assert q3 is not None and (q3.window_id, q3.opens, q3.closes) == (
        "2024-Q3",
        D(2024, 7, 1),
        D(2024, 9, 30),
    )
    with pytest.raises(ValueError, match="before calendar.starts"):
        Calendar(starts=D(2024, 1, 1), ends=D(2023, 1, 1))


def test_rule_files_must_state_months_and_stored_rulesets_in_days_still_load(tmp_path):
    text = shipped_rulesets()["troubled-families-phase2"].read_text()
    old = text.replace("months_since_attachment = 6", "min_days_since_attachment = 182", 1)
    path = tmp_path / "old.toml"
    path.write_text(old)
    with pytest.raises(
        RulesetError,
        match=r"outcomes\.crime_asb\.all_of\.0\.min_days_since_attachment: .* use "
        "months_since_attachment",
    ):
        load_ruleset(path)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("sustained_months = 6 }", "sustained_months = 61 }", 1))
    with pytest.raises(RulesetError, match="sustained_months"):
        load_ruleset(bad)
    # a cycle stored before months: its days read as whole months
    stored = TF.model_dump(mode="json")
    stored.pop("calendar")
    stored["outcomes"]["education"]["all_of"][0] = {
        "measure": "attendance_min_term",
        "op": ">=",
        "value": 90,
        "snapshots": 3,
        "span_days": 240,
    }
    stored["outcomes"]["crime_asb"]["all_of"][0] = {
        "measure": "crime_asb_6m",
        "compare": "fall_pct",
        "op": ">=",
        "value": 60,
        "min_days_since_attachment": 182,
    }
    legacy = Ruleset.model_validate_json(json.dumps(stored))
    assert legacy.outcomes["education"].all_of[0].sustained_months == 8
    assert legacy.outcomes["crime_asb"].all_of[0].months_since_attachment == 6
    assert legacy.calendar == Calendar()


# --- exports --------------------------------------------------------------------------------


def _claims() -> list[ClaimView]:
    event = EvidenceEvent(
        person_id="per_1",
        agency_id="police",
        record_ref="ref-7",
        type="dv_incidents",
        value=3.0,
        date="2025-12-01",
    )
    detail = OutcomeDetail(
        problems={"domestic_abuse": met("domestic_violence", by=("police",))},
        domains={},
        measures={"domestic_abuse_6m": 3.0},
        evidence={"domestic_violence": [event]},
    )
    base = snap(1, ATTACHED, ("domestic_abuse",), detail, domestic_abuse_6m=3)
    evidence = evaluate_outcomes(TF, base, [snap(2, D(2026, 7, 10))], ATTACHED)
    out = []
    for k in range(1, 41):
        result = k % 2 == 0
        out.append(
            ClaimView(
                claim_id=k,
                window_id="2026-H2",
                family_id=f"fam_{k:016x}",
                kind="result" if result else "attachment",
                result="progress" if result else None,
                amount_gbp=800 if result else 1000,
                cycle_id=2,
                created_at="2026-07-11T00:00:00+00:00",
                created_by="coordinator:test",
                evidence=evidence
                if result
                else AttachmentEvidence(attached_on="2026-01-10", baseline_cycle=1),
            )
        )
    return out


def test_export_is_one_row_per_evidence_item_with_json_alongside():
    claims = _claims()
    rows = list(csv.DictReader(io.StringIO(export_claims(claims))))
    assert tuple(rows[0]) == EVIDENCE_COLUMNS
    first = [r for r in rows if r["claim_id"] == "1"]
    assert [r["item"] for r in first] == ["attachment"]
    assert first[0]["as_at"] == "2026-01-10" and first[0]["cycle_id"] == "1"
    second = [r for r in rows if r["claim_id"] == "2"]
    assert [r["item"] for r in second] == ["identified", "event", "condition", "observation"]
    ident, event, condition, obs = second
    assert (ident["problem"], ident["indicators"], ident["agency_id"]) == (
        "domestic_abuse",
        "domestic_violence",
        "police",
    )
    assert (event["agency_id"], event["record_ref"], event["event_type"], event["as_at"]) == (
        "police",
        "ref-7",
        "dv_incidents",
        "2025-12-01",
    )
    assert (condition["measure"], condition["op"], condition["threshold"], condition["met"]) == (
        "domestic_abuse_6m",
        "==",
        "0",
        "True",
    )
    assert (obs["cycle_id"], obs["as_at"], obs["value"], obs["met"]) == (
        "2",
        "2026-07-10",
        "0.0",
        "True",
    )
    assert all("{" not in v for r in rows for v in r.values())  # no JSON in a cell
    body = json.loads(export_claims_json(claims))
    assert [c["claim_id"] for c in body["claims"]] == list(range(1, 41))
    assert body["claims"][1]["evidence"]["problems"]["domestic_abuse"]["met"] is True


def test_export_samples_reproducibly():
    claims = _claims()

    def ids(text: str) -> list[str]:
        return sorted({r["claim_id"] for r in csv.DictReader(io.StringIO(text))}, key=int)

    a = ids(export_claims(claims, sample_pct=10, seed=7))
    assert len(a) == 4 and a == ids(export_claims(claims, sample_pct=10, seed=7))
    assert a != ids(export_claims(claims, sample_pct=10, seed=8))
    picked = json.loads(export_claims_json(claims, sample_pct=10, seed=7))["claims"]
    assert [str(c["claim_id"]) for c in picked] == a
    with pytest.raises(ConflictError, match="sample_pct"):
        export_claims(claims, sample_pct=0)


# --- stored evidence: the text claims were stored with, read back whatever its age ---------

TESTDATA = Path(__file__).parent / "testdata"


def test_evidence_is_stored_as_the_dict_implementation_stored_it():
    # testdata/README.md: the same scenario evaluated by the implementation before models
    body = TF.model_dump(mode="json")
    body["outcomes"]["crime_asb"]["all_of"][0]["missing_as_zero"] = False
    ruleset = Ruleset.model_validate(body)
    event = EvidenceEvent(
        person_id="per_1",
        agency_id="police",
        record_ref="ref-7",
        type="dv_incidents",
        value=3.0,
        date="2025-12-01",
    )

    def at(cycle: int, day: dt.date, problems: tuple[str, ...], **measures: float) -> Snap:
        found = {
            p: SnapshotProblem(
                met=True,
                indicators=["dv"] if p == "domestic_abuse" else [],
                data_from=["police"],
                met_by=["police"],
                no_data=False,
            )
            for p in problems
        }
        detail = OutcomeDetail(
            problems=found, domains={}, measures=measures, evidence={"dv": [event]}
        )
        return snap(cycle, day, problems, detail, **measures)

    base = at(
        1,
        ATTACHED,
        ("crime_asb", "domestic_abuse", "education", "work_finance"),
        crime_asb_6m=10.0,
        domestic_abuse_6m=3.0,
        attendance_min_term=80.0,
        out_of_work_adults_12m=1.0,
    )
    after = [
        at(
            2,
            D(2026, 4, 10),
            ("no_such",),
            attendance_min_term=91.0,
            continuous_employment_adults=1.0,
        ),
        at(
            3,
            D(2026, 7, 2),
            (),
            crime_asb_6m=0.0,
            attendance_min_term=95.0,
            continuous_employment_adults=1.0,
        ),
    ]
    out = evaluate_outcomes(ruleset, base, after, ATTACHED)
    expected = (TESTDATA / "claim_evidence_months.json").read_text().removesuffix("\n")
    assert _evidence_json(out) == expected
    # a percentage fall with no value to fall to is null; a plain value condition has none
    crime = cond(out, "crime_asb")
    assert crime.snapshots is not None and crime.snapshots[0].fall_pct is None
    assert '"fall_pct": null' in expected
    assert cond(out, "education").snapshots[0].model_dump(exclude_unset=True).keys() == {
        "cycle_id",
        "as_at",
        "value",
        "held",
    }
    # read back and written out again: the same text
    assert _evidence_json(FamilyOutcomes.model_validate_json(expected)) == expected


LEGACY_ATTACHMENT = '{"attached_on": "2026-01-10", "baseline_cycle": 1}'


def _stored(db: TinyDb, *rows: tuple[str, str | None, str]) -> None:
    """Claims stored as rows (kind, result, evidence text) for a family of cycle 1."""
    with db.engine.begin() as conn:
        for k, (kind, result, evidence) in enumerate(rows, start=1):
            conn.execute(
                pstore.claims.insert().values(
                    family_id=f"fam_{k:016x}",
                    kind=kind,
                    result=result,
                    window_id="2026-H2",
                    cycle_id=1,
                    amount_gbp=800 if kind == "result" else 1000,
                    evidence=evidence,
                    created_at=1_790_000_000_000_000,
                    created_by="coordinator:old",
                )
            )


@pytest.fixture
def db(tmp_path) -> TinyDb:
    out = TinyDb(tmp_path / "claims.db")
    out.household(1, [Member(34, "F", ("health",)), Member(9, "M", ("school",))])
    run_cycle(out.engine, TF, MODEL, ATTACHED, actor="test")
    return out


def test_claims_stored_before_outcome_rules_were_in_months_still_read(db):
    days = (TESTDATA / "claim_evidence_days.json").read_text().removesuffix("\n")
    _stored(db, ("attachment", None, LEGACY_ATTACHMENT), ("result", "employment", days))
    attachment, result = list_claims(db.engine)
    assert attachment.evidence == AttachmentEvidence(attached_on="2026-01-10", baseline_cycle=1)
    ev = result.evidence
    assert isinstance(ev, FamilyOutcomes) and ev.result == "employment"
    assert ev.unmet is None and ev.as_at is None  # not in the evidence of those days
    assert ev.problems["no_such"].reason is None
    assert ev.problems["no_such"].why_not == "no outcome rule for this problem"
    assert ev.employment is not None and ev.employment.conditions[0].snapshots is None
    # what the routes and the export write is the stored evidence, key for key
    for claim, text in ((attachment, LEGACY_ATTACHMENT), (result, days)):
        assert _evidence_json(claim.evidence) == text
        listed = ClaimList(claims=[claim]).model_dump(mode="json", exclude_unset=True)
        assert listed["claims"][0]["evidence"] == json.loads(text)
    exported = json.loads(export_claims_json([attachment, result]))["claims"]
    assert [c["evidence"] for c in exported] == [json.loads(LEGACY_ATTACHMENT), json.loads(days)]
    rows = list(csv.DictReader(io.StringIO(export_claims([attachment, result]))))
    items = [r["item"] for r in rows if r["claim_id"] == str(result.claim_id)]
    assert items[0] == "identified" and items.count("condition") == 4  # 2 problems + employment
    assert "observation" in items and "event" in items


@pytest.mark.parametrize(
    ("kind", "evidence", "wrong"),
    [
        # a key no version ever wrote (a typo, a hand edit): a dict passed it on unread
        (
            "attachment",
            '{"attached_on": "2026-01-10", "baseline_cycle": 1, "by": "x"}',
            "by: Extra inputs are not permitted",
        ),
        (
            "attachment",
            '{"attached_on": "2026-01-10", "baseline_cycle": "first"}',
            "baseline_cycle: Input should be a valid integer",
        ),
        (
            "result",
            '{"baseline_cycle": 1, "employment": null, "latest_cycle": 2, "problems": {}, '
            '"result": "paid"}',
            "result: Input should be 'progress' or 'employment'",
        ),
    ],
    ids=["unknown_key", "cycle_not_a_number", "result_not_a_kind"],
)
def test_stored_evidence_that_is_no_claim_is_refused_by_name(db, kind, evidence, wrong):
    _stored(db, (kind, None, evidence))
    prefix = f"claim 1 ({kind}, family fam_{1:016x}): stored evidence does not parse: "
    with pytest.raises(StorageError, match=re.escape(prefix + wrong)):
        list_claims(db.engine)


def test_an_evaluation_is_refused_a_shape_no_rule_makes():
    ok = crime(D(2026, 7, 10), 10, 4)
    body = ok.model_dump(mode="json", exclude_unset=True)
    body["problems"]["crime_asb"]["conditions"][0]["op"] = "=~"
    with pytest.raises(ValidationError, match="op"):
        FamilyOutcomes.model_validate(body)
    body = ok.model_dump(mode="json", exclude_unset=True)
    body["problems"]["crime_asb"]["conditions"][0]["snapshots"][0]["held"] = "maybe"
    with pytest.raises(ValidationError, match="held"):
        FamilyOutcomes.model_validate(body)


def test_the_audit_csv_columns_are_fixed():
    # the internal-audit file's header: a change here is a change of file format
    assert EVIDENCE_COLUMNS == (
        "claim_id",
        "window_id",
        "family_id",
        "kind",
        "result",
        "amount_gbp",
        "claim_cycle_id",
        "created_at",
        "created_by",
        "item",
        "problem",
        "indicators",
        "measure",
        "cycle_id",
        "as_at",
        "value",
        "baseline",
        "op",
        "threshold",
        "met",
        "reason",
        "agency_id",
        "record_ref",
        "event_type",
        "note",
    )
