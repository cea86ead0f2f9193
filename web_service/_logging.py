"""The web service's structured logs: which context fields it may write.

Formatting (JSON lines with trace ids, whitelisted fields only) is the shared
``service_common`` formatter; this module owns only the web service's own
whitelist. Sign-in events name the staff account (``username``) only once it
is known to exist, so a password typed into the user-name box is never
written, and the professional's pseudonymous id; never a password, a TOTP
code, a session id, a bearer token, a JWT, or anything a page shows about a
family.
"""

from __future__ import annotations

import logging

from service_common import configure_logging as _configure

__all__ = ["SAFE_FIELDS", "configure_logging"]

SAFE_FIELDS = frozenset(
    {
        "username",  # a staff account's sign-in name, only of an account that exists
        "professional_id",  # the unlock service's pseudonymous id of the account's professional
        "reason",  # why a sign-in was refused: unknown_account, disabled, locked, ...
        "failures",  # failed sign-ins counted against the account, this one included
        "locked_minutes",  # how long a lockout lasts
        "backend",  # linkage, unlock or audit: which service a failed call went to
    }
)


def configure_logging(level: int = logging.INFO) -> logging.Handler:
    """Send ``web_service`` (and uvicorn's error) logs to stderr as JSON lines."""
    return _configure(
        ["web_service", "uvicorn.error"],
        safe_fields=SAFE_FIELDS,
        service_name="web-service",
        level=level,
    )
