"""Resumable uploads: chunks at the service's offset, resumption, refusals, nothing half-written."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
from linkage_service._uploads import MAX_WAITING
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
        upload_ahead_wait_seconds=0.5,
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


def _push_through(transport: httpx.BaseTransport, tmp_path: Path, body: bytes, **kw: Any):
    path = tmp_path / "extract.jsonl"
    path.write_bytes(body)
    with httpx.Client(transport=transport, base_url="http://linkage") as http:
        return push_extract(
            path, "http://linkage", TOKENS["agency:school"], client=http, chunk_bytes=4096, **kw
        )


class Flaky(httpx.BaseTransport):
    """Drops chosen PATCH requests: before they reach the service, or after (answer lost).

    Chunks in flight call it from several threads: the counts are kept under a lock.
    """

    def __init__(self, inner: httpx.BaseTransport, before: set[int], after: set[int]):
        self.inner, self.before, self.after = inner, before, after
        self.patches = 0
        self.accepted = 0  # chunk bytes the service took
        self.resent = 0  # chunk bytes sent again after the service had taken them
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "PATCH":
            return self.inner.handle_request(request)
        with self._lock:
            self.patches += 1
            number = self.patches
            at = int(request.headers["Upload-Offset"])
            self.resent += max(0, self.accepted - at)
        if number in self.before:
            raise httpx.WriteError("connection reset while sending")
        body = request.read()
        response = self.inner.handle_request(request)
        if response.status_code == 200:
            with self._lock:
                self.accepted += len(body)
        if number in self.after:
            raise httpx.ReadError("connection reset before the answer")
        return response


def test_push_resumes_from_the_service_offset_without_resending_accepted_bytes(service, tmp_path):
    client, _, url = service
    body = _extract()
    flaky = Flaky(client._transport, before={3}, after={2, 5})
    seen: list[int] = []
    summary = _push_through(
        flaky, tmp_path, body, backoff=0, progress=lambda sent, size: seen.append(sent)
    )
    assert summary["records_added"] == 40 and summary["idempotent"] is False
    assert _records(url) == 40
    # the chunks whose answer was lost were accepted and not sent again
    assert flaky.accepted == len(body) and flaky.resent == 0
    assert seen[-1] == len(body) and seen == sorted(seen)


class Overtaken(httpx.BaseTransport):
    """Holds PATCH number ``held`` back until the next PATCH has been answered, so the
    next reaches the service first; records how many PATCHes were in flight at most."""

    def __init__(self, inner: httpx.BaseTransport, held: int | None = None):
        self.inner, self.held = inner, held
        self.patches = self.now = self.most = 0
        self.answers: list[tuple[int, int]] = []  # (offset, status) in the order answered
        self._passed = threading.Event()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "PATCH":
            return self.inner.handle_request(request)
        request.read()  # the whole chunk is written before anything else happens
        with self._lock:
            self.patches += 1
            number = self.patches
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            if number == self.held:
                assert self._passed.wait(10), "the next chunk was not sent meanwhile"
            response = self.inner.handle_request(request)
            with self._lock:
                self.answers.append((int(request.headers["Upload-Offset"]), response.status_code))
            if self.held is not None and number == self.held + 1:
                self._passed.set()
            return response
        finally:
            with self._lock:
                self.now -= 1


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_push_keeps_up_to_in_flight_chunks_on_their_way(service, tmp_path, in_flight):
    client, _, url = service
    body = _extract()
    seen = Overtaken(client._transport)
    summary = _push_through(seen, tmp_path, body, in_flight=in_flight)
    assert summary["records_added"] == 40 and _records(url) == 40
    assert seen.most == in_flight
    # every chunk taken once, none refused (one sent ahead waits for its turn)
    assert sorted(seen.answers) == [(at, 200) for at in range(0, len(body), 4096)]


def test_a_chunk_that_overtakes_the_one_before_is_sent_again_after_it(service, tmp_path):
    client, _, url = service
    body = _extract()
    late = Overtaken(client._transport, held=3)
    progress: list[int] = []
    summary = _push_through(late, tmp_path, body, progress=lambda sent, _: progress.append(sent))
    assert summary["records_added"] == 40 and _records(url) == 40
    third, fourth = 2 * 4096, 3 * 4096
    # the fourth reached the service first, waited its turn in vain (the third was
    # held back longer) and was refused (409), changing nothing; the third was taken,
    # then the fourth sent again from the service's offset
    assert [status for at, status in late.answers if at == fourth] == [409, 200]
    assert late.answers.index((fourth, 409)) < late.answers.index((third, 200))
    assert sorted(a for a in late.answers if a[1] == 200) == [
        (at, 200) for at in range(0, len(body), 4096)
    ]
    assert progress == sorted(progress) and progress[-1] == len(body)


def test_a_chunk_ahead_of_the_offset_waits_for_the_one_before(service):
    client, app, _ = service
    body = _extract()
    uid = _open(client, body)
    first, second = body[:4096], body[4096:8192]
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(_patch, client, uid, 4096, second)
        uploads = app.state.uploads
        session = uploads.get("school", uid)
        deadline = time.monotonic() + 5
        while session.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert session.waiting == 1 and session.offset == 0  # it waits, nothing taken
        assert _patch(client, uid, 0, first).status_code == 200
        r = ahead.result()
    assert r.status_code == 200 and r.json()["offset"] == 8192


def test_a_chunk_ahead_waits_a_bounded_time_then_is_refused(service):
    client, app, _ = service
    body = _extract()
    uid = _open(client, body)
    started = time.monotonic()
    r = _patch(client, uid, 4096, body[4096:8192])
    assert time.monotonic() - started >= 0.5  # upload_ahead_wait_seconds
    assert r.status_code == 409 and "send from offset 0" in r.json()["detail"]
    # nothing taken: the upload goes on from its offset
    assert _patch(client, uid, 0, body[:4096]).json()["offset"] == 4096
    # no more than MAX_WAITING wait at once: the next is refused without waiting
    session = app.state.uploads.get("school", uid)
    with session.lock:
        session.waiting = MAX_WAITING
    started = time.monotonic()
    r = _patch(client, uid, 8192, body[8192:12288])
    assert r.status_code == 409 and time.monotonic() - started < 0.5
    with session.lock:
        session.waiting = 0


def test_a_refusal_wakes_a_chunk_waiting_ahead(service):
    client, app, _ = service
    body = _extract()
    uid = _open(client, body)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        ahead = pool.submit(_patch, client, uid, 4096, body[4096:8192])
        session = app.state.uploads.get("school", uid)
        while session.waiting == 0 and time.monotonic() - started < 5:
            time.sleep(0.005)
        bad = bytearray(body[:4096])
        bad[200:210] = b"##########"
        assert _patch(client, uid, 0, bytes(bad)).status_code == 400  # the first is refused
        r = ahead.result()
    assert r.status_code == 400 and time.monotonic() - started < 0.5  # woken, not timed out


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


def _send_all(client: httpx.Client, uid: str, body: bytes) -> None:
    for at in range(0, len(body), 4096):
        assert _patch(client, uid, at, body[at : at + 4096]).status_code == 200


def _complete(client: httpx.Client, uid: str, sha256: str | None = None) -> httpx.Response:
    return client.post(
        f"/uploads/{uid}/complete",
        json=None if sha256 is None else {"sha256": sha256},
        headers=auth("agency:school"),
    )


def test_the_sha256_may_be_given_on_completing_rather_than_opening(service):
    client, _, url = service
    body = _extract()
    sha = hashlib.sha256(body).hexdigest()
    r = client.post("/uploads", json={"size": len(body)}, headers=auth("agency:school"))
    assert r.status_code == 201, r.text
    uid = r.json()["upload_id"]
    _send_all(client, uid, body)
    # none given either way: refused naming the field; the upload stays open
    r = _complete(client, uid)
    assert r.status_code == 422 and "sha256" in r.text
    assert client.get(f"/uploads/{uid}", headers=auth("agency:school")).json()["state"] == (
        "receiving"
    )
    assert _records(url) == 0
    r = _complete(client, uid, sha)
    assert r.status_code == 200, r.text
    assert r.json()["records_added"] == 40 and _records(url) == 40


def test_a_wrong_sha256_on_completing_stores_nothing(service):
    client, _, url = service
    body = _extract()
    r = client.post("/uploads", json={"size": len(body)}, headers=auth("agency:school"))
    uid = r.json()["upload_id"]
    _send_all(client, uid, body)
    r = _complete(client, uid, hashlib.sha256(b"other").hexdigest())
    assert r.status_code == 422 and "SHA-256 declared" in r.json()["detail"]
    assert _records(url) == 0
    state = client.get(f"/uploads/{uid}", headers=auth("agency:school")).json()
    assert state["state"] == "refused" and "SHA-256" in state["error"]


def test_a_sha256_on_completing_must_be_the_one_given_on_opening(service):
    client, _, url = service
    body = _extract()
    uid = _open(client, body)  # gives the SHA-256
    _send_all(client, uid, body)
    r = _complete(client, uid, hashlib.sha256(b"other").hexdigest())
    assert r.status_code == 422 and "not the one given on opening" in r.json()["detail"]
    assert _records(url) == 0
    # nothing changed: completing with the same one (or none) applies it
    r = _complete(client, uid, hashlib.sha256(body).hexdigest())
    assert r.status_code == 200 and _records(url) == 40


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


def test_push_of_an_unpinned_schema_names_the_settings_that_pin_it(service, tmp_path):
    client, _, _ = service
    path = tmp_path / "extract.jsonl"
    rng = random.Random(4)
    path.write_bytes(build_extract(agency("school", 1), [make_record(rng)], fingerprint="6" * 64))
    with pytest.raises(PushError) as info:
        push_extract(path, "http://linkage", TOKENS["agency:school"], client=client)
    message = str(info.value)
    assert message.startswith(f"{path}: refused at byte 0 (400): line 1, field ")
    assert f"encoded with schema {'6' * 16}..., the service accepts " in message
    assert message.endswith(
        "re-encode with an accepted schema, or, if the scheme has moved to this one, the "
        "service must pin it (its schema_files and schema_fingerprints settings)"
    )


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


def test_the_push_command_refuses_fewer_than_one_chunk_in_flight(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["push", str(tmp_path / "x.jsonl"), "--url", "http://l", "--in-flight", "0"]
        )
    assert "--in-flight: must be a whole number of at least 1, not '0'" in capsys.readouterr().err


def test_push_extract_refuses_fewer_than_one_chunk_in_flight(tmp_path):
    # the library refuses what the command refuses, before opening an upload
    (tmp_path / "x.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="in_flight must be at least 1, not 0"):
        push_extract(tmp_path / "x.jsonl", "http://l", "token", in_flight=0)


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
