"""SIGKILL the real unlock service during bursts of unlocks, ten times, and restart it.

The stack runs as separate processes (``deploy.LocalStack``) with a 5 s claim
lease. Eight professionals fire unlocks (grant, durable audit append, blob
fetch, release) while the unlock-service process is killed at a random moment
of each burst and started again. Afterwards, once the lease has passed: no
request is left in a transitional status, every grant recovery gave back can
be redeemed, every granted decision in the audit log belongs to a released
request or has an ``expiry`` entry, each request has exactly one decision, and
``audit-log verify-db`` verifies the log.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from audit_log import _store as audit_store
from audit_log._review import granted_decisions, request_entries
from deploy import LocalStack
from deploy._journey import (
    assess,
    encode_extracts,
    families_at_threshold,
    make_population,
    push_extracts,
    register_agencies,
)
from unlock_service import (
    TokenIssuer,
    UnlockClient,
    load_professional_key,
    load_settings,
)
from unlock_service._config import load_issuer_private_key

from .conftest import run_cli

pytestmark = pytest.mark.slow

KILLS = 10
CLIENTS = 8
LEASE = 5  # seconds: the least claim_lease the settings accept
TRANSITIONAL = ("evaluating", "deciding", "releasing", "expiring")
WHY = "crash test: child seen with injuries at school, s.47 enquiry"
POLICY = """\
[policy]
name = "crash-test"
version = "1.0.0"

[justification]
min_chars = 20
max_chars = 1000

[grants]
ttl_seconds = 900
approval_wait_seconds = 86400

[rate_limit]
max_requests = 100000
window_seconds = 86400

[roles.admin]
admin = true

[roles.social_worker]
request = true

[roles.ig_officer]
review = true
restrict = true
subject_access = true

[purposes.SAFEGUARDING]
description = "Child safeguarding enquiry"
roles = ["social_worker"]
"""


def _rows(url: str) -> dict[str, tuple[str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            result = conn.execute(
                sa.text("SELECT request_id, status, professional_id FROM requests")
            )
            return {r[0]: (r[1], r[2]) for r in result}
    finally:
        engine.dispose()


def test_ten_sigkills_during_bursts_leave_every_logged_grant_settled(tmp_path):
    stack = LocalStack(tmp_path / "run", unlock_settings={"claim_lease": LEASE})
    with stack:
        stack.ceremony()
        stack.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (stack.config_dir / "policy.toml").write_text(POLICY, encoding="utf-8")
        stack.prepare(fresh=True)
        demo = {p.name: p for p in stack.register_professionals()}
        clients = stack.register_workers(
            demo["admin"].professional_id, CLIENTS, prefix="crash", team="crash"
        )
        stack.start()
        pop = make_population(stack.run_dir / "population", 400, 20261121)
        extracts, _ = encode_extracts(stack, pop, stack.run_dir / "extracts")
        register_agencies(stack, pop)
        push_extracts(stack, extracts)
        assess(stack)
        families = families_at_threshold(stack)
        assert families, "no family reached the unlock threshold"

        settings = load_settings(stack.config_path("unlock-service"), environ={})
        assert settings.issuer_key_file is not None
        issuer = TokenIssuer(
            load_issuer_private_key(settings.issuer_key_file),
            settings.token_issuer,
            settings.token_audience,
        )
        keys = {pid: load_professional_key(path) for pid, path in clients}

        def client_for(pid: str) -> UnlockClient:
            vk = bytes(keys[pid].verify_key)
            return UnlockClient(
                stack.url("unlock-service"),
                keys[pid],
                lambda: issuer.issue(pid, vk, lifetime=300),
                timeout=10,
            )

        answers: Counter[str] = Counter()
        lock = threading.Lock()
        rng = random.Random(14)

        def burst(pid: str, stop: threading.Event, seed: int) -> None:
            pick = random.Random(seed)
            with client_for(pid) as client:
                while not stop.is_set():
                    try:
                        r = client.unlock(pick.choice(families), "SAFEGUARDING", WHY)
                        kind = str(r.status_code)
                    except httpx.HTTPError:
                        kind = "connection"  # the service died under this request
                    with lock:
                        answers[kind] += 1
                    if kind == "connection":
                        time.sleep(0.05)

        for round_ in range(KILLS):
            stop = threading.Event()
            threads = [
                threading.Thread(target=burst, args=(pid, stop, 100 * round_ + n))
                for n, (pid, _) in enumerate(clients)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.4, 1.2))
            assert stack.kill("unlock-service") == -9
            stop.set()
            for t in threads:
                t.join(timeout=30)
            stack.restart("unlock-service")

        assert answers["200"] > 0 and answers["connection"] > 0, answers
        assert set(answers) <= {"200", "connection"}, answers

        # Past the lease, housekeeping (or start-up) settles every claim left behind.
        deadline = time.monotonic() + LEASE + 20
        while True:
            rows = _rows(stack.database_urls["unlock"])
            stuck = {rid: s for rid, (s, _) in rows.items() if s in TRANSITIONAL}
            if not stuck or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not stuck, f"left in a transitional status: {stuck}"

        # Grants given back by recovery (killed while releasing) are redeemable.
        for rid, (status, pid) in rows.items():
            if status == "granted":
                with client_for(pid) as client:
                    r = client.release(rid)
                assert r.status_code == 200, (rid, r.status_code, r.text)

        rows = _rows(stack.database_urls["unlock"])
        assert not [s for s, _ in rows.values() if s in TRANSITIONAL]
        audit = audit_store.open_engine(stack.database_urls["audit"], migrate_schema=False)
        try:
            size = audit_store.count_entries(audit)
            grants = granted_decisions(audit, 0, size)
            assert len(grants) >= answers["200"]
            for record in grants:
                rid = record.entry.request_id
                logged = [r.entry.type for r in request_entries(audit, rid)]
                assert logged.count("decision") == 1, (rid, logged)
                status = rows.get(rid, ("missing", ""))[0]
                assert status == "released" or "expiry" in logged, (rid, status, logged)
        finally:
            audit.dispose()

    vkey = stack.key("ig-office", "audit-log.vkey")
    done = run_cli(
        "audit-log", "verify-db", "--db", stack.database_urls["audit"], "--vkey", str(vkey)
    )
    assert done.returncode == 0, done.stderr
    assert "verified:" in done.stdout
