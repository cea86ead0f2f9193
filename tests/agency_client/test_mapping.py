"""Mapping files: derives, several date formats, local identifiers; errors name file and key."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from agency_client._check import check_csv
from agency_client._errors import ConfigError, InputError
from agency_client._mapping import check_schema, load_mapping, resolve_columns
from protocols import default_schema

from .conftest import write_csv

HEAD = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "ID"
family_name = "surname"
given_names = "given"
"""
NAME_DERIVES = """
[[derive]]
name = "surname"
from = "Client Name"
split_name = "family_comma_given"
part = "family"

[[derive]]
name = "given"
from = "Client Name"
split_name = "family_comma_given"
part = "given"
"""


@pytest.fixture
def mapping_file(tmp_path):
    """Factory: write a mapping file (the identity head plus ``extra``) and return its path."""

    def make(extra: str = NAME_DERIVES, head: str = HEAD):
        path = tmp_path / "agency.toml"
        path.write_text(head + extra, encoding="utf-8")
        return path

    return make


def _error(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid mapping: ")
    return message


def test_every_transform_of_the_documented_syntax_loads(mapping_file):
    path = mapping_file(
        NAME_DERIVES
        + """
[[derive]]
name = "street"
from = "Address"
split_address = "street"
separator = ","

[[derive]]
name = "addr"
concat = ["Addr1", "Addr2", "Town"]
separator = ", "

[[derive]]
name = "nhs"
from = "Identifiers"
regex = 'NHS:\\s*(\\d{3} ?\\d{3} ?\\d{4})'

[[derive]]
name = "sex_code"
from = "Gender"
map = { "1" = "M", "2" = "F", "9" = "" }
default = ""
"""
    )
    mapping = load_mapping(path)
    steps = mapping.steps()
    assert [(s.key, s.name, s.op) for s in steps] == [
        ("derive[0]", "surname", "split_name"),
        ("derive[1]", "given", "split_name"),
        ("derive[2]", "street", "split_address"),
        ("derive[3]", "addr", "concat"),
        ("derive[4]", "nhs", "regex"),
        ("derive[5]", "sex_code", "map"),
    ]
    assert steps[1].name_part == "given" and steps[3].sources == ("Addr1", "Addr2", "Town")
    assert steps[3].separator == ", " and steps[2].separator == ","
    assert steps[5].values == (("1", "M"), ("2", "F"), ("9", "")) and steps[5].default == ""
    assert mapping.path == str(path)


@pytest.mark.parametrize(
    ("derive", "expected"),
    [
        (
            'name = "x"\nfrom = "A"\nupper = true',
            r"derive\[2\]\.upper: unknown key; a derive takes name, from, split_name",
        ),
        ('name = "x"\nfrom = "A"', r"derive\[2\]: no transform: give one of split_name"),
        (
            'name = "x"\nfrom = "A"\nregex = "a"\nmap = { "1" = "M" }',
            r"derive\[2\]\.map: a derive does one transform and this one has regex and map",
        ),
        (
            'name = "x"\nfrom = "A"\nregex = "(a"',
            r"derive\[2\]\.regex: invalid regular expression: missing \)",
        ),
        ('name = "x"\nregex = "a"', r"derive\[2\]\.from: regex needs `from`"),
        (
            'name = "x"\nfrom = "A"\nconcat = ["A", "B"]',
            r"derive\[2\]\.from: concat takes its columns from `concat`, not `from`",
        ),
        ('name = "x"\nconcat = ["A"]', r"derive\[2\]\.concat: Tuple should have at least 2"),
        (
            'name = "x"\nfrom = "A"\nsplit_name = "family_comma_given"',
            r'derive\[2\]\.part: split_name needs part = "family" or "given"',
        ),
        (
            'name = "x"\nfrom = "A"\nsplit_name = "surname_first"\npart = "family"',
            r"derive\[2\]\.split_name: Input should be 'family_comma_given'",
        ),
        (
            'name = "x"\nfrom = "A"\nsplit_address = "postcode"',
            r"derive\[2\]\.split_address: Input should be 'street'",
        ),
        ('name = "x"\nfrom = "A"\nregex = "a"\npart = "given"', r"derive\[2\]\.part: only"),
        ('name = "x"\nfrom = "A"\nregex = "a"\nseparator = ";"', r"derive\[2\]\.separator: only"),
        ('name = "x"\nfrom = "A"\nregex = "a"\ndefault = ""', r"derive\[2\]\.default: only map"),
        ('name = "x"\nfrom = "A"\nmap = { "1" = 1 }', r"derive\[2\]\.map\.1: Input should be a"),
        (
            'name = "surname"\nfrom = "A"\nregex = "a"',
            r"derive\[2\]\.name: 'surname' is already the name of derive\[0\]",
        ),
        (
            'name = "x"\nfrom = "later"\nregex = "a"\n[[derive]]\nname = "later"\n'
            'from = "A"\nregex = "b"',
            r"derive\[2\]\.from: names derive 'later' \(derive\[3\]\), which is not earlier",
        ),
        (
            'name = "x"\nfrom = "x"\nregex = "a"',
            r"derive\[2\]\.from: names derive 'x' \(derive\[2\]\), which is not earlier",
        ),
    ],
)
def test_bad_derives_name_the_file_the_key_and_what_was_expected(mapping_file, derive, expected):
    message = _error(mapping_file(NAME_DERIVES + "\n[[derive]]\n" + derive + "\n"))
    assert re.search(expected, message), message


def test_date_formats_and_identifiers(mapping_file):
    head = HEAD + 'date_of_birth = "DOB"\ndate_formats = ["%d/%m/%Y", "%Y-%m-%d"]\n'
    head += '[identity.identifiers]\nlocal_person_id = "LA_ID"\nsoc_sec_id = "SSN"\n'
    mapping = load_mapping(mapping_file(NAME_DERIVES, head=head))
    assert mapping.identity.dob_formats == ("%d/%m/%Y", "%Y-%m-%d")
    assert mapping.identity.identifiers == {"local_person_id": "LA_ID", "soc_sec_id": "SSN"}
    assert mapping.identity.columns()["identifiers.soc_sec_id"] == "SSN"
    single = load_mapping(mapping_file(NAME_DERIVES, head=HEAD + 'date_format = "%Y%m%d"\n'))
    assert single.identity.dob_formats == ("%Y%m%d",)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            'date_format = "%d/%m/%Y"\ndate_formats = ["%Y-%m-%d"]\n',
            "identity.date_formats: give date_format or date_formats, not both",
        ),
        (
            'date_formats = ["dd/mm/yyyy"]\n',
            "identity.date_formats: 'dd/mm/yyyy' is not a strptime",
        ),
        (
            '[identity.identifiers]\nnhs_number = "NHS"\n',
            "identity.identifiers.nhs_number: nhs_number is a built-in identifier",
        ),
        (
            '[identity.identifiers]\nLocalId = "X"\n',
            "identity.identifiers.LocalId: an identifier type name is a lower-case letter",
        ),
        ('[identity.identifiers]\nx = "X"\n', "identity.identifiers.x: an identifier type name"),
    ],
)
def test_bad_identity_options(mapping_file, extra, expected):
    assert expected in _error(mapping_file(NAME_DERIVES, head=HEAD + extra))


def test_identifiers_must_be_declared_in_the_schema(mapping_file):
    head = HEAD + '[identity.identifiers]\nlocal_person_id = "LA_ID"\n'
    path = mapping_file(NAME_DERIVES, head=head)
    mapping = load_mapping(path)
    with pytest.raises(ConfigError) as info:
        check_schema(mapping, default_schema())
    assert str(info.value) == (
        f"{path}: identity.identifiers.local_person_id: the linkage schema declares no local "
        "identifier 'local_person_id' (it declares: none); declare it in the scheme's schema "
        "(local_identifiers), give that schema with --schema, and have the linkage service "
        'accept it: docs/agency-client.md, "Agencies\' own identifiers"'
    )
    schema = default_schema().model_copy(update={"local_identifiers": ("local_person_id",)})
    check_schema(mapping, schema)


# --- the examples of docs/agency-client.md, read from the page ---------------------------

DOC = Path(__file__).parents[2] / "docs" / "agency-client.md"
OWN_IDENTIFIERS = "### Agencies' own identifiers"


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def _main_example() -> str:
    """The first TOML block under "## The mapping file": the page's main example."""
    return _toml_blocks(DOC.read_text(encoding="utf-8").split("## The mapping file", 1)[1])[0]


def test_the_docs_main_example_is_valid_against_the_shipped_schema(tmp_path):
    path = tmp_path / "school.toml"
    path.write_text(_main_example(), encoding="utf-8")
    mapping = load_mapping(path)
    check_schema(mapping, default_schema())
    assert not mapping.identity.identifiers
    header = [*dict.fromkeys(mapping.wanted_columns().values())]
    assert resolve_columns(mapping, header, "school.csv") == {c: i for i, c in enumerate(header)}
    # and a row in those columns checks clean
    row = {
        "PupilID": "P001",
        "Forename": "Benjamin",
        "MiddleNames": "John",
        "Surname": "Smith",
        "FormerSurname": "",
        "DOB": "13/04/2012",
        "Gender": "M",
        "Address1": "10 High St",
        "Address2": "",
        "Town": "Leeds",
        "Postcode": "LS6 2AB",
        "NHS": "9434765919",
        "NINO": "",
        "UPN": "R352250526670",
        "AttendancePct": "86.5",
        "TermEnd": "31/07/2026",
    }
    assert set(row) == set(header)
    csv_path = write_csv(tmp_path / "school.csv", [[row[c] for c in header]], header)
    report = check_csv(csv_path, mapping, default_schema(), extract_date=dt.date(2026, 11, 1))
    assert (report.findings, report.exit_status) == ([], 0)


def test_the_docs_own_identifiers_need_the_schema_change_it_describes(tmp_path):
    section = DOC.read_text(encoding="utf-8").split(OWN_IDENTIFIERS, 1)[1]
    identifiers = _toml_blocks(section)[0]
    path = tmp_path / "school.toml"
    path.write_text(_main_example() + identifiers, encoding="utf-8")
    mapping = load_mapping(path)
    assert set(mapping.identity.identifiers) == {"local_person_id", "soc_sec_id"}
    with pytest.raises(ConfigError, match=re.escape(f'"{OWN_IDENTIFIERS[4:]}"')):
        check_schema(mapping, default_schema())
    update = {"local_identifiers": ("local_person_id", "soc_sec_id")}
    check_schema(mapping, default_schema().model_copy(update=update))


def test_resolve_columns_appends_derives_and_names_missing_columns(mapping_file):
    mapping = load_mapping(mapping_file())
    assert resolve_columns(mapping, ["ID", "Client Name"], "in.csv") == {
        "ID": 0,
        "Client Name": 1,
        "surname": 2,
        "given": 3,
    }
    with pytest.raises(InputError) as info:
        resolve_columns(mapping, ["ID", "Name"], "in.csv")
    assert str(info.value).startswith(
        f"in.csv:1: field Client Name: {mapping.path}: derive[0].from names column "
        "'Client Name', which is not in the header (columns: ID, Name; derives: surname, given)"
    )
    with pytest.raises(InputError, match=r"derive\[1\]\.name: 'given' is already a column"):
        resolve_columns(mapping, ["ID", "Client Name", "given"], "in.csv")
