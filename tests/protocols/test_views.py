"""The linkage service's read views: closed, frozen, and the JSON they were given back."""

from __future__ import annotations

import pydantic
import pytest

from protocols import (
    ConditionOutcome,
    CuspRow,
    CycleStats,
    FamilyOutcomes,
    LinkageStatistics,
    Observation,
    PersonView,
    ReportView,
    StatusChangeView,
    WorkListReport,
)

PERSON = {
    "person_id": "per_0001",
    "created_run": 1,
    "retired_run": None,
    "household_id": "hh_0001",
    "records": [
        {
            "record_id": 7,
            "agency_id": "school",
            "record_ref": "r1",
            "extract_id": "e1",
            "active": True,
            "age": 9,
            "sex": "F",
            "postcode_district": "LS6",
            "extract_date": "2026-01-31",
            "indicators": [{"type": "attendance_pct", "value": 81.5, "date": "2026-01-10"}],
        }
    ],
}


def test_a_view_gives_back_exactly_the_json_it_was_given():
    view = PersonView.model_validate(PERSON)
    # "events" is only in a retired person's answer: not set, not written
    assert view.model_dump(mode="json", exclude_unset=True) == PERSON


def test_a_retired_persons_events_are_kept():
    retired = {
        **PERSON,
        "retired_run": 3,
        "events": [{"kind": "person_merge", "to": "per_9", "run_id": 3}],
    }
    assert PersonView.model_validate(retired).model_dump(mode="json", exclude_unset=True) == retired


def test_an_unknown_field_is_refused_and_views_are_frozen():
    with pytest.raises(pydantic.ValidationError, match="nickname"):
        PersonView.model_validate({**PERSON, "nickname": "x"})
    view = PersonView.model_validate(PERSON)
    with pytest.raises(pydantic.ValidationError):
        view.person_id = "per_2"  # type: ignore[misc]


def test_status_change_is_written_with_the_key_from():
    row = {
        "from": None,
        "to": "identified",
        "at": "2026-01-01T00:00:00+00:00",
        "by": "admin:a",
        "reason": "NEW",
    }
    view = StatusChangeView.model_validate(row)
    assert view.from_ is None
    assert view.model_dump(mode="json", by_alias=True) == row


def test_counts_per_agency_must_be_whole_numbers():
    stats = {
        "active_records": 2,
        "active_records_by_agency": {"school": 2},
        "retired_records": 0,
        "persons": 2,
        "households": 1,
        "links": 0,
        "review_candidates": 0,
        "runs": 1,
        "failed_runs": 0,
        "last_run": None,
    }
    assert LinkageStatistics.model_validate(stats).model_dump(mode="json") == stats
    with pytest.raises(pydantic.ValidationError, match="active_records_by_agency"):
        LinkageStatistics.model_validate({**stats, "active_records_by_agency": {"school": "two"}})


def test_an_outcome_result_is_one_of_the_two_kinds():
    base = {
        "problems": {},
        "employment": None,
        "result": "progress",
        "unmet": [],
        "baseline_cycle": 1,
        "latest_cycle": 2,
        "as_at": "2026-06-30",
    }
    assert FamilyOutcomes.model_validate(base).result == "progress"
    with pytest.raises(pydantic.ValidationError, match="result"):
        FamilyOutcomes.model_validate({**base, "result": "paid"})


def test_a_report_is_read_as_the_model_its_tag_names():
    cycle = {
        "id": 3,
        "as_at": "2026-06-30",
        "ruleset": {"name": "sf", "version": "1", "sha256": "a" * 64},
        "model": {"name": "m", "version": "1", "sha256": "b" * 64},
    }
    row = {
        "position": 1,
        "family_id": "fam_a",
        "score": 76,
        "rank": 1,
        "percentile": 99.5,
        "n_problems": 3,
        "problems": ["crime_asb", "domestic_abuse"],
        "top_reasons": ["CHILD_PROTECTION:20"],
        "step": "up",
        "status": "attached",
        "district": "M4",
    }
    body = {"report": "work_list", "cycle": cycle, "problem": None, "eligible": 4, "rows": [row]}
    report = ReportView.model_validate(body).root
    assert isinstance(report, WorkListReport) and report.rows[0].family_id == "fam_a"
    # a column left unset stays out of the JSON, so the answer reads back as it was
    assert report.model_dump(mode="json", exclude_unset=True) == body
    with_points = {**body, "rows": [{**row, "problem_points": 36}]}
    assert ReportView.model_validate(with_points).root.rows[0].problem_points == 36
    with pytest.raises(pydantic.ValidationError, match="does not match any of the expected tags"):
        ReportView.model_validate({**body, "report": "work-list"})
    with pytest.raises(pydantic.ValidationError, match="rows.0.colour"):
        ReportView.model_validate({**body, "rows": [{**row, "colour": "red"}]})
    with pytest.raises(pydantic.ValidationError, match="cycle"):
        ReportView.model_validate({**body, "cycle": {**cycle, "extra": 1}})
    # a figure taken as given stays an int when it was one
    cusp = {
        "family_id": "fam_m",
        "score": 37,
        "n_problems": 1,
        "kind": "unlock",
        "what": "unlock threshold",
        "value": 37,
        "threshold": 40,
        "gap": 3.0,
        "status": "no_status",
        "district": "B13",
    }
    assert CuspRow.model_validate(cusp).model_dump() == cusp
    assert type(CuspRow.model_validate({**cusp, "value": 92.0}).value) is float


def test_keys_that_do_not_apply_are_left_out_not_written_as_null():
    met = ConditionOutcome(
        measure="m",
        compare="fall_pct",
        op=">=",
        value=60,
        sustained_months=0,
        months_since_attachment=6,
        missing_as_zero=False,
        baseline=4.0,
        baseline_cycle=1,
        met=True,
        reason=None,  # only a condition not met has a reason: None is not written
        why_not=None,
        snapshots=[
            # a percentage fall with no value to fall to: null, and written
            Observation(cycle_id=2, as_at="2026-07-01", value=None, fall_pct=None, held=False),
            # a plain value condition's observation has no fall at all: not written
            Observation(cycle_id=3, as_at="2026-10-01", value=1.0, held=True),
        ],
    )
    body = met.model_dump(mode="json", exclude_unset=True)
    assert "reason" not in body and "why_not" not in body and "due_on" not in body
    assert body["snapshots"] == [
        {"cycle_id": 2, "as_at": "2026-07-01", "value": None, "fall_pct": None, "held": False},
        {"cycle_id": 3, "as_at": "2026-10-01", "value": 1.0, "held": True},
    ]
    assert body["value"] == 60 and isinstance(body["value"], int)  # as the ruleset said it
    assert ConditionOutcome.model_validate(body).model_dump(mode="json", exclude_unset=True) == body


def test_a_cycles_counts_are_whole_numbers_under_known_names():
    counts = {
        "cycle_id": 1,
        "as_at": "2026-11-01",
        "families": 2,
        "eligible": 1,
        "above_unlock": 1,
        "step_up": 0,
        "step_down": 0,
        "ruleset": "tf 1.0",
        "ruleset_sha256": "a" * 64,
        "model": "m 1.0",
        "model_sha256": "b" * 64,
        "identified": 1,
        "pending_claim": 0,
    }
    assert CycleStats.model_validate(counts).model_dump(mode="json") == counts
    with pytest.raises(pydantic.ValidationError, match="eligible"):
        CycleStats.model_validate({**counts, "eligible": "one"})
    with pytest.raises(pydantic.ValidationError, match="attested"):
        CycleStats.model_validate({**counts, "attested": 1})
