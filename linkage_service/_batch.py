"""Columnar record batches: the linkage engine's only view of records.

A :class:`RecordBatch` holds, for ``n`` records, what an extract line carries
outside the sealed identity, as numpy columns: packed filters, keyed token
codes, coarse attributes. It never holds a plaintext identifier (there is none
to hold) and never a sealed identity (the engine has no use for one). No column
holds a Python object per record: a million records are a few hundred MB.

Packing: filter bytes are read as little-endian ``uint64`` words, so filter bit
``i`` is bit ``i % 64`` of word ``i // 64`` (the agency client's bit order).

Keyed tokens (exact identifiers, blocking keys) are held as their *code*: the
first eight bytes as a little-endian ``uint64``, forced odd so that 0 means
"missing" (:func:`token_code`). The tokens are keyed hashes, already uniform,
so 64 bits tell two tokens apart as well as the whole token does at any
council's scale (a chance collision among a million tokens is about 1 in 10^7),
and codes are all the engine ever compares. The stored token stays whole in the
database.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SEX_CODES = {"M": 1, "F": 2}
# Key prefix in RecordBatch.exact of an agency-specific identifier type (the
# schema's local_identifiers): "id:local_person_id" beside "nhs_number".
LOCAL_TOKEN_PREFIX = "id:"
U64 = npt.NDArray[np.uint64]


def pack_filters(filters: Sequence[bytes | None], nbytes: int) -> tuple[U64, npt.NDArray[np.bool_]]:
    """Pack equal-length filters into an (n, nbytes/8) uint64 array; missing ones are zero."""
    if nbytes % 8:
        raise ValueError(f"filter length {nbytes} bytes is not a whole number of 64-bit words")
    buf = bytearray(len(filters) * nbytes)
    present = np.zeros(len(filters), dtype=np.bool_)
    for i, f in enumerate(filters):
        if f is None:
            continue
        if len(f) != nbytes:
            raise ValueError(f"filter {i} has {len(f)} bytes, expected {nbytes}")
        buf[i * nbytes : (i + 1) * nbytes] = f
        present[i] = True
    arr = np.frombuffer(bytes(buf), dtype="<u8").reshape(len(filters), nbytes // 8)
    return np.ascontiguousarray(arr, dtype=np.uint64), present


@dataclass
class RecordBatch:
    """``n`` records as columns. Row ``k`` of every column is the same record."""

    ids: npt.NDArray[np.int64]  # stable internal record ids (database keys)
    agency: npt.NDArray[np.int16]  # agency index (the service keeps the names)
    clk: U64  # (n, words) person filters
    address_clk: U64  # (n, words) address filters, zero rows where absent
    has_address: npt.NDArray[np.bool_]
    # whole years at the extract date under 25; from 25 the floor of the record's
    # band (25, 35, 50: protocols.AGE_BANDS); -1 when unknown
    age: npt.NDArray[np.int16]
    sex: npt.NDArray[np.int8]  # 0 unknown, 1 M, 2 F
    district: npt.NDArray[np.str_]  # postcode district (outward code, "U4"), "" when unknown
    extract_day: npt.NDArray[np.int32]  # extract date as days since 1970-01-01 (recency)
    dependent_flag: npt.NDArray[np.bool_]  # 16-18 and in education/training (indicator)
    expectant_flag: npt.NDArray[np.bool_]  # expectant parent (indicator)
    # identifier type -> token code per row, 0 = none: "nhs_number", "ni_number", "upn",
    # and "id:<name>" for each of the schema's local identifiers
    exact: dict[str, U64] = field(default_factory=dict)
    blocking: dict[str, U64] = field(default_factory=dict)  # name -> token code per row, 0 = none

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: npt.NDArray[np.int64]) -> RecordBatch:
        """The rows ``rows`` of this batch, in that order, as a new batch."""
        return RecordBatch(
            ids=self.ids[rows],
            agency=self.agency[rows],
            clk=self.clk[rows],
            address_clk=self.address_clk[rows],
            has_address=self.has_address[rows],
            age=self.age[rows],
            sex=self.sex[rows],
            district=self.district[rows],
            extract_day=self.extract_day[rows],
            dependent_flag=self.dependent_flag[rows],
            expectant_flag=self.expectant_flag[rows],
            exact={k: v[rows] for k, v in self.exact.items()},
            blocking={k: v[rows] for k, v in self.blocking.items()},
        )


def decode_token(value: str) -> bytes:
    """A keyed token from its base64 text (already validated by the wire model)."""
    return binascii.a2b_base64(value)


def token_code(token: bytes) -> int:
    """The code of a keyed token: its first eight bytes, little-endian, forced odd (non-zero)."""
    return int.from_bytes(token[:8], "little") | 1


def token_codes(tokens: Sequence[bytes | None]) -> U64:
    """:func:`token_code` of each token; 0 where it is missing (None or empty)."""
    return np.fromiter(
        (token_code(t) if t else 0 for t in tokens), dtype=np.uint64, count=len(tokens)
    )


def district_column(values: Iterable[str | None]) -> npt.NDArray[np.str_]:
    """Postcode districts as a ``U4`` column ("" where unknown; outward codes are 2-4 chars)."""
    out: npt.NDArray[np.str_] = np.array([v or "" for v in values], dtype="U4")
    return out


class TokenColumns:
    """Keyed-token code columns filled record by record (missing = 0).

    A token type first seen at row ``k`` reads 0 for rows before ``k``. Each
    type's rows and first eight token bytes are appended as they come and turned
    into codes (:func:`token_code`) for all rows at once by :meth:`build`.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[int]] = {}
        self._heads: dict[str, bytearray] = {}  # 8 bytes a row: the token's first 8, padded
        self._empty: dict[str, list[int]] = {}  # positions (in _rows) of empty tokens

    def put(self, row: int, tokens: Mapping[str, bytes]) -> None:
        """Record the tokens of row ``row`` (name -> token bytes)."""
        for name, token in tokens.items():
            rows = self._rows.get(name)
            if rows is None:
                rows = self._rows[name] = []
                self._heads[name] = bytearray()
                self._empty[name] = []
            if not token:
                self._empty[name].append(len(rows))
            rows.append(row)
            self._heads[name] += token[:8].ljust(8, b"\0")

    def build(self, n: int) -> dict[str, U64]:
        """The first ``n`` rows of every column, by name."""
        out: dict[str, U64] = {}
        for name in sorted(self._rows):
            rows = np.asarray(self._rows[name], dtype=np.int64)
            codes = np.frombuffer(self._heads[name], dtype="<u8").astype(np.uint64) | np.uint64(1)
            codes[self._empty[name]] = 0
            # a row given twice keeps its last token (as one assignment after another)
            last = rows.size - 1 - np.unique(rows[::-1], return_index=True)[1]
            keep = last[rows[last] < n]
            col = np.zeros(n, dtype=np.uint64)
            col[rows[keep]] = codes[keep]
            out[name] = col
        return out
