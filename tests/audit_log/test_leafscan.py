"""The compiled leaf scan (audit_log/_leafscan.c) against the Python check it speeds up.

The scan may refuse a good row (the Python check then decides) but must never
accept a row whose hash, index or indexed columns differ from its leaf bytes:
every negative case here is a row ``_check_row`` refuses, and the property
tests check "scan accepts => _check_row accepts" over random corruptions.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log._entries import Entry, entry_columns, leaf_bytes
from audit_log._leafscan import leaf_hashes, node_hashes, scan
from audit_log._log import _check_row
from audit_log._merkle import leaf_hash
from audit_log._store import SCAN_COLUMNS
from tests.audit_log import _reference as ref

from ._factories import KINDS, NEW_KINDS, T0, make_entry

LOGGED = datetime(2026, 3, 2, 12, 0, 0, 123456, tzinfo=UTC)


def row_for(index: int, entry: Entry, logged_at: datetime = LOGGED) -> tuple[Any, ...]:
    """The row the log stores for ``entry`` at ``index``, in SCAN_COLUMNS order."""
    data = leaf_bytes(index, logged_at, entry)
    columns = entry_columns(entry)
    row = {"idx": index, "leaf_data": data, "leaf_hash": leaf_hash(data), **columns}
    return tuple(row[name] for name in SCAN_COLUMNS)


def accepts(row: tuple[Any, ...], index: int) -> bool:
    out = bytearray()
    accepted = scan([row], 0, index, out)
    assert len(out) == 32 * accepted
    if accepted:
        assert bytes(out) == leaf_hash(row[1])
    return accepted == 1


def python_accepts(row: tuple[Any, ...], index: int) -> bool:
    return _check_row(index, dict(zip(SCAN_COLUMNS, row, strict=True))) is None


# -- hashing ---------------------------------------------------------------


def test_leaf_and_node_hashes_match_the_reference() -> None:
    datas = [b"", b"\x00", b"a" * 1000, bytes(range(256))]
    packed = leaf_hashes(datas)
    assert [packed[i * 32 : i * 32 + 32] for i in range(4)] == [ref.ref_leaf(d) for d in datas]
    assert leaf_hashes([]) == b""
    level = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(7))
    pairs = node_hashes(level, 1, 2)
    assert pairs == ref.ref_node(level[64:96], level[96:128]) + ref.ref_node(
        level[128:160], level[160:192]
    )
    assert node_hashes(level, 3, 0) == b""


def test_hashing_refuses_bad_input() -> None:
    with pytest.raises(TypeError, match="leaf 1 is str"):
        leaf_hashes([b"ok", "text"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="outside a level"):
        node_hashes(bytes(64 * 3), 2, 2)
    with pytest.raises(ValueError, match="outside a level"):
        node_hashes(bytes(64), -1, 1)


# -- accepting what the log writes -----------------------------------------


@pytest.mark.parametrize("kind", KINDS + NEW_KINDS)
def test_every_entry_kind_is_accepted(kind: str) -> None:
    for n in range(6):
        row = row_for(n, make_entry(kind, n))
        assert python_accepts(row, n)
        assert accepts(row, n), (kind, n)


def test_optional_fields_absent_or_null_are_accepted() -> None:
    bare = make_entry("ig_access", 1, professional_id=None)  # column falls back to actor_id
    row = row_for(4, bare)
    assert row[SCAN_COLUMNS.index("professional_id")] == bare.actor_id  # type: ignore[union-attr]
    assert accepts(row, 4)
    change = make_entry("professional_change", 2, new_key_sha256=None)
    assert accepts(row_for(9, change), 9)


def test_scan_continues_from_first_and_stops_at_the_first_bad_row() -> None:
    rows = [row_for(10 + n, make_entry("decision", n)) for n in range(5)]
    rows[3] = rows[3][:7] + ("refused" if rows[3][7] == "granted" else "granted",) + rows[3][8:]
    out = bytearray(b"x" * 32)  # hashes are appended after what is there
    assert scan(rows, 1, 11, out) == 2
    assert bytes(out) == b"x" * 32 + leaf_hash(rows[1][1]) + leaf_hash(rows[2][1])
    assert scan(rows, 4, 14, bytearray()) == 1
    assert scan(rows, 5, 15, bytearray()) == 0
    with pytest.raises(IndexError):
        scan(rows, 6, 16, bytearray())


@settings(max_examples=200, deadline=None)
@given(
    when=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    kind=st.sampled_from(KINDS + NEW_KINDS),
)
def test_any_utc_time_is_accepted_with_its_microseconds(when: datetime, kind: str) -> None:
    entry = make_entry(kind, 3, time=when)
    row = row_for(0, entry)
    assert accepts(row, 0)
    at = SCAN_COLUMNS.index("event_time")
    for delta in (-1, 1, 1_000_000, 86_400_000_000):
        assert not accepts(row[:at] + (row[at] + delta,) + row[at + 1 :], 0)


# -- refusing what the log did not write -----------------------------------


def _replace(row: tuple[Any, ...], column: str, value: Any) -> tuple[Any, ...]:
    at = SCAN_COLUMNS.index(column)
    return row[:at] + (value,) + row[at + 1 :]


CORRUPTIONS = {
    "index_renumbered": lambda r: _replace(r, "idx", r[0] + 1),
    "index_as_text": lambda r: _replace(r, "idx", str(r[0])),
    "leaf_bytes_rewritten_hash_kept": lambda r: _replace(
        r, "leaf_data", r[1].replace(b'"time":"2', b'"time":"1')
    ),
    "leaf_data_as_text": lambda r: _replace(r, "leaf_data", r[1].decode()),
    "leaf_hash_flipped": lambda r: _replace(r, "leaf_hash", bytes([r[2][0] ^ 1]) + r[2][1:]),
    "leaf_hash_short": lambda r: _replace(r, "leaf_hash", r[2][:31]),
    "type_changed": lambda r: _replace(r, "type", "approval"),
    "professional_changed": lambda r: _replace(r, "professional_id", "pro_" + "0" * 16),
    "professional_nulled": lambda r: _replace(r, "professional_id", None),
    "family_changed": lambda r: _replace(r, "family_id", "fam_" + "0" * 16),
    "family_nulled": lambda r: _replace(r, "family_id", None),
    "purpose_changed": lambda r: _replace(r, "purpose_code", "RESEARCH"),
    "decision_changed": lambda r: _replace(r, "decision", "refused"),
    "decision_nulled": lambda r: _replace(r, "decision", None),
    "decision_as_bytes": lambda r: _replace(r, "decision", b"granted"),
    "request_changed": lambda r: _replace(r, "request_id", "req_" + "0" * 16),
    "event_time_shifted": lambda r: _replace(r, "event_time", r[9] + 1),
    "event_time_as_text": lambda r: _replace(r, "event_time", str(r[9])),
    "leaf_index_other": lambda r: _replace(
        _replace(r, "leaf_data", r[1].replace(b'"index":5,', b'"index":6,')),
        "leaf_hash",
        leaf_hash(r[1].replace(b'"index":5,', b'"index":6,')),
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_row_is_refused(name: str) -> None:
    row = row_for(5, make_entry("decision", 1, decision="granted"))
    bad = CORRUPTIONS[name](row)
    assert bad != row
    assert not python_accepts(bad, 5)
    assert not accepts(bad, 5)


def test_a_column_of_an_unexpected_type_is_left_to_python() -> None:
    class Text(str):
        pass

    row = row_for(2, make_entry("decision", 2))
    for odd in (
        _replace(row, "type", Text("decision")),
        _replace(row, "event_time", float(row[9])),
    ):
        assert python_accepts(odd, 2)  # equal, so the slow check accepts it ...
        assert not accepts(odd, 2)  # ... but the scan only vouches for exact types


def _forged(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"decision":"granted"', b'"decision":"gr\\u0061nted"'),  # escaped: left to Python
        (b'"decision":"granted"', b'"decision":{"x":1}'),
        (b'"decision":"granted"', b'"decision":"granted","decision":"refused"'),
        (b'"decision":"granted"', b'"decision":true'),
        (b'{"entry":{', b'{"entry": {'),
        (b'"index":5,', b'"index":05,'),
        (b'"index":5,', b'"index":5.0,'),
        (b'"time":"2026-03-02T10:01:00Z"', b'"time":"2026-03-02T10:01:00+00:00"'),
        (b'"time":"2026-03-02T10:01:00Z"', b'"time":"2026-02-30T10:01:00Z"'),
        (b'"time":"2026-03-02T10:01:00Z"', b'"time":"2026-03-02T10:01:00.5Z"'),
    ],
)
def test_leaf_shapes_outside_the_canonical_form_are_refused(old: bytes, new: bytes) -> None:
    entry = make_entry("decision", 1, decision="granted", time=T0 + timedelta(minutes=1))
    row = row_for(5, entry)
    data = _forged(row[1], old, new)
    assert not accepts(_replace(_replace(row, "leaf_data", data), "leaf_hash", leaf_hash(data)), 5)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(KINDS + NEW_KINDS),
    n=st.integers(0, 50),
    column=st.sampled_from(SCAN_COLUMNS[3:]),
    value=st.one_of(
        st.none(),
        st.text(max_size=24),
        st.sampled_from(["decision", "granted", "refused", "SAFEGUARDING", ""]),
        st.integers(-(2**63), 2**63 - 1),
    ),
)
def test_scan_never_accepts_a_row_python_refuses(
    kind: str, n: int, column: str, value: Any
) -> None:
    row = _replace(row_for(n, make_entry(kind, n)), column, value)
    if accepts(row, n):
        assert python_accepts(row, n)
