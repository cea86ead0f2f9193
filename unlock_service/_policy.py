"""The release policy: a versioned TOML file and the pure function that applies it.

Deny by default. :func:`decide` grants only when every check below passes, in
this order, and otherwise answers with the reason code of the first check that
failed (cheap, attributable checks first):

1. the professional is active (``PROFESSIONAL_INACTIVE``) and their role may
   request (``ROLE_NOT_PERMITTED``);
2. the purpose code is listed (``PURPOSE_NOT_LISTED``) and open to the role
   (``PURPOSE_NOT_FOR_ROLE``);
3. a justification between the policy's minimum and maximum length
   (``JUSTIFICATION_MISSING``, ``JUSTIFICATION_TOO_LONG``);
4. the professional's requests in the rate-limit window (``RATE_LIMITED``);
5. no opt-out or restriction flag on the family (``FAMILY_OPTED_OUT``,
   ``FAMILY_RESTRICTED``);
6. a valid, fresh attestation for this family signed by the pinned linkage key,
   from the linkage service's latest assessment cycle (the attestation check's
   own code, e.g. ``ATTESTATION_STALE``);
7. clearance: at or above the attestation's ``clearance_required``, or below it
   by at most ``approval.clearance_gap`` levels, which then needs approval
   (``CLEARANCE_INSUFFICIENT``);
8. break-glass, when asked for, only for purposes that allow it
   (``BREAK_GLASS_NOT_ALLOWED``), only up to its clearance ceiling (the
   requester's own clearance plus ``break_glass.clearance_gap``, 0 by
   default: break-glass replaces the second person, never the clearance;
   ``BREAK_GLASS_CLEARANCE``), at most ``break_glass.max_uses`` granted uses
   per professional per ``break_glass.window_seconds``
   (``BREAK_GLASS_LIMIT``) and not within ``break_glass.cooldown_seconds`` of
   the last one (``BREAK_GLASS_COOLDOWN``); it then opens a review task due
   in ``break_glass.review_days`` (``GRANTED_BREAK_GLASS``);
9. second-person approval for purposes that require it or a clearance gap:
   ``approval.required`` distinct approvers, none the requester, each with an
   approving role and clearance at least ``clearance_required``
   (``APPROVAL_REQUIRED`` while waiting, then ``GRANTED_WITH_APPROVAL``).

This module does no I/O apart from :func:`load_policy` reading the file, and
holds no state: rate counts, flags and attestations are gathered by the
service and handed in as :class:`Facts`.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from protocols import describe_errors

from ._errors import ConfigError

__all__ = [
    "ApproverFacts",
    "AttestationCheck",
    "Facts",
    "Outcome",
    "Policy",
    "check_approver",
    "decide",
    "load_policy",
    "parse_policy",
    "precheck",
    "restriction_reason",
]

Code = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyHeader(_Model):
    """Name and version of the policy (the version goes into every decision entry)."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,39}$")]
    version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,2}$")]


class RoleRule(_Model):
    """What a role may do."""

    admin: bool = False  # register professionals, set clearances, rotate keys (CLI)
    request: bool = False  # ask for a family's identity
    approve: bool = False  # be the second person
    review: bool = False  # IG: list reviews and unlocks, close break-glass reviews
    restrict: bool = False  # IG: set and lift opt-out / restriction flags
    subject_access: bool = False  # IG: run subject access searches


# What a role the policy does not name may do: nothing (one frozen instance).
_NO_ROLE = RoleRule()


class PurposeRule(_Model):
    """One purpose professionals may state, and what it requires."""

    description: str = Field(max_length=200)
    roles: tuple[RoleName, ...] = Field(min_length=1)
    approval: bool = False
    break_glass: bool = False

    @model_validator(mode="before")
    @classmethod
    def _one_review_deadline(cls, data: object) -> object:
        if isinstance(data, dict) and "review_days" in data:
            raise ValueError(
                "review_days is set once for all purposes, as [break_glass] review_days"
            )
        return data


class Justification(_Model):
    """Length bounds of the free-text justification (logged only as a hash; kept, sealed,
    only while a request waits for approval)."""

    min_chars: int = Field(default=20, ge=1)
    max_chars: int = Field(default=1000, ge=1, le=10_000)


class AttestationRule(_Model):
    """When an attestation is fresh: while its cycle is the latest, and optionally an age limit.

    The linkage service serves only its latest cycle's attestation, and a
    request waiting for approval is checked against the latest cycle again, so
    freshness follows the council's cycle cadence (monthly, quarterly ...).
    ``max_age_days``, when set, also refuses an attestation whose
    ``assessed_at`` is older, however recent the cycle.
    """

    max_age_days: float | None = Field(default=None, gt=0, le=366)


class Grants(_Model):
    """Lifetimes of a grant (single use) and of a request waiting for approval."""

    ttl_seconds: int = Field(default=900, ge=10, le=86_400)
    approval_wait_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)


class RateLimit(_Model):
    """Requests one professional may make in a sliding window (persisted, all outcomes)."""

    max_requests: int = Field(default=20, ge=1)
    window_seconds: int = Field(default=86_400, ge=1)


class ApprovalRule(_Model):
    """Second-person approval."""

    required: int = Field(default=1, ge=1, le=5)
    # How far below ``clearance_required`` a requester may be and still go
    # ahead with an approver who has the clearance; 0 means never.
    clearance_gap: int = Field(default=1, ge=0, le=9)


class BreakGlassRule(_Model):
    """Limits on break-glass (which skips the second person) and its review deadline."""

    # Granted break-glass uses one professional may make per window.
    max_uses: int = Field(default=2, ge=1, le=100)
    window_seconds: int = Field(default=7 * 86_400, ge=60)
    # Least time between two granted break-glass uses by one professional.
    cooldown_seconds: int = Field(default=3600, ge=0)
    # The ceiling: break-glass opens a family only if its clearance_required is
    # at most the requester's clearance plus this gap (0: their own level).
    clearance_gap: int = Field(default=0, ge=0, le=9)
    # The one review deadline: the review task's due date and the audit
    # log's unreviewed-break-glass anomaly both use it.
    review_days: int = Field(default=3, ge=1, le=90)


class PolicyFile(_Model):
    """The whole policy file."""

    policy: PolicyHeader
    justification: Justification = Justification()
    attestation: AttestationRule = AttestationRule()
    grants: Grants = Grants()
    rate_limit: RateLimit = RateLimit()
    approval: ApprovalRule = ApprovalRule()
    break_glass: BreakGlassRule = BreakGlassRule()
    roles: dict[RoleName, RoleRule] = Field(min_length=1)
    purposes: dict[Code, PurposeRule] = Field(min_length=1)


@dataclass(frozen=True)
class Policy:
    """A loaded policy and the SHA-256 of the exact file bytes it came from."""

    rules: PolicyFile
    sha256: str

    @property
    def version(self) -> str:
        """The declared policy version."""
        return self.rules.policy.version

    def role(self, name: str) -> RoleRule:
        """The rule of role ``name`` (a role the policy does not name may do nothing)."""
        found = self.rules.roles.get(name)
        return _NO_ROLE if found is None else found


def parse_policy(data: bytes, source: str = "policy") -> Policy:
    """Parse and validate policy TOML bytes; ConfigError names the key that is wrong."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        rules = PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid policy: {describe_errors(exc)}") from exc
    for code, purpose in rules.purposes.items():
        unknown = [r for r in purpose.roles if r not in rules.roles]
        if unknown:
            raise ConfigError(f"{source}: purposes.{code}.roles names unknown role(s) {unknown}")
    if rules.justification.min_chars > rules.justification.max_chars:
        raise ConfigError(f"{source}: justification.min_chars is above max_chars")
    return Policy(rules, hashlib.sha256(data).hexdigest())


def load_policy(path: Path) -> Policy:
    """Read the policy file at ``path``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    return parse_policy(data, str(path))


@dataclass(frozen=True)
class AttestationCheck:
    """What the service found out about the family's attestation."""

    reason: str | None  # None: a valid, fresh attestation for this family
    clearance_required: int | None = None


@dataclass(frozen=True)
class ApproverFacts:
    """One approval recorded for a request."""

    approver_id: str
    role: str
    clearance: int
    active: bool


@dataclass(frozen=True)
class Facts:
    """Everything :func:`decide` looks at, gathered by the service."""

    professional_id: str
    role: str
    clearance: int
    active: bool
    purpose_code: str
    justification_chars: int
    recent_requests: int  # by this professional in the window, before this one
    restriction: str | None  # the family's flag code, if any
    attestation: AttestationCheck | None  # None: not looked at yet
    break_glass: bool = False
    approvals: tuple[ApproverFacts, ...] = ()
    # granted break-glass uses by this professional in the break-glass window,
    # and seconds since the latest (None: none in the window)
    break_glass_recent: int = 0
    break_glass_since_last: float | None = None


@dataclass(frozen=True)
class Outcome:
    """The policy's answer: grant, refuse, or wait for approval; with its reason code."""

    kind: Literal["grant", "refuse", "pending"]
    reason: str
    break_glass: bool = False
    review_days: int | None = None

    @property
    def granted(self) -> bool:
        """Whether this outcome releases."""
        return self.kind == "grant"


def _refuse(reason: str) -> Outcome:
    return Outcome("refuse", reason)


def precheck(policy: Policy, facts: Facts) -> Outcome | None:
    """Checks 1-5, which need no attestation: a refusal, or None to go on."""
    rules = policy.rules
    if not facts.active:
        return _refuse("PROFESSIONAL_INACTIVE")
    if not policy.role(facts.role).request:
        return _refuse("ROLE_NOT_PERMITTED")
    purpose = rules.purposes.get(facts.purpose_code)
    if purpose is None:
        return _refuse("PURPOSE_NOT_LISTED")
    if facts.role not in purpose.roles:
        return _refuse("PURPOSE_NOT_FOR_ROLE")
    if facts.justification_chars < rules.justification.min_chars:
        return _refuse("JUSTIFICATION_MISSING")
    if facts.justification_chars > rules.justification.max_chars:
        return _refuse("JUSTIFICATION_TOO_LONG")
    if facts.recent_requests >= rules.rate_limit.max_requests:
        return _refuse("RATE_LIMITED")
    if facts.restriction is not None:
        return _refuse(restriction_reason(facts.restriction))
    return None


def restriction_reason(flag: str) -> str:
    """The refusal reason code for a family carrying ``flag``."""
    return "FAMILY_OPTED_OUT" if flag == "OPT_OUT" else "FAMILY_RESTRICTED"


def check_approver(
    policy: Policy, requester_id: str, approver: ApproverFacts, clearance_required: int
) -> str | None:
    """Why ``approver`` may not approve this request, or None if they may."""
    if approver.approver_id == requester_id:
        return "SELF_APPROVAL"
    if not approver.active:
        return "PROFESSIONAL_INACTIVE"
    if not policy.role(approver.role).approve:
        return "APPROVER_NOT_PERMITTED"
    if approver.clearance < clearance_required:
        return "APPROVER_CLEARANCE_LOW"
    return None


def decide(policy: Policy, facts: Facts) -> Outcome:
    """The policy's decision on ``facts`` (deny by default; see the module docstring)."""
    refused = precheck(policy, facts)
    if refused is not None:
        return refused
    rules = policy.rules
    purpose = rules.purposes[facts.purpose_code]
    if facts.attestation is None:
        return _refuse("ATTESTATION_MISSING")
    if facts.attestation.reason is not None:
        return _refuse(facts.attestation.reason)
    required = facts.attestation.clearance_required
    if required is None:
        return _refuse("ATTESTATION_MISSING")
    gap = required - facts.clearance
    if gap > rules.approval.clearance_gap:
        return _refuse("CLEARANCE_INSUFFICIENT")
    if facts.break_glass:
        if not purpose.break_glass:
            return _refuse("BREAK_GLASS_NOT_ALLOWED")
        glass = rules.break_glass
        if gap > glass.clearance_gap:
            return _refuse("BREAK_GLASS_CLEARANCE")
        if facts.break_glass_recent >= glass.max_uses:
            return _refuse("BREAK_GLASS_LIMIT")
        if (
            facts.break_glass_since_last is not None
            and facts.break_glass_since_last < glass.cooldown_seconds
        ):
            return _refuse("BREAK_GLASS_COOLDOWN")
        return Outcome("grant", "GRANTED_BREAK_GLASS", True, glass.review_days)
    if purpose.approval or gap > 0:
        approvers = {
            a.approver_id
            for a in facts.approvals
            if check_approver(policy, facts.professional_id, a, required) is None
        }
        if len(approvers) >= rules.approval.required:
            return Outcome("grant", "GRANTED_WITH_APPROVAL")
        return Outcome("pending", "APPROVAL_REQUIRED")
    return Outcome("grant", "GRANTED")
