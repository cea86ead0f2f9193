"""Streamed ingest: every check on header, records and trailer, idempotence, supersede."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from linkage_service import _store as store
from linkage_service._batch import RecordBatch, token_code
from linkage_service._errors import (
    AuthError,
    IngestError,
    ReplayError,
    SchemaError,
    SignatureError,
    TooLarge,
)
from linkage_service._ingest import b64, content_digest
from linkage_service._service import LinkageService
from protocols import Indicator, IndicatorType, TokenisedRecord

from ._factories import FP, SCHEMA, FakeEngine, build_extract, make_record, register
from .conftest import ingest


def _active(svc) -> dict[str, int]:
    with svc.sql.connect() as c:
        rows = c.execute(
            sa.select(store.records.c.record_ref, store.records.c.id).where(store.records.c.active)
        ).all()
    return {r: i for r, i in rows}


def test_happy_path_stores_records_persons_and_run(make_service, school, rng):
    svc = make_service()
    recs = [make_record(rng) for _ in range(25)]
    summary = ingest(svc, build_extract(school, recs))
    assert summary["records_added"] == 25 and summary["idempotent"] is False
    assert set(_active(svc)) == {r["record_ref"] for r in recs}
    stats = store.statistics(svc.sql)
    assert stats["persons"] == 25 and stats["households"] == 25
    assert stats["last_run"]["extract_id"] == summary["extract_id"]


def test_same_extract_twice_changes_nothing(make_service, school, rng):
    svc = make_service()
    body = build_extract(school, [make_record(rng) for _ in range(5)])
    first = ingest(svc, body)
    before = store.statistics(svc.sql)
    again = ingest(svc, body, chunk=13)
    assert again["idempotent"] is True and again["run_id"] == first["run_id"]
    after = store.statistics(svc.sql)
    assert after == before


def test_replayed_extract_id_with_different_content_is_refused(make_service, school, rng):
    svc = make_service()
    xid = "a" * 32
    ingest(svc, build_extract(school, [make_record(rng)], extract_id=xid))
    with pytest.raises(ReplayError, match="already received with different content"):
        ingest(svc, build_extract(school, [make_record(rng)], extract_id=xid))


def test_new_extract_supersedes_and_retires_missing_records(make_service, school, rng):
    svc = make_service()
    recs = [make_record(rng) for _ in range(4)]
    first = ingest(svc, build_extract(school, recs))
    ids = _active(svc)
    changed = dict(recs[1], sex="F" if recs[1]["sex"] == "M" else "M")
    kept = dict(recs[0], sealed_identity=make_record(rng)["sealed_identity"])  # new seal only
    fresh = make_record(rng)
    second = ingest(svc, build_extract(school, [kept, changed, fresh]))
    assert second["records_kept"] == 1
    assert second["records_changed"] == 1
    assert second["records_retired"] == 2  # recs[2], recs[3] are gone
    assert second["records_added"] == 2  # changed + fresh
    now = _active(svc)
    assert set(now) == {recs[0]["record_ref"], recs[1]["record_ref"], fresh["record_ref"]}
    assert now[recs[0]["record_ref"]] == ids[recs[0]["record_ref"]]  # kept: same id
    assert now[recs[1]["record_ref"]] != ids[recs[1]["record_ref"]]
    with svc.sql.connect() as c:
        retired = c.execute(
            sa.select(store.records.c.record_ref, store.records.c.retired_by).where(
                sa.not_(store.records.c.active)
            )
        ).all()
        statuses = {
            x: st
            for x, st in c.execute(sa.select(store.extracts.c.extract_id, store.extracts.c.status))
        }
    assert {r for r, _ in retired} == {
        recs[1]["record_ref"],
        recs[2]["record_ref"],
        recs[3]["record_ref"],
    }
    assert {b for _, b in retired} == {second["extract_id"]}
    assert statuses == {first["extract_id"]: "superseded", second["extract_id"]: "applied"}
    stats = store.statistics(svc.sql)
    assert stats["active_records"] == 3 and stats["retired_records"] == 3


def test_identical_filters_are_linked_across_agencies(make_service, school, police, rng):
    svc = make_service()
    a = make_record(rng)
    ingest(svc, build_extract(school, [a]))
    b = make_record(rng, clk=a["clk"])
    ingest(svc, build_extract(police, [b], extract_type="police"), agency_id="police")
    links = store.record_links(svc.sql, "police", b["record_ref"])
    pair = links["links"][0]  # a and b in id order, and ids are random
    assert {pair["a"]["record_ref"], pair["b"]["record_ref"]} == {a["record_ref"], b["record_ref"]}
    assert links["links"][0]["evidence"]["tokens_agreed"] == ["nhs_number"]
    person = store.get_person(svc.sql, links["person_id"])
    assert {r["agency_id"] for r in person["records"]} == {"school", "police"}


def test_unknown_agency_is_refused(make_service, rng):
    from ._factories import agency

    svc = make_service()
    stranger = agency("housing", 9)
    with pytest.raises(AuthError, match="'housing' is not registered"):
        ingest(svc, build_extract(stranger, [make_record(rng)]), agency_id="housing")


def test_extract_of_another_agency_is_refused(make_service, school, rng):
    svc = make_service()
    with pytest.raises(AuthError, match="pushes for agency 'police'"):
        ingest(svc, build_extract(school, [make_record(rng)]), agency_id="police")


def test_extract_type_not_allowed(make_service, school, rng):
    svc = make_service()
    with pytest.raises(AuthError, match="not 'police'"):
        ingest(svc, build_extract(school, [make_record(rng)], extract_type="police"))


def test_tampered_byte_is_refused(make_service, school, rng):
    svc = make_service()
    body = bytearray(build_extract(school, [make_record(rng) for _ in range(3)]))
    i = body.index(b'"sex":"') + 7  # still a valid record: only the digest can tell
    body[i] = ord("F") if body[i] != ord("F") else ord("M")
    with pytest.raises(SignatureError, match="records_sha256 does not match"):
        ingest(svc, bytes(body))


def test_resigned_with_another_key_is_refused(make_service, school, rng):
    svc = make_service()
    body = build_extract(school, [make_record(rng)], sign_with=SigningKey(b"\x07" * 32))
    with pytest.raises(SignatureError, match="does not verify"):
        ingest(svc, body)


def test_wrong_signing_key_id_is_refused(make_service, school, rng):
    svc = make_service()
    with pytest.raises(SignatureError, match="registered with key"):
        ingest(svc, build_extract(school, [make_record(rng)], key_id_override="f" * 16))


def test_stale_or_mismatched_schema_is_refused(make_service, school, rng):
    svc = make_service()
    with pytest.raises(SchemaError) as info:
        ingest(svc, build_extract(school, [make_record(rng)], fingerprint="0" * 64))
    assert info.value.field == "schema_fingerprint"
    assert str(info.value).endswith(
        f"encoded with schema {'0' * 16}..., the service accepts "
        f"{FP[:16]}...: re-encode with an accepted schema, or, if "
        "the scheme has moved to this one, the service must pin it (its schema_files and "
        "schema_fingerprints settings)"
    )


def test_extract_older_than_current_is_refused(make_service, school, rng):
    svc = make_service()
    now = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    ingest(svc, build_extract(school, [make_record(rng)], created_at=now))
    with pytest.raises(IngestError, match="before the agency's current extract"):
        ingest(
            svc,
            build_extract(school, [make_record(rng)], created_at=now - dt.timedelta(days=1)),
        )


@pytest.mark.parametrize("cut", ["no_trailer", "mid_line", "header_only", "empty"])
def test_truncated_upload_is_refused(make_service, school, rng, cut):
    svc = make_service()
    body = build_extract(school, [make_record(rng) for _ in range(3)])
    lines = body.splitlines(keepends=True)
    cut_body = {
        "no_trailer": b"".join(lines[:-1]),
        "mid_line": body[: len(body) - 40],
        "header_only": lines[0],
        "empty": b"",
    }[cut]
    with pytest.raises(IngestError):
        ingest(svc, cut_body)
    assert store.statistics(svc.sql)["active_records"] == 0


def test_corrupt_line_names_the_line(make_service, school, rng):
    svc = make_service()
    recs: list = [make_record(rng), b'{"record_ref": "oops\n', make_record(rng)]
    with pytest.raises(IngestError) as info:
        ingest(svc, build_extract(school, recs))
    assert info.value.line == 3 and "not a JSON record" in str(info.value)


def test_wrong_filter_length_is_refused(make_service, school, rng):
    svc = make_service()
    bad = make_record(rng, clk=base64.b64encode(rng.randbytes(64)).decode())
    with pytest.raises(IngestError, match="512 bits, the schema says 1024") as info:
        ingest(svc, build_extract(school, [make_record(rng), bad]))
    assert (info.value.line, info.value.field) == (3, "clk")


def test_non_base64_filter_is_refused(make_service, school, rng):
    svc = make_service()
    bad = make_record(rng, address_clk="!!!not-base64!!!")
    with pytest.raises(IngestError) as info:
        ingest(svc, build_extract(school, [bad]))
    assert (info.value.line, info.value.field) == (2, "address_clk")


def test_non_canonical_base64_is_refused(make_service, school, rng):
    svc = make_service()
    sealed = make_record(rng)["clk"]  # 128 bytes: ends in one '=' of padding
    assert sealed.endswith("=") and not sealed.endswith("==")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".index(sealed[-2])
    twisted = (
        sealed[:-2]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[last ^ 1]
        + "="
    )  # sets an unused low bit: decodes to the same bytes
    assert base64.b64decode(twisted) == base64.b64decode(sealed)
    with pytest.raises(IngestError, match="not canonical base64") as info:
        ingest(svc, build_extract(school, [make_record(rng, clk=twisted)]))
    assert info.value.field == "clk"


def test_wrong_token_length_is_refused(make_service, school, rng):
    svc = make_service()
    bad = make_record(rng, exact_tokens={"nhs_number": base64.b64encode(b"x" * 12).decode()})
    with pytest.raises(IngestError, match="24-byte keyed token") as info:
        ingest(svc, build_extract(school, [bad]))
    assert info.value.field == "exact_tokens.nhs_number"


def test_bad_blocking_keys_are_refused(make_service, school, rng):
    svc = make_service()
    name = SCHEMA.blocking_keys[0].name
    unknown = make_record(rng, blocking_keys={"shoe_size": base64.b64encode(b"x" * 12).decode()})
    with pytest.raises(IngestError, match="blocking key not in the schema") as info:
        ingest(svc, build_extract(school, [unknown]))
    assert (info.value.line, info.value.field) == (2, "blocking_keys.shoe_size")
    short = make_record(rng, blocking_keys={name: base64.b64encode(b"x" * 8).decode()})
    with pytest.raises(IngestError, match="12-byte keyed token") as info:
        ingest(svc, build_extract(school, [make_record(rng), short]))
    assert (info.value.line, info.value.field) == (3, f"blocking_keys.{name}")


def test_wrong_sealed_length_is_refused(make_service, school, rng):
    svc = make_service()
    bad = make_record(rng, sealed_identity=base64.b64encode(b"\x01" * 100).decode())
    with pytest.raises(IngestError, match="sealed blob has 100 bytes"):
        ingest(svc, build_extract(school, [bad]))


def test_duplicate_record_refs_name_both_lines(make_service, school, rng):
    svc = make_service()
    a = make_record(rng)
    recs = [a, make_record(rng), make_record(rng, ref=a["record_ref"])]
    with pytest.raises(IngestError, match="appears twice \\(first on line 2\\)") as info:
        ingest(svc, build_extract(school, recs))
    assert info.value.line == 4


def test_oversized_body_and_line(make_service, school, rng):
    svc = make_service(max_body_bytes=4096, max_line_bytes=2048)
    with pytest.raises(TooLarge, match="larger than the limit of 4096"):
        ingest(svc, build_extract(school, [make_record(rng) for _ in range(5)]))
    svc2 = make_service(max_line_bytes=1024)
    with pytest.raises(TooLarge, match="line longer") as info:
        ingest(svc2, build_extract(school, [make_record(rng)]))
    assert info.value.line == 2


def test_extra_field_in_record_is_refused(make_service, school, rng):
    svc = make_service()
    bad = make_record(rng, name="should never be here")
    with pytest.raises(IngestError) as info:
        ingest(svc, build_extract(school, [bad]))
    assert info.value.field == "name"
    assert "should never be here" not in str(info.value)


def test_failed_ingest_leaves_nothing_staged(make_service, school, rng, tmp_path):
    svc = make_service()
    body = build_extract(school, [make_record(rng) for _ in range(3)])
    with pytest.raises(IngestError):
        ingest(svc, body[:-10])
    assert not list(tmp_path.glob("linkage-stage-*"))


def test_real_agency_client_extract(make_service, tmp_path, rng):
    """An extract written by agency-client encode (real encoder, sealing, signature)."""
    from agency_client import encode_csv, load_agency_key, load_mapping, load_seal_public_key
    from agency_client._keys import generate_agency_key, generate_seal_keypair, generate_secret
    from tests.agency_client.conftest import MAPPING, ROWS, write_csv

    kdir = tmp_path / "keys"
    generate_secret(kdir / "linkage.secret")
    generate_seal_keypair(kdir / "unlock")
    generate_agency_key("school", kdir / "school")
    csv_path = write_csv(tmp_path / "school.csv", ROWS)
    (tmp_path / "school.toml").write_text(MAPPING)
    from agency_client import load_secret
    from protocols import default_schema

    key = load_agency_key(kdir / "school" / "agency.key")
    out = tmp_path / "school.jsonl"
    encode_csv(
        csv_path,
        load_mapping(tmp_path / "school.toml"),
        default_schema(),
        load_secret(kdir / "linkage.secret"),
        key,
        load_seal_public_key(kdir / "unlock" / "seal.pub"),
        out,
        extract_date=dt.date(2026, 11, 1),
        workers=1,
    )
    svc = make_service()
    store.add_agency(svc.sql, "school", key.public_key, key.key_id, ["education"])
    summary = ingest(svc, out.read_bytes())
    assert summary["records_added"] == 3
    # nothing identifying reached the database: scan every text column
    with svc.sql.connect() as c:
        dump = json.dumps(
            [
                list(map(str, r))
                for t in store.metadata.sorted_tables
                for r in c.execute(sa.select(t))
            ]
        )
    for needle in ("William", "Smith", "O'Brien", "Khan", "P001", "9434765919", "High St"):
        assert needle.lower() not in dump.lower()


@pytest.mark.parametrize(
    ("age", "date", "message"),
    [
        (30, "2026-11-02", "dated 2026-11-02, after the extract date 2026-11-01"),
        (5, "2020-10-31", "before the person was born (aged 5 on 2026-11-01)"),
    ],
)
def test_events_in_the_future_or_before_birth_are_refused(
    make_service, school, rng, age, date, message
):
    svc = make_service()
    good = make_record(rng)
    bad = make_record(rng, age=age, indicators=[{"type": "dv_incidents", "value": 1, "date": date}])
    with pytest.raises(IngestError) as info:
        ingest(svc, build_extract(school, [good, bad]))
    assert info.value.line == 3 and info.value.field == "indicators.0.date"
    assert message in str(info.value) and bad["record_ref"] in str(info.value)
    assert store.statistics(svc.sql)["active_records"] == 0


def test_events_on_the_edges_of_the_allowed_dates_are_kept(make_service, school, rng):
    svc = make_service()
    ok = [
        make_record(rng, age=20, indicators=[{"type": "dv_incidents", "value": 1, "date": d}])
        for d in ("2026-11-01", "2005-11-01")  # the extract date; 21 years before, aged 20
    ]
    ingest(svc, build_extract(school, ok))
    assert store.statistics(svc.sql)["active_records"] == 2


# --- agencies' own identifiers (local_tokens) ------------------------------------------------

LOCAL_SCHEMA = SCHEMA.model_copy(update={"local_identifiers": ("local_person_id",)})
LOCAL_FP = LOCAL_SCHEMA.fingerprint()


class _Recording(FakeEngine):
    """The fake engine, keeping every batch it was built from or given."""

    batches: list[RecordBatch] = []

    def __init__(self, batch, person_of, household_of):
        super().__init__(batch, person_of, household_of)
        _Recording.batches.append(batch)

    def update(self, added, removed, previous=None, persons_ready=None):
        _Recording.batches.append(added)
        return super().update(added, removed, previous, persons_ready)


def _local_service(tmp_path, school):
    sql = store.open_engine(f"sqlite:///{tmp_path / 'local.db'}")
    register(sql, school)
    svc = LinkageService(sql, {LOCAL_FP: LOCAL_SCHEMA}, _Recording, staging_dir=tmp_path)
    svc.start()
    return svc


def test_local_tokens_are_verified_stored_and_batched_as_id_name(tmp_path, school, rng):
    _Recording.batches = []
    svc = _local_service(tmp_path, school)
    token = rng.randbytes(24)
    with_local = make_record(
        rng, local_tokens={"local_person_id": base64.b64encode(token).decode()}
    )
    without = make_record(rng)
    ingest(svc, build_extract(school, [with_local, without], fingerprint=LOCAL_FP))
    added = _Recording.batches[-1]
    assert set(added.exact) == {"nhs_number", "id:local_person_id"}
    codes = dict(zip(added.ids.tolist(), added.exact["id:local_person_id"].tolist(), strict=True))
    assert sorted(codes.values()) == [0, token_code(token)]
    with svc.sql.connect() as c:
        stored = [json.loads(t) for (t,) in c.execute(sa.select(store.records.c.exact_tokens))]
    assert {"nhs_number", "id:local_person_id"} == set(stored[0]) | set(stored[1])
    # a restarted service builds its engine from the database: the tokens are still there
    svc.sql.dispose()
    again = _local_service(tmp_path, school)
    built = _Recording.batches[-1]
    assert len(built) == 2 and sorted(built.exact["id:local_person_id"].tolist()) == sorted(
        codes.values()
    )
    again.sql.dispose()


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({"soc_sec_id": base64.b64encode(b"x" * 24).decode()}, "not in the schema"),
        ({"local_person_id": base64.b64encode(b"x" * 12).decode()}, "24-byte keyed token"),
    ],
)
def test_bad_local_tokens_are_refused(tmp_path, school, rng, tokens, message):
    svc = _local_service(tmp_path, school)
    bad = make_record(rng, local_tokens=tokens)
    with pytest.raises(IngestError, match=message) as info:
        ingest(svc, build_extract(school, [bad], fingerprint=LOCAL_FP))
    assert info.value.field == f"local_tokens.{next(iter(tokens))}"
    svc.sql.dispose()


def test_local_tokens_under_a_schema_without_them_are_refused(make_service, school, rng):
    svc = make_service()
    bad = make_record(rng, local_tokens={"local_person_id": base64.b64encode(b"x" * 24).decode()})
    with pytest.raises(IngestError, match="local identifier type not in the schema"):
        ingest(svc, build_extract(school, [bad]))


def test_content_digest_of_a_record_without_local_tokens_is_unchanged(rng):
    # what the digest was before local_tokens existed: the record without the field
    rec = TokenisedRecord.model_validate(make_record(rng))
    body = rec.model_dump(mode="json", exclude={"sealed_identity", "local_tokens"})
    assert content_digest(rec) == hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    token = {"local_person_id": base64.b64encode(b"y" * 24).decode()}
    assert content_digest(rec.model_copy(update={"local_tokens": token})) != content_digest(rec)


def _digest_reference(record: TokenisedRecord) -> bytes:
    """The content digest as first defined: the model's JSON dump through ``json.dumps``."""
    exclude = {"sealed_identity"} if record.local_tokens else {"sealed_identity", "local_tokens"}
    body = record.model_dump(mode="json", exclude=exclude)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()


def test_content_digest_knows_every_field_of_a_record():
    # content_digest writes the fields one by one: a new field must be added there
    assert set(TokenisedRecord.model_fields) == {
        "record_ref",
        "clk",
        "address_clk",
        "exact_tokens",
        "local_tokens",
        "blocking_keys",
        "age",
        "age_band",
        "sex",
        "postcode_district",
        "indicators",
        "sealed_identity",
    }
    assert set(Indicator.model_fields) == {"type", "value", "date"}


_B64 = st.binary(min_size=0, max_size=40).map(lambda b: base64.b64encode(b).decode())
_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def _records(draw: st.DrawFn) -> TokenisedRecord:
    age = draw(st.none() | st.integers(0, 24))
    band = None if age is not None else draw(st.none() | st.sampled_from(["25-34", "35-49", "50+"]))
    indicators = draw(
        st.lists(
            st.builds(
                dict,
                type=st.sampled_from(list(IndicatorType)).map(str),
                value=st.floats(min_value=0, allow_nan=False, allow_infinity=False)
                | st.integers(0, 10**20),
                date=st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)),
            ),
            max_size=4,
        )
    )
    expectant = any(i["type"] == "expectant_parent" for i in indicators)
    district = None
    if expectant or (age is not None and age < 19):
        district = draw(st.none() | st.from_regex(r"[A-Z]{1,2}[0-9][A-Z0-9]?", fullmatch=True))
    return TokenisedRecord.model_validate(
        {
            "record_ref": draw(st.binary(min_size=16, max_size=16)).hex(),
            "clk": draw(_B64),
            "address_clk": draw(st.none() | _B64),
            "exact_tokens": draw(
                st.dictionaries(st.sampled_from(["nhs_number", "ni_number", "upn"]), _B64)
            ),
            "local_tokens": draw(st.dictionaries(_NAME.filter(lambda n: len(n) > 1), _B64)),
            "blocking_keys": draw(st.dictionaries(_NAME, _B64, max_size=5)),
            "age": age,
            "age_band": band,
            "sex": draw(st.none() | st.sampled_from(["M", "F"])),
            "postcode_district": district,
            "indicators": indicators,
            "sealed_identity": draw(_B64),
        }
    )


@settings(max_examples=500, deadline=None)
@given(_records())
def test_content_digest_is_the_model_dump_digest_for_any_record(record):
    # the digests are stored and compared with every later extract's: the fast form
    # must give the bytes the model_dump form gave, whatever the record holds
    assert content_digest(record) == _digest_reference(record)


def _b64_reference(value: str) -> bytes | str:
    """What b64 did first: strict decode, then always encode again and compare."""
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        return "not valid base64"
    if binascii.b2a_base64(raw, newline=False) != value.encode("ascii"):
        return "not canonical base64"
    return raw


@settings(max_examples=1000, deadline=None)
@given(
    st.text("ABCDQRab019+/=\n ", max_size=14)
    | _B64.map(lambda v: v[:-2] + "R=" if v.endswith("==") else v)
)
def test_b64_refuses_exactly_what_a_full_round_trip_refuses(value):
    try:
        got: bytes | str = b64(value, 2, "clk")
    except IngestError as exc:
        got = str(exc).rsplit(": ", 1)[-1]
        assert exc.line == 2 and exc.field == "clk"
    assert got == _b64_reference(value)


def test_record_ids_do_not_follow_arrival_order(make_service, school, rng):
    svc = make_service()
    recs = [make_record(rng) for _ in range(200)]
    ingest(svc, build_extract(school, recs))
    more = [make_record(rng) for _ in range(50)]
    ingest(svc, build_extract(school, recs + more))
    r = store.records
    with svc.sql.connect() as c:
        held = {ref: (i, s) for ref, i, s in c.execute(sa.select(r.c.record_ref, r.c.id, r.c.seq))}
    ids = [held[x["record_ref"]][0] for x in recs + more]  # in the order the lines arrived
    seqs = [held[x["record_ref"]][1] for x in recs + more]
    assert seqs == sorted(seqs) and len(set(seqs)) == 250  # arrival order, inside the database
    assert all(1 <= i <= store.MAX_RECORD_ID for i in ids) and len(set(ids)) == 250
    # a random order rises at about half of its steps (sd about 4.6 for 250); a count
    # from 1 rises at every one, and so would ids that follow arrival in any way
    rises = sum(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert 85 <= rises <= 164, rises
    assert max(ids[200:]) > min(ids[:200])  # the second extract's ids are not all above


def test_fresh_record_ids_skip_ids_already_held_drawn_twice_or_zero(
    make_service, school, rng, monkeypatch
):
    svc = make_service()
    recs = [make_record(rng) for _ in range(3)]
    ingest(svc, build_extract(school, recs))
    held = sorted(_active(svc).values())
    # each round draws as many ids as are still wanted: a held id and 7; then 7 again
    # (drawn this time already); then 0 (never an id); then a held id's bits above
    # MAX_RECORD_ID (masked off: held again); then 9
    rounds = iter([[held[0], 7], [7], [0], [held[1] | 1 << 60], [9]])

    def token_bytes(n: int) -> bytes:
        got = next(rounds)
        assert n == 8 * len(got)
        return b"".join(x.to_bytes(8, "little") for x in got)

    monkeypatch.setattr(store.secrets, "token_bytes", token_bytes)
    with svc.sql.connect() as c:
        assert store.fresh_record_ids(c, 2) == [7, 9]
    assert next(rounds, None) is None


def test_extracts_of_two_schemas_held_at_once_are_named_in_every_run(tmp_path, school, police, rng):
    # a move to a new schema: both pinned while agencies re-encode, links across missing
    from linkage_service._service import _schemas_notice

    new = SCHEMA.model_copy(update={"name": SCHEMA.name + " (re-keyed)"})
    assert new.fingerprint() != FP
    sql = store.open_engine(f"sqlite:///{tmp_path / 'two.db'}")
    register(sql, school)
    register(sql, police)
    svc = LinkageService(sql, {FP: SCHEMA, new.fingerprint(): new}, FakeEngine)
    svc.start()
    first = ingest(svc, build_extract(school, [make_record(rng)]))
    assert "warning" not in first and "schemas_held" not in first
    second = ingest(
        svc,
        build_extract(
            police, [make_record(rng)], extract_type="police", fingerprint=new.fingerprint()
        ),
        "police",
    )
    assert second["schemas_held"] == {
        fp[:16]: [agency] for fp, agency in sorted([(FP, "school"), (new.fingerprint(), "police")])
    }
    assert "2 schemas" in second["warning"] and "missing" in second["warning"]
    assert store.get_run(sql, second["run_id"])["stats"]["warning"] == second["warning"]
    # the school re-encodes under the new schema: one schema again, no warning
    third = ingest(
        svc,
        build_extract(school, [make_record(rng)], fingerprint=new.fingerprint()),
    )
    assert "warning" not in third
    with sql.connect() as conn:
        assert _schemas_notice(conn, "police", new.fingerprint()) == {}
    sql.dispose()
