"""Columnar record batches: the linkage engine's only view of records.

A :class:`RecordBatch` holds, for ``n`` records, exactly what an extract line
carries outside the sealed identity, as numpy columns: packed filters, keyed
tokens, coarse attributes. It never holds a plaintext identifier (there is none
to hold) and never a sealed identity (the engine has no use for one).

Packing: filter bytes are read as little-endian ``uint64`` words, so filter bit
``i`` is bit ``i % 64`` of word ``i // 64`` (the agency client's bit order).
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SEX_CODES = {"M": 1, "F": 2}
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
    age: npt.NDArray[np.int16]  # whole years at the extract date, -1 when unknown
    sex: npt.NDArray[np.int8]  # 0 unknown, 1 M, 2 F
    district: list[str | None]  # postcode district (outward code) or None
    extract_day: npt.NDArray[np.int32]  # extract date as days since 1970-01-01 (recency)
    dependent_flag: npt.NDArray[np.bool_]  # 16-18 and in education/training (indicator)
    expectant_flag: npt.NDArray[np.bool_]  # expectant parent (indicator)
    exact: dict[str, list[bytes | None]] = field(default_factory=dict)  # type -> token per row
    blocking: dict[str, list[bytes | None]] = field(default_factory=dict)  # name -> token per row

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: npt.NDArray[np.int64]) -> RecordBatch:
        """The rows ``rows`` of this batch, in that order, as a new batch."""
        idx = rows.tolist()
        return RecordBatch(
            ids=self.ids[rows],
            agency=self.agency[rows],
            clk=self.clk[rows],
            address_clk=self.address_clk[rows],
            has_address=self.has_address[rows],
            age=self.age[rows],
            sex=self.sex[rows],
            district=[self.district[i] for i in idx],
            extract_day=self.extract_day[rows],
            dependent_flag=self.dependent_flag[rows],
            expectant_flag=self.expectant_flag[rows],
            exact={k: [v[i] for i in idx] for k, v in self.exact.items()},
            blocking={k: [v[i] for i in idx] for k, v in self.blocking.items()},
        )


def decode_token(value: str) -> bytes:
    """A keyed token from its base64 text (already validated by the wire model)."""
    return binascii.a2b_base64(value)
