"""The web service's log: sign-ins, refusals, lockouts and sign-outs as JSON lines
with the whitelisted fields, never a password, a TOTP code, a session or a token."""

from __future__ import annotations

import io
import json
import logging
import re

import httpx
import pyotp
import pytest

from service_common import JsonFormatter
from tests._fuzz import running
from web_service import Settings, SignInError, create_account, create_app, sign_in
from web_service import _store as store
from web_service._logging import SAFE_FIELDS

PASSWORD = "correct horse battery staple"
WRONG = "wrong-password-never-logged"
PRO = "pro_" + "ab" * 8
TOKEN = "linkage-token-never-logged"


@pytest.fixture
def log_lines():
    """Factory: the JSON lines ``web_service`` logged so far, as ``serve`` formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(SAFE_FIELDS, service_name="web-service"))
    logger = logging.getLogger("web_service")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def engine(tmp_path):
    engine = store.open_engine(f"sqlite:///{tmp_path / 'web.sqlite'}")
    create_account(
        engine, username="casey", role="coordinator", display_name="Casey", password=PASSWORD,
        credential=TOKEN,
    )  # fmt: skip
    yield engine
    engine.dispose()


def _sign_in(engine, username, password=PASSWORD, code=None, now=1_800_000_000.0):
    return sign_in(engine, username, password, code, max_failures=3, lockout_seconds=900, now=now)


def _no_secret(lines, *secrets):
    text = json.dumps(lines)
    for secret in (PASSWORD, WRONG, TOKEN, *secrets):
        assert secret not in text


def test_a_failed_sign_in_is_logged_with_the_account_and_the_reason(engine, log_lines):
    with pytest.raises(SignInError):
        _sign_in(engine, "casey", WRONG)
    (line,) = log_lines()
    assert line["message"] == "sign-in refused" and line["level"] == "WARNING"
    assert line["service"] == "web-service" and line["logger"] == "web_service._accounts"
    assert (line["reason"], line["username"], line["role"], line["failures"]) == (
        "wrong_password",
        "casey",
        "coordinator",
        1,
    )
    _no_secret(log_lines())


def test_a_lockout_is_logged_and_so_is_each_sign_in_refused_while_locked(engine, log_lines):
    for _ in range(3):
        with pytest.raises(SignInError):
            _sign_in(engine, "casey", WRONG, now=1000.0)
    with pytest.raises(SignInError):  # the right password, but locked
        _sign_in(engine, "casey", now=1100.0)
    lines = log_lines()
    assert [(x["message"], x.get("failures")) for x in lines] == [
        ("sign-in refused", 1),
        ("sign-in refused", 2),
        ("sign-in refused", 3),
        ("account locked after failed sign-ins", 3),
        ("sign-in refused", None),
    ]
    locked = lines[3]
    assert (locked["username"], locked["locked_minutes"], locked["level"]) == (
        "casey",
        15,
        "WARNING",
    )
    assert lines[4]["reason"] == "locked"
    _no_secret(lines)


def test_an_unknown_account_is_logged_without_the_name_typed(engine, log_lines):
    typed = "s3cret-typed-in-the-name-box"  # a password in the wrong box
    with pytest.raises(SignInError):
        _sign_in(engine, typed, WRONG)
    (line,) = log_lines()
    assert line["reason"] == "unknown_account" and "username" not in line
    _no_secret(log_lines(), typed)


def test_a_wrong_totp_code_is_logged_without_the_code_and_a_sign_in_with_the_id(engine, log_lines):
    made = create_account(
        engine, username="sam", role="professional", display_name="Sam", password=PASSWORD,
        professional_id=PRO,
    )  # fmt: skip
    assert made.totp_uri is not None
    totp = pyotp.TOTP(pyotp.parse_uri(made.totp_uri).secret)
    now = 1_800_000_000.0
    wrong = "000000" if totp.at(now) != "000000" else "111111"
    with pytest.raises(SignInError):
        _sign_in(engine, "sam", code=wrong, now=now)
    _sign_in(engine, "sam", code=totp.at(now), now=now)
    refused, signed = log_lines()
    assert (refused["reason"], refused["professional_id"]) == ("wrong_code", PRO)
    assert signed["message"] == "signed in" and signed["level"] == "INFO"
    assert (signed["username"], signed["role"], signed["professional_id"]) == (
        "sam",
        "professional",
        PRO,
    )
    _no_secret(log_lines(), wrong, totp.at(now), pyotp.parse_uri(made.totp_uri).secret)


def test_the_pages_log_sign_in_sign_out_and_a_failed_call_without_the_session(
    engine, tmp_path, log_lines
):
    def linkage(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'web.sqlite'}",
        linkage_url="http://linkage.test",
        unlock_url="http://unlock.test",
        cookie_secure=False,
    )
    app = create_app(settings, engine=engine, transports={"linkage": httpx.MockTransport(linkage)})
    with running(app) as client:
        refused = client.post("/sign-in", data={"username": "casey", "password": WRONG})
        assert refused.status_code == 401
        signed = client.post(
            "/sign-in", data={"username": "casey", "password": PASSWORD}, follow_redirects=False
        )
        cookie = signed.cookies.get("session") or next(iter(client.cookies.values()))
        page = client.get("/families")
        assert page.status_code == 502
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        assert client.post("/sign-out", headers={"x-csrf-token": csrf}).status_code in (200, 303)
    lines = log_lines()
    assert [x["message"] for x in lines] == [
        "sign-in refused",
        "signed in",
        "backend call failed",
        "signed out",
    ]
    failed = lines[2]
    assert (failed["backend"], failed["status"], failed["path"], failed["error"]) == (
        "linkage service",
        502,
        "/families",
        "ConnectError",
    )
    assert failed["level"] == "WARNING"
    assert (lines[3]["username"], lines[3]["role"]) == ("casey", "coordinator")
    assert "professional_id" not in lines[3]  # a coordinator has none: no empty field
    _no_secret(lines, cookie, csrf)
