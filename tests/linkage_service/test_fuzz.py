"""Schemathesis over every linkage-service route, with and without credentials: no 5xx.

The service runs in-process with the real linkage engine over a small linked
population that has been assessed (so families, attestations, blobs, review
pairs and reports exist for the fuzzed requests to find).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx

from agency_client._synthetic import PopulationConfig
from evaluation._harness import ingest_population, load_population
from linkage_service._api import create_app
from linkage_service._config import Settings

from .._fuzz import fuzz, operation_count, running
from ._factories import TOKENS, write_tokens

EXAMPLES = 60
AS_AT = PopulationConfig(households=1).extract_date


def test_no_route_answers_5xx_to_fuzzed_requests(tmp_path: Path) -> None:
    pop = load_population(150, seed=14, workdir=tmp_path / "pop", secret_seed=14)
    ingest_population(pop, f"sqlite:///{tmp_path / 'linkage.db'}").dispose()
    key = tmp_path / "attestation.key"
    key.write_text(base64.b64encode(bytes(range(1, 33))).decode())
    key.chmod(0o600)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'linkage.db'}",
        token_file=write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
        attestation_key_file=key,
    )
    app = create_app(settings)
    started = time.monotonic()
    with running(app) as client:
        admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
        r = client.post("/assessments", json={"as_at": AS_AT.isoformat()}, headers=admin)
        assert r.status_code == 200 and r.json()["attestations"] > 0, r.text

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
