"""Schemathesis over every unlock-service route, with and without credentials: no 5xx.

Every request of a valid caller is signed as the professional's client signs
it (bearer JWT bound to their key, request signature over the exact method,
target and body); the invalid callers send nothing, a token without a
signature, or a token signed with the wrong key. The linkage service is the
in-memory fake of ``_factories``, holding attested families.
"""

from __future__ import annotations

import time

import httpx

from protocols import SubjectAccessAnswer, SubjectHeld
from unlock_service import sign_request
from unlock_service._auth import SIGNATURE_HEADER

from .._fuzz import fuzz, operation_count
from .conftest import Env

EXAMPLES = 100
WHY = "Safeguarding strategy meeting for the children in this household today."


def test_no_route_answers_5xx_to_fuzzed_requests(env: Env) -> None:
    pros = {
        "admin": env.admin,
        "ig_officer": env.add_pro("ig_officer", 9),
        "social_worker": env.add_pro("social_worker", 5),
        "team_manager": env.add_pro("team_manager", 5),
    }
    # some state to find: a released request, a pending one, a break-glass review
    worker = env.client(pros["social_worker"])
    assert worker.unlock(env.add_family(), "SAFEGUARDING", WHY).status_code == 200
    assert worker.unlock(env.add_family(), "CASE_ALLOCATION", WHY).status_code == 202
    # the fake linkage service answers a well-formed subject query as the real one does
    # when nothing matches (without this, a query the fuzzer gets right enough to be
    # forwarded met an empty body, a correct 502 that failed the run)
    env.linkage.subject_answer = SubjectAccessAnswer(
        held=SubjectHeld(searched_at=env.clock(), persons=(), families=()), blobs=()
    )
    started = time.monotonic()

    def send(caller: str | None, request: httpx.Request) -> httpx.Response:
        if caller is None:
            return env.http.send(request)
        pro = pros["social_worker" if caller in ("unsigned", "wrong-key") else caller]
        token = env.token(pro)
        request.headers["Authorization"] = f"Bearer {token}"
        if caller != "unsigned":
            key = pros["admin"].key if caller == "wrong-key" else pro.key
            target = request.url.raw_path.decode("ascii")
            request.headers[SIGNATURE_HEADER] = sign_request(
                key, request.method, target, request.content, token, now=env.clock.timestamp()
            )
        return env.http.send(request)

    callers = [None, "unsigned", "wrong-key", *pros]
    run = fuzz(env.app, send, callers, valid=list(pros), examples=EXAMPLES)
    assert len(run.sent) == operation_count(env.app)
    assert not run.errors, run.report(started)
    # the credentials were real: every valid caller was answered 2xx somewhere
    assert all(run.succeeded(c) for c in pros), run.report(started)
