"""Record batches: token codes, token columns, and the two batch builders agreeing."""

from __future__ import annotations

import base64
import datetime as dt
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation._harness import batch_from_lines, concat
from linkage_service._batch import TokenColumns, district_column, token_code, token_codes
from linkage_service._service import BatchBuilder

from ._engine_helpers import Rec, base_bits, batch
from ._factories import make_record, record_line


def test_token_code_known_answers() -> None:
    # the first eight bytes, little-endian, with the low bit set (0 is "missing")
    assert token_code(b"\x00" * 24) == 1
    assert token_code(b"\x01" + b"\x00" * 11) == 1
    assert token_code(b"\x02" + b"\x00" * 11) == 3
    assert token_code(bytes(range(1, 13))) == 0x0807060504030201
    assert token_code(b"\xff" * 12) == 2**64 - 1
    assert token_code(b"abcdefghXXXX") == token_code(b"abcdefghYYYY")


def test_token_codes_mark_missing_with_zero() -> None:
    codes = token_codes([None, b"", b"\x00" * 12, b"abcdefghijkl"])
    assert codes.dtype == np.uint64
    assert codes.tolist() == [0, 0, 1, token_code(b"abcdefghijkl")]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.binary(min_size=8, max_size=24)),
        max_size=40,
    ),
)
def test_token_columns_match_per_record_codes(rows: list[dict[str, bytes]]) -> None:
    cols = TokenColumns()
    for k, tokens in enumerate(rows):
        cols.put(k, tokens)
    built = cols.build(len(rows))
    assert list(built) == sorted({name for r in rows for name in r})
    for name, col in built.items():
        assert col.shape == (len(rows),)
        assert col.tolist() == token_codes([r.get(name) for r in rows]).tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12),
            st.dictionaries(st.sampled_from(["a", "b"]), st.binary(min_size=0, max_size=10)),
        ),
        max_size=30,
    ),
    st.integers(0, 14),
)
def test_token_columns_are_puts_applied_one_after_another(
    puts: list[tuple[int, dict[str, bytes]]], n: int
) -> None:
    # rows in any order and given twice, short and empty tokens, rows past n
    cols = TokenColumns()
    want: dict[str, dict[int, int]] = {}
    for row, tokens in puts:
        cols.put(row, tokens)
        for name, token in tokens.items():
            want.setdefault(name, {})[row] = token_code(token) if token else 0
    built = cols.build(n)
    assert list(built) == sorted(want)
    for name, col in built.items():
        assert col.tolist() == [want[name].get(r, 0) for r in range(n)]


def test_district_column_is_fixed_width_with_empty_for_unknown() -> None:
    col = district_column(["LS6", None, "SW1A"])
    assert col.dtype == np.dtype("U4")
    assert col.tolist() == ["LS6", "", "SW1A"]


def test_take_keeps_token_columns_aligned() -> None:
    recs = [Rec(k, base_bits(k), exact={"upn": bytes([k]) * 24}) for k in range(1, 6)]
    b = batch(recs)
    part = b.take(np.array([4, 0, 2], dtype=np.int64))
    assert part.ids.tolist() == [5, 1, 3]
    assert part.exact["upn"].tolist() == [token_code(bytes([k]) * 24) for k in (5, 1, 3)]
    assert part.exact["nhs_number"].tolist() == [0, 0, 0]


def _b(value: str) -> bytes:
    return base64.b64decode(value)


def test_harness_and_service_builders_agree() -> None:
    rng = random.Random(7)
    recs = [make_record(rng) for _ in range(30)]
    recs[3]["postcode_district"] = None
    recs[4]["exact_tokens"] = {}
    recs[5]["exact_tokens"] = {"upn": base64.b64encode(rng.randbytes(24)).decode()}
    recs[6].pop("blocking_keys")
    harness, refs = batch_from_lines([record_line(r) for r in recs], 0, 1)
    assert refs == [r["record_ref"] for r in recs]
    builder = BatchBuilder(128, 128)
    for k, r in enumerate(recs):
        builder.add(
            record_id=k + 1,
            agency_idx=0,
            clk=_b(r["clk"]),
            address_clk=_b(r["address_clk"]),
            age=r["age"],
            age_band=r.get("age_band"),
            sex=r["sex"],
            district=r.get("postcode_district"),
            extract_date=dt.date(1970, 1, 1),
            exact={n: _b(v) for n, v in r.get("exact_tokens", {}).items()},
            blocking={n: _b(v) for n, v in r.get("blocking_keys", {}).items()},
            indicator_types=(),
        )
    service = builder.build()
    assert (harness.ids == service.ids).all()
    assert (harness.clk == service.clk).all()
    assert (harness.address_clk == service.address_clk).all()
    assert harness.district.tolist() == service.district.tolist()
    assert harness.district[3] == ""
    for table in ("exact", "blocking"):
        h, s = getattr(harness, table), getattr(service, table)
        assert list(h) == list(s)
        for name in h:
            assert h[name].tolist() == s[name].tolist()
    assert service.exact["nhs_number"][4] == 0 and service.exact["upn"][5] != 0
    assert service.blocking[next(iter(service.blocking))][6] == 0


def test_concat_fills_absent_token_types_with_zero() -> None:
    a = batch([Rec(1, base_bits(1), block={"k1": b"x" * 12})])
    b = batch([Rec(2, base_bits(2), block={"k2": b"y" * 12})])
    both = concat([a, b])
    assert both.ids.tolist() == [1, 2]
    assert both.blocking["k1"].tolist() == [token_code(b"x" * 12), 0]
    assert both.blocking["k2"].tolist() == [0, token_code(b"y" * 12)]
