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

Every change of a request's status is a guarded transition: a conditional
UPDATE on the expected status decides the one winner among concurrent
callers; transitions that append to the audit log first claim the request
(a transitional status and a claim token), append, then settle the claim, so
only the winner ever logs (one ``decision`` per request). Claims a stopped
process left behind are settled from the log by :meth:`UnlockService.recover`
(start-up, housekeeping) or lazily by the next caller.
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
from typing import Any, Literal, NoReturn

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
    Expiry,
    IgAccess,
    Restriction,
    Review,
    UnlockRequest,
    granted_decisions,
    request_entries,
)
from protocols import (
    ApprovalAnswer,
    ApprovalList,
    FlagChange,
    PendingAnswer,
    PendingApproval,
    PurposeList,
    PurposeView,
    ReleasedAnswer,
    RequestPage,
    RequestView,
    ReviewClosed,
    ReviewList,
    SignedAttestation,
    SubjectAccessReport,
    SubjectQuery,
    attestation_sha256,
    canonical_json,
    reason_text,
)

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
    ReleaseError,
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
    RELEASE_FORMAT,
    AttestationRefused,
    SealKeyring,
    open_family,
    open_for_service,
    open_subject_blobs,
    seal_for_service,
    seal_release,
    seal_subject_identities,
    verify_attestation,
)
from ._store import Professional, RequestRow, ReviewRow
from ._subject import held_unlock
from ._views import at, request_view, review_view

__all__ = [
    "NO_ATTESTATION",
    "Pending",
    "Release",
    "UnlockService",
    "audit_failure",
    "micros",
    "utcnow",
]

_logger = logging.getLogger("unlock_service")
# Stands in for the attestation hash in entries about requests refused before
# any attestation was fetched (the entry field is mandatory).
NO_ATTESTATION = "0" * 64
FLAGS = ("OPT_OUT", "RESTRICTED")
# Transitional statuses: a caller holds the request's claim while it appends
# to the audit log; recovery settles claims older than the lease.
CLAIMED = ("evaluating", "deciding", "releasing", "expiring")
MAX_NOTES_CHARS = 4000
_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,31}")


def audit_failure(exc: AuditLogError) -> str:
    """What went wrong with the audit log, in one line fit for the service log.

    The audit log's messages name indexes, sizes, hashes, pseudonymous ids and
    witness URLs, never an identity (its entries hold none). A database
    driver's SQL and parameters, which follow on later lines, are dropped.
    """
    line = str(exc).split("\n", 1)[0]
    return line if len(line) <= 500 else line[:499] + "…"


def _log_failure(message: str, request_id: str | None, exc: Exception) -> None:
    """Log why nothing was released or decided: the error's type and, for the audit
    log's own errors only, their first line (another error's message may quote input)."""
    _logger.error(
        message,
        extra={
            "request_id": request_id,
            "error": type(exc).__name__,
            "detail": audit_failure(exc) if isinstance(exc, AuditLogError) else None,
        },
    )


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
    person_count: int
    audit_index: int
    leaf: str
    receipt: str
    reason: str
    released_at: int  # microseconds since the epoch

    def to_model(self) -> ReleasedAnswer:
        """The wire form (ISO times, the reason's sentence)."""
        return ReleasedAnswer(
            request_id=self.request_id,
            family_id=self.family_id,
            sealed_identities=self.sealed_identities,
            release_format=RELEASE_FORMAT,
            identity_count=self.identity_count,
            person_count=self.person_count,
            audit_index=self.audit_index,
            leaf=self.leaf,
            receipt=self.receipt,
            reason=self.reason,
            reason_text=reason_text(self.reason),
            released_at=at(self.released_at),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return self.to_model().model_dump(mode="json")


@dataclass(frozen=True)
class Pending:
    """A request waiting for a second person's approval."""

    request_id: str
    reason: str
    expires_at: int  # microseconds since the epoch
    audit_index: int

    def to_model(self) -> PendingAnswer:
        """The wire form (ISO times, the reason's sentence)."""
        return PendingAnswer(
            request_id=self.request_id,
            reason=self.reason,
            reason_text=reason_text(self.reason),
            expires_at=at(self.expires_at),
            audit_index=self.audit_index,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return self.to_model().model_dump(mode="json")


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
        linkage_keys: Sequence[VerifyKey],
        tokens: TokenVerifier,
        request_window: int = 60,
        claim_lease: float = 120,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.policy = policy
        self.keyring = keyring
        self.linkage = linkage
        self._linkage_keys = tuple(linkage_keys)  # two while the linkage key is rotated
        self._tokens = tokens
        self._window = request_window
        self._lease_us = int(claim_lease * 1_000_000)
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
            _log_failure("audit append failed; nothing released", request_id, exc)
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
                signed, self._linkage_keys, family_id, max_age, now, latest_cycle=latest_cycle
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
        assert row.claim is not None
        return self._deliver(pro, row, row.claim)

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
            glass_uses, glass_last = (
                store.last_break_glass(
                    conn,
                    pro.professional_id,
                    now_us - rules.break_glass.window_seconds * 1_000_000,
                )
                if break_glass
                else (0, None)
            )
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
            break_glass_recent=glass_uses,
            break_glass_since_last=(
                None if glass_last is None else (now_us - glass_last) / 1_000_000
            ),
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
            # Approvers must read the justification: kept, sealed to the service's
            # own key, only for a request that waits for them (cleared when decided).
            "sealed_justification": (
                seal_for_service(justification, self.keyring) if outcome.kind == "pending" else None
            ),
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
        # The request is stored first, claimed by this call ("evaluating"), so a
        # logged decision always has its row: if this process dies between the
        # append and the final update, recovery finds the row and settles it
        # from the log.
        token = secrets.token_hex(16)
        values.update(
            status="evaluating",
            reason_code="EVALUATING",
            claim=token,
            claimed_at=now_us,
            decided_at=None,
            expires_at=None,
            released_at=None,
            request_index=None,
            decision_index=None,
        )
        with store.transaction(self.engine) as conn:
            store.insert_request(conn, **values)
        try:
            indexes = [a.index for a in self.audit.append_many(entries)]
        except AuditLogError as exc:
            _log_failure("audit append failed; nothing released", request_id, exc)
            # recorded (so it counts against the rate limit), never granted
            self._settle(
                request_id,
                token,
                "evaluating",
                status="audit_failed",
                reason_code="AUDIT_UNAVAILABLE",
            )
            raise AuditUnavailable(
                "the decision could not be written to the audit log, so nothing was released"
            ) from exc
        # A grant made here is redeemed by this same call: it stays claimed
        # ("releasing", same claim), so nobody else can redeem it.
        status = {"grant": "releasing", "refuse": "refused", "pending": "pending"}[outcome.kind]
        if outcome.granted:
            expires: int | None = now_us + rules.grants.ttl_seconds * 1_000_000
        elif outcome.kind == "pending":
            expires = now_us + rules.grants.approval_wait_seconds * 1_000_000
        else:
            expires = None
        final: dict[str, Any] = {
            "status": status,
            "reason_code": outcome.reason,
            "decided_at": None if outcome.kind == "pending" else now_us,
            "expires_at": expires,
            "request_index": indexes[0],
            "decision_index": None if outcome.kind == "pending" else indexes[-1],
        }
        if not outcome.granted:
            final.update(claim=None, claimed_at=None)
        with store.transaction(self.engine) as conn:
            settled = store.update_request(
                conn, request_id, from_status=["evaluating"], holder=token, **final
            )
            if settled and outcome.break_glass:
                store.insert_review(
                    conn,
                    request_id=request_id,
                    professional_id=pro.professional_id,
                    family_id=family_id,
                    purpose_code=_code(purpose_code),
                    opened_at=now_us,
                    due_at=now_us + self._review_us(),
                    audit_index=indexes[-1],
                )
        if not settled:
            self._lost_claim(request_id, outcome.granted)
        values.update(final)
        return RequestRow(**values), outcome

    # -- guarded transitions ----------------------------------------------------------------
    #
    # Every change of a request's status is a conditional UPDATE ... WHERE
    # status = expected whose row count decides the winner. A transition that
    # writes to the audit log first claims the request (a transitional status
    # and a random claim token, committed), then appends, then settles the
    # claim (WHERE claim = token). Only the claim's holder appends, so racing
    # callers never log two decisions; a holder that dies leaves a stale claim
    # that recovery settles from the log (see recover()).

    def _claim(
        self, request_id: str, from_status: Sequence[str], state: str, now_us: int
    ) -> str | None:
        token = secrets.token_hex(16)
        with store.transaction(self.engine) as conn:
            won = store.update_request(
                conn,
                request_id,
                from_status=from_status,
                status=state,
                claim=token,
                claimed_at=now_us,
            )
        return token if won else None

    def _settle(self, request_id: str, token: str, state: str, **values: Any) -> bool:
        values.setdefault("claim", None)
        values.setdefault("claimed_at", None)
        with store.transaction(self.engine) as conn:
            return store.update_request(
                conn, request_id, from_status=[state], holder=token, **values
            )

    def _stale(self, row: RequestRow, now_us: int) -> bool:
        return row.status in CLAIMED and (
            row.claimed_at is None or row.claimed_at < now_us - self._lease_us
        )

    def _review_us(self) -> int:
        return self.policy.rules.break_glass.review_days * 86_400 * 1_000_000

    def _lost_claim(self, request_id: str, logged_grant: bool) -> NoReturn:
        # Our claim was taken over (we were slower than the lease) after our
        # entries were appended. If recovery adopted our decision, the row
        # carries it; otherwise a logged grant is closed in the log.
        with store.reading(self.engine) as conn:
            row = store.get_request(conn, request_id)
        if logged_grant and row.status not in ("granted", "releasing", "released", "expired"):
            self._append([self._expiry(row, "GRANT_ABANDONED")])
        raise Conflict(
            f"request {request_id} was settled by recovery while this call was slow; "
            f"it is now {row.status}",
            "CLAIM_LOST",
        )

    def _expiry(self, row: RequestRow, reason: str) -> Expiry:
        return Expiry(
            time=self._clock(),
            request_id=row.request_id,
            professional_id=row.professional_id,
            family_id=row.family_id,
            reason_code=reason,
        )

    def _expire_row(self, row: RequestRow, reason: str | None = None) -> bool:
        """Expire a pending request or an unused grant, logging the expiry; whether this
        caller was the one that expired it."""
        if reason is None:
            reason = "GRANT_EXPIRED" if row.status == "granted" else "REQUEST_EXPIRED"
        token = self._claim(row.request_id, [row.status], "expiring", micros(self._clock()))
        if token is None:
            return False
        try:
            self._append([self._expiry(row, reason)])
        except AuditUnavailable:
            self._settle(row.request_id, token, "expiring", status=row.status)
            raise
        return self._settle(row.request_id, token, "expiring", status="expired", reason_code=reason)

    # -- approving ------------------------------------------------------------------------

    def approve(self, approver: Professional, request_id: str, approve: bool) -> ApprovalAnswer:
        """A second person's answer to a pending request; the request's new state."""
        now = self._clock()
        now_us = micros(now)
        row = self._current(request_id, now_us)
        if row.status != "pending":
            if row.status == "deciding":
                raise Conflict(
                    f"another answer to request {request_id} is being recorded; try again",
                    "DECISION_IN_PROGRESS",
                )
            raise Conflict(f"request {request_id} is {row.status}, not pending", "NOT_PENDING")
        if row.expires_at is not None and row.expires_at <= now_us:
            self._expire_row(row, "REQUEST_EXPIRED")
            raise Conflict(f"request {request_id} expired unapproved", "REQUEST_EXPIRED", 410)
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
            # No state change: the refused approver is logged, the request waits on.
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
        token = self._claim(request_id, ["pending"], "deciding", now_us)
        if token is None:
            with store.reading(self.engine) as conn:
                status = store.get_request(conn, request_id).status
            if status == "deciding":
                raise Conflict(
                    f"another answer to request {request_id} is being recorded; try again",
                    "DECISION_IN_PROGRESS",
                )
            raise Conflict(f"request {request_id} is {status}, not pending", "NOT_PENDING")
        # From here this call alone may log an answer or a decision for the request.
        try:
            with store.reading(self.engine) as conn:
                answered = dict(store.approvals_for(conn, request_id))
            if approver.professional_id in answered:
                raise Conflict(f"you already answered request {request_id}", "ALREADY_ANSWERED")
            if approve:
                outcome = self._reevaluate(row, answered, facts, now)
                entries: list[Entry] = [approval("granted", "APPROVED")]
            else:
                outcome = Outcome("refuse", "APPROVAL_DECLINED")
                entries = [approval("refused", "APPROVAL_DECLINED")]
            if outcome.kind != "pending":
                entries.append(self._decision(row, outcome, now))
        except (UnlockError, ValidationError):
            self._settle(request_id, token, "deciding", status="pending")
            raise
        try:
            indexes = [a.index for a in self.audit.append_many(entries)]
        except AuditLogError as exc:
            _log_failure("audit append failed; request not decided", request_id, exc)
            if outcome.kind == "pending":
                self._settle(request_id, token, "deciding", status="pending")
            else:
                # a decision might have reached the log; never risk a second one
                self._settle(
                    request_id,
                    token,
                    "deciding",
                    status="audit_failed",
                    reason_code="AUDIT_UNAVAILABLE",
                )
            raise AuditUnavailable(
                "the answer could not be written to the audit log, so nothing changed"
            ) from exc
        status = {"grant": "granted", "refuse": "refused", "pending": "pending"}[outcome.kind]
        final: dict[str, Any] = {"status": status, "claim": None, "claimed_at": None}
        if outcome.kind != "pending":
            final.update(
                reason_code=outcome.reason,
                decided_at=now_us,
                decision_index=indexes[-1],
                expires_at=(
                    now_us + self.policy.rules.grants.ttl_seconds * 1_000_000
                    if outcome.granted
                    else None
                ),
            )
        with store.transaction(self.engine) as conn:
            settled = store.update_request(
                conn, request_id, from_status=["deciding"], holder=token, **final
            )
            if settled:
                store.insert_approval(
                    conn,
                    request_id=request_id,
                    approver_id=approver.professional_id,
                    decision="granted" if approve else "refused",
                    reason_code="APPROVED" if approve else "APPROVAL_DECLINED",
                    created_at=now_us,
                    audit_index=indexes[0],
                )
        if not settled:
            self._lost_claim(request_id, outcome.granted)
        return ApprovalAnswer(
            request_id=request_id,
            status=status,
            reason=outcome.reason,
            reason_text=reason_text(outcome.reason),
        )

    def _current(self, request_id: str, now_us: int) -> RequestRow:
        # The request as it stands, after settling it if a stopped caller left
        # it mid-transition (lazy crash recovery).
        with store.reading(self.engine) as conn:
            row = store.get_request(conn, request_id)
        if self._stale(row, now_us):
            self._recover_row(row)
            with store.reading(self.engine) as conn:
                row = store.get_request(conn, request_id)
        return row

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

    # -- releasing ------------------------------------------------------------------------

    def release(self, pro: Professional, request_id: str) -> Release:
        """Redeem a grant (once, before it expires): the sealed identities and the receipt."""
        now = self._clock()
        now_us = micros(now)
        row = self._current(request_id, now_us)
        if row.professional_id != pro.professional_id:
            raise Forbidden(
                f"request {request_id} was made by another professional", "NOT_REQUESTER"
            )
        if row.status in ("released", "releasing"):
            raise Conflict(f"the grant of request {request_id} was already used", "GRANT_USED")
        if row.status != "granted":
            raise Conflict(f"request {request_id} is {row.status}, not granted", "NOT_GRANTED")
        if row.expires_at is None or row.expires_at <= now_us:
            self._expire_row(row, "GRANT_EXPIRED")
            raise Conflict(f"the grant of request {request_id} has expired", "GRANT_EXPIRED", 410)
        token = self._claim(request_id, ["granted"], "releasing", now_us)
        if token is None:
            raise Conflict(f"the grant of request {request_id} was already used", "GRANT_USED")
        try:
            with store.reading(self.engine) as conn:
                flag = store.restriction(conn, row.family_id)
        except StorageError:
            self._settle(request_id, token, "releasing", status="granted")
            raise
        if flag is not None:
            # Flags are checked in real time: one set after the grant still stops
            # it. The grant is closed with an expiry entry naming the flag (the
            # request keeps its one decision).
            reason = restriction_reason(flag)
            try:
                (index,) = self._append([self._expiry(row, reason)])
            except AuditUnavailable:
                self._settle(request_id, token, "releasing", status="granted")
                raise
            self._settle(request_id, token, "releasing", status="refused", reason_code=reason)
            raise Refused(
                f"family {row.family_id} was flagged after the grant",
                reason,
                request_id=request_id,
                audit_index=index,
            )
        return self._deliver(pro, row, token)

    def _deliver(self, pro: Professional, row: RequestRow, token: str) -> Release:
        # The grant is claimed (status "releasing", claim ``token``): fetch,
        # open, re-seal. On any failure the claim is given back and nothing
        # leaves. "released" is committed before the answer is returned, so a
        # grant found "releasing" after a crash never left the process.
        request_id = row.request_id
        now_us = micros(self._clock())
        assert row.attestation_json is not None and row.decision_index is not None
        try:
            signed = SignedAttestation.model_validate_json(row.attestation_json)
            blobs = self.linkage.blobs(row.family_id, row.attestation_sha256)
            payloads = open_family(blobs, signed.attestation, row.attestation_sha256, self.keyring)
            sealed, people = seal_release(
                payloads,
                request_id=request_id,
                family_id=row.family_id,
                professional_key=pro.public_key,
                members=signed.attestation.members,
            )
            count = len(payloads)
            del payloads
            # Asked for last, so the checkpoint also covers the decisions made
            # while these blobs were fetched: concurrent releases share it.
            receipt = self.audit.receipt(row.decision_index)
            leaf = self.audit.leaf(row.decision_index).decode("utf-8")
        except (UnlockError, AuditLogError, ValidationError) as exc:
            self._settle(request_id, token, "releasing", status="granted")
            _log_failure("release failed; nothing released", request_id, exc)
            if isinstance(exc, AuditLogError):
                raise AuditUnavailable(
                    f"no receipt for request {request_id}: {exc}", "RECEIPT_UNAVAILABLE"
                ) from exc
            if isinstance(exc, ValidationError):
                raise StorageError(f"stored attestation of {request_id} is unreadable") from exc
            raise
        if not self._settle(request_id, token, "releasing", status="released", released_at=now_us):
            del sealed
            self._lost_claim(request_id, logged_grant=False)
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
            person_count=people,
            audit_index=row.decision_index,
            leaf=leaf,
            receipt=receipt,
            reason=row.reason_code,
            released_at=now_us,
        )

    # -- crash recovery -------------------------------------------------------------------

    def recover(self, startup: bool = False) -> int:
        """Settle what stopped callers left behind; how many requests and reviews changed.

        Claims older than the lease are settled from the audit log
        (:meth:`_recover_row`); pending requests and unused grants whose time
        ran out are expired with an ``expiry`` entry; at start-up, granted
        decisions logged since the last run that have no request row (a row
        lost with the database's last commits) get a ``GRANT_ABANDONED``
        expiry. Afterwards every logged grant is released, still redeemable,
        or closed in the log.
        """
        now_us = micros(self._clock())
        changed = 0
        with store.reading(self.engine) as conn:
            stale = store.stale_claims(conn, now_us - self._lease_us)
            reviews = store.stale_reviews(conn, now_us - self._lease_us)
        for row in stale:
            changed += self._recover_row(row)
        for review in reviews:
            changed += self._recover_review(review)
        with store.reading(self.engine) as conn:
            lapsed = store.lapsed(conn, now_us)
        for row in lapsed:
            changed += self._expire_row(row)
        if startup:
            changed += self._reconcile_log()
        return changed

    def _recover_row(self, row: RequestRow) -> bool:
        """Settle one request left mid-transition, from what the audit log holds."""
        now_us = micros(self._clock())
        token = secrets.token_hex(16)
        with store.transaction(self.engine) as conn:
            if not store.take_over(conn, row, token, now_us):
                return False  # someone else settled or recovered it meanwhile
        state = row.status
        logged = request_entries(self.audit.engine, row.request_id)
        kinds = {r.entry.type: r for r in logged}
        expiry, decision = kinds.get("expiry"), kinds.get("decision")
        _logger.warning(
            "recovering a request left mid-transition",
            extra={"request_id": row.request_id, "decision": state},
        )
        if expiry is not None:
            assert expiry.entry.type == "expiry"
            reason = expiry.entry.reason_code
            final = "refused" if reason.startswith("FAMILY_") else "expired"
            return self._settle(row.request_id, token, state, status=final, reason_code=reason)
        if state == "releasing":
            # "released" is committed before identities leave, so nothing left:
            # the grant is given back (it expires on its own schedule).
            return self._settle(row.request_id, token, state, status="granted")
        if state == "expiring":
            reason = "GRANT_EXPIRED" if row.decision_index is not None else "REQUEST_EXPIRED"
            self._append([self._expiry(row, reason)])
            return self._settle(row.request_id, token, state, status="expired", reason_code=reason)
        request = kinds.get("unlock_request")
        if decision is not None:
            assert decision.entry.type == "decision"
            decided = micros(decision.entry.time)
            granted = decision.entry.decision == "granted"
            values: dict[str, Any] = {
                "status": "granted" if granted else "refused",
                "reason_code": decision.entry.reason_code,
                "decided_at": decided,
                "decision_index": decision.index,
                "expires_at": (
                    decided + self.policy.rules.grants.ttl_seconds * 1_000_000 if granted else None
                ),
            }
            if request is not None:
                values["request_index"] = request.index
            with store.transaction(self.engine) as conn:
                settled = store.update_request(
                    conn,
                    row.request_id,
                    from_status=[state],
                    holder=token,
                    claim=None,
                    claimed_at=None,
                    **values,
                )
                glass = kinds.get("break_glass")
                if settled and glass is not None and not store.has_review(conn, row.request_id):
                    store.insert_review(
                        conn,
                        request_id=row.request_id,
                        professional_id=row.professional_id,
                        family_id=row.family_id,
                        purpose_code=row.purpose_code,
                        opened_at=decided,
                        due_at=decided + self._review_us(),
                        audit_index=decision.index,
                    )
            return settled
        if request is not None or state == "deciding":
            # Logged but not decided: it waits for an approver again.
            wait = self.policy.rules.grants.approval_wait_seconds * 1_000_000
            values = {"status": "pending", "reason_code": "APPROVAL_REQUIRED"}
            if state == "evaluating":
                values.update(
                    expires_at=row.created_at + wait,
                    request_index=None if request is None else request.index,
                )
            return self._settle(row.request_id, token, state, **values)
        # Nothing reached the log: the request never happened as far as the
        # evidence goes, and nothing was released.
        return self._settle(
            row.request_id, token, state, status="audit_failed", reason_code="ABANDONED"
        )

    def _recover_review(self, review: ReviewRow) -> bool:
        """Settle one review left ``closing``: closed if its entry is logged, else open."""
        assert review.reviewer_id is not None and review.closed_at is not None
        logged = [
            r
            for r in request_entries(self.audit.engine, review.request_id)
            if r.entry.type == "review"
        ]
        with store.transaction(self.engine) as conn:
            if logged and logged[-1].entry.type == "review":
                entry = logged[-1].entry
                return store.settle_review(
                    conn,
                    review.request_id,
                    review.reviewer_id,
                    review.closed_at,
                    status="closed",
                    outcome=entry.outcome,
                    reviewer_id=entry.reviewer_id,
                    closed_at=micros(entry.time),
                    notes_sha256=entry.notes_sha256,
                    audit_index=logged[-1].index,
                )
            return store.settle_review(
                conn,
                review.request_id,
                review.reviewer_id,
                review.closed_at,
                status="open",
                reviewer_id=None,
                closed_at=None,
            )

    def _reconcile_log(self) -> int:
        """Close, in the log, logged grants whose request row is missing."""
        end = self.audit.size
        with store.reading(self.engine) as conn:
            start = store.reconciled_through(conn, "grants")
        closed = 0
        for record in granted_decisions(self.audit.engine, start, end):
            entry = record.entry
            assert entry.type == "decision"
            with store.reading(self.engine) as conn:
                try:
                    store.get_request(conn, entry.request_id)
                    continue
                except NotFound:
                    pass
            if any(
                r.entry.type == "expiry"
                for r in request_entries(self.audit.engine, entry.request_id)
            ):
                continue
            _logger.warning(
                "a logged grant has no request row; closing it in the log",
                extra={"request_id": entry.request_id},
            )
            self._append(
                [
                    Expiry(
                        time=self._clock(),
                        request_id=entry.request_id,
                        professional_id=entry.professional_id,
                        family_id=entry.family_id,
                        reason_code="GRANT_ABANDONED",
                    )
                ]
            )
            closed += 1
        with store.transaction(self.engine) as conn:
            store.set_reconciled_through(conn, "grants", end)
        return closed

    def get_request(self, pro: Professional, request_id: str) -> RequestView:
        """A request's state, for its requester, approvers and reviewers."""
        with store.reading(self.engine) as conn:
            row = store.get_request(conn, request_id)
        role = self.policy.role(pro.role)
        if row.professional_id != pro.professional_id and not (role.approve or role.review):
            raise Forbidden(f"{pro.professional_id} may not see request {request_id}")
        return request_view(row)

    def own_requests(self, pro: Professional, limit: int, before: str | None) -> RequestPage:
        """The caller's own requests, newest first, ``limit`` at a time after ``before``.

        Not audited, like :meth:`get_request`: a professional reading their own
        requests; IG reads of someone else's (:meth:`professional_unlocks`) are.
        """
        rows = store.requests_page(self.engine, pro.professional_id, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        return RequestPage(
            requests=tuple(request_view(r) for r in rows),
            next_before=rows[-1].request_id if more else None,
        )

    def purposes_for(self, pro: Professional) -> PurposeList:
        """The purposes ``pro``'s role may state, in the policy's order (not audited:
        the policy is no secret, and stating one is)."""
        rules = self.policy.rules
        return PurposeList(
            policy=f"{rules.policy.name} {rules.policy.version}",
            purposes=tuple(
                PurposeView(
                    code=code,
                    description=rule.description,
                    approval=rule.approval,
                    break_glass=rule.break_glass,
                    min_justification=rules.justification.min_chars,
                )
                for code, rule in rules.purposes.items()
                if pro.role in rule.roles
            ),
        )

    def approvals_for(self, pro: Professional) -> ApprovalList:
        """The pending requests ``pro`` may approve now, soonest to expire first.

        Exactly those :meth:`approve` would accept from them: the policy's
        approver check (role, clearance for the family's case, never their own
        request, active) against each pending, unexpired request they have not
        answered yet, with the requester's justification (kept sealed to the
        service's key while the request waits). A role that may not approve
        gets Forbidden. Not audited, like :meth:`get_request`, which an
        approver may already call on each of these (the approval itself is
        logged).
        """
        if not self.policy.role(pro.role).approve:
            raise Forbidden(f"role {pro.role!r} may not approve requests")
        facts = ApproverFacts(pro.professional_id, pro.role, pro.clearance, pro.active)
        rules = self.policy.rules
        with store.reading(self.engine) as conn:
            waiting = store.awaiting_approval(conn, pro.professional_id, micros(self._clock()))
            requesters = {
                row.professional_id: store.get_professional(conn, row.professional_id)
                for row, _ in waiting
            }
        out = []
        for row, approved in waiting:
            required = row.clearance_required
            if required is None or row.expires_at is None:
                continue  # never pending without an attestation; skip rather than guess
            if check_approver(self.policy, row.professional_id, facts, required) is not None:
                continue
            requester = requesters[row.professional_id]
            purpose = rules.purposes.get(row.purpose_code)
            out.append(
                PendingApproval(
                    request_id=row.request_id,
                    family_id=row.family_id,
                    requester_id=row.professional_id,
                    requester_role=requester.role if requester is not None else "unknown",
                    purpose_code=row.purpose_code,
                    purpose=purpose.description if purpose is not None else "",
                    justification=self._justification(row),
                    justification_sha256=row.justification_sha256,
                    clearance_required=required,
                    approvals=approved,
                    approvals_required=rules.approval.required,
                    reason=row.reason_code,
                    reason_text=reason_text(row.reason_code),
                    created_at=at(row.created_at),
                    expires_at=at(row.expires_at),
                )
            )
        return ApprovalList(approvals=tuple(out))

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

    def _justification(self, row: RequestRow) -> str | None:
        # None: a request made before justifications were kept, or one whose key is gone
        if row.sealed_justification is None:
            return None
        try:
            return open_for_service(row.sealed_justification, self.keyring)
        except ReleaseError as exc:
            _logger.warning(
                "a pending request's justification does not open",
                extra={"request_id": row.request_id, "reason": exc.reason},
            )
            return None

    def list_reviews(self, pro: Professional, status: str | None) -> ReviewList:
        """Break-glass review tasks (audited)."""
        self._ig(pro, "review")
        self._ig_access(pro, "REVIEWS_LISTED")
        return ReviewList(
            reviews=tuple(review_view(r) for r in store.list_reviews(self.engine, status))
        )

    def close_review(
        self,
        pro: Professional,
        request_id: str,
        outcome: Literal["upheld", "not_upheld"],
        notes: str,
    ) -> ReviewClosed:
        """Close a break-glass review with an outcome; the notes are logged only as a hash."""
        self._ig(pro, "review")
        if len(notes) > MAX_NOTES_CHARS:
            raise Refused(f"review notes are over {MAX_NOTES_CHARS} characters", "NOTES_TOO_LONG")
        now = self._clock()
        now_us = micros(now)
        with store.reading(self.engine) as conn:
            review = store.get_review(conn, request_id)
        if review.professional_id == pro.professional_id:
            raise Forbidden("nobody may review their own break-glass use", "SELF_REVIEW")
        if review.status == "closing" and (review.closed_at or 0) < now_us - self._lease_us:
            self._recover_review(review)
        # The guarded transition: open -> closing for this reviewer; only the
        # winner appends the review entry.
        with store.transaction(self.engine) as conn:
            won = store.claim_review(conn, request_id, pro.professional_id, now_us)
        if not won:
            raise Conflict(f"the review of {request_id} is already closed", "REVIEW_CLOSED")
        notes_sha = _sha256(notes)
        try:
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
        except AuditUnavailable:
            with store.transaction(self.engine) as conn:
                store.settle_review(
                    conn,
                    request_id,
                    pro.professional_id,
                    now_us,
                    status="open",
                    reviewer_id=None,
                    closed_at=None,
                )
            raise
        with store.transaction(self.engine) as conn:
            settled = store.settle_review(
                conn,
                request_id,
                pro.professional_id,
                now_us,
                status="closed",
                outcome=outcome,
                notes_sha256=notes_sha,
                audit_index=index,
            )
        if not settled:
            raise Conflict(
                f"the review of {request_id} was settled by recovery while this call was slow",
                "CLAIM_LOST",
            )
        return ReviewClosed(request_id=request_id, outcome=outcome, audit_index=index)

    def professional_unlocks(self, pro: Professional, professional_id: str) -> RequestPage:
        """Every request one professional made, newest first (audited)."""
        self._ig(pro, "review")
        self._ig_access(pro, "UNLOCKS_LISTED", professional_id=professional_id)
        rows = store.requests_where(
            self.engine, store.requests.c.professional_id == professional_id
        )
        return RequestPage(requests=tuple(request_view(r) for r in rows))

    def set_restriction(
        self, pro: Professional, family_id: str, flag: str | None, note: str
    ) -> FlagChange:
        """Set (``flag``) or lift (None) a family's opt-out / restriction flag (audited)."""
        self._ig(pro, "restrict")
        out = set_flag(
            self.engine, self.audit, pro.professional_id, family_id, flag, note, self._clock()
        )
        # the flag already stops release here; the linkage service needs it to stop
        # profiling and claims. If it cannot be told now, housekeeping tells it later.
        try:
            self.linkage.restrict(family_id, flag)
            synced = True
        except LinkageError as exc:
            _logger.warning(
                "flag not yet forwarded to the linkage service",
                extra={"family_id": family_id, "error": type(exc).__name__},
            )
            synced = False
        return FlagChange(
            family_id=family_id,
            flag=flag,
            reason=out["reason"],
            reason_text=reason_text(out["reason"]),
            audit_index=out["audit_index"],
            linkage_synced=synced,
        )

    def sync_restrictions(self) -> int:
        """Make the linkage service's flags those recorded here; how many were changed."""
        here = {str(r["family_id"]): str(r["flag"]) for r in store.list_restrictions(self.engine)}
        there = self.linkage.restrictions()
        changed = 0
        for family_id in sorted(here.keys() | there.keys()):
            want = here.get(family_id)
            if there.get(family_id) != want:
                self.linkage.restrict(family_id, want)
                changed += 1
        return changed

    def subject_access(self, pro: Professional, query: SubjectQuery) -> SubjectAccessReport:
        """What is held about an encoded identity, its families' unlocks, and its identities.

        The matched records' blobs are opened (exactly the records the linkage
        service says it holds) and sealed to the IG officer's own key. The
        search is logged (``ig_access``/``SUBJECT_ACCESS``, the query's
        SHA-256) before anything is returned; if the append fails, nothing is.
        """
        self._ig(pro, "subject_access")
        query_sha = hashlib.sha256(canonical_json(query.model_dump(mode="json"))).hexdigest()
        answer = self.linkage.subject_access(query)
        payloads = open_subject_blobs(answer, self.keyring)
        now = self._clock()
        (index,) = self._append(
            [
                IgAccess(
                    time=now,
                    actor_id=pro.professional_id,
                    reason_code="SUBJECT_ACCESS",
                    notes_sha256=query_sha,
                )
            ]
        )
        families = sorted({f.family_id for f in answer.held.families})
        unlocks = (
            store.requests_where(self.engine, store.requests.c.family_id.in_(families))
            if families
            else []
        )
        sealed = (
            seal_subject_identities(
                payloads,
                query_sha256=query_sha,
                audit_index=index,
                professional_key=pro.public_key,
            )
            if payloads
            else None
        )
        del payloads
        return SubjectAccessReport(
            query_sha256=query_sha,
            audit_index=index,
            generated_at=now,
            held=answer.held,
            unlocks=tuple(held_unlock(r) for r in unlocks),
            sealed_identities=sealed,
        )


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
