"""The unlock flow: authenticate, decide, log, and only then release.

:class:`UnlockService` owns the order of events, which is the point of the
service:

1. authenticate the professional (token, key binding, request signature,
   fresh nonce) — :meth:`UnlockService.authenticate`;
2. record the request and gather the facts (rate count, restriction flag,
   the family's attestation, verified against the pinned linkage key);
3. ask the policy (:func:`unlock_service._policy.decide`);
4. append the request and the decision to the audit log, and wait until the
   append is durable. If the append fails, the request is marked
   ``audit_failed`` and nothing is released;
5. only on a grant, and only once (the grant is claimed atomically and
   expires), fetch the attested blobs, open them, check each against its
   record, seal them to the professional's key, and return them with the
   audit receipt (a C2SP tlog-proof) of the decision.

Approvals, break-glass reviews, restriction flags and IG reads go through the
same discipline: audit entry first, then the state change or the answer.
Plain identities exist only inside :meth:`UnlockService.release`, between
opening the blobs and sealing them again; they are never stored, logged or
put in an error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

from nacl.signing import VerifyKey
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from audit_log import (
    Approval,
    AuditLog,
    AuditLogError,
    BreakGlass,
    Decision,
    Entry,
    IgAccess,
    Restriction,
    Review,
    UnlockRequest,
)
from protocols import SignedAttestation, SubjectQuery, attestation_sha256, canonical_json

from . import _store as store
from ._auth import TokenVerifier, jwk_thumbprint, verify_request_signature
from ._errors import (
    AuditUnavailable,
    AuthError,
    Conflict,
    Forbidden,
    LinkageError,
    NotFound,
    Refused,
    StorageError,
    UnlockError,
)
from ._linkage import AttestationUnavailable, LinkageClient
from ._policy import (
    ApproverFacts,
    AttestationCheck,
    Facts,
    Outcome,
    Policy,
    check_approver,
    decide,
    precheck,
    restriction_reason,
)
from ._release import (
    AttestationRefused,
    SealKeyring,
    open_family,
    seal_release,
    verify_attestation,
)
from ._store import Professional, RequestRow

__all__ = ["NO_ATTESTATION", "Pending", "Release", "UnlockService", "micros", "utcnow"]

_logger = logging.getLogger("unlock_service")
# Stands in for the attestation hash in entries about requests refused before
# any attestation was fetched (the entry field is mandatory).
NO_ATTESTATION = "0" * 64
FLAGS = ("OPT_OUT", "RESTRICTED")
MAX_NOTES_CHARS = 4000
_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,31}")


def utcnow() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


def micros(when: dt.datetime) -> int:
    """Microseconds since the Unix epoch."""
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Release:
    """A released family: identities sealed to the professional, and the decision's receipt."""

    request_id: str
    family_id: str
    sealed_identities: str
    identity_count: int
    audit_index: int
    leaf: str
    receipt: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"status": "released", **self.__dict__}


@dataclass(frozen=True)
class Pending:
    """A request waiting for a second person's approval."""

    request_id: str
    reason: str
    expires_at: int
    audit_index: int

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"status": "awaiting_approval", **self.__dict__}


class UnlockService:
    """The unlock flow over one database, one audit log and one linkage service."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        policy: Policy,
        keyring: SealKeyring,
        linkage: LinkageClient,
        linkage_key: VerifyKey,
        tokens: TokenVerifier,
        request_window: int = 60,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.policy = policy
        self.keyring = keyring
        self.linkage = linkage
        self._linkage_key = linkage_key
        self._tokens = tokens
        self._window = request_window
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- authentication -----------------------------------------------------------------

    def authenticate(
        self,
        method: str,
        target: str,
        body: bytes,
        authorization: str | None,
        signature: str | None,
    ) -> Professional:
        """The professional a signed request comes from; AuthError with a reason otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing bearer token", "TOKEN_MISSING")
        now = self._clock()
        claims = self._tokens.verify(token, now.timestamp())
        with store.reading(self.engine) as conn:
            pro = store.get_professional(conn, claims.professional_id)
        if pro is None:
            raise AuthError("the token's professional is not registered", "UNKNOWN_PROFESSIONAL")
        if not pro.active:
            raise AuthError("the professional is deactivated", "PROFESSIONAL_INACTIVE")
        if claims.thumbprint != jwk_thumbprint(pro.public_key):
            raise AuthError(
                "the token is bound to a key that is not the professional's registered key",
                "TOKEN_KEY_MISMATCH",
            )
        nonce = verify_request_signature(
            signature, pro.public_key, method, target, body, token, now.timestamp(), self._window
        )
        expires = micros(now) + 2 * self._window * 1_000_000
        if not store.use_nonce(self.engine, nonce, pro.professional_id, expires):
            raise AuthError("this request was already made (nonce seen before)", "REPLAYED")
        return pro

    def purge_nonces(self) -> int:
        """Forget nonces older than the signature window."""
        return store.purge_nonces(self.engine, micros(self._clock()))

    # -- helpers ------------------------------------------------------------------------

    @contextmanager
    def _admission(self, professional_id: str) -> Iterator[None]:
        # Serialise one professional's admissions in this process so two
        # concurrent requests cannot both squeeze under the rate limit.
        with self._locks_guard:
            lock = self._locks.setdefault(professional_id, threading.Lock())
        with lock:
            yield

    def _append(self, entries: Sequence[Entry], request_id: str | None = None) -> list[int]:
        try:
            return [a.index for a in self.audit.append_many(entries)]
        except AuditLogError as exc:
            _logger.error(
                "audit append failed; nothing released",
                extra={"request_id": request_id, "error": type(exc).__name__},
            )
            if request_id is not None:
                try:
                    with store.transaction(self.engine) as conn:
                        store.update_request(
                            conn,
                            request_id,
                            status="audit_failed",
                            reason_code="AUDIT_UNAVAILABLE",
                        )
                except StorageError:
                    pass  # the request stays "evaluating", which releases nothing either
            raise AuditUnavailable(
                "the decision could not be written to the audit log, so nothing was released"
            ) from exc

    def _check_attestation(
        self, family_id: str, now: dt.datetime
    ) -> tuple[AttestationCheck, SignedAttestation | None, str]:
        try:
            signed = self.linkage.attestation(family_id)
        except AttestationUnavailable as exc:
            return AttestationCheck(exc.reason), None, NO_ATTESTATION
        except LinkageError:
            return AttestationCheck("LINKAGE_UNAVAILABLE"), None, NO_ATTESTATION
        return self._verify(signed, family_id, now)

    def _verify(
        self,
        signed: SignedAttestation,
        family_id: str,
        now: dt.datetime,
        latest_cycle: int | None = None,
    ) -> tuple[AttestationCheck, SignedAttestation | None, str]:
        sha = attestation_sha256(signed.attestation)
        days = self.policy.rules.attestation.max_age_days
        max_age = None if days is None else dt.timedelta(days=days)
        try:
            att = verify_attestation(
                signed, self._linkage_key, family_id, max_age, now, latest_cycle=latest_cycle
            )
        except AttestationRefused as exc:
            return AttestationCheck(exc.reason), signed, sha
        return AttestationCheck(None, att.clearance_required), signed, sha

    def _decision(
        self, row: RequestRow, outcome: Outcome, now: dt.datetime, reason: str | None = None
    ) -> Decision:
        return Decision(
            time=now,
            request_id=row.request_id,
            professional_id=row.professional_id,
            family_id=row.family_id,
            purpose_code=_code(row.purpose_code),
            decision="granted" if outcome.granted else "refused",
            reason_code=reason or outcome.reason,
            policy_sha256=self.policy.sha256,
            policy_version=self.policy.version,
            break_glass=outcome.break_glass,
        )

    # -- requesting -----------------------------------------------------------------------

    def request_unlock(
        self,
        pro: Professional,
        family_id: str,
        purpose_code: str,
        justification: str,
        *,
        break_glass: bool = False,
    ) -> Release | Pending:
        """Decide on a request, log it, and release on a grant; Refused on a refusal."""
        # One professional's requests are decided one at a time (in this
        # process), so the rate count cannot be raced past the limit.
        with self._admission(pro.professional_id):
            row, outcome = self._decide_and_log(
                pro, family_id, purpose_code, justification, break_glass
            )
        _logger.info(
            "unlock decision",
            extra={
                "request_id": row.request_id,
                "professional_id": pro.professional_id,
                "family_id": family_id,
                "decision": row.status,
                "reason": outcome.reason,
            },
        )
        if outcome.kind == "refuse":
            raise Refused(
                f"request {row.request_id} refused: {outcome.reason}",
                outcome.reason,
                request_id=row.request_id,
                audit_index=row.decision_index,
            )
        if outcome.kind == "pending":
            assert row.expires_at is not None and row.request_index is not None
            return Pending(row.request_id, outcome.reason, row.expires_at, row.request_index)
        return self._deliver(pro, row)

    def _decide_and_log(
        self,
        pro: Professional,
        family_id: str,
        purpose_code: str,
        justification: str,
        break_glass: bool,
    ) -> tuple[RequestRow, Outcome]:
        now = self._clock()
        now_us = micros(now)
        request_id = "req_" + secrets.token_hex(16)
        rules = self.policy.rules
        window_us = rules.rate_limit.window_seconds * 1_000_000
        with store.reading(self.engine) as conn:
            recent = store.count_recent_requests(
                conn, pro.professional_id, now_us - window_us, now_us + 1
            )
            flag = store.restriction(conn, family_id)
        facts = Facts(
            professional_id=pro.professional_id,
            role=pro.role,
            clearance=pro.clearance,
            active=pro.active,
            purpose_code=purpose_code,
            justification_chars=len(justification),
            recent_requests=recent,
            restriction=flag,
            attestation=None,
            break_glass=break_glass,
        )
        outcome = precheck(self.policy, facts)
        signed: SignedAttestation | None = None
        sha = NO_ATTESTATION
        if outcome is None:
            check, signed, sha = self._check_attestation(family_id, now)
            outcome = decide(self.policy, replace(facts, attestation=check))
        justification_sha = _sha256(justification)
        values: dict[str, Any] = {
            "request_id": request_id,
            "professional_id": pro.professional_id,
            "family_id": family_id,
            "purpose_code": _code(purpose_code),
            "justification_sha256": justification_sha,
            "attestation_sha256": sha,
            "attestation_json": None if signed is None else signed.model_dump_json(),
            "clearance_required": (
                None if signed is None else signed.attestation.clearance_required
            ),
            "break_glass": break_glass,
            "created_at": now_us,
        }
        entries: list[Entry] = [
            UnlockRequest(
                time=now,
                request_id=request_id,
                professional_id=pro.professional_id,
                family_id=family_id,
                purpose_code=_code(purpose_code),
                attestation_sha256=sha,
                justification_sha256=justification_sha,
            )
        ]
        if outcome.break_glass:
            entries.append(
                BreakGlass(
                    time=now,
                    request_id=request_id,
                    professional_id=pro.professional_id,
                    family_id=family_id,
                    purpose_code=_code(purpose_code),
                    justification_sha256=justification_sha,
                )
            )
        if outcome.kind != "pending":
            entries.append(
                Decision(
                    time=now,
                    request_id=request_id,
                    professional_id=pro.professional_id,
                    family_id=family_id,
                    purpose_code=_code(purpose_code),
                    decision="granted" if outcome.granted else "refused",
                    reason_code=outcome.reason,
                    policy_sha256=self.policy.sha256,
                    policy_version=self.policy.version,
                    break_glass=outcome.break_glass,
                )
            )
        try:
            indexes = [a.index for a in self.audit.append_many(entries)]
        except AuditLogError as exc:
            _logger.error(
                "audit append failed; nothing released",
                extra={"request_id": request_id, "error": type(exc).__name__},
            )
            with store.transaction(self.engine) as conn:
                # recorded (so it counts against the rate limit), never granted
                store.insert_request(
                    conn, status="audit_failed", reason_code="AUDIT_UNAVAILABLE", **values
                )
            raise AuditUnavailable(
                "the decision could not be written to the audit log, so nothing was released"
            ) from exc
        # A grant made here is redeemed by this same call: it is stored
        # already claimed ("releasing"), so nobody else can redeem it.
        status = {"grant": "releasing", "refuse": "refused", "pending": "pending"}[outcome.kind]
        if outcome.granted:
            expires: int | None = now_us + rules.grants.ttl_seconds * 1_000_000
        elif outcome.kind == "pending":
            expires = now_us + rules.grants.approval_wait_seconds * 1_000_000
        else:
            expires = None
        values.update(
            status=status,
            reason_code=outcome.reason,
            decided_at=None if outcome.kind == "pending" else now_us,
            expires_at=expires,
            released_at=None,
            request_index=indexes[0],
            decision_index=None if outcome.kind == "pending" else indexes[-1],
        )
        with store.transaction(self.engine) as conn:
            store.insert_request(conn, **values)
            if outcome.break_glass:
                store.insert_review(
                    conn,
                    request_id=request_id,
                    professional_id=pro.professional_id,
                    family_id=family_id,
                    purpose_code=_code(purpose_code),
                    opened_at=now_us,
                    due_at=now_us + (outcome.review_days or 1) * 86_400 * 1_000_000,
                    audit_index=indexes[-1],
                )
        return RequestRow(**values), outcome

    # -- approving ------------------------------------------------------------------------

    def approve(self, approver: Professional, request_id: str, approve: bool) -> dict[str, Any]:
        """A second person's answer to a pending request; the request's new state."""
        now = self._clock()
        now_us = micros(now)
        with store.reading(self.engine) as conn:
            row = store.get_request(conn, request_id)
            answered = dict(store.approvals_for(conn, request_id))
        if row.status != "pending":
            raise Conflict(f"request {request_id} is {row.status}, not pending", "NOT_PENDING")
        if row.expires_at is not None and row.expires_at <= now_us:
            self._expire(request_id)
            raise Conflict(f"request {request_id} expired unapproved", "REQUEST_EXPIRED", 410)
        if approver.professional_id in answered:
            raise Conflict(f"you already answered request {request_id}", "ALREADY_ANSWERED")
        facts = ApproverFacts(
            approver.professional_id, approver.role, approver.clearance, approver.active
        )
        problem = check_approver(
            self.policy, row.professional_id, facts, row.clearance_required or 0
        )

        def approval(decision: Literal["granted", "refused"], reason: str) -> Approval:
            return Approval(
                time=now,
                request_id=request_id,
                professional_id=row.professional_id,
                approver_id=approver.professional_id,
                family_id=row.family_id,
                decision=decision,
                reason_code=reason,
            )

        if problem is not None:
            (index,) = self._append([approval("refused", problem)])
            _logger.warning(
                "approval refused",
                extra={
                    "request_id": request_id,
                    "professional_id": approver.professional_id,
                    "reason": problem,
                },
            )
            raise Refused(
                f"{approver.professional_id} may not approve request {request_id}: {problem}",
                problem,
                request_id=request_id,
                audit_index=index,
            )
        if not approve:
            refused = Outcome("refuse", "APPROVAL_DECLINED")
            indexes = self._append(
                [approval("refused", "APPROVAL_DECLINED"), self._decision(row, refused, now)]
            )
            with store.transaction(self.engine) as conn:
                store.insert_approval(
                    conn,
                    request_id=request_id,
                    approver_id=approver.professional_id,
                    decision="refused",
                    reason_code="APPROVAL_DECLINED",
                    created_at=now_us,
                    audit_index=indexes[0],
                )
                store.update_request(
                    conn,
                    request_id,
                    from_status=["pending"],
                    status="refused",
                    reason_code="APPROVAL_DECLINED",
                    decided_at=now_us,
                    decision_index=indexes[-1],
                    expires_at=None,
                )
            return {"request_id": request_id, "status": "refused", "reason": "APPROVAL_DECLINED"}
        outcome = self._reevaluate(row, answered, facts, now)
        entries: list[Entry] = [approval("granted", "APPROVED")]
        if outcome.kind != "pending":
            entries.append(self._decision(row, outcome, now))
        indexes = self._append(entries)
        status = {"grant": "granted", "refuse": "refused", "pending": "pending"}[outcome.kind]
        with store.transaction(self.engine) as conn:
            store.insert_approval(
                conn,
                request_id=request_id,
                approver_id=approver.professional_id,
                decision="granted",
                reason_code="APPROVED",
                created_at=now_us,
                audit_index=indexes[0],
            )
            if outcome.kind != "pending":
                store.update_request(
                    conn,
                    request_id,
                    from_status=["pending"],
                    status=status,
                    reason_code=outcome.reason,
                    decided_at=now_us,
                    decision_index=indexes[-1],
                    expires_at=(
                        now_us + self.policy.rules.grants.ttl_seconds * 1_000_000
                        if outcome.granted
                        else None
                    ),
                )
        return {"request_id": request_id, "status": status, "reason": outcome.reason}

    def _reevaluate(
        self,
        row: RequestRow,
        answered: dict[str, str],
        new: ApproverFacts,
        now: dt.datetime,
    ) -> Outcome:
        # Everything is checked again at approval time: the requester may have
        # been deactivated, the family flagged, or the attestation gone stale.
        rules = self.policy.rules
        with store.reading(self.engine) as conn:
            requester = store.get_professional(conn, row.professional_id)
            flag = store.restriction(conn, row.family_id)
            recent = store.count_recent_requests(
                conn,
                row.professional_id,
                row.created_at - rules.rate_limit.window_seconds * 1_000_000,
                row.created_at,
            )
            approvers = [new]
            for approver_id, decision in answered.items():
                other = store.get_professional(conn, approver_id)
                if decision == "granted" and other is not None:
                    approvers.append(
                        ApproverFacts(approver_id, other.role, other.clearance, other.active)
                    )
        if requester is None or row.attestation_json is None:
            return Outcome("refuse", "ATTESTATION_MISSING")
        signed = SignedAttestation.model_validate_json(row.attestation_json)
        # fresh while its cycle is the latest: the family must still be attested now
        check, latest, _ = self._check_attestation(row.family_id, now)
        if check.reason is None and latest is not None:
            cycle = latest.attestation.cycle_id
            check, _, _ = self._verify(signed, row.family_id, now, latest_cycle=cycle)
        facts = Facts(
            professional_id=requester.professional_id,
            role=requester.role,
            clearance=requester.clearance,
            active=requester.active,
            purpose_code=row.purpose_code,
            # the justification was checked at request time and only its hash is kept
            justification_chars=self.policy.rules.justification.min_chars,
            recent_requests=recent,
            restriction=flag,
            attestation=check,
            approvals=tuple(approvers),
        )
        return decide(self.policy, facts)

    def _expire(self, request_id: str) -> None:
        with store.transaction(self.engine) as conn:
            store.update_request(
                conn, request_id, from_status=["pending", "granted"], status="expired"
            )

    # -- releasing ------------------------------------------------------------------------

    def release(self, pro: Professional, request_id: str) -> Release:
        """Redeem a grant (once, before it expires): the sealed identities and the receipt."""
        now = self._clock()
        now_us = micros(now)
        with store.reading(self.engine) as conn:
            row = store.get_request(conn, request_id)
            flag = store.restriction(conn, row.family_id)
        if row.professional_id != pro.professional_id:
            raise Forbidden(
                f"request {request_id} was made by another professional", "NOT_REQUESTER"
            )
        if row.status == "released":
            raise Conflict(f"the grant of request {request_id} was already used", "GRANT_USED")
        if row.status != "granted":
            raise Conflict(f"request {request_id} is {row.status}, not granted", "NOT_GRANTED")
        if row.expires_at is None or row.expires_at <= now_us:
            self._expire(request_id)
            raise Conflict(f"the grant of request {request_id} has expired", "GRANT_EXPIRED", 410)
        if flag is not None:
            # Flags are checked in real time: one set after the grant still stops it.
            reason = restriction_reason(flag)
            (index,) = self._append(
                [self._decision(row, Outcome("refuse", reason), now)], request_id
            )
            with store.transaction(self.engine) as conn:
                store.update_request(
                    conn,
                    request_id,
                    from_status=["granted"],
                    status="refused",
                    reason_code=reason,
                    decision_index=index,
                )
            raise Refused(
                f"family {row.family_id} was flagged after the grant",
                reason,
                request_id=request_id,
                audit_index=index,
            )
        with store.transaction(self.engine) as conn:
            claimed = store.update_request(
                conn, request_id, from_status=["granted"], status="releasing"
            )
        if not claimed:
            raise Conflict(f"the grant of request {request_id} was already used", "GRANT_USED")
        return self._deliver(pro, row)

    def _deliver(self, pro: Professional, row: RequestRow) -> Release:
        # The grant is claimed (status "releasing"): fetch, open, re-seal. On
        # any failure the claim is given back and nothing leaves.
        request_id = row.request_id
        now_us = micros(self._clock())
        assert row.attestation_json is not None and row.decision_index is not None
        try:
            signed = SignedAttestation.model_validate_json(row.attestation_json)
            blobs = self.linkage.blobs(row.family_id, row.attestation_sha256)
            payloads = open_family(blobs, signed.attestation, row.attestation_sha256, self.keyring)
            sealed = seal_release(
                payloads,
                request_id=request_id,
                family_id=row.family_id,
                professional_key=pro.public_key,
            )
            count = len(payloads)
            del payloads
            receipt = self.audit.receipt(row.decision_index)
            leaf = self.audit.leaf(row.decision_index).decode("utf-8")
        except (UnlockError, AuditLogError, ValidationError) as exc:
            with store.transaction(self.engine) as conn:
                store.update_request(conn, request_id, from_status=["releasing"], status="granted")
            _logger.error(
                "release failed; nothing released",
                extra={"request_id": request_id, "error": type(exc).__name__},
            )
            if isinstance(exc, AuditLogError):
                raise AuditUnavailable(
                    f"no receipt for request {request_id}: {exc}", "RECEIPT_UNAVAILABLE"
                ) from exc
            if isinstance(exc, ValidationError):
                raise StorageError(f"stored attestation of {request_id} is unreadable") from exc
            raise
        with store.transaction(self.engine) as conn:
            store.update_request(
                conn, request_id, from_status=["releasing"], status="released", released_at=now_us
            )
        _logger.info(
            "released",
            extra={
                "request_id": request_id,
                "professional_id": pro.professional_id,
                "family_id": row.family_id,
                "records": count,
            },
        )
        return Release(
            request_id=request_id,
            family_id=row.family_id,
            sealed_identities=sealed,
            identity_count=count,
            audit_index=row.decision_index,
            leaf=leaf,
            receipt=receipt,
            reason=row.reason_code,
        )

    def get_request(self, pro: Professional, request_id: str) -> dict[str, Any]:
        """A request's state, for its requester, approvers and reviewers."""
        with store.reading(self.engine) as conn:
            row = store.get_request(conn, request_id)
        role = self.policy.role(pro.role)
        if row.professional_id != pro.professional_id and not (role.approve or role.review):
            raise Forbidden(f"{pro.professional_id} may not see request {request_id}")
        return row.public()

    # -- IG officers ----------------------------------------------------------------------

    def _ig(self, pro: Professional, what: Literal["review", "restrict", "subject_access"]) -> None:
        if not getattr(self.policy.role(pro.role), what):
            raise Forbidden(f"role {pro.role!r} may not {what.replace('_', ' ')}")

    def _ig_access(self, pro: Professional, reason: str, **fields: Any) -> None:
        self._append(
            [
                IgAccess(
                    time=self._clock(), actor_id=pro.professional_id, reason_code=reason, **fields
                )
            ]
        )

    def list_reviews(self, pro: Professional, status: str | None) -> list[dict[str, Any]]:
        """Break-glass review tasks (audited)."""
        self._ig(pro, "review")
        self._ig_access(pro, "REVIEWS_LISTED")
        return [r.public() for r in store.list_reviews(self.engine, status)]

    def close_review(
        self,
        pro: Professional,
        request_id: str,
        outcome: Literal["upheld", "not_upheld"],
        notes: str,
    ) -> dict[str, Any]:
        """Close a break-glass review with an outcome; the notes are logged only as a hash."""
        self._ig(pro, "review")
        if len(notes) > MAX_NOTES_CHARS:
            raise Refused(f"review notes are over {MAX_NOTES_CHARS} characters", "NOTES_TOO_LONG")
        now = self._clock()
        with store.transaction(self.engine) as conn:
            review = store.get_review(conn, request_id)
        if review.status != "open":
            raise Conflict(f"the review of {request_id} is already closed", "REVIEW_CLOSED")
        if review.professional_id == pro.professional_id:
            raise Forbidden("nobody may review their own break-glass use", "SELF_REVIEW")
        notes_sha = _sha256(notes)
        (index,) = self._append(
            [
                Review(
                    time=now,
                    request_id=request_id,
                    professional_id=review.professional_id,
                    reviewer_id=pro.professional_id,
                    outcome=outcome,
                    notes_sha256=notes_sha,
                )
            ]
        )
        with store.transaction(self.engine) as conn:
            if not store.close_review(
                conn,
                request_id,
                outcome=outcome,
                reviewer_id=pro.professional_id,
                closed_at=micros(now),
                notes_sha256=notes_sha,
                audit_index=index,
            ):
                raise Conflict(f"the review of {request_id} is already closed", "REVIEW_CLOSED")
        return {
            "request_id": request_id,
            "status": "closed",
            "outcome": outcome,
            "audit_index": index,
        }

    def professional_unlocks(self, pro: Professional, professional_id: str) -> list[dict[str, Any]]:
        """Every request one professional made (audited)."""
        self._ig(pro, "review")
        self._ig_access(pro, "UNLOCKS_LISTED", professional_id=professional_id)
        rows = store.requests_where(
            self.engine, store.requests.c.professional_id == professional_id
        )
        return [r.public() for r in rows]

    def set_restriction(
        self, pro: Professional, family_id: str, flag: str | None, note: str
    ) -> dict[str, Any]:
        """Set (``flag``) or lift (None) a family's opt-out / restriction flag (audited)."""
        self._ig(pro, "restrict")
        return set_flag(
            self.engine, self.audit, pro.professional_id, family_id, flag, note, self._clock()
        )

    def subject_access(self, pro: Professional, query: SubjectQuery) -> dict[str, Any]:
        """The records matched to an encoded identity, and unlocks of their families."""
        self._ig(pro, "subject_access")
        query_sha = hashlib.sha256(canonical_json(query.model_dump(mode="json"))).hexdigest()
        matches = self.linkage.subject_access(query)
        families = sorted({m.family_id for m in matches if m.family_id is not None})
        self._ig_access(pro, "SUBJECT_ACCESS", notes_sha256=query_sha)
        unlocks = (
            store.requests_where(self.engine, store.requests.c.family_id.in_(families))
            if families
            else []
        )
        return {
            "query_sha256": query_sha,
            "matches": [m.model_dump(mode="json") for m in matches],
            "unlocks": [r.public() for r in unlocks],
        }


def set_flag(
    engine: Engine,
    audit: AuditLog,
    actor_id: str,
    family_id: str,
    flag: str | None,
    note: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """Set or lift a family's flag: the audit entry is appended inside the DB transaction."""
    if flag is not None and flag not in FLAGS:
        raise Refused(f"flag must be one of {FLAGS}", "FLAG_UNKNOWN")
    if len(note) > MAX_NOTES_CHARS:
        raise Refused(f"the note is over {MAX_NOTES_CHARS} characters", "NOTES_TOO_LONG")
    with store.transaction(engine) as conn:
        current = store.restriction(conn, family_id)
        if flag is None:
            if current is None:
                raise NotFound(f"family {family_id} carries no flag")
            reason = f"{current}_REMOVED"
            store.clear_restriction(conn, family_id)
        else:
            reason = f"{flag}_ADDED"
            store.set_restriction(conn, family_id, flag, actor_id, micros(now))
        try:
            appended = audit.append(
                Restriction(
                    time=now,
                    actor_id=actor_id,
                    family_id=family_id,
                    reason_code=reason,
                    notes_sha256=_sha256(note),
                )
            )
        except AuditLogError as exc:
            raise AuditUnavailable("the flag change could not be audited; not applied") from exc
    return {"family_id": family_id, "flag": flag, "reason": reason, "audit_index": appended.index}


def _code(purpose: str) -> str:
    # A purpose outside the closed pattern (the HTTP layer refuses those, a
    # library caller might not) is logged as a fixed code, never as text.
    return purpose if _CODE.fullmatch(purpose) else "INVALID_PURPOSE"
