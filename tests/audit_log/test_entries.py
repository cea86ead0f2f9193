"""Entry models: only pseudonymous, hashed, coded fields; canonical leaf bytes."""

from __future__ import annotations

import hashlib
import json
import re
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log._entries import (
    Decision,
    Entry,
    entry_columns,
    leaf_bytes,
    leaf_in_file,
    parse_entry,
    parse_leaf,
)
from audit_log._review import CSV_COLUMNS, format_csv, format_jsonl
from audit_log._storage_errors import EntryError
from protocols import canonical_json

from ._factories import KINDS, NEW_KINDS, T0, make_entry

# SHA-256 of leaf_bytes(5, T0, make_entry(kind, 5)) computed from the entries
# module as it was before the unlock-service types were added (commit ac41ce5).
PINNED_LEAF_SHA256 = {
    "unlock_request": "c0dd996bc0ac3192ed38953df856bcc5c7bc561d8b2b8f6c01082643d9df31c5",
    "decision": "cd938c7acf10639dc5f0537b3c0005200743f859a1a540f7f671dd965f6e5fd4",
    "approval": "08b8b74f166deaa61e1d348c30b5da962aa1c5c2cbf8d22c088b33d32444ca8a",
    "break_glass": "4fa769095dcbe463a03bbe32852db8803828ea2b441b3935837150691ff4b2e9",
    "review": "1552696f343ddb08a24a735d3617636a8d247a13feff023c0a0c79992eca1d81",
    "key_rotation": "542677969fd8b7cceb8d295009cccde26829798ae33349e5a9af72dcf6de112d",
    "config_change": "cabdebb6e59aef984d5f1207cdb3420f711bb02e283f2cdb714342d8d8fc1aca",
}


@pytest.mark.parametrize("kind", KINDS + NEW_KINDS)
def test_every_kind_round_trips_through_its_leaf(kind: str) -> None:
    entry = make_entry(kind, 7)
    data = leaf_bytes(42, T0, entry)
    record = parse_leaf(data)
    assert record.index == 42
    assert record.entry == entry
    assert parse_entry(json.dumps(entry.model_dump(mode="json"))) == entry


def test_leaf_bytes_are_canonical_json() -> None:
    data = leaf_bytes(3, T0, make_entry("decision", 1))
    assert (
        data
        == json.dumps(
            json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )
    assert b'"logged_at":"2026-03-02T10:00:00Z"' in data


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("professional_id", "Jane Smith"),
        ("professional_id", "pro_janesmith12345678"),  # not hex
        ("family_id", "fam_1234"),  # too short
        ("purpose_code", "to check on 12 Acacia Avenue"),
        ("reason_code", "born 01/02/2010"),
        ("policy_sha256", "A" * 64),
        ("policy_version", "v1 by John"),
        ("decision", "maybe"),
    ],
)
def test_free_text_and_malformed_values_are_refused(field: str, value: str) -> None:
    data = make_entry("decision", 1).model_dump(mode="json") | {field: value}
    with pytest.raises(EntryError, match=field):
        parse_entry(data)


def test_extra_fields_are_refused() -> None:
    data = make_entry("decision", 1).model_dump(mode="json") | {"name": "Jane Smith"}
    with pytest.raises(EntryError, match="name"):
        parse_entry(data)


def test_unknown_type_is_refused() -> None:
    data = make_entry("decision", 1).model_dump(mode="json") | {"type": "note"}
    with pytest.raises(EntryError):
        parse_entry(data)


def test_non_utc_times_are_refused() -> None:
    with pytest.raises(EntryError, match="UTC"):
        parse_entry(
            make_entry("decision", 1).model_dump(mode="json")
            | {"time": "2026-03-02T10:00:00+01:00"}
        )
    with pytest.raises(EntryError, match="time"):
        parse_entry(
            make_entry("decision", 1).model_dump(mode="json") | {"time": "2026-03-02T10:00:00"}
        )


def test_entries_are_frozen() -> None:
    entry = make_entry("decision", 1)
    assert isinstance(entry, Decision)
    with pytest.raises(ValueError, match="frozen"):
        entry.decision = "refused"  # type: ignore[misc]


@pytest.mark.parametrize(
    "corruption",
    [
        b"not json",
        b'{"v":1}',
        b'{"entry":{},"index":0,"logged_at":"2026-03-02T10:00:00Z","v":1}',
    ],
)
def test_malformed_leaves_raise_entry_error(corruption: bytes) -> None:
    with pytest.raises(EntryError):
        parse_leaf(corruption)


def test_non_canonical_leaf_is_refused() -> None:
    data = leaf_bytes(0, T0, make_entry("decision", 1))
    spaced = json.dumps(json.loads(data), indent=1).encode()
    with pytest.raises(EntryError, match="canonical"):
        parse_leaf(spaced)


def test_columns_name_the_acting_professional() -> None:
    assert entry_columns(make_entry("key_rotation"))["professional_id"].startswith("pro_")
    cols = entry_columns(make_entry("decision", 1))
    assert cols["decision"] == "granted"
    assert cols["event_time"] == int((T0 + timedelta(minutes=1)).timestamp()) * 1_000_000


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(KINDS + NEW_KINDS),
    st.integers(0, 10_000),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_leaf_round_trip_property(kind: str, n: int, when: datetime) -> None:
    entry = make_entry(kind, n, time=when)
    data = leaf_bytes(n, when, entry)
    assert parse_leaf(data).entry == entry
    assert leaf_bytes(n, when, parse_leaf(data).entry) == data


def test_utc_offset_spelling_does_not_change_bytes() -> None:
    zero = timezone(timedelta(0), "GMT")
    a = make_entry("decision", 1, time=T0)
    b = make_entry("decision", 1, time=T0.astimezone(zero))
    assert leaf_bytes(0, T0, a) == leaf_bytes(0, T0, b)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_leaf_parser(data: bytes) -> None:
    try:
        parse_leaf(data)
    except EntryError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "time", "family_id", "x"]), st.text(max_size=20)))
def test_arbitrary_dicts_never_crash_the_entry_parser(data: dict[str, str]) -> None:
    try:
        parse_entry(data)
    except EntryError:
        pass


def test_existing_entry_bytes_are_unchanged() -> None:
    # Adding entry types must not change the leaf bytes of the existing ones:
    # pinned from the seven original kinds before the unlock service types were added.
    digests = {
        kind: hashlib.sha256(leaf_bytes(5, T0, make_entry(kind, 5))).hexdigest() for kind in KINDS
    }
    assert digests == PINNED_LEAF_SHA256


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_export_to_the_existing_csv_columns(kind: str) -> None:
    fields = set(make_entry(kind, 1).model_dump(mode="json"))
    assert fields <= set(CSV_COLUMNS)
    assert len(list(format_csv([leaf_bytes(0, T0, make_entry(kind, 1))]))) >= 1


def test_restriction_refuses_free_text_reason() -> None:
    data = make_entry("restriction", 1).model_dump(mode="json") | {"reason_code": "asked by mum"}
    with pytest.raises(EntryError, match="reason_code"):
        parse_entry(data)


# -- the leaf in an entry file ----------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_canonical_json_never_holds_a_raw_line_break(value: object) -> None:
    # Why one final line ending can be dropped from an entry file: no leaf ends
    # with one, even when its strings hold CR, LF or U+2028 (they are escaped).
    data = canonical_json(value)
    assert b"\n" not in data and b"\r" not in data


@pytest.mark.parametrize("kind", KINDS + NEW_KINDS)
def test_an_exported_line_holds_the_exact_leaf(kind: str) -> None:
    leaf = leaf_bytes(17, T0, make_entry(kind, 17))
    (line,) = format_jsonl([leaf])  # what audit-log entries / export write
    assert line.encode() == leaf + b"\n"
    assert leaf_in_file(line.encode()) == leaf
    assert leaf_in_file(leaf + b"\r\n") == leaf  # the line as a Windows copy saves it
    assert leaf_in_file(leaf) == leaf


@pytest.mark.parametrize(
    ("corruption", "message"),
    [
        (lambda leaf: leaf + b"\n\n", "holds 2 lines"),
        (lambda leaf: leaf + b"\n" + leaf + b"\n", "holds 2 lines"),
        (lambda leaf: b"\n" + leaf, "holds 2 lines"),
        (lambda leaf: leaf + b"\r", "a stray line break"),
        (lambda leaf: leaf + b"\n\r\n", "holds 2 lines"),
    ],
    ids=["blank-line-after", "two-entries", "blank-line-before", "bare-cr", "lf-then-crlf"],
)
def test_an_entry_file_with_another_line_break_is_refused(
    corruption: Callable[[bytes], bytes], message: str
) -> None:
    leaf = leaf_bytes(17, T0, make_entry("decision", 17))
    with pytest.raises(EntryError, match=message):
        leaf_in_file(corruption(leaf))


def test_every_changed_byte_of_an_exported_line_changes_the_leaf() -> None:
    # Exhaustive over one line: replacing any byte, the line ending included,
    # either leaves bytes that are not the leaf or is refused outright.
    leaf = leaf_bytes(17, T0, make_entry("decision", 17))
    line = leaf + b"\n"
    for position in range(len(line)):
        for byte in {0x20, 0x0A, 0x0D, 0x30, line[position] ^ 0x01}:
            if byte == line[position]:
                continue
            changed = line[:position] + bytes([byte]) + line[position + 1 :]
            try:
                assert leaf_in_file(changed) != leaf, (position, byte)
            except EntryError:
                pass


# -- the IG officers' guide ----------------------------------------------------------

GUIDE = Path(__file__).parents[2] / "docs" / "audit-log.md"
COMMON_FIELDS = {"type", "version", "time"}


def _guide_rows() -> dict[str, str]:
    """The guide's entry-type table: type -> the rest of its row."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("\n## Entries: types and fields\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        found = re.fullmatch(r"\| `([a-z_]+)` \|(.*)\|", line)
        if found:
            assert found[1] not in rows, f"{found[1]} has two rows in {GUIDE.name}"
            rows[found[1]] = found[2]
    return rows


def _entry_models() -> dict[str, type]:
    """Every entry type the log accepts (and so any writer can log), by its ``type``."""
    union, _discriminator = typing.get_args(Entry)
    return {model.model_fields["type"].default: model for model in typing.get_args(union)}


def test_the_guide_lists_every_entry_type_the_log_can_hold() -> None:
    rows = _guide_rows()
    models = _entry_models()
    assert sorted(models) == sorted(rows), (
        f"docs/audit-log.md's entry table lists {sorted(rows)}; the log holds {sorted(models)}"
    )


@pytest.mark.parametrize("kind", sorted(_entry_models()))
def test_the_guide_explains_each_field_of_each_entry_type(kind: str) -> None:
    row = _guide_rows().get(kind, "")
    fields = set(_entry_models()[kind].model_fields) - COMMON_FIELDS
    missing = sorted(name for name in fields if f"`{name}`" not in row)
    assert not missing, f"docs/audit-log.md's row for {kind} does not name {missing}"
