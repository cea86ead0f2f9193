"""The CLI never shows an entry a lying server made up, dropped, moved or mis-filtered.

A real log server runs in-process; the CLI talks to it through a proxy
transport that rewrites one kind of answer, and each test names its corruption.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from audit_log._api import create_app
from audit_log._cli import main
from audit_log._config import Settings
from audit_log._note import NoteSigner

from ._factories import hex_id, make_entry

ORIGIN = "audit.example.gov.uk/log"
TOKEN = "ig-token"
Body = dict[str, Any]


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, bytes(range(32)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, signer: NoteSigner) -> Iterator[str]:
    """A log of 20 decisions served on a free local port (shared: tests only read it)."""
    tmp = tmp_path_factory.mktemp("remote")
    tokens = tmp / "tokens"
    tokens.write_text(
        f"{hashlib.sha256(TOKEN.encode()).hexdigest()} ig_officer ig\n"
        f"{hashlib.sha256(b'w').hexdigest()} writer unlock-service\n"
    )
    tokens.chmod(0o600)
    settings = Settings(db_url=f"sqlite:///{tmp / 'log.db'}", token_file=tokens)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, signer=signer), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer w"}) as writer:
            for n in range(20):
                body = make_entry("decision", n).model_dump(mode="json")
                assert writer.post("/entries", json=body).status_code == 201
        yield url
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def vkey(tmp_path: Path, signer: NoteSigner) -> str:
    path = tmp_path / "log.vkey"
    path.write_text(signer.vkey + "\n")
    return str(path)


@contextmanager
def _proxy(
    url: str, rewrite: Callable[[str, httpx.Response], httpx.Response]
) -> Iterator[httpx.Client]:
    """A client whose answers from ``url`` pass through ``rewrite(path, response)``."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as inner:

        def handle(request: httpx.Request) -> httpx.Response:
            answer = inner.get(request.url.path, params=request.url.params)
            return rewrite(
                request.url.path, httpx.Response(answer.status_code, content=answer.content)
            )

        with httpx.Client(base_url=url, transport=httpx.MockTransport(handle)) as client:
            yield client


def _entries(edit: Callable[[Body], Body]) -> Callable[[str, httpx.Response], httpx.Response]:
    def rewrite(path: str, response: httpx.Response) -> httpx.Response:
        if path != "/entries":
            return response
        return httpx.Response(200, json=edit(response.json()))

    return rewrite


def _run(url: str, vkey: str, argv: list[str], rewrite: Any = None) -> tuple[int, str]:
    out = io.StringIO()
    with _proxy(url, rewrite or (lambda _p, r: r)) as client:
        command = [argv[0], "--url", url, "--vkey", vkey, *argv[1:]]
        status = main(command, http_client=client, stdout=out)
    return status, out.getvalue()


def _flip(item: Body) -> Body:
    leaf = item["leaf"]
    swapped = (
        leaf.replace('"refused"', '"granted"')
        if '"refused"' in leaf
        else leaf.replace('"granted"', '"refused"')
    )
    assert swapped != leaf
    return item | {"leaf": swapped}


def _at(index: int, edit: Callable[[Body], Body | None]) -> Callable[[Body], Body]:
    def apply(body: Body) -> Body:
        items = []
        for item in body["entries"]:
            changed = edit(item) if item["index"] == index else item
            if changed is not None:
                items.append(changed)
        return body | {"entries": items}

    return apply


PRO = hex_id("pro", 1)  # entries 1, 4, 7, 10, 13, 16, 19


def test_honest_server_verifies(server: str, vkey: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _run(server, vkey, ["entries", "--professional", PRO])
    assert status == 0, capsys.readouterr().err
    assert [json.loads(line)["index"] for line in out.splitlines()] == [1, 4, 7, 10, 13, 16, 19]
    status, out = _run(server, vkey, ["export"])
    assert status == 0
    assert len(out.splitlines()) == 20


@pytest.mark.parametrize(
    ("argv", "edit", "message"),
    [
        (
            ["entries", "--professional", PRO],
            _at(7, _flip),
            "entry 7 returned by the server is not in the log signed at size 20",
        ),
        (
            ["entries", "--professional", PRO],
            _at(7, lambda item: item | {"inclusion_proof": item["inclusion_proof"][:-1]}),
            "entry 7 returned by the server is not in the log",
        ),
        (
            ["entries", "--professional", PRO],
            _at(7, lambda item: item | {"inclusion_proof": ["not base64!"]}),
            "entry 7: inclusion proof: a hash is not base64",
        ),
        (
            ["entries", "--professional", PRO],
            lambda body: body | {"entries": body["entries"][::-1]},
            "the server repeated or reordered entries",
        ),
        (["export"], _at(5, _flip), "the first entry that differs from the signed tree is index 5"),
        (["export"], _at(5, lambda item: None), "entry 5 is missing from the server's export"),
        (
            ["export"],
            lambda body: body | {"entries": body["entries"][:12]} | {"next_start": None},
            "the server exported 12 entries but the signed checkpoint has 20; first missing "
            "index 12",
        ),
        (
            ["export", "--format", "csv"],
            lambda body: body | {"entries": [body["entries"][0], *body["entries"]]},
            "entry 1 is missing",
        ),
    ],
    ids=[
        "changed-entry",
        "short-proof",
        "garbage-proof",
        "reordered",
        "export-changed",
        "export-deleted",
        "export-truncated",
        "export-duplicated",
    ],
)
def test_lying_server_is_caught(
    server: str,
    vkey: str,
    argv: list[str],
    edit: Callable[[Body], Body],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out = _run(server, vkey, argv, _entries(edit))
    err = capsys.readouterr().err
    assert status == 1
    assert message in err
    assert out == ""  # nothing unverified reaches the officer


def test_entry_not_matching_the_filter_is_caught(
    server: str, vkey: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def add_other(body: Body) -> Body:
        with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            other = c.get("/entries", params={"start": 2, "limit": 1, "proof_size": 20}).json()
        return body | {"entries": sorted([*body["entries"], *other["entries"]], key=_index)}

    status, _ = _run(server, vkey, ["entries", "--professional", PRO], _entries(add_other))
    assert status == 1
    assert "entry 2 does not match the filter (professional_id=" in capsys.readouterr().err


def _index(item: Body) -> int:
    return int(item["index"])


def test_failed_export_leaves_no_file(
    server: str, vkey: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "export.jsonl"
    status, _ = _run(server, vkey, ["export", "--out", str(target)], _entries(_at(3, _flip)))
    assert status == 1
    assert "index 3" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "log.vkey"]


def test_forged_checkpoint_and_nonsense_are_refused(
    server: str, vkey: str, capsys: pytest.CaptureFixture[str]
) -> None:
    other = NoteSigner.from_seed(ORIGIN, bytes(32))

    def forge(path: str, response: httpx.Response) -> httpx.Response:
        if path == "/checkpoint":
            return httpx.Response(
                200, text=other.sign(f"{ORIGIN}\n20\n{base64.b64encode(bytes(32)).decode()}\n")
            )
        return response

    assert _run(server, vkey, ["export"], forge)[0] == 1
    assert "no valid signature from a known key" in capsys.readouterr().err

    def nonsense(path: str, response: httpx.Response) -> httpx.Response:
        return httpx.Response(200, text="<html>") if path == "/entries" else response

    assert _run(server, vkey, ["entries"], nonsense)[0] == 1
    assert "entry page from the log is not JSON" in capsys.readouterr().err


@contextmanager
def _unlock_service(log_url: str, mounted: bool = True) -> Iterator[httpx.MockTransport]:
    """The unlock service's routing: the log under /audit (if ``mounted``), 404 elsewhere."""
    with httpx.Client(base_url=log_url, headers={"Authorization": f"Bearer {TOKEN}"}) as inner:

        def handle(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if not (mounted and path.startswith("/audit/")):
                return httpx.Response(404, json={"detail": "Not Found"})
            answer = inner.get(path.removeprefix("/audit"), params=request.url.params)
            return httpx.Response(answer.status_code, content=answer.content)

        yield httpx.MockTransport(handle)


UNLOCK = "http://127.0.0.1:8300"


@pytest.mark.parametrize(
    "command",
    [
        ["checkpoint", "--state", "{tmp}/seen.checkpoint"],
        ["export"],
        ["verify-receipt", "--receipt", "{tmp}/receipt.txt"],
    ],
    ids=["checkpoint", "export", "verify-receipt"],
)
def test_the_unlock_service_url_without_audit_gets_a_hint(
    server: str,
    vkey: str,
    tmp_path: Path,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        (tmp_path / "receipt.txt").write_text(c.get("/receipts/3").text)
    argv = [part.format(tmp=tmp_path) for part in command]

    def run_at(url: str, transport: httpx.MockTransport) -> int:
        with httpx.Client(base_url=url, transport=transport) as client:
            full = [argv[0], "--url", url, "--vkey", vkey, *argv[1:]]
            return main(full, http_client=client, stdout=io.StringIO())

    with _unlock_service(server) as unlock:
        assert run_at(UNLOCK, unlock) == 1
        err = capsys.readouterr().err
        assert f"no audit log at {UNLOCK}: GET /" in err
        hint = f"the unlock service serves its audit log under /audit: try {UNLOCK}/audit\n"
        assert f"answered 404; {hint}" in err
        # the URL the hint gives works: the client keeps the /audit prefix
        assert run_at(f"{UNLOCK}/audit", unlock) == 0, capsys.readouterr().err
    with _unlock_service(server, mounted=False) as bare:
        assert run_at(f"{UNLOCK}/audit", bare) == 1
        assert "only when its settings name an audit_token_file" in capsys.readouterr().err
