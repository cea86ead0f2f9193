"""A year of cycles on a hand-built database: results in calendar time, ruleset switches.

A family attached on 1 January 2026 with offending, domestic abuse and poor
attendance (80% reported on 15 December) stops offending, has no incident,
and attends 95% from then on. The rules say: crime and domestic abuse are
turned around 6 months after attachment (1 July, a snapshot on or after 24
June with the 7 days' allowance); attendance must hold at every snapshot for
6 months from the first snapshot whose last term (120 days) no longer holds
the 80%, i.e. the first snapshot after 14 April. So the family reaches
``pending_claim`` at the first snapshot on or after that one + 6 months - 7 days.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from linkage_service._errors import ConflictError
from linkage_service.programme import _store as pstore
from linkage_service.programme._active import (
    active_ruleset,
    rederive_detail,
    rederived_score,
    ruleset_switches,
    switch_ruleset,
)
from linkage_service.programme._assessment import family_view, list_families, run_cycle, set_status
from linkage_service.programme._claims import create_claims, family_outcomes, list_claims
from linkage_service.programme._programme import OutcomeDetail
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import Ruleset, add_months, default_ruleset
from protocols import FamilyOutcomes

from ._programme_helpers import Member, TinyDb

TF = default_ruleset("troubled-families-phase2")
SF = default_ruleset("supporting-families-2022")
MODEL = default_model()
T0 = dt.date(2026, 1, 1)
D = dt.date


def turned_around(db: TinyDb, cycles: list[dt.date]) -> str:
    """The family above, with a 95% attendance report 5 days before every cycle."""
    school = [("school", "attendance_pct", 95.0, c - dt.timedelta(days=5)) for c in cycles]
    hid, _ = db.household(
        1,
        [
            Member(
                34,
                "F",
                ("health",),
                [
                    ("police", "adult_offending", 1, D(2025, 12, 1)),
                    ("police", "dv_incidents", 2, D(2025, 12, 10)),
                ],
            ),
            Member(
                9, "M", ("school",), [("school", "attendance_pct", 80.0, D(2025, 12, 15)), *school]
            ),
        ],
    )
    return "fam_" + hid[3:]


def expected_pending(cycles: list[dt.date]) -> dt.date:
    """The first cycle at which the rules, read by hand, give a result."""
    first_clear = next(c for c in cycles if c - dt.timedelta(days=120) >= D(2025, 12, 15))
    due = max(add_months(first_clear, 6), add_months(T0, 6)) - dt.timedelta(days=7)
    return next(c for c in cycles if c >= due)


QUARTERLY = [T0, D(2026, 4, 1), D(2026, 7, 1), D(2026, 10, 1), D(2027, 1, 1), D(2027, 4, 1)]
MONTHLY = [add_months(T0, k) for k in range(13)]
IRREGULAR = [T0, D(2026, 2, 20), D(2026, 5, 3), D(2026, 8, 29), D(2026, 11, 7), D(2027, 3, 15)]


@pytest.mark.parametrize(
    ("cycles", "pending_on", "window"),
    [
        (QUARTERLY, D(2027, 1, 1), "2027-H1"),  # attendance clear from 1 July
        (MONTHLY, D(2026, 11, 1), "2026-H2"),  # clear from 1 May
        (IRREGULAR, D(2026, 11, 7), "2026-H2"),  # clear from 3 May; due 27 October
    ],
    ids=["quarterly", "monthly", "irregular"],
)
def test_a_family_meeting_every_outcome_reaches_pending_claim_when_the_rules_say(
    tmp_path, cycles, pending_on, window
):
    db = TinyDb(tmp_path / "year.db")
    fid = turned_around(db, cycles)
    assert expected_pending(cycles) == pending_on
    run_cycle(db.engine, TF, MODEL, cycles[0], actor="t")
    set_status(db.engine, fid, "attached", actor="c", reason="WORK_STARTED", on=T0)
    for day in cycles[1:]:
        run_cycle(db.engine, TF, MODEL, day, actor="t")
        status = family_view(db.engine, fid).status
        if day < pending_on:
            assert status == "attached", day
            out = family_outcomes(db.engine, fid)
            assert out.result is None and out.unmet
            assert {u.reason for u in out.unmet} <= {
                "TOO_SOON",
                "NOT_SUSTAINED",
                "NOT_MET",
                "BASELINE_MISSING",
            }
        else:
            assert status in ("pending_claim", "claimed"), day
        if day == pending_on:
            assert TF.calendar.window_of(day).window_id == window
            out = family_outcomes(db.engine, fid)
            assert out.result == "progress"
            assert set(out.problems) == {"crime_asb", "domestic_abuse", "education"}
            batch = create_claims(db.engine, window, actor="coordinator:a")
            assert batch.result_claims == 1
            assert family_view(db.engine, fid).status == "claimed"
    claims = {c.kind: c for c in list_claims(db.engine)}
    assert claims["result"].window_id == window
    evidence = claims["result"].evidence
    assert isinstance(evidence, FamilyOutcomes)
    conditions = evidence.problems["education"].conditions
    assert conditions is not None
    education = conditions[0]
    assert education.met and education.sustained_until is not None
    assert education.sustained_until <= pending_on.isoformat()


def test_the_quarterly_family_says_why_it_is_not_yet_a_result(tmp_path):
    db = TinyDb(tmp_path / "q.db")
    fid = turned_around(db, QUARTERLY)
    run_cycle(db.engine, TF, MODEL, T0, actor="t")
    set_status(db.engine, fid, "attached", actor="c", reason="WORK_STARTED", on=T0)
    run_cycle(db.engine, TF, MODEL, D(2026, 4, 1), actor="t")
    out = family_outcomes(db.engine, fid)
    assert out.unmet is not None
    reasons = {u.problem: u.reason for u in out.unmet}
    # December's offence, incident and 80% are still inside the 6-month and term windows
    assert reasons["crime_asb"] == reasons["domestic_abuse"] == reasons["education"] == "NOT_MET"
    assert "fell 0%" in str(out.problems["crime_asb"].why_not)
    run_cycle(db.engine, TF, MODEL, D(2026, 7, 1), actor="t")
    out = family_outcomes(db.engine, fid)
    assert out.unmet is not None
    assert [u.problem for u in out.unmet if u.problem != "(employment)"] == ["education"]
    edu = out.problems["education"]
    assert edu.reason == "NOT_SUSTAINED" and "2026-12-25" in str(edu.why_not)


# --- switching the ruleset between cycles ---------------------------------------------------


def many_needs(db: TinyDb) -> str:
    """Needs Supporting Families counts as seven, Troubled Families Phase 2 as three."""
    hid, _ = db.household(
        2,
        [
            Member(
                31,
                "F",
                ("health", "dwp", "housing"),
                [
                    ("health", "months_mental_health", 4, D(2025, 12, 1)),
                    ("health", "months_alcohol_misuse", 3, D(2025, 12, 1)),
                    ("dwp", "out_of_work_benefits", 1, D(2025, 12, 1)),
                    ("housing", "rent_arrears_gbp", 600, D(2025, 12, 1)),
                ],
            ),
            Member(
                12,
                "M",
                ("school",),
                [("early_help", "young_carer", 1, D(2025, 11, 1))],
            ),
            Member(3, "F", (), [("early_help", "early_help_assessment", 1, D(2025, 11, 1))]),
            Member(7, "F", ("school",), [("csc", "child_protection_plan", 1, D(2025, 10, 1))]),
        ],
    )
    return "fam_" + hid[3:]


def test_switching_the_ruleset_rederives_baselines_and_raises_no_false_step(tmp_path):
    db = TinyDb(tmp_path / "switch.db")
    fid = many_needs(db)
    run_cycle(db.engine, TF, MODEL, T0, actor="t")
    set_status(db.engine, fid, "attached", actor="c", reason="WORK_STARTED", on=T0)
    run_cycle(db.engine, TF, MODEL, T0 + dt.timedelta(days=1), actor="t")
    assert active_ruleset(db.engine, TF) is TF
    switched = switch_ruleset(db.engine, SF, MODEL, TF, actor="admin:a", reason="NEW_PHASE")
    assert switched.previous.name == "troubled-families-phase2"
    assert active_ruleset(db.engine, TF).sha256() == SF.sha256()
    assert [s.ruleset.name for s in ruleset_switches(db.engine)] == [SF.name]
    # the next cycle (the service reads the active ruleset for it) uses Supporting Families
    stats = run_cycle(
        db.engine, active_ruleset(db.engine, TF), MODEL, T0 + dt.timedelta(days=2), actor="t"
    ).stats
    assert stats.ruleset == "supporting-families-2022 1.0"
    with db.engine.connect() as conn:
        s = pstore.snapshots
        scores = dict(
            conn.execute(sa.select(s.c.cycle_id, s.c.score).where(s.c.family_id == fid)).all()
        )
        detail = OutcomeDetail.model_validate_json(
            conn.execute(
                sa.select(s.c.detail).where(s.c.family_id == fid, s.c.cycle_id == 1)
            ).scalar_one()
        )
    # the score rose with the rules alone (seven needs, not three) ...
    assert scores[3] - scores[2] >= MODEL.thresholds.step_up
    # ... and no step-up is raised: the previous cycle was re-scored under the new rules
    fam = list_families(db.engine).families[0]
    assert fam.family_id == fid and fam.step is None and fam.previous_score == scores[3]
    assert stats.step_up == stats.step_down == 0
    # the baseline is re-derived from the attachment snapshot, not reset to 1
    progress = family_view(db.engine, fid).progress
    assert progress is not None and progress.baseline_cycle == 1
    domains = progress.domains
    assert set(domains) == set(SF.problems)
    assert domains["children_safe"].baseline == 5  # child protection plan
    assert domains["substance_use"].baseline == 4
    assert domains["secure_housing"].baseline == 2
    assert all(d.change == 0 for d in domains.values())
    rederived = rederive_detail(detail, SF)
    assert len(rederived.problems) == 7 and rederived_score(detail, SF, MODEL) == scores[3]
    assert rederived.rederived is not None and rederived.rederived.sha256 == SF.sha256()
    # the outcome plan reads the baseline under the new rules: SF problems, SF outcomes
    out = family_outcomes(db.engine, fid)
    assert set(out.problems) == set(rederived.problems)
    assert all(v.reason != "NO_OUTCOME_RULE" for v in out.problems.values())
    # attached before the switch, it is still claimed for (once), in the new phase
    window = SF.calendar.window_of(T0 + dt.timedelta(days=2))
    assert window is not None
    made = create_claims(db.engine, window.window_id, actor="finance")
    assert made.attachment_claims == 1
    assert create_claims(db.engine, window.window_id, actor="finance").attachment_claims == 0


def test_a_switch_that_cannot_rederive_baselines_is_refused(tmp_path):
    db = TinyDb(tmp_path / "refuse.db")
    fid = many_needs(db)
    run_cycle(db.engine, TF, MODEL, T0, actor="t")
    set_status(db.engine, fid, "attached", actor="c", reason="WORK_STARTED", on=T0)
    body = TF.model_dump(mode="json")
    body["version"] = "1.1"
    body["measures"]["crime_asb_6m"]["window_days"] = 90
    changed = Ruleset.model_validate(body)
    with pytest.raises(ConflictError, match=r"measure crime_asb_6m: window_days 182 .* 90 now"):
        switch_ruleset(db.engine, changed, MODEL, TF, actor="admin:a", reason="EDIT")
    with pytest.raises(ConflictError, match="already the active ruleset"):
        switch_ruleset(db.engine, TF, MODEL, TF, actor="admin:a", reason="SAME")
    assert ruleset_switches(db.engine) == [] and active_ruleset(db.engine, TF) is TF
    # a title-only edit keeps every measure: accepted, then back again
    body = TF.model_dump(mode="json")
    body["version"] = "1.2"
    body["title"] = "Troubled Families Phase 2, our outcome plan"
    switch_ruleset(db.engine, Ruleset.model_validate(body), MODEL, TF, actor="a:a", reason="EDIT")
    switch_ruleset(db.engine, TF, MODEL, TF, actor="a:a", reason="BACK")
    assert [s.switch_id for s in ruleset_switches(db.engine)] == [2, 1]
    assert active_ruleset(db.engine, SF).sha256() == TF.sha256()
