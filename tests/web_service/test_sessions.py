"""Sessions: idle and absolute expiry, sign-out, CSRF tokens."""

from __future__ import annotations

from web_service import SignedIn
from web_service._sessions import SessionStore

USER = SignedIn("casey", "coordinator", "Casey", None, "token")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_after_the_idle_time_without_a_request():
    clock = Clock()
    sessions = SessionStore(idle=900, max_age=36000, clock=clock)
    cookie, session = sessions.start(USER)
    clock.now = 899
    assert sessions.get(cookie) is session  # a request restarts the idle clock
    clock.now = 899 + 899
    assert sessions.get(cookie) is session
    clock.now += 901
    assert sessions.get(cookie) is None


def test_a_session_ends_at_its_maximum_age_however_busy():
    clock = Clock()
    sessions = SessionStore(idle=900, max_age=3600, clock=clock)
    cookie, _ = sessions.start(USER)
    for minute in range(1, 60):
        clock.now = minute * 60
        assert sessions.get(cookie) is not None
    clock.now = 3601
    assert sessions.get(cookie) is None


def test_sign_out_forgets_the_session_and_the_table_holds_no_cookie():
    sessions = SessionStore(idle=900, max_age=3600)
    cookie, session = sessions.start(USER)
    assert cookie not in repr(sessions._sessions)  # keyed by its hash
    sessions.end(cookie)
    assert sessions.get(cookie) is None
    assert sessions.get("made-up") is None and sessions.get(None) is None
    assert len(sessions) == 0
    assert session.check_csrf(session.csrf)
    assert not session.check_csrf("x") and not session.check_csrf(None)
