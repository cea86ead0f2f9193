"""Subject access through the unlock service: what is held, identities sealed to the officer."""

from __future__ import annotations

import csv
import datetime as dt
import json

import pytest
from nacl.signing import SigningKey

from protocols import (
    HeldAssessment,
    HeldFamily,
    HeldIndicator,
    HeldPerson,
    HeldReason,
    HeldRecord,
    SubjectAccessAnswer,
    SubjectAccessReport,
    SubjectHeld,
)
from unlock_service import ConfigError, ReleaseError, open_subject_identities, write_subject_access

from .test_flow import WHY, _entries

QUERY = {"schema_fingerprint": "d" * 64, "clk": "AAAA", "age": 12, "sex": "F"}
WHEN = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def _answer(env, family_id: str, *, extra_blob: bool = False) -> SubjectAccessAnswer:
    """What the linkage service would hold: the family's first member's records."""
    blobs = env.linkage.families[family_id].blobs
    records = tuple(
        HeldRecord(
            agency_id=b.agency_id,
            record_ref=b.record_ref,
            extract_id=b.extract_id,
            extract_type="school_census" if b.agency_id == "school" else "police_incidents",
            extract_date=dt.date(2026, 1, 31),
            received_at=WHEN,
            match=0.97,
            age=12,
            sex="F",
            postcode_district="LS6",
            identifiers=("upn",),
            indicators=(
                HeldIndicator(type="attendance_pct", date=dt.date(2026, 1, 10), value=82.5),
            ),
        )
        for b in blobs[:1]
    )
    held = SubjectHeld(
        searched_at=WHEN,
        persons=(
            HeldPerson(
                person_id="per_" + "a" * 16,
                household_id="hh_" + family_id[4:],
                family_ids=(family_id,),
                match=0.97,
                records=records,
            ),
        ),
        families=(
            HeldFamily(
                family_id=family_id,
                household_id="hh_" + family_id[4:],
                members=3,
                status="identified",
                attached_on=None,
                assessments=(
                    HeldAssessment(
                        cycle_id=1,
                        as_at=dt.date(2026, 2, 1),
                        ruleset="supporting-families 1.0",
                        eligible=True,
                        problems_met=("education",),
                        indicators_met=("persistent_absence",),
                        score=12,
                        step=None,
                        clearance_required=3,
                        reasons=(
                            HeldReason(
                                code="EDU",
                                points=12,
                                title="Education",
                                because=("persistent_absence",),
                            ),
                        ),
                        subject_member=True,
                    ),
                ),
                status_history=(),
                claims=(),
            ),
        ),
    )
    return SubjectAccessAnswer(held=held, blobs=tuple(blobs[: 2 if extra_blob else 1]))


def test_the_officer_gets_what_is_held_and_the_identities_open_only_with_their_key(env):
    pro, ig = env.add_pro(), env.add_pro("ig_officer", 9)
    family = env.add_family()
    env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    env.linkage.subject_answer = _answer(env, family)
    r = env.client(ig).call("POST", "/subject-access", QUERY)
    assert r.status_code == 200, r.text
    report = SubjectAccessReport.model_validate_json(r.content)
    assert report.held == env.linkage.subject_answer.held
    assert [u.family_id for u in report.unlocks] == [family]
    assert report.unlocks[0].professional_id == pro.professional_id
    opened = open_subject_identities(report, ig.key)
    blob = env.linkage.families[family].blobs[0]
    assert [(i.agency_id, i.record_ref) for i in opened.identities] == [
        (blob.agency_id, blob.record_ref)
    ]
    assert opened.identities[0].family_name  # the identity the agency sealed
    with pytest.raises(ReleaseError, match="do not open"):
        open_subject_identities(report, SigningKey.generate())
    access = [e for e in _entries(env) if e.type == "ig_access"][-1]
    assert access.reason_code == "SUBJECT_ACCESS" and access.notes_sha256 == report.query_sha256
    assert access.actor_id == ig.professional_id
    # the identities name the audit entry they were logged under
    assert opened.audit_index == report.audit_index
    assert env.client(pro).call("POST", "/subject-access", QUERY).status_code == 403


def test_blobs_other_than_the_records_held_release_nothing_and_log_nothing(env):
    ig = env.add_pro("ig_officer", 9)
    family = env.add_family()
    env.linkage.subject_answer = _answer(env, family, extra_blob=True)
    before = len(_entries(env))
    r = env.client(ig).call("POST", "/subject-access", QUERY)
    assert r.status_code == 502 and r.json()["reason"] == "BLOBS_MISMATCH"
    assert "sealed_identities" not in r.text
    assert len(_entries(env)) == before


def test_a_query_the_linkage_service_refuses_is_a_client_error_not_a_502(env):
    ig = env.add_pro("ig_officer", 9)
    env.linkage.subject_status = 400
    env.linkage.subject_answer = {"detail": "schema 000… is not one this service accepts"}
    r = env.client(ig).call("POST", "/subject-access", QUERY)
    assert r.status_code == 400 and r.json()["reason"] == "SUBJECT_QUERY_REFUSED"
    assert "schema" in r.json()["detail"]


def test_an_answer_outside_the_contract_is_refused(env):
    ig = env.add_pro("ig_officer", 9)
    family = env.add_family()
    body = json.loads(_answer(env, family).model_dump_json())
    body["held"]["persons"][0]["name"] = "x"  # a field the contract does not have
    env.linkage.subject_answer = body
    r = env.client(ig).call("POST", "/subject-access", QUERY)
    assert r.status_code == 502 and "not a valid SubjectAccessAnswer" in r.json()["detail"]


def test_the_files_to_hand_over_are_private_and_hold_data_and_identities(env, tmp_path):
    pro, ig = env.add_pro(), env.add_pro("ig_officer", 9)
    family = env.add_family()
    env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    env.linkage.subject_answer = _answer(env, family)
    report = SubjectAccessReport.model_validate_json(
        env.client(ig).call("POST", "/subject-access", QUERY).content
    )
    opened = open_subject_identities(report, ig.key)
    out = tmp_path / "sar"
    written = write_subject_access(report, opened, out)
    assert out.stat().st_mode & 0o777 == 0o700
    assert {p.name for p in written} == {
        "subject-access.json",
        "records.csv",
        "indicators.csv",
        "summary.txt",
    }
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    data = json.loads((out / "subject-access.json").read_text())
    record = data["persons"][0]["records"][0]
    assert record["identity"]["family_name"] == opened.identities[0].family_name
    assert record["indicators"][0]["type"] == "attendance_pct"
    assert data["families"][0]["assessments"][0]["reasons"][0]["points"] == 12
    assert data["unlocks"][0]["family_id"] == family
    rows = list(csv.DictReader((out / "records.csv").read_text().splitlines()))
    assert rows[0]["family_name"] == opened.identities[0].family_name
    assert rows[0]["indicators"] == "1"
    summary = (out / "summary.txt").read_text()
    assert f"audit entry {report.audit_index}" in summary and "+12 Education" in summary
    with pytest.raises(ConfigError, match="already exists"):
        write_subject_access(report, opened, out)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(ConfigError, match="chmod 700"):
        write_subject_access(report, opened, loose)
