"""The professional's side: a key file, signed requests, and opening a release.

A professional holds one Ed25519 key (a 0600 JSON file written by
:func:`generate_professional_key`); the administrator registers its public
half. :class:`UnlockClient` signs every request with it (see
:mod:`unlock_service._auth`) and :func:`open_release` opens the identities
sealed to its X25519 form. The transport is injectable so tests run in-process.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey
from pydantic import ValidationError

from protocols import (
    IdentityPayload,
    SecretFileError,
    SubjectQuery,
    check_private_file,
    write_private_file,
)

from ._auth import SIGNATURE_HEADER, sign_request
from ._errors import ConfigError, ReleaseError
from ._release import RELEASE_FORMAT

__all__ = [
    "PROFESSIONAL_KEY_FORMAT",
    "UnlockClient",
    "generate_professional_key",
    "load_professional_key",
    "open_release",
]

PROFESSIONAL_KEY_FORMAT = "family-linkage/professional-key/v1"


def generate_professional_key(path: Path) -> SigningKey:
    """Create a professional's key file (0600, never overwritten); the key."""
    key = SigningKey.generate()
    data = {
        "format": PROFESSIONAL_KEY_FORMAT,
        "signing_seed": base64.b64encode(bytes(key)).decode("ascii"),
        "public_key": base64.b64encode(bytes(key.verify_key)).decode("ascii"),
    }
    try:
        write_private_file(path, json.dumps(data, indent=2) + "\n")
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    return key


def load_professional_key(path: Path) -> SigningKey:
    """Read a professional's key file (refused if group/world readable)."""
    try:
        check_private_file(path, "professional key file")
        data = json.loads(path.read_text(encoding="utf-8"))
        seed = base64.b64decode(data["signing_seed"], validate=True)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{path} is not a professional key file: {exc}") from exc
    if data.get("format") != PROFESSIONAL_KEY_FORMAT or len(seed) != 32:
        raise ConfigError(f"{path} is not a {PROFESSIONAL_KEY_FORMAT} file")
    return SigningKey(seed)


def open_release(sealed_identities: str, key: SigningKey, request_id: str) -> list[IdentityPayload]:
    """Open a release sealed to ``key``; ReleaseError if it is not for this request."""
    try:
        raw = SealedBox(key.to_curve25519_private_key()).decrypt(
            base64.b64decode(sealed_identities, validate=True)
        )
        body = json.loads(raw)
    except (CryptoError, binascii.Error, ValueError) as exc:
        raise ReleaseError("the release does not open with this key", "BAD_RELEASE") from exc
    if body.get("format") != RELEASE_FORMAT or body.get("request_id") != request_id:
        raise ReleaseError(f"the release is not the one for {request_id}", "BAD_RELEASE")
    try:
        return [IdentityPayload.model_validate(item) for item in body["identities"]]
    except (ValidationError, KeyError, TypeError) as exc:
        raise ReleaseError("the release's identities are malformed", "BAD_RELEASE") from exc


class UnlockClient:
    """Signed requests to the unlock service for one professional."""

    def __init__(
        self,
        base_url: str,
        key: SigningKey,
        token: str | Callable[[], str],
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._key = key
        self._token = token
        self._clock = clock
        # ``http``: an existing client (a FastAPI TestClient in tests).
        self._http = http or httpx.Client(
            base_url=base_url.rstrip("/"), transport=transport, timeout=timeout
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> UnlockClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One signed request (``body`` is sent as JSON)."""
        content = b"" if body is None else json.dumps(body).encode("utf-8")
        token = self._token() if callable(self._token) else self._token
        request = self._http.build_request(method, path, content=content)
        target = request.url.raw_path.decode("ascii")
        headers = {
            "Authorization": f"Bearer {token}",
            SIGNATURE_HEADER: sign_request(
                self._key,
                method,
                target,
                content,
                token,
                now=None if self._clock is None else self._clock(),
            ),
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        request.headers.update(headers)
        return self._http.send(request)

    def unlock(
        self, family_id: str, purpose_code: str, justification: str, break_glass: bool = False
    ) -> httpx.Response:
        """Ask for a family's identities."""
        return self.call(
            "POST",
            "/unlocks",
            {
                "family_id": family_id,
                "purpose_code": purpose_code,
                "justification": justification,
                "break_glass": break_glass,
            },
        )

    def approve(self, request_id: str, approve: bool = True) -> httpx.Response:
        """Approve (or decline) another professional's pending request."""
        return self.call(
            "POST",
            f"/unlocks/{request_id}/approvals",
            {"decision": "approve" if approve else "decline"},
        )

    def release(self, request_id: str) -> httpx.Response:
        """Redeem a grant (after approval)."""
        return self.call("POST", f"/unlocks/{request_id}/release")

    def subject_access(self, query: SubjectQuery) -> httpx.Response:
        """Run a subject access search (IG officers); the identities come sealed to our key."""
        return self.call("POST", "/subject-access", query.model_dump(mode="json"))
