"""Crash recovery: a process killed mid-transition leaves a claimed request that
recovery settles from the audit log; every logged grant ends released, still
redeemable, or closed in the log with an expiry entry.

The crash is simulated by raising a BaseException (which no handler in the
service catches, as a SIGKILL would skip them) at the crash point: after the
audit append and before the final database update, or in the middle of a
release.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from unlock_service import NotFound
from unlock_service import _store as store
from unlock_service._service import micros

from .test_flow import WHY, _entries, _row


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the crash point runs."""


LEASE = 121  # seconds: past the service's default claim lease (120 s)


def _kill_when(monkeypatch, state):
    """Make the next update settling a claim on ``state`` die before it commits."""
    real = store.update_request

    def update(conn, request_id, *, from_status=None, holder=None, **values):
        if from_status == [state] and holder is not None:
            monkeypatch.setattr(store, "update_request", real)
            raise Killed
        return real(conn, request_id, from_status=from_status, holder=holder, **values)

    monkeypatch.setattr(store, "update_request", update)


def _as(env, pro):
    """The stored professional, for calling the service directly (a BaseException
    raised through the HTTP test transport would stop its event loop)."""
    with store.reading(env.service.engine) as conn:
        return store.get_professional(conn, pro.professional_id)


def _logged_grants_settled(env) -> None:
    """Every granted decision in the log is released, redeemable, or has an expiry entry."""
    now = env.clock()
    for entry in _entries(env):
        if entry.type != "decision" or entry.decision != "granted":
            continue
        closed = any(e.type == "expiry" for e in _entries(env, entry.request_id))
        with store.reading(env.service.engine) as conn:
            try:
                row = store.get_request(conn, entry.request_id)
            except NotFound:  # a missing row must be closed in the log
                row = None
        if row is None:
            assert closed, f"{entry.request_id}: logged grant, no row, no expiry"
            continue
        assert row.status not in ("evaluating", "deciding", "releasing", "expiring"), row
        redeemable = row.status == "granted" and (row.expires_at or 0) > micros(now)
        assert row.status == "released" or redeemable or closed, row


def test_a_grant_killed_after_its_append_is_recovered_and_redeemable(env, monkeypatch):
    pro = env.add_pro()
    family = env.add_family()
    _kill_when(monkeypatch, "evaluating")
    with pytest.raises(Killed):
        env.service.request_unlock(_as(env, pro), family, "SAFEGUARDING", WHY)
    (request_id,) = {e.request_id for e in _entries(env) if e.type == "decision"}
    assert _row(env, request_id)["status"] == "evaluating"
    # a fresh claim is not taken over (its holder may still be working)
    assert env.service.recover(startup=True) == 0
    env.clock.advance(LEASE)
    assert env.service.recover(startup=True) == 1
    row = _row(env, request_id)
    assert row["status"] == "granted" and row["reason"] == "GRANTED"
    assert row["decision_index"] is not None and row["request_index"] is not None
    released = env.client(pro).release(request_id)
    assert released.status_code == 200, released.text
    assert [e.type for e in _entries(env, request_id)] == ["unlock_request", "decision"]
    _logged_grants_settled(env)


def test_an_approval_killed_after_its_append_keeps_one_decision(env, monkeypatch):
    requester, a, b = env.add_pro(), env.add_pro("team_manager", 6), env.add_pro("team_manager", 6)
    family = env.add_family()
    r = env.client(requester).unlock(family, "CASE_ALLOCATION", WHY)
    request_id = r.json()["request_id"]
    _kill_when(monkeypatch, "deciding")
    with pytest.raises(Killed):
        env.service.approve(_as(env, a), request_id, True)
    assert _row(env, request_id)["status"] == "deciding"
    r = env.client(b).approve(request_id)
    assert r.status_code == 409 and r.json()["reason"] == "DECISION_IN_PROGRESS"
    env.clock.advance(LEASE)
    # lazily: the next caller settles the stale claim from the log first
    r = env.client(b).approve(request_id)
    assert r.status_code == 409 and r.json()["reason"] == "NOT_PENDING"
    assert _row(env, request_id)["status"] == "granted"
    decisions = [e for e in _entries(env, request_id) if e.type == "decision"]
    assert [d.reason_code for d in decisions] == ["GRANTED_WITH_APPROVAL"]


def test_a_release_killed_midway_is_given_back_then_expired_in_the_log(env, monkeypatch):
    pro = env.add_pro()
    family = env.add_family()
    real_blobs = env.service.linkage.blobs

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(env.service.linkage, "blobs", killed)
    with pytest.raises(Killed):
        env.service.request_unlock(_as(env, pro), family, "SAFEGUARDING", WHY)
    monkeypatch.setattr(env.service.linkage, "blobs", real_blobs)
    (request_id,) = {e.request_id for e in _entries(env) if e.type == "decision"}
    assert _row(env, request_id)["status"] == "releasing"
    r = env.client(pro).release(request_id)
    assert r.status_code == 409  # still claimed by the (dead) caller within the lease
    env.clock.advance(LEASE)
    assert env.service.recover() == 1
    assert _row(env, request_id)["status"] == "granted"  # reclaimed: nothing had left
    env.clock.advance(600)  # past the grant's ttl
    assert env.service.recover() == 1
    assert _row(env, request_id)["status"] == "expired"
    assert [e.reason_code for e in _entries(env, request_id) if e.type == "expiry"] == [
        "GRANT_EXPIRED"
    ]
    assert env.client(pro).release(request_id).json()["reason"] == "NOT_GRANTED"
    _logged_grants_settled(env)


def test_a_logged_grant_without_a_row_is_expired_in_the_log_at_start_up(env, monkeypatch):
    pro = env.add_pro()
    family = env.add_family()
    _kill_when(monkeypatch, "evaluating")
    with pytest.raises(Killed):
        env.service.request_unlock(_as(env, pro), family, "SAFEGUARDING", WHY)
    (request_id,) = {e.request_id for e in _entries(env) if e.type == "decision"}
    # the row is lost too (SQLite synchronous=NORMAL can lose the last commits)
    with store.transaction(env.service.engine) as conn:
        conn.execute(sa.delete(store.requests).where(store.requests.c.request_id == request_id))
    assert env.service.recover(startup=True) == 1
    expiries = [e for e in _entries(env, request_id) if e.type == "expiry"]
    assert [e.reason_code for e in expiries] == ["GRANT_ABANDONED"]
    assert expiries[0].professional_id == pro.professional_id
    # reconciled once: a second start-up does not log it again
    assert env.service.recover(startup=True) == 0
    _logged_grants_settled(env)


def test_nothing_logged_before_the_kill_releases_nothing(env, monkeypatch):
    pro = env.add_pro()
    family = env.add_family()

    def killed(entries):
        raise Killed

    monkeypatch.setattr(env.service.audit, "append_many", killed)
    with pytest.raises(Killed):
        env.service.request_unlock(_as(env, pro), family, "SAFEGUARDING", WHY)
    monkeypatch.undo()
    rows = store.requests_where(env.service.engine, store.requests.c.family_id == family)
    assert [r.status for r in rows] == ["evaluating"]
    env.clock.advance(LEASE)
    assert env.service.recover() == 1
    row = _row(env, rows[0].request_id)
    assert row["status"] == "audit_failed" and row["reason"] == "ABANDONED"
    assert not [c for c in env.linkage.calls if c.endswith("/blobs")]


def test_unused_grants_and_pending_requests_are_expired_in_the_log(env):
    pro, manager = env.add_pro(), env.add_pro("team_manager", 6)
    family = env.add_family()
    waiting = env.client(pro).unlock(family, "CASE_ALLOCATION", WHY).json()["request_id"]
    granted = env.client(pro).unlock(family, "CASE_ALLOCATION", WHY).json()["request_id"]
    assert env.client(manager).approve(granted).status_code == 200
    env.clock.advance(3601)
    assert env.service.recover() == 2
    for request_id, reason in ((waiting, "REQUEST_EXPIRED"), (granted, "GRANT_EXPIRED")):
        assert _row(env, request_id)["status"] == "expired"
        logged = [e.reason_code for e in _entries(env, request_id) if e.type == "expiry"]
        assert logged == [reason]
    assert env.service.recover() == 0
    _logged_grants_settled(env)
