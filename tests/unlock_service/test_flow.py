"""End to end in-process: request, decide, log, release; approval; break-glass review."""

from __future__ import annotations

from audit_log import parse_leaf, verify_tlog_proof
from unlock_service import open_release

from ._factories import IDENTITIES


def test_grant_releases_sealed_identities_with_a_receipt(env):
    pro = env.add_pro("social_worker", clearance=5)
    family = env.add_family(members=2, clearance=3)
    response = env.client(pro).unlock(family, "SAFEGUARDING", "child seen with injuries at school")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "released" and body["identity_count"] == 2
    identities = open_release(body["sealed_identities"], pro.key, body["request_id"])
    assert {i.family_name for i in identities} == {"Quarrington"}
    assert {i.given_names for i in identities} == {IDENTITIES[0]["given_names"], IDENTITIES[1]["given_names"]}
    leaf = parse_leaf(body["leaf"].encode())
    assert leaf.index == body["audit_index"]
    assert leaf.entry.type == "decision" and leaf.entry.decision == "granted"
    assert leaf.entry.reason_code == "GRANTED"
    assert leaf.entry.policy_version == "1.2.0"
    assert leaf.entry.policy_sha256 == env.service.policy.sha256
