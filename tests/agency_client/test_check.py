"""``agency-client check``: parse rates, suspicious shapes, errors encode refuses; exit codes."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from agency_client._check import check_csv
from agency_client._cli import _print_check, main
from agency_client._mapping import load_mapping
from protocols import default_schema

from .conftest import write_csv
from .test_rows_transforms import HEADER, MAPPING, ROWS

PLAIN = """
[agency]
id = "school"
extract_type = "education"

[identity]
system_id = "Ref"
given_names = "Forename"
family_name = "Surname"
date_of_birth = "DOB"
date_formats = ["%d/%m/%Y", "%Y-%m-%d"]
address_lines = "Address"
postcode = "Postcode"
"""
PLAIN_HEADER = ["Ref", "Forename", "Surname", "DOB", "Address", "Postcode"]
CLEAN_ROWS = [
    ["A1", "Benjamin", "Smith", "13/04/2012", "10 High St", "LS6 2AB"],
    ["A2", "Zoe", "O'Brien", "2016-02-29", "7 Mill Lane", "LS6 2AB"],
]
SCHEMA_WITH_LOCAL = default_schema().model_copy(update={"local_identifiers": ("local_person_id",)})


@pytest.fixture
def check(tmp_path, capsys):
    """Factory: run ``agency-client check`` on rows; (exit status, stdout)."""

    def run(rows, mapping=PLAIN, header=PLAIN_HEADER, schema=None, extract_date=None, on_bad=None):
        csv_path = write_csv(tmp_path / "in.csv", rows, header)
        map_path = tmp_path / "in.toml"
        map_path.write_text(mapping, encoding="utf-8")
        argv = ["check", "--mapping", str(map_path), "--input", str(csv_path)]
        if extract_date is not None:
            argv += ["--extract-date", extract_date]
        if on_bad is not None:
            argv += ["--on-bad", on_bad]
        if schema is not None:
            schema_path = tmp_path / "schema.json"
            schema_path.write_text(schema.model_dump_json(), encoding="utf-8")
            argv += ["--schema", str(schema_path)]
        before = sorted(p.name for p in tmp_path.iterdir())
        status = main(argv)
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
        return status, capsys.readouterr().out

    return run


def test_a_clean_file_exits_0_with_a_line_per_column(check):
    status, out = check(CLEAN_ROWS)
    assert status == 0
    assert "in.csv: 2 rows checked against" in out
    assert "identity.family_name  column 'Surname'  filled 2  parsed 100.0%" in out
    assert "identity.date_of_birth  column 'DOB'  filled 2  parsed 100.0%" in out
    assert out.rstrip().endswith("clean: no errors, no warnings")


def test_derives_are_reported_with_their_match_rate(check):
    rows = [r[:] for r in ROWS]
    rows[2][1] = "Mohammed KHAN"  # not "SURNAME, Forename"
    status, out = check(rows, MAPPING, HEADER, SCHEMA_WITH_LOCAL)
    assert "derive[0]  column 'surname'  filled 3  parsed 66.7%" in out
    assert "identity.identifiers.local_person_id  column 'LA_ID'  filled 2  parsed 100.0%" in out
    assert (
        "warning: derive[0]: derive[0] 'surname' (split_name on 'Client Name') does not match "
        "1 of the 3 filled rows (line 4)"
    ) in out
    # "22 Park Road" has no town part, the other two have one
    assert (
        "warning: derive[2]: mixed address shapes: 2 rows have a town part (two or more parts) "
        "and 1 rows have one part (line 4)"
    ) in out
    assert status == 1
    assert "warnings, no errors: encode would accept this file" in out


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [["A1", "Smith, Ben", "", "13/04/2012", "10 High St", "LS6 2AB"]],
            [
                "warning: identity.given_names[0]: given-name column 'Forename' holds commas "
                "in 1 rows (line 2)",
                "warning: identity.given_names[0]: column 'Forename' looks like 'SURNAME, "
                "Forename' in 1 of 1 rows: split it with a [[derive]] using split_name = "
                '"family_comma_given" (line 2)',
                "warning: identity.family_name: family name column 'Surname' is empty in every row",
            ],
        ),
        (
            [
                ["A1", "Ben", "SMITH, Ben", "13/04/2012", "10 High St", "LS6 2AB"],
                ["A2", "Zoe", "O'BRIEN, Zoe", "13/04/2012", "7 Mill Lane", "LS6 2AB"],
            ],
            [
                "warning: identity.family_name: column 'Surname' looks like 'SURNAME, Forename' in "
                "2 of 2 rows"
            ],
        ),
        (
            [
                ["A1", "Ben", "Smith", "13/04/2012", "10 High St, Leeds", "LS6 2AB"],
                ["A2", "Zoe", "Obi", "13/04/2012", "7 Mill Lane", "LS6 2AB"],
            ],
            [
                "warning: identity.address_lines[0]: mixed address shapes in 'Address': 1 rows "
                "have comma-separated parts and 1 do not; consider a split_address derive (line 2)"
            ],
        ),
        (
            [
                ["A1", "Unknown", "Smith", "13/04/2012", "10 High St", "LS6 2AB"],
                ["A2", "Zoe", "Obi", "13/04/2012", "7 Mill Lane", "LS6 2AB"],
            ],
            [
                "warning: identity.given_names[0]: 1 of 2 filled cells of 'Forename' hold no "
                "usable value (a placeholder such as 'unknown'); encode reads them as blank "
                "(line 2)"
            ],
        ),
    ],
)
def test_suspicious_shapes_are_warnings(check, rows, expected):
    status, out = check(rows)
    for line in expected:
        assert line in out
    assert status == 1


def test_dates_that_parse_two_ways_are_reported(check):
    mapping = PLAIN.replace('"%Y-%m-%d"', '"%m/%d/%Y"')
    rows = [r[:] for r in CLEAN_ROWS]
    rows[1][3] = "03/04/2010"
    status, out = check(rows, mapping)
    assert (
        "warning: identity.date_formats: 1 dates of birth parse two ways under the declared "
        "formats ('03/04/2010' is 2010-04-03 under '%d/%m/%Y' and 2010-03-04 under '%m/%d/%Y'); "
        "encode uses the first format that parses (line 3)"
    ) in out
    assert status == 1


def test_repeated_system_ids_are_errors_listed_by_line_and_value(check):
    rows = [*CLEAN_ROWS, CLEAN_ROWS[0][:], ["A3", *CLEAN_ROWS[1][1:]], CLEAN_ROWS[1][:]]
    status, out = check(rows)
    assert (
        "error: identity.system_id: 2 system ids appear on more than one row (column 'Ref'): "
        "'A1' on lines 2 and 4; 'A2' on lines 3 and 6"
    ) in out
    assert "1 errors, 0 warnings: encode would refuse this file" in out
    assert status == 2


def test_a_derive_that_matches_no_row_is_an_error(check):
    mapping = MAPPING.replace("regex = 'NHS:", "regex = 'CHI:")
    status, out = check(ROWS, mapping, HEADER, SCHEMA_WITH_LOCAL)
    assert (
        "error: derive[4]: derive[4] 'nhs' (regex on 'Identifiers') matches no row: none of the "
        "2 filled rows has the declared shape (lines 2, 4)"
    ) in out
    assert status == 2


def test_a_missing_column_is_an_error(check):
    status, out = check(CLEAN_ROWS, PLAIN.replace('"Surname"', '"Surnme"'))
    assert "error: (columns): " in out
    assert "identity.family_name names column 'Surnme', which is not in the header" in out
    assert status == 2


BAD_INPUT = [
    (
        [
            ["A1", "Ben", "Smith", "31/13/2012", "10 High St", "LS6 2AB"],
            ["A2", "Zoe", "Obi", "13/04/2012", "7 Mill Lane", "not a postcode"],
        ],
        "identity.date_of_birth, column 'DOB'",
        [
            "identity.date_of_birth: 1 of 2 filled cells of 'DOB' are bad input (first: date "
            "'31/13/2012' is not a real date)",
            "identity.postcode: 1 of 2 filled cells of 'Postcode' are bad input (first: "
            "postcode 'not a postcode' is not a valid UK postcode",
        ],
    ),
    (
        [["A1", "Ben", "Smith", "13/04/2112", "10 High St", "LS6 2AB"]],
        "identity.date_of_birth, column 'DOB'",
        [
            "identity.date_of_birth: 1 of 1 filled cells of 'DOB' are bad input (first: date of "
            "birth 2112-04-13 is not between 1900 and the extract date 2026-11-01)"
        ],
    ),
    (
        [*CLEAN_ROWS, ["", "Ben", "Smith", "13/04/2012", "10 High St", "LS6 2AB"]],
        "identity.system_id",
        ["identity.system_id: 1 rows have a blank system id"],
    ),
    (
        [*CLEAN_ROWS, ["A9", "x"]],
        "(rows)",
        ["(rows): 1 rows do not have the header's 6 fields"],
    ),
]


@pytest.mark.parametrize(("rows", "where", "expected"), BAD_INPUT)
def test_bad_input_is_an_error_where_encode_stops_at_it(check, rows, where, expected):
    status, out = check(rows, extract_date="2026-11-01")
    for text in expected:
        assert f"error: {text}" in out
    assert "encode --on-bad fail stops at the first" in out
    first = min(i for i, row in enumerate(rows) if row != CLEAN_ROWS[min(i, 1)]) + 2
    assert f": with --on-bad fail it stops at line {first} ({where})" in out
    assert out.rstrip().endswith("--on-bad skip-row or drop-field would go on past bad input")
    assert status == 2


@pytest.mark.parametrize(
    ("policy", "does"),
    [("skip-row", "leaves these rows out"), ("drop-field", "keeps these rows without the cell")],
)
@pytest.mark.parametrize(("rows", "where", "expected"), BAD_INPUT)
def test_bad_input_is_a_warning_when_encode_goes_on(check, rows, where, expected, policy, does):
    status, out = check(rows, extract_date="2026-11-01", on_bad=policy)
    for text in expected:
        assert f"warning: {text}" in out
    if where.startswith("identity.d"):
        assert f"encode --on-bad {policy} {does}" in out
    else:  # a row encode cannot read: left out under either policy
        assert f"encode --on-bad {policy} leaves these rows out" in out
    assert out.rstrip().endswith(
        f"warnings, no errors: encode --on-bad {policy} would accept this file"
    )
    assert status == 1


def test_other_errors_are_not_said_to_go_away_with_on_bad(check):
    rows = [*CLEAN_ROWS, CLEAN_ROWS[0][:], ["A9", "x"]]
    status, out = check(rows)
    assert out.rstrip().endswith(
        "2 errors, 0 warnings: encode would refuse this file: with --on-bad fail it stops at "
        "line 5 ((rows))"
    )
    assert status == 2


def test_a_bad_mapping_exits_2_naming_file_and_key(tmp_path, capsys):
    csv_path = write_csv(tmp_path / "in.csv", CLEAN_ROWS, PLAIN_HEADER)
    map_path = tmp_path / "in.toml"
    map_path.write_text(PLAIN + '[[derive]]\nname = "x"\nfrom = "Ref"\n', encoding="utf-8")
    assert main(["check", "--mapping", str(map_path), "--input", str(csv_path)]) == 2
    assert "in.toml: invalid mapping: derive[0]: no transform" in capsys.readouterr().err


def test_on_a_terminal_the_columns_are_a_table(tmp_path):
    csv_path = write_csv(tmp_path / "in.csv", CLEAN_ROWS, PLAIN_HEADER)
    (tmp_path / "in.toml").write_text(PLAIN, encoding="utf-8")
    report = check_csv(csv_path, load_mapping(tmp_path / "in.toml"), default_schema())
    buffer = io.StringIO()
    _print_check(Console(file=buffer, force_terminal=True, width=120, color_system=None), report)
    text = buffer.getvalue()
    assert "mapping key" in text and "│" in text and "100.0%" in text
    assert report.exit_status == 0
