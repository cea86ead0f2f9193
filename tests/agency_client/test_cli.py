"""The ``agency-client`` command line, driven in-process through ``main(argv)``.

Each command is run as an agency would run it; errors must come back as exit
status 2 and one plain line on stderr naming the file or field that was wrong.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agency_client._cli import main
from agency_client._extract import iter_records, verify_extract
from agency_client._keys import (
    CUSTODY_WARNING,
    load_agency_key,
    load_agency_public_key,
    load_seal_private_key,
    load_seal_public_key,
    load_secret,
)
from agency_client._schema_file import load_schema
from protocols import TokenisedRecord, default_schema

from .conftest import MAPPING


def _flat(text: str) -> str:
    """Collapse whitespace: rich wraps long stdout lines at the console width."""
    return " ".join(text.split())


@pytest.fixture
def cli(capsys, monkeypatch):
    """Factory: run ``main(argv)`` and return (exit status, stdout, stderr)."""
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("FAMILY_LINKAGE_SECRET_FILE", raising=False)

    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def _one_line_error(err: str) -> str:
    """The stderr of a failed command: exactly one line, starting 'error:'."""
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def encode_args(keys, school_csv, tmp_path):
    """Factory: the argv of an ``encode`` run over the conftest school CSV."""

    def make(rows=None, mapping=MAPPING, out=None, **overrides):
        csv_path, map_path = school_csv(rows, mapping)
        opts = {
            "--mapping": map_path,
            "--input": csv_path,
            "--out": out or tmp_path / "extract.jsonl",
            "--secret": keys["secret"],
            "--key": keys["agency_key"],
            "--seal-key": keys["seal_pub"],
            "--extract-date": "2026-11-01",
            "--workers": 1,
        }
        opts.update(overrides)
        argv = ["encode"]
        for flag, value in opts.items():
            if value is not None:
                argv += [flag, value]
        return argv

    return make


@pytest.fixture
def extract(cli, encode_args, tmp_path):
    """A freshly encoded, signed extract of the three conftest pupils."""
    status, _, err = cli(*encode_args(out=tmp_path / "extract.jsonl"))
    assert status == 0, err
    return tmp_path / "extract.jsonl"


# --- key and schema commands ----------------------------------------------------------


def test_keygen_writes_a_private_and_a_public_key(cli, tmp_path):
    status, out, err = cli("keygen", "--agency-id", "police", "--out", tmp_path / "k")
    assert (status, err) == (0, "")
    priv, pub = tmp_path / "k" / "agency.key", tmp_path / "k" / "agency.pub"
    assert _mode(priv) == 0o600
    assert str(priv) in _flat(out) and str(pub) in _flat(out)
    key, public = load_agency_key(priv), load_agency_public_key(pub)
    assert key.agency_id == public.agency_id == "police"
    assert key.key_id == public.key_id


def test_keygen_refuses_to_overwrite_a_key(cli, tmp_path):
    assert cli("keygen", "--agency-id", "police", "--out", tmp_path)[0] == 0
    before = (tmp_path / "agency.key").read_bytes()
    status, _, err = cli("keygen", "--agency-id", "police", "--out", tmp_path)
    assert status == 2
    line = _one_line_error(err)
    assert str(tmp_path / "agency.key") in line and "refusing to overwrite" in line
    assert (tmp_path / "agency.key").read_bytes() == before


def test_secret_prints_the_custody_warning_and_is_private(cli, tmp_path):
    target = tmp_path / "linkage.secret"
    status, out, err = cli("secret", "--out", target)
    assert (status, err) == (0, "")
    assert _flat(CUSTODY_WARNING) in _flat(out)
    assert _mode(target) == 0o600
    assert len(load_secret(target)) == 32


def test_seal_keygen_writes_the_unlock_key_pair(cli, tmp_path):
    status, _, err = cli("seal-keygen", "--out", tmp_path / "unlock")
    assert (status, err) == (0, "")
    assert _mode(tmp_path / "unlock" / "seal.key") == 0o600
    private = load_seal_private_key(tmp_path / "unlock" / "seal.key")
    public = load_seal_public_key(tmp_path / "unlock" / "seal.pub")
    assert bytes(private.public_key) == bytes(public.public_key)


def test_schema_out_writes_the_default_and_prints_its_fingerprint(cli, tmp_path):
    target = tmp_path / "schema.json"
    status, out, err = cli("schema", "--out", target)
    assert (status, err) == (0, "")
    expected = default_schema().fingerprint()
    assert f"fingerprint {expected}" in _flat(out)
    assert load_schema(target) == default_schema()


def test_schema_without_arguments_prints_the_default_fingerprint(cli):
    status, out, _ = cli("schema")
    assert status == 0
    assert _flat(out) == f"fingerprint {default_schema().fingerprint()}"


def test_schema_fingerprints_a_given_file(cli, tmp_path):
    changed = default_schema().model_copy(update={"identity_pad_bytes": 1024})
    target = tmp_path / "changed.json"
    target.write_text(changed.model_dump_json(), encoding="utf-8")
    status, out, _ = cli("schema", "--schema", target)
    assert status == 0
    assert _flat(out) == f"fingerprint {changed.fingerprint()}"
    assert changed.fingerprint() != default_schema().fingerprint()


def test_schema_rejects_an_invalid_file(cli, tmp_path):
    target = tmp_path / "bad.json"
    data = default_schema().model_dump(mode="json")
    data["person_filter"]["length_bits"] = 1000
    target.write_text(json.dumps(data), encoding="utf-8")
    status, _, err = cli("schema", "--schema", target)
    assert status == 2
    line = _one_line_error(err)
    assert str(target) in line and "person_filter" in line and "power of two" in line


# --- encode and inspect ---------------------------------------------------------------


def test_encode_writes_a_signed_extract(cli, encode_args, keys, tmp_path):
    target = tmp_path / "extract.jsonl"
    status, out, err = cli(*encode_args(out=target))
    assert (status, err) == (0, "")
    assert f"wrote {target}: 3 records from 3 rows" in _flat(out)
    info = verify_extract(
        target, load_agency_public_key(keys["agency_pub"]), schema=default_schema()
    )
    assert info.signature_checked and info.trailer.record_count == 3
    assert info.header.agency_id == "school"
    assert str(info.header.extract_date) == "2026-11-01"
    for raw in iter_records(target):
        TokenisedRecord.model_validate(raw)


def test_encode_reads_the_secret_named_by_the_environment(
    cli, encode_args, keys, tmp_path, monkeypatch
):
    monkeypatch.setenv("FAMILY_LINKAGE_SECRET_FILE", str(keys["secret"]))
    status, _, err = cli(*encode_args(**{"--secret": None}))
    assert (status, err) == (0, "")


def test_encode_without_any_secret_says_how_to_give_one(cli, encode_args):
    status, _, err = cli(*encode_args(**{"--secret": None}))
    assert status == 2
    line = _one_line_error(err)
    assert "--secret" in line and "FAMILY_LINKAGE_SECRET_FILE" in line


def test_inspect_without_a_public_key_does_not_claim_a_signature_check(cli, extract):
    status, out, err = cli("inspect", extract)
    assert (status, err) == (0, "")
    flat = _flat(out)
    assert "not checked" in flat and "verified" not in flat
    assert "records" in flat


def test_inspect_with_the_public_key_verifies_the_signature(cli, extract, keys):
    status, out, err = cli("inspect", extract, "--public-key", keys["agency_pub"])
    assert (status, err) == (0, "")
    flat = _flat(out)
    assert "verified" in flat and "not checked" not in flat


def test_inspect_json(cli, extract, keys):
    status, out, _ = cli("inspect", extract, "--public-key", keys["agency_pub"], "--json")
    assert status == 0
    info = json.loads(out)
    assert info["record_count"] == 3
    assert info["signature_checked"] is True
    assert info["header"]["agency_id"] == "school"
    assert info["header"]["schema_fingerprint"] == default_schema().fingerprint()
    person = info["person_filter"]
    assert set(person) == {"bits", "fill_mean", "fill_min", "fill_max"}
    assert person["bits"] == [default_schema().person_filter.output_bits]
    assert 0 < person["fill_min"] <= person["fill_mean"] <= person["fill_max"] < 1
    assert set(info["address_filter"]) == {"count", "fill_mean"}
    assert info["address_filter"]["count"] == 3
    assert info["exact_tokens"] == {"nhs_number": 1}
    assert info["indicators"] == {"attendance_pct": 2, "permanent_exclusion": 1}
    assert info["duplicate_record_refs"] == 0
    assert len(info["sealed_identity_lengths"]) == 1  # padding: every blob the same size


def test_inspect_json_without_a_public_key(cli, extract):
    status, out, _ = cli("inspect", extract, "--json")
    assert status == 0
    info = json.loads(out)
    assert info["signature_checked"] is False and info["record_count"] == 3


def test_inspect_without_a_schema_names_the_fingerprint_as_the_shipped_default(cli, extract):
    status, out, _ = cli("inspect", extract)
    assert status == 0
    shipped = default_schema().fingerprint()
    assert (
        f"schema {shipped[:16]}…: the shipped default schema's (give --schema to check the records)"
    ) in _flat(out)
    status, out, _ = cli("inspect", extract, "--json")
    info = json.loads(out)
    assert (info["schema_is_shipped_default"], info["schema_checked"]) == (True, False)


def test_inspect_says_when_the_schema_is_not_the_shipped_default(cli, encode_args, keys, tmp_path):
    other = default_schema().model_copy(update={"identity_pad_bytes": 1024})
    schema_path = tmp_path / "other.json"
    schema_path.write_text(other.model_dump_json(), encoding="utf-8")
    target = tmp_path / "other.jsonl"
    assert cli(*encode_args(out=target, **{"--schema": schema_path}))[0] == 0
    public = ("--public-key", keys["agency_pub"])
    status, out, _ = cli("inspect", target, *public)
    assert status == 0
    flat = _flat(out)
    assert "signature verified" in flat
    assert (
        f"schema {other.fingerprint()[:16]}…: not the shipped default schema's "
        f"({default_schema().fingerprint()[:16]}…); give the scheme's schema with --schema to "
        "check the records"
    ) in flat
    status, out, _ = cli("inspect", target, *public, "--schema", schema_path)
    assert status == 0
    assert (
        f"schema {other.fingerprint()[:16]}…: the --schema file's (filter lengths and "
        "identifier types checked)"
    ) in _flat(out)
    status, out, _ = cli("inspect", target, *public, "--schema", schema_path, "--json")
    info = json.loads(out)
    assert (info["schema_is_shipped_default"], info["schema_checked"]) == (False, True)


def test_inspect_with_the_schema_checks_the_fingerprint(cli, extract, tmp_path):
    other = default_schema().model_copy(update={"identity_pad_bytes": 1024})
    schema_path = tmp_path / "other.json"
    schema_path.write_text(other.model_dump_json(), encoding="utf-8")
    status, _, err = cli("inspect", extract, "--schema", schema_path)
    assert status == 2
    line = _one_line_error(err)
    assert str(extract) in line and "schema" in line


# --- errors: exit status 2, one line naming the culprit --------------------------------


def test_missing_key_file(cli, encode_args, tmp_path):
    missing = tmp_path / "nowhere" / "agency.key"
    status, out, err = cli(*encode_args(**{"--key": missing}))
    assert status == 2
    line = _one_line_error(err)
    assert str(missing) in line and "does not exist" in line
    assert not (tmp_path / "extract.jsonl").exists()


def test_world_readable_secret_is_refused(cli, encode_args, keys, tmp_path):
    os.chmod(keys["secret"], 0o644)
    status, _, err = cli(*encode_args())
    assert status == 2
    line = _one_line_error(err)
    assert str(keys["secret"]) in line and "-rw-r--r--" in line and "chmod 600" in line
    assert not (tmp_path / "extract.jsonl").exists()


def test_unknown_column_in_the_mapping(cli, encode_args, tmp_path):
    mapping = MAPPING.replace('family_name = "Surname"', 'family_name = "Surnaem"')
    status, _, err = cli(*encode_args(mapping=mapping))
    assert status == 2
    line = _one_line_error(err)
    assert "school.csv" in line and "family_name" in line and "'Surnaem'" in line
    assert not (tmp_path / "extract.jsonl").exists()


def test_a_repeated_system_id_fails_at_encode_naming_the_lines_and_the_id(
    cli, encode_args, tmp_path
):
    from .conftest import ROWS

    status, _, err = cli(*encode_args(rows=[*ROWS, list(ROWS[1])]))
    assert status == 2
    line = _one_line_error(err)
    assert "school.csv:5: field system_id (column 'PupilID')" in line
    assert "'P002' on lines 3 and 5" in line
    assert not (tmp_path / "extract.jsonl").exists()


def test_invalid_mapping_names_the_file_and_key(cli, encode_args):
    status, _, err = cli(*encode_args(mapping=MAPPING.replace('id = "school"', 'id = "School"')))
    assert status == 2
    line = _one_line_error(err)
    assert "school.toml" in line and "agency.id" in line


def test_bad_cell_names_the_line_and_field(cli, encode_args):
    from .conftest import ROWS

    rows = [list(r) for r in ROWS]
    rows[1][4] = "31/02/2016"  # DOB of the second data row: CSV line 3
    status, _, err = cli(*encode_args(rows=rows))
    assert status == 2
    line = _one_line_error(err)
    assert "school.csv:3" in line and "date_of_birth" in line and "'DOB'" in line


def test_tampered_extract_is_refused_by_inspect(cli, extract, keys):
    lines = extract.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    clk = record["clk"]
    record["clk"] = ("B" if clk[0] == "A" else "A") + clk[1:]
    lines[1] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    extract.write_bytes(b"".join(lines))
    for extra in ([], ["--public-key", keys["agency_pub"]], ["--json"]):
        status, out, err = cli("inspect", extract, *extra)
        assert (status, out) == (2, "")
        line = _one_line_error(err)
        assert str(extract) in line and "digest mismatch" in line


def test_inspect_with_another_agency_key_is_refused(cli, extract, tmp_path):
    assert cli("keygen", "--agency-id", "police", "--out", tmp_path / "police")[0] == 0
    status, _, err = cli("inspect", extract, "--public-key", tmp_path / "police" / "agency.pub")
    assert status == 2
    line = _one_line_error(err)
    assert "'school'" in line and "'police'" in line


def test_bad_extract_date_is_an_argument_error(cli, encode_args, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in encode_args(**{"--extract-date": "2026-13-01"})])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--extract-date" in err and "'2026-13-01' is not a date in YYYY-MM-DD form" in err
    assert not (tmp_path / "extract.jsonl").exists()


@pytest.mark.parametrize("name", ["no[/]such.jsonl", "no[bold]such.jsonl"])
def test_error_messages_are_printed_verbatim(cli, tmp_path, name):
    # regression: messages were rendered as rich markup ('[/]' crashed with a traceback)
    status, _, err = cli("inspect", tmp_path / name)
    assert status == 2
    assert str(tmp_path / name) in _one_line_error(err)


def test_long_error_messages_stay_on_one_line(cli, tmp_path):
    # regression: rich wrapped stderr at 80 columns when it is not a terminal
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "extract.jsonl"
    status, _, err = cli("inspect", deep)
    assert status == 2
    assert str(deep) in _one_line_error(err)


# --- check says what encode does ------------------------------------------------------


def _rows_with_bad_cells() -> list[list[str]]:
    from .conftest import ROWS

    rows = [list(r) for r in ROWS]
    rows[1][4] = "31/02/2013"  # line 3: a date of birth that is no day
    rows[2][9] = "9434765918"  # line 4: an NHS number with the wrong check digit
    return rows


@pytest.mark.parametrize(
    ("policy", "check_status", "verdict", "encode_status", "encoded"),
    [
        (
            None,
            2,
            "2 errors, 0 warnings: encode would refuse this file: with --on-bad fail it stops "
            "at line 3 (identity.date_of_birth, column 'DOB'); --on-bad skip-row or drop-field "
            "would go on past bad input",
            2,
            "school.csv:3: field date_of_birth (column 'DOB'): date '31/02/2013' is not a real "
            "date",
        ),
        (
            "skip-row",
            1,
            "2 warnings, no errors: encode --on-bad skip-row would accept this file",
            0,
            "1 records from 3 rows (2 skipped, 0 fields dropped)",
        ),
        (
            "drop-field",
            1,
            "2 warnings, no errors: encode --on-bad drop-field would accept this file",
            0,
            "3 records from 3 rows (0 skipped, 2 fields dropped)",
        ),
    ],
)
def test_check_says_what_encode_does_with_the_same_on_bad(
    cli, encode_args, policy, check_status, verdict, encode_status, encoded
):
    argv = encode_args(_rows_with_bad_cells(), **{"--on-bad": policy})
    opts = dict(zip(argv[1::2], argv[2::2], strict=True))
    check = ["check", "--mapping", opts["--mapping"], "--input", opts["--input"]]
    check += ["--extract-date", opts["--extract-date"]]
    check += ["--on-bad", policy] if policy else []
    status, out, _ = cli(*check)
    assert (status, out.strip().splitlines()[-1]) == (check_status, verdict)
    status, out, err = cli(*argv)
    assert status == encode_status
    assert encoded in (_one_line_error(err) if status else _flat(out))


# --- synthetic population and the demo -------------------------------------------------


def test_generate_writes_a_population(cli, tmp_path):
    target = tmp_path / "pop"
    status, out, err = cli("generate", "--households", 50, "--seed", 7, "--out", target)
    assert (status, err) == (0, "")
    assert "generated 50 households" in _flat(out)
    csvs = sorted(target.glob("*.csv"))
    assert csvs, list(target.iterdir())
    for path in csvs:
        assert path.with_name(f"{path.stem}.mapping.toml").exists()
        assert path.read_bytes().count(b"\n") >= 2  # a header and records (encodings vary)


def test_demo_runs_and_is_repeatable(cli, tmp_path):
    out_dir = tmp_path / "demo"
    status, out, err = cli("demo", "--households", 60, "--seed", 11, "--out", out_dir)
    assert (status, err) == (0, "")
    assert ": 0 found" in _flat(out)
    keys = out_dir / "keys"
    extracts = sorted((out_dir / "extracts").glob("*.jsonl"))
    assert len(extracts) >= 2
    for path in extracts:
        info = verify_extract(
            path, load_agency_public_key(keys / path.stem / "agency.pub"), schema=default_schema()
        )
        assert info.signature_checked and info.trailer.record_count > 0
    key_files = sorted(p for p in keys.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in key_files}
    assert all(_mode(p) == 0o600 for p in key_files if p.suffix in (".key", ".secret"))
    # plaintext and identifying outputs: 0600 files in 0700 directories
    for sub in ("population", "extracts"):
        assert _mode(out_dir / sub) == 0o700, sub
        outputs = [p for p in (out_dir / sub).rglob("*") if p.is_file()]
        assert outputs and all(_mode(p) == 0o600 for p in outputs), sub
    assert _mode(out_dir) == 0o700 and _mode(keys) == 0o700

    status, out, err = cli("demo", "--households", 60, "--seed", 11, "--out", out_dir)
    assert (status, err) == (0, "")
    assert ": 0 found" in _flat(out)
    assert {p: p.read_bytes() for p in key_files} == before  # reused, never overwritten
    for path in extracts:
        info = verify_extract(path, load_agency_public_key(keys / path.stem / "agency.pub"))
        assert info.signature_checked


def test_paths_with_markup_characters_are_printed_verbatim(tmp_path, capsys):
    from agency_client._cli import main

    out = tmp_path / "odd[/]name[bold]"
    assert main(["secret", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.replace("\n", "")
    assert "odd[/]name[bold]" in printed
