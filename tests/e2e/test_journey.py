"""The whole journey against the real services as separate processes, over HTTP.

One stack (SQLite) is started for the module: the journey runs once, then each
test probes it: refusals, the IG officer's CLI, the privacy of the linkage
service's database and every log, and one trace across both services.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from agency_client import Needles, Scanner, identity_needles, load_mapping
from deploy._journey import unlock
from linkage_service import _store as store
from linkage_service import default_model, default_ruleset
from protocols import IndicatorType

from .conftest import World, log_lines, run_cli, running_journey, wait_for_log


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    with running_journey(tmp_path_factory.mktemp("e2e") / "run") as w:
        yield w


def test_the_whole_journey_releases_one_family_and_the_ig_officer_verifies_it(world):
    j = world.journey
    assert j.records_encoded > 2000 and len(j.pushed) == 7
    assert all(s["records_added"] == s["records_received"] > 0 for s in j.pushed.values())
    assert j.linkage_stats["persons"] > 0 and j.linkage_stats["households"] > 0
    assert j.assessment["above_unlock"] > 0 and j.family_above_score >= j.threshold
    released = j.released
    assert released is not None and released.status_code == 200
    assert released.reason == "GRANTED" and released.body["family_id"] == j.family_above
    assert released.identities == released.body["identity_count"] > 0
    # grouped into people by the real linkage service's signed person ids
    assert 0 < released.people == released.body["person_count"] <= released.identities
    assert "first checkpoint seen" in j.ig_before
    assert "consistent with size" in j.ig_after
    assert j.ig_receipt.startswith(f"verified: entry {released.body['audit_index']} is in")
    assert "cosigned by family-linkage/ig-witness" in j.ig_receipt


def test_the_plaintext_population_and_the_extracts_are_owner_only(world):
    run_dir = world.stack.run_dir
    for sub in ("population", "extracts"):
        assert (run_dir / sub).stat().st_mode & 0o777 == 0o700, sub
        files = [p for p in (run_dir / sub).rglob("*") if p.is_file()]
        assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files), sub


def test_a_professional_without_clearance_is_refused_and_it_is_logged(world):
    uncleared = world.pros["uncleared"]
    refused = unlock(world.stack, uncleared, world.journey.family_above)
    assert refused.status_code == 403
    assert refused.reason == "CLEARANCE_INSUFFICIENT"
    assert refused.identities == 0 and "sealed_identities" not in refused.body
    assert isinstance(refused.body["audit_index"], int)


def test_a_family_below_the_threshold_is_refused(world):
    below = world.journey.family_below
    assert below is not None
    refused = unlock(world.stack, world.pros["social-worker"], below)
    assert refused.status_code == 403
    assert refused.reason == "BELOW_THRESHOLD"
    assert "sealed_identities" not in refused.body


def test_the_audit_log_verifies_with_the_audit_log_command(world):
    stack, j = world.stack, world.journey
    ig = stack.run_dir / "ig-office"
    env = {"AUDIT_LOG_TOKEN": stack.secret("ig-office", "audit-token")}
    vkey = str(stack.key("ig-office", "audit-log.vkey"))
    witness = str(stack.key("ig-office", "witness.vkey"))
    url = stack.url("unlock-service") + "/audit"
    state = ig / "last-seen.checkpoint"
    # the refusals above may still be waiting for their checkpoint: retry briefly
    for _ in range(50):
        done = run_cli(
            "audit-log", "checkpoint", "--url", url, "--vkey", vkey,
            "--witness-vkey", witness, "--state", str(state), env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        if "consistent with size" in done.stdout:
            break
    assert "verified checkpoint of size" in done.stdout
    index = j.released.body["audit_index"]
    done = run_cli(
        "audit-log", "verify-receipt", "--vkey", vkey, "--witness-vkey", witness,
        "--receipt", str(ig / f"receipt-{index}.proof"), "--entry", str(ig / f"entry-{index}.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"entry {index} is in the log" in done.stdout
    done = run_cli(
        "audit-log", "entries", "--url", url, "--vkey", vkey, "--family", j.family_above,
        "--decision", "granted", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert j.released.body["request_id"] in done.stdout
    if stack.database_url_base is None:
        done = run_cli(
            "audit-log", "verify-db", "--db", stack.database_urls["audit"], "--vkey", vkey
        )
        assert done.returncode == 0, done.stderr


def test_no_plaintext_identity_in_the_linkage_database_or_any_log(world):
    pop = world.journey.population
    needles = Needles()
    for agency in pop.agencies:
        needles.update(
            identity_needles(pop.csv_paths[agency], load_mapping(pop.mapping_paths[agency]))
        )
    assert len(needles.names) > 100 and len(needles.dates) > 100 and needles.postcodes
    scan = Scanner(needles)
    programme = {
        "ruleset": default_ruleset().model_dump(mode="json"),
        "model": default_model().model_dump(mode="json"),
    }
    vocabulary = {t.value for t in IndicatorType} | _strings(programme)
    found: set[str] = set()
    text_cells = blob_cells = 0
    sql = store.open_engine(world.stack.database_urls["linkage"], migrate_schema=False)
    try:
        with sql.connect() as conn:
            for table in sa.inspect(sql).get_table_names():
                result = conn.execute(sa.text(f'SELECT * FROM "{table}"'))
                columns = list(result.keys())
                for row in result:
                    for column, cell in zip(columns, row, strict=True):
                        if table == "cycles" and column in ("ruleset", "model"):
                            # the programme's published configuration, not data
                            assert _parsed(cell) == programme[column]
                            continue
                        if table == "indicators" and column == "type":
                            assert cell in vocabulary  # protocol vocabulary, not data
                            continue
                        if isinstance(cell, bytes | memoryview):
                            blob_cells += 1
                            found |= scan.binary(bytes(cell))
                        elif cell is not None:
                            text_cells += 1
                            found |= _scan(scan, _parsed(cell), vocabulary, column)
    finally:
        sql.dispose()
    assert text_cells > 1000 and blob_cells > 1000  # the scan really covered the data
    logs = sorted(world.stack.log_dir.glob("*.log"))
    # every process's log, the web service's too: it relays sealed releases only
    assert {p.stem for p in logs} == {"linkage-service", "unlock-service", "witness", "web-service"}
    lines = 0
    for path in logs:
        for line in path.read_text(encoding="utf-8").splitlines():
            lines += 1
            found |= _scan(scan, _parsed(line), vocabulary)
    assert lines > 10
    assert found == set()


_BASE64 = {"clk", "address_clk", "sealed_identity", "signature", "exact_tokens", "blocking_keys"}


def _strings(value: object) -> set[str]:
    """Every key and string value of a JSON value, lower-cased (the programme's words)."""
    if isinstance(value, dict):
        return {str(k).lower() for k in value} | {s for v in value.values() for s in _strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in _strings(v)}
    return {value.lower()} if isinstance(value, str) else set()


def _parsed(cell: object) -> object:
    """A JSON cell (text or, on PostgreSQL, already decoded) or log line as its value."""
    if isinstance(cell, str) and cell[:1] in "{[":
        try:
            return json.loads(cell)
        except ValueError:
            return cell
    return cell


def _is_date_key(key: str | None) -> bool:
    # Event and processing times (an event can fall on someone's birthday; an
    # assessment's date can be a newborn's): searched for everything but dates.
    return key is not None and (key in ("time", "as_at") or key.endswith(("_at", "date")))


def _scan(scan: Scanner, value: object, vocabulary: set[str], key: str | None = None) -> set[str]:
    """Needles in a value from the database or a log, read as the protocol reads it.

    Base64 fields are searched as bytes; event and processing dates for anything
    but dates; a string that is one of the programme's own words (an indicator
    type, a factor code or title, ``indicator:<type>``) is vocabulary, not data.
    """
    if isinstance(value, dict):
        return {f for k, v in value.items() for f in _scan(scan, v, vocabulary, str(k))}
    if isinstance(value, list):
        return {f for v in value for f in _scan(scan, v, vocabulary, key)}
    if key in _BASE64 and isinstance(value, str):
        return scan.json({key: value})
    if isinstance(value, dt.date | dt.datetime):
        return scan.event_date(value.isoformat()) if _is_date_key(key) else scan.text(str(value))
    if not isinstance(value, str):
        return scan.text(str(value)) if isinstance(value, int | float) else set()
    if value.lower() in vocabulary or value.split(":", 1)[-1].lower() in vocabulary:
        return set()
    return scan.event_date(value) if _is_date_key(key) else scan.text(value)


def test_one_unlock_request_is_one_trace_across_both_services(world):
    stack = world.stack
    family = world.journey.family_above
    released = unlock(stack, world.pros["social-worker"], family)
    assert released.status_code == 200, released.body
    request_id = released.body["request_id"]
    unlock_lines = wait_for_log(
        stack.log_dir / "unlock-service.log", lambda r: r.get("request_id") == request_id
    )
    decision = [r for r in unlock_lines if r.get("request_id") == request_id]
    trace_ids = {r.get("trace_id") for r in decision}
    assert len(trace_ids) == 1 and None not in trace_ids, decision
    [trace_id] = trace_ids
    linkage_lines = wait_for_log(
        stack.log_dir / "linkage-service.log", lambda r: r.get("trace_id") == trace_id
    )
    same = [r for r in linkage_lines if r.get("trace_id") == trace_id]
    assert any(r["message"] == "sealed blobs released" and r["family_id"] == family for r in same)
    assert {r["service"] for r in same} == {"linkage-service"}


def test_the_journey_is_one_trace_from_the_agencies_push_to_the_unlock(world):
    trace_id = world.journey.trace_id
    linkage = [r for r in log_lines(world.stack.log_dir / "linkage-service.log")]
    unlocked = [r for r in log_lines(world.stack.log_dir / "unlock-service.log")]
    pushed = [r for r in linkage if r.get("trace_id") == trace_id]
    assert any(r["message"] == "extract applied" for r in pushed)
    assert any(r["message"] == "assessment stored" for r in pushed)
    assert any(r.get("trace_id") == trace_id and r["message"] == "released" for r in unlocked), (
        "the unlock of the journey is not in the agencies' trace"
    )
