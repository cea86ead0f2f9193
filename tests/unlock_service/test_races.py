"""Concurrent callers on one request: every state transition has exactly one winner,
and the audit log holds exactly one decision (or review, or expiry) per request.

The callers are real threads going through the HTTP app (signed requests, the
FastAPI thread pool, the real store and audit log) on SQLite and PostgreSQL.
``UNLOCK_RACE_TRIALS`` sets how many races of each kind run (default 25).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpx
import pytest

from .conftest import Env
from .test_flow import WHY, _entries, _row

TRIALS = int(os.environ.get("UNLOCK_RACE_TRIALS", "25"))


@pytest.fixture
def race_env(make_env: Callable[..., Env], db_urls: tuple[str, str]) -> Env:
    """One service per backend (SQLite and, when it is up, PostgreSQL)."""
    return make_env(*db_urls)


def _at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run ``calls`` on their own threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _pending(env: Env, family: str) -> tuple[str, object]:
    requester = env.add_pro("social_worker", 5)  # a fresh one: no rate limit across trials
    r = env.client(requester).unlock(family, "CASE_ALLOCATION", WHY)
    assert r.status_code == 202, r.text
    return r.json()["request_id"], requester


def _kinds(env: Env, request_id: str, kind: str) -> list[object]:
    return [e for e in _entries(env, request_id) if e.type == kind]


def test_approve_against_approve_has_one_winner_and_one_decision(race_env):
    env = race_env
    family = env.add_family(clearance=3)
    a, b = env.add_pro("team_manager", 6), env.add_pro("team_manager", 6)
    for _ in range(TRIALS):
        request_id, _requester = _pending(env, family)
        answers = _at_once(
            partial(env.client(a).approve, request_id), partial(env.client(b).approve, request_id)
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 409], [r.text for r in answers]
        loser = next(r for r in answers if r.status_code == 409)
        assert loser.json()["reason"] in ("NOT_PENDING", "DECISION_IN_PROGRESS")
        assert len(_kinds(env, request_id, "decision")) == 1
        assert len(_kinds(env, request_id, "approval")) == 1
        assert _row(env, request_id)["status"] == "granted"


def test_approve_against_decline_has_one_winner_and_one_decision(race_env):
    env = race_env
    family = env.add_family(clearance=3)
    yes, no = env.add_pro("team_manager", 6), env.add_pro("team_manager", 6)
    outcomes = set()
    for _ in range(TRIALS):
        request_id, _requester = _pending(env, family)
        answers = _at_once(
            partial(env.client(yes).approve, request_id),
            partial(env.client(no).approve, request_id, approve=False),
        )
        winners = [r for r in answers if r.status_code == 200]
        assert len(winners) == 1, [r.text for r in answers]
        decisions = _kinds(env, request_id, "decision")
        assert len(decisions) == 1
        status = winners[0].json()["status"]
        assert {"granted": "granted", "refused": "refused"}[decisions[0].decision] == status
        assert _row(env, request_id)["status"] == status
        outcomes.add(status)
    assert outcomes  # which side wins varies; either way exactly one does


def test_release_against_release_releases_once(race_env):
    env = race_env
    family = env.add_family(clearance=3)
    manager = env.add_pro("team_manager", 6)
    for _ in range(TRIALS):
        request_id, requester = _pending(env, family)
        assert env.client(manager).approve(request_id).status_code == 200
        blob_calls = sum(c.endswith("/blobs") for c in env.linkage.calls)
        answers = _at_once(
            partial(env.client(requester).release, request_id),
            partial(env.client(requester).release, request_id),
        )
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        assert next(r for r in answers if r.status_code == 409).json()["reason"] == "GRANT_USED"
        # the loser never reached the blobs
        assert sum(c.endswith("/blobs") for c in env.linkage.calls) == blob_calls + 1
        assert len(_kinds(env, request_id, "decision")) == 1
        assert _row(env, request_id)["status"] == "released"


def test_expiry_races_log_one_expiry(race_env):
    env = race_env
    family = env.add_family(clearance=3)
    a, b = env.add_pro("team_manager", 6), env.add_pro("team_manager", 6)
    for _ in range(max(5, TRIALS // 5)):
        request_id, _requester = _pending(env, family)
        env.clock.advance(3601)  # past approval_wait_seconds
        answers = _at_once(
            partial(env.client(a).approve, request_id), partial(env.client(b).approve, request_id)
        )
        assert {r.status_code for r in answers} <= {410, 409}, [r.text for r in answers]
        assert 410 in {r.status_code for r in answers}
        expiries = _kinds(env, request_id, "expiry")
        assert [e.reason_code for e in expiries] == ["REQUEST_EXPIRED"]
        assert _kinds(env, request_id, "decision") == []
        assert _row(env, request_id)["status"] == "expired"


def test_review_close_against_review_close_logs_one_review(race_env):
    env = race_env
    ig1, ig2 = env.add_pro("ig_officer", 9), env.add_pro("ig_officer", 9)
    family = env.add_family(clearance=3)
    for _ in range(max(5, TRIALS // 5)):
        pro = env.add_pro("social_worker", 5)
        r = env.client(pro).unlock(family, "EMERGENCY", WHY, break_glass=True)
        assert r.status_code == 200, r.text
        request_id = r.json()["request_id"]
        path = f"/reviews/{request_id}"
        answers = _at_once(
            partial(env.client(ig1).call, "POST", path, {"outcome": "upheld", "notes": "ok"}),
            partial(env.client(ig2).call, "POST", path, {"outcome": "not_upheld", "notes": "no"}),
        )
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        winner = next(r for r in answers if r.status_code == 200).json()
        reviews = _kinds(env, request_id, "review")
        assert len(reviews) == 1 and reviews[0].outcome == winner["outcome"]
