"""Unlock latency under concurrent clients, and refused-request throughput under a flood.

Starts a real ``unlock-service serve`` process (uvicorn, SQLite WAL with
synchronous=FULL for both its database and the audit log) on loopback, and a
fake linkage service (uvicorn in a thread of this process) that serves signed
attestations and sealed blobs. Then:

1. latency: ``--clients`` threads, each its own professional, make
   ``--requests`` unlocks each (fresh token, signed request, attestation
   fetch, policy, durable audit append of request + decision, blob fetch,
   open, re-seal, receipt) and the client opens every release. p50/p99 are
   over all of them.
2. flood: ``--clients`` threads hammer for ``--flood-seconds`` as professionals
   already over their rate limit (each refusal is still audited: 429), then
   with forged tokens (401, refused before any database work).

Run: .venv/bin/python bench/unlock_latency.py [--clients 50] [--requests 20] [--rate 40]

Without ``--rate`` every client sends its next request as soon as the last one
returns (closed loop): latency is then concurrency / throughput, a saturation
test. With ``--rate R`` the 50 clients together offer R unlocks/s on a fixed
schedule (open loop) and latency is measured from each request's due time.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from fastapi import FastAPI, HTTPException, Request  # noqa: E402
from fastapi.responses import Response  # noqa: E402
from nacl.public import PublicKey  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from audit_log import NoteSigner  # noqa: E402
from protocols import (  # noqa: E402  # noqa: E402
    Attestation,
    AttestedMember,
    FamilyBlobs,
    IdentitySealer,
    SealedBlob,
    SignedAttestation,
    attestation_message,
    attestation_sha256,
    identity_bytes,
    key_id,
)
from unlock_service import TokenIssuer, UnlockClient, open_release  # noqa: E402
from unlock_service import _admin as admin  # noqa: E402
from unlock_service import _store as store  # noqa: E402
from unlock_service._config import load_settings, write_secret  # noqa: E402
from unlock_service._policy import load_policy  # noqa: E402
from unlock_service._release import rotate_seal_key  # noqa: E402

POLICY = """\
[policy]
name = "bench"
version = "1.0.0"

[justification]
min_chars = 10
max_chars = 500

[rate_limit]
max_requests = {limit}
window_seconds = 86400

[roles.admin]
admin = true

[roles.social_worker]
request = true

[purposes.SAFEGUARDING]
description = "bench"
roles = ["social_worker"]
"""
WHY = "benchmark: child seen with injuries at school"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class Linkage:
    """A fake linkage service: families with signed attestations and sealed blobs."""

    def __init__(self, seal_public: bytes, kid: str, token: str, families: int) -> None:
        self.key = SigningKey.generate()
        self.token = token
        self.attestations: dict[str, SignedAttestation] = {}
        self.blobs: dict[str, bytes] = {}
        rng = random.Random(7)
        now = dt.datetime.now(dt.UTC)
        sealer = IdentitySealer(PublicKey(seal_public), 512)
        for _ in range(families):
            fid = f"fam_{rng.getrandbits(64):016x}"
            members = [("school", f"{rng.getrandbits(128):032x}") for _ in range(4)]
            att = Attestation(
                attestation_id=f"att_{rng.getrandbits(128):032x}",
                family_id=fid,
                members=tuple(
                    AttestedMember(
                        person_id=f"per_{rng.getrandbits(64):016x}", agency_id=a, record_ref=r
                    )
                    for a, r in members
                ),
                score=8.0,
                threshold=5.0,
                clearance_required=3,
                ruleset_name="bench",
                ruleset_version="1.0",
                ruleset_sha256="a" * 64,
                model_name="bench",
                model_version="1.0",
                model_sha256="b" * 64,
                cycle_id=1,
                assessed_at=now - dt.timedelta(days=1),
                issued_at=now - dt.timedelta(days=1),
                key_id=key_id(bytes(self.key.verify_key)),
            )
            signed = SignedAttestation(
                attestation=att, signature=b64(self.key.sign(attestation_message(att)).signature)
            )
            self.attestations[fid] = signed
            blobs = FamilyBlobs(
                family_id=fid,
                attestation_sha256=attestation_sha256(att),
                blobs=tuple(
                    SealedBlob(
                        agency_id=a,
                        record_ref=r,
                        extract_id="e" * 32,
                        seal_key_id=kid,
                        sealed_identity=b64(
                            sealer.seal(
                                identity_bytes(
                                    {
                                        "format": "family-linkage/identity/v1",
                                        "agency_id": a,
                                        "extract_id": "e" * 32,
                                        "record_ref": r,
                                        "system_id": "S1",
                                        "given_names": "Synthetic",
                                        "family_name": "Person",
                                    }
                                )
                            )
                        ),
                    )
                    for a, r in members
                ),
            )
            self.blobs[fid] = blobs.model_dump_json().encode()

    def save(self, path: Path) -> None:
        """The answers the linkage process serves, as one JSON file."""
        path.write_text(
            json.dumps(
                {
                    "token": self.token,
                    "attestations": {k: v.model_dump_json() for k, v in self.attestations.items()},
                    "blobs": {k: v.decode() for k, v in self.blobs.items()},
                }
            )
        )


def linkage_app(path: Path) -> FastAPI:
    """The fake linkage service's app, serving the answers saved in ``path``."""
    data = json.loads(path.read_text())
    token = data["token"]
    attestations = {k: v.encode() for k, v in data["attestations"].items()}
    blobs = {k: v.encode() for k, v in data["blobs"].items()}
    app = FastAPI()

    def check(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {token}":
            raise HTTPException(401, "bad token")

    @app.get("/families/{fid}/attestation")
    def attestation(fid: str, request: Request) -> Response:
        check(request)
        if fid not in attestations:
            raise HTTPException(404, "no such family")
        return Response(attestations[fid], media_type="application/json")

    @app.get("/families/{fid}/blobs")
    def family_blobs(fid: str, request: Request) -> Response:
        check(request)
        return Response(blobs[fid], media_type="application/json")

    return app


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def setup(tmp: Path, clients: int, limit: int, families: int) -> dict[str, Any]:
    issuer_key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    (tmp / "issuer.pub").write_text(
        b64(issuer_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    )
    write_secret(tmp / "audit.key", NoteSigner.generate("bench.local/audit").skey)
    token = "bench-linkage-token-" + os.urandom(8).hex()
    write_secret(tmp / "linkage.token", token)
    _, kid, _, seal_pub = rotate_seal_key(tmp / "seal-keys")
    (tmp / "policy.toml").write_text(POLICY.format(limit=limit))
    linkage = Linkage(seal_pub, kid, token, families)
    (tmp / "linkage.pub").write_text(b64(bytes(linkage.key.verify_key)))
    lport, uport = free_port(), free_port()
    (tmp / "unlock.toml").write_text(
        "\n".join(
            [
                f'database_url = "sqlite:///{tmp / "unlock.db"}"',
                f'audit_database_url = "sqlite:///{tmp / "audit.db"}"',
                'policy_file = "policy.toml"',
                'seal_key_dir = "seal-keys"',
                'audit_key_file = "audit.key"',
                f'linkage_url = "http://127.0.0.1:{lport}"',
                'linkage_token_file = "linkage.token"',
                'linkage_public_key_file = "linkage.pub"',
                'issuer_public_key_file = "issuer.pub"',
                f"port = {uport}",
                "",
            ]
        )
    )
    settings = load_settings(tmp / "unlock.toml", environ={})
    policy = load_policy(settings.policy_file)
    engine = store.open_engine(settings.database_url)
    from audit_log import AuditLog
    from unlock_service._config import load_audit_signer

    audit = AuditLog.open(settings.audit_database_url, load_audit_signer(settings.audit_key_file))
    boss = SigningKey.generate()
    root = admin.add_professional(
        engine, audit, policy, actor_id=None, role="admin", team="bench",
        clearance=9, public_key=bytes(boss.verify_key),
    )  # fmt: skip
    pros = []
    for _ in range(2 * clients):
        key = SigningKey.generate()
        pro = admin.add_professional(
            engine, audit, policy, actor_id=root.professional_id, role="social_worker",
            team="bench", clearance=5, public_key=bytes(key.verify_key),
        )  # fmt: skip
        pros.append((pro.professional_id, key))
    audit.close()
    engine.dispose()
    return {
        "issuer": TokenIssuer(issuer_key, settings.token_issuer, settings.token_audience),
        "linkage": linkage,
        "lport": lport,
        "uport": uport,
        "pros": pros,
    }


def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="unlock-bench-"))
    ctx = setup(tmp, args.clients, args.requests, args.families)
    linkage: Linkage = ctx["linkage"]
    linkage.save(tmp / "linkage.json")
    here = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": here}
    # the fake linkage service runs in its own process, like the real one
    linkage_proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-linkage", str(tmp / "linkage.json"),
         "--port", str(ctx["lport"])],
        env=env,
    )  # fmt: skip
    server_log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unlock_service._cli",
            "--config",
            str(tmp / "unlock.toml"),
            "serve",
        ],
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{ctx['uport']}"
    try:
        for _ in range(100):
            try:
                if httpx.get(base + "/health").status_code == 200:
                    httpx.get(f"http://127.0.0.1:{ctx['lport']}/families/x/attestation")
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("the unlock service or the fake linkage service did not start")
        issuer: TokenIssuer = ctx["issuer"]
        families = list(linkage.attestations)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        start_gate = threading.Barrier(args.clients)

        def worker(n: int) -> None:
            pid, key = ctx["pros"][n]
            client = UnlockClient(base, key, lambda: issuer.issue(pid, bytes(key.verify_key)))
            rng = random.Random(n)
            start_gate.wait()
            began = time.perf_counter()
            for k in range(args.requests):
                if args.rate:
                    # open loop: request k of client n is due at a fixed time; latency is
                    # measured from then, so time spent queueing behind a slow answer counts
                    due = began + (n + k * args.clients) / args.rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    t0 = due
                else:
                    t0 = time.perf_counter()
                r = client.unlock(rng.choice(families), "SAFEGUARDING", WHY)
                elapsed = time.perf_counter() - t0
                if r.status_code != 200:
                    with lock:
                        errors.append(f"{r.status_code} {r.text[:120]}")
                    continue
                body = r.json()
                assert len(open_release(body["sealed_identities"], key, body["request_id"])) == 4
                with lock:
                    latencies.append(elapsed)
            client.close()

        t_start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        ms = [x * 1000 for x in latencies]
        cpus = os.cpu_count()
        print(f"machine: {platform.machine()} {cpus} cpus, Python {platform.python_version()}")
        mode = (
            f"open loop, {args.rate:g} unlocks/s offered in all"
            if args.rate
            else "closed loop, each client sends its next request as soon as one returns"
        )
        print(
            f"unlock latency, {args.clients} concurrent clients x {args.requests} requests, "
            f"{mode} (grant + durable audit append + blob fetch/open/re-seal + receipt):"
        )
        print(
            f"  {len(ms)} released, {len(errors)} errors; p50 {statistics.median(ms):.1f} ms, "
            f"p90 {percentile(ms, 0.90):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
            f"max {max(ms):.1f} ms; {len(ms) / wall:.0f} unlocks/s"
        )
        if errors:
            print(f"  first error: {errors[0]}")

        # flood: the same professionals are now at their rate limit
        def flood(n: int, forged: bool, counts: list[int]) -> None:
            pid, key = ctx["pros"][n]
            bad = TokenIssuer(Ed25519PrivateKey.generate(), issuer.issuer, issuer.audience)
            source = bad if forged else issuer
            client = UnlockClient(base, key, lambda: source.issue(pid, bytes(key.verify_key)))
            expect = 401 if forged else 429
            deadline = time.perf_counter() + args.flood_seconds
            rng = random.Random(n)
            while time.perf_counter() < deadline:
                r = client.unlock(rng.choice(families), "SAFEGUARDING", WHY)
                counts[0 if r.status_code == expect else 1] += 1
            client.close()

        floods = (
            (False, "rate-limited (429, each refusal audited)"),
            (True, "forged tokens (401, refused before the database)"),
        )
        for forged, label in floods:
            counts = [[0, 0] for _ in range(args.clients)]
            threads = [
                threading.Thread(target=flood, args=(n, forged, counts[n]))
                for n in range(args.clients)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - t0
            refused = sum(c[0] for c in counts)
            other = sum(c[1] for c in counts)
            print(
                f"flood, {args.clients} clients for {args.flood_seconds:.0f} s, {label}: "
                f"{refused / took:.0f} refusals/s ({refused} refused, {other} other answers)"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server_log.close()
        linkage_proc.terminate()
        linkage_proc.wait(timeout=30)
        print(f"(server log: {tmp / 'server.log'})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=20, help="unlocks per client (= rate limit)")
    p.add_argument("--families", type=int, default=200)
    p.add_argument("--flood-seconds", type=float, default=5.0)
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered unlocks/s over all clients (open loop); 0 = closed loop (saturation)",
    )
    p.add_argument("--serve-linkage", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_linkage:
        uvicorn.run(linkage_app(args.serve_linkage), host="127.0.0.1", port=args.port,
                    log_level="warning", access_log=False)  # fmt: skip
        return
    run(args)


if __name__ == "__main__":
    main()
