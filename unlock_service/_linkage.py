"""Client of the linkage service: attestations, sealed blobs, subject-access searches.

The unlock service calls the linkage service with its own bearer token (role
``unlock_service`` there). Answers are parsed into the ``protocols`` wire
models; anything outside the contract (a status the contract does not name,
a body that is not the model) is a :class:`LinkageError`. The transport is
injectable so tests run against an in-process fake. No identity passes
through here: blobs are still sealed, subject queries are encodings.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from protocols import FamilyBlobs, SignedAttestation, SubjectAccessAnswer, SubjectQuery

from ._errors import LinkageError

__all__ = [
    "AttestationNotCurrent",
    "AttestationUnavailable",
    "LinkageClient",
    "SubjectQueryRefused",
]

_FAMILY = re.compile(r"^fam_[0-9a-f]{16,64}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_M = TypeVar("_M", bound=BaseModel)


class AttestationUnavailable(LinkageError):
    """The linkage service has no releasable attestation for the family (404 / 409)."""

    status = 403


class SubjectQueryRefused(LinkageError):
    """The linkage service refused the subject query as malformed (its 400 / 422)."""

    status = 400


class AttestationNotCurrent(LinkageError):
    """The linkage service no longer accepts the grant's attestation (409): a newer
    assessment superseded it, so the grant cannot be redeemed; ask again."""

    status = 409


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail[:200]
    return str(body)[:200]


class LinkageClient:
    """Talks to one linkage service with one bearer token. Thread-safe."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Requests go straight to the transport (its connection pool is shared by
        # every thread): two calls per unlock, and httpx.Client's per-request
        # work (URL merging, cookie jar, redirect and auth handling) cost more
        # CPU than the transport itself while this client needs none of it.
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._transport = transport or httpx.HTTPTransport()

    def close(self) -> None:
        """Close the connection pool."""
        self._transport.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        headers = self._headers
        if content is not None:
            headers = {**headers, "Content-Type": "application/json"}
        request = httpx.Request(
            method,
            self._base + path,
            params=params,
            headers=headers,
            content=content,
            extensions={"timeout": self._timeout},
        )
        try:
            response = self._transport.handle_request(request)
            response.request = request
            try:
                response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise LinkageError(f"cannot reach the linkage service: {type(exc).__name__}") from exc
        return response

    def _get(self, path: str, **params: str) -> httpx.Response:
        return self._send("GET", path, params=params or None)

    def attestation(self, family_id: str) -> SignedAttestation:
        """The family's current signed attestation."""
        if not _FAMILY.match(family_id):
            raise AttestationUnavailable(f"{family_id!r} is not a family id", "FAMILY_UNKNOWN")
        response = self._get(f"/families/{family_id}/attestation")
        if response.status_code == 404:
            raise AttestationUnavailable(
                f"the linkage service knows no family {family_id}: {_detail(response)}",
                "FAMILY_UNKNOWN",
            )
        if response.status_code == 410:
            # re-linking merged or split the family: the professional asks again for
            # the family it lives on as now (a different set of people, so a new request)
            raise AttestationUnavailable(
                f"family {family_id} was re-linked: {_detail(response)}; request the "
                "family it is now",
                "FAMILY_SUPERSEDED",
            )
        if response.status_code == 409:
            raise AttestationUnavailable(
                f"family {family_id} is not above the unlock threshold: {_detail(response)}",
                "BELOW_THRESHOLD",
            )
        return self._parse(response, SignedAttestation, f"attestation of {family_id}")

    def blobs(self, family_id: str, attestation_sha256: str) -> FamilyBlobs:
        """The sealed blobs of exactly the records the attestation names."""
        if not _FAMILY.match(family_id) or not _SHA.match(attestation_sha256):
            raise LinkageError("malformed family id or attestation hash")
        response = self._get(f"/families/{family_id}/blobs", attestation_sha256=attestation_sha256)
        if response.status_code == 409:
            raise AttestationNotCurrent(
                f"the linkage service does not accept attestation {attestation_sha256[:16]}… "
                f"for {family_id}: {_detail(response)}",
                "ATTESTATION_NOT_CURRENT",
            )
        return self._parse(response, FamilyBlobs, f"blobs of {family_id}")

    def subject_access(self, query: SubjectQuery) -> SubjectAccessAnswer:
        """What the linkage service holds about the person an encoded identity matches."""
        response = self._send(
            "POST", "/subject-access", content=query.model_dump_json().encode("utf-8")
        )
        if response.status_code in (400, 422):
            raise SubjectQueryRefused(
                f"the linkage service refused the subject query: {_detail(response)}",
                "SUBJECT_QUERY_REFUSED",
            )
        return self._parse(response, SubjectAccessAnswer, "subject-access answer")

    def restrictions(self) -> dict[str, str]:
        """The flags the linkage service enforces: family id -> kind."""
        response = self._get("/restrictions")
        if response.status_code != 200:
            raise LinkageError(
                f"the linkage service answered {response.status_code} for its restrictions: "
                f"{_detail(response)}"
            )
        try:
            rows = response.json()["restrictions"]
            return {str(r["family_id"]): str(r["kind"]) for r in rows}
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkageError("the linkage service's restrictions are malformed") from exc

    def restrict(self, family_id: str, kind: str | None) -> None:
        """Set (``kind``) or lift (None) a family's flag at the linkage service."""
        if kind is None:
            response = self._send("DELETE", f"/restrictions/{family_id}")
        else:
            body = json.dumps({"kind": kind}, separators=(",", ":")).encode("utf-8")
            response = self._send("PUT", f"/restrictions/{family_id}", content=body)
        lifted_already = kind is None and response.status_code == 404
        if response.status_code != 200 and not lifted_already:
            raise LinkageError(
                f"the linkage service answered {response.status_code} to the flag of "
                f"{family_id}: {_detail(response)}"
            )

    @staticmethod
    def _parse(response: httpx.Response, model: type[_M], what: str) -> _M:
        if response.status_code != 200:
            raise LinkageError(
                f"the linkage service answered {response.status_code} for the {what}: "
                f"{_detail(response)}"
            )
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise LinkageError(
                f"the linkage service's {what} is not a valid {model.__name__}: "
                f"{exc.errors()[0]['msg']}"
            ) from exc
