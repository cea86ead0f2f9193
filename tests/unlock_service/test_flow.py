"""End to end in-process: request, decide, log, release; every refusal; approval;
break-glass review; fail-closed audit; no identity stored or logged."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from audit_log import parse_leaf, verify_tlog_proof
from audit_log._store import entries
from protocols import reason_text
from unlock_service import open_release
from unlock_service._auth import SIGNATURE_HEADER

from ._factories import IDENTITIES, NEEDLES, b64

WHY = "child seen with injuries at school"


def _entries(env, request_id=None):
    with env.service.audit.engine.connect() as c:
        rows = c.execute(sa.select(entries.c.leaf_data).order_by(entries.c.idx)).all()
    out = [parse_leaf(bytes(r.leaf_data)).entry for r in rows]
    if request_id is not None:
        out = [e for e in out if getattr(e, "request_id", None) == request_id]
    return out


def test_grant_releases_sealed_identities_with_a_verifiable_receipt(env):
    pro = env.add_pro("social_worker", clearance=5)
    family = env.add_family(members=2, clearance=3)
    response = env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "released" and body["identity_count"] == 2
    identities = open_release(body["sealed_identities"], pro.key, body["request_id"])
    assert {i.family_name for i in identities} == {"Quarrington"}
    assert {i.given_names for i in identities} == {
        IDENTITIES[0]["given_names"],
        IDENTITIES[1]["given_names"],
    }
    leaf = parse_leaf(body["leaf"].encode())
    assert leaf.index == body["audit_index"]
    assert leaf.entry.type == "decision" and leaf.entry.decision == "granted"
    assert leaf.entry.reason_code == "GRANTED"
    assert leaf.entry.policy_version == "1.2.0"
    assert leaf.entry.policy_sha256 == env.service.policy.sha256
    # the receipt is a C2SP tlog-proof of exactly that leaf against a signed checkpoint
    verify_tlog_proof(body["receipt"], body["leaf"].encode(), env.service.audit.verifier)
    logged = _entries(env, body["request_id"])
    assert [e.type for e in logged] == ["unlock_request", "decision"]
    request = logged[0]
    assert request.purpose_code == "SAFEGUARDING"
    assert request.attestation_sha256 == _row(env, body["request_id"])["attestation_sha256"]
    # the blobs were fetched only after the decision was logged
    assert env.linkage.calls[-1].endswith("/blobs")


def _row(env, request_id):
    from unlock_service._store import get_request, transaction
    from unlock_service._views import request_view

    with transaction(env.service.engine) as c:
        return request_view(get_request(c, request_id)).model_dump(mode="json")


def test_the_release_cannot_be_opened_by_another_professional(env):
    pro, other = env.add_pro(), env.add_pro()
    family = env.add_family()
    body = env.client(pro).unlock(family, "SAFEGUARDING", WHY).json()
    from unlock_service import ReleaseError

    with pytest.raises(ReleaseError):
        open_release(body["sealed_identities"], other.key, body["request_id"])


# --- refusals: each logged with its reason, nothing released ------------------------------


def _refused(env, response, reason, status=403):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason
    decision = _entries(env, body["request_id"])[-1]
    assert decision.type == "decision" and decision.decision == "refused"
    assert decision.reason_code == reason
    assert not [c for c in env.linkage.calls if c.endswith("/blobs")], "blobs fetched"
    return body


@pytest.mark.parametrize(
    ("purpose", "why", "reason"),
    [
        ("SHOPPING", WHY, "PURPOSE_NOT_LISTED"),
        ("SAFEGUARDING", "too short", "JUSTIFICATION_MISSING"),
        ("SAFEGUARDING", "x" * 201, "JUSTIFICATION_TOO_LONG"),
    ],
)
def test_purpose_and_justification_are_checked(env, purpose, why, reason):
    pro = env.add_pro()
    family = env.add_family()
    _refused(env, env.client(pro).unlock(family, purpose, why), reason)


def test_the_justification_is_logged_only_as_a_hash(env):
    pro = env.add_pro()
    body = env.client(pro).unlock(env.add_family(), "SAFEGUARDING", WHY).json()
    request = _entries(env, body["request_id"])[0]
    import hashlib

    assert request.justification_sha256 == hashlib.sha256(WHY.encode()).hexdigest()
    assert WHY not in json.dumps([e.model_dump(mode="json") for e in _entries(env)])


def test_a_role_that_may_not_request_is_refused(env):
    ig = env.add_pro("ig_officer", 9)
    _refused(
        env, env.client(ig).unlock(env.add_family(), "SAFEGUARDING", WHY), "ROLE_NOT_PERMITTED"
    )


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda env: env.add_family(below_threshold=True), "BELOW_THRESHOLD"),
        (lambda env: "fam_" + "0" * 16, "FAMILY_UNKNOWN"),
        (
            lambda env: (
                env.linkage.superseded.setdefault("fam_" + "2" * 16, [env.add_family()])
                and "fam_" + "2" * 16
            ),
            "FAMILY_SUPERSEDED",
        ),
        (
            lambda env: env.add_family(assessed=env.clock() - dt.timedelta(days=31)),
            "ATTESTATION_STALE",
        ),
        (
            lambda env: env.add_family(assessed=env.clock() + dt.timedelta(days=2)),
            "ATTESTATION_FUTURE",
        ),
        (lambda env: env.add_family(tamper=True), "ATTESTATION_FORGED"),
        (
            lambda env: env.add_family(key=SigningKey(b"k" * 32)),
            "ATTESTATION_WRONG_KEY",
        ),
        (lambda env: env.add_family(about="fam_" + "1" * 16), "ATTESTATION_WRONG_FAMILY"),
    ],
    ids=[
        "below",
        "unknown",
        "superseded",
        "stale",
        "future",
        "forged",
        "wrong-key",
        "other-family",
    ],
)
def test_attestation_problems_are_refused(env, setup, reason):
    pro = env.add_pro()
    family = setup(env)
    _refused(env, env.client(pro).unlock(family, "SAFEGUARDING", WHY), reason)


def test_while_the_linkage_key_is_rotated_attestations_by_either_pinned_key_release(
    make_env, tmp_path
):
    # the rotation in docs/operations.md: the new key is linkage_public_key_file,
    # the one being retired linkage_previous_public_key_file
    old = SigningKey(b"o" * 32)
    (tmp_path / "previous-linkage.pub").write_text(b64(bytes(old.verify_key)))
    env = make_env(linkage_previous_public_key_file=tmp_path / "previous-linkage.pub")
    pro = env.add_pro()
    for key in (None, old):  # the pinned (new) key, then the previous one
        response = env.client(pro).unlock(env.add_family(key=key), "SAFEGUARDING", WHY)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "released"
    other = env.add_family(key=SigningKey(b"k" * 32))
    env.linkage.calls.clear()  # the two releases fetched their blobs
    _refused(env, env.client(pro).unlock(other, "SAFEGUARDING", WHY), "ATTESTATION_WRONG_KEY")


def test_linkage_service_down_is_a_logged_refusal(env):
    pro = env.add_pro()
    family = env.add_family()
    env.linkage.down = True
    _refused(env, env.client(pro).unlock(family, "SAFEGUARDING", WHY), "LINKAGE_UNAVAILABLE")


def test_clearance_too_far_below_is_refused(env):
    pro = env.add_pro(clearance=2)
    family = env.add_family(clearance=4)  # gap 2 > policy gap 1
    _refused(env, env.client(pro).unlock(family, "SAFEGUARDING", WHY), "CLEARANCE_INSUFFICIENT")


def test_rate_limit_is_persisted_and_answers_429(env):
    pro = env.add_pro()
    family = env.add_family()
    client = env.client(pro)
    for _ in range(5):
        assert client.unlock(family, "SAFEGUARDING", WHY).status_code == 200
    env.linkage.calls.clear()
    body = _refused(env, client.unlock(family, "SAFEGUARDING", WHY), "RATE_LIMITED", 429)
    assert body["audit_index"] is not None
    # the count lives in the database: a fresh service instance sees it too
    from unlock_service._store import count_recent_requests, transaction

    with transaction(env.service.engine) as c:
        assert count_recent_requests(c, pro.professional_id, 0, 2**62) == 6
    env.clock.advance(3601)
    assert client.unlock(family, "SAFEGUARDING", WHY).status_code == 200


def test_opt_out_is_checked_in_real_time(env):
    pro, ig = env.add_pro(), env.add_pro("ig_officer", 9)
    family = env.add_family()
    r = env.client(ig).call("POST", "/restrictions", {"family_id": family, "flag": "OPT_OUT"})
    assert r.status_code == 200, r.text
    _refused(env, env.client(pro).unlock(family, "SAFEGUARDING", WHY), "FAMILY_OPTED_OUT")
    r = env.client(ig).call("POST", f"/restrictions/{family}/lift", {"note": "consent given"})
    assert r.status_code == 200 and r.json()["reason"] == "OPT_OUT_REMOVED"
    assert env.client(pro).unlock(family, "SAFEGUARDING", WHY).status_code == 200
    kinds = [e.reason_code for e in _entries(env) if e.type == "restriction"]
    assert kinds == ["OPT_OUT_ADDED", "OPT_OUT_REMOVED"]


def test_flags_reach_the_linkage_service_now_or_at_the_next_housekeeping(env):
    ig = env.add_pro("ig_officer", 9)
    family, other = env.add_family(), env.add_family()
    r = env.client(ig).call("POST", "/restrictions", {"family_id": family, "flag": "OPT_OUT"})
    assert r.status_code == 200 and r.json()["linkage_synced"] is True
    assert env.linkage.restrictions == {family: "OPT_OUT"}
    env.linkage.down = True  # missed: recorded here (release stops), sent later
    r = env.client(ig).call("POST", "/restrictions", {"family_id": other, "flag": "RESTRICTED"})
    assert r.status_code == 200 and r.json()["linkage_synced"] is False
    r = env.client(ig).call("POST", f"/restrictions/{family}/lift", {"note": "consent given"})
    assert r.status_code == 200
    env.linkage.down = False
    assert env.service.sync_restrictions() == 2
    assert env.linkage.restrictions == {other: "RESTRICTED"}
    assert env.service.sync_restrictions() == 0


def test_only_ig_may_set_flags(env):
    pro = env.add_pro()
    r = env.client(pro).call(
        "POST", "/restrictions", {"family_id": env.add_family(), "flag": "RESTRICTED"}
    )
    assert r.status_code == 403


def test_malformed_requests_are_refused_before_any_work(env):
    pro = env.add_pro()
    client = env.client(pro)
    assert (
        client.call(
            "POST",
            "/unlocks",
            {"family_id": "Jane Smith", "purpose_code": "SAFEGUARDING", "justification": WHY},
        ).status_code
        == 422
    )
    big = {
        "family_id": env.add_family(),
        "purpose_code": "SAFEGUARDING",
        "justification": "x" * 70_000,
    }
    r = client.call("POST", "/unlocks", big)
    assert r.status_code == 413 and r.json()["reason"] == "BODY_TOO_LARGE"


# --- authentication abuse ----------------------------------------------------------------


def test_authentication_failures_are_refused_logged_and_release_nothing(env, caplog):
    pro, other = env.add_pro(), env.add_pro()
    family = env.add_family()
    body = {"family_id": family, "purpose_code": "SAFEGUARDING", "justification": WHY}
    caplog.set_level(logging.INFO)

    def reason(response):
        assert response.status_code == 401, response.text
        return response.json()["reason"]

    # expired token
    stale = env.token(pro, lifetime=60)
    env.clock.advance(120)
    assert reason(env.client(pro, token=stale).call("POST", "/unlocks", body)) == "TOKEN_EXPIRED"
    # forged token: signed by another key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from unlock_service import TokenIssuer

    forger = TokenIssuer(Ed25519PrivateKey.generate(), env.issuer.issuer, env.issuer.audience)
    forged = forger.issue(pro.professional_id, bytes(pro.key.verify_key), now=env.clock.timestamp())
    assert reason(env.client(pro, token=forged).call("POST", "/unlocks", body)) == "TOKEN_FORGED"
    # a token for one professional used with another's key
    token = env.token(pro)
    assert reason(env.client(pro, token=token, key=other.key).call("POST", "/unlocks", body)) == (
        "SIGNATURE_INVALID"
    )
    # a token minted for pro but bound to other's key
    bound = env.token(pro, key=bytes(other.key.verify_key))
    assert reason(env.client(pro, token=bound, key=other.key).call("POST", "/unlocks", body)) == (
        "TOKEN_KEY_MISMATCH"
    )
    # over-long token lifetime
    long = env.token(pro, lifetime=3600)
    assert reason(env.client(pro, token=long).call("POST", "/unlocks", body)) == "TOKEN_TOO_LONG"
    # no signature, no token
    raw = env.http.post("/unlocks", json=body, headers={"Authorization": f"Bearer {token}"})
    assert reason(raw) == "SIGNATURE_MISSING"
    assert reason(env.http.post("/unlocks", json=body)) == "TOKEN_MISSING"
    # replay: capture a signed request and send it twice
    content = json.dumps(body).encode()
    from unlock_service import sign_request

    headers = {
        "Authorization": f"Bearer {token}",
        SIGNATURE_HEADER: sign_request(
            pro.key, "POST", "/unlocks", content, token, now=env.clock.timestamp()
        ),
        "Content-Type": "application/json",
    }
    first = env.http.post("/unlocks", content=content, headers=headers)
    assert first.status_code == 200
    assert reason(env.http.post("/unlocks", content=content, headers=headers)) == "REPLAYED"
    # an altered body under a captured signature
    headers[SIGNATURE_HEADER] = sign_request(
        pro.key, "POST", "/unlocks", content, token, now=env.clock.timestamp()
    )
    altered = content.replace(b"SAFEGUARDING", b"EMERGENCY\x20\x20\x20")
    assert (
        reason(env.http.post("/unlocks", content=altered, headers=headers)) == "SIGNATURE_INVALID"
    )
    # stale signature time
    env_ts = env.clock.timestamp()
    headers[SIGNATURE_HEADER] = sign_request(
        pro.key, "POST", "/unlocks", content, token, now=env_ts - 300
    )
    assert reason(env.http.post("/unlocks", content=content, headers=headers)) == "SIGNATURE_STALE"
    refusals = [r.getMessage() for r in caplog.records if r.name == "unlock_service.api"]
    assert refusals.count("authentication refused") >= 9
    # only the one genuine request reached the linkage service's blobs
    assert sum(c.endswith("/blobs") for c in env.linkage.calls) == 1


def test_a_deactivated_professional_cannot_authenticate(env):
    from unlock_service import set_active

    pro = env.add_pro()
    set_active(
        env.service.engine,
        env.service.audit,
        env.service.policy,
        actor_id=env.admin.professional_id,
        professional_id=pro.professional_id,
        active=False,
    )
    r = env.client(pro).unlock(env.add_family(), "SAFEGUARDING", WHY)
    assert r.status_code == 401 and r.json()["reason"] == "PROFESSIONAL_INACTIVE"


# --- grants: single use, expiry ---------------------------------------------------------


def _pending(env, requester, family, purpose="CASE_ALLOCATION"):
    r = env.client(requester).unlock(family, purpose, WHY)
    assert r.status_code == 202, r.text
    assert r.json()["reason"] == "APPROVAL_REQUIRED"
    return r.json()["request_id"]


def test_second_person_approval_then_single_use_release(env):
    requester = env.add_pro("social_worker", 5)
    manager = env.add_pro("team_manager", 5)
    family = env.add_family(clearance=3)
    request_id = _pending(env, requester, family)
    assert not [c for c in env.linkage.calls if c.endswith("/blobs")]
    # the requester cannot redeem before approval
    assert env.client(requester).release(request_id).json()["reason"] == "NOT_GRANTED"
    r = env.client(manager).approve(request_id)
    assert r.status_code == 200 and r.json() == {
        "request_id": request_id,
        "status": "granted",
        "reason": "GRANTED_WITH_APPROVAL",
        "reason_text": reason_text("GRANTED_WITH_APPROVAL"),
    }
    # only the requester may redeem, once
    assert env.client(manager).release(request_id).status_code == 403
    first = env.client(requester).release(request_id)
    assert first.status_code == 200, first.text
    assert open_release(first.json()["sealed_identities"], requester.key, request_id)
    again = env.client(requester).release(request_id)
    assert again.status_code == 409 and again.json()["reason"] == "GRANT_USED"
    kinds = [(e.type, getattr(e, "reason_code", None)) for e in _entries(env, request_id)]
    assert kinds == [
        ("unlock_request", None),
        ("approval", "APPROVED"),
        ("decision", "GRANTED_WITH_APPROVAL"),
    ]


def test_a_grant_whose_attestation_was_superseded_is_not_released(env):
    requester = env.add_pro("social_worker", 5)
    manager = env.add_pro("team_manager", 5)
    family = env.add_family(clearance=3)
    request_id = _pending(env, requester, family)
    assert env.client(manager).approve(request_id).status_code == 200
    # a new assessment signs a new attestation before the requester redeems the grant
    old = env.linkage.families[family]
    refs = [(m.agency_id, m.record_ref) for m in old.signed.attestation.members]
    old.signed = env.linkage.attest(family, refs, clearance=3, assessed=env.clock())
    r = env.client(requester).release(request_id)
    assert r.status_code == 409, r.text
    assert r.json()["reason"] == "ATTESTATION_NOT_CURRENT" and "sealed_identities" not in r.text
    assert _row(env, request_id)["status"] == "granted"  # the claim was given back


def test_self_approval_and_unqualified_approvers_are_refused_and_logged(env):
    requester = env.add_pro("team_manager", 5)  # may approve, but not their own request
    worker = env.add_pro("social_worker", 9)  # role may not approve
    low = env.add_pro("team_manager", 2)  # clearance below the family's requirement
    family = env.add_family(clearance=3)
    request_id = _pending(env, requester, family)
    for who, reason in (
        (requester, "SELF_APPROVAL"),
        (worker, "APPROVER_NOT_PERMITTED"),
        (low, "APPROVER_CLEARANCE_LOW"),
    ):
        r = env.client(who).approve(request_id)
        assert r.status_code == 403 and r.json()["reason"] == reason
    logged = [
        (e.type, e.decision, e.reason_code)
        for e in _entries(env, request_id)
        if e.type == "approval"
    ]
    assert logged == [
        ("approval", "refused", "SELF_APPROVAL"),
        ("approval", "refused", "APPROVER_NOT_PERMITTED"),
        ("approval", "refused", "APPROVER_CLEARANCE_LOW"),
    ]
    assert _row(env, request_id)["status"] == "pending"


def test_a_clearance_gap_needs_approval_and_a_decline_refuses(env):
    requester = env.add_pro("social_worker", 3)
    manager = env.add_pro("team_manager", 6)
    family = env.add_family(clearance=4)  # gap of 1: allowed with approval
    request_id = _pending(env, requester, family, "SAFEGUARDING")
    r = env.client(manager).approve(request_id, approve=False)
    assert r.json()["status"] == "refused"
    assert _entries(env, request_id)[-1].reason_code == "APPROVAL_DECLINED"
    assert env.client(requester).release(request_id).status_code == 409


def test_attestation_freshness_follows_the_cycle_cadence(make_env):
    from ._factories import POLICY

    env = make_env(policy=POLICY.replace("max_age_days = 30\n", ""))
    requester, manager = env.add_pro(), env.add_pro("team_manager", 6)
    # quarterly cycles: the latest cycle was assessed 80 days ago; still valid
    family = env.add_family(assessed=env.clock() - dt.timedelta(days=80))
    r = env.client(requester).unlock(family, "SAFEGUARDING", WHY)
    assert r.status_code == 200, r.text
    # a request waiting for approval when a new cycle is assessed: still above
    # the threshold, but the request's attestation is no longer the latest
    request_id = _pending(env, requester, family)
    refs = [(b.agency_id, b.record_ref) for b in env.linkage.families[family].blobs]
    env.linkage.families[family].signed = env.linkage.attest(
        family, refs, assessed=env.clock() - dt.timedelta(hours=1), cycle=5
    )
    r = env.client(manager).approve(request_id)
    assert r.json()["reason"] == "ATTESTATION_STALE", r.text
    # asked again, the request carries the latest cycle's attestation
    request_id = _pending(env, requester, family)
    assert env.client(manager).approve(request_id).json()["status"] == "granted"
    # below the threshold at the latest cycle: nothing to approve
    request_id = _pending(env, requester, family)
    env.linkage.families[family].signed = None
    assert env.client(manager).approve(request_id).json()["reason"] == "BELOW_THRESHOLD"


def test_pending_requests_and_grants_expire(env):
    requester, manager = env.add_pro(), env.add_pro("team_manager", 6)
    family = env.add_family()
    request_id = _pending(env, requester, family)
    env.clock.advance(3601)
    r = env.client(manager).approve(request_id)
    assert r.status_code == 410 and r.json()["reason"] == "REQUEST_EXPIRED"
    request_id = _pending(env, requester, family)
    assert env.client(manager).approve(request_id).json()["status"] == "granted"
    env.clock.advance(601)
    r = env.client(requester).release(request_id)
    assert r.status_code == 410 and r.json()["reason"] == "GRANT_EXPIRED"


def test_an_opt_out_after_the_grant_stops_the_release(env):
    requester, manager, ig = (
        env.add_pro(),
        env.add_pro("team_manager", 6),
        env.add_pro("ig_officer", 9),
    )
    family = env.add_family()
    request_id = _pending(env, requester, family)
    env.client(manager).approve(request_id)
    env.client(ig).call("POST", "/restrictions", {"family_id": family, "flag": "RESTRICTED"})
    r = env.client(requester).release(request_id)
    assert r.status_code == 403 and r.json()["reason"] == "FAMILY_RESTRICTED"
    # the grant is closed by an expiry entry naming the flag; the request keeps one decision
    last = _entries(env, request_id)[-1]
    assert last.type == "expiry" and last.reason_code == "FAMILY_RESTRICTED"
    assert [e.type for e in _entries(env, request_id)].count("decision") == 1
    assert _row(env, request_id)["status"] == "refused"


# --- break-glass and review --------------------------------------------------------------


def test_break_glass_releases_and_opens_a_review_that_ig_closes(env):
    pro, ig = env.add_pro("social_worker", 3), env.add_pro("ig_officer", 9)
    family = env.add_family(clearance=4)  # would need approval; break-glass replaces it
    r = env.client(pro).unlock(family, "SAFEGUARDING", WHY, break_glass=True)
    assert r.status_code == 403 and r.json()["reason"] == "BREAK_GLASS_NOT_ALLOWED"
    r = env.client(pro).unlock(family, "EMERGENCY", WHY, break_glass=True)
    assert r.status_code == 200, r.text
    request_id = r.json()["request_id"]
    kinds = [e.type for e in _entries(env, request_id)]
    assert kinds == ["unlock_request", "break_glass", "decision"]
    assert _entries(env, request_id)[-1].break_glass is True
    reviews = env.client(ig).call("GET", "/reviews").json()["reviews"]
    assert [x["request_id"] for x in reviews] == [request_id]
    due = dt.datetime.fromisoformat(reviews[0]["due_at"]) - dt.datetime.fromisoformat(
        reviews[0]["opened_at"]
    )
    assert due == dt.timedelta(days=2)  # review_days = 2 for EMERGENCY
    # the professional cannot review themselves or list reviews
    assert env.client(pro).call("GET", "/reviews").status_code == 403
    r = env.client(ig).call(
        "POST", f"/reviews/{request_id}", {"outcome": "upheld", "notes": "risk to life was real"}
    )
    assert r.status_code == 200 and r.json()["outcome"] == "upheld"
    review = _entries(env, request_id)[-1]
    assert review.type == "review" and review.reviewer_id == ig.professional_id
    again = env.client(ig).call(
        "POST", f"/reviews/{request_id}", {"outcome": "upheld", "notes": ""}
    )
    assert again.status_code == 409
    assert env.client(ig).call("GET", "/reviews").json()["reviews"] == []
    # every IG read was itself audited
    reads = [e.reason_code for e in _entries(env) if e.type == "ig_access"]
    assert reads == ["REVIEWS_LISTED", "REVIEWS_LISTED"]


def test_break_glass_has_its_own_cap_cool_down_and_anomaly(make_env, tmp_path):
    from protocols import new_token, token_digest
    from unlock_service._config import write_secret

    ig_token = new_token()
    token_file = tmp_path / "audit-tokens"
    write_secret(token_file, f"{token_digest(ig_token).hex()} ig_officer ig\n")
    env = make_env(audit_token_file=token_file)
    pro = env.add_pro("social_worker", 3)
    families = [env.add_family(clearance=3) for _ in range(4)]

    def glass(family):
        return env.client(pro).unlock(family, "EMERGENCY", WHY, break_glass=True)

    assert glass(families[0]).status_code == 200
    r = glass(families[1])  # within the 60 s cool-down
    assert r.status_code == 403 and r.json()["reason"] == "BREAK_GLASS_COOLDOWN"
    env.clock.advance(61)
    assert glass(families[1]).status_code == 200
    env.clock.advance(61)
    r = glass(families[2])  # max_uses = 2 per day, although the rate limit (5) has room
    assert r.status_code == 403 and r.json()["reason"] == "BREAK_GLASS_LIMIT"
    # (the clearance ceiling is covered in test_policy: this policy's ceiling equals
    # its approval gap)
    # every break-glass use is an anomaly at once; unreviewed ones after the policy's
    # review_days (2), not a separate default
    headers = {"Authorization": f"Bearer {ig_token}"}
    report = env.http.get("/audit/reports/anomalies", headers=headers).json()["anomalies"]
    used = [a for a in report if a["kind"] == "break_glass_unlock"]
    assert [a["professional_id"] for a in used] == [pro.professional_id] * 2
    mounted = next(r for r in env.app.routes if getattr(r, "path", "") == "/audit")
    assert mounted.app.state.settings.break_glass_review_days == 2


def test_ig_lists_a_professionals_unlocks_and_the_read_is_audited(env):
    pro, ig = env.add_pro(), env.add_pro("ig_officer", 9)
    env.client(pro).unlock(env.add_family(), "SAFEGUARDING", WHY)
    env.client(pro).unlock(env.add_family(), "SHOPPING", WHY)
    r = env.client(ig).call("GET", f"/professionals/{pro.professional_id}/unlocks")
    assert sorted(x["status"] for x in r.json()["requests"]) == ["refused", "released"]
    access = [e for e in _entries(env) if e.type == "ig_access"][-1]
    assert access.reason_code == "UNLOCKS_LISTED" and access.professional_id == pro.professional_id
    assert (
        env.client(pro).call("GET", f"/professionals/{pro.professional_id}/unlocks").status_code
        == 403
    )


# --- fail closed -------------------------------------------------------------------------


def test_nothing_is_released_when_the_audit_append_fails(env):
    pro = env.add_pro()
    family = env.add_family()
    with env.service.audit.engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TRIGGER fail_insert BEFORE INSERT ON entries "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        )
    r = env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    assert r.status_code == 503 and r.json()["reason"] == "AUDIT_UNAVAILABLE"
    assert "sealed_identities" not in r.text
    assert not [c for c in env.linkage.calls if c.endswith("/blobs")]
    rows = _row(env, _only_request(env))
    assert rows["status"] == "audit_failed"
    with env.service.audit.engine.begin() as c:
        c.execute(sa.text("DROP TRIGGER fail_insert"))
    assert env.client(pro).unlock(family, "SAFEGUARDING", WHY).status_code == 200


def _beside_the_service(env):
    """What an administrative command opens: its own engine and audit log on the
    running service's databases (``unlock-service keys rotate``, ``professional``)."""
    from audit_log import AuditLog
    from unlock_service._config import load_audit_signer
    from unlock_service._store import open_engine

    engine = open_engine(env.settings.database_url)
    return engine, AuditLog.open(
        env.settings.audit_database_url, load_audit_signer(env.settings.audit_key_file)
    )


@pytest.fixture
def both_env(make_env, db_urls):
    return make_env(*db_urls)


def test_an_audited_command_beside_the_running_service_refuses_nobody(both_env, tmp_path):
    from audit_log._cli import main as audit_log_main
    from unlock_service import _admin as admin

    env = both_env
    pro = env.add_pro()
    first = env.client(pro).unlock(env.add_family(), "SAFEGUARDING", WHY)
    assert first.status_code == 200, first.text
    engine, audit = _beside_the_service(env)
    try:
        admin.rotate_sealing_key(
            engine,
            audit,
            env.service.policy,
            actor_id=env.admin.professional_id,
            directory=env.settings.seal_key_dir,
        )
        admin.set_clearance(
            engine,
            audit,
            env.service.policy,
            actor_id=env.admin.professional_id,
            professional_id=pro.professional_id,
            clearance=6,
        )
    finally:
        audit.close()
        engine.dispose()
    second = env.client(pro).unlock(env.add_family(), "SAFEGUARDING", WHY)
    assert second.status_code == 200, second.text
    body = second.json()
    verify_tlog_proof(body["receipt"], body["leaf"].encode(), env.service.audit.verifier)
    logged = _entries(env)
    assert [e.type for e in logged][-6:] == [
        "unlock_request",
        "decision",  # the first unlock
        "key_rotation",  # the two commands, appended behind the service
        "professional_change",
        "unlock_request",
        "decision",  # the second unlock, appended after them
    ]
    decisions = [e for e in logged if e.type == "decision"]
    assert [d.request_id for d in decisions] == [first.json()["request_id"], body["request_id"]]
    vkey = tmp_path / "audit.vkey"
    vkey.write_text(env.service.audit.verifier.vkey + "\n")
    url = env.settings.audit_database_url
    assert audit_log_main(["verify-db", "--db", url, "--vkey", str(vkey)]) == 0


def test_a_garbled_row_behind_the_service_refuses_the_unlock_and_says_why(env, caplog):
    from audit_log import _store as audit_store
    from audit_log._entries import leaf_bytes

    pro = env.add_pro()
    family = env.add_family()
    size = env.service.audit.size
    data = leaf_bytes(size, dt.datetime.now(dt.UTC), _entries(env)[0])
    row = {**_columns(_entries(env)[0]), "idx": size, "leaf_data": data}
    row.update(leaf_hash=b"\x00" * 32, created_at=audit_store.now_micros())
    audit_store.insert_entries(env.service.audit.engine, [row])
    with caplog.at_level(logging.ERROR, logger="unlock_service"):
        r = env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    assert r.status_code == 503 and r.json()["reason"] == "AUDIT_UNAVAILABLE"
    assert "sealed_identities" not in r.text
    assert not [c for c in env.linkage.calls if c.endswith("/blobs")]
    assert _row(env, _only_request(env))["status"] == "audit_failed"
    (failed,) = [x for x in caplog.records if x.getMessage().startswith("audit append failed")]
    assert failed.error == "TamperError"
    assert f"entry {size}" in failed.detail and "does not match its stored leaf hash" in (
        failed.detail
    )
    assert env.service.audit.size == size  # nothing adopted, nothing appended after it


def test_housekeeping_says_why_the_checkpoint_failed(env, caplog, monkeypatch):
    from audit_log import WitnessError
    from unlock_service._api import _housekeeping

    why = (
        "checkpoint of size 13 is signed but not published: 0 of 1 required cosignatures; "
        "ig (http://127.0.0.1:9): witness has seen size 20, larger than this log's 13"
    )

    def refused() -> str:
        raise WitnessError(why + "\n[a second line is dropped]", status=503)

    monkeypatch.setattr(env.service.audit, "checkpoint", refused)
    with caplog.at_level(logging.WARNING, logger="unlock_service"):
        _housekeeping(env.service, 60)._task()
    (line,) = [r for r in caplog.records if r.getMessage() == "housekeeping failed"]
    assert line.error == "WitnessError" and line.detail == why


def _columns(entry):
    from audit_log._entries import entry_columns

    return entry_columns(entry)


def _only_request(env):
    from unlock_service._store import requests, transaction

    with transaction(env.service.engine) as c:
        return c.execute(sa.select(requests.c.request_id)).scalar_one()


# --- subject access, audit endpoints -----------------------------------------------------


def test_malformed_ids_in_paths_are_422_not_500(env):
    ig = env.add_pro("ig_officer", 9)
    client = env.client(ig)
    for method, path, body in [
        ("GET", "/professionals/not-a-professional/unlocks", None),
        ("GET", "/unlocks/req_x", None),
        ("POST", "/unlocks/1/approvals", {"decision": "approve"}),
        ("POST", "/unlocks/req_/release", None),
        ("POST", "/reviews/x", {"outcome": "upheld", "notes": ""}),
        ("POST", "/restrictions/fam_zz/lift", {"note": ""}),
    ]:
        r = client.call(method, path, body)
        assert r.status_code == 422, (path, r.text)
    # nothing about them reached the audit log
    assert [e for e in _entries(env) if e.type == "ig_access"] == []


def test_the_api_schema_needs_a_signed_request_and_there_is_no_docs_page(env):
    pro = env.add_pro()
    assert env.http.get("/openapi.json").status_code == 401
    r = env.client(pro).call("GET", "/openapi.json")
    assert r.status_code == 200 and "/unlocks" in r.json()["paths"]
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert env.http.get(page).status_code == 404


def test_audit_read_endpoints_are_served_from_the_same_log(make_env, tmp_path):
    from protocols import new_token, token_digest
    from unlock_service._config import write_secret

    reader = new_token()
    token_file = tmp_path / "audit-tokens"
    write_secret(token_file, f"{token_digest(reader).hex()} reader monitor\n")
    env = make_env(audit_token_file=token_file)
    pro = env.add_pro()
    body = env.client(pro).unlock(env.add_family(), "SAFEGUARDING", WHY).json()
    headers = {"Authorization": f"Bearer {reader}"}
    cp = env.http.get("/audit/checkpoint", headers=headers)
    assert cp.status_code == 200 and cp.text.startswith("unlock.test/audit\n")
    receipt = env.http.get(f"/audit/receipts/{body['audit_index']}", headers=headers)
    assert receipt.status_code == 200
    verify_tlog_proof(receipt.text, body["leaf"].encode(), env.service.audit.verifier)
    assert env.http.get("/audit/checkpoint").status_code == 401
    # nothing can append through the mounted app: no token has the writer role
    assert env.http.post("/audit/entries", json={}, headers=headers).status_code == 403


# --- no identity at rest or in logs ------------------------------------------------------


def test_no_identity_is_written_to_the_databases_or_the_logs(env, caplog):
    caplog.set_level(logging.DEBUG)
    pro, manager, ig = env.add_pro(), env.add_pro("team_manager", 6), env.add_pro("ig_officer", 9)
    family = env.add_family(members=3, persons=[0, 0, 1])
    answers = []  # every answer body, with the sealed release taken out
    first = env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    assert first.status_code == 200 and first.json()["person_count"] == 2
    answers.append(first)
    request_id = _pending(env, pro, family)
    answers.append(env.client(manager).approvals())
    answers.append(env.client(manager).approve(request_id))
    released = env.client(pro).release(request_id)
    assert released.status_code == 200
    answers.append(released)
    assert env.client(pro).unlock(family, "EMERGENCY", WHY, break_glass=True).status_code == 200
    answers.append(env.client(ig).call("GET", "/reviews"))
    answers.append(env.client(pro).requests())
    answers.append(env.client(pro).request(request_id))
    answers.append(env.client(ig).call("GET", f"/professionals/{pro.professional_id}/unlocks"))
    outside = []
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        body.pop("sealed_identities", None)
        outside.append(json.dumps(body))
    for needle in NEEDLES:
        assert not [a for a in outside if needle in a], f"{needle} answered outside the seal"
    dumped = []
    for engine in (env.service.engine, env.service.audit.engine):
        with engine.connect() as c:
            for table in sa.inspect(engine).get_table_names():
                for row in c.execute(sa.text(f'SELECT * FROM "{table}"')):
                    dumped.append(repr(tuple(row)))
    text = "\n".join(dumped)
    assert "Quarrington" not in text  # sanity: this is what we look for
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for needle in NEEDLES:
        assert needle not in text, f"{needle} stored"
        assert needle not in logs, f"{needle} logged"
    assert len(dumped) > 20
