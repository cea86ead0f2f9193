"""Extract wire models: what they accept, what they refuse, and what gets signed."""

from __future__ import annotations

import base64
import datetime as dt
import json
import typing

import pytest
from pydantic import ValidationError

from protocols import (
    EXTRACT_FORMAT,
    INDICATOR_INFO,
    ExtractHeader,
    ExtractTrailer,
    Indicator,
    IndicatorType,
    ProblemArea,
    TokenisedRecord,
    age_span,
    canonical_json,
    clear_age,
    signed_message,
)
from protocols._extract import SIGNATURE_CONTEXT
from protocols._indicators import Unit

B64 = base64.b64encode(bytes(range(40))).decode()


@pytest.fixture
def header_data():
    """Factory: valid header data, with overrides."""

    def make(**overrides):
        data = {
            "agency_id": "school",
            "extract_id": "0123456789abcdef" * 2,
            "extract_type": "education",
            "created_at": "2026-11-01T09:30:00Z",
            "extract_date": "2026-11-01",
            "schema_fingerprint": "ab" * 32,
            "signing_key_id": "0011223344556677",
            "seal_key_id": "8899aabbccddeeff",
        }
        data.update(overrides)
        return data

    return make


@pytest.fixture
def record_data():
    """Factory: valid record data, with overrides."""

    def make(**overrides):
        data = {
            "record_ref": "f" * 32,
            "clk": B64,
            "address_clk": B64,
            "exact_tokens": {"nhs_number": B64},
            "blocking_keys": {"family_dob": B64},
            "age": 14,
            "sex": "M",
            "postcode_district": "LS6",
            "indicators": [{"type": "attendance_pct", "value": 86.5, "date": "2026-07-31"}],
            "sealed_identity": B64,
        }
        data.update(overrides)
        return data

    return make


@pytest.fixture
def trailer_data():
    """Factory: valid trailer data, with overrides."""

    def make(**overrides):
        data = {"record_count": 3, "records_sha256": "0" * 64, "signature": B64}
        data.update(overrides)
        return data

    return make


# --- header ------------------------------------------------------------------------------


def test_header_accepts_valid_data(header_data):
    header = ExtractHeader.model_validate(header_data())
    assert header.format == EXTRACT_FORMAT
    assert header.extract_date == dt.date(2026, 11, 1)
    assert ExtractHeader.model_validate_json(header.model_dump_json()) == header


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format", "family-linkage/extract/v3"),
        ("agency_id", "School"),
        ("agency_id", "s"),
        ("agency_id", "1school"),
        ("extract_id", "0123456789ABCDEF" * 2),
        ("extract_id", "0" * 31),
        ("extract_type", "Education"),
        ("extract_date", "01/11/2026"),
        ("created_at", "yesterday"),
        ("schema_fingerprint", "AB" * 32),
        ("schema_fingerprint", "ab" * 31),
        ("signing_key_id", "00112233445566"),
        ("seal_key_id", "8899aabbccddeefg"),
    ],
)
def test_header_rejects_bad_values(header_data, field, value):
    with pytest.raises(ValidationError) as exc:
        ExtractHeader.model_validate(header_data(**{field: value}))
    assert exc.value.errors()[0]["loc"] == (field,)


def test_header_refuses_the_retired_v1_format_saying_why(header_data):
    with pytest.raises(ValidationError, match="retired: it sent exact ages of adults"):
        ExtractHeader.model_validate(header_data(format="family-linkage/extract/v1"))


def test_header_rejects_unknown_fields(header_data):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ExtractHeader.model_validate(header_data(operator="alice"))


@pytest.mark.parametrize("field", ["agency_id", "extract_id", "schema_fingerprint"])
def test_header_requires_its_fields(header_data, field):
    data = header_data()
    del data[field]
    with pytest.raises(ValidationError, match="Field required"):
        ExtractHeader.model_validate(data)


# --- records -----------------------------------------------------------------------------


def test_record_accepts_valid_data(record_data):
    record = TokenisedRecord.model_validate(record_data())
    assert record.indicators[0].type is IndicatorType.ATTENDANCE_PCT
    assert TokenisedRecord.model_validate_json(record.model_dump_json()) == record


def test_record_needs_only_a_ref_a_clk_and_a_sealed_identity():
    record = TokenisedRecord(record_ref="0" * 32, clk="", sealed_identity=B64)
    assert record.address_clk is None and record.exact_tokens == {} and record.indicators == ()


@pytest.mark.parametrize("district", ["LS6", "E1", "W1A", "SW1A", "EC1V", "M60"])
def test_record_accepts_postcode_districts(record_data, district):
    assert TokenisedRecord.model_validate(record_data(postcode_district=district))


@pytest.mark.parametrize("age", [0, 18])
def test_record_accepts_ages_at_the_limits(record_data, age):
    assert TokenisedRecord.model_validate(record_data(age=age)).age == age


def test_record_sends_whole_years_only_under_25(record_data):
    adult = record_data(age=24, postcode_district=None)
    assert TokenisedRecord.model_validate(adult).age == 24
    with pytest.raises(ValidationError) as exc:
        TokenisedRecord.model_validate(record_data(age=25, postcode_district=None))
    assert exc.value.errors()[0]["loc"] == ("age",)


@pytest.mark.parametrize("band", ["25-34", "35-49", "50+"])
def test_record_accepts_age_bands(record_data, band):
    data = record_data(age=None, age_band=band, postcode_district=None)
    assert TokenisedRecord.model_validate(data).age_band == band


@pytest.mark.parametrize("band", ["18-24", "25-35", "50-"])
def test_record_rejects_other_bands(record_data, band):
    with pytest.raises(ValidationError):
        TokenisedRecord.model_validate(record_data(age=None, age_band=band, postcode_district=None))


def test_record_sends_an_age_or_a_band_not_both(record_data):
    with pytest.raises(ValidationError, match="age or age_band, not both"):
        TokenisedRecord.model_validate(
            record_data(age=20, age_band="25-34", postcode_district=None)
        )


@pytest.mark.parametrize(
    ("age", "band", "indicators", "allowed"),
    [
        (18, None, [], True),  # a child's record: the family's district comes from it
        (19, None, [], False),
        (None, "35-49", [], False),
        (None, None, [], False),  # no age: not known to be a child
        (None, "25-34", [{"type": "expectant_parent", "value": 1, "date": "2026-07-31"}], True),
    ],
)
def test_record_carries_a_district_only_for_a_child_or_an_expectant_parent(
    record_data, age, band, indicators, allowed
):
    data = record_data(age=age, age_band=band, indicators=indicators)
    if allowed:
        assert TokenisedRecord.model_validate(data).postcode_district == "LS6"
    else:
        with pytest.raises(ValidationError, match="postcode_district is sent only"):
            TokenisedRecord.model_validate(data)


@pytest.mark.parametrize(
    ("age", "sent"),
    [(0, (0, None)), (24, (24, None)), (25, (None, "25-34")), (34, (None, "25-34"))]
    + [(35, (None, "35-49")), (49, (None, "35-49")), (50, (None, "50+")), (130, (None, "50+"))],
)
def test_clear_age_bands_from_25(age, sent):
    assert clear_age(age) == sent
    low, high = age_span(*sent) or (-1, -1)
    assert low <= age <= high


def test_clear_age_refuses_impossible_ages():
    with pytest.raises(ValueError, match="age 131"):
        clear_age(131)


BAD_RECORDS = {
    "record_ref upper-case": ("record_ref", "F" * 32),
    "record_ref short": ("record_ref", "f" * 31),
    "record_ref long": ("record_ref", "f" * 33),
    "record_ref not hex": ("record_ref", "g" * 32),
    "record_ref padded": ("record_ref", " " + "f" * 31),
    "clk with space": ("clk", "abc def="),
    "clk url-safe alphabet": ("clk", "ab-_"),
    "clk too much padding": ("clk", "abc==="),
    "clk plaintext": ("clk", "William Smith"),
    "clk too long": ("clk", "A" * 16388),
    "address_clk not base64": ("address_clk", "LS6 2AB"),
    "sealed_identity not base64": ("sealed_identity", "{}"),
    "postcode district lower-case": ("postcode_district", "ls6"),
    "postcode district full postcode": ("postcode_district", "LS6 2AB"),
    "postcode district no digit": ("postcode_district", "LS"),
    "postcode district starts with a digit": ("postcode_district", "6LS"),
    "postcode district too long": ("postcode_district", "LSS66"),
    "age negative": ("age", -1),
    "age too old": ("age", 131),
    "sex unknown": ("sex", "X"),
    "sex lower-case": ("sex", "m"),
    "blocking key upper-case": ("blocking_keys", {"Family_dob": B64}),
    "blocking key starts with a digit": ("blocking_keys", {"1key": B64}),
    "blocking key with a dash": ("blocking_keys", {"family-dob": B64}),
    "blocking key too long": ("blocking_keys", {"k" * 33: B64}),
    "blocking key value not base64": ("blocking_keys", {"family_dob": "smith j"}),
    "exact token unknown identifier": ("exact_tokens", {"passport": B64}),
    "exact token value not base64": ("exact_tokens", {"nhs_number": "943 476 5919"}),
}


@pytest.mark.parametrize("change", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_record_rejects(record_data, change):
    field, value = change
    with pytest.raises(ValidationError) as exc:
        TokenisedRecord.model_validate(record_data(**{field: value}))
    assert exc.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize("name", ["given_name", "nhs_number", "dob"])
def test_record_rejects_unknown_fields(record_data, name):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TokenisedRecord.model_validate(record_data(**{name: "x"}))


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf"), float("-inf")], ids=repr)
def test_record_rejects_an_indicator_with_a_bad_value(record_data, value):
    bad = {"type": "attendance_pct", "value": value, "date": "2026-07-31"}
    with pytest.raises(ValidationError) as exc:
        TokenisedRecord.model_validate(record_data(indicators=[bad]))
    assert exc.value.errors()[0]["loc"] == ("indicators", 0, "value")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-1", "-1e-9"])
def test_record_rejects_a_bad_indicator_value_in_json(record_data, text):
    line = json.dumps(record_data(indicators=[])).replace(
        '"indicators": []',
        f'"indicators": [{{"type": "attendance_pct", "value": {text}, "date": "2026-07-31"}}]',
    )
    with pytest.raises(ValidationError):
        TokenisedRecord.model_validate_json(line)


def test_record_rejects_an_unknown_indicator(record_data):
    bad = {"type": "astrology", "value": 1, "date": "2026-07-31"}
    with pytest.raises(ValidationError, match="indicators.0.type"):
        TokenisedRecord.model_validate(record_data(indicators=[bad]))


def test_indicator_accepts_zero_and_rejects_unknown_fields():
    assert Indicator(type=IndicatorType.PRISON_LEAVER, value=0, date=dt.date(2026, 1, 1))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Indicator.model_validate(
            {"type": "prison_leaver", "value": 1, "date": "2026-01-01", "unit": "flag"}
        )


# --- trailer -----------------------------------------------------------------------------


def test_trailer_accepts_valid_data(trailer_data):
    trailer = ExtractTrailer.model_validate(trailer_data())
    assert ExtractTrailer.model_validate_json(trailer.model_dump_json()) == trailer
    assert ExtractTrailer.model_validate(trailer_data(record_count=0)).record_count == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("record_count", -1),
        ("records_sha256", "0" * 63),
        ("records_sha256", "A" * 64),
        ("signature", "not a signature!"),
    ],
)
def test_trailer_rejects_bad_values(trailer_data, field, value):
    with pytest.raises(ValidationError) as exc:
        ExtractTrailer.model_validate(trailer_data(**{field: value}))
    assert exc.value.errors()[0]["loc"] == (field,)


def test_trailer_rejects_unknown_fields(trailer_data):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ExtractTrailer.model_validate(trailer_data(comment="hi"))


# --- the signed message ---------------------------------------------------------------------


def test_signed_message_is_domain_separated_canonical_json(header_data):
    header = ExtractHeader.model_validate(header_data())
    message = signed_message(header, 3, "0" * 64)
    assert SIGNATURE_CONTEXT.endswith(b"\n") and b"extract signature v1" in SIGNATURE_CONTEXT
    assert message.startswith(SIGNATURE_CONTEXT)
    body = message[len(SIGNATURE_CONTEXT) :]
    expected = {
        "header": header.model_dump(mode="json"),
        "record_count": 3,
        "records_sha256": "0" * 64,
    }
    assert body == canonical_json(expected)
    assert json.loads(body) == expected


# One different, valid value for every header field but the single-valued format.
HEADER_CHANGES = {
    "agency_id": "police",
    "extract_id": "fedcba9876543210" * 2,
    "extract_type": "education_termly",
    "created_at": "2026-11-01T09:30:01Z",
    "extract_date": "2026-11-02",
    "schema_fingerprint": "ab" * 31 + "ac",
    "signing_key_id": "0011223344556678",
    "seal_key_id": "8899aabbccddeefe",
}


def test_header_changes_cover_every_field():
    assert set(HEADER_CHANGES) == set(ExtractHeader.model_fields) - {"format"}


@pytest.mark.parametrize(("field", "value"), HEADER_CHANGES.items())
def test_signed_message_changes_with_any_header_field(header_data, field, value):
    base = signed_message(ExtractHeader.model_validate(header_data()), 3, "0" * 64)
    other = signed_message(ExtractHeader.model_validate(header_data(**{field: value})), 3, "0" * 64)
    assert other != base
    assert other.startswith(SIGNATURE_CONTEXT)


def test_signed_message_changes_with_the_count_and_the_digest(header_data):
    header = ExtractHeader.model_validate(header_data())
    base = signed_message(header, 3, "0" * 64)
    assert signed_message(header, 3, "0" * 64) == base
    assert signed_message(header, 4, "0" * 64) != base
    assert signed_message(header, 0, "0" * 64) != base
    assert signed_message(header, 3, "0" * 63 + "1") != base


def test_signed_message_does_not_depend_on_how_the_header_was_written(header_data):
    a = ExtractHeader.model_validate(header_data(created_at="2026-11-01T09:30:00Z"))
    b = ExtractHeader.model_validate(header_data(created_at="2026-11-01T09:30:00+00:00"))
    assert signed_message(a, 1, "0" * 64) == signed_message(b, 1, "0" * 64)


# --- indicator vocabulary ---------------------------------------------------------------------


def test_every_indicator_type_has_info():
    assert set(INDICATOR_INFO) == set(IndicatorType)


def test_indicator_info_values_are_known_areas_and_units():
    units = set(typing.get_args(Unit))
    for kind, (area, unit) in INDICATOR_INFO.items():
        assert isinstance(area, ProblemArea), kind
        assert unit in units, kind


def test_every_problem_area_has_an_indicator():
    assert {area for area, _ in INDICATOR_INFO.values()} == set(ProblemArea)


def test_indicator_wire_names_are_stable_identifiers():
    for kind in IndicatorType:
        assert kind.value == kind.name.lower()
