"""The linkage schema: validation, and a fingerprint that moves with every field."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from protocols import (
    AddressFeature,
    BlockingKeySpec,
    BlockingPart,
    ExactIdentifier,
    FilterField,
    FilterSpec,
    Hardening,
    LinkageSchema,
    PersonFeature,
    Tokenizer,
    default_schema,
)


def _field(
    feature: PersonFeature | AddressFeature, tokenizer: Tokenizer = Tokenizer.EXACT, bits: int = 10
) -> FilterField:
    return FilterField(feature=feature, tokenizer=tokenizer, bits_per_feature=bits)


def _mutated(schema: LinkageSchema, path: tuple[Any, ...], value: Any) -> LinkageSchema:
    """A copy of ``schema`` (via its JSON data) with the item at ``path`` replaced."""
    data = schema.model_dump(mode="json")
    node = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return LinkageSchema.model_validate(data)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) leaf of plain JSON data."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path, node


# --- the default schema and its fingerprint --------------------------------------------


def test_default_schema_validates():
    schema = default_schema()
    assert LinkageSchema.model_validate(schema.model_dump()) == schema
    assert schema.version == 1
    assert all(isinstance(f.feature, PersonFeature) for f in schema.person_filter.fields)
    assert all(isinstance(f.feature, AddressFeature) for f in schema.address_filter.fields)


def test_fingerprint_is_stable_and_is_the_sha256_of_the_canonical_bytes():
    schema = default_schema()
    first = schema.fingerprint()
    assert first == schema.fingerprint() == default_schema().fingerprint()
    assert first == hashlib.sha256(schema.canonical_bytes()).hexdigest()
    assert len(first) == 64 and first == first.lower()


def test_canonical_bytes_are_sorted_compact_json():
    raw = default_schema().canonical_bytes()
    data = json.loads(raw)
    assert raw == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def test_canonical_bytes_known_answer():
    # Expected bytes written by hand from the documented canonical form (sorted keys,
    # no whitespace, enums as their values, defaults included); the digest is
    # hashlib's over those bytes. Catches any drift in how pydantic serialises.
    schema = LinkageSchema(
        name="kat",
        person_filter=FilterSpec(
            length_bits=64, fields=(_field(PersonFeature.SEX, Tokenizer.EXACT, 3),)
        ),
        address_filter=FilterSpec(
            length_bits=128,
            fields=(_field(AddressFeature.POSTCODE, Tokenizer.BIGRAMS, 4),),
            hardening=Hardening.XOR_FOLD,
            salt="dob_year",
        ),
        exact_identifiers=(ExactIdentifier.NHS_NUMBER,),
        blocking_keys=(BlockingKeySpec(name="k", parts=(BlockingPart.DOB, BlockingPart.SEX)),),
        identity_pad_bytes=256,
    )
    expected = (
        b'{"address_filter":{"fields":[{"bits_per_feature":4,"feature":"postcode",'
        b'"tokenizer":"bigrams"}],"hardening":"xor_fold","length_bits":128,'
        b'"salt":"dob_year"},'
        b'"blocking_keys":[{"name":"k","parts":["dob","sex"]}],'
        b'"exact_identifiers":["nhs_number"],'
        b'"feature_hash":"blake2b-keyed","identity_pad_bytes":256,"kdf":"hkdf-sha256",'
        b'"name":"kat",'
        b'"person_filter":{"fields":[{"bits_per_feature":3,"feature":"sex",'
        b'"tokenizer":"exact"}],"hardening":"none","length_bits":64,"salt":"none"},'
        b'"token_hash":"blake2b-keyed","version":1}'
    )
    assert schema.canonical_bytes() == expected
    assert schema.fingerprint() == hashlib.sha256(expected).hexdigest()


# Schema v1's fingerprint as the code computed it before local_identifiers and
# postcode_format existed (commit 72690fb). v1 is kept as a file for comparisons
# (docs/schemas/person-unhardened-v1.json); options added since must leave it alone
# while they hold their defaults.
V1_FINGERPRINT = "073bd62b1f39d1747058ef2229a1d32f79d98fa08810cc2497dd51e1f4b17625"
V1_FILE = Path(__file__).parents[2] / "docs" / "schemas" / "person-unhardened-v1.json"
# The shipped default (v2, XOR-folded person filters): a change here re-keys and
# re-encodes every deployment, so it is pinned.
DEFAULT_FINGERPRINT = "7eeaefebc0be94c7d9e3c19f8bbe767e13bb0e053bab047c226fdb4b06ccb88b"


def test_default_fingerprint_known_answer():
    assert default_schema().fingerprint() == DEFAULT_FINGERPRINT
    body = json.loads(default_schema().canonical_bytes())
    assert "local_identifiers" not in body and "postcode_format" not in body


def test_schema_v1_file_keeps_its_fingerprint():
    v1 = LinkageSchema.model_validate_json(V1_FILE.read_bytes())
    assert v1.fingerprint() == V1_FINGERPRINT
    # v2 differs from v1 in the person filter alone
    v2 = default_schema()
    assert v1.model_copy(update={"name": v2.name, "person_filter": v2.person_filter}) == v2
    assert v1.person_filter.output_bits == v2.person_filter.output_bits == 1024


@pytest.mark.parametrize(
    ("update", "member"),
    [
        ({"local_identifiers": ("local_person_id",)}, '"local_identifiers":["local_person_id"]'),
        ({"postcode_format": "any"}, '"postcode_format":"any"'),
    ],
)
def test_later_options_change_the_fingerprint_only_when_used(update, member):
    v1 = LinkageSchema.model_validate_json(V1_FILE.read_bytes())
    schema = LinkageSchema.model_validate({**v1.model_dump(), **update})
    assert member in schema.canonical_bytes().decode()
    assert schema.fingerprint() != V1_FINGERPRINT
    # stated at their defaults, they are schema v1 as it was
    again = LinkageSchema.model_validate(
        {**v1.model_dump(), "local_identifiers": [], "postcode_format": "uk"}
    )
    assert again.fingerprint() == V1_FINGERPRINT


def test_local_identifiers_are_checked():
    base = default_schema().model_dump()
    for bad, message in (
        (["nhs_number"], "is a built-in identifier"),
        (["soc_sec_id", "soc_sec_id"], "must be unique"),
        (["SSN"], "should match pattern"),
        (["x"], "should match pattern"),
    ):
        with pytest.raises(ValidationError, match=message):
            LinkageSchema.model_validate({**base, "local_identifiers": bad})
    with pytest.raises(ValidationError, match="postcode_format"):
        LinkageSchema.model_validate({**base, "postcode_format": "us"})


def test_json_round_trip_keeps_the_fingerprint():
    schema = default_schema()
    again = LinkageSchema.model_validate_json(schema.model_dump_json())
    assert again == schema
    assert again.fingerprint() == schema.fingerprint()
    indented = LinkageSchema.model_validate_json(schema.model_dump_json(indent=2))
    assert indented.fingerprint() == schema.fingerprint()


def test_key_order_and_whitespace_of_a_schema_file_do_not_matter():
    def reverse_keys(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: reverse_keys(node[k]) for k in reversed(list(node))}
        if isinstance(node, list):
            return [reverse_keys(v) for v in node]
        return node

    schema = default_schema()
    text = json.dumps(reverse_keys(schema.model_dump(mode="json")), indent=4)
    assert LinkageSchema.model_validate_json(text).fingerprint() == schema.fingerprint()


# Hand-picked single changes: each names a field whose change must re-key everything.
CHANGES = {
    "person bits_per_feature": (("person_filter", "fields", 0, "bits_per_feature"), 21),
    "address bits_per_feature": (("address_filter", "fields", 1, "bits_per_feature"), 61),
    "person tokenizer": (("person_filter", "fields", 0, "tokenizer"), "positional_unigrams"),
    "person feature": (("person_filter", "fields", 0, "feature"), "middle_names"),
    "person length": (("person_filter", "length_bits"), 1024),
    "address length": (("address_filter", "length_bits"), 512),
    "person hardening": (("person_filter", "hardening"), "none"),
    "address salt": (("address_filter", "salt"), "sex"),
    "blocking key part": (("blocking_keys", 0, "parts", 1), "dob_year"),
    "blocking key name": (("blocking_keys", 0, "name"), "family_dob2"),
    "exact identifiers": (("exact_identifiers",), ["nhs_number", "ni_number"]),
    "identity_pad_bytes": (("identity_pad_bytes",), 1024),
    "name": (("name",), "family-linkage default v2 (copy)"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_fingerprint_changes_with_a_single_field(change):
    path, value = change
    schema = default_schema()
    changed = _mutated(schema, path, value)
    assert changed != schema
    assert changed.fingerprint() != schema.fingerprint()


def test_fingerprint_changes_when_filter_fields_are_reordered():
    schema = default_schema()
    fields = schema.person_filter.fields
    reordered = schema.model_copy(
        update={
            "person_filter": schema.person_filter.model_copy(
                update={"fields": (fields[1], fields[0], *fields[2:])}
            )
        }
    )
    assert reordered.fingerprint() != schema.fingerprint()


_WORDS = sorted(
    {
        *(str(v) for enum in (PersonFeature, AddressFeature, Tokenizer) for v in enum),
        *(str(v) for enum in (BlockingPart, ExactIdentifier, Hardening) for v in enum),
        "none",
        "dob_year",
        "sex",
        "any",  # postcode_format
    }
)


def _alternatives(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value * 2, value // 2, value + 1, value - 1]
    if isinstance(value, str):
        return [w for w in _WORDS if w != value] + [value + "x"]
    return []


def test_every_changeable_leaf_changes_the_fingerprint():
    # Exhaustive over the default schema: every leaf that can take another valid
    # value does, one at a time, and each such schema has a new fingerprint.
    schema = default_schema()
    base = schema.fingerprint()
    seen = {base}
    fixed: set[tuple[Any, ...]] = set()
    for path, value in _leaves(schema.model_dump(mode="json")):
        for alternative in _alternatives(value):
            try:
                changed = _mutated(schema, path, alternative)
            except ValidationError:
                continue
            assert changed.fingerprint() not in seen, (path, alternative)
            seen.add(changed.fingerprint())
            break
        else:
            fixed.add(path)
    # Only the single-valued literals cannot change (within version 1), and a feature
    # of a filter that already holds every feature of its kind (each appears once).
    expected: set[tuple[Any, ...]] = {("version",), ("kdf",), ("feature_hash",), ("token_hash",)}
    for name, kind in (("person_filter", PersonFeature), ("address_filter", AddressFeature)):
        spec = getattr(schema, name)
        if {f.feature for f in spec.fields} == set(kind):
            expected |= {(name, "fields", i, "feature") for i in range(len(spec.fields))}
    assert fixed == expected


# --- validators ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [96, 1000, 1536, 4095])
def test_length_bits_must_be_a_power_of_two(bits):
    with pytest.raises(ValidationError, match="power of two"):
        FilterSpec(length_bits=bits, fields=(_field(PersonFeature.SEX),))


@pytest.mark.parametrize("bits", [32, 16384])
def test_length_bits_out_of_range(bits):
    with pytest.raises(ValidationError, match="length_bits"):
        FilterSpec(length_bits=bits, fields=(_field(PersonFeature.SEX),))


@pytest.mark.parametrize("bits", [64, 128, 1024, 8192])
def test_powers_of_two_in_range_are_accepted(bits):
    assert FilterSpec(length_bits=bits, fields=(_field(PersonFeature.SEX),)).length_bits == bits


@pytest.mark.parametrize("bits", [0, 129])
def test_bits_per_feature_out_of_range(bits):
    with pytest.raises(ValidationError, match="bits_per_feature"):
        _field(PersonFeature.SEX, bits=bits)


def test_filter_needs_a_field():
    with pytest.raises(ValidationError, match="fields"):
        FilterSpec(length_bits=64, fields=())


def test_an_address_feature_in_the_person_filter_is_refused():
    data = default_schema().model_dump(mode="json")
    data["person_filter"]["fields"].append(
        {"feature": "postcode", "tokenizer": "exact", "bits_per_feature": 5}
    )
    with pytest.raises(ValidationError, match="person_filter: postcode is not a person feature"):
        LinkageSchema.model_validate(data)


def test_a_person_feature_in_the_address_filter_is_refused():
    data = default_schema().model_dump(mode="json")
    data["address_filter"]["fields"].append(
        {"feature": "family_name", "tokenizer": "bigrams", "bits_per_feature": 5}
    )
    with pytest.raises(
        ValidationError, match="address_filter: family_name is not an address feature"
    ):
        LinkageSchema.model_validate(data)


def test_duplicate_features_in_a_filter_are_refused():
    with pytest.raises(ValidationError, match="each feature may appear once"):
        FilterSpec(
            length_bits=64,
            fields=(
                _field(PersonFeature.GIVEN_NAME, Tokenizer.BIGRAMS),
                _field(PersonFeature.GIVEN_NAME, Tokenizer.EXACT),
            ),
        )


def test_duplicate_blocking_key_names_are_refused():
    data = default_schema().model_dump(mode="json")
    data["blocking_keys"].append({"name": data["blocking_keys"][0]["name"], "parts": ["sex"]})
    with pytest.raises(ValidationError, match="blocking key names must be unique"):
        LinkageSchema.model_validate(data)


@pytest.mark.parametrize("name", ["", "Family", "1key", "has-dash", "k" * 33])
def test_bad_blocking_key_names_are_refused(name):
    with pytest.raises(ValidationError, match="name"):
        BlockingKeySpec(name=name, parts=(BlockingPart.DOB,))


def test_a_blocking_key_needs_a_part():
    with pytest.raises(ValidationError, match="parts"):
        BlockingKeySpec(name="empty", parts=())


@pytest.mark.parametrize(
    "path",
    [(), ("person_filter",), ("person_filter", "fields", 0), ("blocking_keys", 0)],
    ids=["schema", "filter", "filter field", "blocking key"],
)
def test_unknown_fields_are_refused(path):
    data = default_schema().model_dump(mode="json")
    node = copy.deepcopy(data)
    target = node
    for step in path:
        target = target[step]
    target["salt_rounds"] = 3
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        LinkageSchema.model_validate(node)


@pytest.mark.parametrize("version", [0, 2, "1"])
def test_only_version_1_is_accepted(version):
    data = default_schema().model_dump(mode="json")
    data["version"] = version
    with pytest.raises(ValidationError, match="version"):
        LinkageSchema.model_validate_json(json.dumps(data))


@pytest.mark.parametrize(
    ("key", "value"),
    [("kdf", "pbkdf2"), ("feature_hash", "sha1"), ("token_hash", "md5")],
)
def test_only_the_v1_algorithms_are_accepted(key, value):
    data = default_schema().model_dump(mode="json")
    data[key] = value
    with pytest.raises(ValidationError, match=key):
        LinkageSchema.model_validate(data)


@pytest.mark.parametrize("pad", [127, 8193])
def test_identity_pad_bytes_out_of_range(pad):
    data = default_schema().model_dump(mode="json")
    data["identity_pad_bytes"] = pad
    with pytest.raises(ValidationError, match="identity_pad_bytes"):
        LinkageSchema.model_validate(data)


def test_schema_is_frozen():
    schema = default_schema()
    with pytest.raises(ValidationError, match="frozen"):
        schema.identity_pad_bytes = 1024  # type: ignore[misc]


# --- output_bits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hardening", "expected"),
    [(Hardening.NONE, 1024), (Hardening.BALANCE, 2048), (Hardening.XOR_FOLD, 512)],
)
def test_output_bits(hardening, expected):
    spec = FilterSpec(length_bits=1024, fields=(_field(PersonFeature.SEX),), hardening=hardening)
    assert spec.output_bits == expected


@pytest.mark.parametrize("bits", [64, 8192])
def test_output_bits_at_the_length_limits(bits):
    def spec(hardening: str) -> FilterSpec:
        return FilterSpec(
            length_bits=bits, fields=(_field(PersonFeature.SEX),), hardening=hardening
        )

    assert spec("none").output_bits == bits
    assert spec("balance").output_bits == 2 * bits
    assert spec("xor_fold").output_bits == bits // 2
