"""The encoder: normalised identities -> keyed Bloom filters, tokens and blocking keys.

Every key is derived with HKDF-SHA256 from the shared linkage secret, bound to the
schema fingerprint and to one purpose (one field of one filter, one identifier
type, one blocking key), so a bit pattern from one field says nothing about
another and a schema change re-keys everything. Features are hashed with keyed
BLAKE2b: there is no unkeyed or double hashing anyone without the secret could
replay. The filters themselves are built by the compiled kernel
(:mod:`agency_client._bloom`, keyed BLAKE2b from OpenSSL), whose derivation
tests/agency_client/test_encoder.py restates slowly in Python. Agencies' own
identifier types (the schema's ``local_identifiers``) are keyed the same way, one
HKDF key per type, and hashed with keyed BLAKE2b in Python. This module never
sees a file, never logs, and keeps no identity beyond the kernel's bounded
caches of feature -> bit positions that die with the process.

Bit order: filter bit ``i`` is bit ``i % 8`` (least significant first) of byte
``i // 8``; ``numpy.unpackbits(..., bitorder="little")`` reads it back.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import operator
from collections.abc import Callable, Sequence
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

from . import _bloom
from ._bloom import FilterKernel, KeyedTokens, RecordKernel
from ._normalise import Postcode, soundex

KDF_SALT = b"family-linkage/kdf/v1"
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
    given_canonical: tuple[str, ...] = ()  # every given name, nickname resolved
    middle: tuple[str, ...] = ()
    family: str | None = None
    family_parts: tuple[str, ...] = ()  # parts of current and former family names
    dob: dt.date | None = None
    sex: str | None = None
    address: str | None = None
    house_number: str | None = None
    postcode: Postcode | None = None
    identifiers: dict[ExactIdentifier, str] = field(default_factory=dict)


_TOKENIZER_CODES = {
    Tokenizer.BIGRAMS: _bloom.BIGRAMS,
    Tokenizer.POSITIONAL_UNIGRAMS: _bloom.POSITIONAL_UNIGRAMS,
    Tokenizer.EXACT: _bloom.EXACT,
    Tokenizer.DATE_PARTS: _bloom.DATE_PARTS,
}


class FilterEncoder:
    """Builds one Bloom filter (person or address) from field values."""

    def __init__(self, spec: FilterSpec, secret: bytes, fingerprint: str, filter_name: str):
        self.spec = spec
        self._n = spec.length_bits
        indexes = [_FEATURE_ORDER.index(f.feature) for f in spec.fields]
        self._pick: Callable[[FeatureValues], Sequence[str | tuple[str, ...] | None]] = (
            operator.itemgetter(*indexes) if len(indexes) > 1 else lambda row: (row[indexes[0]],)
        )
        self._secret = secret
        self._fingerprint = fingerprint
        self._filter_name = filter_name
        self._kernel = self._new_kernel("")
        self._salted: dict[str, FilterKernel] = {}
        self._perm_table: list[list[int]] = []
        if spec.hardening is Hardening.BALANCE:
            perm = _keyed_permutation(
                derive_key(secret, fingerprint, f"{filter_name}:balance-permutation"), 2 * self._n
            )
            self._perm_table = _byte_permutation_table(perm)

    def _new_kernel(self, suffix: str) -> FilterKernel:
        return FilterKernel(
            self._n,
            [
                (
                    derive_key(
                        self._secret,
                        self._fingerprint,
                        f"{self._filter_name}:{f.feature.value}{suffix}",
                    ),
                    f.bits_per_feature,
                    _TOKENIZER_CODES[f.tokenizer],
                )
                for f in self.spec.fields
            ],
        )

    def kernel(self, salt: str | None) -> FilterKernel:
        """The compiled kernel for a salt value (``None``: unsalted)."""
        if salt is None:
            return self._kernel
        kernel = self._salted.get(salt)
        if kernel is None:
            # A salted filter gets its own keys per salt value: records with different
            # salts share no bits, which is the point of salting (and its cost).
            kernel = self._salted[salt] = self._new_kernel(f":salt={salt}")
        return kernel

    def encode_values(self, row: FeatureValues, salt: str | None) -> bytes:
        """The hardened filter of one identity's feature values (from feature_values)."""
        raw = self.kernel(salt).encode(self._pick(row))
        if self.spec.hardening is Hardening.NONE:
            return raw
        return self._harden(int.from_bytes(raw, "little"))

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


def keyed_token(key: bytes, value: str, size: int) -> bytes:
    """Keyed BLAKE2b of one value (record refs; the encoder's tokens use ``KeyedTokens``)."""
    return hashlib.blake2b(value.encode(), key=key, digest_size=size).digest()


# Every filter feature of an identity, in this order, as the kernel takes them:
# a str (one value, "" none), a tuple of values, or None.
_FEATURE_ORDER: tuple[PersonFeature | AddressFeature, ...] = (
    PersonFeature.GIVEN_NAME,
    PersonFeature.GIVEN_NAME_CANONICAL,
    PersonFeature.MIDDLE_NAMES,
    PersonFeature.FAMILY_NAME,
    PersonFeature.FAMILY_NAME_PARTS,
    PersonFeature.DATE_OF_BIRTH,
    PersonFeature.SEX,
    AddressFeature.STREET_LINE,
    AddressFeature.HOUSE_NUMBER,
    AddressFeature.POSTCODE,
    AddressFeature.POSTCODE_SECTOR,
)

FeatureValues = tuple[str | tuple[str, ...] | None, ...]
_GIVEN, _FAMILY, _DOB, _SEX, _STREET, _POSTCODE = 0, 3, 5, 6, 7, 9  # in _FEATURE_ORDER


def feature_values(ident: NormalisedIdentity) -> FeatureValues:
    """The values of every feature in _FEATURE_ORDER (missing: None or "")."""
    pc = ident.postcode
    return (
        ident.given,
        ident.given_canonical,
        (" ".join(ident.middle),) if ident.middle else None,
        ident.family,
        ident.family_parts,
        dob8(ident.dob),
        ident.sex,
        ident.address,
        ident.house_number,
        (pc.unit,) if pc else None,
        (pc.sector,) if pc else None,
    )


def yyyymmdd(day: dt.date) -> str:
    """A date as the encoder hashes a date of birth."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def dob8(dob: dt.date | None) -> str | None:
    """A date of birth as the encoder hashes it (yyyymmdd), or None."""
    return yyyymmdd(dob) if dob else None


class Encoder:
    """Turns normalised identities into filters, exact tokens and blocking keys.

    Two ways in: :meth:`encode` (an identity -> an :class:`Encoding`) and
    :meth:`record_json` (feature values -> the members of an extract line, what
    the agency client's row encoder uses). With unsalted filters, unhardened or
    XOR-folded (the default schema), :meth:`record_json` is one call into the compiled
    :class:`~agency_client._bloom.RecordKernel`; otherwise it formats
    :meth:`encode_features`' result in Python. Both write the same bytes
    (tests/agency_client/test_encoder.py).
    """

    def __init__(self, schema: LinkageSchema, secret: bytes, *, compiled: bool = True):
        self.schema = schema
        fp = schema.fingerprint()
        self.fingerprint = fp
        self._person = FilterEncoder(schema.person_filter, secret, fp, "person")
        self._address = FilterEncoder(schema.address_filter, secret, fp, "address")
        self.exact_order: tuple[ExactIdentifier, ...] = tuple(schema.exact_identifiers)
        self._exact = KeyedTokens(
            [
                (derive_key(secret, fp, f"exact:{ident.value}"), EXACT_TOKEN_BYTES)
                for ident in self.exact_order
            ]
        )
        # Agencies' own identifiers: keyed per type like the built-in ones, in Python
        # beside the kernel call (only mappings that declare them pay for them).
        self._local_keys = {
            name: derive_key(secret, fp, f"local-id:{name}") for name in schema.local_identifiers
        }
        self._blocking = [
            (spec.name, tuple(_PART_ORDER.index(p) for p in spec.parts))
            for spec in schema.blocking_keys
        ]
        self._blocking_tokens = KeyedTokens(
            [
                (derive_key(secret, fp, f"blocking:{spec.name}"), BLOCKING_TOKEN_BYTES)
                for spec in schema.blocking_keys
            ]
        )
        # The kernel folds (xor_fold) itself; balancing and salting take the Python path.
        plain = all(
            spec.hardening in (Hardening.NONE, Hardening.XOR_FOLD) and spec.salt == "none"
            for spec in (schema.person_filter, schema.address_filter)
        )
        self._record: RecordKernel | None = None
        if compiled and plain:
            self._record = RecordKernel(
                self._person.kernel(None),
                [_FEATURE_ORDER.index(f.feature) for f in schema.person_filter.fields],
                self._address.kernel(None),
                [_FEATURE_ORDER.index(f.feature) for f in schema.address_filter.fields],
                self._exact,
                [ident.value for ident in self.exact_order],
                self._blocking_tokens,
                [name for name, _ in self._blocking],
                [indexes for _, indexes in self._blocking],
                person_fold=schema.person_filter.hardening is Hardening.XOR_FOLD,
                address_fold=schema.address_filter.hardening is Hardening.XOR_FOLD,
            )

    def encode(self, ident: NormalisedIdentity) -> Encoding:
        """Encode one identity."""
        return self.encode_features(
            feature_values(ident),
            ident.postcode.outward if ident.postcode else None,
            [ident.identifiers.get(kind) for kind in self.exact_order],
        )

    def local_token(self, name: str, value: str) -> str:
        """The keyed token (base64) of a normalised agency identifier of type ``name``."""
        return b64(keyed_token(self._local_keys[name], value, EXACT_TOKEN_BYTES))

    def encode_features(
        self, features: FeatureValues, outward: str | None, exact_values: Sequence[str | None]
    ) -> Encoding:
        """Encode one identity given as feature values (see :func:`feature_values`).

        ``outward`` is the postcode district; ``exact_values[i]`` the normalised value of
        the identifier ``exact_order[i]`` or ``None``.
        """
        dob8, sex = _text(features[_DOB]), _text(features[_SEX])
        clk = self._person.encode_values(features, _salt(self.schema.person_filter, dob8, sex))
        address_clk = None
        if features[_STREET] or features[_POSTCODE]:
            address_clk = self._address.encode_values(
                features, _salt(self.schema.address_filter, dob8, sex)
            )
        values = [v or None for v in exact_values]
        exact = {
            kind.value: token
            for kind, token in zip(self.exact_order, self._exact.encode(values), strict=True)
            if token is not None
        }
        return Encoding(clk, address_clk, exact, self._blocking_keys(features, outward))

    def record_json(
        self, features: FeatureValues, outward: str | None, exact_values: Sequence[str | None]
    ) -> str:
        """The encoder's members of an extract line, each preceded by a comma.

        ``,"clk":"..."``, then ``address_clk`` when there is an address line or a
        postcode, then ``exact_tokens`` and ``blocking_keys`` when there are any.
        """
        if self._record is not None:
            return self._record.encode(features, outward, exact_values)
        enc = self.encode_features(features, outward, exact_values)
        out = [',"clk":"', b64(enc.clk), '"']
        if enc.address_clk is not None:
            out += [',"address_clk":"', b64(enc.address_clk), '"']
        for name, tokens in (
            ("exact_tokens", enc.exact_tokens),
            ("blocking_keys", enc.blocking_keys),
        ):
            if tokens:
                pairs = ",".join(f'"{k}":"{v}"' for k, v in tokens.items())
                out += [',"', name, '":{', pairs, "}"]
        return "".join(out)

    def _blocking_keys(self, features: FeatureValues, outward: str | None) -> dict[str, str]:
        parts = _blocking_parts(features, outward)
        joined: list[str | None] = []
        for _, indexes in self._blocking:
            values = [parts[i] for i in indexes]
            joined.append("\x1f".join(values) if all(values) else None)  # type: ignore[arg-type]
        tokens = self._blocking_tokens.encode(joined)
        return {
            name: token
            for (name, _), token in zip(self._blocking, tokens, strict=True)
            if token is not None
        }


def _salt(spec: FilterSpec, dob8: str | None, sex: str | None) -> str | None:
    if spec.salt == "dob_year":
        return str(int(dob8[:4])) if dob8 else "-"
    if spec.salt == "sex":
        return sex or "-"
    return None


def b64(raw: bytes) -> str:
    """Standard, padded base64 without a newline, as extract lines carry bytes."""
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


_PART_ORDER = (
    BlockingPart.GIVEN_PHONETIC,
    BlockingPart.FAMILY_PHONETIC,
    BlockingPart.GIVEN_INITIAL,
    BlockingPart.FAMILY_INITIAL,
    BlockingPart.DOB,
    BlockingPart.DOB_YEAR,
    BlockingPart.DOB_DAY_MONTH_SORTED,
    BlockingPart.SEX,
    BlockingPart.POSTCODE_DISTRICT,
)


def _text(value: str | tuple[str, ...] | None) -> str | None:
    """A single-valued feature (given, family, date of birth, sex): a str or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected a str or None, got {type(value).__name__}")
    return value or None


def _blocking_parts(features: FeatureValues, outward: str | None) -> tuple[str | None, ...]:
    """Every blocking part of an identity, in _PART_ORDER (RecordKernel computes the same)."""
    given, family = _text(features[_GIVEN]), _text(features[_FAMILY])
    dob8, sex = _text(features[_DOB]), _text(features[_SEX])
    year = day_month = None
    if dob8:
        year = dob8[:4]
        dd, mm = dob8[6:], dob8[4:6]
        day_month = dd + mm if dd <= mm else mm + dd
    return (
        soundex(given) if given else None,
        soundex(family) if family else None,
        given[0] if given else None,
        family[0] if family else None,
        dob8,
        year,
        day_month,
        sex,
        outward or None,
    )


def dice(a: bytes, b: bytes) -> float:
    """Dice coefficient of two equal-length filters (slow reference; not the linkage kernel)."""
    x = int.from_bytes(a, "little")
    y = int.from_bytes(b, "little")
    total = x.bit_count() + y.bit_count()
    return 0.0 if total == 0 else 2 * (x & y).bit_count() / total


__all__ = [
    "Encoder",
    "Encoding",
    "NormalisedIdentity",
    "derive_key",
    "dice",
]
