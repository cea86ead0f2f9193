"""Sign-in sessions, held in the server's memory only.

A session id is 32 random bytes sent in a ``Secure``, ``HttpOnly``,
``SameSite=Strict`` cookie; the table is keyed by its SHA-256, so a memory
dump lists no usable cookie. Each session carries its CSRF token (compared on
every form post and relayed call), the credential opened at sign-in, and two
clocks: it ends after ``idle`` seconds without a request and ``max_age``
seconds after sign-in, whichever is first. A restart signs everyone out, which
is also why the web service runs as one process.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._accounts import SignedIn

__all__ = ["COOKIE", "Session", "SessionStore"]

COOKIE = "fl_session"


@dataclass
class Session:
    """One signed-in user."""

    user: SignedIn
    csrf: str
    started: float
    seen: float
    flash: list[str] = field(default_factory=list)

    def check_csrf(self, presented: str | None) -> bool:
        """True if ``presented`` is this session's CSRF token."""
        return bool(presented) and secrets.compare_digest(self.csrf, str(presented))


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


class SessionStore:
    """Sessions by the SHA-256 of their cookie value, with idle and absolute expiry."""

    def __init__(
        self, idle: float, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._idle = idle
        self._max_age = max_age
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, user: SignedIn) -> tuple[str, Session]:
        """A new session for ``user``: the cookie value and the session."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            self._sessions[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session the cookie names (its idle clock restarts), or None."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(_key(session_id))
            if session is None:
                return None
            if now - session.seen > self._idle or now - session.started > self._max_age:
                del self._sessions[_key(session_id)]
                return None
            session.seen = now
            return session

    def end(self, session_id: str | None) -> None:
        """Sign out: forget the session."""
        if session_id:
            with self._lock:
                self._sessions.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        dead = [
            key
            for key, s in self._sessions.items()
            if now - s.seen > self._idle or now - s.started > self._max_age
        ]
        for key in dead:
            del self._sessions[key]
