"""The encoder: normalised identities -> keyed Bloom filters, tokens and blocking keys.

Every key is derived with HKDF-SHA256 from the shared linkage secret, bound to the
schema fingerprint and to one purpose (one field of one filter, one identifier
type, one blocking key), so a bit pattern from one field says nothing about
another and a schema change re-keys everything. Features are hashed with keyed
BLAKE2b: there is no unkeyed or double hashing anyone without the secret could
replay. This module never sees a file, never logs, and keeps no identity beyond
bounded caches of feature -> bit-mask that die with the process.

Bit order: filter bit ``i`` is bit ``i % 8`` (least significant first) of byte
``i // 8``; ``numpy.unpackbits(..., bitorder="little")`` reads it back.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocols import (
    AddressFeature,
    BlockingPart,
    ExactIdentifier,
    FilterSpec,
    Hardening,
    LinkageSchema,
    PersonFeature,
    Tokenizer,
)

from ._normalise import Postcode, soundex

KDF_SALT = b"family-linkage/kdf/v1"
_CACHE_LIMIT = 200_000  # per field; bounds memory on huge vocabularies
BLOCKING_TOKEN_BYTES = 12
EXACT_TOKEN_BYTES = 24


def derive_key(secret: bytes, schema_fingerprint: str, purpose: str) -> bytes:
    """HKDF-SHA256 key for one purpose under one schema."""
    info = f"{schema_fingerprint}|{purpose}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=KDF_SALT, info=info).derive(secret)


@dataclass(slots=True)
class NormalisedIdentity:
    """One person's identity after normalisation; ``None``/empty means missing."""

    given: str | None = None
    given_canonical: str | None = None
    middle: tuple[str, ...] = ()
    family: str | None = None
    family_parts: tuple[str, ...] = ()  # parts of current and former family names
    dob: dt.date | None = None
    sex: str | None = None
    address: str | None = None
    house_number: str | None = None
    postcode: Postcode | None = None
    identifiers: dict[ExactIdentifier, str] = field(default_factory=dict)


def _bigrams(value: str) -> list[str]:
    out: list[str] = []
    for word in value.split():
        padded = f"_{word}_"
        out.extend(padded[i : i + 2] for i in range(len(padded) - 1))
    return out


def _positional(value: str) -> list[str]:
    return [f"{i}:{c}" for i, c in enumerate(value)]


class FieldHasher:
    """Keyed feature hashing for one field of one filter, with bounded caches."""

    __slots__ = ("_key", "_k", "_mask_bits", "_tokenize", "_features", "_values")

    def __init__(self, key: bytes, bits_per_feature: int, length_bits: int, tokenizer: Tokenizer):
        self._key = key
        self._k = bits_per_feature
        self._mask_bits = length_bits - 1  # length is a power of two: & is an unbiased mod
        self._tokenize: Callable[[str], list[str]] = {
            Tokenizer.BIGRAMS: _bigrams,
            Tokenizer.POSITIONAL_UNIGRAMS: _positional,
            Tokenizer.EXACT: lambda v: [v],
        }[tokenizer]
        self._features: dict[str, int] = {}
        self._values: dict[str, int] = {}

    def positions(self, feature: str) -> list[int]:
        """The ``k`` bit positions of one feature (duplicates possible, as in any Bloom filter)."""
        data = feature.encode("utf-8")
        stream = b""
        block = 0
        while len(stream) < 2 * self._k:
            # person= separates the 64-byte blocks when k needs more than 32 indices
            stream += hashlib.blake2b(
                data, key=self._key, digest_size=64, person=block.to_bytes(16, "big")
            ).digest()
            block += 1
        return [
            int.from_bytes(stream[2 * i : 2 * i + 2], "little") & self._mask_bits
            for i in range(self._k)
        ]

    def feature_mask(self, feature: str) -> int:
        """Bit mask (as an int) of one feature."""
        mask = self._features.get(feature)
        if mask is None:
            mask = 0
            for p in self.positions(feature):
                mask |= 1 << p
            if len(self._features) >= _CACHE_LIMIT:
                self._features.clear()
            self._features[feature] = mask
        return mask

    def value_mask(self, value: str) -> int:
        """Bit mask of every feature of a field value (cached: names repeat a lot)."""
        mask = self._values.get(value)
        if mask is None:
            mask = 0
            for feat in self._tokenize(value):
                mask |= self.feature_mask(feat)
            if len(self._values) >= _CACHE_LIMIT:
                self._values.clear()
            self._values[value] = mask
        return mask


class FilterEncoder:
    """Builds one Bloom filter (person or address) from field values."""

    def __init__(self, spec: FilterSpec, secret: bytes, fingerprint: str, filter_name: str):
        self.spec = spec
        self._n = spec.length_bits
        self._fields = [
            (
                f.feature,
                FieldHasher(
                    derive_key(secret, fingerprint, f"{filter_name}:{f.feature.value}"),
                    f.bits_per_feature,
                    spec.length_bits,
                    f.tokenizer,
                ),
            )
            for f in spec.fields
        ]
        self._salted: dict[str, list[tuple[PersonFeature | AddressFeature, FieldHasher]]] = {}
        self._secret = secret
        self._fingerprint = fingerprint
        self._filter_name = filter_name
        self._perm_table: list[list[int]] = []
        if spec.hardening is Hardening.BALANCE:
            perm = _keyed_permutation(
                derive_key(secret, fingerprint, f"{filter_name}:balance-permutation"), 2 * self._n
            )
            self._perm_table = _byte_permutation_table(perm)

    def _hashers(
        self, salt: str | None
    ) -> list[tuple[PersonFeature | AddressFeature, FieldHasher]]:
        if salt is None:
            return self._fields
        hashers = self._salted.get(salt)
        if hashers is None:
            # A salted filter gets its own keys per salt value: records with different
            # salts share no bits, which is the point of salting (and its cost).
            hashers = [
                (
                    f.feature,
                    FieldHasher(
                        derive_key(
                            self._secret,
                            self._fingerprint,
                            f"{self._filter_name}:{f.feature.value}:salt={salt}",
                        ),
                        f.bits_per_feature,
                        self.spec.length_bits,
                        f.tokenizer,
                    ),
                )
                for f in self.spec.fields
            ]
            self._salted[salt] = hashers
        return hashers

    def encode(
        self, values: dict[PersonFeature | AddressFeature, Iterable[str]], salt: str | None
    ) -> bytes:
        """The hardened filter bytes for the given per-feature values."""
        mask = 0
        for feature, hasher in self._hashers(salt):
            for value in values.get(feature, ()):
                if value:
                    mask |= hasher.value_mask(value)
        return self._harden(mask)

    def _harden(self, mask: int) -> bytes:
        n = self._n
        hardening = self.spec.hardening
        if hardening is Hardening.XOR_FOLD:
            half = n // 2
            folded = (mask & ((1 << half) - 1)) ^ (mask >> half)
            return folded.to_bytes(half // 8, "little")
        if hardening is Hardening.BALANCE:
            full = mask | ((~mask & ((1 << n) - 1)) << n)
            out = 0
            for table, byte in zip(
                self._perm_table, full.to_bytes(2 * n // 8, "little"), strict=True
            ):
                out |= table[byte]
            return out.to_bytes(2 * n // 8, "little")
        return mask.to_bytes(n // 8, "little")


def _byte_permutation_table(perm: list[int]) -> list[list[int]]:
    """For each source byte position and value, the permuted bits it contributes."""
    inverse = [0] * len(perm)
    for dst, src in enumerate(perm):
        inverse[src] = dst
    tables: list[list[int]] = []
    for b in range(len(perm) // 8):
        singles = [1 << inverse[8 * b + j] for j in range(8)]
        table = [0] * 256
        for v in range(1, 256):
            low = v & -v  # table[v] = table[v without its lowest bit] | that bit's target
            table[v] = table[v ^ low] | singles[low.bit_length() - 1]
        tables.append(table)
    return tables


def _keyed_permutation(key: bytes, n: int) -> list[int]:
    """A permutation of range(n) fixed by ``key`` (Fisher-Yates driven by keyed BLAKE2b)."""
    perm = list(range(n))
    counter = 0
    for i in range(n - 1, 0, -1):
        # rejection sampling keeps every permutation equally likely
        bound = (2**32 // (i + 1)) * (i + 1)
        while True:
            r = int.from_bytes(
                hashlib.blake2b(counter.to_bytes(8, "big"), key=key, digest_size=4).digest(), "big"
            )
            counter += 1
            if r < bound:
                break
        j = r % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


@dataclass(frozen=True, slots=True)
class Encoding:
    """Everything derived from one identity that may leave the agency."""

    clk: bytes
    address_clk: bytes | None
    exact_tokens: dict[str, str]
    blocking_keys: dict[str, str]


class Encoder:
    """Turns normalised identities into filters, exact tokens and blocking keys."""

    def __init__(self, schema: LinkageSchema, secret: bytes):
        self.schema = schema
        fp = schema.fingerprint()
        self.fingerprint = fp
        self._person = FilterEncoder(schema.person_filter, secret, fp, "person")
        self._address = FilterEncoder(schema.address_filter, secret, fp, "address")
        self._exact = {
            ident: hmac.new(derive_key(secret, fp, f"exact:{ident.value}"), digestmod="sha256")
            for ident in schema.exact_identifiers
        }
        self._blocking = [
            (spec, hmac.new(derive_key(secret, fp, f"blocking:{spec.name}"), digestmod="sha256"))
            for spec in schema.blocking_keys
        ]

    def encode(self, ident: NormalisedIdentity) -> Encoding:
        """Encode one identity."""
        person_values: dict[PersonFeature | AddressFeature, Iterable[str]] = {
            PersonFeature.GIVEN_NAME: (ident.given,) if ident.given else (),
            PersonFeature.GIVEN_NAME_CANONICAL: (
                (ident.given_canonical,) if ident.given_canonical else ()
            ),
            PersonFeature.MIDDLE_NAMES: (" ".join(ident.middle),) if ident.middle else (),
            PersonFeature.FAMILY_NAME: (ident.family,) if ident.family else (),
            PersonFeature.FAMILY_NAME_PARTS: ident.family_parts,
            PersonFeature.DATE_OF_BIRTH: (ident.dob.strftime("%Y%m%d"),) if ident.dob else (),
            PersonFeature.SEX: (ident.sex,) if ident.sex else (),
        }
        clk = self._person.encode(person_values, self._salt(self.schema.person_filter, ident))
        address_clk = None
        if ident.address or ident.postcode:
            pc = ident.postcode
            address_values: dict[PersonFeature | AddressFeature, Iterable[str]] = {
                AddressFeature.STREET_LINE: (ident.address,) if ident.address else (),
                AddressFeature.HOUSE_NUMBER: (ident.house_number,) if ident.house_number else (),
                AddressFeature.POSTCODE: (pc.unit,) if pc else (),
                AddressFeature.POSTCODE_SECTOR: (pc.sector,) if pc else (),
            }
            address_clk = self._address.encode(
                address_values, self._salt(self.schema.address_filter, ident)
            )
        exact: dict[str, str] = {}
        for ident_type, value in ident.identifiers.items():
            mac = self._exact.get(ident_type)
            if mac is not None and value:
                h = mac.copy()
                h.update(value.encode())
                exact[ident_type.value] = _b64(h.digest()[:EXACT_TOKEN_BYTES])
        return Encoding(clk, address_clk, exact, self._blocking_keys(ident))

    @staticmethod
    def _salt(spec: FilterSpec, ident: NormalisedIdentity) -> str | None:
        if spec.salt == "dob_year":
            return str(ident.dob.year) if ident.dob else "-"
        if spec.salt == "sex":
            return ident.sex or "-"
        return None

    def _blocking_keys(self, ident: NormalisedIdentity) -> dict[str, str]:
        parts = _blocking_parts(ident)
        out: dict[str, str] = {}
        for spec, mac in self._blocking:
            values = [parts.get(p) for p in spec.parts]
            if all(values):
                h = mac.copy()
                h.update("\x1f".join(v for v in values if v).encode())
                out[spec.name] = _b64(h.digest()[:BLOCKING_TOKEN_BYTES])
        return out


def _blocking_parts(ident: NormalisedIdentity) -> dict[BlockingPart, str | None]:
    dob = ident.dob
    return {
        BlockingPart.GIVEN_PHONETIC: soundex(ident.given) if ident.given else None,
        BlockingPart.FAMILY_PHONETIC: soundex(ident.family) if ident.family else None,
        BlockingPart.GIVEN_INITIAL: ident.given[0] if ident.given else None,
        BlockingPart.FAMILY_INITIAL: ident.family[0] if ident.family else None,
        BlockingPart.DOB: dob.strftime("%Y%m%d") if dob else None,
        BlockingPart.DOB_YEAR: str(dob.year) if dob else None,
        BlockingPart.DOB_DAY_MONTH_SORTED: (
            "".join(sorted((f"{dob.day:02d}", f"{dob.month:02d}"))) if dob else None
        ),
        BlockingPart.SEX: ident.sex,
        BlockingPart.POSTCODE_DISTRICT: ident.postcode.outward if ident.postcode else None,
    }


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def dice(a: bytes, b: bytes) -> float:
    """Dice coefficient of two equal-length filters (slow reference; not the linkage kernel)."""
    x = int.from_bytes(a, "little")
    y = int.from_bytes(b, "little")
    total = x.bit_count() + y.bit_count()
    return 0.0 if total == 0 else 2 * (x & y).bit_count() / total


__all__ = [
    "Encoder",
    "Encoding",
    "FieldHasher",
    "NormalisedIdentity",
    "derive_key",
    "dice",
]
