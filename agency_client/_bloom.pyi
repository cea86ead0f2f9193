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

class KeyedTokens:
    def __init__(self, keys: Sequence[tuple[bytes, int]]) -> None: ...
    def encode(self, values: Sequence[str | None]) -> list[str | None]: ...
