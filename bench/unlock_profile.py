"""Where one unlock request spends its time: the request path profiled stage by stage.

Sets up the real local stack as ``bench/unlock_load.py`` does (linkage service,
witness, a pushed and assessed population), then stops the ``unlock-service``
process and builds the same service in this process over the same settings,
databases and keys (the real linkage service and witness over loopback, the
audit log fsynced). ``--requests`` unlocks are made one after another, each by
one of ``--clients`` professionals for a random attested family, by calling
what the route calls (authenticate, request_unlock, the answer's JSON), under
cProfile twice: once with wall time (where a request waits: linkage calls, the
audit fsync, the witness) and once with this thread's CPU time (what it
computes). With ``--concurrency N``, N threads then do the same for
``--seconds`` with each stage timed by a wrapper (cProfile sees one thread),
which shows where concurrent requests wait. Last, ``--requests`` unlocks go
through the ASGI app unprofiled, for the whole process's CPU per unlock (the
audit writer thread and the client's token, signature and opening included)
and the linkage service's and witness's, read from /proc.

Run: .venv/bin/python bench/unlock_profile.py [--requests 300] [--clients 50]
     [--concurrency 50] [--top 40]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi.testclient import TestClient  # noqa: E402
from unlock_load import EXTRA_AGENCY, WHY, cpu_seconds, set_up  # noqa: E402

from agency_client._synthetic import AGENCIES  # noqa: E402
from deploy import LocalStack  # noqa: E402
from deploy._local import WITNESS_TOKEN_ENV  # noqa: E402
from unlock_service import (  # noqa: E402
    TokenIssuer,
    create_app,
    load_professional_key,
    load_settings,
    open_release,
    sign_request,
)
from unlock_service._api import build_service, close_service  # noqa: E402
from unlock_service._config import load_issuer_private_key  # noqa: E402
from unlock_service._service import Release  # noqa: E402

# (label, file suffix, function name): the stages of one unlock, outermost first.
STAGES: list[tuple[str, str, str]] = [
    ("whole unlock, route work only (no HTTP)", "unlock_profile.py", "call"),
    ("authenticate", "unlock_service/_service.py", "authenticate"),
    ("  JWT verify (PyJWT, Ed25519)", "unlock_service/_auth.py", "verify"),
    ("  request signature verify", "unlock_service/_auth.py", "verify_request_signature"),
    ("  nonce insert (DB write)", "unlock_service/_store.py", "use_nonce"),
    ("request_unlock", "unlock_service/_service.py", "request_unlock"),
    ("  decide and log", "unlock_service/_service.py", "_decide_and_log"),
    ("    attestation fetch (linkage HTTP)", "unlock_service/_linkage.py", "attestation"),
    ("    attestation verify", "unlock_service/_release.py", "verify_attestation"),
    ("    insert request (DB write)", "unlock_service/_store.py", "insert_request"),
    ("    audit append (durable, waits)", "audit_log/_log.py", "append_many"),
    ("    guarded update (DB write)", "unlock_service/_store.py", "update_request"),
    ("  deliver", "unlock_service/_service.py", "_deliver"),
    ("    blobs fetch (linkage HTTP)", "unlock_service/_linkage.py", "blobs"),
    ("    open blobs", "unlock_service/_release.py", "open_family"),
    ("    seal release", "unlock_service/_release.py", "seal_release"),
    ("    receipt (checkpoint, witness)", "audit_log/_log.py", "receipt"),
    ("      sign + store checkpoint", "audit_log/_log.py", "_sign_next"),
    ("      witness cosign (HTTP)", "audit_log/_log.py", "_cosign"),
    ("    leaf read", "audit_log/_log.py", "leaf"),
    ("    settle (DB write)", "unlock_service/_service.py", "_settle"),
    ("DB commits (all)", "sqlalchemy/engine/base.py", "commit"),
]


class StageClock:
    """Wall and thread-CPU time of named functions across threads (wrappers, not cProfile,
    which sees one thread only): where concurrent requests wait."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wall: collections.Counter[str] = collections.Counter()
        self.cpu: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*a: Any, **k: Any) -> Any:
            w, c = time.perf_counter(), time.thread_time()
            try:
                return original(*a, **k)
            finally:
                dw, dc = time.perf_counter() - w, time.thread_time() - c
                with self.lock:
                    self.wall[label] += dw
                    self.cpu[label] += dc
                    self.calls[label] += 1

        setattr(owner, name, timed)
        self.undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self.undo):
            setattr(owner, name, original)
        self.undo.clear()


def concurrent_stages(clock: StageClock) -> None:
    """Wrap the stages of an unlock (the modules the service calls them through)."""
    from audit_log import AuditLog
    from unlock_service import _service, _store
    from unlock_service._auth import TokenVerifier
    from unlock_service._linkage import LinkageClient

    for label, owner, name in [
        ("authenticate", _service.UnlockService, "authenticate"),
        ("  JWT verify (PyJWT, Ed25519)", TokenVerifier, "verify"),
        ("  request signature verify", _service, "verify_request_signature"),
        ("  nonce insert (DB write)", _store, "use_nonce"),
        ("request_unlock", _service.UnlockService, "request_unlock"),
        ("  decide and log", _service.UnlockService, "_decide_and_log"),
        ("    attestation fetch (linkage HTTP)", LinkageClient, "attestation"),
        ("    attestation verify", _service, "verify_attestation"),
        ("    insert request (DB write)", _store, "insert_request"),
        ("    audit append (durable, waits)", AuditLog, "append_many"),
        ("    guarded update (DB write)", _store, "update_request"),
        ("  deliver", _service.UnlockService, "_deliver"),
        ("    blobs fetch (linkage HTTP)", LinkageClient, "blobs"),
        ("    open blobs", _service, "open_family"),
        ("    seal release", _service, "seal_release"),
        ("    receipt (checkpoint, witness)", AuditLog, "receipt"),
        ("      sign + store checkpoint", AuditLog, "_sign_next"),
        ("      witness cosign (HTTP)", AuditLog, "_cosign"),
        ("    leaf read", AuditLog, "leaf"),
        ("    settle (DB write)", _service.UnlockService, "_settle"),
    ]:
        clock.wrap(owner, name, label)


def stage_times(stats: pstats.Stats, requests: int) -> dict[str, float]:
    """Mean cumulative ms per request of each stage."""
    found: dict[str, float] = {}
    table = stats.stats  # type: ignore[attr-defined]
    for label, suffix, name in STAGES:
        total = 0.0
        for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in table.items():
            if func == name and filename.endswith(suffix):
                total += ct
        found[label] = 1000 * total / requests
    return found


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="unlock-profile-")).resolve()
    stack = LocalStack(
        run_dir, database_prefix="unlock_profile", agencies=(*AGENCIES, EXTRA_AGENCY)
    )
    with stack:
        _pop, families, clients = set_up(stack, args, run_dir)
        # The same service, in this process, over the same databases and keys.
        stack.kill("unlock-service")
        os.environ[WITNESS_TOKEN_ENV] = stack.secret("unlock-service", "witness-token")
        settings = load_settings(stack.config_path("unlock-service"), environ={})
        assert settings.issuer_key_file is not None
        issuer = TokenIssuer(
            load_issuer_private_key(settings.issuer_key_file),
            settings.token_issuer,
            settings.token_audience,
        )
        keys = [(pid, load_professional_key(path)) for pid, path in clients]
        rng = random.Random(args.seed)
        pids = {n: s.pid for n, s in stack.services.items()}
        service = build_service(settings)
        try:

            def one(direct: bool) -> Callable[[], None]:
                pid, key = rng.choice(keys)
                token = issuer.issue(pid, bytes(key.verify_key), lifetime=300)
                family = rng.choice(families)
                body = json.dumps(
                    {"family_id": family, "purpose_code": "SAFEGUARDING", "justification": WHY}
                ).encode()
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Unlock-Signature": sign_request(key, "POST", "/unlocks", body, token),
                }

                def call() -> None:
                    # The route's work, in this thread: authenticate, unlock, answer.
                    pro = service.authenticate(
                        "POST",
                        "/unlocks",
                        body,
                        headers["Authorization"],
                        headers["Unlock-Signature"],
                    )
                    result = service.request_unlock(pro, family, "SAFEGUARDING", WHY)
                    assert isinstance(result, Release)
                    answer = json.loads(result.to_model().model_dump_json())
                    open_release(answer["sealed_identities"], key, answer["request_id"])

                def send() -> None:
                    r = http.post("/unlocks", content=body, headers=headers)
                    if r.status_code != 200:
                        raise SystemExit(f"unlock answered {r.status_code}: {r.text[:300]}")
                    answer = r.json()
                    open_release(answer["sealed_identities"], key, answer["request_id"])

                return call if direct else send

            for _ in range(args.warmup):
                one(True)()
            results: dict[str, dict[str, float]] = {}
            for kind, timer in (("wall", time.perf_counter), ("cpu", time.thread_time)):
                calls = [one(True) for _ in range(args.requests)]
                profile = cProfile.Profile(timer)
                for call in calls:
                    profile.enable()
                    call()
                    profile.disable()
                stats = pstats.Stats(profile)
                results[kind] = stage_times(stats, args.requests)
                if args.top:
                    print(f"--- top {args.top} by cumulative {kind} time ---")
                    stats.sort_stats("cumulative").print_stats(args.top)
            if args.concurrency:
                clock = StageClock()
                concurrent_stages(clock)
                done = [0]
                lat: list[float] = []
                stop = time.perf_counter() + args.seconds

                def worker() -> None:
                    while time.perf_counter() < stop:
                        call = one(True)
                        t = time.perf_counter()
                        call()
                        with clock.lock:
                            done[0] += 1
                            lat.append(time.perf_counter() - t)

                threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                span = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                clock.restore()
                k = max(1, done[0])
                lat.sort()
                print(
                    f"{args.concurrency} threads calling the service directly for {span:.0f} s: "
                    f"{done[0]} unlocks, {done[0] / span:.1f}/s, p50 "
                    f"{1000 * lat[len(lat) // 2]:.1f} ms, "
                    f"p99 {1000 * lat[int(0.99 * len(lat))]:.1f} ms; "
                    f"process CPU {1000 * cpu / k:.1f} ms per unlock"
                )
                print(f"  {'stage':44s} {'wall ms':>8s} {'cpu ms':>8s} {'calls':>6s}  (per unlock)")
                for label in clock.wall:
                    print(
                        f"  {label:44s} {1000 * clock.wall[label] / k:8.2f} "
                        f"{1000 * clock.cpu[label] / k:8.2f} {clock.calls[label] / k:6.2f}"
                    )
        finally:
            close_service(service)
        # Unprofiled, over HTTP (the ASGI app in this process): the whole process
        # (writer thread and client work included) and the other services, per request.
        with TestClient(create_app(settings)) as http:
            for _ in range(args.warmup):
                one(False)()
            sends = [one(False) for _ in range(args.requests)]
            before = {n: cpu_seconds(p) for n, p in pids.items()}
            own = time.process_time()
            wall = time.perf_counter()
            for send in sends:
                send()
            wall = time.perf_counter() - wall
            own = time.process_time() - own
            after = {n: cpu_seconds(p) for n, p in pids.items()}

        n = args.requests
        print(f"{n} unlocks one after another (profiled twice, then {n} unprofiled):")
        print(f"  {'stage':44s} {'wall ms':>8s} {'cpu ms':>8s}   (means per request)")
        for label, _suffix, _name in STAGES:
            print(f"  {label:44s} {results['wall'][label]:8.2f} {results['cpu'][label]:8.2f}")
        print(
            f"unprofiled: {1000 * wall / n:.1f} ms wall per unlock; this process (unlock "
            f"service in-process + client token, signature and opening) "
            f"{1000 * own / n:.1f} ms CPU per unlock; "
            + ", ".join(f"{k} {1000 * (after[k] - before[k]) / n:.1f} ms" for k in sorted(after))
            + " CPU per unlock"
        )
        print(f"(machine load average {os.getloadavg()[0]:.2f}; run directory {run_dir})")
    if not args.keep and args.run_dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--households", type=int, default=600)
    p.add_argument("--seed", type=int, default=20261121)
    p.add_argument(
        "--concurrency", type=int, default=0, help="also N threads at once for --seconds"
    )
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--top", type=int, default=0, help="also print the top N functions")
    p.add_argument("--run-dir", help="keep the run here (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = p.parse_args()
    raise SystemExit(run(args))


if __name__ == "__main__":
    main()
