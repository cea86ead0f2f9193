"""Sign-in accounts: argon2id passwords, TOTP, and the user's sealed credential.

An account belongs to one of three roles:

* ``coordinator``: holds a linkage-service bearer token (role ``coordinator``)
  the pages use to read families and to attach, claim and decide reviews;
* ``professional``: holds nothing on the server. The professional's browser
  loads their key file and JWT for the session and signs every unlock-service
  request itself; the server only relays it (``_relay``);
* ``ig_officer``: holds an audit-log bearer token (role ``ig_officer``) for
  the log browser and anomaly report, and signs unlock-service requests (break-
  glass reviews, subject access) in the browser like a professional.

The password is stored as an argon2id hash. The TOTP seed and the service
credential are sealed together (XSalsa20-Poly1305, PyNaCl's SecretBox) under a
key derived from the password with argon2id and a separate salt, so a copy of
the database gives neither: the credential is opened only at sign-in and kept
in the server's memory for the session. TOTP (RFC 6238, 30 s steps, one step of
drift) is required for professionals and IG officers; a code is accepted once.
After ``max_failures`` failed sign-ins the account is locked for a while.
Every sign-in, refusal (with its reason) and lockout is logged with the
account's user name, role and professional id (see ``_logging``); never the
password, the code, or a name typed for an account that does not exist.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import Type, hash_secret_raw
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from sqlalchemy.engine import Engine

from . import _store as store
from ._errors import AccountError, SignInError

__all__ = [
    "ROLES",
    "TOTP_ROLES",
    "NewAccount",
    "SignedIn",
    "create_account",
    "log_fields",
    "reset_account",
    "sign_in",
]

ROLES = store.ROLES
TOTP_ROLES = ("professional", "ig_officer")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_PRO = re.compile(r"^pro_[0-9a-f]{16,64}$")
_MIN_PASSWORD = 12
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults
_ISSUER = "family-linkage"
_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewAccount:
    """What the administrator hands to the new user (once)."""

    username: str
    role: str
    totp_uri: str | None


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: who, and the credential opened for this session."""

    username: str
    role: str
    display_name: str
    professional_id: str | None
    credential: str | None


def _seal_key(password: str, salt: bytes) -> bytes:
    return hash_secret_raw(
        password.encode("utf-8"),
        salt,
        time_cost=3,
        memory_cost=64 * 1024,
        parallelism=1,
        hash_len=SecretBox.KEY_SIZE,
        type=Type.ID,
    )


def _seal(password: str, secrets_: dict[str, str | None]) -> tuple[bytes, bytes]:
    salt = secrets.token_bytes(16)
    box = SecretBox(_seal_key(password, salt))
    return salt, bytes(box.encrypt(json.dumps(secrets_).encode("utf-8")))


def _check(
    username: str, role: str, password: str, professional_id: str | None, credential: str | None
) -> None:
    if not _USERNAME.match(username):
        raise AccountError(
            f"username {username!r}: expected 2-64 characters, lower-case letters, digits, . _ -"
        )
    if role not in ROLES:
        raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if len(password) < _MIN_PASSWORD:
        raise AccountError(f"password: at least {_MIN_PASSWORD} characters")
    if role in ("professional", "ig_officer"):
        if professional_id is None or not _PRO.match(professional_id):
            raise AccountError(
                f"professional_id: a {role} account needs the id the unlock service registered "
                "(pro_ and 16-64 hex digits)"
            )
    elif professional_id is not None:
        raise AccountError("professional_id: only professional and ig_officer accounts have one")
    if role == "coordinator" and not credential:
        raise AccountError("token: a coordinator account needs a linkage-service bearer token")
    if role == "ig_officer" and not credential:
        raise AccountError("token: an ig_officer account needs an audit-log bearer token")
    if role == "professional" and credential:
        raise AccountError(
            "token: a professional account holds no token on the server "
            "(the browser signs with the professional's own key)"
        )


def create_account(
    engine: Engine,
    *,
    username: str,
    role: str,
    display_name: str,
    password: str,
    professional_id: str | None = None,
    credential: str | None = None,
    now: float | None = None,
) -> NewAccount:
    """Add an account; AccountError naming the field if anything is wrong."""
    _check(username, role, password, professional_id, credential)
    totp = pyotp.random_base32() if role in TOTP_ROLES else None
    salt, sealed = _seal(password, {"totp": totp, "credential": credential})
    account = store.Account(
        username=username,
        role=role,
        display_name=display_name.strip()[:120] or username,
        password_hash=_HASHER.hash(password),
        seal_salt=salt,
        sealed=sealed,
        totp_required=totp is not None,
        professional_id=professional_id,
        created_at=int(time.time() if now is None else now),
    )
    with store.session(engine) as db:
        if not store.insert_account(db, account):
            raise AccountError(f"username {username!r} is taken")
    uri = (
        pyotp.TOTP(totp).provisioning_uri(name=username, issuer_name=_ISSUER)
        if totp is not None
        else None
    )
    return NewAccount(username, role, uri)


def reset_account(
    engine: Engine, *, username: str, password: str, credential: str | None = None
) -> NewAccount:
    """A new password, a new TOTP seed and the credential given again (the old
    seal cannot be opened without the old password)."""
    with store.session(engine) as db:
        account = store.get_account(db, username)
        if account is None:
            raise AccountError(f"no account {username!r}")
        _check(username, account.role, password, account.professional_id, credential)
        totp = pyotp.random_base32() if account.totp_required else None
        salt, sealed = _seal(password, {"totp": totp, "credential": credential})
        role = account.role
        if not store.set_secrets(
            db, account, password_hash=_HASHER.hash(password), seal_salt=salt, sealed=sealed
        ):
            raise AccountError(f"account {username!r} changed meanwhile: try again")
    uri = (
        pyotp.TOTP(totp).provisioning_uri(name=username, issuer_name=_ISSUER)
        if totp is not None
        else None
    )
    return NewAccount(username, role, uri)


_REFUSED = "the user name, password or code is not right, or the account is locked"


def sign_in(
    engine: Engine,
    username: str,
    password: str,
    code: str | None,
    *,
    max_failures: int,
    lockout_seconds: int,
    now: float | None = None,
) -> SignedIn:
    """Check a password (and TOTP code); SignInError with one message for every failure."""
    moment = time.time() if now is None else now
    with store.session(engine) as db:
        account = store.get_account(db, username.strip().lower())
        if account is None:
            # the same work as a real check (a password hash and the seal key's
            # derivation), so timing does not tell who exists
            _HASHER.hash(password)
            _seal_key(password, bytes(16))
            # not the name typed: it may be a password typed in the wrong box
            _logger.warning("sign-in refused", extra={"reason": "unknown_account"})
            raise SignInError(_REFUSED)
        who = log_fields(account)
        if not account.active or account.locked_until > moment:
            reason = "disabled" if not account.active else "locked"
            _logger.warning("sign-in refused", extra={**who, "reason": reason})
            raise SignInError(_REFUSED)
        opened = _open(account, password)
        step = _totp_step(account, opened, code, moment) if opened is not None else None
        refusal: str | None = None
        failures = account.failed_sign_ins + 1  # if this one fails
        if opened is None or (account.totp_required and step is None):
            store.record_failure(
                db,
                account,
                max_failures=max_failures,
                lock_until=int(moment) + lockout_seconds,
            )
            refusal = "wrong_password" if opened is None else "wrong_code"
        elif not store.record_success(db, account, step):
            refusal = "changed_meanwhile"  # the same code used twice at once, or an edit
        signed = SignedIn(
            account.username,
            account.role,
            account.display_name,
            account.professional_id,
            opened.get("credential") if opened else None,
        )
    if refusal is not None:
        counted = refusal != "changed_meanwhile"
        extra = {**who, "reason": refusal, **({"failures": failures} if counted else {})}
        _logger.warning("sign-in refused", extra=extra)
        if counted and failures >= max_failures:
            _logger.warning(
                "account locked after failed sign-ins",
                extra={**who, "failures": failures, "locked_minutes": lockout_seconds // 60},
            )
        raise SignInError(_REFUSED)
    _logger.info("signed in", extra=who)
    return signed


def log_fields(account: store.Account | SignedIn) -> dict[str, str]:
    """The log fields naming an account: its user name, role and professional id."""
    who = {"username": account.username, "role": account.role}
    if account.professional_id:
        who["professional_id"] = account.professional_id
    return who


def _open(account: store.Account, password: str) -> dict[str, str | None] | None:
    try:
        _HASHER.verify(account.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    try:
        box = SecretBox(_seal_key(password, account.seal_salt))
        opened = json.loads(box.decrypt(account.sealed))
    except (CryptoError, ValueError):
        return None
    return opened if isinstance(opened, dict) else None


def _totp_step(
    account: store.Account, opened: dict[str, str | None], code: str | None, moment: float
) -> int | None:
    """The time step ``code`` is valid for (one step of drift), if not used before."""
    if not account.totp_required:
        return None
    seed = opened.get("totp")
    if not seed or not code or not re.fullmatch(r"[0-9]{6}", code.strip()):
        return None
    totp = pyotp.TOTP(seed)
    current = int(moment) // totp.interval
    for step in (current, current - 1, current + 1):
        if step > account.totp_last_step and secrets.compare_digest(
            totp.generate_otp(step), code.strip()
        ):
            return step
    return None
