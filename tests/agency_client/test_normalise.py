"""Tests for agency_client._normalise: known answers with provenance, then properties."""

from __future__ import annotations

import datetime
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agency_client import _normalise as norm
from agency_client._errors import AgencyClientError
from agency_client._normalise import (
    NormaliseError,
    NoSuchDay,
    Postcode,
    address_line,
    canonical_forename,
    family_name,
    family_name_parts,
    fold,
    given_names,
    house_number,
    local_identifier,
    nhs_number,
    ni_number,
    parse_date,
    postcode,
    postcode_any,
    sex,
    soundex,
    upn,
)
from agency_client._rows import parse_date_any

# Seeded so a failure reproduces on every machine; no deadline because CI boxes vary.
PROPERTY = settings(derandomize=True, max_examples=400, deadline=None)

FOLDED = re.compile(r"(?:[a-z0-9]+(?: [a-z0-9]+)*)?")


# ---------------------------------------------------------------------------
# fold
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("José", "jose"),
        ("Zoë", "zoe"),
        ("ZOË", "zoe"),
        ("Øyvind", "oyvind"),
        ("Straße", "strasse"),
        ("Æthelred", "aethelred"),
        ("Łukasz", "lukasz"),
        ("Œuvre", "oeuvre"),
        ("Þóra", "thora"),
        ("Đorđe", "dorde"),
        ("Siân", "sian"),
        ("Björk Guðmundsdóttir", "bjork gudmundsdottir"),
        ("İlhan", "ilhan"),
        ("O'Brien", "obrien"),
        ("O’Brien", "obrien"),  # right single quotation mark, the common word-processor form
        ("O´Brien", "obrien"),  # acute accent used as an apostrophe; NFKD would space it
        ("Smith-Jones", "smith jones"),
        ("  Anne   Marie\t", "anne marie"),
        ("St. John's Rd., 10", "st johns rd 10"),
        ("ﬁona", "fiona"),  # ligature decomposed by NFKD
        ("Ｊｏｈｎ", "john"),  # full-width letters
        ("Иван Smith", "smith"),  # non-Latin letters cannot be expressed; they separate
        ("", ""),
        ("---", ""),
    ],
)
def test_fold_known_answers(raw: str, expected: str) -> None:
    assert fold(raw) == expected


@PROPERTY
@given(st.text())
def test_fold_is_idempotent_and_restricted_to_a_z_0_9_space(text: str) -> None:
    once = fold(text)
    assert FOLDED.fullmatch(once), once
    assert fold(once) == once


# ---------------------------------------------------------------------------
# given names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John", ("john",)),
        ("Mr John Paul", ("john", "paul")),
        ("MRS. ANNE", ("anne",)),
        ("Rev Dr Ann", ("ann",)),
        ("Master Tom", ("tom",)),
        ("Mary-Jane", ("maryjane",)),
        ("Mary - Jane", ("maryjane",)),
        ("Mary–Jane", ("maryjane",)),  # en dash
        ("Maryjane", ("maryjane",)),
        ("J. R.", ("j", "r")),
        ("J R R", ("j", "r", "r")),
        ("John A", ("john", "a")),
        ("José María", ("jose", "maria")),
        ("D'Andre", ("dandre",)),
        ("John Jr", ("john",)),
        ("John Smith Jnr", ("john", "smith")),
        ("Junior", ("junior",)),  # a suffix alone is kept: it may be the name
        ("Twin 1", ()),
        ("Baby", ()),
        ("Baby Boy", ()),
        ("Baby of Jane Smith", ()),
        ("Infant", ()),
        ("Unknown", ()),
        ("UNKNOWN", ()),
        ("Not Known", ()),
        ("n/a", ()),
        ("N/K", ()),
        ("xxx", ()),
        ("XX", ()),
        ("-", ()),
        ("null", ()),
        ("None", ()),
        ("Mr Unknown", ()),
        ("", ()),
        ("   ", ()),
        (None, ()),
    ],
)
def test_given_names_known_answers(raw: str | None, expected: tuple[str, ...]) -> None:
    assert given_names(raw) == expected


@PROPERTY
@given(st.text())
def test_given_names_never_raise_and_are_idempotent(text: str) -> None:
    words = given_names(text)
    assert all(FOLDED.fullmatch(w) and " " not in w and w for w in words)
    assert given_names(" ".join(words)) == words


# ---------------------------------------------------------------------------
# forename variants
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # from the brief
        ("bill", "william"),
        ("billy", "william"),
        ("will", "william"),
        ("willy", "william"),
        ("liam", "william"),
        ("bob", "robert"),
        ("bobby", "robert"),
        ("rob", "robert"),
        ("robbie", "robert"),
        ("peggy", "margaret"),
        ("maggie", "margaret"),
        ("meg", "margaret"),
        ("kate", "catherine"),
        ("katie", "catherine"),
        ("kath", "catherine"),
        ("cath", "catherine"),
        ("catherine", "catherine"),
        ("katherine", "catherine"),
        ("kathryn", "catherine"),
        ("jim", "james"),
        ("jimmy", "james"),
        ("jamie", "james"),
        ("jon", "john"),
        ("johnny", "john"),
        ("jack", "john"),
        ("beth", "elizabeth"),
        ("liz", "elizabeth"),
        ("lizzie", "elizabeth"),
        ("betty", "elizabeth"),
        ("eliza", "elizabeth"),
        ("mohammed", "muhammad"),
        ("muhammad", "muhammad"),
        ("mohammad", "muhammad"),
        ("mohamed", "muhammad"),
        ("aisha", "aisha"),
        ("ayesha", "aisha"),
        ("stephen", "stephen"),
        ("steven", "stephen"),
        ("sean", "sean"),
        ("shaun", "sean"),
        ("zoe", "zoe"),
        ("zoey", "zoe"),
        ("leigh", "lee"),
        ("lee", "lee"),
        # further groups
        ("elzbieta", "elizabeth"),  # table entry written "elżbieta", folded at build time
        ("harry", "henry"),
        ("alfie", "alfred"),
        ("micheal", "michael"),
        ("ciaran", "kieran"),
        # unknown and deliberately ambiguous names map to themselves
        ("zebedee", "zebedee"),
        ("chris", "chris"),
        ("alex", "alex"),
        ("sam", "sam"),
        ("charlie", "charlie"),
        ("", ""),
    ],
)
def test_canonical_forename_known_answers(name: str, expected: str) -> None:
    assert canonical_forename(name) == expected


def test_forename_table_has_at_least_150_groups() -> None:
    assert len(norm._FORENAME_GROUPS) >= 150


def test_forename_variant_belongs_to_exactly_one_group() -> None:
    names = [fold(v) for vs in norm._FORENAME_GROUPS.values() for v in vs]
    names += list(norm._FORENAME_GROUPS)
    duplicates = [n for n, count in Counter(names).items() if count > 1]
    assert duplicates == []


def test_forename_table_is_folded_and_canonical_is_a_fixed_point() -> None:
    for name, canonical in norm.FORENAME_VARIANTS.items():
        assert re.fullmatch(r"[a-z]+", name), name
        assert canonical_forename(canonical) == canonical


# ---------------------------------------------------------------------------
# family names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "whole", "parts"),
    [
        ("Smith", "smith", ("smith",)),
        ("Smith-Jones", "smithjones", ("smith", "jones")),
        ("Smith Jones", "smithjones", ("smith", "jones")),
        ("SMITH - JONES", "smithjones", ("smith", "jones")),
        ("O'Neill", "oneill", ("oneill",)),
        ("O Neill", "oneill", ("oneill",)),
        ("Mc Donald", "mcdonald", ("mcdonald",)),
        ("McDonald", "mcdonald", ("mcdonald",)),
        ("Mac Donald", "macdonald", ("macdonald",)),
        ("van der Berg", "vanderberg", ("vanderberg",)),
        ("Van Der Berg-Smith", "vanderbergsmith", ("vanderberg", "smith")),
        ("de la Cruz", "delacruz", ("delacruz",)),
        ("St. John", "stjohn", ("stjohn",)),
        ("Saint John", "stjohn", ("stjohn",)),
        ("Al Hassan", "alhassan", ("alhassan",)),
        ("Müller", "muller", ("muller",)),
        ("Le", "le", ("le",)),  # a particle on its own is a surname
        ("Unknown", None, ()),
        ("Not Known", None, ()),
        ("N/K", None, ()),
        ("xxxx", None, ()),
        ("-", None, ()),
        ("", None, ()),
        (None, None, ()),
    ],
)
def test_family_name_known_answers(
    raw: str | None, whole: str | None, parts: tuple[str, ...]
) -> None:
    assert family_name(raw) == whole
    assert family_name_parts(raw) == parts


@PROPERTY
@given(st.text())
def test_family_name_never_raises_is_idempotent_and_joins_its_parts(text: str) -> None:
    whole = family_name(text)
    parts = family_name_parts(text)
    assert whole == ("".join(parts) or None)
    if whole is not None:
        assert re.fullmatch(r"[a-z0-9]+", whole)
        assert family_name(whole) == whole
    assert family_name_parts(" ".join(parts)) == parts


# ---------------------------------------------------------------------------
# dates
# ---------------------------------------------------------------------------

D = datetime.date


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        ("01/02/2001", "%d/%m/%Y", D(2001, 2, 1)),
        ("1/2/2001", "%d/%m/%Y", D(2001, 2, 1)),
        ("  01/02/2001  ", "%d/%m/%Y", D(2001, 2, 1)),
        ("01/02/2001 00:00", "%d/%m/%Y", D(2001, 2, 1)),
        ("01/02/2001 00:00:00", "%d/%m/%Y", D(2001, 2, 1)),
        ("2001-02-01", "%Y-%m-%d", D(2001, 2, 1)),
        ("2001-02-01T00:00:00", "%Y-%m-%d", D(2001, 2, 1)),
        ("2001-02-01T00:00:00.000Z", "%Y-%m-%d", D(2001, 2, 1)),
        ("2001-02-01 00:00:00+01:00", "%Y-%m-%d", D(2001, 2, 1)),
        ("01-Feb-2001", "%d-%b-%Y", D(2001, 2, 1)),
        ("01-FEB-2001", "%d-%b-%Y", D(2001, 2, 1)),
        ("1 February 2001", "%d %B %Y", D(2001, 2, 1)),
        ("20010201", "%Y%m%d", D(2001, 2, 1)),
        ("29/02/2000", "%d/%m/%Y", D(2000, 2, 29)),
        ("02/01/2001", "%m/%d/%Y", D(2001, 2, 1)),
        ("2001-02-01 13:45", "%Y-%m-%d %H:%M", D(2001, 2, 1)),  # strptime path
        ("", "%d/%m/%Y", None),
        ("   ", "%d/%m/%Y", None),
        (None, "%d/%m/%Y", None),
        ("unknown", "%d/%m/%Y", None),
        ("N/K", "%d/%m/%Y", None),
        ("00/00/0000", "%d/%m/%Y", None),
        ("-", "%d/%m/%Y", None),
    ],
)
def test_parse_date_known_answers(raw: str | None, fmt: str, expected: D | None) -> None:
    assert parse_date(raw, fmt) == expected


def test_parse_date_two_digit_year_is_never_in_the_future() -> None:
    today = D.today()
    yy_now = today.year % 100
    this_century = today.year - yy_now
    assert parse_date(f"01.01.{yy_now:02d}", "%d.%m.%y") == D(this_century + yy_now, 1, 1)
    next_year = (yy_now + 1) % 100
    expected_year = this_century + next_year - (100 if next_year > yy_now else 0)
    assert parse_date(f"01.01.{next_year:02d}", "%d.%m.%y") == D(expected_year, 1, 1)
    assert parse_date("01.02.70", "%d.%m.%y") == D(1970, 2, 1)


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("2001-02-01", "%d/%m/%Y"),  # another agency's format
        ("01/02/01", "%d/%m/%Y"),  # two-digit year under a four-digit format
        ("01-Fbr-2001", "%d-%b-%Y"),  # misspelt month
        ("01/02/2001 garbage", "%d/%m/%Y"),
        ("2001-02-01 xx", "%Y-%m-%d %H:%M"),  # strptime path
    ],
)
def test_parse_date_rejects_with_value_and_format_named(raw: str, fmt: str) -> None:
    with pytest.raises(NormaliseError) as info:
        parse_date(raw, fmt)
    assert not isinstance(info.value, NoSuchDay)
    assert str(info.value) == f"date {raw!r} does not match the expected format {fmt!r}"


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("31/02/2001", "%d/%m/%Y"),  # no such day
        ("01/13/2001", "%d/%m/%Y"),  # no such month
        ("29/02/2001", "%d/%m/%Y"),  # not a leap year
        ("31/04/01", "%d/%m/%y"),  # two-digit year
        ("31-Feb-2001", "%d-%b-%Y"),
        ("31/02/2001 10:30", "%d/%m/%Y %H:%M"),  # strptime path
    ],
)
def test_a_date_in_the_format_that_is_no_day_is_said_to_be_so(raw: str, fmt: str) -> None:
    with pytest.raises(NoSuchDay) as info:
        parse_date(raw, fmt)
    assert str(info.value) == f"date {raw!r} is not a real date"
    assert isinstance(info.value, NormaliseError)


def test_several_formats_say_a_date_is_no_day_when_one_format_fits_its_shape() -> None:
    formats = ("%Y-%m-%d", "%d/%m/%Y")
    with pytest.raises(NoSuchDay, match=r"^date '31/02/2013' is not a real date$"):
        parse_date_any("31/02/2013", formats)
    with pytest.raises(NormaliseError, match="matches none of the expected formats") as info:
        parse_date_any("2013/02/31", formats)
    assert not isinstance(info.value, NoSuchDay)
    assert parse_date_any("00/00/0000", formats) is None  # all zeros: missing, as before


_FOUR_DIGIT_FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%d-%b-%Y", "%Y%m%d", "%d %B %Y", "%m/%d/%Y"]
_TWO_DIGIT_FORMATS = ["%d.%m.%y", "%d/%m/%y", "%y%m%d"]


@PROPERTY
@given(
    st.dates(min_value=D(1900, 1, 1), max_value=D(2099, 12, 31)),
    st.sampled_from(_FOUR_DIGIT_FORMATS),
    st.sampled_from(["", " 00:00", "T00:00:00", " 12:30:00"]),
)
def test_parse_date_round_trips_four_digit_years(day: D, fmt: str, tail: str) -> None:
    assert parse_date(day.strftime(fmt) + tail, fmt) == day


@PROPERTY
@given(st.integers(min_value=0, max_value=36_499), st.sampled_from(_TWO_DIGIT_FORMATS))
def test_parse_date_round_trips_two_digit_years_in_the_last_century(
    days_ago: int, fmt: str
) -> None:
    day = D.today() - datetime.timedelta(days=days_ago)
    assert parse_date(day.strftime(fmt), fmt) == day


# ---------------------------------------------------------------------------
# sex
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("M", "M"),
        ("m", "M"),
        (" Male ", "M"),
        ("MAN", "M"),
        ("boy", "M"),
        ("1", "M"),
        ("F", "F"),
        ("female", "F"),
        ("Woman", "F"),
        ("GIRL", "F"),
        ("2", "F"),
        ("U", None),
        ("unknown", None),
        ("Not Known", None),
        ("X", None),
        ("0", None),
        ("9", None),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_sex_known_answers(raw: str | None, expected: str | None) -> None:
    assert sex(raw) == expected


def test_sex_extra_codes_are_case_insensitive_and_take_precedence() -> None:
    extra = {"MA": "M", "FE": "F", "1": "F", "Bo": "M"}
    assert sex("ma", extra) == "M"
    assert sex(" fe ", extra) == "F"
    assert sex("1", extra) == "F"  # the agency's own meaning of "1" wins
    assert sex("BO", extra) == "M"  # a hand-written key that is not upper case
    assert sex("male", extra) == "M"  # built-ins still apply


@pytest.mark.parametrize("raw", ["Q", "3", "mail", "femal", "MF"])
def test_sex_rejects_unknown_codes_naming_them(raw: str) -> None:
    with pytest.raises(NormaliseError, match=re.escape(repr(raw))):
        sex(raw)


def test_sex_rejects_extra_mapping_to_something_other_than_m_or_f() -> None:
    with pytest.raises(NormaliseError, match="expected a mapping to M or F"):
        sex("Z", {"Z": "Q"})


@PROPERTY
@given(
    st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["m", "F ", " 2", "u", "Boy"])),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.sampled_from(["M", "F", "X"]))),
)
def test_sex_returns_m_f_none_or_raises_normalise_error(
    raw: str | None, extra: dict[str, str] | None
) -> None:
    try:
        result = sex(raw, extra)
    except NormaliseError:
        return
    assert result in {"M", "F", None}


# ---------------------------------------------------------------------------
# postcodes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "unit", "outward", "sector"),
    [
        # one example of each format, from the Royal Mail / ONS format table
        ("M1 1AE", "M1 1AE", "M1", "M1 1"),  # A9 9AA
        ("B33 8TH", "B33 8TH", "B33", "B33 8"),  # A99 9AA
        ("W1A 0AX", "W1A 0AX", "W1A", "W1A 0"),  # A9A 9AA
        ("CR2 6XH", "CR2 6XH", "CR2", "CR2 6"),  # AA9 9AA
        ("DN55 1PT", "DN55 1PT", "DN55", "DN55 1"),  # AA99 9AA
        ("EC1A 1BB", "EC1A 1BB", "EC1A", "EC1A 1"),  # AA9A 9AA
        ("GIR 0AA", "GIR 0AA", "GIR", "GIR 0"),
        # spacing and case
        ("sw1a1aa", "SW1A 1AA", "SW1A", "SW1A 1"),
        (" SW1A  1AA ", "SW1A 1AA", "SW1A", "SW1A 1"),
        ("s w 1 a 1 a a", "SW1A 1AA", "SW1A", "SW1A 1"),
        ("SW1A-1AA", "SW1A 1AA", "SW1A", "SW1A 1"),
        # position-determined fixes
        ("SW1A OAA", "SW1A 0AA", "SW1A", "SW1A 0"),  # O in the inward digit position
        ("SW1A IAA", "SW1A 1AA", "SW1A", "SW1A 1"),  # I in the inward digit position
        ("0X1 1AA", "OX1 1AA", "OX1", "OX1 1"),  # zero as the first (always letter) char
        ("1G1 1AA", "IG1 1AA", "IG1", "IG1 1"),
    ],
)
def test_postcode_known_answers(raw: str, unit: str, outward: str, sector: str) -> None:
    assert postcode(raw) == Postcode(unit=unit, outward=outward, sector=sector)


@pytest.mark.parametrize(
    "raw", [None, "", "   ", "unknown", "NFA", "ZZ99 3VZ", "zz993cz", "BFPO 61"]
)
def test_postcode_missing_or_non_geographic_is_none(raw: str | None) -> None:
    assert postcode(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "SW1A",  # outward only
        "SW1A 1A",
        "SW1A 1AAA",
        "QA1 1AA",  # Q never first
        "AI1 1AA",  # I never second
        "SW1A 1CA",  # C never in the inward code
        "SW1A 1AK",  # K never in the inward code
        "W1I 1AA",  # I not allowed in A9A
        "EC1C 1AA",  # C not allowed in AA9A
        "12345",
        "LONDON",
    ],
)
def test_postcode_rejects_invalid_naming_the_value(raw: str) -> None:
    with pytest.raises(NormaliseError, match=re.escape(repr(raw))):
        postcode(raw)


_VALID_POSTCODE = st.from_regex(
    r"\A(?:" + norm._OUTWARD.pattern + r") " + norm._INWARD.pattern + r"\Z", fullmatch=True
).filter(lambda p: not p.startswith("ZZ99"))


@PROPERTY
@given(_VALID_POSTCODE, st.data())
def test_postcode_accepts_any_case_and_spacing(unit: str, data: st.DataObject) -> None:
    compact = unit.replace(" ", "")
    chars = [
        (c.lower() if data.draw(st.booleans()) else c)
        + data.draw(st.sampled_from(["", "", " ", "  "]))
        for c in compact
    ]
    raw = data.draw(st.sampled_from(["", " ", "\t"])) + "".join(chars)
    result = postcode(raw)
    assert result is not None
    assert result.unit == unit
    assert result.outward == unit.split(" ")[0]
    assert result.sector == unit[:-2]


@PROPERTY
@given(st.text(max_size=12))
def test_postcode_raises_only_normalise_error(text: str) -> None:
    try:
        postcode(text)
    except NormaliseError:
        pass


# ---------------------------------------------------------------------------
# addresses
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["10 High St"], "10 high street"),
        (["Flat 2, 10 High St"], "flat 2 10 high street"),
        (["2/10 High Street"], "flat 2 10 high street"),
        (["10 High Street Flat 2"], "flat 2 10 high street"),
        (["10 High Street", "Flat 2"], "flat 2 10 high street"),
        (["Flat 2/10 High St"], "flat 2 10 high street"),
        (["Apartment 2", "10 High St"], "flat 2 10 high street"),
        (["Apt. 2, 10 High St."], "flat 2 10 high street"),
        (["10 St Johns Rd", "London"], "10 saint johns road"),  # the town is left out
        (["St Marys Cl"], "saint marys close"),
        (["10 Church St", None, "", "Leeds"], "10 church street"),
        (["12 Rose St, Ashby"], "12 rose street"),  # the same address with or without its town
        (["Oak Court, 5 Elm Drive", "Ashby"], "oak court 5 elm drive"),  # building, then street
        (["10A Park Ave"], "10a park avenue"),
        (["10 a Park Av"], "10a park avenue"),
        (["No. 10 Downing St"], "10 downing street"),
        (["3 Acacia Cres"], "3 acacia crescent"),
        (["4 Oak Ct", "5 Elm Dr", "6 Rose Gdns"], "4 oak court 5 elm drive 6 rose gardens"),
        (["7 Ash Gr", "8 Yew Gro"], "7 ash grove 8 yew grove"),
        (
            ["9 Bay Pl", "1 Red Sq", "2 Sea Terr", "3 Low Ter"],
            "9 bay place 1 red square 2 sea terrace 3 low terrace",
        ),
        (["4 Long Wy", "5 Mill Ln"], "4 long way 5 mill lane"),
        (["Flt 3", "12 Queen’s Rd"], "flat 3 12 queens road"),
        (["Ground Floor Flat", "10 High St"], "ground floor flat 10 high street"),
        ([], None),
        ([None, "", "  "], None),
        (["Unknown"], None),
        (["NFA"], None),
    ],
)
def test_address_line_known_answers(lines: list[str | None], expected: str | None) -> None:
    assert address_line(lines) == expected


@PROPERTY
@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=4))
def test_address_line_never_raises_and_is_idempotent(lines: list[str | None]) -> None:
    once = address_line(lines)
    if once is not None:
        assert FOLDED.fullmatch(once)
        assert address_line([once]) == once


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10 high street", "10"),
        ("10a high street", "10a"),
        ("flat 2 10 high street", "2/10"),
        ("flat 2 rose court 12a church lane", "2/12a"),
        ("flat a 10 high street", "a/10"),
        ("flat 2 rose court", "2/"),
        ("rose cottage high street", None),
        ("ground floor flat 10 high street", "10"),
        ("", None),
        (None, None),
    ],
)
def test_house_number_known_answers(address: str | None, expected: str | None) -> None:
    assert house_number(address) == expected


@pytest.mark.parametrize(
    "lines",
    [["Flat 2, 10 High St"], ["2/10 High Street"], ["10 High Street Flat 2"]],
)
def test_flat_notations_agree_on_house_number(lines: list[str]) -> None:
    assert house_number(address_line(lines)) == "2/10"


# ---------------------------------------------------------------------------
# NHS number
# ---------------------------------------------------------------------------


def _nhs_check_digit(first_nine: str) -> int | None:
    """Reference implementation, written from the NHS Data Dictionary description."""
    total = 0
    for position, digit in enumerate(first_nine, start=1):
        total += int(digit) * (11 - position)
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("943 476 5919", "9434765919"),  # NHS Digital's published example of a valid number
        ("9434765919", "9434765919"),
        ("943-476-5919", "9434765919"),
        (" 943 476 5919 ", "9434765919"),
        ("401 023 2137", "4010232137"),  # check digit computed by _nhs_check_digit
        ("450 557 7104", "4505577104"),  # remainder 0 -> check 11 -> 0
        ("", None),
        (None, None),
        ("unknown", None),
        ("0000000000", None),  # passes modulus 11 but is a filler
        ("1111111111", None),
    ],
)
def test_nhs_number_known_answers(raw: str | None, expected: str | None) -> None:
    assert nhs_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "943 476 5910",  # wrong check digit
        "943 476 591",  # nine digits
        "943 476 59199",  # eleven digits
        "943 476 591O",  # letter O for zero
        "123 456 7890",  # check digit would be 10: never issued
        "٩٤٣٤٧٦٥٩١٩",  # Arabic-Indic digits are digits to Python, not to the NHS
    ],
)
def test_nhs_number_rejects_named(raw: str) -> None:
    with pytest.raises(NormaliseError, match=re.escape(repr(raw))):
        nhs_number(raw)


def test_nhs_reference_agrees_on_known_examples() -> None:
    assert _nhs_check_digit("943476591") == 9
    assert _nhs_check_digit("401023213") == 7
    assert _nhs_check_digit("450557710") == 4
    assert _nhs_check_digit("123456789") is None


_VALID_NHS = (
    st.integers(min_value=0, max_value=999_999_999)
    .map(lambda n: f"{n:09d}")
    .map(lambda s: (s, _nhs_check_digit(s)))
    .filter(lambda pair: pair[1] is not None)
    .map(lambda pair: f"{pair[0]}{pair[1]}")
    .filter(lambda s: len(set(s)) > 1)
)


@PROPERTY
@given(_VALID_NHS)
def test_nhs_number_accepts_valid_and_rejects_every_single_digit_change(number: str) -> None:
    assert nhs_number(number) == number
    assert nhs_number(f"{number[:3]} {number[3:6]} {number[6:]}") == number
    for position in range(10):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            changed = number[:position] + digit + number[position + 1 :]
            with pytest.raises(NormaliseError):
                nhs_number(changed)


# ---------------------------------------------------------------------------
# National Insurance number
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AB123456C", "AB123456"),
        ("ab 12 34 56 c", "AB123456"),
        ("AB 12 34 56", "AB123456"),  # suffix absent: same person as with a suffix
        ("AB-12-34-56-D", "AB123456"),
        ("OA123456A", "OA123456"),  # O is allowed first, not second
        ("TN 01 02 03 M", None),  # temporary number built from date of birth and sex
        ("TN010203F", None),
        ("", None),
        (None, None),
        ("unknown", None),
    ],
)
def test_ni_number_known_answers(raw: str | None, expected: str | None) -> None:
    assert ni_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "DA123456A",  # D never first (HMRC NIM39110)
        "FA123456A",
        "IA123456A",
        "QQ123456C",  # Q never used: the classic example number is invalid by design
        "UA123456A",
        "VA123456A",
        "AO123456A",  # O never second
        "AD123456A",
        "BG123456A",  # prefixes never allocated
        "GB123456A",
        "KN123456A",
        "NK123456A",
        "NT123456A",
        "ZZ123456A",
        "AB123456E",  # suffix only A-D
        "AB12345C",
        "AB1234567C",
        "A1123456C",
    ],
)
def test_ni_number_rejects_named(raw: str) -> None:
    with pytest.raises(NormaliseError, match=re.escape(repr(raw))):
        ni_number(raw)


# ---------------------------------------------------------------------------
# UPN
# ---------------------------------------------------------------------------


def _upn_check_letter(body: str) -> str:
    """Reference implementation of the DfE check letter (Unique Pupil Numbers guidance).

    Characters 2-13 are weighted 2..13; digits count as their value, a letter in
    position 13 (temporary UPN) as its index in the check-letter table.
    """
    letters = "ABCDEFGHJKLMNPQRTUVWXYZ"
    total = 0
    for weight, char in zip(range(2, 14), body, strict=True):
        total += weight * (int(char) if char.isdigit() else letters.index(char))
    return letters[total % 23]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("B801200005001", "B801200005001"),  # python-stdnum's documented valid example
        ("b801 2000 05001", "B801200005001"),
        (
            _upn_check_letter("93020041300A") + "93020041300A",
            _upn_check_letter("93020041300A") + "93020041300A",
        ),  # temporary UPN: letter in position 13
        ("UN1", None),  # DfE "UPN not known" codes
        ("UN5", None),
        ("", None),
        (None, None),
    ],
)
def test_upn_known_answers(raw: str | None, expected: str | None) -> None:
    assert upn(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "A801200005001",  # wrong check letter (python-stdnum's negative example)
        "I801200005001",  # I is never a check letter
        "B80120000500",  # 12 characters
        "X80120000A001",  # letter in the numeric body
        "B80120000500S",  # S is not in the temporary-letter table
    ],
)
def test_upn_rejects_named(raw: str) -> None:
    with pytest.raises(NormaliseError, match=re.escape(repr(raw))):
        upn(raw)


@PROPERTY
@given(st.from_regex(r"\A[0-9]{11}[0-9ABCDEFGHJKLMNPQRTUVWXYZ]\Z", fullmatch=True))
def test_upn_matches_reference_check_letter(body: str) -> None:
    good = _upn_check_letter(body)
    assert upn(good + body) == good + body
    for wrong in "ABCDEFGHJKLMNPQRTUVWXYZ".replace(good, ""):
        with pytest.raises(NormaliseError):
            upn(wrong + body)


# ---------------------------------------------------------------------------
# soundex
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        # US National Archives "The Soundex Indexing System" examples
        ("robert", "R163"),
        ("rupert", "R163"),
        ("rubin", "R150"),
        ("ashcraft", "A261"),  # h does not separate s and c
        ("ashcroft", "A261"),
        ("tymczak", "T522"),
        ("pfister", "P236"),  # first letter's code suppresses the next f
        ("honeyman", "H555"),
        ("lee", "L000"),
        ("gutierrez", "G362"),
        ("jackson", "J250"),
        ("", ""),
        ("123", ""),
    ],
)
def test_soundex_known_answers(word: str, expected: str) -> None:
    assert soundex(word) == expected


# ---------------------------------------------------------------------------
# module surface
# ---------------------------------------------------------------------------


def test_normalise_error_is_a_value_error_and_a_package_error() -> None:
    assert issubclass(NormaliseError, ValueError)
    assert issubclass(NormaliseError, AgencyClientError)


def test_all_names_exist() -> None:
    for name in norm.__all__:
        assert hasattr(norm, name), name


# ---------------------------------------------------------------------------
# postcodes of any country (schema postcode_format = "any")
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "unit", "sector"),
    [
        ("2612", "2612", "261"),  # Australia (FEBRL)
        ("75008", "75008", "7500"),  # France
        (" 1012 ab ", "1012AB", "1012A"),  # the Netherlands
        ("sw1a 1aa", "SW1A1AA", "SW1A1A"),  # a UK code is just letters and digits here
        ("K1A 0B1", "K1A0B1", "K1A0B"),  # Canada
    ],
)
def test_postcode_any_known_answers(raw: str, unit: str, sector: str) -> None:
    assert postcode_any(raw) == Postcode(unit=unit, outward="", sector=sector)


@pytest.mark.parametrize("raw", [None, "", "   ", "unknown", "N K", "NFA", "xxxx"])
def test_postcode_any_missing_is_none(raw: str | None) -> None:
    assert postcode_any(raw) is None


@pytest.mark.parametrize("raw", ["12", "26-12", "1234567890A", "D02 X285!", "Zürich"])
def test_postcode_any_rejects_what_is_not_3_to_10_letters_and_digits(raw: str) -> None:
    with pytest.raises(NormaliseError, match=re.escape(repr(raw)) + " is not 3 to 10"):
        postcode_any(raw)


@PROPERTY
@given(st.from_regex(r"[A-Za-z0-9]{3,10}", fullmatch=True), st.data())
def test_postcode_any_ignores_case_and_spacing(code: str, data: st.DataObject) -> None:
    spaced = "".join(c + data.draw(st.sampled_from(["", "", " ", "\t"])) for c in code)
    result = postcode_any(" " + spaced)
    if result is None:  # a placeholder spelt in letters ("unknown", "none", "xxx")
        assert norm._is_placeholder(code.lower()) or norm._NON_GEOGRAPHIC.fullmatch(code.upper())
        return
    assert result.unit == code.upper()
    assert result.sector == code.upper()[:-1] and result.outward == ""


@PROPERTY
@given(st.text(max_size=14))
def test_postcode_any_raises_only_normalise_error(text: str) -> None:
    try:
        postcode_any(text)
    except NormaliseError:
        pass


# ---------------------------------------------------------------------------
# agencies' own identifiers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("la-0077", "LA0077"),
        (" LA 0077 ", "LA0077"),
        ("123-45-6789", "123456789"),
        ("a/b.c_d", "ABCD"),
        ("", None),
        ("  ", None),
        ("N/A", None),
        ("unknown", None),
        ("0000", None),
        ("---", None),
    ],
)
def test_local_identifier_known_answers(raw: str, expected: str | None) -> None:
    assert local_identifier(raw) == expected


@PROPERTY
@given(st.text(max_size=20))
def test_local_identifier_is_idempotent_and_compact(text: str) -> None:
    value = local_identifier(text)
    if value is None:
        return
    assert value == value.upper() and " " not in value and value.isalnum()
    assert local_identifier(value) == value
