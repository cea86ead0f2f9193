"""The compiled kernels (filters, keyed tokens) against slow Python restatements."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agency_client import _bloom
from agency_client._bloom import FilterKernel, KeyedTokens
from agency_client._encoder import keyed_token

TOKENIZERS = (_bloom.BIGRAMS, _bloom.POSITIONAL_UNIGRAMS, _bloom.EXACT, _bloom.DATE_PARTS)


def reference_features(tokenizer: int, value: str) -> list[str]:
    """The documented tokenisers, written out (as in docs/agency-client.md)."""
    if tokenizer == _bloom.BIGRAMS:
        return [f"_{w}_"[i : i + 2] for w in value.split() for i in range(len(w) + 1)]
    if tokenizer == _bloom.POSITIONAL_UNIGRAMS:
        return [f"{i}:{c}" for i, c in enumerate(value)]
    if tokenizer == _bloom.DATE_PARTS:
        y, m, d = value[:4], value[4:6], value[6:8]
        return [f"y:{y}", f"m:{m}", f"d:{d}", f"s:{min(m, d)}{max(m, d)}"]
    return [value]


def reference_positions(key: bytes, feature: str, k: int, m: int) -> list[int]:
    """k little-endian 16-bit words of the keyed BLAKE2b-512 stream, person = block number."""
    stream = b""
    block = 0
    while len(stream) < 2 * k:
        stream += hashlib.blake2b(
            feature.encode(), key=key, digest_size=64, person=block.to_bytes(16, "big")
        ).digest()
        block += 1
    return [int.from_bytes(stream[2 * i : 2 * i + 2], "little") % m for i in range(k)]


def reference_encode(
    length_bits: int, fields: list[tuple[bytes, int, int]], values: list[list[str]]
) -> bytes:
    """Bit by bit: no cache, no packing tricks."""
    bits = [0] * length_bits
    for (key, k, tokenizer), field_values in zip(fields, values, strict=True):
        for value in field_values:
            for feature in reference_features(tokenizer, value):
                for p in reference_positions(key, feature, k, length_bits):
                    bits[p] = 1
    out = bytearray(length_bits // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


# Any text Python can encode as UTF-8 (no lone surrogates), with plenty of whitespace
# of every kind so word splitting is exercised.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from(" \t\n\u00a0\u2003\u3000_:0123456789abc"),
    ),
    max_size=14,
)
FIELD = st.tuples(
    st.binary(min_size=1, max_size=64), st.integers(1, 128), st.sampled_from(TOKENIZERS)
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([8, 64, 1024, 8192]),
    st.lists(st.tuples(FIELD, st.lists(TEXT, max_size=3)), min_size=1, max_size=4),
    st.sampled_from([0, 1, 3, 65536]),
)
def test_kernel_matches_reference_on_random_inputs(length_bits, spec, cache_limit):
    fields = [f for f, _ in spec]
    values = [v for _, v in spec]
    kernel = FilterKernel(length_bits, fields, cache_limit=cache_limit)
    want = reference_encode(length_bits, fields, values)
    assert kernel.encode(values) == want
    assert kernel.encode(values) == want  # again, now from the cache
    assert kernel.cache_entries <= cache_limit


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(1, 128), TEXT)
def test_positions_match_reference(key, k, feature):
    kernel = FilterKernel(1024, [(key, k, _bloom.EXACT)])
    assert kernel.positions(0, feature) == reference_positions(key, feature, k, 1024)


def test_exhaustive_small_filters_every_k():
    """Every k from 1 to 128 (1 to 4 hash blocks) on every small filter length."""
    key = bytes(range(32))
    for length_bits in (8, 16, 32, 64, 128):
        for k in range(1, 129):
            kernel = FilterKernel(length_bits, [(key, k, _bloom.BIGRAMS)])
            assert kernel.encode([["ab c"]]) == reference_encode(
                length_bits, [(key, k, _bloom.BIGRAMS)], [["ab c"]]
            )


def test_cache_is_bounded_and_does_not_change_the_answer():
    key = b"k" * 32
    fields = [(key, 20, _bloom.EXACT)]
    small = FilterKernel(1024, fields, cache_limit=10)
    big = FilterKernel(1024, fields)
    for i in range(100):
        assert small.encode([[f"v{i % 37}"]]) == big.encode([[f"v{i % 37}"]])
        assert small.cache_entries <= 10
    assert big.cache_entries == 37


def test_value_cache_gives_the_same_bits_and_skips_what_it_cannot_hold():
    key = b"k" * 32
    fields = [(key, 20, _bloom.BIGRAMS), (key, 128, _bloom.POSITIONAL_UNIGRAMS)]
    cached = FilterKernel(1024, fields)
    uncached = FilterKernel(1024, fields, cache_limit=0)
    long_value = "x" * 300  # longer than a cached value may be
    many = "abcdefghijklmnopq"  # 17 features of 128 bits: more positions than an entry holds
    for values in ([["anna"], []], [["anna"], []], [[long_value], []], [[], [many]], [[], [many]]):
        assert (
            cached.encode(values)
            == uncached.encode(values)
            == reference_encode(1024, fields, values)
        )
    assert cached.value_entries == 1  # only "anna"; the repeat was a hit
    assert uncached.value_entries == 0


def test_missing_values_set_no_bits():
    kernel = FilterKernel(64, [(b"k", 20, t) for t in TOKENIZERS])
    assert kernel.encode([[], [], [], []]) == bytes(8)
    assert kernel.encode([[" "], [], [], []]) == bytes(8)  # no words, no bigrams


def test_lone_surrogate_raises_like_str_encode():
    kernel = FilterKernel(64, [(b"k", 4, _bloom.BIGRAMS)])
    with pytest.raises(UnicodeEncodeError):
        kernel.encode([["a\ud800"]])


@pytest.mark.parametrize(
    ("length_bits", "fields", "message"),
    [
        (1000, [(b"k", 1, 0)], "power of two"),
        (64, [(b"", 1, 0)], "key must be 1 to 64 bytes"),
        (64, [(b"k" * 65, 1, 0)], "key must be 1 to 64 bytes"),
        (64, [(b"k", 0, 0)], "k must be 1 to 128"),
        (64, [(b"k", 129, 0)], "k must be 1 to 128"),
        (64, [(b"k", 1, 4)], "unknown tokenizer"),
    ],
)
def test_bad_parameters_are_named(length_bits, fields, message):
    with pytest.raises(ValueError, match=message):
        FilterKernel(length_bits, fields)


def test_bad_values_are_named():
    kernel = FilterKernel(64, [(b"k", 1, 0)])
    with pytest.raises(ValueError, match="expected values for 1 fields, got 2"):
        kernel.encode([[], []])
    with pytest.raises(TypeError, match="values must be str"):
        kernel.encode([[b"x"]])


def reference_token(key: bytes, value: str, size: int) -> str:
    """hashlib's keyed BLAKE2b, in base64 (what the extract carries)."""
    digest = hashlib.blake2b(value.encode(), key=key, digest_size=size).digest()
    return base64.b64encode(digest).decode("ascii")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(min_size=1, max_size=64), st.integers(1, 64), st.none() | TEXT),
        max_size=6,
    )
)
def test_keyed_tokens_match_hashlib(items):
    tokens = KeyedTokens([(key, size) for key, size, _ in items])
    got = tokens.encode([value for _, _, value in items])
    want = [None if v is None else reference_token(k, v, size) for k, size, v in items]
    assert got == want


def test_keyed_tokens_match_the_encoders_record_ref_hash():
    assert KeyedTokens([(b"k" * 32, 16)]).encode(["school\x1fS1"]) == [
        base64.b64encode(keyed_token(b"k" * 32, "school\x1fS1", 16)).decode("ascii")
    ]


def test_keyed_tokens_bad_input_is_named():
    with pytest.raises(ValueError, match="digest_size must be 1 to 64"):
        KeyedTokens([(b"k", 65)])
    with pytest.raises(ValueError, match="key must be 1 to 64 bytes"):
        KeyedTokens([(b"", 12)])
    tokens = KeyedTokens([(b"k", 12)])
    with pytest.raises(ValueError, match="expected 1 values, got 2"):
        tokens.encode(["a", "b"])
    with pytest.raises(TypeError, match="must be str or None"):
        tokens.encode([b"a"])
    with pytest.raises(UnicodeEncodeError):
        tokens.encode(["\udc80"])


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT | st.none(), min_size=4, max_size=4))
def test_a_bare_str_is_one_value_and_empty_or_none_is_missing(values):
    kernel = FilterKernel(1024, [(b"k", 20, t) for t in TOKENIZERS])
    as_lists = [[v] if v else [] for v in values]
    assert kernel.encode(values) == kernel.encode(as_lists)
    assert kernel.encode(values) == reference_encode(
        1024, [(b"k", 20, t) for t in TOKENIZERS], as_lists
    )


# --- the record kernel: one call for a record's filters and tokens ---------------------

NAME = st.one_of(
    st.none(),
    st.just(""),
    st.text(alphabet=st.sampled_from("abchwyz aeiou-éß1"), max_size=12),
    TEXT,
)
DOB8 = st.one_of(st.none(), st.dates().map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}"))
WORDS = st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=6), max_size=3).map(tuple)
ONE = st.one_of(st.none(), st.text(alphabet="ABC0123 ", min_size=1, max_size=8).map(lambda v: (v,)))


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(
        NAME,
        WORDS,
        ONE,
        NAME,
        WORDS,
        DOB8,
        st.sampled_from([None, "", "M", "F"]),
        NAME,
        st.one_of(st.none(), st.sampled_from(["10", "2/10", "7a"])),
        ONE,
        ONE,
    ),
    st.one_of(st.none(), st.just(""), st.sampled_from(["LS6", "M1", "SW1A"])),
    st.lists(st.one_of(st.none(), st.just(""), st.text(max_size=12)), min_size=3, max_size=3),
    st.booleans(),
)
def test_record_kernel_writes_what_the_python_path_writes(features, outward, exact, fold):
    from agency_client._encoder import Encoder
    from protocols import Hardening, default_schema

    schema = default_schema()
    if fold:  # the kernel XOR-folds both filters itself
        schema = schema.model_copy(
            update={
                name: getattr(schema, name).model_copy(update={"hardening": Hardening.XOR_FOLD})
                for name in ("person_filter", "address_filter")
            }
        )
    compiled = Encoder(schema, b"s" * 32)
    python = Encoder(schema, b"s" * 32, compiled=False)
    assert compiled._record is not None and python._record is None
    want = python.record_json(features, outward, exact[: len(python.exact_order)])
    assert compiled.record_json(features, outward, exact[: len(compiled.exact_order)]) == want


def test_record_kernel_soundex_matches_normalise():
    from agency_client._encoder import Encoder
    from agency_client._normalise import soundex
    from protocols import BlockingKeySpec, BlockingPart, default_schema

    # one blocking key per phonetic part: the key's token pins the C soundex to Python's
    schema = default_schema().model_copy(
        update={
            "blocking_keys": (
                BlockingKeySpec(name="g", parts=(BlockingPart.GIVEN_PHONETIC,)),
                BlockingKeySpec(name="f", parts=(BlockingPart.FAMILY_PHONETIC,)),
            )
        }
    )
    compiled = Encoder(schema, b"s" * 32)
    python = Encoder(schema, b"s" * 32, compiled=False)
    words = ["ashcraft", "tymczak", "pfister", "honeyman", "robert", "rupert", "lee", "a"]
    words += ["hhh", "whw", "o'brien", "x1y2", "éa", "1234", "ßmith", "ghw-gw"]
    for word in words:
        features = (word, (), None, word, (), None, None, None, None, None, None)
        line = compiled.record_json(features, None, [None] * 3)
        assert line == python.record_json(features, None, [None] * 3), word
        keys = json.loads("{" + line[1:] + "}").get("blocking_keys", {})
        assert set(keys) == ({"g", "f"} if soundex(word) else set()), word


def test_record_kernel_refuses_bad_set_ups_and_inputs():
    person = FilterKernel(64, [(b"k", 2, _bloom.EXACT)])
    tokens = KeyedTokens([(b"k", 12)])
    ok = dict(
        person=person,
        person_features=[0],
        address=person,
        address_features=[7],
        exact=tokens,
        exact_names=["nhs_number"],
        blocking=tokens,
        blocking_names=["b"],
        blocking_parts=[[0, 4]],
    )
    kernel = _bloom.RecordKernel(**ok)
    for bad, message in (
        ({"person_features": [11]}, "no feature 11"),
        ({"person_features": [0, 1]}, "1 fields, got 2"),
        ({"exact_names": ["a", "b"]}, "expected 1 exact token names"),
        ({"exact_names": ['na"me']}, "JSON escapes"),
        ({"blocking_names": ["é"]}, "ASCII"),
        ({"blocking_parts": [[9]]}, "no part 9"),
        ({"blocking_parts": [[]]}, "1 to 9 parts"),
    ):
        with pytest.raises(ValueError, match=message):
            _bloom.RecordKernel(**{**ok, **bad})
    row = ("a", (), None, "b", (), "20120304", "M", None, None, None, None)
    assert kernel.encode(row, None, [None]).startswith(',"clk":"')
    with pytest.raises(ValueError, match="expected 11 features"):
        kernel.encode(row[:5], None, [None])
    with pytest.raises(ValueError, match="8 ASCII digits"):
        kernel.encode(row[:5] + ("2012-03-04",) + row[6:], None, [None])
    with pytest.raises(TypeError, match="given name must be str or None"):
        kernel.encode((1,) + row[1:], None, [None])
    with pytest.raises(ValueError, match="expected 1 exact values"):
        kernel.encode(row, None, [])
