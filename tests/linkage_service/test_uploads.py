"""Resumable uploads: chunks at the service's offset, resumption, refusals, nothing half-written."""

from __future__ import annotations

import base64
import hashlib
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from agency_client import PushError, push_extract
from agency_client._cli import _push, build_parser
from linkage_service import _store as store
from linkage_service._api import create_app
from linkage_service._config import Settings
from tests._inprocess import PortalTransport, lifespans, start_blocking_portal

from ._factories import TOKENS, FakeEngine, agency, auth, build_extract, make_record, register
from ._factories import write_tokens as _write_tokens


def _digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[httpx.Client, Any, str]]:
    """A sync client into a running linkage app (school and police registered), and its URL."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'up.db'}",
        token_file=_write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
        max_upload_bytes=400_000,
        max_chunk_bytes=4096,
    )
    sql = store.open_engine(settings.database_url)
    register(sql, agency("school", 1))
    sql.dispose()
    app = create_app(settings, engine_factory=FakeEngine)
    with start_blocking_portal() as portal, lifespans(portal, app):
        with httpx.Client(
            transport=PortalTransport(app, portal), base_url="http://linkage"
        ) as client:
            yield client, app, settings.database_url


def _extract(n: int = 40, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    return build_extract(agency("school", 1), [make_record(rng) for _ in range(n)])


def _records(url: str) -> int:
    sql = store.open_engine(url)
    try:
        return int(store.statistics(sql)["active_records"])
    finally:
        sql.dispose()


def _open(client: httpx.Client, body: bytes) -> str:
    r = client.post(
        "/uploads",
        json={"size": len(body), "sha256": hashlib.sha256(body).hexdigest()},
        headers=auth("agency:school"),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["upload_id"])


def _patch(client: httpx.Client, uid: str, offset: int, data: bytes, digest: str | None = None):
    headers = {
        **auth("agency:school"),
        "Upload-Offset": str(offset),
        "Content-Digest": digest or _digest(data),
    }
    return client.patch(f"/uploads/{uid}", content=data, headers=headers)


class Flaky(httpx.BaseTransport):
    """Drops chosen PATCH requests: before they reach the service, or after (answer lost)."""

    def __init__(self, inner: httpx.BaseTransport, before: set[int], after: set[int]):
        self.inner, self.before, self.after = inner, before, after
        self.patches = 0
        self.delivered = 0  # chunk bytes that reached the service

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "PATCH":
            return self.inner.handle_request(request)
        self.patches += 1
        if self.patches in self.before:
            raise httpx.WriteError("connection reset while sending")
        body = request.read()
        response = self.inner.handle_request(request)
        self.delivered += len(body)
        if self.patches in self.after:
            raise httpx.ReadError("connection reset before the answer")
        return response


def test_push_resumes_from_the_service_offset_without_resending_accepted_bytes(service, tmp_path):
    client, _, url = service
    body = _extract()
    path = tmp_path / "extract.jsonl"
    path.write_bytes(body)
    flaky = Flaky(client._transport, before={3}, after={2, 5})
    seen: list[int] = []
    with httpx.Client(transport=flaky, base_url="http://linkage") as http:
        summary = push_extract(
            path,
            "http://linkage",
            TOKENS["agency:school"],
            client=http,
            chunk_bytes=4096,
            backoff=0,
            progress=lambda sent, size: seen.append(sent),
        )
    assert summary["records_added"] == 40 and summary["idempotent"] is False
    assert _records(url) == 40
    # the chunks whose answer was lost were accepted and not sent again
    assert flaky.delivered == len(body)
    assert seen[-1] == len(body) and seen == sorted(seen)


def test_a_replayed_chunk_is_refused_and_changes_nothing(service):
    client, _, _ = service
    body = _extract()
    uid = _open(client, body)
    assert _patch(client, uid, 0, body[:1000]).json()["offset"] == 1000
    again = _patch(client, uid, 0, body[:1000])
    assert again.status_code == 409 and "send from offset 1000" in again.json()["detail"]
    ahead = _patch(client, uid, 2000, body[2000:3000])
    assert ahead.status_code == 409
    status = client.get(f"/uploads/{uid}", headers=auth("agency:school")).json()
    assert status["offset"] == 1000 and status["state"] == "receiving"


def test_a_tampered_chunk_is_refused_and_the_upload_goes_on(service):
    client, _, url = service
    body = _extract()
    uid = _open(client, body)
    tampered = bytearray(body[:3000])
    tampered[500] ^= 1
    r = _patch(client, uid, 0, bytes(tampered), digest=_digest(body[:3000]))
    assert r.status_code == 422 and r.json()["field"] == "Content-Digest"
    bad_header = _patch(client, uid, 0, body[:3000], digest="md5=:AAAA:")
    assert bad_header.status_code == 422 and "Content-Digest" in bad_header.json()["detail"]
    offset = 0
    while offset < len(body):
        r = _patch(client, uid, offset, body[offset : offset + 4000])
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
    done = client.post(f"/uploads/{uid}/complete", headers=auth("agency:school"))
    assert done.status_code == 200 and done.json()["records_added"] == 40
    again = client.post(f"/uploads/{uid}/complete", headers=auth("agency:school"))
    assert again.json()["run_id"] == done.json()["run_id"]
    assert _records(url) == 40


def test_bytes_other_than_declared_are_refused_at_completion_and_nothing_is_stored(service):
    client, _, url = service
    body = _extract()
    other = _extract(seed=8)[: len(body)]
    other += b"\n" * (len(body) - len(other))
    uid = _open(client, body)  # declares the SHA-256 of ``body``
    # a different extract, each chunk with its own correct digest
    offset = 0
    refused = None
    while offset < len(other):
        r = _patch(client, uid, offset, other[offset : offset + 4000])
        if r.status_code != 200:
            refused = r
            break
        offset = r.json()["offset"]
    if refused is None:
        refused = client.post(f"/uploads/{uid}/complete", headers=auth("agency:school"))
    assert refused.status_code in (400, 422), refused.text
    assert _records(url) == 0


def test_a_bad_record_refuses_the_upload_naming_line_and_field(service):
    client, _, url = service
    rng = random.Random(3)
    recs = [make_record(rng) for _ in range(5)]
    recs[2]["clk"] = base64.b64encode(b"\x00" * 16).decode()
    body = build_extract(agency("school", 1), recs)
    uid = _open(client, body)
    offset = 0
    while (r := _patch(client, uid, offset, body[offset : offset + 4000])).status_code == 200:
        offset = r.json()["offset"]
    assert r.status_code == 400
    assert r.json()["line"] == 4 and r.json()["field"] == "clk"
    status = client.get(f"/uploads/{uid}", headers=auth("agency:school")).json()
    assert status["state"] == "refused" and "line 4" in status["error"]
    assert _patch(client, uid, offset, body[offset : offset + 4000]).status_code == 400
    assert _records(url) == 0


def test_limits_and_ownership(service):
    client, _, _ = service
    big = client.post(
        "/uploads", json={"size": 400_001, "sha256": "0" * 64}, headers=auth("agency:school")
    )
    assert big.status_code == 413 and "max_upload_bytes" in big.json()["detail"]
    body = _extract()
    uid = _open(client, body)
    chunk = _patch(client, uid, 0, body[:5000])
    assert chunk.status_code == 413
    stranger = client.get(f"/uploads/{uid}", headers=auth("agency:police"))
    assert stranger.status_code == 404
    assert client.get(f"/uploads/{uid}", headers=auth("analyst")).status_code == 403
    early = client.post(f"/uploads/{uid}/complete", headers=auth("agency:school"))
    assert early.status_code == 409 and "send from offset 0" in early.json()["detail"]
    assert client.delete(f"/uploads/{uid}", headers=auth("agency:school")).status_code == 204
    assert client.get(f"/uploads/{uid}", headers=auth("agency:school")).status_code == 404


def test_push_reports_the_service_refusal(service, tmp_path):
    client, _, _ = service
    path = tmp_path / "extract.jsonl"
    rng = random.Random(4)
    rec = make_record(rng)
    rec["sex"] = "X"
    path.write_bytes(build_extract(agency("school", 1), [rec]))
    with pytest.raises(PushError, match="line 2.*sex"):
        push_extract(path, "http://linkage", TOKENS["agency:school"], client=client)


def _push_args(tmp_path: Path, body: bytes) -> Any:
    """``agency-client push`` arguments for ``body`` written as extract.jsonl, as the school."""
    path = tmp_path / "extract.jsonl"
    path.write_bytes(body)
    token = tmp_path / "token"
    token.write_text(TOKENS["agency:school"])
    token.chmod(0o600)
    return build_parser().parse_args(
        ["push", str(path), "--url", "http://linkage", "--token-file", str(token)]
    )


def test_the_push_command_shows_a_progress_bar(service, tmp_path):
    client, _, _ = service
    body = _extract()
    args = _push_args(tmp_path, body)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, highlight=False)
    _push(args, console, client=client)
    text = out.getvalue()
    assert "uploading extract.jsonl" in text and "━" in text  # the bar, drawn while it ran
    assert f"{len(body) / 1000:.1f} kB" in text  # the extract's size, as the bar shows it
    assert "applied extract.jsonl" in text and "40 records added" in text


def test_the_push_command_prints_the_services_warning(tmp_path, monkeypatch):
    # the run summary's warning (extracts of two schemas held) reaches the agency's screen
    import agency_client._cli as cli

    warning = "the current extracts use 2 schemas (schema [ab]: school): links are missing"
    monkeypatch.setattr(
        cli, "push_extract", lambda *a, **k: {"run_id": 7, "records_added": 3, "warning": warning}
    )
    out = io.StringIO()
    _push(_push_args(tmp_path, b"x"), Console(file=out, width=200, highlight=False), client=None)
    assert "applied extract.jsonl: run 7, 3 records added" in out.getvalue()
    assert f"warning: {warning}" in out.getvalue()  # printed as it is, brackets and all
