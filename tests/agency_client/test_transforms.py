"""Declared transforms: name and address splitters, and each derive step's value and status."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agency_client._transforms import (
    BLANK,
    MATCHED,
    MISSED,
    PARTICLES,
    SUFFIXES,
    TITLES,
    Step,
    address_part,
    address_parts,
    split_name,
)

# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shape", "family", "given_names"),
    [
        ("SMITH, Benjamin John", "family_comma_given", "SMITH", "Benjamin John"),
        ("Smith,Benjamin", "family_comma_given", "Smith", "Benjamin"),
        ("SMITH, Mr Benjamin John", "family_comma_given", "SMITH", "Benjamin John"),
        ("Dr. SMITH, Benjamin", "family_comma_given", "SMITH", "Benjamin"),
        ("SMITH Jnr, Benjamin", "family_comma_given", "SMITH", "Benjamin"),
        ("SMITH, Benjamin III", "family_comma_given", "SMITH", "Benjamin"),
        ("Benjamin John SMITH", "given_family", "SMITH", "Benjamin John"),
        ("Mrs Jane SMITH-JONES", "given_family", "SMITH-JONES", "Jane"),
        ("Anna Maria DE LA CRUZ", "given_family", "DE LA CRUZ", "Anna Maria"),
        ("Ludwig van Beethoven", "given_family", "van Beethoven", "Ludwig"),
        ("Benjamin Smith Jr", "given_family", "Smith", "Benjamin"),
        ("Prof Ada Lovelace", "given_family", "Lovelace", "Ada"),
        ("SMITH Benjamin John", "family_given", "SMITH", "Benjamin John"),
        ("DE LA CRUZ Anna Maria", "family_given", "DE LA CRUZ", "Anna Maria"),
        ("van der Berg Anna", "family_given", "van der Berg", "Anna"),
        ("Master Smith Tom", "family_given", "Smith", "Tom"),
        ("Smith Tom Sr", "family_given", "Smith", "Tom"),
    ],
)
def test_split_name_examples(raw, shape, family, given_names):
    assert split_name(raw, shape) == (family, given_names)


@pytest.mark.parametrize(
    ("raw", "shape"),
    [
        ("Benjamin Smith", "family_comma_given"),  # no comma
        ("SMITH, Benjamin, John", "family_comma_given"),  # two commas
        ("SMITH,", "family_comma_given"),  # nothing after the comma
        (", Benjamin", "family_comma_given"),
        ("Mr, Benjamin", "family_comma_given"),  # only a title before the comma
        ("SMITH", "given_family"),  # one word
        ("Mr SMITH", "family_given"),  # one word once the title goes
        ("SMITH, Benjamin", "given_family"),  # a comma is another shape
    ],
)
def test_split_name_refuses_other_shapes(raw, shape):
    assert split_name(raw, shape) is None


_NAME = st.from_regex(r"[A-Z][a-z]{1,10}", fullmatch=True).filter(
    lambda w: w.lower() not in TITLES | SUFFIXES | PARTICLES
)
_FAMILY = st.from_regex(r"[A-Z][A-Z'-]{1,12}", fullmatch=True).filter(
    lambda w: w.lower() not in TITLES | SUFFIXES and w.isupper()
)
_GIVEN = st.lists(_NAME, min_size=1, max_size=3)
_TITLE = st.sampled_from(["", "Mr ", "Mrs ", "Ms ", "Miss ", "Mx ", "Dr ", "Master ", "Rev "])
_SUFFIX = st.sampled_from(["", " Jr", " Jnr", " Sr", " Snr", " II", " III"])


@given(_TITLE, _GIVEN, _FAMILY, _SUFFIX)
def test_family_comma_given_round_trip(title, given_words, family, suffix):
    raw = f"{family}, {title}{' '.join(given_words)}{suffix}"
    assert split_name(raw, "family_comma_given") == (family, " ".join(given_words))


@given(_TITLE, _GIVEN, _FAMILY, _SUFFIX)
def test_given_family_round_trip(title, given_words, family, suffix):
    # upper-case family name after mixed-case given names, as agencies write them
    raw = f"{title}{' '.join(given_words)} {family}{suffix}"
    assert split_name(raw, "given_family") == (family, " ".join(given_words))


@given(_TITLE, _GIVEN, _FAMILY)
def test_family_given_round_trip(title, given_words, family):
    raw = f"{title}{family} {' '.join(given_words)}"
    assert split_name(raw, "family_given") == (family, " ".join(given_words))


@given(
    st.text(max_size=40), st.sampled_from(["family_comma_given", "given_family", "family_given"])
)
def test_split_name_never_loses_or_invents_words(raw, shape):
    split = split_name(raw, shape)
    if split is None:
        return
    family, given_names = split
    assert family and given_names
    words = raw.replace(",", " ").split()
    out = family.split() + given_names.split()
    # every word out is a word in, and only titles/suffixes (and the comma) were dropped
    assert all(w in words for w in out)
    dropped = [w for w in words if w not in out]
    assert all(w.replace(".", "").lower() in TITLES | SUFFIXES for w in dropped)


# --- addresses ---------------------------------------------------------------------------


def test_address_parts_and_each_part():
    parts = address_parts("Flat 2, 7 Mill Lane, , Leeds ", ",")
    assert parts == ["Flat 2", "7 Mill Lane", "Leeds"]
    assert address_part(parts, "street") == "Flat 2, 7 Mill Lane"
    assert address_part(parts, "town") == "Leeds"
    assert address_part(parts, "line1") == "Flat 2"
    assert address_part(parts, "line2") == "7 Mill Lane"
    assert address_part(parts, "line3") == "Leeds"
    assert address_part(parts, "last") == "Leeds"
    one = address_parts("10 High St", ",")
    assert address_part(one, "street") == "10 High St"
    assert address_part(one, "town") is None
    assert address_part(one, "line2") is None
    assert address_part([], "street") is None


_PART = st.text(st.characters(exclude_characters=",\n\r", exclude_categories=("Cs",)), max_size=15)


@given(st.lists(_PART, max_size=5))
def test_address_split_keeps_every_filled_part_in_order(cells):
    parts = address_parts(",".join(cells), ",")
    assert parts == [c.strip() for c in cells if c.strip()]
    street, town = address_part(parts, "street"), address_part(parts, "town")
    if len(parts) >= 2:
        assert street == ", ".join(parts[:-1]) and town == parts[-1]
    elif parts:
        assert street == parts[0] and town is None
    else:
        assert street is None and town is None


# --- steps -------------------------------------------------------------------------------


def _run(step: Step, *cells: str):
    return step.compile()(list(cells))


def test_regex_step_takes_the_first_group_or_the_whole_match():
    nhs = Step("nhs", "derive[0]", "regex", ("Ids",), pattern=r"NHS:\s*(\d{3} ?\d{3} ?\d{4})")
    assert _run(nhs, "LA:77; NHS: 943 476 5919") == ("943 476 5919", MATCHED)
    assert _run(nhs, "LA:77") == ("", MISSED)
    assert _run(nhs, "  ") == ("", BLANK)
    whole = Step("code", "derive[1]", "regex", ("Ids",), pattern=r"[A-Z]{2}\d+")
    assert _run(whole, "ref AB123 x") == ("AB123", MATCHED)


def test_map_step_passes_unmapped_values_through_unless_a_default_is_given():
    values = (("1", "M"), ("2", "F"), ("9", ""))
    sex = Step("sex", "derive[0]", "map", ("Gender",), values=values)
    assert _run(sex, " 1 ") == ("M", MATCHED)
    assert _run(sex, "9") == ("", MATCHED)
    assert _run(sex, "F") == ("F", MISSED)
    assert _run(sex, "") == ("", BLANK)
    strict = Step("sex", "derive[0]", "map", ("Gender",), values=values, default="")
    assert _run(strict, "F") == ("", MISSED)


def test_concat_step_drops_blank_columns():
    addr = Step("addr", "derive[0]", "concat", ("A1", "A2", "Town"), separator=", ")
    assert _run(addr, "10 High St", " ", "Leeds") == ("10 High St, Leeds", MATCHED)
    assert _run(addr, "", "", "") == ("", BLANK)


def test_split_steps():
    family = Step("f", "derive[0]", "split_name", ("Name",), name_part="family")
    given_step = Step("g", "derive[1]", "split_name", ("Name",), name_part="given")
    assert _run(family, "SMITH, Ben") == ("SMITH", MATCHED)
    assert _run(given_step, "SMITH, Ben") == ("Ben", MATCHED)
    assert _run(given_step, "Ben Smith") == ("", MISSED)
    town = Step("t", "derive[2]", "split_address", ("Addr",), address="town")
    assert _run(town, "10 High St, Leeds") == ("Leeds", MATCHED)
    assert _run(town, "10 High St") == ("", MISSED)
    pipe = Step("s", "derive[3]", "split_address", ("Addr",), address="street", separator="|")
    assert _run(pipe, "10 High St|Leeds") == ("10 High St", MATCHED)
    assert family.describe() == "derive[0] 'f' (split_name on 'Name')"
