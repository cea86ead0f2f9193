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
from pydantic import TypeAdapter, ValidationError

from protocols import (
    RELEASE_FORMAT_V1,
    RELEASE_FORMAT_V2,
    IdentityPayload,
    ReleaseV1,
    ReleaseV2,
    SealedRelease,
    SecretFileError,
    SubjectQuery,
    check_private_file,
    write_private_file,
)

from ._auth import SIGNATURE_HEADER, sign_request
from ._errors import ConfigError, ReleaseError

__all__ = [
    "PROFESSIONAL_KEY_FORMAT",
    "UnlockClient",
    "describe_release",
    "generate_professional_key",
    "load_professional_key",
    "open_release",
    "open_release_body",
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


_RELEASE = TypeAdapter(SealedRelease)


def open_release_body(
    sealed_identities: str, key: SigningKey, request_id: str
) -> ReleaseV1 | ReleaseV2:
    """Open a release sealed to ``key``: v2 groups the records into people (v1 does not);
    ReleaseError if it does not open or is not the release of ``request_id``."""
    try:
        raw = SealedBox(key.to_curve25519_private_key()).decrypt(
            base64.b64decode(sealed_identities, validate=True)
        )
        body = json.loads(raw)
    except (CryptoError, binascii.Error, ValueError) as exc:
        raise ReleaseError("the release does not open with this key", "BAD_RELEASE") from exc
    if not isinstance(body, dict) or body.get("request_id") != request_id:
        raise ReleaseError(f"the release is not the one for {request_id}", "BAD_RELEASE")
    if body.get("format") not in (RELEASE_FORMAT_V1, RELEASE_FORMAT_V2):
        raise ReleaseError(
            f"the release's format {body.get('format')!r} is not one this client reads",
            "BAD_RELEASE",
        )
    try:
        return _RELEASE.validate_python(body)
    except ValidationError as exc:
        raise ReleaseError("the release's identities are malformed", "BAD_RELEASE") from exc


def open_release(sealed_identities: str, key: SigningKey, request_id: str) -> list[IdentityPayload]:
    """Open a release sealed to ``key``: its identities (either format), ungrouped;
    ReleaseError if it is not for this request. :func:`open_release_body` gives the people."""
    return list(open_release_body(sealed_identities, key, request_id).identities)


def describe_release(release: ReleaseV1 | ReleaseV2) -> str:
    """The release as text, one block per person with the agencies that knew them.

    A v1 release has no person ids: each record is its own block.
    """
    lines = [f"family {release.family_id}  request {release.request_id}"]
    groups: list[tuple[str | None, list[IdentityPayload]]]
    if isinstance(release, ReleaseV1):
        lines.append(f"{len(release.identities)} agency records (not grouped into people)")
        groups = [(None, [i]) for i in release.identities]
    else:
        agencies = {r.identity.agency_id for r in release.records}
        lines.append(
            f"{len(release.people)} people in {len(release.records)} agency records "
            f"from {len(agencies)} agencies"
        )
        groups = [(p.person_id, ids) for p, ids in release.person_identities()]
    for n, (person_id, identities) in enumerate(groups, 1):
        known = ", ".join(sorted({i.agency_id for i in identities}))
        head = f"person {n}" + (f" ({person_id})" if person_id else "")
        lines.append(f"\n{head}: known to {known}")
        for ident in identities:
            lines.append(
                f"  {ident.agency_id} record {ident.record_ref} (system id {ident.system_id})"
            )
            lines.extend(f"    {line}" for line in _identity_lines(ident))
    return "\n".join(lines) + "\n"


def _identity_lines(ident: IdentityPayload) -> list[str]:
    name = " ".join(x for x in (ident.given_names, ident.family_name) if x)
    out = []
    if name:
        out.append(f"name: {name}")
    if ident.former_family_names:
        out.append(f"former family names: {ident.former_family_names}")
    if ident.date_of_birth is not None:
        out.append(f"date of birth: {ident.date_of_birth.isoformat()}")
    if ident.sex:
        out.append(f"sex: {ident.sex}")
    address = ", ".join([*ident.address_lines, *([ident.postcode] if ident.postcode else [])])
    if address:
        out.append(f"address: {address}")
    for label, value in (
        ("NHS number", ident.nhs_number),
        ("NI number", ident.ni_number),
        ("UPN", ident.upn),
    ):
        if value:
            out.append(f"{label}: {value}")
    out.extend(f"{k}: {v}" for k, v in sorted(ident.local_identifiers.items()))
    return out


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

    def approvals(self) -> httpx.Response:
        """The pending requests we may approve."""
        return self.call("GET", "/approvals")

    def requests(self, limit: int = 50, before: str | None = None) -> httpx.Response:
        """Our own requests, newest first (``before``: the ``next_before`` of the last page)."""
        params = httpx.QueryParams({"limit": limit, **({"before": before} if before else {})})
        return self.call("GET", f"/unlocks?{params}")

    def request(self, request_id: str) -> httpx.Response:
        """Where one request stands."""
        return self.call("GET", f"/unlocks/{request_id}")

    def release(self, request_id: str) -> httpx.Response:
        """Redeem a grant (after approval)."""
        return self.call("POST", f"/unlocks/{request_id}/release")

    def subject_access(self, query: SubjectQuery) -> httpx.Response:
        """Run a subject access search (IG officers); the identities come sealed to our key."""
        return self.call("POST", "/subject-access", query.model_dump(mode="json"))
