"""Builders for unlock-service tests: keys, a policy, a fake linkage service, identities.

The fake linkage service implements the contract the unlock service relies on
(``GET /families/{id}/attestation``, ``GET /families/{id}/blobs``, ``POST
/subject-access``) over an in-memory table, signing attestations with its own
Ed25519 key and sealing identities with the agency client's real sealer.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.public import PublicKey
from nacl.signing import SigningKey

from protocols import (
    Attestation,
    AttestedMember,
    FamilyBlobs,
    IdentitySealer,
    SealedBlob,
    SignedAttestation,
    attestation_message,
    attestation_sha256,
    identity_bytes,
    key_id,
)

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # a Monday morning
PAD = 512

POLICY = """\
[policy]
name = "test-policy"
version = "1.2.0"

[justification]
min_chars = 10
max_chars = 200

[attestation]
max_age_days = 30

[grants]
ttl_seconds = 600
approval_wait_seconds = 3600

[rate_limit]
max_requests = 5
window_seconds = 3600

[approval]
required = 1
clearance_gap = 1

[break_glass]
max_uses = 2
window_seconds = 86400
cooldown_seconds = 60
clearance_gap = 1
review_days = 2

[roles.admin]
admin = true

[roles.social_worker]
request = true

[roles.team_manager]
request = true
approve = true

[roles.ig_officer]
review = true
restrict = true
subject_access = true

[purposes.SAFEGUARDING]
description = "Child safeguarding enquiry"
roles = ["social_worker", "team_manager"]

[purposes.CASE_ALLOCATION]
description = "Allocating a key worker to the family"
roles = ["social_worker", "team_manager"]
approval = true

[purposes.EMERGENCY]
description = "Immediate risk of harm"
roles = ["social_worker", "team_manager"]
break_glass = true
"""

# Synthetic identities: none of these is a real person.
IDENTITIES = [
    {
        "given_names": "Ottoline",
        "family_name": "Quarrington",
        "date_of_birth": "2011-04-17",
        "sex": "F",
        "address_lines": ["17 Wexcombe Lane"],
        "postcode": "ZZ9 4QT",
        "nhs_number": "9434765919",
    },
    {
        "given_names": "Barnaby",
        "family_name": "Quarrington",
        "date_of_birth": "1983-11-02",
        "sex": "M",
        "address_lines": ["17 Wexcombe Lane"],
        "postcode": "ZZ9 4QT",
    },
    {
        "given_names": "Persephone",
        "family_name": "Ilsworth",
        "date_of_birth": "2014-07-30",
        "sex": "F",
        "address_lines": ["3 Marrowgate Close"],
        "postcode": "ZZ1 7HD",
    },
]
# Strings a leak check searches for (every distinctive value above).
NEEDLES = ["Ottoline", "Quarrington", "Barnaby", "Persephone", "Ilsworth", "Wexcombe",
           "Marrowgate", "2011-04-17", "1983-11-02", "2014-07-30", "ZZ9 4QT", "ZZ1 7HD",
           "9434765919"]  # fmt: skip


def hexid(prefix: str, rng: random.Random, n: int = 16) -> str:
    """A pseudonymous id from the seeded ``rng``."""
    return f"{prefix}_{rng.getrandbits(4 * n):0{n}x}"


def b64(raw: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(raw).decode("ascii")


@dataclass
class Family:
    """One family the fake linkage service knows."""

    family_id: str
    signed: SignedAttestation | None  # None: below threshold (409)
    blobs: list[SealedBlob]


@dataclass
class FakeLinkage:
    """The linkage service's side of the contract, in memory."""

    key: SigningKey
    rng: random.Random
    families: dict[str, Family] = field(default_factory=dict)
    # what POST /subject-access answers: a body (the wire model, or anything to
    # test the contract) and its status
    subject_answer: Any = None
    subject_status: int = 200
    calls: list[str] = field(default_factory=list)
    down: bool = False
    superseded: dict[str, list[str]] = field(default_factory=dict)  # retired id -> now
    restrictions: dict[str, str] = field(default_factory=dict)  # flags it was told of
    token: str = "linkage-token-for-unlock-service-0123456789"

    def attest(
        self,
        family_id: str,
        members: list[tuple[str, str]],
        *,
        clearance: int = 3,
        assessed: dt.datetime = T0 - dt.timedelta(days=1),
        key: SigningKey | None = None,
        about: str | None = None,
        tamper: bool = False,
        cycle: int = 4,
        persons: list[int] | None = None,
    ) -> SignedAttestation:
        """A signed attestation of ``members`` ((agency id, record ref) pairs); ``persons``
        gives each member's person number (members with one number are one person;
        default: each member its own person)."""
        signing = key or self.key
        numbers = persons if persons is not None else list(range(len(members)))
        person_ids = {n: hexid("per", self.rng) for n in sorted(set(numbers))}
        att = Attestation(
            attestation_id=hexid("att", self.rng, 32),
            family_id=about or family_id,
            members=tuple(
                AttestedMember(person_id=person_ids[n], agency_id=a, record_ref=r)
                for (a, r), n in zip(members, numbers, strict=True)
            ),
            score=7.5,
            threshold=5.0,
            clearance_required=clearance,
            ruleset_name="supporting-families",
            ruleset_version="1.0",
            ruleset_sha256="a" * 64,
            model_name="risk",
            model_version="2.1",
            model_sha256="b" * 64,
            cycle_id=cycle,
            assessed_at=assessed,
            issued_at=assessed,
            key_id=key_id(bytes(signing.verify_key)),
        )
        signature = signing.sign(attestation_message(att)).signature
        if tamper:
            att = att.model_copy(update={"clearance_required": 0})
        return SignedAttestation(attestation=att, signature=b64(signature))

    def handler(self, request: httpx.Request) -> httpx.Response:
        """The MockTransport handler."""
        self.calls.append(f"{request.method} {request.url.path}")
        if self.down:
            raise httpx.ConnectError("linkage service down", request=request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"detail": "bad token"})
        parts = request.url.path.strip("/").split("/")
        if parts[0] == "restrictions":
            if request.method == "GET" and len(parts) == 1:
                rows = [{"family_id": f, "kind": k} for f, k in sorted(self.restrictions.items())]
                return httpx.Response(200, json={"restrictions": rows})
            if request.method == "PUT" and len(parts) == 2:
                self.restrictions[parts[1]] = json.loads(request.content)["kind"]
                return httpx.Response(200, json={"family_id": parts[1]})
            if request.method == "DELETE" and len(parts) == 2:
                if self.restrictions.pop(parts[1], None) is None:
                    return httpx.Response(404, json={"detail": "no restriction"})
                return httpx.Response(200, json={"family_id": parts[1]})
        if request.method == "POST" and parts == ["subject-access"]:
            json.loads(request.content)  # must be JSON
            body = self.subject_answer
            if hasattr(body, "model_dump_json"):
                return httpx.Response(self.subject_status, content=body.model_dump_json())
            return httpx.Response(self.subject_status, json=body)
        if len(parts) != 3 or parts[0] != "families":
            return httpx.Response(404, json={"detail": "no route"})
        if parts[1] in self.superseded:
            now = self.superseded[parts[1]]
            return httpx.Response(
                410,
                json={"detail": f"family {parts[1]} was merged; it is now {now}", "current": now},
            )
        family = self.families.get(parts[1])
        if family is None:
            return httpx.Response(404, json={"detail": f"no family {parts[1]}"})
        if family.signed is None:
            return httpx.Response(409, json={"detail": "below the unlock threshold"})
        if parts[2] == "attestation":
            return httpx.Response(200, content=family.signed.model_dump_json())
        sha = request.url.params.get("attestation_sha256")
        if sha != attestation_sha256(family.signed.attestation):
            return httpx.Response(409, json={"detail": "not an attestation of this family"})
        body = FamilyBlobs(
            family_id=family.family_id, attestation_sha256=sha, blobs=tuple(family.blobs)
        )
        return httpx.Response(200, content=body.model_dump_json())

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake."""
        return httpx.MockTransport(self.handler)


def seal_identity(
    seal_public: bytes, agency_id: str, record_ref: str, identity: dict[str, Any]
) -> str:
    """Seal one identity exactly as the agency client does."""
    payload = {
        "format": "family-linkage/identity/v1",
        "agency_id": agency_id,
        "extract_id": "e" * 32,
        "record_ref": record_ref,
        "system_id": f"SYS-{record_ref[:6]}",
        **identity,
    }
    sealer = IdentitySealer(PublicKey(seal_public), PAD)
    return b64(sealer.seal(identity_bytes(payload)))


def ed25519_seed_key(rng: random.Random) -> tuple[Ed25519PrivateKey, bytes]:
    """An issuer key from the seeded rng, and its raw public key."""
    seed = rng.randbytes(32)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sha(text: str) -> str:
    """SHA-256 hex of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


Clock = Callable[[], dt.datetime]
