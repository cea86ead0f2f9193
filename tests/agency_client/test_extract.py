"""Extracts: encode, sign, verify; any change is caught; bad input is named; writes are atomic."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import pytest

from agency_client import _extract as extract_module
from agency_client._errors import ConfigError, ExtractError, InputError
from agency_client._extract import encode_csv, iter_records, verify_extract
from agency_client._keys import (
    generate_agency_key,
    load_agency_key,
    load_agency_public_key,
    load_seal_private_key,
    load_seal_public_key,
    load_secret,
)
from agency_client._mapping import load_mapping
from agency_client._privacy import identity_needles, scan_extract
from agency_client._rows import BadRowPolicy
from protocols import TokenisedRecord, default_schema, open_sealed_identity

from .conftest import EXTRACT_DATE, ROWS, in_row_order


@pytest.fixture
def encode_file(keys):
    """Factory: encode a CSV as it is on disk (with the school's keys) into ``target``."""

    def run(csv_path, map_path, target, policy=BadRowPolicy.FAIL, workers=1):
        return encode_csv(
            csv_path,
            load_mapping(map_path),
            default_schema(),
            load_secret(keys["secret"]),
            load_agency_key(keys["agency_key"]),
            load_seal_public_key(keys["seal_pub"]),
            target,
            extract_date=EXTRACT_DATE,
            policy=policy,
            workers=workers,
        )

    return run


@pytest.fixture
def encode(encode_file, school_csv, tmp_path):
    """Factory: encode rows into tmp_path/out.jsonl and return (summary, path)."""

    def run(rows=None, mapping=None, policy=BadRowPolicy.FAIL, workers=1, out=None):
        csv_path, map_path = school_csv(rows, **({"mapping": mapping} if mapping else {}))
        target = out or tmp_path / "out.jsonl"
        return encode_file(csv_path, map_path, target, policy, workers), target

    return run


@pytest.mark.parametrize("workers", [1, 2])
def test_encode_and_verify(encode, keys, workers, monkeypatch):
    # tiny blocks so that two workers really run, in order, on three rows
    monkeypatch.setattr("agency_client._extract.BLOCK_BYTES", 64)
    monkeypatch.setattr("agency_client._extract.SPAWN_AFTER_BLOCKS", 2)
    summary, path = encode(workers=workers)
    assert summary.record_count == 3
    info = verify_extract(path, load_agency_public_key(keys["agency_pub"]), schema=default_schema())
    assert info.signature_checked and info.trailer.record_count == 3
    assert info.person_fill.lengths == {default_schema().person_filter.output_bits: 3}
    assert len(info.sealed_lengths) == 1
    assert info.exact_tokens["nhs_number"] == 1
    assert info.indicators == {"attendance_pct": 2, "permanent_exclusion": 1}
    records = list(iter_records(path))
    for raw in records:
        TokenisedRecord.model_validate(raw)  # every written line is a valid wire record
    assert len({r["record_ref"] for r in records}) == 3  # every row once, none twice
    first = in_row_order(path, keys["agency_key"], ["P001"])[0]
    assert first["age"] == 14 and first["sex"] == "M" and first["postcode_district"] == "LS6"
    attendance = [i for i in first["indicators"] if i["type"] == "attendance_pct"][0]
    assert attendance == {"type": "attendance_pct", "value": 86.5, "date": "2026-07-31"}


def test_sealed_identity_holds_the_original_values(encode, keys):
    _, path = encode()
    sk = load_seal_private_key(keys["seal_key"])
    rec = in_row_order(path, keys["agency_key"], ["P002"])[0]
    ident = open_sealed_identity(rec["sealed_identity"], sk, expect_record_ref=rec["record_ref"])
    assert ident.given_names == "Zoë" and ident.family_name == "O'Brien"
    assert ident.former_family_names == "Kelly" and ident.postcode == "LS6 2AB"
    assert ident.address_lines == ("Flat 2, 7 Mill Lane", "Leeds") and ident.system_id == "P002"


def test_record_refs_are_stable_and_pseudonymous(encode, tmp_path):
    _, a = encode(out=tmp_path / "a.jsonl")
    _, b = encode(out=tmp_path / "b.jsonl")
    refs_a = [r["record_ref"] for r in iter_records(a)]
    assert sorted(refs_a) == sorted(r["record_ref"] for r in iter_records(b))
    assert not any("P00" in r for r in refs_a)


def test_no_plaintext_identifier_outside_the_seal(encode, school_csv):
    csv_path, map_path = school_csv()
    _, path = encode()
    needles = identity_needles(csv_path, load_mapping(map_path))
    assert {"William", "Smith", "Jones", "2012-04-03", "LS6 2AB", "9434765919"} <= needles.all()
    assert scan_extract(path, needles) == set()


def test_scanner_would_catch_a_leak(encode, school_csv, tmp_path):
    csv_path, map_path = school_csv()
    _, path = encode()
    lines = path.read_bytes().splitlines()
    rec = json.loads(lines[1])
    rec["note"] = "Smith-Jones"
    leaky = tmp_path / "leaky.jsonl"
    leaky.write_bytes(b"\n".join([lines[0], json.dumps(rec).encode(), *lines[2:]]) + b"\n")
    assert "Smith" in scan_extract(leaky, identity_needles(csv_path, load_mapping(map_path)))


def test_any_changed_byte_fails_verification(encode, keys):
    _, path = encode()
    original = path.read_bytes()
    public = load_agency_public_key(keys["agency_pub"])
    rng = random.Random(7)
    header_end = original.index(b"\n")
    trailer_start = original.rindex(b"\n", 0, len(original) - 1)
    positions = (
        list(range(0, header_end, 3))
        + list(range(trailer_start, len(original)))
        + rng.sample(range(header_end, trailer_start), 150)
    )
    for pos in positions:
        tampered = bytearray(original)
        tampered[pos] = (tampered[pos] + 1) % 256
        path.write_bytes(bytes(tampered))
        with pytest.raises(ExtractError):
            verify_extract(path, public)
    path.write_bytes(original)
    verify_extract(path, public)


def test_dropped_reordered_or_wrongly_signed_records_fail(encode, keys, tmp_path):
    _, path = encode()
    lines = path.read_bytes().splitlines(keepends=True)
    public = load_agency_public_key(keys["agency_pub"])
    for name, body in (
        ("dropped", lines[:2] + lines[3:]),
        ("reordered", [lines[0], lines[2], lines[1], *lines[3:]]),
        ("truncated", lines[:-1]),
        ("header only", lines[:1]),
    ):
        p = tmp_path / f"{name}.jsonl"
        p.write_bytes(b"".join(body))
        with pytest.raises(ExtractError):
            verify_extract(p, public)
    other = tmp_path / "other"
    generate_agency_key("school", other)
    with pytest.raises(ExtractError, match="signed with key"):
        verify_extract(path, load_agency_public_key(other / "agency.pub"))


def test_unknown_column_in_mapping_is_named(encode):
    from .conftest import MAPPING

    with pytest.raises(InputError, match=r"school.csv:1.*'Surnme'.*not in the header"):
        encode(mapping=MAPPING.replace('family_name = "Surname"', 'family_name = "Surnme"'))


def test_bad_date_postcode_and_short_row_name_line_and_field(encode):
    bad_date = [r[:] for r in ROWS]
    bad_date[1][4] = "31/31/2016"
    with pytest.raises(InputError, match=r"school.csv:3: field date_of_birth \(column 'DOB'\)"):
        encode(rows=bad_date)
    bad_pc = [r[:] for r in ROWS]
    bad_pc[2][8] = "ZZZ 999"
    with pytest.raises(InputError, match=r"school.csv:4: field postcode \(column 'Postcode'\)"):
        encode(rows=bad_pc)
    short = [r[:] for r in ROWS]
    short[0] = short[0][:5]
    with pytest.raises(InputError, match=r"school.csv:2: row has 5 fields, the header has 13"):
        encode(rows=short)
    bad_flag = [r[:] for r in ROWS]
    bad_flag[0][12] = "perhaps"
    with pytest.raises(InputError, match=r"indicator permanent_exclusion"):
        encode(rows=bad_flag)


@pytest.mark.parametrize("workers", [1, 2])
def test_undecodable_bytes_name_their_line(encode_file, school_csv, tmp_path, monkeypatch, workers):
    monkeypatch.setattr("agency_client._extract.BLOCK_BYTES", 64)
    monkeypatch.setattr("agency_client._extract.SPAWN_AFTER_BLOCKS", 2)
    csv_path, map_path = school_csv([r[:] for r in ROWS] * 3)
    lines = csv_path.read_bytes().split(b"\n")
    lines[7] = lines[7].replace(b"Smith", b"Sm\xffth")  # line 8 of the file
    csv_path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError, match=r"school.csv:8: not valid utf-8-sig text"):
        # undecodable text stops the run under any policy
        encode_file(csv_path, map_path, tmp_path / "x.jsonl", BadRowPolicy.SKIP_ROW, workers)
    assert not (tmp_path / "x.jsonl").exists()


def test_single_byte_code_pages_are_read_and_other_encodings_refused(
    encode, encode_file, school_csv, keys, tmp_path
):
    from .conftest import MAPPING

    def with_encoding(name: str) -> str:
        return MAPPING.replace("[identity]", f'[csv]\nencoding = "{name}"\n\n[identity]', 1)

    rows = [r[:] for r in ROWS]
    rows[0][1] = "Zoë"
    csv_path, map_path = school_csv(rows, mapping=with_encoding("cp1252"))
    csv_path.write_bytes(csv_path.read_text(encoding="utf-8").encode("cp1252"))
    summary = encode_file(csv_path, map_path, tmp_path / "x.jsonl")
    assert summary.record_count == 3
    first = in_row_order(summary.out_path, keys["agency_key"], ["P001"])[0]
    ident = open_sealed_identity(first["sealed_identity"], load_seal_private_key(keys["seal_key"]))
    assert ident.given_names == "Zoë"

    for bad, message in (("utf-16", "not supported"), ("klingon", "unknown encoding")):
        with pytest.raises(ConfigError, match=message):
            encode(mapping=with_encoding(bad))


def test_skip_and_drop_policies_report_problems(encode, keys):
    rows = [r[:] for r in ROWS]
    rows[1][4] = "31/31/2016"
    summary, path = encode(rows=rows, policy=BadRowPolicy.SKIP_ROW)
    assert summary.record_count == 2 and summary.rows_skipped == 1
    assert summary.problems_path is not None
    report = summary.problems_path.read_text()
    assert "school.csv,3,date_of_birth (column 'DOB')" in report and "row skipped" in report

    summary, path = encode(rows=rows, policy=BadRowPolicy.DROP_FIELD)
    assert summary.record_count == 3 and summary.fields_dropped == 1
    zoe = in_row_order(path, keys["agency_key"], ["P002"])[0]
    assert "age" not in zoe  # the bad DOB is missing, not guessed


def test_empty_and_header_only_files(encode, encode_file, school_csv, tmp_path):
    with pytest.raises(InputError, match="header but no records"):
        encode(rows=[])
    csv_path, map_path = school_csv()
    csv_path.write_text("")
    with pytest.raises(InputError, match="empty: no header row"):
        encode_file(csv_path, map_path, tmp_path / "x.jsonl")


def test_failed_encode_leaves_previous_extract_intact_and_no_temp(encode, tmp_path):
    _, path = encode()
    before = path.read_bytes()
    rows = [r[:] for r in ROWS]
    rows[2][4] = "not a date"
    with pytest.raises(InputError):
        encode(rows=rows)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert [p.name for p in tmp_path.iterdir() if "shuffle" in p.name] == []  # buckets gone


@pytest.mark.parametrize("fail", [False, True])
def test_the_shuffle_buckets_are_removed_whether_the_run_succeeds_or_fails(
    encode, tmp_path, monkeypatch, fail
):
    # worker processes append their encoded lines to bucket files in a private
    # directory beside the extract: none may outlive the run
    made: list[str] = []
    written: list[str] = []
    real_init, real_scatter = extract_module._Shuffle.__init__, extract_module._scatter

    def spy_init(self, out_dir, buckets):
        real_init(self, out_dir, buckets)
        made.append(self.dir)

    def spy_scatter(directory, buckets, data, writer):
        real_scatter(directory, buckets, data, writer)
        written.extend(os.listdir(directory))

    monkeypatch.setattr(extract_module._Shuffle, "__init__", spy_init)
    monkeypatch.setattr(extract_module, "_scatter", spy_scatter)
    monkeypatch.setattr("agency_client._extract.BLOCK_BYTES", 64)
    monkeypatch.setattr("agency_client._extract.SPAWN_AFTER_BLOCKS", 2)
    monkeypatch.setattr("agency_client._extract.SHUFFLE_CSV_BYTES_PER_BUCKET", 256)
    rows = [[f"{r[0]}-{k}", *r[1:]] for k in range(4) for r in ROWS]  # ids must not repeat
    if fail:
        rows[-1][4] = "not a date"
        with pytest.raises(InputError, match="school.csv:13"):
            encode(rows=rows, workers=2)
    else:
        summary, _ = encode(rows=rows, workers=2)
        assert summary.record_count == 12
    assert len(made) == 1 and not os.path.exists(made[0])
    # the spy runs in the main process only; workers scatter in their own processes
    assert not written


def test_worker_processes_scatter_into_buckets_of_their_own(tmp_path):
    shuffle = extract_module._Shuffle(tmp_path, 4)
    d = Path(shuffle.dir)
    lines = [f"line {k}".encode() for k in range(2000)]
    extract_module._scatter(str(d), 4, b"\n".join(lines[:1000]) + b"\n", "101")
    extract_module._scatter(str(d), 4, b"\n".join(lines[1000:]) + b"\n", "102")
    names = sorted(os.listdir(d))
    assert {n.split(".")[1] for n in names} == {"101", "102"}
    assert all(os.stat(d / n).st_mode & 0o777 == 0o600 for n in names)
    extract_module._order_bucket(str(d), 2)  # as a worker process does, one bucket
    assert "2.ordered" in os.listdir(d) and not any(n.startswith("2.1") for n in os.listdir(d))
    out = b"".join(shuffle.shuffled()).split(b"\n")[:-1]
    assert sorted(out) == sorted(lines) and out != lines
    assert not os.listdir(d)  # each bucket's files are removed as they are read
    shuffle.close()


def _content(path):
    """Each record's encodings by ref (the sealed blob is randomised, so not compared)."""
    return {
        r["record_ref"]: {k: v for k, v in r.items() if k != "sealed_identity"}
        for r in iter_records(path)
    }


def _many_rows(n):
    return [[f"{r[0]}-{k}", *r[1:]] for k in range(n // len(ROWS)) for r in ROWS]


def test_two_encodes_of_one_csv_write_the_same_records_in_different_orders(encode, tmp_path):
    rows = _many_rows(60)
    _, a = encode(rows=rows, out=tmp_path / "a.jsonl")
    _, b = encode(rows=rows, out=tmp_path / "b.jsonl")
    refs_a = [r["record_ref"] for r in iter_records(a)]
    refs_b = [r["record_ref"] for r in iter_records(b)]
    assert sorted(refs_a) == sorted(refs_b) and len(set(refs_a)) == 60
    # a fresh permutation per extract: the same order twice has chance 1/60!
    assert refs_a != refs_b


@pytest.mark.parametrize("workers", [1, 2])
def test_encode_writes_every_record_once_in_an_order_unlike_the_csv(
    encode, keys, tmp_path, monkeypatch, workers
):
    # many blocks (two workers really run) and several shuffle buckets
    monkeypatch.setattr("agency_client._extract.BLOCK_BYTES", 256)
    monkeypatch.setattr("agency_client._extract.SPAWN_AFTER_BLOCKS", 2)
    monkeypatch.setattr("agency_client._extract.SHUFFLE_CSV_BYTES_PER_BUCKET", 1024)
    rows = _many_rows(90)
    _, one = encode(rows=rows, out=tmp_path / "one.jsonl")
    summary, path = encode(rows=rows, workers=workers, out=tmp_path / "many.jsonl")
    assert summary.record_count == 90
    info = verify_extract(path, load_agency_public_key(keys["agency_pub"]), schema=default_schema())
    assert info.signature_checked and info.duplicate_refs == 0
    assert _content(path) == _content(one)  # the same records, whatever the workers
    in_rows = [
        r["record_ref"] for r in in_row_order(path, keys["agency_key"], [r[0] for r in rows])
    ]
    assert len(in_rows) == 90
    assert [r["record_ref"] for r in iter_records(path)] != in_rows  # chance 1/90!


def test_shuffle_makes_every_order_about_equally_often(tmp_path):
    lines = [b"a", b"b", b"c", b"d"]
    seen: dict[bytes, int] = {}
    for _ in range(2400):
        shuffle = extract_module._Shuffle(tmp_path, buckets=3)
        try:  # two writers, as two worker processes
            extract_module._scatter(shuffle.dir, 3, b"\n".join(lines[:3]) + b"\n", "1")
            extract_module._scatter(shuffle.dir, 3, lines[3] + b"\n", "2")
            out = b"".join(shuffle.shuffled())
        finally:
            shuffle.close()
        assert sorted(out.splitlines()) == lines
        seen[out] = seen.get(out, 0) + 1
    # 24 orders, 100 each expected (binomial sd about 10): a biased shuffle misses or doubles some
    assert len(seen) == 24 and all(50 <= n <= 160 for n in seen.values()), seen
    assert list(tmp_path.iterdir()) == []  # every bucket directory removed


def test_the_shuffle_buckets_are_private_and_beside_the_extract(tmp_path):
    shuffle = extract_module._Shuffle(tmp_path, 2)
    try:
        assert os.path.dirname(shuffle.dir) == str(tmp_path)
        assert oct(os.stat(shuffle.dir).st_mode & 0o777) == "0o700"
    finally:
        shuffle.close()
    assert not os.path.exists(shuffle.dir)


def test_agency_key_must_match_mapping(keys, school_csv, tmp_path):
    csv_path, map_path = school_csv()
    generate_agency_key("police", tmp_path / "police")
    with pytest.raises(ConfigError, match="'police'.*'school'"):
        encode_csv(
            csv_path,
            load_mapping(map_path),
            default_schema(),
            load_secret(keys["secret"]),
            load_agency_key(tmp_path / "police" / "agency.key"),
            load_seal_public_key(keys["seal_pub"]),
            tmp_path / "x.jsonl",
            workers=1,
        )


def test_schema_mismatch_is_caught_on_verify(encode, keys):
    _, path = encode()
    other = default_schema().model_copy(update={"name": "another scheme"})
    with pytest.raises(ExtractError, match="encoded with schema"):
        verify_extract(path, None, schema=other)


def test_output_file_mode_is_not_world_writable(encode):
    _, path = encode()
    assert not os.stat(path).st_mode & 0o002


def test_extract_and_problems_are_owner_only_in_an_owner_only_directory(encode, tmp_path):
    rows = [r[:] for r in ROWS]
    rows[1][4] = "31/31/2016"  # a problem report, which quotes the agency's raw values
    old = os.umask(0o022)
    try:
        # an earlier, looser file of the same name is narrowed, not kept
        (tmp_path / "new").mkdir(mode=0o755)
        (tmp_path / "new" / "out.jsonl.problems.csv").write_text("old")
        os.chmod(tmp_path / "new" / "out.jsonl.problems.csv", 0o644)
        summary, path = encode(
            rows=rows, policy=BadRowPolicy.SKIP_ROW, out=tmp_path / "new" / "out.jsonl"
        )
        summary2, path2 = encode(out=tmp_path / "made" / "deeper" / "out.jsonl")
    finally:
        os.umask(old)
    assert summary.problems_path is not None
    for f in (path, summary.problems_path, path2):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    # directories it made are 0700; one it was handed is left as it was
    for d in (tmp_path / "made", tmp_path / "made" / "deeper"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o755


def _resign(path, keys, edit):
    """Rewrite one record with ``edit`` and sign the result with the agency's real key."""
    import base64
    import hashlib

    from protocols import ExtractHeader, ExtractTrailer, signed_message

    lines = path.read_bytes().splitlines(keepends=True)
    header = ExtractHeader.model_validate_json(lines[0])
    rec = json.loads(lines[1])
    edit(rec)
    body = [json.dumps(rec, separators=(",", ":")).encode() + b"\n", *lines[2:-1]]
    digest = hashlib.sha256(b"".join(body)).hexdigest()
    key = load_agency_key(keys["agency_key"])
    sig = key.signing_key.sign(signed_message(header, len(body), digest)).signature
    trailer = ExtractTrailer(
        record_count=len(body), records_sha256=digest, signature=base64.b64encode(sig).decode()
    )
    path.write_bytes(b"".join([lines[0], *body, trailer.model_dump_json().encode() + b"\n"]))


def test_plaintext_smuggled_into_token_fields_is_refused_even_when_signed(encode, keys):
    public = load_agency_public_key(keys["agency_pub"])
    _, path = encode()
    _resign(path, keys, lambda r: r.setdefault("blocking_keys", {}).update(family_dob="smith"))
    with pytest.raises(ExtractError, match="blocking_keys"):
        verify_extract(path, public)
    _, path = encode()
    _resign(  # "SMITH"
        path, keys, lambda r: r.setdefault("blocking_keys", {}).update(family_dob="U01JVEg=")
    )
    with pytest.raises(ExtractError, match="12-byte keyed token"):
        verify_extract(path, public)
    _, path = encode()
    # the first line is any of the three rows (shuffled), not only the one with an NHS number
    _resign(
        path,
        keys,
        lambda r: r.setdefault("exact_tokens", {}).update(nhs_number="OTQzNDc2NTkxOQ=="),
    )
    with pytest.raises(ExtractError, match="24-byte keyed token"):
        verify_extract(path, public)
