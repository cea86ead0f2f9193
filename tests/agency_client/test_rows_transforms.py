"""Encoding through a mapping's derives, several date formats, local identifiers and any-country
postcodes; and what encode refuses before anything is written."""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import json
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from agency_client._encoder import Encoder, derive_key
from agency_client._errors import ConfigError, ExtractError, InputError
from agency_client._extract import encode_csv, iter_records, verify_extract
from agency_client._keys import (
    load_agency_key,
    load_agency_public_key,
    load_seal_private_key,
    load_seal_public_key,
    load_secret,
)
from agency_client._mapping import AgencyMapping, load_mapping, resolve_columns
from agency_client._privacy import identity_needles, scan_extract
from agency_client._rows import BadRowPolicy, RowContext, RowEncoder, encode_block_or_stop
from agency_client._transforms import SUFFIXES, TITLES
from protocols import LinkageSchema, TokenisedRecord, default_schema, open_sealed_identity

from .conftest import EXTRACT_DATE, in_row_order, write_csv

HEADER = ["Ref", "Client Name", "Address", "Postcode", "DOB", "Gender", "Identifiers", "LA_ID"]
ROWS = [
    [
        "A1",
        "SMITH, Benjamin John",
        "10 High St, Leeds",
        "LS6 2AB",
        "03/04/2012",
        "1",
        "LA:77; NHS: 943 476 5919",
        "la-0077",
    ],
    [
        "A2",
        "O'BRIEN, Mrs Zoë",
        "Flat 2, 7 Mill Lane, Leeds",
        "ls62ab",
        "2016-02-29",
        "2",
        "",
        "LA 0078",
    ],
    ["A3", "KHAN, Mohammed", "22 Park Road", "BD7 1AX", "01-Dec-2010", "9", "NHS:9434765919", ""],
]
MAPPING = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "Ref"
given_names = "given"
family_name = "surname"
date_of_birth = "DOB"
date_formats = ["%d/%m/%Y", "%Y-%m-%d", "%d-%b-%Y"]
sex = "sex_code"
address_lines = ["street", "town"]
postcode = "Postcode"
nhs_number = "nhs"

[identity.identifiers]
local_person_id = "LA_ID"

[[derive]]
name = "surname"
from = "Client Name"
split_name = "family_comma_given"
part = "family"

[[derive]]
name = "given"
from = "Client Name"
split_name = "family_comma_given"
part = "given"

[[derive]]
name = "street"
from = "Address"
split_address = "street"

[[derive]]
name = "town"
from = "Address"
split_address = "town"

[[derive]]
name = "nhs"
from = "Identifiers"
regex = 'NHS:\\s*(\\d{3} ?\\d{3} ?\\d{4})'

[[derive]]
name = "sex_code"
from = "Gender"
map = { "1" = "M", "2" = "F", "9" = "" }
default = ""
"""
# The same people in columns the plain mapping reads directly.
PLAIN_HEADER = ["Ref", "Forename", "Surname", "Street", "Town", "Postcode", "DOB", "Sex", "NHS"]
PLAIN_ROWS = [
    [
        "A1",
        "Benjamin John",
        "SMITH",
        "10 High St",
        "Leeds",
        "LS6 2AB",
        "03/04/2012",
        "M",
        "9434765919",
    ],
    ["A2", "Zoë", "O'BRIEN", "Flat 2, 7 Mill Lane", "Leeds", "ls62ab", "29/02/2016", "F", ""],
    ["A3", "Mohammed", "KHAN", "22 Park Road", "", "BD7 1AX", "01/12/2010", "", "9434765919"],
]
PLAIN_MAPPING = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "Ref"
given_names = "Forename"
family_name = "Surname"
date_of_birth = "DOB"
sex = "Sex"
address_lines = ["Street", "Town"]
postcode = "Postcode"
nhs_number = "NHS"
"""
LOCAL_SCHEMA = LinkageSchema.model_validate(
    {**default_schema().model_dump(), "local_identifiers": ["local_person_id"]}
)
ANY_SCHEMA = LinkageSchema.model_validate(
    {**default_schema().model_dump(), "postcode_format": "any"}
)


@pytest.fixture
def run(keys, tmp_path):
    """Factory: encode rows under a mapping and schema; (summary, extract path)."""

    def encode(rows=ROWS, mapping=MAPPING, schema=LOCAL_SCHEMA, header=HEADER, workers=1, name="x"):
        csv_path = write_csv(tmp_path / f"{name}.csv", rows, header)
        map_path = tmp_path / f"{name}.toml"
        map_path.write_text(mapping, encoding="utf-8")
        out = tmp_path / f"{name}.jsonl"
        summary = encode_csv(
            csv_path,
            load_mapping(map_path),
            schema,
            load_secret(keys["secret"]),
            load_agency_key(keys["agency_key"]),
            load_seal_public_key(keys["seal_pub"]),
            out,
            extract_date=EXTRACT_DATE,
            policy=BadRowPolicy.FAIL,
            workers=workers,
        )
        return summary, out

    return encode


@pytest.mark.parametrize("workers", [1, 2])
def test_derived_columns_round_trip_into_the_sealed_identity(run, keys, workers, monkeypatch):
    monkeypatch.setattr("agency_client._extract.BLOCK_BYTES", 64)  # several blocks
    monkeypatch.setattr("agency_client._extract.SPAWN_AFTER_BLOCKS", 2)
    summary, out = run(workers=workers)
    assert summary.record_count == 3
    info = verify_extract(out, load_agency_public_key(keys["agency_pub"]), schema=LOCAL_SCHEMA)
    assert info.local_tokens == {"local_person_id": 2}
    seal_key = load_seal_private_key(keys["seal_key"])
    opened = []
    for raw in in_row_order(out, keys["agency_key"], ["A1", "A2", "A3"]):
        rec = TokenisedRecord.model_validate(raw)
        opened.append(open_sealed_identity(rec.sealed_identity, seal_key))
    a1, a2, a3 = opened
    assert (a1.family_name, a1.given_names) == ("SMITH", "Benjamin John")
    assert (a2.family_name, a2.given_names) == ("O'BRIEN", "Zoë")  # the title is gone
    assert (a3.family_name, a3.given_names) == ("KHAN", "Mohammed")
    assert a1.address_lines == ("10 High St", "Leeds")
    assert a2.address_lines == ("Flat 2, 7 Mill Lane", "Leeds")
    assert a3.address_lines == ("22 Park Road",)
    assert [p.date_of_birth.isoformat() for p in opened if p.date_of_birth] == [
        "2012-04-03",
        "2016-02-29",
        "2010-12-01",
    ]
    assert [p.sex for p in opened] == ["M", "F", None]
    assert [p.nhs_number for p in opened] == ["9434765919", None, "9434765919"]
    assert a1.local_identifiers == {"local_person_id": "LA0077"}
    assert a3.local_identifiers == {}


def test_derived_columns_encode_as_the_same_columns_read_directly(run, keys):
    _, derived = run()
    plain_schema = LOCAL_SCHEMA  # the same keys: only the mapping differs
    _, plain = run(PLAIN_ROWS, PLAIN_MAPPING, plain_schema, PLAIN_HEADER, name="plain")
    same = ("record_ref", "clk", "address_clk", "exact_tokens", "blocking_keys", "age", "sex")
    ids = ["A1", "A2", "A3"]
    pairs = zip(
        in_row_order(derived, keys["agency_key"], ids),
        in_row_order(plain, keys["agency_key"], ids),
        strict=True,
    )
    assert len(list(iter_records(plain))) == len(ids)
    for a, b in pairs:
        assert {k: a.get(k) for k in same} == {k: b.get(k) for k in same}
        assert "local_tokens" not in b


def test_local_identifier_tokens_are_keyed_per_type(run, keys):
    _, out = run()
    records = in_row_order(out, keys["agency_key"], ["A1", "A2", "A3"])
    secret = load_secret(keys["secret"])
    key = derive_key(secret, LOCAL_SCHEMA.fingerprint(), "local-id:local_person_id")
    # restated slowly: keyed BLAKE2b-192 of the compacted, upper-cased identifier
    expected = base64.b64encode(hashlib.blake2b(b"LA0077", key=key, digest_size=24).digest())
    assert records[0]["local_tokens"] == {"local_person_id": expected.decode()}
    assert records[0]["local_tokens"]["local_person_id"] == Encoder(
        LOCAL_SCHEMA, secret
    ).local_token("local_person_id", "LA0077")
    assert records[1]["local_tokens"]["local_person_id"] != expected.decode()  # LA0078
    assert "local_tokens" not in records[2]  # blank


def test_verify_refuses_local_tokens_the_schema_does_not_declare(run, keys):
    _, out = run()
    other = LinkageSchema.model_validate(
        {**LOCAL_SCHEMA.model_dump(), "local_identifiers": ["soc_sec_id"]}
    )
    records = out.read_text(encoding="utf-8").splitlines()
    header = json.loads(records[0])
    header["schema_fingerprint"] = other.fingerprint()
    relabelled = out.with_name("relabelled.jsonl")
    relabelled.write_text(
        "\n".join([json.dumps(header, separators=(",", ":")), *records[1:]]) + "\n",
        encoding="utf-8",
    )
    # the first record line carrying a local token (the lines are in random order)
    line = 1 + next(i for i, r in enumerate(records) if '"local_tokens"' in r)
    with pytest.raises(
        ExtractError,
        match=rf"relabelled\.jsonl:{line}: field 'local_tokens\."
        r"local_person_id': the schema declares no such local identifier",
    ):
        verify_extract(relabelled, None, schema=other)


def test_local_identifiers_spelt_differently_share_a_token(run, keys):
    rows = [r[:] for r in ROWS]
    rows[1][7] = " LA/0077 "
    _, out = run(rows)
    a, b = in_row_order(out, keys["agency_key"], ["A1", "A2"])
    assert a["local_tokens"] == b["local_tokens"]


def test_local_identifier_not_in_the_schema_is_refused_before_writing(run, tmp_path):
    with pytest.raises(ConfigError, match=r"identity\.identifiers\.local_person_id: the linkage"):
        run(schema=default_schema())
    assert not (tmp_path / "x.jsonl").exists()


def test_a_repeated_system_id_fails_at_encode_naming_the_rows_and_the_id(run, tmp_path):
    rows = [*ROWS, ROWS[0][:], ["A4", *ROWS[1][1:]], ROWS[0][:]]
    with pytest.raises(InputError) as info:
        run(rows)
    message = str(info.value)
    assert "x.csv:5: field system_id (column 'Ref')" in message
    assert "1 system ids appear on more than one row: 'A1' on lines 2, 5 and 7" in message
    assert not (tmp_path / "x.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.jsonl")] == []


def test_a_repeated_derived_system_id_is_named_too(run):
    # the system id is the LA number inside the identifiers column
    mapping = MAPPING.replace('system_id = "Ref"', 'system_id = "la_ref"') + (
        '\n[[derive]]\nname = "la_ref"\nfrom = "LA_ID"\nregex = \'(\\d+)\'\n'
    )
    rows = [r[:] for r in ROWS]
    rows[2][7] = "LA/0077"
    with pytest.raises(
        InputError,
        match=r"x\.csv:4: field system_id \(column 'la_ref'\): "
        r"1 system ids appear on more than one row: '0077' on lines 2 and 4",
    ):
        run(rows, mapping)


def test_a_derive_that_matches_no_row_is_refused_before_writing(run, tmp_path):
    mapping = MAPPING.replace("regex = 'NHS:", "regex = 'CHI:")
    with pytest.raises(ConfigError) as info:
        run(mapping=mapping)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'x.toml'}: derive[4] 'nhs' (regex on 'Identifiers')")
    assert "matches no row of" in message and "e.g. line 2 has a value" in message
    assert not (tmp_path / "x.jsonl").exists()


def test_a_derive_whose_source_is_always_blank_is_refused(run):
    rows = [[*r[:6], "", r[7]] for r in ROWS]
    with pytest.raises(ConfigError, match="its source is blank in every row"):
        run(rows)


def test_a_derive_that_matches_some_rows_encodes(run):
    rows = [r[:] for r in ROWS]
    rows[2][1] = "Mohammed KHAN"  # not "SURNAME, Forename": no name for this row
    summary, out = run(rows)
    assert summary.record_count == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m.replace('from = "Address"', 'from = "Adress"', 1),
            r"x\.csv:1: field Adress: .*x\.toml: derive\[2\]\.from names column 'Adress', "
            r"which is not in the header",
        ),
        (
            lambda m: m.replace('name = "town"', 'name = "Postcode"').replace(
                '"street", "town"', '"street"'
            ),
            r"derive\[3\]\.name: 'Postcode' is already a column of the CSV header",
        ),
        (
            lambda m: m.replace('nhs_number = "nhs"', 'nhs_number = "NHS"'),
            r"identity\.nhs_number names column 'NHS', which is not in the header",
        ),
    ],
)
def test_mapping_columns_missing_from_the_header(run, change, message):
    with pytest.raises(InputError, match=message):
        run(mapping=change(MAPPING))


def test_date_formats_take_the_first_that_parses(run, keys):
    rows = [r[:] for r in ROWS]
    rows[0][4] = "03/04/2012"
    mapping = MAPPING.replace('"%d/%m/%Y", ', '"%d/%m/%Y", "%m/%d/%Y", ')
    _, out = run(rows, mapping)
    first = in_row_order(out, keys["agency_key"], ["A1"])[0]
    _, plain = run(PLAIN_ROWS[:1], PLAIN_MAPPING, LOCAL_SCHEMA, PLAIN_HEADER, name="p")
    assert first["clk"] == next(iter(iter_records(plain)))["clk"]  # 3 April, not 4 March


def test_a_date_in_none_of_the_formats_names_them_all(run):
    rows = [r[:] for r in ROWS]
    rows[1][4] = "29.02.2016"
    with pytest.raises(
        InputError,
        match=r"x\.csv:3: field date_of_birth \(column 'DOB'\): "
        r"date '29\.02\.2016' matches none of the expected formats '%d/%m/%Y'",
    ):
        run(rows)


# --- postcodes of any country --------------------------------------------------------------

FEBRL_HEADER = ["rec_id", "given_name", "surname", "postcode", "suburb", "address_1"]
FEBRL_ROWS = [
    ["rec-0-org", "michaela", "neumann", "4223", "winston hills", "8 stanley street"],
    ["rec-1-org", "courtney", "painter", "2612", "richlands", "12 pinkerton circuit"],
    ["rec-1-dup-0", "courtney", "painter", "2612", "richlands", "12 pinkertoncircuit"],
]
FEBRL_MAPPING = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "rec_id"
given_names = "given_name"
family_name = "surname"
address_lines = ["address_1", "suburb"]
postcode = "postcode"
"""


def test_febrl_australian_postcodes_encode_under_postcode_format_any(run, keys):
    _, out = run(FEBRL_ROWS, FEBRL_MAPPING, ANY_SCHEMA, FEBRL_HEADER)
    records = list(iter_records(out))
    assert all("postcode_district" not in r and r["address_clk"] for r in records)
    seal_key = load_seal_private_key(keys["seal_key"])
    courtney = in_row_order(out, keys["agency_key"], ["rec-1-org"])[0]
    assert open_sealed_identity(courtney["sealed_identity"], seal_key).postcode == "2612"
    with pytest.raises(InputError, match="'4223' is not a valid UK postcode"):
        run(FEBRL_ROWS, FEBRL_MAPPING, default_schema(), FEBRL_HEADER, name="uk")


def test_postcode_format_any_refuses_what_is_not_3_to_10_letters_and_digits(run):
    rows = [r[:] for r in FEBRL_ROWS]
    rows[2][3] = "26-12"
    with pytest.raises(InputError, match=r"x\.csv:4: field postcode .*'26-12' is not 3 to 10"):
        run(rows, FEBRL_MAPPING, ANY_SCHEMA, FEBRL_HEADER)


# --- property: a split name encodes as the same name in two columns ------------------------

_SPLIT_MAPPING = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "Ref"
given_names = "given"
family_name = "family"

[[derive]]
name = "family"
from = "Name"
split_name = "family_comma_given"
part = "family"

[[derive]]
name = "given"
from = "Name"
split_name = "family_comma_given"
part = "given"
"""
_DIRECT_MAPPING = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "Ref"
given_names = "Given"
family_name = "Family"
"""


@functools.cache
def _row_encoder(mapping: str, header: tuple[str, ...]) -> RowEncoder:
    parsed = AgencyMapping.model_validate(tomllib.loads(mapping))
    ctx = RowContext(
        mapping=parsed,
        schema=default_schema(),
        secret=hashlib.sha256(b"test linkage secret").digest(),
        record_ref_key=hashlib.sha256(b"test record-ref key").digest(),
        seal_public_key=bytes(PrivateKey(hashlib.sha256(b"seal").digest()).public_key),
        agency_id="school",
        extract_id="0" * 32,
        extract_date=EXTRACT_DATE,
        columns=resolve_columns(parsed, header, "<row>"),
        policy=BadRowPolicy.FAIL,
    )
    return RowEncoder(ctx)


def _encoded(mapping: str, header: tuple[str, ...], cells: list[str]) -> dict[str, object]:
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    result = encode_block_or_stop(_row_encoder(mapping, header), 2, buf.getvalue())
    assert result.problems == [] and result.count == 1
    record: dict[str, object] = json.loads(result.data)
    del record["sealed_identity"]  # a fresh nonce each time
    return record


_GIVEN_WORD = st.from_regex(r"[A-Z][a-z]{1,9}", fullmatch=True).filter(
    lambda w: w.lower() not in TITLES | SUFFIXES
)
_FAMILY_WORD = st.from_regex(r"[A-Z]{2,10}(-[A-Z]{2,8})?", fullmatch=True).filter(
    lambda w: w.lower() not in TITLES | SUFFIXES
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_GIVEN_WORD, min_size=1, max_size=3), _FAMILY_WORD, st.sampled_from(["", "Mr "]))
def test_a_split_name_encodes_as_the_same_name_in_two_columns(given_words, family, title):
    given_text = " ".join(given_words)
    split = _encoded(_SPLIT_MAPPING, ("Ref", "Name"), ["R1", f"{family}, {title}{given_text}"])
    direct = _encoded(_DIRECT_MAPPING, ("Ref", "Given", "Family"), ["R1", given_text, family])
    assert split == direct


def test_no_plaintext_reaches_an_extract_encoded_through_derives(run, tmp_path):
    _, out = run()
    needles = identity_needles(tmp_path / "x.csv", load_mapping(tmp_path / "x.toml"))
    # the derived values are needles: split names, the NHS number out of free text,
    # dates in each format, the agency's own identifier as written and compacted
    assert {"SMITH", "Benjamin", "John", "O'BRIEN", "Mohammed", "KHAN"} <= needles.names
    assert {"2012-04-03", "2016-02-29", "2010-12-01"} <= needles.dates
    assert {"943 476 5919", "9434765919", "la-0077", "LA0077", "LA 0078"} <= needles.identifiers
    assert scan_extract(out, needles) == set()
