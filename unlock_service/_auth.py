"""Professionals' credentials: short-lived EdDSA JWTs bound to the professional's own key.

A professional proves who they are with two things on every request:

* a bearer token: a JWT (RFC 7519) signed with EdDSA (Ed25519) by the
  configured issuer, for this service's audience, short-lived (``exp - iat``
  at most ``max_token_lifetime``), with ``sub`` = the professional id, a
  ``jti``, and ``cnf.jkt`` (RFC 7800 / RFC 9449) = the RFC 7638 thumbprint of
  the professional's registered Ed25519 public key;
* a request signature (header ``Unlock-Signature: t=<unix>,n=<nonce>,s=<b64>``)
  by that same private key over :func:`request_message`: the method, path and
  query, the SHA-256 of the body, the time, a fresh nonce and the SHA-256 of
  the token. A token stolen without the key is useless; a captured request
  replayed is refused (the nonce is remembered for the signature window); a
  token for one professional used with another's key is refused (the key must
  match ``cnf.jkt`` and the professional's registered key).

Tokens are verified by PyJWT (signature, algorithm pinned to EdDSA, issuer,
audience, required claims); the times are checked here against an injected
clock so expiry and not-before are testable. This module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ._errors import AuthError

__all__ = [
    "SIGNATURE_HEADER",
    "Claims",
    "TokenIssuer",
    "TokenVerifier",
    "jwk_thumbprint",
    "request_message",
    "sign_request",
    "verify_request_signature",
]

SIGNATURE_HEADER = "Unlock-Signature"
_CONTEXT = b"unlock-service request signature v1\n"
_HEADER = re.compile(r"^t=([0-9]{1,12}),n=([0-9a-f]{32}),s=([A-Za-z0-9+/]{86}==)$")
_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "cnf"]
_PRO = re.compile(r"^pro_[0-9a-f]{16,64}$")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwk_thumbprint(public_key: bytes) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of an Ed25519 public key as an OKP JWK."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    # RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    jwk = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(public_key)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(jwk.encode("ascii")).digest())


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token that matter to the service."""

    professional_id: str
    jti: str
    thumbprint: str
    expires_at: int


class TokenIssuer:
    """Issues tokens (the local issuer for the demo; production uses the council's IdP)."""

    def __init__(self, key: Ed25519PrivateKey, issuer: str, audience: str) -> None:
        self._key = key
        self.issuer = issuer
        self.audience = audience

    def issue(
        self,
        professional_id: str,
        public_key: bytes,
        *,
        lifetime: int = 300,
        now: float | None = None,
    ) -> str:
        """A token for ``professional_id`` bound to their Ed25519 ``public_key``."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": professional_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "jti": secrets.token_hex(16),
            "cnf": {"jkt": jwk_thumbprint(public_key)},
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA")


class TokenVerifier:
    """Verifies tokens from one issuer for one audience."""

    def __init__(
        self,
        issuer_key: Ed25519PublicKey,
        issuer: str,
        audience: str,
        *,
        max_lifetime: int = 600,
        leeway: int = 30,
    ) -> None:
        self._key = issuer_key
        self._issuer = issuer
        self._audience = audience
        self._max_lifetime = max_lifetime
        self._leeway = leeway

    def verify(self, token: str, now: float) -> Claims:
        """The token's claims; AuthError (with a reason code) if it is not acceptable."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["EdDSA"],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token is for another audience", "TOKEN_WRONG_AUDIENCE") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token is from another issuer", "TOKEN_WRONG_ISSUER") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim", "TOKEN_MALFORMED") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("token signature does not verify", "TOKEN_FORGED") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"token is not acceptable: {exc}", "TOKEN_MALFORMED") from exc
        try:
            iat, nbf, exp = int(claims["iat"]), int(claims["nbf"]), int(claims["exp"])
        except (TypeError, ValueError) as exc:
            raise AuthError("token times are not integers", "TOKEN_MALFORMED") from exc
        sub, jti, cnf = claims["sub"], claims["jti"], claims["cnf"]
        if not isinstance(sub, str) or not _PRO.match(sub):
            raise AuthError("token subject is not a professional id", "TOKEN_MALFORMED")
        if not isinstance(cnf, dict) or not isinstance(cnf.get("jkt"), str):
            raise AuthError("token has no cnf.jkt key binding", "TOKEN_MALFORMED")
        if not isinstance(jti, str) or not 16 <= len(jti) <= 128:
            raise AuthError("token jti is missing or malformed", "TOKEN_MALFORMED")
        if exp - iat > self._max_lifetime:
            raise AuthError(
                f"token lifetime {exp - iat}s exceeds {self._max_lifetime}s", "TOKEN_TOO_LONG"
            )
        if now >= exp + self._leeway:
            raise AuthError("token has expired", "TOKEN_EXPIRED")
        if now + self._leeway < nbf or now + self._leeway < iat:
            raise AuthError("token is not valid yet", "TOKEN_NOT_YET_VALID")
        return Claims(sub, jti, cnf["jkt"], exp)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_message(
    method: str, target: str, body: bytes, timestamp: int, nonce: str, token: str
) -> bytes:
    """The bytes a professional signs for one request (``target`` = path and query)."""
    return _CONTEXT + "\n".join(
        [
            method.upper(),
            target,
            _sha256_hex(body),
            str(timestamp),
            nonce,
            _sha256_hex(token.encode("utf-8")),
        ]
    ).encode("utf-8")


def sign_request(
    key: SigningKey,
    method: str,
    target: str,
    body: bytes,
    token: str,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """The ``Unlock-Signature`` header value for one request."""
    stamp = int(time.time() if now is None else now)
    nonce = nonce or secrets.token_hex(16)
    sig = key.sign(request_message(method, target, body, stamp, nonce, token)).signature
    return f"t={stamp},n={nonce},s={base64.b64encode(sig).decode('ascii')}"


def verify_request_signature(
    header: str | None,
    public_key: bytes,
    method: str,
    target: str,
    body: bytes,
    token: str,
    now: float,
    window: int,
) -> str:
    """Check a request signature; return its nonce (the caller refuses a nonce seen before)."""
    if not header:
        raise AuthError(f"missing {SIGNATURE_HEADER} header", "SIGNATURE_MISSING")
    m = _HEADER.match(header.strip())
    if m is None:
        raise AuthError(
            f"{SIGNATURE_HEADER} must be 't=<unix>,n=<32 hex>,s=<base64 signature>'",
            "SIGNATURE_MALFORMED",
        )
    stamp, nonce = int(m.group(1)), m.group(2)
    if abs(now - stamp) > window:
        raise AuthError(
            f"request signature time is {int(now - stamp)}s from now (window {window}s)",
            "SIGNATURE_STALE",
        )
    try:
        signature = base64.b64decode(m.group(3), validate=True)
        VerifyKey(public_key).verify(
            request_message(method, target, body, stamp, nonce, token), signature
        )
    except (binascii.Error, BadSignatureError, ValueError) as exc:
        raise AuthError(
            "request signature does not verify with the professional's registered key",
            "SIGNATURE_INVALID",
        ) from exc
    return nonce
