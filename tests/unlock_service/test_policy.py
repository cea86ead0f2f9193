"""The policy: every branch of decide(), approver checks, and the file's validation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from unlock_service import ConfigError
from unlock_service._policy import (
    ApproverFacts,
    AttestationCheck,
    Facts,
    check_approver,
    decide,
    parse_policy,
)

from ._factories import POLICY

P = parse_policy(POLICY.encode())
OK = AttestationCheck(None, 3)
BASE = Facts(
    professional_id="pro_" + "1" * 16,
    role="social_worker",
    clearance=5,
    active=True,
    purpose_code="SAFEGUARDING",
    justification_chars=50,
    recent_requests=0,
    restriction=None,
    attestation=OK,
)
MANAGER = ApproverFacts("pro_" + "2" * 16, "team_manager", 5, True)


@pytest.mark.parametrize(
    ("change", "kind", "reason"),
    [
        ({}, "grant", "GRANTED"),
        ({"active": False}, "refuse", "PROFESSIONAL_INACTIVE"),
        ({"role": "ig_officer"}, "refuse", "ROLE_NOT_PERMITTED"),
        ({"role": "unknown_role"}, "refuse", "ROLE_NOT_PERMITTED"),
        ({"purpose_code": "CURIOSITY"}, "refuse", "PURPOSE_NOT_LISTED"),
        ({"justification_chars": 9}, "refuse", "JUSTIFICATION_MISSING"),
        ({"justification_chars": 201}, "refuse", "JUSTIFICATION_TOO_LONG"),
        ({"recent_requests": 5}, "refuse", "RATE_LIMITED"),
        ({"recent_requests": 4}, "grant", "GRANTED"),
        ({"restriction": "OPT_OUT"}, "refuse", "FAMILY_OPTED_OUT"),
        ({"restriction": "RESTRICTED"}, "refuse", "FAMILY_RESTRICTED"),
        ({"attestation": None}, "refuse", "ATTESTATION_MISSING"),
        ({"attestation": AttestationCheck("ATTESTATION_STALE")}, "refuse", "ATTESTATION_STALE"),
        ({"attestation": AttestationCheck(None, None)}, "refuse", "ATTESTATION_MISSING"),
        ({"clearance": 1}, "refuse", "CLEARANCE_INSUFFICIENT"),
        ({"clearance": 2}, "pending", "APPROVAL_REQUIRED"),
        ({"clearance": 2, "approvals": (MANAGER,)}, "grant", "GRANTED_WITH_APPROVAL"),
        ({"purpose_code": "CASE_ALLOCATION"}, "pending", "APPROVAL_REQUIRED"),
        (
            {"purpose_code": "CASE_ALLOCATION", "approvals": (MANAGER,)},
            "grant",
            "GRANTED_WITH_APPROVAL",
        ),
        ({"break_glass": True}, "refuse", "BREAK_GLASS_NOT_ALLOWED"),
        ({"break_glass": True, "purpose_code": "EMERGENCY"}, "grant", "GRANTED_BREAK_GLASS"),
        (
            {"break_glass": True, "purpose_code": "EMERGENCY", "clearance": 2},
            "grant",
            "GRANTED_BREAK_GLASS",
        ),
        (
            {"break_glass": True, "purpose_code": "EMERGENCY", "clearance": 1},
            "refuse",
            "CLEARANCE_INSUFFICIENT",
        ),
    ],
)
def test_every_branch(change, kind, reason):
    outcome = decide(P, replace(BASE, **change))
    assert (outcome.kind, outcome.reason) == (kind, reason)
    assert outcome.break_glass == (reason == "GRANTED_BREAK_GLASS")


def test_break_glass_carries_the_policys_one_review_deadline():
    outcome = decide(P, replace(BASE, break_glass=True, purpose_code="EMERGENCY"))
    assert outcome.review_days == P.rules.break_glass.review_days == 2


GLASS = replace(BASE, break_glass=True, purpose_code="EMERGENCY")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # the test policy: max_uses 2, cooldown 60 s, clearance_gap 1
        ({"break_glass_recent": 1, "break_glass_since_last": 61.0}, "GRANTED_BREAK_GLASS"),
        ({"break_glass_recent": 2, "break_glass_since_last": 3600.0}, "BREAK_GLASS_LIMIT"),
        ({"break_glass_recent": 1, "break_glass_since_last": 59.0}, "BREAK_GLASS_COOLDOWN"),
        ({"clearance": 2}, "GRANTED_BREAK_GLASS"),  # family needs 3: within the gap of 1
    ],
)
def test_break_glass_cap_and_cool_down(change, reason):
    assert decide(P, replace(GLASS, **change)).reason == reason


def test_break_glass_never_reaches_above_its_clearance_ceiling():
    # default ceiling: the requester's own clearance (break_glass.clearance_gap = 0),
    # even where the approval route would allow a gap of 1
    strict = parse_policy(POLICY.replace("clearance_gap = 1\nreview_days", "review_days").encode())
    assert strict.rules.break_glass.clearance_gap == 0
    assert decide(strict, replace(GLASS, clearance=2)).reason == "BREAK_GLASS_CLEARANCE"
    assert decide(strict, replace(GLASS, clearance=3)).reason == "GRANTED_BREAK_GLASS"
    # without break-glass the same request waits for a second person instead
    assert decide(strict, replace(BASE, clearance=2)).reason == "APPROVAL_REQUIRED"


def test_break_glass_defaults_are_finite():
    block = (
        "[break_glass]\nmax_uses = 2\nwindow_seconds = 86400\ncooldown_seconds = 60\n"
        "clearance_gap = 1\nreview_days = 2\n"
    )
    assert block in POLICY
    rules = parse_policy(POLICY.replace(block, "").encode()).rules.break_glass
    assert (rules.max_uses, rules.cooldown_seconds, rules.clearance_gap) == (2, 3600, 0)
    assert rules.review_days == 3


@pytest.mark.parametrize(
    ("approver", "reason"),
    [
        (MANAGER, None),
        (replace(MANAGER, approver_id=BASE.professional_id), "SELF_APPROVAL"),
        (replace(MANAGER, active=False), "PROFESSIONAL_INACTIVE"),
        (replace(MANAGER, role="social_worker"), "APPROVER_NOT_PERMITTED"),
        (replace(MANAGER, clearance=2), "APPROVER_CLEARANCE_LOW"),
    ],
)
def test_approver_checks(approver, reason):
    assert check_approver(P, BASE.professional_id, approver, 3) == reason


def test_invalid_approvals_do_not_count():
    facts = replace(
        BASE,
        purpose_code="CASE_ALLOCATION",
        approvals=(
            replace(MANAGER, approver_id=BASE.professional_id),
            replace(MANAGER, clearance=1),
        ),
    )
    assert decide(P, facts).kind == "pending"


def test_the_policy_hash_is_of_the_exact_file_bytes():
    import hashlib

    assert P.sha256 == hashlib.sha256(POLICY.encode()).hexdigest()
    assert P.version == "1.2.0"
    assert parse_policy((POLICY + "\n").encode()).sha256 != P.sha256


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('version = "1.2.0"', 'version = "v1 by Jane"'), "version"),
        (lambda t: t.replace("[purposes.SAFEGUARDING]", "[purposes.safeguarding]"), "purposes"),
        (
            lambda t: t.replace(
                'roles = ["social_worker", "team_manager"]\n\n[purposes.CASE',
                'roles = ["nobody"]\n\n[purposes.CASE',
            ),
            "unknown role",
        ),
        (lambda t: t.replace("min_chars = 10", "min_chars = 500"), "min_chars"),
        (lambda t: t + "\n[surprise]\nx = 1\n", "surprise"),
        (lambda t: t.replace("[policy]", "[policy"), "TOML"),
        (
            lambda t: t.replace("break_glass = true\n", "break_glass = true\nreview_days = 7\n"),
            "set once for all purposes",
        ),
        (lambda t: t.replace("max_uses = 2", "max_uses = 0"), "max_uses"),
    ],
)
def test_bad_policy_files_are_refused_naming_the_problem(edit, message):
    with pytest.raises(ConfigError, match=message):
        parse_policy(edit(POLICY).encode(), "policy.toml")


def test_a_purpose_closed_to_the_role_is_refused():
    text = POLICY.replace(
        '[purposes.SAFEGUARDING]\ndescription = "Child safeguarding enquiry"\n'
        'roles = ["social_worker", "team_manager"]',
        '[purposes.SAFEGUARDING]\ndescription = "Child safeguarding enquiry"\n'
        'roles = ["team_manager"]',
    )
    policy = parse_policy(text.encode())
    assert decide(policy, BASE).reason == "PURPOSE_NOT_FOR_ROLE"
    assert decide(policy, replace(BASE, role="team_manager")).reason == "GRANTED"
