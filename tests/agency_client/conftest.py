"""Fixtures for agency-client tests: keys, a small CSV and its mapping."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from agency_client._extract import iter_records
from agency_client._keys import (
    generate_agency_key,
    generate_seal_keypair,
    generate_secret,
    load_agency_key,
)
from agency_client._rows import record_ref

HEADER = [
    "PupilID",
    "Forename",
    "Surname",
    "FormerSurname",
    "DOB",
    "Gender",
    "Address1",
    "Town",
    "Postcode",
    "NHS",
    "AttendancePct",
    "TermEnd",
    "Excluded",
]
ROWS = [
    [
        "P001",
        "William",
        "Smith-Jones",
        "",
        "03/04/2012",
        "M",
        "10 High St",
        "Leeds",
        "LS6 2AB",
        "9434765919",
        "86.5",
        "31/07/2026",
        "Y",
    ],
    [
        "P002",
        "Zoë",
        "O'Brien",
        "Kelly",
        "29/02/2016",
        "F",
        "Flat 2, 7 Mill Lane",
        "Leeds",
        "ls62ab",
        "",
        "97",
        "",
        "N",
    ],
    [
        "P003",
        "Mohammed",
        "Khan",
        "",
        "01/12/2010",
        "1",
        "22 Park Road",
        "Bradford",
        "BD7 1AX",
        "",
        "",
        "",
        "",
    ],
]
MAPPING = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "PupilID"
given_names = "Forename"
family_name = "Surname"
former_family_names = "FormerSurname"
date_of_birth = "DOB"
date_format = "%d/%m/%Y"
sex = "Gender"
address_lines = ["Address1", "Town"]
postcode = "Postcode"
nhs_number = "NHS"

[[indicators]]
column = "AttendancePct"
type = "attendance_pct"
kind = "number"
date_column = "TermEnd"

[[indicators]]
column = "Excluded"
type = "permanent_exclusion"
kind = "flag"
"""
EXTRACT_DATE = dt.date(2026, 11, 1)


def in_row_order(
    path: Path, agency_key: Path, system_ids: Iterable[str]
) -> list[dict[str, object]]:
    """An extract's records in the order of the CSV rows with these system ids.

    Extracts are shuffled; the agency finds a row's record by its ref, which it
    derives from the row's system id (``record_ref``), as these tests do. A row
    that was not encoded (skipped) is left out.
    """
    key = load_agency_key(agency_key)
    by_ref = {str(r["record_ref"]): r for r in iter_records(path)}
    refs = (record_ref(key.record_ref_key, key.agency_id, sid) for sid in system_ids)
    return [by_ref[ref] for ref in refs if ref in by_ref]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    """Write a CSV with proper quoting."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A full set of demo keys for agency 'school'."""
    kdir = tmp_path / "keys"
    generate_secret(kdir / "linkage.secret")
    generate_seal_keypair(kdir / "unlock")
    generate_agency_key("school", kdir / "school")
    return {
        "secret": kdir / "linkage.secret",
        "seal_key": kdir / "unlock" / "seal.key",
        "seal_pub": kdir / "unlock" / "seal.pub",
        "agency_key": kdir / "school" / "agency.key",
        "agency_pub": kdir / "school" / "agency.pub",
    }


@pytest.fixture
def school_csv(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Factory: (csv path, mapping path) for given rows (default: three pupils)."""

    def make(rows: list[list[str]] | None = None, mapping: str = MAPPING) -> tuple[Path, Path]:
        csv_path = write_csv(tmp_path / "school.csv", ROWS if rows is None else rows)
        map_path = tmp_path / "school.toml"
        map_path.write_text(mapping, encoding="utf-8")
        return csv_path, map_path

    return make
