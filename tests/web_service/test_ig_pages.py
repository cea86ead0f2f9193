"""The IG officer's pages in process, over a real audit log (entries appended
through its API, checkpoints cosigned by a real witness): the browser filters
and pages, the checkpoint is verified with the pinned keys and a tampered,
uncosigned or forked one is shown as failed, receipts verify by upload and
forged, altered, foreign or oversized files get a GOV.UK error summary naming
the problem, uploads need the CSRF token, and a coordinator gets 403."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from audit_log import (
    Checkpoint,
    CosignatureSigner,
    NoteSigner,
    Witness,
    WitnessConflict,
    format_tlog_proof,
    open_checkpoint,
    parse_tlog_proof,
    sign_checkpoint,
)
from audit_log._api import create_app as create_audit_app
from audit_log._config import Settings as AuditSettings
from audit_log._config import WitnessSettings
from audit_log._review import format_jsonl
from tests._inprocess import PortalTransport, lifespans, start_blocking_portal
from tests.audit_log._factories import T0, hex_id, make_entry
from web_service import _store as web_store
from web_service._accounts import create_account
from web_service._app import create_app as create_web_app
from web_service._config import Settings as WebSettings
from web_service._pages.ig import MAX_UPLOAD, PAGE

ORIGIN = "audit.example.gov.uk/log"
PASSWORD = "correct horse battery staple"
TOKENS = {"ig_officer": "ig-token", "writer": "writer-token"}
WITNESS_TOKEN_ENV = "TEST_WEB_IG_WITNESS_TOKEN"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PRO = [hex_id("pro", n) for n in range(3)]
FAM = [hex_id("fam", n) for n in range(5)]
ENTRIES = 66  # more than one page
PAGES = (
    "/audit",
    "/audit/checkpoint",
    "/audit/receipt",
    "/audit/anomalies",
    "/audit/reviews",
    "/audit/subject-access",
)


class Tamper(httpx.BaseTransport):
    """The audit transport, with an optional rewrite of answers (a lying log)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.rewrite: Callable[[httpx.Request, httpx.Response], httpx.Response] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        return self.rewrite(request, response) if self.rewrite else response


@dataclass
class Stack:
    ig: httpx.Client
    audit: httpx.Client
    web_transport: httpx.BaseTransport
    tamper: Tamper
    engine: Any
    signer: NoteSigner
    witness: CosignatureSigner
    vkey_file: Path
    witness_file: Path


def _entries() -> list[Any]:
    """Decisions over three days by three professionals for five families, with two
    purposes, then a break-glass use and its review."""
    out = []
    for n in range(ENTRIES - 2):
        out.append(
            make_entry(
                "decision",
                n,
                time=T0 + timedelta(hours=n),
                purpose_code="EARLY_HELP" if n % 7 == 0 else "SAFEGUARDING",
            )
        )
    out.append(make_entry("break_glass", 90, time=T0 + timedelta(hours=70)))
    out.append(make_entry("review", 90, time=T0 + timedelta(hours=71)))
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("ig")
    signer = NoteSigner.from_seed(ORIGIN, bytes(range(32)))
    witness_signer = CosignatureSigner.from_seed("ig.example/witness", bytes([5]) * 32)
    witness = Witness(work / "witness.json", witness_signer, {ORIGIN: signer.verifier()})

    def cosign(request: httpx.Request) -> httpx.Response:
        try:
            return httpx.Response(200, text=witness.add_checkpoint(request.content.decode()))
        except WitnessConflict as exc:
            return httpx.Response(409, text=f"{exc.size}\n")

    tokens = work / "tokens"
    tokens.write_text(
        "".join(
            f"{hashlib.sha256(t.encode()).hexdigest()} {role} test-{role}\n"
            for role, t in TOKENS.items()
        )
    )
    tokens.chmod(0o600)
    os.environ[WITNESS_TOKEN_ENV] = "t"
    audit_app = create_audit_app(
        AuditSettings(
            db_url=f"sqlite:///{work / 'audit.db'}",
            token_file=tokens,
            checkpoint_interval=0.05,
            max_unlocks_per_period=2,
            witnesses=[
                WitnessSettings(
                    url="http://witness", vkey=witness_signer.vkey, token_env=WITNESS_TOKEN_ENV
                )
            ],
        ),
        signer=signer,
        http_client=httpx.Client(transport=httpx.MockTransport(cosign)),
    )
    vkey_file = work / "audit-log.vkey"
    vkey_file.write_text(signer.verifier().vkey + "\n")
    witness_file = work / "witness.vkey"
    witness_file.write_text(witness_signer.vkey + "\n")
    engine = web_store.open_engine(f"sqlite:///{work / 'web.db'}")
    officer = create_account(
        engine,
        username="iggy",
        role="ig_officer",
        display_name="Iggy Officer",
        password=PASSWORD,
        professional_id="pro_" + "cd" * 8,
        credential=TOKENS["ig_officer"],
    )
    create_account(
        engine,
        username="cora",
        role="coordinator",
        display_name="Cora Coordinator",
        password=PASSWORD,
        credential="linkage-token",
    )
    assert officer.totp_uri is not None
    try:
        with start_blocking_portal() as portal:
            tamper = Tamper(PortalTransport(audit_app, portal))
            web_app = create_web_app(
                WebSettings(
                    linkage_url="http://linkage",
                    unlock_url="http://unlock",
                    audit_url="http://audit",
                    audit_log_vkey_file=vkey_file,
                    witness_vkey_file=witness_file,
                    cookie_secure=False,
                ),
                engine=engine,
                transports={"audit": tamper},
            )
            web_transport = PortalTransport(web_app, portal)
            with (
                lifespans(portal, audit_app, web_app),
                httpx.Client(
                    transport=PortalTransport(audit_app, portal), base_url="http://audit"
                ) as audit,
                httpx.Client(transport=web_transport, base_url="http://web") as ig,
            ):
                writer = {"Authorization": f"Bearer {TOKENS['writer']}"}
                for entry in _entries():
                    r = audit.post("/entries", json=entry.model_dump(mode="json"), headers=writer)
                    assert r.status_code == 201, r.text
                _wait_for_checkpoint(audit, ENTRIES)
                code = pyotp.parse_uri(officer.totp_uri).now()
                r = ig.post(
                    "/sign-in",
                    data={"username": "iggy", "password": PASSWORD, "code": code, "next": "/"},
                )
                assert r.status_code == 303, r.text
                yield Stack(
                    ig,
                    audit,
                    web_transport,
                    tamper,
                    engine,
                    signer,
                    witness_signer,
                    vkey_file,
                    witness_file,
                )
    finally:
        os.environ.pop(WITNESS_TOKEN_ENV, None)
        engine.dispose()


def _wait_for_checkpoint(audit: httpx.Client, size: int) -> str:
    headers = {"Authorization": f"Bearer {TOKENS['ig_officer']}"}
    deadline = time.monotonic() + 10
    while True:
        r = audit.get("/checkpoint", headers=headers)
        if r.status_code == 200 and f"\n{size}\n" in r.text:
            return r.text
        assert time.monotonic() < deadline, f"no checkpoint of size {size}: {r.text}"
        time.sleep(0.05)


def _as_ig(stack: Stack, path: str) -> str:
    r = stack.audit.get(path, headers={"Authorization": f"Bearer {TOKENS['ig_officer']}"})
    assert r.status_code == 200, r.text
    return r.text


def rows(html: str) -> list[int]:
    """The entry indices listed on an audit page, in order."""
    return [
        int(i)
        for i in re.findall(
            r'<td class="govuk-table__cell govuk-table__cell--numeric">(\d+)</td>', html
        )
    ]


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def upload(
    stack: Stack, files: dict[str, tuple[str, bytes]], token: str | None = None
) -> httpx.Response:
    csrf = csrf_of(stack.ig.get("/audit/receipt").text) if token is None else token
    return stack.ig.post("/audit/receipt", data={"csrf_token": csrf}, files=files)


def error_summary(html: str) -> list[tuple[str, str]]:
    """(field link, message) pairs of the GOV.UK error summary."""
    summary = html.split('class="govuk-error-summary"', 1)
    assert len(summary) == 2, "no error summary"
    return re.findall(r'<a href="#(\w+)">([^<]+)</a>', summary[1].split("</ul>", 1)[0])


# -- every page, roles ---------------------------------------------------------


def test_every_page_renders_for_the_ig_officer(stack: Stack) -> None:
    for path in PAGES:
        r = stack.ig.get(path)
        assert r.status_code == 200, (path, r.text[-2000:])
        assert "<h1" in r.text and "There is a problem" not in r.text, path
        assert "Content-Security-Policy" in r.headers


def test_a_coordinator_gets_403_and_no_session_goes_to_sign_in(stack: Stack) -> None:
    with httpx.Client(transport=stack.web_transport, base_url="http://web") as cora:
        r = cora.post("/sign-in", data={"username": "cora", "password": PASSWORD, "next": "/"})
        assert r.status_code == 303
        for path in PAGES:
            r = cora.get(path)
            assert r.status_code == 403, path
            assert "You cannot do this" in r.text
        page = cora.get("/families")  # any page with the coordinator's CSRF token
        token = CSRF.search(page.text)
        r = cora.post(
            "/audit/receipt",
            data={"csrf_token": token.group(1) if token else ""},
            files={"receipt": ("r.proof", b"x")},
        )
        assert r.status_code == 403
    with httpx.Client(transport=stack.web_transport, base_url="http://web") as nobody:
        r = nobody.get("/audit")
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in")


def test_the_browser_signed_pages_are_shells_with_the_key_panel(stack: Stack) -> None:
    for path, name in (("/audit/reviews", "reviews"), ("/audit/subject-access", "subject-access")):
        page = stack.ig.get(path).text
        assert f'data-page="{name}"' in page
        assert 'id="key-panel"' in page
        assert '<script type="module" src="/static/ig.js">' in page
        assert 'data-professional-id="pro_' in page  # the key panel checks the token's subject
    assert stack.ig.get("/static/ig.js").status_code == 200


# -- the log browser -------------------------------------------------------------


def test_entries_in_plain_language_and_paging(stack: Stack) -> None:
    first = stack.ig.get("/audit").text
    assert rows(first) == list(range(PAGE))
    assert "2 March 2026, 10:00am" in first  # T0 as a date, not microseconds
    assert 'govuk-tag--red">Refused' in first and 'govuk-tag--green">Granted' in first
    assert "Purpose: Safeguarding" in first and "Purpose: Early help" in first
    assert "Reason: No attestation" in first
    later = re.search(
        r'<a class="govuk-link govuk-pagination__link" href="([^"]+)" rel="next">', first
    )
    assert later, "no link to the next page"
    second = stack.ig.get(later.group(1).replace("&amp;", "&")).text
    # (another test may have appended two later entries)
    assert rows(second)[: ENTRIES - PAGE] == list(range(PAGE, ENTRIES))
    assert "Break-glass (emergency) use" in second and "Break-glass review" in second
    back = re.search(r'href="([^"]+)" rel="prev"', second)
    assert back
    assert rows(stack.ig.get(back.group(1).replace("&amp;", "&")).text) == list(range(PAGE))


def test_filters_are_applied_by_the_log(stack: Stack) -> None:
    page = stack.ig.get("/audit", params={"professional": PRO[1]}).text
    expected = [n for n in range(ENTRIES - 2) if n % 3 == 1]
    assert rows(page) == expected[:PAGE]
    page = stack.ig.get("/audit", params={"family": FAM[2], "decision": "refused"}).text
    assert rows(page) == [n for n in range(ENTRIES - 2) if n % 5 == 2 and n % 4 == 0]
    page = stack.ig.get("/audit", params={"purpose": "early help"}).text
    assert rows(page) == [n for n in range(ENTRIES - 2) if n % 7 == 0]
    page = stack.ig.get("/audit", params={"type": "review"}).text
    assert rows(page) == [ENTRIES - 1]
    # 3 March 2026 (UTC): hours 14..37 after T0 (10:00 on the 2nd)
    page = stack.ig.get(
        "/audit",
        params={
            "from_day": "3",
            "from_month": "3",
            "from_year": "2026",
            "to_day": "3",
            "to_month": "3",
            "to_year": "2026",
        },
    ).text
    assert rows(page) == list(range(14, 38))


def test_entries_are_verified_against_the_checkpoint(stack: Stack) -> None:
    page = stack.ig.get("/audit").text
    assert "Each entry below was checked against the log's checkpoint" in page

    def rewrite_entries(change: Callable[[dict[str, Any]], None]) -> Callable[..., httpx.Response]:
        def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            if request.url.path != "/entries":
                return response
            body = response.json()
            change(body)
            return httpx.Response(200, json=body)

        return rewrite

    def alter_leaf(body: dict[str, Any]) -> None:
        item = body["entries"][3]
        item["leaf"] = item["leaf"].replace('"SAFEGUARDING"', '"EARLY_HELP"')

    def drop_proof_hash(body: dict[str, Any]) -> None:
        body["entries"][0]["inclusion_proof"] = body["entries"][0]["inclusion_proof"][1:]

    def slip_in_another_professional(body: dict[str, Any]) -> None:
        # a genuine entry with a genuine proof, but not one the filter asked for
        size = int(_as_ig(stack, "/checkpoint").split("\n")[1])
        proof = json.loads(_as_ig(stack, f"/proof/inclusion?index=0&size={size}"))["hashes"]
        body["entries"].append(
            {"index": 0, "leaf": _as_ig(stack, "/leaves/0"), "inclusion_proof": proof}
        )

    cases = [
        ({}, alter_leaf, "entry 3"),
        ({}, drop_proof_hash, "entry 0 is not in the signed tree"),
        ({"professional": PRO[1]}, slip_in_another_professional, "was asked for"),
    ]
    for params, change, named in cases:
        stack.tamper.rewrite = rewrite_entries(change)
        try:
            page = stack.ig.get("/audit", params=params).text
        finally:
            stack.tamper.rewrite = None
        assert "Entries cannot be shown" in page, change.__name__
        assert "failed verification against its signed checkpoint" in page
        assert named in page
        assert rows(page) == [], change.__name__

    def tampered(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == "/checkpoint":
            return httpx.Response(200, text=_flip_root(response.text))
        return response

    stack.tamper.rewrite = tampered
    try:
        page = stack.ig.get("/audit").text
    finally:
        stack.tamper.rewrite = None
    assert "Entries cannot be shown" in page and "did not verify" in page
    assert rows(page) == []


def test_bad_filters_get_an_error_summary_linked_to_the_field(stack: Stack) -> None:
    r = stack.ig.get(
        "/audit",
        params={
            "professional": "Jane Smith",
            "from_day": "31",
            "from_month": "2",
            "from_year": "2026",
        },
    )
    assert r.status_code == 400
    found = dict(error_summary(r.text))
    assert "professional id" in found["professional"]
    assert "real date" in found["from_day"]
    assert 'id="professional"' in r.text and 'id="from_day"' in r.text
    r = stack.ig.get(
        "/audit",
        params={
            "from_day": "5",
            "from_month": "3",
            "from_year": "2026",
            "to_day": "1",
            "to_month": "3",
            "to_year": "2026",
        },
    )
    assert r.status_code == 400
    assert "after the from date" in dict(error_summary(r.text))["to_day"]


# -- checkpoint status -----------------------------------------------------------


def test_checkpoint_verified_then_consistent_with_the_last_seen(stack: Stack) -> None:
    page = stack.ig.get("/audit/checkpoint").text
    assert "Checkpoint verified" in page
    assert f"The log holds {ENTRIES} entries" in page
    assert "ig.example/witness" in page
    with web_store.session(stack.engine) as db:
        seen = web_store.get_seen_checkpoint(db, ORIGIN)
        assert seen is not None and seen.size == ENTRIES
    # the log grows; the next visit proves the new checkpoint extends the stored one
    writer = {"Authorization": f"Bearer {TOKENS['writer']}"}
    for n in range(2):
        body = make_entry("decision", 200 + n, time=T0 + timedelta(days=10)).model_dump(mode="json")
        assert stack.audit.post("/entries", json=body, headers=writer).status_code == 201
    _wait_for_checkpoint(stack.audit, ENTRIES + 2)
    page = stack.ig.get("/audit/checkpoint").text
    assert "Checkpoint verified" in page
    assert "extends the history this service saw before" in page
    assert "Proven to extend the earlier checkpoint" in page
    with web_store.session(stack.engine) as db:
        seen = web_store.get_seen_checkpoint(db, ORIGIN)
        assert seen is not None and seen.size == ENTRIES + 2


def _flip_root(note: str) -> str:
    lines = note.split("\n")
    root = lines[2]
    lines[2] = ("B" if root[0] != "B" else "C") + root[1:]
    return "\n".join(lines)


def test_a_tampered_checkpoint_is_shown_as_failed(stack: Stack) -> None:
    def tampered(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == "/checkpoint":
            return httpx.Response(200, text=_flip_root(response.text))
        return response

    stack.tamper.rewrite = tampered
    try:
        with web_store.session(stack.engine) as db:
            before = web_store.get_seen_checkpoint(db, ORIGIN)
            assert before is not None
            before_note = before.note
        page = stack.ig.get("/audit/checkpoint").text
    finally:
        stack.tamper.rewrite = None
    assert "Checkpoint failed verification" in page
    assert "not signed by the audit log&#39;s pinned key" in page
    assert "Checkpoint verified" not in page
    with web_store.session(stack.engine) as db:
        after = web_store.get_seen_checkpoint(db, ORIGIN)
        assert after is not None and after.note == before_note


def test_a_checkpoint_without_the_witness_cosignature_is_shown_as_failed(stack: Stack) -> None:
    def strip_cosignature(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == "/checkpoint":
            body, _, sigs = response.text.partition("\n\n")
            kept = [line for line in sigs.splitlines() if ORIGIN in line]
            return httpx.Response(200, text=body + "\n\n" + "\n".join(kept) + "\n")
        return response

    stack.tamper.rewrite = strip_cosignature
    try:
        page = stack.ig.get("/audit/checkpoint").text
    finally:
        stack.tamper.rewrite = None
    assert "Checkpoint failed verification" in page
    assert "no valid cosignature from the IG office" in page


def test_a_fork_from_the_last_seen_checkpoint_is_shown_as_failed(stack: Stack) -> None:
    stack.ig.get("/audit/checkpoint")  # store the current one
    with web_store.session(stack.engine) as db:
        seen = web_store.get_seen_checkpoint(db, ORIGIN)
        assert seen is not None
        real = seen.note
        cp, _ = open_checkpoint(real, stack.signer.verifier())
        # the log key signed a different root for the same size: a second history
        other = sign_checkpoint(Checkpoint(cp.origin, cp.size, bytes(32)), stack.signer)
        assert web_store.save_seen_checkpoint(
            db, ORIGIN, size=cp.size, note=other, verified_at=1, previous=seen
        )
    try:
        page = stack.ig.get("/audit/checkpoint").text
        assert "Checkpoint failed verification" in page
        assert "forked" in page
        with web_store.session(stack.engine) as db:
            kept = web_store.get_seen_checkpoint(db, ORIGIN)
            assert kept is not None and kept.note == other  # a failed check replaces nothing
    finally:
        with web_store.session(stack.engine) as db:
            kept = web_store.get_seen_checkpoint(db, ORIGIN)
            web_store.save_seen_checkpoint(
                db, ORIGIN, size=cp.size, note=real, verified_at=2, previous=kept
            )


def test_a_smaller_checkpoint_never_replaces_a_larger_one(stack: Stack) -> None:
    stack.ig.get("/audit/checkpoint")
    with web_store.session(stack.engine) as db:
        seen = web_store.get_seen_checkpoint(db, ORIGIN)
        assert seen is not None
        assert not web_store.save_seen_checkpoint(
            db, ORIGIN, size=seen.size - 1, note="x", verified_at=3, previous=seen
        )
        stale = web_store.SeenCheckpoint(
            origin=ORIGIN, size=seen.size, note=seen.note, verified_at=0, version=seen.version - 1
        )
        assert not web_store.save_seen_checkpoint(
            db, ORIGIN, size=seen.size + 1, note="x", verified_at=3, previous=stale
        )


# -- receipts --------------------------------------------------------------------


def test_a_genuine_receipt_verifies(stack: Stack) -> None:
    receipt = _as_ig(stack, "/receipts/5").encode()
    leaf = _as_ig(stack, "/leaves/5").encode()
    r = upload(stack, {"receipt": ("receipt-5.proof", receipt), "entry": ("entry-5.json", leaf)})
    assert r.status_code == 200, r.text
    assert "Receipt verified" in r.text
    assert "Entry 5 is in the audit log" in r.text
    assert PRO[5 % 3] in r.text and FAM[5 % 5] in r.text
    assert "ig.example/witness" in r.text
    # a release saved from the unlock service holds both in one JSON file
    bundle = (
        '{"request_id": "req_00", "receipt": '
        + json.dumps(receipt.decode())
        + ', "leaf": '
        + json.dumps(leaf.decode())
        + "}"
    ).encode()
    r = upload(stack, {"receipt": ("release.json", bundle)})
    assert r.status_code == 200 and "Receipt verified" in r.text


def test_an_exported_entry_verifies_with_its_newline(stack: Stack) -> None:
    # audit-log export / entries write each entry as a line: the leaf and "\n"
    receipt = _as_ig(stack, "/receipts/5").encode()
    (line,) = format_jsonl([_as_ig(stack, "/leaves/5").encode()])
    for exported in (line.encode(), line.encode().replace(b"\n", b"\r\n")):
        files = {"receipt": ("receipt-5.proof", receipt), "entry": ("entry-5.json", exported)}
        r = upload(stack, files)
        assert r.status_code == 200, r.text[-1500:]
        assert "Entry 5 is in the audit log" in r.text


def _problem(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 422, r.text[-1500:]
    assert "Receipt verified" not in r.text
    return dict(error_summary(r.text))


def test_a_receipt_for_another_entry_or_an_altered_entry_is_refused(stack: Stack) -> None:
    receipt = _as_ig(stack, "/receipts/5").encode()
    other = _as_ig(stack, "/leaves/6").encode()
    found = _problem(upload(stack, {"receipt": ("r.proof", receipt), "entry": ("e.json", other)}))
    assert "does not prove this entry" in found["entry"]
    leaf = _as_ig(stack, "/leaves/5")
    altered = (
        leaf.replace(FAM[0], FAM[1]) if FAM[0] in leaf else leaf.replace('"refused"', '"granted"')
    )
    assert altered != leaf
    found = _problem(
        upload(stack, {"receipt": ("r.proof", receipt), "entry": ("e.json", altered.encode())})
    )
    assert "does not prove this entry" in found["entry"]
    # as exported (with its newline), the altered entry fails just the same
    exported = (altered + "\n").encode()
    found = _problem(
        upload(stack, {"receipt": ("r.proof", receipt), "entry": ("e.json", exported)})
    )
    assert "does not prove this entry" in found["entry"]
    # two entries in one file are not the entry
    two = (leaf + "\n" + leaf + "\n").encode()
    found = _problem(upload(stack, {"receipt": ("r.proof", receipt), "entry": ("e.json", two)}))
    assert "holds 2 lines" in found["entry"]


def test_a_forged_receipt_is_refused(stack: Stack) -> None:
    receipt = _as_ig(stack, "/receipts/5")
    leaf = _as_ig(stack, "/leaves/5").encode()
    proof = parse_tlog_proof(receipt)
    cp, _ = open_checkpoint(proof.checkpoint_note, stack.signer.verifier())
    impostor = NoteSigner.from_seed(ORIGIN, bytes([99]) * 32)
    # same entry, same proof, a checkpoint signed with a key the IG office never pinned,
    # cosigned by the real witness key's name but not its key
    forged = format_tlog_proof(proof.index, proof.hashes, sign_checkpoint(cp, impostor))
    found = _problem(
        upload(stack, {"receipt": ("r.proof", forged.encode()), "entry": ("e.json", leaf)})
    )
    assert "not signed by the audit log's pinned key" in found["receipt"].replace("&#39;", "'")
    # genuine log signature, cosignature removed
    note_body, _, sigs = proof.checkpoint_note.partition("\n\n")
    log_only = note_body + "\n\n" + "".join(x + "\n" for x in sigs.splitlines() if ORIGIN in x)
    uncosigned = format_tlog_proof(proof.index, proof.hashes, log_only)
    found = _problem(
        upload(stack, {"receipt": ("r.proof", uncosigned.encode()), "entry": ("e.json", leaf)})
    )
    assert "no valid cosignature from the IG witness" in found["receipt"]


@pytest.mark.parametrize(
    ("files", "field", "message"),
    [
        (
            {"receipt": ("r.proof", b"hello, this is not a receipt\n")},
            "receipt",
            "not an audit log receipt",
        ),
        ({"receipt": ("r.proof", b"\xff\xfe\x00binary")}, "receipt", "must be a text file"),
        ({"receipt": ("r.json", b'{"receipt": 1}')}, "receipt", "not a release"),
        ({"receipt": ("r.proof", b"")}, "receipt", "is empty"),
        ({"entry": ("e.json", b"{}")}, "receipt", "Select the receipt file"),
        (
            {"receipt": ("big.proof", b"x" * (MAX_UPLOAD + 1))},
            "receipt",
            "must be smaller than 64 KB",
        ),
    ],
)
def test_bad_files_name_the_problem(
    stack: Stack, files: dict[str, tuple[str, bytes]], field: str, message: str
) -> None:
    found = _problem(upload(stack, files))
    assert message in found[field], found


def test_a_receipt_alone_is_checked_against_the_entry_the_log_holds(stack: Stack) -> None:
    receipt = _as_ig(stack, "/receipts/7")
    r = upload(stack, {"receipt": ("receipt-req_7.txt", receipt.encode())})
    assert r.status_code == 200, r.text[-1500:]
    assert "Entry 7 is in the audit log" in r.text
    assert "the entry was read from the audit log" in r.text

    # the log answers with another entry than the one the receipt was issued for
    def swap_leaf(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == "/leaves/7":
            return httpx.Response(200, text=_as_ig(stack, "/leaves/8"))
        return response

    stack.tamper.rewrite = swap_leaf
    try:
        found = _problem(upload(stack, {"receipt": ("receipt.txt", receipt.encode())}))
    finally:
        stack.tamper.rewrite = None
    assert "does not match entry 7 as the audit log holds it" in found["receipt"]
    # a receipt naming an entry the log does not have
    beyond = receipt.replace("index 7\n", "index 9999\n", 1)
    found = _problem(upload(stack, {"receipt": ("receipt.txt", beyond.encode())}))
    assert "holds no entry 9999" in found["receipt"]


def test_uploads_need_the_csrf_token(stack: Stack) -> None:
    receipt = _as_ig(stack, "/receipts/5").encode()
    leaf = _as_ig(stack, "/leaves/5").encode()
    files = {"receipt": ("r.proof", receipt), "entry": ("e.json", leaf)}
    r = stack.ig.post("/audit/receipt", files=files)
    assert r.status_code == 403
    r = upload(stack, files, token="not-the-token")
    assert r.status_code == 403
    assert "Receipt verified" not in r.text


def test_an_upload_over_the_body_limit_is_refused(stack: Stack) -> None:
    csrf = csrf_of(stack.ig.get("/audit/receipt").text)
    r = stack.ig.post(
        "/audit/receipt",
        data={"csrf_token": csrf},
        files={"receipt": ("huge.proof", b"x" * (2 << 20))},
    )
    assert r.status_code == 413


# -- anomaly report --------------------------------------------------------------


def test_anomaly_report_tables_and_charts(stack: Stack) -> None:
    report = stack.audit.get(
        "/reports/anomalies", headers={"Authorization": f"Bearer {TOKENS['ig_officer']}"}
    ).json()
    page = stack.ig.get("/audit/anomalies").text
    assert f"Anomalies ({len(report['anomalies'])})" in page
    assert "More unlocks than the limit" in page and "Unlock outside working hours" in page
    assert page.count('role="img"') == 2
    assert "<title id=" in page and "<desc id=" in page
    per_pro: dict[str, int] = {}
    for row in report["unlocks_per_day"]:
        per_pro[row["professional_id"]] = per_pro.get(row["professional_id"], 0) + row["unlocks"]
    for pro, count in per_pro.items():
        # the chart's numbers are in the table beside it
        cell = '<td class="govuk-table__cell govuk-table__cell--numeric">'
        assert f'app-mono">{pro}</th>{cell}{count}<' in page, pro
    one_day = stack.ig.get(
        "/audit/anomalies",
        params={
            "from_day": "2",
            "from_month": "3",
            "from_year": "2026",
            "to_day": "2",
            "to_month": "3",
            "to_year": "2026",
        },
    ).text
    assert "Mon 2 Mar 2026" in one_day and "Tue 3 Mar 2026" not in one_day
    bad = stack.ig.get("/audit/anomalies", params={"from_day": "x"})
    assert bad.status_code == 400
    assert "real date" in dict(error_summary(bad.text))["from_day"]
