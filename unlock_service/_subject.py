"""Subject access: the unlock history in a report, and the IG officer's files.

Service side, :func:`held_unlock` turns a stored unlock request into the wire
model of :class:`protocols.SubjectAccessReport`. Officer side,
:func:`open_subject_identities` opens the report's identities with the
officer's own key (they were sealed to it), and :func:`write_subject_access`
writes what is held about the subject as files to hand over:

* ``subject-access.json``: everything, each record with the identity its
  agency holds;
* ``records.csv``: one row per record (identity, coarse data, match);
* ``indicators.csv``: one row per indicator of each record;
* ``summary.txt``: the same, readable, with what to check before handing over.

The directory is created 0700 and every file 0600, never overwritten: these
files hold identities.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import json
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey
from pydantic import ValidationError

from protocols import (
    HeldUnlock,
    IdentityPayload,
    SecretFileError,
    SubjectAccessReport,
    SubjectIdentities,
    write_private_file,
)

from ._errors import ConfigError, ReleaseError
from ._store import RequestRow

__all__ = [
    "SUBJECT_FILE_FORMAT",
    "held_unlock",
    "open_subject_identities",
    "write_subject_access",
]

SUBJECT_FILE_FORMAT = "family-linkage/subject-access-file/v1"
FILES = ("subject-access.json", "records.csv", "indicators.csv", "summary.txt")
_IDENTITY_COLUMNS = (
    "system_id",
    "given_names",
    "family_name",
    "former_family_names",
    "date_of_birth",
    "sex",
    "address",
    "postcode",
    "nhs_number",
    "ni_number",
    "upn",
)


def _when(micros: int | None) -> dt.datetime | None:
    return None if micros is None else dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC)


def held_unlock(row: RequestRow) -> HeldUnlock:
    """An unlock request as the subject access report lists it."""
    created = _when(row.created_at)
    assert created is not None
    return HeldUnlock(
        request_id=row.request_id,
        professional_id=row.professional_id,
        family_id=row.family_id,
        purpose_code=row.purpose_code,
        status=row.status,
        reason=row.reason_code,
        break_glass=row.break_glass,
        created_at=created,
        decided_at=_when(row.decided_at),
        released_at=_when(row.released_at),
        decision_index=row.decision_index,
    )


def open_subject_identities(report: SubjectAccessReport, key: SigningKey) -> SubjectIdentities:
    """The report's identities, opened with the officer's key; ReleaseError if not theirs."""
    if report.sealed_identities is None:
        return SubjectIdentities(
            query_sha256=report.query_sha256, audit_index=report.audit_index, identities=()
        )
    try:
        raw = SealedBox(key.to_curve25519_private_key()).decrypt(
            base64.b64decode(report.sealed_identities, validate=True)
        )
    except (CryptoError, binascii.Error, ValueError) as exc:
        raise ReleaseError(
            "the subject access identities do not open with this key", "BAD_RELEASE"
        ) from exc
    try:
        opened = SubjectIdentities.model_validate_json(raw)
    except ValidationError as exc:
        raise ReleaseError("the subject access identities are malformed", "BAD_RELEASE") from exc
    if opened.query_sha256 != report.query_sha256 or opened.audit_index != report.audit_index:
        raise ReleaseError(
            f"the identities are from another search (audit entry {opened.audit_index}, "
            f"not {report.audit_index})",
            "BAD_RELEASE",
        )
    held = report.held.record_keys()
    got = [(i.agency_id, i.record_ref) for i in opened.identities]
    if len(set(got)) != len(got) or set(got) != held:
        raise ReleaseError(
            "the identities are not exactly the records the report holds", "BAD_RELEASE"
        )
    return opened


def _identity_json(identity: IdentityPayload) -> dict[str, Any]:
    return identity.model_dump(
        mode="json", exclude={"format", "agency_id", "record_ref"}, exclude_defaults=True
    )


def subject_file(report: SubjectAccessReport, identities: SubjectIdentities) -> dict[str, Any]:
    """The JSON to hand over: the report with each record's identity beside its data."""
    by_record = {(i.agency_id, i.record_ref): i for i in identities.identities}
    persons = []
    for person in report.held.persons:
        body = person.model_dump(mode="json")
        for record in body["records"]:
            identity = by_record[(record["agency_id"], record["record_ref"])]
            record["identity"] = _identity_json(identity)
        persons.append(body)
    return {
        "format": SUBJECT_FILE_FORMAT,
        "query_sha256": report.query_sha256,
        "audit_index": report.audit_index,
        "generated_at": report.generated_at.isoformat(),
        "searched_at": report.held.searched_at.isoformat(),
        "persons": persons,
        "families": [f.model_dump(mode="json") for f in report.held.families],
        "unlocks": [u.model_dump(mode="json") for u in report.unlocks],
    }


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _identity_cells(identity: IdentityPayload) -> list[object]:
    cells: list[object] = []
    for column in _IDENTITY_COLUMNS:
        if column == "address":
            cells.append(", ".join(identity.address_lines))
        else:
            value = getattr(identity, column)
            cells.append("" if value is None else str(value))
    return cells


def _summary(report: SubjectAccessReport, identities: SubjectIdentities) -> str:
    by_record = {(i.agency_id, i.record_ref): i for i in identities.identities}
    held = report.held
    lines = [
        "Subject access: what the family-linkage services hold",
        f"search logged as audit entry {report.audit_index} "
        f"(query SHA-256 {report.query_sha256}), generated {report.generated_at.isoformat()}",
        "",
    ]
    if not held.persons:
        lines.append("Nothing held matches this identity.")
    for n, person in enumerate(held.persons, 1):
        lines.append(
            f"Person {n}: {person.person_id or '(records not linked to a person)'}, "
            f"best match {person.match:.3f}, household {person.household_id or '-'}, "
            f"families {', '.join(person.family_ids) or '-'}"
        )
        for record in person.records:
            identity = by_record[(record.agency_id, record.record_ref)]
            name = " ".join(x for x in (identity.given_names, identity.family_name) if x)
            born = identity.date_of_birth.isoformat() if identity.date_of_birth else "-"
            age = str(record.age) if record.age is not None else record.age_band or "-"
            lines.append(
                f"  {record.agency_id} record {record.record_ref} (their id {identity.system_id}),"
                f" match {record.match:.3f}: {name or '-'}, born {born}; extract of "
                f"{record.extract_date.isoformat()}; age {age}"
                f", sex {record.sex or '-'}, district {record.postcode_district or '-'}; "
                f"{len(record.indicators)} indicators"
                + (
                    f"; retired by extract {record.retired_by} (no longer sent by the agency,"
                    " still held)"
                    if record.retired_by
                    else ""
                )
            )
            for ind in record.indicators:
                lines.append(f"      {ind.date.isoformat()}  {ind.type.value} = {ind.value:g}")
        lines.append("")
    for family in held.families:
        lines.append(
            f"Family {family.family_id} ({family.members} members in the latest assessment), "
            f"status {family.status or '-'}"
            + (f", attached {family.attached_on.isoformat()}" if family.attached_on else "")
        )
        for a in family.assessments:
            member = "" if a.subject_member else " (the subject was not a member then)"
            lines.append(
                f"  cycle {a.cycle_id} as at {a.as_at.isoformat()} ({a.ruleset}): score {a.score}"
                f", {'eligible' if a.eligible else 'not eligible'}, problems "
                f"{', '.join(a.problems_met) or 'none'}{member}"
            )
            for reason in a.reasons:
                because = f" because {', '.join(reason.because)}" if reason.because else ""
                lines.append(f"      {reason.points:+d} {reason.title}{because}")
        for change in family.status_history:
            lines.append(
                f"  status {change.from_status or '-'} -> {change.to_status} on "
                f"{change.at.date().isoformat()} ({change.reason})"
            )
        for claim in family.claims:
            lines.append(
                f"  claim {claim.claim_id}: {claim.kind} {claim.result or ''} window "
                f"{claim.window_id}, £{claim.amount_gbp:,}"
            )
        lines.append("")
    lines.append(f"Unlock requests for these families: {len(report.unlocks)}")
    for u in report.unlocks:
        lines.append(
            f"  {u.created_at.isoformat()} {u.request_id} by {u.professional_id} for "
            f"{u.purpose_code}: {u.status} ({u.reason})"
            + (", break-glass" if u.break_glass else "")
            + (f", released {u.released_at.isoformat()}" if u.released_at else "")
        )
    lines += [
        "",
        "Before handing over: check each record's identity is the subject's (a match below",
        "1.000 may be someone else) and remove records that are not. Family scores, reasons",
        "and claims concern the whole family: consider redacting other members' data.",
    ]
    return "\n".join(lines) + "\n"


def write_subject_access(
    report: SubjectAccessReport, identities: SubjectIdentities, out: Path
) -> list[Path]:
    """Write the files to hand over into ``out`` (0700; each file 0600, never overwritten)."""
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = out.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(
            f"{out} has mode {stat.filemode(mode)}: the subject access files hold identities, "
            f"so the directory must be private (chmod 700 {out})"
        )
    taken = [out / name for name in FILES if (out / name).exists()]
    if taken:
        raise ConfigError(f"{taken[0]} already exists; choose a new --out directory")
    by_record = {(i.agency_id, i.record_ref): i for i in identities.identities}
    records, indicators = [], []
    for person in report.held.persons:
        for r in person.records:
            identity = by_record[(r.agency_id, r.record_ref)]
            records.append(
                [
                    person.person_id or "",
                    r.agency_id,
                    r.record_ref,
                    f"{r.match:.4f}",
                    *_identity_cells(identity),
                    r.age if r.age is not None else r.age_band or "",
                    r.postcode_district or "",
                    r.extract_type,
                    r.extract_date.isoformat(),
                    "; ".join(person.family_ids),
                    len(r.indicators),
                    r.retired_by or "",
                ]
            )
            indicators += [
                [r.agency_id, r.record_ref, i.type.value, i.date.isoformat(), f"{i.value:g}"]
                for i in r.indicators
            ]
    texts = {
        "subject-access.json": json.dumps(
            subject_file(report, identities), indent=2, ensure_ascii=False
        )
        + "\n",
        "records.csv": _csv(
            [
                "person_id",
                "agency_id",
                "record_ref",
                "match",
                *_IDENTITY_COLUMNS,
                "age",
                "postcode_district",
                "extract_type",
                "extract_date",
                "family_ids",
                "indicators",
                "retired_by",
            ],
            records,
        ),
        "indicators.csv": _csv(["agency_id", "record_ref", "type", "date", "value"], indicators),
        "summary.txt": _summary(report, identities),
    }
    written = []
    for name in FILES:
        try:
            write_private_file(out / name, texts[name])
        except SecretFileError as exc:
            raise ConfigError(str(exc)) from exc
        written.append(out / name)
    return written
