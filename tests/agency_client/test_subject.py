"""Subject-access queries: the same encodings an extract row gets, and no plaintext."""

from __future__ import annotations

import base64
import json

import pytest

from agency_client import ConfigError, encode_csv, load_mapping, subject_query
from agency_client._cli import main
from agency_client._keys import load_agency_key, load_seal_public_key, load_secret
from agency_client._schema_file import load_schema
from protocols import SubjectQuery

from .conftest import EXTRACT_DATE, in_row_order

WILLIAM = {
    "given_names": "william",  # different case and date format from the CSV row
    "family_name": "SMITH-JONES",
    "date_of_birth": "2012-04-03",
    "sex": "M",
    "address_lines": ["10 High St", "Leeds"],
    "postcode": "ls6 2ab",
    "nhs_number": "943 476 5919",
}


def _extract_records(keys, school_csv, tmp_path):
    csv_path, map_path = school_csv()
    out = tmp_path / "school.jsonl"
    encode_csv(
        csv_path,
        load_mapping(map_path),
        load_schema(None),
        load_secret(keys["secret"]),
        load_agency_key(keys["agency_key"]),
        load_seal_public_key(keys["seal_pub"]),
        out,
        extract_date=EXTRACT_DATE,
        workers=1,
    )
    # the extract is shuffled: William is the record of his system id's ref
    return in_row_order(out, keys["agency_key"], ["P001", "P002", "P003"])


def test_a_query_carries_the_same_encodings_as_the_extract_row(keys, school_csv, tmp_path):
    records = _extract_records(keys, school_csv, tmp_path)
    william = records[0]
    query = subject_query(
        WILLIAM, load_schema(None), load_secret(keys["secret"]), as_at=EXTRACT_DATE
    )
    assert query.clk == william["clk"]
    assert query.exact_tokens == william["exact_tokens"]
    assert query.blocking_keys == william["blocking_keys"]
    assert (query.age, query.sex) == (william["age"], william["sex"])
    assert query.schema_fingerprint == load_schema(None).fingerprint()
    assert query.clk != records[1]["clk"]


def test_the_query_holds_no_plaintext(keys):
    query = subject_query(
        WILLIAM, load_schema(None), load_secret(keys["secret"]), as_at=EXTRACT_DATE
    )
    # The encodings are base64 of keyed hashes: search their bytes, not their text (a
    # random base64 string lowercased contains "ls6" or "2012" now and then).
    encoded = [query.clk, *query.exact_tokens.values(), *query.blocking_keys.values()]
    rest = query.model_dump(exclude={"clk"})
    rest["exact_tokens"] = sorted(query.exact_tokens)
    rest["blocking_keys"] = sorted(query.blocking_keys)
    text = json.dumps(rest).lower()
    raw = b"".join(base64.b64decode(e) for e in encoded).lower()
    for value in ("william", "smith", "2012", "high st", "ls6", "9434765919", "leeds"):
        assert value not in text
        assert value.encode() not in raw


def test_bad_identities_are_refused(keys):
    secret, schema = load_secret(keys["secret"]), load_schema(None)
    with pytest.raises(ConfigError, match="unknown identity field"):
        subject_query({"name": "x"}, schema, secret)
    with pytest.raises(ConfigError, match="at least a given or a family name"):
        subject_query({"sex": "F"}, schema, secret)
    with pytest.raises(Exception, match="date_of_birth"):
        subject_query({"family_name": "Smith", "date_of_birth": "31/31/2010"}, schema, secret)


def test_cli_reads_a_file_and_flags(keys, tmp_path, capsys):
    ident = tmp_path / "subject.toml"
    ident.write_text('given_names = "William"\nfamily_name = "Smith-Jones"\n')
    out = tmp_path / "query.json"
    rc = main(
        [
            "subject-query",
            "--identity",
            str(ident),
            "--date-of-birth",
            "2012-04-03",
            "--secret",
            str(keys["secret"]),
            "--as-at",
            "2026-11-01",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    query = SubjectQuery.model_validate_json(out.read_text())
    again = subject_query(
        {"given_names": "William", "family_name": "Smith-Jones", "date_of_birth": "2012-04-03"},
        load_schema(None),
        load_secret(keys["secret"]),
        as_at=EXTRACT_DATE,
    )
    assert query == again
    assert "William" not in out.read_text()
    assert json.loads(out.read_text())["format"] == "family-linkage/subject-query/v1"
