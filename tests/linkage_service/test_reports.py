"""Programme reports: exact numbers on a hand-made database, and consistency on a harness one.

The hand-made database has two cycles (2025-06-01 and 2025-12-31) of the
shipped TF Phase 2 ruleset and family-complexity model, with these families
in cycle 2 (expected values in the tests are counted from this table):

=====  ========  ========  ==============================================  ===================
family district eligible  problems (indicators)                           status history
=====  ========  ========  ==============================================  ===================
A      M4        yes       crime_asb (adult_offending), domestic_abuse     identified, attached
                           (domestic_violence, marac); child_protection
B      M4        yes       children_need_help (child_protection,           identified (cycle 2)
                           child_in_need), domestic_abuse (callouts),
                           health (mental_health)
C      B13       yes       education, work_finance; child_in_need          ... in_progress,
                                                                           pending_claim (cycle 2)
D      (none)    no        -                                               -
E      B13       no        -                                               identified, closed
F      B13       yes       crime_asb, education                            identified, attached,
                                                                           claimed, closed,
                                                                           identified (cycle 2)
=====  ========  ========  ==============================================  ===================

A and C are attached on 2025-06-01 (cohort 2025-Q2) with cycle 1 as baseline;
their Family Progress Data measures: A's DV incidents 3 -> 1 and police
call-outs 2 -> none reported; C's rent arrears 500 -> 500 and months of mental
health issues none -> 2. Members' ages (cycle 2): A 34, 9, 3; B 40, 12; C 45, 17.
G has a status but no snapshot in cycle 2. Claims: F (progress on crime_asb,
education, health) and H (employment; two problems), each with an attachment
claim of GBP 1,000 and a result claim of GBP 800.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from linkage_service import _store as store
from linkage_service._errors import ConflictError, NotFound, StorageError
from linkage_service._subject import _family as _subject_family
from linkage_service.programme import _reports as reports
from linkage_service.programme import _store as pstore
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from protocols import Report, ReportView, StatusCounts, StatusRow, WorkListRow

RULESET = default_ruleset()
MODEL = default_model()
T1 = 1_748_736_000_000_000  # cycle 1 created (2025-06-01T00:00Z, microseconds)
T2 = 1_767_139_200_000_000  # cycle 2 created (2025-12-31T00:00Z)
DAY = 86_400_000_000

Problems = dict[str, tuple[Sequence[str], Sequence[str]]]  # problem -> (indicators met, data from)


def _detail(
    problems: Problems,
    reasons: Sequence[tuple[str, int, Sequence[str]]],
    measures: dict[str, float] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"problems": {}, "no_data": [], "domains": {}, "indicators": []}
    for pid in RULESET.problems:
        hits, data_from = problems.get(pid, ((), ()))
        if not hits and not data_from:
            body["no_data"].append(pid)
            body["domains"][pid] = 1
            continue
        met_here = [i for i in hits if i in RULESET.problems[pid].any_of]
        body["problems"][pid] = {
            "met": bool(met_here),
            "indicators": met_here,
            "data_from": list(data_from),
            "met_by": list(data_from) if met_here else [],
            "no_data": False,
        }
        body["domains"][pid] = max((RULESET.indicators[i].severity for i in met_here), default=1)
        body["indicators"] += [i for i in hits if i not in body["indicators"]]
    body["reasons"] = [
        {"code": c, "points": p, "title": c.lower(), "because": list(b)} for c, p, b in reasons
    ]
    body["measures"] = measures or {}
    body["members"] = []
    return body


def _json(report: Report) -> dict[str, Any]:
    """A report as the service answers it in JSON (a column left unset is left out)."""
    return report.model_dump(mode="json", exclude_unset=True)


def _ind(*names: str) -> list[str]:
    return [f"indicator:{n}" for n in names]


# (family, district, eligible, problems, reasons, previous score, step, measures) for cycle 2
CYCLE2: list[tuple[str, str | None, bool, Problems, list[Any], int | None, str | None, Any]] = [
    (
        "fam_a",
        "M4",
        True,
        {
            "crime_asb": (["adult_offending"], ["police"]),
            "domestic_abuse": (["domestic_violence", "marac"], ["police"]),
            "children_need_help": (["child_protection"], ["csc"]),
            "education": ((), ["school"]),
        },
        [
            ("CHILD_PROTECTION", 20, _ind("child_protection")),
            ("DOMESTIC_VIOLENCE", 14, _ind("domestic_violence")),
            ("BREADTH", 12, ["problem:crime_asb", "problem:domestic_abuse"]),
            ("MARAC", 12, _ind("marac")),
            ("ABUSE_AND_PROTECTION", 10, _ind("domestic_violence", "child_protection")),
            ("ADULT_OFFENDING", 8, _ind("adult_offending")),
        ],
        50,
        "up",
        {"crime_asb_6m": 1.0, "domestic_abuse_6m": 2.0, "dv_incidents_12m": 1.0},
    ),
    (
        "fam_b",
        "M4",
        True,
        {
            "children_need_help": (["child_protection", "child_in_need"], ["csc"]),
            "domestic_abuse": (["domestic_callouts"], ["police"]),
            "health": (["mental_health"], ["health"]),
        },
        [
            ("CHILD_PROTECTION", 20, _ind("child_protection")),
            ("CHILD_IN_NEED", 12, _ind("child_in_need")),
            ("BREADTH", 12, ["problem:children_need_help"]),
            ("MENTAL_HEALTH", 6, _ind("mental_health")),
            ("DOMESTIC_CALLOUTS", 5, _ind("domestic_callouts")),
            ("EXPLOITATION_RISK", 18, _ind("exploitation_risk")),
        ],
        None,
        None,
        {},
    ),
    (
        "fam_c",
        "B13",
        True,
        {
            "education": (["persistent_absence"], ["school"]),
            "work_finance": (["out_of_work"], ["dwp"]),
            "children_need_help": (["child_in_need"], ["csc"]),
        },
        [("CHILD_IN_NEED", 12, _ind("child_in_need")), ("BREADTH", 12, [])],
        40,
        "down",
        {
            "out_of_work_adults_6m": 1.0,
            "attendance_min_term": 85.0,
            "months_mental_health_12m": 2.0,
            "rent_arrears_gbp": 500.0,
        },
    ),
    ("fam_d", None, False, {}, [], None, None, {}),
    ("fam_e", "B13", False, {"health": ((), ["health"])}, [], None, None, {}),
    (
        "fam_f",
        "B13",
        True,
        {
            "crime_asb": (["youth_offending"], ["police"]),
            "education": (["not_on_roll"], ["school"]),
        },
        [("YOUTH_OFFENDING", 10, _ind("youth_offending")), ("NOT_ON_ROLL", 10, [])],
        None,
        None,
        {},
    ),
]
# cycle 1: the baselines of A and C
CYCLE1: list[tuple[str, str, Problems, dict[str, float]]] = [
    (
        "fam_a",
        "M4",
        {
            "crime_asb": (["adult_offending"], ["police"]),
            "domestic_abuse": (["domestic_violence"], ["police"]),
        },
        {
            "crime_asb_6m": 5.0,
            "domestic_abuse_6m": 3.0,
            "dv_incidents_12m": 3.0,
            "police_callouts_12m": 2.0,
        },
    ),
    (
        "fam_c",
        "B13",
        {
            "education": (["persistent_absence"], ["school"]),
            "work_finance": (["out_of_work"], ["dwp"]),
        },
        {"out_of_work_adults_6m": 2.0, "attendance_min_term": 80.0, "rent_arrears_gbp": 500.0},
    ),
]
# members' ages in cycle 2 (the others have none linked)
AGES = {"fam_a": [34, 9, 3], "fam_b": [40, 12], "fam_c": [45, 17]}
# (family, status, at); every cycle's own status changes are stamped with its creation time
EVENTS = [
    ("fam_f", "identified", T1 - 400 * DAY),
    ("fam_f", "attached", T1 - 390 * DAY),
    ("fam_f", "claimed", T1 - 100 * DAY),
    ("fam_f", "closed", T1 - 50 * DAY),
    ("fam_a", "identified", T1),
    ("fam_c", "identified", T1),
    ("fam_e", "identified", T1),
    ("fam_g", "identified", T1),
    ("fam_a", "attached", T1 + DAY),
    ("fam_c", "attached", T1 + DAY),
    ("fam_c", "in_progress", T1 + 2 * DAY),
    ("fam_e", "closed", T1 + 3 * DAY),
    ("fam_b", "identified", T2),
    ("fam_f", "identified", T2),
    ("fam_c", "pending_claim", T2),
]


def _insert_cycle(conn: sa.Connection, cycle_id: int, as_at: dt.date, created: int) -> None:
    conn.execute(
        pstore.cycles.insert().values(
            id=cycle_id,
            as_at=as_at,
            ruleset_name=RULESET.name,
            ruleset_version=RULESET.version,
            ruleset_sha256=RULESET.sha256(),
            ruleset=json.dumps(RULESET.model_dump(mode="json")),
            model_name=MODEL.name,
            model_version=MODEL.version,
            model_sha256=MODEL.sha256(),
            model=json.dumps(MODEL.model_dump(mode="json")),
            created_at=created,
            created_by="test",
            stats="{}",
        )
    )


def _snapshot(
    cycle_id: int,
    fid: str,
    district: str | None,
    eligible: bool,
    detail: dict[str, Any],
    rank: int,
    previous: int | None = None,
    step: str | None = None,
) -> dict[str, Any]:
    return {
        "cycle_id": cycle_id,
        "family_id": fid,
        "household_id": "hh_" + fid,
        "district": district,
        "eligible": eligible,
        "n_problems": sum(1 for v in detail["problems"].values() if v["met"]),
        "score": sum(r["points"] for r in detail["reasons"]),
        "rank": rank,
        "percentile": 0.0,
        "previous_score": previous,
        "step": step,
        "clearance_required": 2,
        "detail": json.dumps(detail),
    }


def _claim(fid: str, kind: str, result: str | None, evidence: dict[str, Any]) -> dict[str, Any]:
    return {
        "family_id": fid,
        "kind": kind,
        "result": result,
        "window_id": "2025-H1",
        "cycle_id": 1,
        "amount_gbp": 1000 if kind == "attachment" else 800,
        "evidence": json.dumps(evidence),
        "created_at": T1 + 5 * DAY,
        "created_by": "test",
    }


@pytest.fixture
def db(tmp_path: Path) -> sa.Engine:
    """The hand-made two-cycle database described in the module docstring."""
    engine = store.open_engine(f"sqlite:///{tmp_path / 'reports.db'}")
    with engine.begin() as conn:
        _insert_cycle(conn, 1, dt.date(2025, 6, 1), T1)
        _insert_cycle(conn, 2, dt.date(2025, 12, 31), T2)
        for k, (fid, district, problems, measures) in enumerate(CYCLE1, start=1):
            detail = _detail(problems, [("BREADTH", 8, [])], measures)
            conn.execute(pstore.snapshots.insert(), [_snapshot(1, fid, district, True, detail, k)])
        rows = []
        scores = []
        for fid, district, eligible, problems, reasons, prev, step, measures in CYCLE2:
            detail = _detail(problems, reasons, measures)
            detail["members"] = [
                {"person_id": f"per_{fid}_{k}", "age": age, "sex": "F", "records": []}
                for k, age in enumerate(AGES.get(fid, []))
            ]
            scores.append(sum(r["points"] for r in detail["reasons"]))
            rows.append(_snapshot(2, fid, district, eligible, detail, 0, prev, step))
        for row in rows:
            row["rank"] = 1 + sum(1 for s in scores if s > row["score"])
        conn.execute(pstore.snapshots.insert(), rows)
        conn.execute(
            pstore.status_events.insert(),
            [
                {"family_id": f, "from_status": None, "to_status": s, "at": at, "by": "t"}
                | {"reason": "TEST"}
                for f, s, at in EVENTS
            ],
        )
        last: dict[str, str] = {}
        for f, s, _at in EVENTS:
            last[f] = s
        conn.execute(
            pstore.families.insert(),
            [
                {
                    "family_id": f,
                    "status": s,
                    "identified_cycle": 1,
                    "attached_on": dt.date(2025, 6, 1) if f in ("fam_a", "fam_c") else None,
                    "baseline_cycle": 1 if f in ("fam_a", "fam_c") else None,
                    "updated_at": T2,
                    "updated_by": "t",
                }
                for f, s in last.items()
            ],
        )
        met = {"met": True}
        conn.execute(
            pstore.claims.insert(),
            [
                _claim("fam_f", "attachment", None, {}),
                _claim(
                    "fam_f",
                    "result",
                    "progress",
                    {"problems": {"crime_asb": met, "education": met, "health": met}},
                ),
                _claim("fam_h", "attachment", None, {}),
                _claim(
                    "fam_h",
                    "result",
                    "employment",
                    {"problems": {"work_finance": {"met": False}, "education": {"met": False}}},
                ),
            ],
        )
    return engine


def test_every_report_names_its_cycle_ruleset_and_model(db: sa.Engine) -> None:
    for name, fn in reports.REPORTS.items():
        r = _json(fn(db))
        assert r["report"] == name.replace("-", "_")  # the tag of its model in the union
        assert r["cycle"] == {
            "id": 2,
            "as_at": "2025-12-31",
            "ruleset": {"name": RULESET.name, "version": "1.0", "sha256": RULESET.sha256()},
            "model": {"name": MODEL.name, "version": "1.0", "sha256": MODEL.sha256()},
        }, name
        assert fn(db, 1).cycle.id == 1


def test_no_cycle_and_unknown_cycle_are_errors(tmp_path: Path, db: sa.Engine) -> None:
    empty = store.open_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConflictError, match="no assessment has been run"):
        reports.status_counts(empty)
    with pytest.raises(NotFound, match="no assessment cycle 9"):
        reports.needs_breakdown(db, 9)
    with pytest.raises(NotFound, match="no problem 'gambling'"):
        reports.work_list(db, problem="gambling")
    with pytest.raises(NotFound, match="no indicator 'child_on_plan'"):
        reports.social_care(db, child_protection="child_on_plan")


def _spoil_detail(conn: sa.Connection, key: str, value: Any) -> str:
    """Set ``key`` of a cycle-2 eligible snapshot's stored detail to ``value``; its family."""
    s = pstore.snapshots
    fid = conn.execute(sa.select(s.c.family_id).where(s.c.cycle_id == 2, s.c.eligible)).scalar()
    assert fid is not None
    where = (s.c.cycle_id == 2, s.c.family_id == fid)
    detail = json.loads(conn.execute(sa.select(s.c.detail).where(*where)).scalar_one())
    detail[key] = value
    conn.execute(s.update().where(*where).values(detail=json.dumps(detail)))
    return str(fid)


def test_a_stored_detail_that_does_not_parse_names_the_snapshot_and_field(db: sa.Engine) -> None:
    with db.begin() as conn:
        # a string where a list of problems belongs
        fid = _spoil_detail(conn, "no_data", "education")
    with pytest.raises(StorageError, match=rf"{fid} in cycle 2.*no_data"):
        reports.data_coverage(db)


def test_subject_access_names_a_stored_detail_that_does_not_parse(db: sa.Engine) -> None:
    # the answer itself is checked over the real services (tests/e2e/test_subject_access.py)
    with db.begin() as conn:
        fid = _spoil_detail(conn, "members", [{"person": "p_1"}])  # no person_id
        with pytest.raises(StorageError, match=rf"{fid} in cycle 2.*members"):
            _subject_family(conn, fid, set())


def test_status_counts_by_district_and_period(db: sa.Engine) -> None:
    r = _json(reports.status_counts(db))
    zero = dict.fromkeys(reports.STATUS_COLUMNS, 0)
    assert r["rows"] == [
        {"district": "(unknown)", **zero, "not_eligible": 1, "total": 1},
        {"district": "B13", **zero, "identified": 1, "pending_claim": 1, "closed": 1, "total": 3},
        {"district": "M4", **zero, "identified": 1, "attached": 1, "total": 2},
    ]
    assert r["totals"] == {
        **zero,
        "identified": 2,
        "attached": 1,
        "pending_claim": 1,
        "closed": 1,
        "not_eligible": 1,
        "total": 6,
    }
    assert r["not_in_cycle"] == 1  # fam_g
    # cycle 1's period ends when cycle 2 runs: C was in progress then, not pending a claim
    one = _json(reports.status_counts(db, 1))
    assert one["totals"]["in_progress"] == 1 and one["totals"]["attached"] == 1
    assert one["totals"]["pending_claim"] == 0 and one["totals"]["total"] == 2


def test_needs_breakdown_counts_problems_and_combinations(db: sa.Engine) -> None:
    r = _json(reports.needs_breakdown(db))
    assert r["eligible"] == 4
    per = {x["problems"]: x["families"] for x in r["rows"] if x["kind"] == "problem"}
    assert per == {
        "crime_asb": 2,
        "education": 2,
        "children_need_help": 3,
        "work_finance": 1,
        "domestic_abuse": 2,
        "health": 1,
    }
    combos = {x["problems"]: x["families"] for x in r["rows"] if x["kind"] == "combination"}
    assert combos == {
        "crime_asb+education": 1,  # F
        "crime_asb+children_need_help+domestic_abuse": 1,  # A
        "education+children_need_help+work_finance": 1,  # C
        "children_need_help+domestic_abuse+health": 1,  # B
    }
    assert r["by_number_of_problems"] == {"2": 1, "3": 3}


def test_data_coverage_tells_no_data_from_no_problem(db: sa.Engine) -> None:
    rows = {x["problem"]: x for x in _json(reports.data_coverage(db))["rows"]}
    edu = rows["education"]
    assert (edu["with_problem"], edu["data_no_problem"], edu["no_data"]) == (2, 1, 3)
    assert edu["agencies"] == {"school": 3}
    health = rows["health"]
    assert (health["with_problem"], health["data_no_problem"], health["no_data"]) == (1, 1, 4)
    assert health["no_data_share"] == round(4 / 6, 4)
    for x in rows.values():
        assert x["with_problem"] + x["data_no_problem"] + x["no_data"] == 6


def test_social_care_splits_protection_from_need(db: sa.Engine) -> None:
    r = _json(reports.social_care(db))
    assert r["totals"] == {
        "eligible": 4,
        "open_to_social_care": 3,
        "child_protection": 2,  # A, and B (who also has child in need)
        "child_in_need_only": 1,  # C
        "both": 1,
    }
    assert [x["district"] for x in r["rows"]] == ["B13", "M4"]
    assert r["rows"][0]["child_in_need_only"] == 1 and r["rows"][1]["child_protection"] == 2


def test_work_list_orders_by_score_and_by_problem_points(db: sa.Engine) -> None:
    r = _json(reports.work_list(db))
    assert [x["family_id"] for x in r["rows"]] == ["fam_a", "fam_b", "fam_c", "fam_f"]
    a = r["rows"][0]
    assert (a["score"], a["rank"], a["step"], a["status"], a["district"]) == (
        76,
        1,
        "up",
        "attached",
        "M4",
    )
    assert a["top_reasons"] == ["CHILD_PROTECTION:20", "DOMESTIC_VIOLENCE:14", "BREADTH:12"]
    assert _json(reports.work_list(db, limit=2))["eligible"] == 4
    assert len(_json(reports.work_list(db, limit=2))["rows"]) == 2
    # domestic abuse: A's DV points (14 + 12 MARAC + 10 with protection) outrank B's call-outs
    da = _json(reports.work_list(db, problem="domestic_abuse"))["rows"]
    assert [(x["family_id"], x["problem_points"]) for x in da] == [("fam_a", 36), ("fam_b", 5)]
    health = _json(reports.work_list(db, problem="health"))["rows"]
    assert [(x["family_id"], x["problem_points"]) for x in health] == [("fam_b", 6)]


def test_longest_sums_domain_scores(db: sa.Engine) -> None:
    rows = _json(reports.longest(db))["rows"]
    # A: crime 3 (adult offending) + DA 5 (MARAC) + children 5 (CP) + 3 ones = 16
    totals = {x["family_id"]: x["domain_total"] for x in rows}
    sev = RULESET.indicators
    assert totals["fam_a"] == (
        sev["adult_offending"].severity
        + max(sev["domestic_violence"].severity, sev["marac"].severity)
        + sev["child_protection"].severity
        + 3
    )
    assert [x["position"] for x in rows] == [1, 2, 3, 4]
    assert [x["domain_total"] for x in rows] == sorted(totals.values(), reverse=True)
    assert _json(reports.longest(db, limit=1))["rows"][0]["family_id"] == rows[0]["family_id"]


def test_score_distribution_counts_the_work_lists_scores(db: sa.Engine) -> None:
    r = _json(reports.score_distribution(db))
    work = _json(reports.work_list(db))["rows"]
    expanded = sorted(x["score"] for x in r["rows"] for _ in range(x["families"]))
    assert expanded == sorted(x["score"] for x in work)
    assert r["eligible"] == len(work)
    threshold = r["unlock_threshold"]
    assert r["at_or_above_unlock"] == sum(1 for x in work if x["score"] >= threshold)
    assert all(x["at_or_above_unlock"] == (x["score"] >= threshold) for x in r["rows"])
    assert [x["score"] for x in r["rows"]] == sorted({x["score"] for x in r["rows"]})


def test_score_distribution_counts_eligible_families_per_district(db: sa.Engine) -> None:
    r = _json(reports.score_distribution(db))
    work = _json(reports.work_list(db))["rows"]
    from collections import Counter

    assert r["by_district"] == dict(Counter(x["district"] for x in work))


def test_per_cycle_reports_are_computed_once_and_handed_out_as_copies(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = reports.needs_breakdown(db)
    calls: list[int] = []
    real = reports._each_snapshot

    def counting(conn: Any, cycle_id: int, **kw: Any) -> Any:
        calls.append(cycle_id)
        return real(conn, cycle_id, **kw)

    monkeypatch.setattr(reports, "_each_snapshot", counting)
    again = reports.needs_breakdown(db)
    assert again == first and calls == []  # kept: the cycle's snapshots never change
    again.rows.clear()  # a caller's change does not reach the kept answer
    assert reports.needs_breakdown(db) == first and first.rows
    older = reports.needs_breakdown(db, 1)  # another cycle is computed for itself
    assert calls == [1] and older.cycle.id == 1
    reports.work_list(db)  # a report that reads statuses is never kept
    assert len(calls) == 2


def test_previously_worked_finds_families_back_after_a_claim(db: sa.Engine) -> None:
    rows = _json(reports.previously_worked(db))["rows"]
    assert len(rows) == 1  # E was closed but is not eligible now
    f = rows[0]
    assert f["family_id"] == "fam_f" and f["status"] == "identified"
    assert f["earlier_statuses"] == ["identified", "attached", "claimed", "closed"]
    assert f["attached_before"] and f["claimed_before"] and f["result_claims"] == 1
    # F was not in cycle 1
    assert _json(reports.previously_worked(db, 1))["rows"] == []


def test_steps_lists_up_then_down(db: sa.Engine) -> None:
    r = _json(reports.steps(db))
    assert (r["step_up"], r["step_down"]) == (1, 1)
    assert [(x["step"], x["family_id"], x["change"]) for x in r["rows"]] == [
        ("up", "fam_a", 26),
        ("down", "fam_c", -16),
    ]


def test_outcomes_from_claims_and_attached_families(db: sa.Engine) -> None:
    r = _json(reports.outcomes_achieved(db))
    rows = {x["problem"]: x for x in r["rows"]}
    assert r["attached_families"] == 2 and r["result_claims"] == {"employment": 1, "progress": 1}
    # A: crime and ASB fell 5 -> 1 (80% >= 60%), 213 days after attachment: met
    assert (rows["crime_asb"]["attached_with_problem"], rows["crime_asb"]["outcome_met"]) == (1, 1)
    # A still has domestic abuse in the last 6 months; C's education needs three terms
    assert rows["domestic_abuse"]["rate"] == rows["education"]["rate"] == 0.0
    assert rows["health"]["rate"] is None
    assert rows["education"]["result_claims_showing_outcome"] == 1
    assert rows["work_finance"]["result_claims_showing_outcome"] == 0
    # A and C: children in need found at cycle 2, after attachment, so measured from
    # there: nothing since to show it turned around (it was once judged by the very
    # snapshot that found it)
    assert (rows["children_need_help"]["attached_with_problem"], rows["children_need_help"][
        "outcome_met"]) == (2, 0)  # fmt: skip
    assert r["most"] == ["crime_asb"]
    assert set(r["least"]) == {"children_need_help", "domestic_abuse", "education", "work_finance"}
    assert r["rows"][0]["problem"] == "crime_asb"


def test_cost_avoidance_saves_at_most_the_difference_per_family_year(db: sa.Engine) -> None:
    r = _json(reports.cost_avoidance(db))
    assert r["families"] == 2 and r["claimed_income_gbp"] == 3600
    # F (progress, 3 problems) and H (employment, 2 problems: the TF minimum) are counted
    assert r["parameters"] == {
        "average_gbp": 7795,
        "multiple_needs_gbp": 76190,
        "multiple_needs_from": 2,
        "years": 1.0,
        "intervention_gbp": 0,
        "saving_per_family_year_gbp": 68395,
    }
    assert r["total_gbp"] == r["gross_gbp"] == 2 * 68395
    assert [(x["result"], x["families"], x["net_gbp"]) for x in r["rows"]] == [
        ("progress", 1, 68395),
        ("employment", 1, 68395),
    ]
    assert "at most GBP 68,395 a year" in r["assumption"]
    r = _json(reports.cost_avoidance(db, multiple_needs_from=3))
    assert (r["families"], r["not_counted"], r["total_gbp"]) == (1, 1, 68395)
    r = _json(reports.cost_avoidance(db, years=0.5, intervention_gbp=10000, average_gbp=8000))
    assert r["gross_gbp"] == round(2 * (76190 - 8000) * 0.5)
    assert r["total_gbp"] == 2 * (34095 - 10000)
    assert "GBP 10,000 of intervention" in r["assumption"]
    with pytest.raises(ConflictError, match="multiple_needs_gbp 5000 is below average_gbp"):
        reports.cost_avoidance(db, multiple_needs_gbp=5000)
    with pytest.raises(ConflictError, match="years 0: expected more than 0"):
        reports.cost_avoidance(db, years=0)


def test_to_csv_flattens_rows_and_carries_provenance(db: sa.Engine) -> None:
    text = reports.to_csv(reports.work_list(db, problem="domestic_abuse"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["family_id"] == "fam_a"
    assert rows[0]["problems"] == "crime_asb;children_need_help;domestic_abuse"
    assert rows[0]["cycle_id"] == "2" and rows[0]["model_sha256"] == MODEL.sha256()
    assert rows[0]["ruleset"] == "troubled-families-phase2 1.0"
    cov = list(csv.DictReader(io.StringIO(reports.to_csv(reports.data_coverage(db)))))
    assert cov[0]["problem"] == "crime_asb" and cov[0]["agencies"] == "police:2"
    for fn in reports.REPORTS.values():
        assert reports.to_csv(fn(db)).count("\n") == len(fn(db).rows) + 1


PROVENANCE = ["cycle_id", "as_at", "ruleset", "ruleset_sha256", "model", "model_sha256"]


def _header(report: Report) -> list[str]:
    return reports.to_csv(report).splitlines()[0].split(",")


def test_csv_columns_are_the_row_models_fields_in_order(db: sa.Engine) -> None:
    for name, fn in reports.REPORTS.items():
        report = fn(db)
        fields = list(reports.row_model(report).model_fields)
        assert _header(report) == [*reports.columns(report), *PROVENANCE], name
        assert reports.columns(report) == [f for f in fields if f != "problem_points"], name
        for row in _json(report)["rows"]:  # the JSON row has the same keys in the same order
            assert list(row) == reports.columns(report), name
    # a report with no rows still says what its columns are
    none = reports.previously_worked(db, 1)
    assert none.rows == [] and _header(none)[:3] == ["family_id", "status", "earlier_statuses"]


def test_problem_points_is_a_column_of_the_one_problem_work_list_only(db: sa.Engine) -> None:
    every = reports.work_list(db)
    assert all("problem_points" not in row for row in _json(every)["rows"])
    assert "problem_points" not in _header(every)
    one = reports.work_list(db, problem="domestic_abuse")
    assert [row["problem_points"] for row in _json(one)["rows"]] == [36, 5]
    header = _header(one)
    assert header[header.index("percentile") + 1] == "problem_points"
    assert list(WorkListRow.model_fields).index("problem_points") == 5  # after percentile


def test_the_status_models_have_a_column_per_status(db: sa.Engine) -> None:
    assert list(StatusRow.model_fields) == ["district", *reports.STATUS_COLUMNS, "total"]
    assert list(StatusCounts.model_fields) == [*reports.STATUS_COLUMNS, "total"]


def test_a_reports_json_reads_back_into_its_own_model(db: sa.Engine) -> None:
    for name, fn in reports.REPORTS.items():
        report = fn(db)
        back = ReportView.model_validate(_json(report)).root
        assert type(back) is type(report) and back == report, name
    for params in ({}, {"problem": "health"}):
        report = reports.work_list(db, **params)
        assert ReportView.model_validate_json(report.model_dump_json(exclude_unset=True)).root == (
            report
        )


# --- on a harness-built database: reports agree with what the cycle stored ------------------


@pytest.fixture(scope="module")
def harness_db(tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    from agency_client._synthetic import PopulationConfig
    from evaluation._harness import ingest_population, load_population
    from linkage_service.programme._assessment import run_cycle

    work = tmp_path_factory.mktemp("reports-harness")
    pop = load_population(150, seed=7, workdir=work / "pop")
    engine = ingest_population(pop, f"sqlite:///{work / 'db.sqlite'}")
    as_at = PopulationConfig(households=1).extract_date
    run_cycle(engine, RULESET, MODEL, as_at, actor="test")
    return engine


def test_reports_agree_with_the_stored_cycle(harness_db: sa.Engine) -> None:
    with harness_db.connect() as conn:
        stats = json.loads(conn.execute(sa.select(pstore.cycles.c.stats)).scalar_one())
        snaps = conn.execute(sa.select(pstore.snapshots)).all()
    status = _json(reports.status_counts(harness_db))["totals"]
    assert status["total"] == stats["families"] and status["identified"] == stats["eligible"]
    assert status["not_eligible"] == stats["families"] - stats["eligible"]
    needs = _json(reports.needs_breakdown(harness_db))
    per = sum(x["families"] for x in needs["rows"] if x["kind"] == "problem")
    assert per == sum(s.n_problems for s in snaps if s.eligible)
    work = _json(reports.work_list(harness_db))["rows"]
    assert len(work) == stats["eligible"] > 0
    assert [x["score"] for x in work] == sorted((x["score"] for x in work), reverse=True)
    cov = _json(reports.data_coverage(harness_db))["rows"]
    for x in cov:
        assert x["with_problem"] + x["data_no_problem"] + x["no_data"] == stats["families"]


def test_run_report_passes_only_the_parameters_a_report_takes(db: sa.Engine) -> None:
    da = _json(reports.run_report(db, "work-list", None, problem="domestic_abuse", limit=None))
    assert [x["family_id"] for x in da["rows"]] == ["fam_a", "fam_b"]
    assert _json(reports.run_report(db, "status", 1, problem=None))["cycle"]["id"] == 1
    with pytest.raises(ConflictError, match="report status takes no problem; it takes: nothing"):
        reports.run_report(db, "status", problem="health")
    with pytest.raises(NotFound, match="no report 'bogus'; reports: status, needs"):
        reports.run_report(db, "bogus")


def test_outcomes_by_the_agency_that_reported_the_need(db: sa.Engine) -> None:
    r = _json(reports.outcomes_achieved(db))
    by = {(x["problem"], x["agency_id"]): x for x in r["by_agency"]}
    assert by[("crime_asb", "police")]["rate"] == 1.0
    assert by[("children_need_help", "csc")] == {
        "problem": "children_need_help",
        "agency_id": "csc",
        "attached_with_problem": 2,
        "outcome_met": 0,  # found at the latest cycle: nothing since to measure
        "rate": 0.0,
    }
    for (problem, _agency), row in by.items():
        overall = next(x for x in r["rows"] if x["problem"] == problem)
        assert row["attached_with_problem"] <= overall["attached_with_problem"]
        assert row["outcome_met"] <= row["attached_with_problem"]


# --- the returns councils file ---------------------------------------------------------------


def _add_family(
    db: sa.Engine,
    fid: str,
    snaps: Sequence[tuple[int, str, bool, Problems, list[Any], dict[str, float]]],
    attached_on: dt.date | None = None,
) -> None:
    """One more family: its snapshots (cycle, district, eligible, ...) and, if attached, status."""
    with db.begin() as conn:
        for cycle_id, district, eligible, problems, reasons, measures in snaps:
            detail = _detail(problems, reasons, measures)
            conn.execute(
                pstore.snapshots.insert(), [_snapshot(cycle_id, fid, district, eligible, detail, 9)]
            )
        if attached_on is not None:
            conn.execute(
                pstore.families.insert().values(
                    family_id=fid,
                    status="attached",
                    identified_cycle=1,
                    attached_on=attached_on,
                    baseline_cycle=snaps[0][0],
                    updated_at=T2,
                    updated_by="t",
                )
            )
            conn.execute(
                pstore.status_events.insert().values(
                    family_id=fid, to_status="attached", at=T2 - DAY, by="t", reason="TEST"
                )
            )


def test_progress_data_return_counts_the_thirteen_measures(db: sa.Engine) -> None:
    r = _json(reports.progress_data(db))
    assert (r["families"], r["measures"]) == (2, 13)  # A and C, the 13 FPD measures
    rows = {x["measure"]: x for x in r["rows"]}
    assert {x["category"] for x in r["rows"]} == {
        "crime",
        "health",
        "housing",
        "employment",
        "education",
    }
    dv = rows["dv_incidents_12m"]
    assert (dv["baseline_with_issue"], dv["now_with_issue"]) == (1, 1)
    assert (dv["baseline_total"], dv["now_total"], dv["improved"]) == (3.0, 1.0, 1)
    calls = rows["police_callouts_12m"]
    assert (calls["baseline_total"], calls["now_reported"], calls["cleared"]) == (2.0, 0, 1)
    assert calls["improved"] == 0  # none reported now is "cleared", not read as 0
    mh = rows["months_mental_health_12m"]
    assert (mh["baseline_reported"], mh["now_with_issue"], mh["new"]) == (0, 1, 1)
    rent = rows["rent_arrears_gbp"]
    assert (rent["unchanged"], rent["baseline_total"], rent["now_total"]) == (1, 500.0, 500.0)
    neet = rows["months_neet_12m"]
    assert neet["baseline_reported"] == neet["now_reported"] == 0
    assert _json(reports.progress_data(db, cohort="2025-Q2"))["families"] == 2
    assert _json(reports.progress_data(db, cohort="2025-Q3"))["families"] == 0
    with pytest.raises(ConflictError, match="cohort '2025-06': expected YYYY-Qn"):
        reports.progress_data(db, cohort="2025-06")


def test_distance_travelled_per_domain(db: sa.Engine) -> None:
    r = _json(reports.distance_travelled(db))
    rows = {x["problem"]: x for x in r["rows"]}
    # A: crime 4 -> 4 (adult offending), DA 4 -> 5 (MARAC), children 1 -> 5 (protection plan)
    # C: education 3 -> 3, work 2 -> 2, children 1 -> 4 (child in need)
    assert rows["crime_asb"]["baseline_mean"] == rows["crime_asb"]["now_mean"] == 2.5
    cnh = rows["children_need_help"]
    assert (cnh["baseline_mean"], cnh["now_mean"], cnh["change"], cnh["worsened"]) == (
        1.0,
        4.5,
        3.5,
        2,
    )
    assert cnh["baseline_scores"] == {"1": 2, "2": 0, "3": 0, "4": 0, "5": 0}
    assert cnh["now_scores"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}
    da = rows["domestic_abuse"]
    assert (da["worsened"], da["unchanged"], da["now_mean"]) == (1, 1, 3.0)
    # family means: A 12/6 -> 17/6, C 9/6 -> 12/6
    assert r["mean_baseline"] == round((12 / 6 + 9 / 6) / 2, 3)
    assert r["mean_now"] == round((17 / 6 + 12 / 6) / 2, 3)
    assert _json(reports.distance_travelled(db, 1))["mean_now"] == r["mean_baseline"]


def test_breakdowns_by_area_age_band_lead_professional_and_status(db: sa.Engine) -> None:
    with db.begin() as conn:
        f = pstore.families
        conn.execute(
            f.update().where(f.c.family_id == "fam_a").values(lead_professional="team_north")
        )
    r = _json(reports.breakdowns(db))
    rows = {(x["dimension"], x["group"]): x for x in r["rows"]}
    # A, B, C, E (closed) and F; D is neither eligible nor has a status
    for dim in reports.BREAKDOWNS:
        assert sum(x["families"] for x in r["rows"] if x["dimension"] == dim) == 5
    m4 = rows[("area", "M4")]
    assert (m4["families"], m4["eligible"], m4["attached"], m4["open"]) == (2, 2, 1, 1)
    assert (m4["mean_score"], m4["mean_domain_change"]) == (74.5, round(5 / 6, 3))
    b13 = rows[("area", "B13")]
    assert (b13["families"], b13["eligible"], b13["pending_claim"], b13["closed"]) == (
        3,
        2,
        1,
        1,
    )
    assert (b13["result_claims"], b13["mean_score"]) == (1, round(44 / 3, 3))  # F's claim
    assert b13["mean_domain_change"] == round(3 / 6, 3)
    bands = {g: x["families"] for (d, g), x in rows.items() if d == "age_band"}
    assert bands == {"0-4": 1, "11-15": 1, "16-18": 1, "(no child)": 2}
    leads = {g: x["families"] for (d, g), x in rows.items() if d == "lead_professional"}
    assert leads == {"team_north": 1, "(none recorded)": 4}
    statuses = {g: x["families"] for (d, g), x in rows.items() if d == "status"}
    assert statuses == {"attached": 1, "identified": 2, "pending_claim": 1, "closed": 1}
    only = _json(reports.breakdowns(db, by="status"))
    assert {x["dimension"] for x in only["rows"]} == {"status"}
    with pytest.raises(ConflictError, match="breakdown by 'ward'"):
        reports.breakdowns(db, by="ward")


def test_report_card_per_cohort(db: sa.Engine) -> None:
    _add_family(
        db,
        "fam_k",
        [(2, "M4", True, {"crime_asb": (["youth_offending"], ["police"])}, [], {})],
        attached_on=dt.date(2025, 12, 31),
    )
    r = _json(reports.report_card(db))
    assert (r["cohorts"], r["families"]) == (2, 3)
    q2, q4 = r["rows"]
    assert (q2["cohort"], q2["families"], q2["attached"], q2["pending_claim"]) == (
        "2025-Q2",
        2,
        1,
        1,
    )
    assert (q2["with_result"], q2["result_rate"], q2["result_claims"]) == (1, 0.5, 0)
    assert (q2["domain_mean_baseline"], q2["domain_mean_now"]) == (
        round((12 / 6 + 9 / 6) / 2, 3),
        round((17 / 6 + 12 / 6) / 2, 3),
    )
    # A's DV improved and call-outs cleared; C's rent arrears unchanged
    assert (q2["fpd_issues_at_baseline"], q2["fpd_improved_or_cleared"]) == (3, 2)
    assert q2["fpd_improved_share"] == round(2 / 3, 4)
    assert (q4["cohort"], q4["families"], q4["attached"], q4["fpd_improved_share"]) == (
        "2025-Q4",
        1,
        1,
        None,
    )


def test_forecast_projects_latest_values_to_a_claim_window(db: sa.Engine) -> None:
    # K: attached 2025-10-01 with offending 10 at baseline, 2 now (an 80% fall), but only
    # 91 days after attachment at cycle 2: the crime outcome needs 182
    crime = {"crime_asb": (["youth_offending"], ["police"])}
    _add_family(
        db,
        "fam_k",
        [
            (1, "M4", True, crime, [], {"crime_asb_6m": 10.0}),
            (2, "M4", True, crime, [], {"crime_asb_6m": 2.0}),
        ],
        attached_on=dt.date(2025, 10, 1),
    )
    r = _json(reports.forecast(db))
    assert r["parameters"] == {"cadence_days": 213, "horizon_cycles": 8}  # 06-01 -> 12-31
    rows = {x["family_id"]: x for x in r["rows"]}
    k = rows["fam_k"]
    assert (k["forecast"], k["forecast_as_at"], k["claim_window"], k["cycles_ahead"]) == (
        "progress",
        "2026-08-01",
        "2026-H2",
        1,
    )
    assert k["cohort"] == "2025-Q4" and k["unmet"] == []
    # A still has domestic abuse reported (2 in 6 months): no result if nothing changes
    a = rows["fam_a"]
    assert a["forecast"] == "not_on_track" and a["claim_window"] is None
    assert "domestic_abuse" in a["unmet"] and "crime_asb" not in a["unmet"]
    assert rows["fam_c"]["forecast"] == "not_on_track"  # attendance 85% < 90%
    assert [x["family_id"] for x in r["rows"]][0] == "fam_k"
    assert (r["on_track"], r["not_on_track"]) == (1, 2)
    assert r["by_window"] == [
        {
            "window_id": "2025-H2",
            "attachment_claims": 3,
            "result_claims": 0,
            "progress": 0,
            "employment": 0,
            "amount_gbp": 3000,
        },
        {
            "window_id": "2026-H2",
            "attachment_claims": 0,
            "result_claims": 1,
            "progress": 1,
            "employment": 0,
            "amount_gbp": 800,
        },
    ]
    # quarterly reviews: 2026-04-01 is 182 days after attachment, in the first half
    k = {x["family_id"]: x for x in _json(reports.forecast(db, cadence_days=91))["rows"]}["fam_k"]
    assert (k["forecast_as_at"], k["claim_window"]) == ("2026-04-01", "2026-H1")
    # a horizon too short to get there
    short = _json(reports.forecast(db, cadence_days=30, horizon_cycles=2))["rows"]
    assert {x["family_id"]: x for x in short}["fam_k"]["forecast"] == "not_on_track"
    with pytest.raises(ConflictError, match="horizon_cycles 30"):
        reports.forecast(db, horizon_cycles=30)


def test_on_the_cusp_of_unlock_eligibility_and_an_indicator(db: sa.Engine) -> None:
    _add_family(
        db,
        "fam_m",
        [
            (
                2,
                "B13",
                False,
                {"work_finance": (["out_of_work"], ["dwp"])},
                [("OUT_OF_WORK", 37, _ind("out_of_work"))],
                {"attendance_min_12m": 92.0, "rent_arrears_gbp": 0.0},
            )
        ],
    )
    r = _json(reports.on_the_cusp(db))
    assert r["thresholds"] == {"unlock": 40, "min_problems": 2}
    assert [(x["family_id"], x["kind"], x["what"], x["value"], x["gap"]) for x in r["rows"]] == [
        ("fam_m", "unlock", "unlock threshold", 37, 3),
        ("fam_m", "eligibility", "problems", 1, 1),
        ("fam_m", "indicator", "persistent_absence", 92.0, 2.0),
    ]
    assert r["by_kind"] == {"unlock": 1, "eligibility": 1, "indicator": 1}
    # a 2% margin: attendance must be within 1.8 points of 90; 20 points below unlock: C and F
    wide = _json(reports.on_the_cusp(db, unlock_margin=20, margin_pct=2))
    assert [(x["family_id"], x["gap"]) for x in wide["rows"] if x["kind"] == "unlock"] == [
        ("fam_m", 3),
        ("fam_c", 16),
        ("fam_f", 20),
    ]
    assert wide["by_kind"]["indicator"] == 0


def test_every_returns_report_exports_csv(db: sa.Engine) -> None:
    for name in ("progress-data", "distance-travelled", "breakdowns", "report-card", "forecast"):
        report = reports.run_report(db, name)
        rows = list(csv.DictReader(io.StringIO(reports.to_csv(report))))
        assert len(rows) == len(report.rows) > 0, name
        assert rows[0]["cycle_id"] == "2"
    text = reports.to_csv(reports.distance_travelled(db))
    assert "1:2;2:0;3:0;4:0;5:0" in text  # children_need_help at baseline


# --- over HTTP: the route answers the report's JSON ------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_route_answers_the_reports_json_and_names_an_unknown_report(
    db: sa.Engine, tmp_path: Path
) -> None:
    import httpx

    from linkage_service._api import create_app
    from linkage_service._config import Settings

    from ._factories import auth, write_tokens

    settings = Settings(
        database_url=str(db.url),
        token_file=write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://linkage") as client:
            headers = auth("analyst")
            for name, params in (("work-list", {}), ("work-list", {"problem": "health"})):
                r = await client.get(f"/reports/{name}", params=params, headers=headers)
                assert r.status_code == 200, r.text
                assert r.json() == _json(reports.run_report(db, name, **params))
            # the column of the one-problem list is left out of the every-family list
            every = (await client.get("/reports/work-list", headers=headers)).json()
            assert every["rows"] and all("problem_points" not in row for row in every["rows"])
            r = await client.get("/reports/cusp", params={"format": "csv"}, headers=headers)
            assert r.text == reports.to_csv(reports.on_the_cusp(db))
            r = await client.get("/reports/bogus", headers=headers)
            assert r.status_code == 404
            assert r.json()["detail"] == (
                f"no report 'bogus'; reports: {', '.join(reports.REPORTS)}"
            )
