"""Schemathesis over every audit-log route, with and without credentials: no 5xx."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx

from audit_log import NoteSigner, Settings, create_app

from .._fuzz import fuzz, operation_count, running
from ._factories import make_entry

TOKENS = {"writer": "w-token", "ig_officer": "ig-token", "reader": "r-token"}
EXAMPLES = 100


def test_no_route_answers_5xx_to_fuzzed_requests(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(
        "".join(f"{hashlib.sha256(t.encode()).hexdigest()} {r} fuzz\n" for r, t in TOKENS.items())
    )
    token_file.chmod(0o600)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'audit.db'}", token_file=token_file, checkpoint_interval=60
    )
    app = create_app(settings, signer=NoteSigner.from_seed("fuzz.test/log", bytes(range(32))))
    started = time.monotonic()
    with running(app) as client:
        # a few entries and a checkpoint, so proofs, leaves and receipts have something to find
        for i in range(5):
            body = make_entry("decision", i).model_dump_json()
            headers = {"Authorization": "Bearer w-token", "Content-Type": "application/json"}
            assert client.post("/entries", content=body, headers=headers).status_code == 201
        app.state.log.checkpoint()

        def send(caller: str | None, request: httpx.Request) -> httpx.Response:
            if caller == "forged":
                request.headers["Authorization"] = "Bearer not-a-token"
            elif caller is not None:
                request.headers["Authorization"] = f"Bearer {TOKENS[caller]}"
            return client.send(request)

        run = fuzz(app, send, [None, "forged", *TOKENS], valid=list(TOKENS), examples=EXAMPLES)
    assert len(run.sent) == operation_count(app)
    assert not run.errors, run.report(started)
    # the credentials were real: every valid caller was answered 2xx somewhere
    assert all(run.succeeded(c) for c in TOKENS), run.report(started)
