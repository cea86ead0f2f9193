"""Stubs for the compiled Dice kernel (linkage_service/_dice.c); use linkage_service._kernel."""

from typing import Any

def popcounts(filters: Any, out: Any, *, impl: str | None = None) -> None: ...
def dice_pairs(a: Any, b: Any, ia: Any, ib: Any, out: Any, *, impl: str | None = None) -> None: ...
def dice_above(
    a: Any, b: Any, threshold: float, *, impl: str | None = None
) -> tuple[bytearray, bytearray, bytearray]: ...
def dice_all_at_least(filters: Any, rows_a: Any, rows_b: Any, floor: float, /) -> bool: ...
def lsh_signatures(filters: Any, positions: Any, salts: Any, present: Any, out: Any, /) -> None: ...
def block_order(keys: Any, within: Any, rows: Any, out_rows: Any, out_keys: Any, /) -> None: ...
def block_codes(rows: Any, keys: Any, is_new: Any, window: int, n: int, /) -> bytearray: ...
def pair_patterns(
    features: Any, levels: Any, codes: Any, n: int, out: Any, impl: str | None = None, /
) -> None: ...
def patterns_all_at_least(
    features: Any,
    levels: Any,
    probability: Any,
    rows_a: Any,
    rows_b: Any,
    floor: float,
    impl: str | None = None,
    /,
) -> bool: ...
def agglomerate(
    parent: Any,
    groups: dict[int, list[int]],
    i: Any,
    j: Any,
    order: Any,
    refused: Any,
    coheres: Any,
    /,
) -> None: ...
def agglomerate_dice(
    parent: Any,
    groups: dict[int, list[int]],
    i: Any,
    j: Any,
    order: Any,
    refused: Any,
    filters: Any,
    floor: float,
    /,
) -> None: ...
def implementations() -> tuple[str, ...]: ...
