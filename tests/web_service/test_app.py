"""The web app's shell: sign-in redirects, CSRF, security headers, the relay's
guards. The linkage and unlock services are replaced by recording transports."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest

from tests._fuzz import running
from web_service import Settings, create_account, create_app
from web_service import _store as store

PASSWORD = "correct horse battery staple"
PRO = "pro_" + "cd" * 8


def _jwt(sub: str) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'EdDSA'})}.{part({'sub': sub})}.c2ln"


@pytest.fixture
def web(tmp_path):
    seen: list[httpx.Request] = []

    def linkage(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/programme":  # what the families page reads first
            programme = {
                "ruleset": {"problems": {}},
                "model": {"thresholds": {"unlock": 40}, "combinations": {}},
            }
            return httpx.Response(200, json=programme)
        return httpx.Response(200, json={"cycle": None, "families": [], "next_offset": None})

    def unlock(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"purposes": [], "policy": "p 1"})

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'web.sqlite'}",
        linkage_url="http://linkage.test",
        unlock_url="http://unlock.test",
        cookie_secure=False,
    )
    engine = store.open_engine(settings.database_url)
    create_account(
        engine, username="casey", role="coordinator", display_name="Casey", password=PASSWORD,
        credential="casey-linkage-token",
    )  # fmt: skip
    create_account(
        engine, username="sam", role="professional", display_name="Sam", password=PASSWORD,
        professional_id=PRO,
    )  # fmt: skip
    app = create_app(
        settings,
        engine=engine,
        transports={"linkage": httpx.MockTransport(linkage), "unlock": httpx.MockTransport(unlock)},
    )
    with running(app) as client:
        client.seen = seen
        client.engine = engine
        yield client
    engine.dispose()


def _sign_in(client, username="casey", next_="/"):
    return client.post(
        "/sign-in",
        data={"username": username, "password": PASSWORD, "next": next_},
        follow_redirects=False,
    )


def _csrf(client, path="/families"):
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text).group(1)


def test_a_page_without_a_session_sends_the_browser_to_sign_in(web):
    r = web.get("/families?eligible=no", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in?next=/families%3Feligible%3Dno"


def test_sign_in_sets_a_strict_http_only_cookie_and_the_pages_call_with_the_users_token(web):
    r = _sign_in(web, next_="/families")
    assert r.status_code == 303 and r.headers["location"] == "/families"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = web.get("/families")
    assert page.status_code == 200
    assert web.seen[-1].headers["authorization"] == "Bearer casey-linkage-token"
    assert "casey-linkage-token" not in page.text  # never sent to the browser


@pytest.mark.parametrize("target", ["//evil.test/x", "https://evil.test/", "/\\evil.test"])
def test_sign_in_never_redirects_off_the_site(web, target):
    r = _sign_in(web, next_=target)
    assert r.headers["location"] == "/families"


def test_every_page_has_a_strict_content_security_policy(web):
    r = web.get("/sign-in")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'nonce="{nonce}"' in r.text  # the template's one inline script
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert web.get("/sign-in").headers["content-security-policy"] != csp  # fresh nonce


def test_a_form_post_without_the_sessions_csrf_token_is_refused(web):
    _sign_in(web)
    assert web.post("/sign-out", data={"csrf_token": "forged"}).status_code == 403
    assert web.get("/families").status_code == 200  # still signed in
    token = _csrf(web)
    assert (
        web.post("/sign-out", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    )
    assert web.get("/families", follow_redirects=False).status_code == 303


def test_a_coordinator_may_not_use_the_relay_or_the_professional_pages(web):
    _sign_in(web)
    assert web.get("/relay/unlock/purposes").status_code == 403
    assert web.get("/requests").status_code == 403


def test_the_relay_forwards_only_the_signed_in_professionals_signed_requests(web):
    _sign_in(web, "sam")  # no TOTP code: refused
    assert web.get("/requests", follow_redirects=False).status_code == 303


def test_the_relay_checks_path_token_subject_and_csrf(web):
    import pyotp

    from web_service import reset_account

    # a reset hands out a fresh TOTP enrolment URI: its seed gives a code
    made = reset_account(web.engine, username="sam", password=PASSWORD)
    code = pyotp.TOTP(pyotp.parse_uri(made.totp_uri).secret).now()
    r = web.post("/sign-in", data={"username": "sam", "password": PASSWORD, "code": code})
    assert r.status_code == 303 and r.headers["location"] == "/requests"
    csrf = _csrf(web, "/requests")
    mine = {"Authorization": f"Bearer {_jwt(PRO)}", "Unlock-Signature": "t=1,n=2,s=3"}
    before = len(web.seen)
    assert web.get("/relay/unlock/purposes", headers=mine).status_code == 200
    forwarded = web.seen[-1]
    assert forwarded.url.path == "/purposes"
    assert forwarded.headers["unlock-signature"] == "t=1,n=2,s=3"
    assert "cookie" not in forwarded.headers  # the session cookie stays here
    theirs = {**mine, "Authorization": f"Bearer {_jwt('pro_' + 'ef' * 8)}"}
    assert web.get("/relay/unlock/purposes", headers=theirs).status_code == 403
    assert web.get("/relay/unlock/admin/secrets", headers=mine).status_code == 404
    assert web.post("/relay/unlock/unlocks", headers=mine, json={}).status_code == 403  # no CSRF
    ok = web.post("/relay/unlock/unlocks", headers={**mine, "X-CSRF-Token": csrf}, json={})
    assert ok.status_code == 200
    assert len(web.seen) == before + 2  # only the two admitted calls reached the service
