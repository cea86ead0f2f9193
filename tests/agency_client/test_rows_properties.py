"""Property: any name or address cell either encodes to a clean wire record or is
refused with an error naming the line and the field; plaintext only ever travels
inside ``sealed_identity``, and the seal gives back exactly what the cell held.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import json
import re
import tomllib

from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from nacl.public import Box, PrivateKey, PublicKey

from agency_client import InputError
from agency_client._mapping import AgencyMapping
from agency_client._normalise import NormaliseError, postcode
from agency_client._rows import (
    BadRowPolicy,
    RowContext,
    RowEncoder,
    encode_block_or_stop,
    record_ref,
)
from protocols import TokenisedRecord, default_schema, identity_bytes, open_sealed_identity

from .conftest import EXTRACT_DATE, HEADER, MAPPING, ROWS

FUZZED = ("Forename", "Surname", "FormerSurname", "Address1", "Town", "Postcode")
SEAL_KEY = PrivateKey(hashlib.sha256(b"test seal key").digest())
REF_KEY = hashlib.sha256(b"test record-ref key").digest()
LINE = 2  # the first data row of a CSV, after its header


@functools.cache
def _encoder() -> RowEncoder:
    """One RowEncoder for every example (building it derives keys; do it once)."""
    ctx = RowContext(
        mapping=AgencyMapping.model_validate(tomllib.loads(MAPPING)),
        schema=default_schema(),
        secret=hashlib.sha256(b"test linkage secret").digest(),
        record_ref_key=REF_KEY,
        seal_public_key=bytes(SEAL_KEY.public_key),
        agency_id="school",
        extract_id="0" * 32,
        extract_date=EXTRACT_DATE,
        columns={name: i for i, name in enumerate(HEADER)},
        policy=BadRowPolicy.FAIL,
    )
    return RowEncoder(ctx)


def encode_one(cells: list[str]) -> str:
    """Encode one CSV row as encode_csv would: a record line, or InputError."""
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    result = encode_block_or_stop(_encoder(), LINE, buf.getvalue())
    fatal = [p for p in result.problems if p.action == "failed"]
    if fatal:
        assert result.count == 0 and len(fatal) == 1
        raise InputError("<row>", fatal[0].line, fatal[0].field, fatal[0].problem)
    assert result.problems == [] and result.count == 1
    line = result.data.decode()
    assert line.endswith("\n") and line.count("\n") == 1
    return line[:-1]


_TRICKY = st.sampled_from(list("\"',;\n\r\t -.&/()0123456789ßØÆçéñöüŁŚ中文ʻ\u00a0\u200b\u2028"))
_CHARS = st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n\r\t")
_TEXT = st.text(st.one_of(_CHARS, _TRICKY), max_size=40)
_WORDS = st.lists(st.from_regex(r"[A-Za-z]{2,14}", fullmatch=True), min_size=1, max_size=4).map(
    " ".join
)
_CELL = st.one_of(_TEXT, _WORDS, st.just(""))
_POSTCODE = st.one_of(_TEXT, st.sampled_from(["LS6 2AB", "ls62ab", "SW1A 1AA", "", "ZZ99 3WZ"]))
_LONG_LETTERS = re.compile(r"[^\W\d_]{8,}")


def _sealed_plaintext(blob_b64: str) -> bytes:
    """The unpadded plaintext of a sealed identity (format in protocols/_seal.py)."""
    blob = base64.b64decode(blob_b64)
    padded = Box(SEAL_KEY, PublicKey(blob[1:33])).decrypt(blob[33:])
    return padded[2 : 2 + int.from_bytes(padded[:2], "big")]


def _public_text(record: TokenisedRecord) -> str:
    """Every string value of a record outside sealed_identity and the fixed vocabulary."""
    data = record.model_dump(mode="json", exclude={"sealed_identity", "indicators"})
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, str):
            out.append(node)

    walk(data)
    return "\x00".join(out).lower()


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    forename=_CELL,
    surname=_CELL,
    former=_CELL,
    address1=_CELL,
    town=_CELL,
    postcode_cell=_POSTCODE,
)
@example(
    forename='Zoë "Jo", Ann',
    surname="O'Brien\nKelly",
    former="Montgomery-Smythe",
    address1="Flat 2,\r\n7 Mill Lane",
    town="Kingston upon Thames",
    postcode_cell="ls6 2ab",
)
@example(  # too much identity to seal: refused, naming the field
    forename="Bartholomew " * 12,
    surname="Featherstonehaugh " * 8,
    former="Cholmondeley " * 8,
    address1="The Old Rectory " * 6,
    town="Llanfairpwllgwyngyll " * 4,
    postcode_cell="SW1A 1AA",
)
def test_name_and_address_cells_encode_cleanly_or_fail_by_name(
    forename, surname, former, address1, town, postcode_cell
):
    cells = list(ROWS[0])
    fuzzed = dict(
        zip(FUZZED, (forename, surname, former, address1, town, postcode_cell), strict=True)
    )
    for name, value in fuzzed.items():
        cells[HEADER.index(name)] = value

    try:
        line = encode_one(cells)
    except InputError as exc:
        event(f"refused: {(exc.field or '').split(' ')[0]}")
        assert exc.line == LINE
        assert exc.field is not None
        assert exc.field == "identity" or any(f"(column {c!r})" in exc.field for c in FUZZED)
        assert f"<row>:{LINE}: field {exc.field}: " in str(exc)
        if exc.field.startswith("postcode"):
            try:
                postcode(postcode_cell.strip() or None)
            except NormaliseError:
                pass
            else:
                raise AssertionError(f"a valid postcode {postcode_cell!r} was refused") from exc
        return

    event("encoded")
    record = TokenisedRecord.model_validate_json(line)
    assert record.record_ref == record_ref(REF_KEY, "school", ROWS[0][0])

    public = _public_text(record)
    for value in fuzzed.values():
        for word in _LONG_LETTERS.findall(value):
            assert word.lower() not in public, word

    identity = open_sealed_identity(
        record.sealed_identity, SEAL_KEY, expect_record_ref=record.record_ref
    )
    # the row encoder writes the payload by hand: it must be identity_bytes' exact form
    plaintext = _sealed_plaintext(record.sealed_identity)
    assert plaintext == identity_bytes(json.loads(plaintext))
    assert identity.given_names == (forename.strip() or None)
    assert identity.family_name == (surname.strip() or None)
    assert identity.former_family_names == (former.strip() or None)
    assert identity.address_lines == tuple(a for a in (address1.strip(), town.strip()) if a)
    parsed = postcode(postcode_cell.strip() or None)
    if parsed is not None:
        assert identity.postcode == parsed.unit
        assert record.postcode_district == parsed.outward
