"""What a browser front end needs: the approvals an approver may act on, one's own
requests paged, typed answers with reason sentences and ISO 8601 UTC times."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols import (
    ApprovalList,
    ErrorAnswer,
    PendingAnswer,
    ReleasedAnswer,
    RequestPage,
    RequestView,
    reason_text,
)

from ._factories import sha

WHY = "child seen with injuries at school"


def _pending(env, requester, family, purpose="CASE_ALLOCATION", why=WHY):
    r = env.client(requester).unlock(family, purpose, why)
    assert r.status_code == 202, r.text
    return PendingAnswer.model_validate_json(r.content)


def _approvals(env, pro):
    r = env.client(pro).approvals()
    assert r.status_code == 200, r.text
    return ApprovalList.model_validate_json(r.content).approvals


def _iso_utc(text):
    when = dt.datetime.fromisoformat(text)
    assert when.utcoffset() == dt.timedelta(0), text
    return when


def test_an_approver_sees_the_pending_requests_they_may_approve(env):
    requester = env.add_pro("social_worker", 5)
    manager = env.add_pro("team_manager", 5)
    family = env.add_family(clearance=3)
    pending = _pending(env, requester, family)
    (item,) = _approvals(env, manager)
    assert item.request_id == pending.request_id
    assert item.family_id == family
    assert item.requester_id == requester.professional_id
    assert item.requester_role == "social_worker"
    assert item.purpose_code == "CASE_ALLOCATION"
    assert item.purpose == "Allocating a key worker to the family"
    # the approver reads the justification (the audit log holds only its hash)
    assert item.justification == WHY and item.justification_sha256 == sha(WHY)
    assert (item.approvals, item.approvals_required) == (0, 1)
    assert item.reason == "APPROVAL_REQUIRED" and item.reason_text == reason_text(
        "APPROVAL_REQUIRED"
    )
    assert item.created_at == env.clock()
    assert item.expires_at == env.clock() + dt.timedelta(seconds=3600)
    assert item.expires_at == pending.expires_at
    # answered: it leaves the list, and the approval went through
    assert env.client(manager).approve(pending.request_id).json()["status"] == "granted"
    assert _approvals(env, manager) == ()


def test_an_approver_does_not_see_requests_they_may_not_approve(env):
    requester = env.add_pro("team_manager", 5)  # may approve, but not their own
    other = env.add_pro("team_manager", 5)
    low = env.add_pro("team_manager", 2)  # below the family's clearance
    family = env.add_family(clearance=3)
    pending = _pending(env, requester, family)
    assert _approvals(env, requester) == ()
    assert _approvals(env, low) == ()
    assert [a.request_id for a in _approvals(env, other)] == [pending.request_id]
    # and the list agrees with what approving says
    for who, reason in ((requester, "SELF_APPROVAL"), (low, "APPROVER_CLEARANCE_LOW")):
        r = env.client(who).approve(pending.request_id)
        assert r.status_code == 403 and r.json()["reason"] == reason


def test_a_role_that_may_not_approve_is_refused_the_list(env):
    worker = env.add_pro("social_worker", 9)
    ig = env.add_pro("ig_officer", 9)
    _pending(env, env.add_pro("social_worker", 5), env.add_family())
    for who in (worker, ig):
        r = env.client(who).approvals()
        assert r.status_code == 403, r.text
        body = ErrorAnswer.model_validate_json(r.content)
        assert body.reason == "ROLE_NOT_PERMITTED"
        assert body.reason_text == reason_text("ROLE_NOT_PERMITTED")


def test_expired_declined_and_granted_requests_leave_the_list(env):
    requester = env.add_pro("social_worker", 5)
    first, second = env.add_pro("team_manager", 5), env.add_pro("team_manager", 6)
    a = _pending(env, requester, env.add_family())
    env.clock.advance(1800)
    b = _pending(env, requester, env.add_family())
    # soonest to expire first
    assert [x.request_id for x in _approvals(env, second)] == [a.request_id, b.request_id]
    assert env.client(first).approve(b.request_id, approve=False).json()["status"] == "refused"
    assert [x.request_id for x in _approvals(env, second)] == [a.request_id]
    env.clock.advance(1801)  # a's approval window (3600 s) has run out
    assert _approvals(env, second) == ()


def test_the_list_needs_a_signed_request(env):
    assert env.http.get("/approvals").status_code == 401
    assert env.http.get("/unlocks").status_code == 401


def test_own_requests_newest_first_and_paged(env):
    pro, other = env.add_pro("social_worker", 5), env.add_pro("social_worker", 5)
    made = []
    for i in range(5):
        family = env.add_family()
        purpose = "SAFEGUARDING" if i % 2 else "SHOPPING"
        made.append(env.client(pro).unlock(family, purpose, WHY).json()["request_id"])
        env.clock.advance(1)
    env.client(other).unlock(env.add_family(), "SAFEGUARDING", WHY)
    seen, before = [], None
    while True:
        r = env.client(pro).requests(limit=2, before=before)
        assert r.status_code == 200, r.text
        page = RequestPage.model_validate_json(r.content)
        assert len(page.requests) <= 2
        seen.extend(page.requests)
        before = page.next_before
        if before is None:
            break
    assert [v.request_id for v in seen] == made[::-1]
    assert {v.professional_id for v in seen} == {pro.professional_id}
    statuses = {v.request_id: (v.status, v.reason) for v in seen}
    assert statuses[made[0]] == ("refused", "PURPOSE_NOT_LISTED")
    assert statuses[made[1]] == ("released", "GRANTED")
    for v in seen:
        assert v.reason_text == reason_text(v.reason)
    # a page mark that is not one of the caller's requests is not found
    r = env.client(other).requests(before=made[0])
    assert r.status_code == 404 and r.json()["reason"] == "NOT_FOUND"


def test_decision_answers_carry_reason_sentences_and_iso_times(env):
    pro = env.add_pro("social_worker", 5)
    family = env.add_family()
    r = env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    assert r.status_code == 200
    raw = r.json()
    released = ReleasedAnswer.model_validate(raw)
    assert released.reason == "GRANTED" and released.reason_text == reason_text("GRANTED")
    assert _iso_utc(raw["released_at"]) == env.clock()
    view = env.client(pro).request(released.request_id).json()
    RequestView.model_validate(view)
    for field in ("created_at", "decided_at", "released_at", "expires_at"):
        _iso_utc(view[field])
    pending = env.client(pro).unlock(env.add_family(), "CASE_ALLOCATION", WHY)
    assert pending.status_code == 202
    assert pending.json()["reason_text"] == reason_text("APPROVAL_REQUIRED")
    assert _iso_utc(pending.json()["expires_at"]) == env.clock() + dt.timedelta(hours=1)
    refused = env.client(pro).unlock(env.add_family(), "SHOPPING", WHY)
    assert refused.status_code == 403
    body = ErrorAnswer.model_validate_json(refused.content)
    assert body.reason_text == reason_text("PURPOSE_NOT_LISTED")
    assert body.request_id is not None and body.audit_index is not None


@pytest.mark.parametrize(
    ("path", "method", "model"),
    [
        ("/approvals", "get", "ApprovalList"),
        ("/unlocks", "get", "RequestPage"),
        ("/unlocks/{request_id}", "get", "RequestView"),
        ("/unlocks/{request_id}/approvals", "post", "ApprovalAnswer"),
        ("/unlocks/{request_id}/release", "post", "ReleasedAnswer"),
        ("/reviews", "get", "ReviewList"),
        ("/reviews/{request_id}", "post", "ReviewClosed"),
        ("/professionals/{professional_id}/unlocks", "get", "RequestPage"),
        ("/restrictions", "post", "FlagChange"),
        ("/restrictions/{family_id}/lift", "post", "FlagChange"),
        ("/health", "get", "Health"),
    ],
)
def test_the_schema_describes_every_answer(env, path, method, model):
    schema = env.client(env.add_pro()).call("GET", "/openapi.json").json()
    op = schema["paths"][path][method]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": f"#/components/schemas/{model}"}
    if path != "/health":
        refused = op["responses"]["403"]["content"]["application/json"]["schema"]
        assert refused == {"$ref": "#/components/schemas/ErrorAnswer"}


def test_the_schema_describes_both_decisions_of_a_request(env):
    schema = env.client(env.add_pro()).call("GET", "/openapi.json").json()
    responses = schema["paths"]["/unlocks"]["post"]["responses"]
    union = responses["200"]["content"]["application/json"]["schema"]
    refs = {x["$ref"].rsplit("/", 1)[1] for x in union["oneOf"]}
    assert refs == {"ReleasedAnswer", "PendingAnswer"}
    assert responses["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PendingAnswer"
    }
    assert responses["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorAnswer"
    }


def _stored(env, request_id):
    import sqlalchemy as sa

    from unlock_service._store import requests

    with env.service.engine.connect() as c:
        row = c.execute(sa.select(requests).where(requests.c.request_id == request_id)).one()
        dump = "\n".join(
            repr(tuple(r))
            for table in sa.inspect(env.service.engine).get_table_names()
            for r in c.execute(sa.text(f'SELECT * FROM "{table}"'))
        )
    return row, dump


@pytest.mark.parametrize("answer", ["approve", "decline", "expire"])
def test_the_justification_is_kept_sealed_only_until_the_request_is_decided(env, answer):
    requester, manager = env.add_pro("social_worker", 5), env.add_pro("team_manager", 5)
    why = "Allocating a key worker after the strategy meeting on Tuesday"
    granted = env.client(requester).unlock(env.add_family(), "SAFEGUARDING", why)
    pending = _pending(env, requester, env.add_family(), why=why)
    row, dump = _stored(env, pending.request_id)
    assert row.sealed_justification is not None
    assert why not in dump  # sealed, never plain
    # a request decided at once never kept it
    assert _stored(env, granted.json()["request_id"])[0].sealed_justification is None
    if answer == "expire":
        env.clock.advance(3601)
        env.service.recover()
    else:
        env.client(manager).approve(pending.request_id, approve=answer == "approve")
    row, _ = _stored(env, pending.request_id)
    assert row.status in ("granted", "refused", "expired")
    assert row.sealed_justification is None


def test_a_justification_sealed_before_a_key_rotation_still_opens(env):
    from unlock_service._release import rotate_seal_key

    requester, manager = env.add_pro("social_worker", 5), env.add_pro("team_manager", 5)
    pending = _pending(env, requester, env.add_family())
    rotate_seal_key(env.settings.seal_key_dir)
    env.service.keyring.reload()
    (item,) = _approvals(env, manager)
    assert item.request_id == pending.request_id and item.justification == WHY


def test_a_justification_that_does_not_open_is_left_out_not_an_error(env, caplog):

    from unlock_service._store import requests

    requester, manager = env.add_pro("social_worker", 5), env.add_pro("team_manager", 5)
    pending = _pending(env, requester, env.add_family())
    with env.service.engine.begin() as c:
        c.execute(
            requests.update()
            .where(requests.c.request_id == pending.request_id)
            .values(sealed_justification="0123456789abcdef:AAAA")
        )
    (item,) = _approvals(env, manager)
    assert item.justification is None and item.justification_sha256 == sha(WHY)
    assert "justification does not open" in caplog.text


def test_purposes_lists_what_the_callers_role_may_state(env):
    from protocols import PurposeList

    worker = env.add_pro("social_worker", 3)
    answer = env.client(worker).call("GET", "/purposes")
    assert answer.status_code == 200, answer.text
    listed = PurposeList.model_validate_json(answer.content)
    by_code = {p.code: p for p in listed.purposes}
    assert set(by_code) == {"SAFEGUARDING", "CASE_ALLOCATION", "EMERGENCY"}
    assert by_code["CASE_ALLOCATION"].approval and not by_code["SAFEGUARDING"].approval
    assert by_code["EMERGENCY"].break_glass
    assert by_code["SAFEGUARDING"].min_justification > 0
    ig = env.add_pro("ig_officer", 0)
    answer = env.client(ig).call("GET", "/purposes")
    assert answer.status_code == 200
    assert PurposeList.model_validate_json(answer.content).purposes == ()  # states none
