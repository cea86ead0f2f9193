"""Stubs for the compiled Bloom-filter kernel (agency_client/_bloom.c); see _encoder."""

from collections.abc import Sequence

BIGRAMS: int
POSITIONAL_UNIGRAMS: int
EXACT: int
DATE_PARTS: int
MAX_BITS_PER_FEATURE: int

class FilterKernel:
    def __init__(
        self,
        length_bits: int,
        fields: Sequence[tuple[bytes, int, int]],
        cache_limit: int = 65536,
    ) -> None: ...
    def encode(self, values: Sequence[str | Sequence[str] | None]) -> bytes: ...
    def positions(self, field: int, feature: str) -> list[int]: ...
    @property
    def cache_entries(self) -> int: ...
    @property
    def value_entries(self) -> int: ...

class KeyedTokens:
    def __init__(self, keys: Sequence[tuple[bytes, int]]) -> None: ...
    def encode(self, values: Sequence[str | None]) -> list[str | None]: ...

class RecordKernel:
    def __init__(
        self,
        person: FilterKernel,
        person_features: Sequence[int],
        address: FilterKernel,
        address_features: Sequence[int],
        exact: KeyedTokens,
        exact_names: Sequence[str],
        blocking: KeyedTokens,
        blocking_names: Sequence[str],
        blocking_parts: Sequence[Sequence[int]],
        *,
        person_fold: bool = False,
        address_fold: bool = False,
    ) -> None: ...
    def encode(
        self,
        features: tuple[str | tuple[str, ...] | None, ...],
        postcode_district: str | None,
        exact_values: Sequence[str | None],
    ) -> str: ...
