"""Unlock latency with the real services under load: 50 professionals, 8 agencies pushing.

Starts the local stack the way ``family-linkage up`` does (``deploy.LocalStack``:
the real ``linkage-service``, ``unlock-service`` and IG witness processes on
loopback, SQLite by default), with a policy whose rate limit does not get in
the way. A synthetic population is generated, encoded by the seven agencies of
the generator and pushed, and assessed; the families at or above the unlock
threshold (attested by the real linkage service) are what the professionals ask
for. An eighth agency (``school_b``, a second school feed of the same pupils
under its own key) joins during the run.

Then, for ``--seconds``:

- ``--clients`` professionals (each its own key and token) loop: request an
  unlock of a random attested family for SAFEGUARDING (policy, durable audit
  append of request + decision, blobs fetched from the linkage service, opened,
  re-sealed to the professional, receipt) and open the release with their key.
  Without ``--rate`` each sends the next request as soon as one returns (closed
  loop); with ``--rate R`` they offer R unlocks/s together on a fixed schedule
  and latency counts from each request's due time (open loop).
- 8 agencies each push a freshly encoded extract every ``--push-interval``
  seconds (pre-encoded before the run, so encoding does not compete for CPU).

It prints p50/p90/p99/max of unlock latency, throughput, errors by kind,
pushes made, the machine's load average, and the result of
``audit-log verify-db`` over the audit database after the run.

Run: .venv/bin/python bench/unlock_load.py [--seconds 60] [--clients 50] [--rate 20]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from agency_client import (  # noqa: E402
    BadRowPolicy,
    encode_csv,
    load_agency_key,
    load_agency_public_key,
    load_mapping,
    load_schema,
    load_seal_public_key,
    load_secret,
)
from agency_client._synthetic import AGENCIES, GeneratedPopulation  # noqa: E402
from deploy import LocalStack  # noqa: E402
from deploy._journey import (  # noqa: E402
    assess,
    families_at_threshold,
    make_population,
    push_extracts,
    register_agencies,
)
from linkage_service import _store as linkage_store  # noqa: E402
from linkage_service._cli import push  # noqa: E402
from unlock_service import (  # noqa: E402
    TokenIssuer,
    UnlockClient,
    load_settings,
    open_release,
)
from unlock_service._config import load_issuer_private_key  # noqa: E402

EXTRA_AGENCY = "school_b"
POLICY = """\
[policy]
name = "bench-load"
version = "1.0.0"

[justification]
min_chars = 20
max_chars = 1000

[grants]
ttl_seconds = 900
approval_wait_seconds = 86400

[rate_limit]
max_requests = 1000000
window_seconds = 86400

[roles.admin]
admin = true

[roles.social_worker]
request = true

[roles.team_manager]
request = true
approve = true

[roles.ig_officer]
review = true
restrict = true
subject_access = true

[purposes.SAFEGUARDING]
description = "Child safeguarding enquiry (s.47 or early help escalation)"
roles = ["social_worker"]
"""
WHY = "benchmark: child seen with injuries at school, s.47 enquiry"


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc), 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def encode(stack: LocalStack, agency: str, csv: Path, mapping_path: Path, out: Path) -> Path:
    """One agency's signed extract of ``csv`` (a fresh extract id and fresh seals each call)."""
    mapping = load_mapping(mapping_path)
    if mapping.agency.id != agency:
        mapping = mapping.model_copy(
            update={"agency": mapping.agency.model_copy(update={"id": agency})}
        )
    bundle = stack.key(f"agency-{agency}")
    encode_csv(
        csv,
        mapping,
        load_schema(None),
        load_secret(bundle / "linkage-secret.json"),
        load_agency_key(bundle / "agency.key"),
        load_seal_public_key(bundle / "seal.pub"),
        out,
        extract_date=dt.date.today(),
        policy=BadRowPolicy.DROP_FIELD,
        workers=1,
    )
    return out


def set_up(
    stack: LocalStack, args: argparse.Namespace, run_dir: Path
) -> tuple[GeneratedPopulation, list[str], list[tuple[str, Path]]]:
    """Keys, policy, ``args.clients`` registered professionals, the running stack, and a
    pushed and assessed population; the attested family ids and the professionals."""
    stack.ceremony()
    stack.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (stack.config_dir / "policy.toml").write_text(POLICY, encoding="utf-8")
    stack.prepare(fresh=True)
    demo = {p.name: p for p in stack.register_professionals()}
    clients = stack.register_workers(
        demo["admin"].professional_id, args.clients, prefix="bench", team="bench"
    )
    stack.start()

    t0 = time.perf_counter()
    pop = make_population(run_dir / "population", args.households, args.seed)
    extracts_dir = run_dir / "extracts"
    first = {
        a: encode(stack, a, pop.csv_paths[a], pop.mapping_paths[a], extracts_dir / f"{a}.jsonl")
        for a in pop.agencies
    }
    register_agencies(stack, pop)
    sql = linkage_store.open_engine(stack.database_urls["linkage"])
    try:
        school = load_mapping(pop.mapping_paths["school"])
        pub = load_agency_public_key(
            stack.key("linkage-service", "agencies", f"{EXTRA_AGENCY}.pub")
        )
        linkage_store.add_agency(
            sql, EXTRA_AGENCY, pub.public_key, pub.key_id, [school.agency.extract_type]
        )
    finally:
        sql.dispose()
    push_extracts(stack, first)
    cycle = assess(stack)
    families = families_at_threshold(stack)
    print(
        f"set-up: {pop.record_count:,} records from {len(pop.agencies)} agencies pushed, "
        f"cycle {cycle.get('cycle_id')}: {len(families)} families attested at or above the "
        f"unlock threshold ({time.perf_counter() - t0:.0f}s)"
    )
    if not families:
        raise SystemExit("no family reached the unlock threshold: use more --households")
    return pop, families, clients


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="unlock-load-")).resolve()
    stack = LocalStack(
        run_dir,
        database_url_base=args.database_url_base,
        database_prefix="unlock_load",
        agencies=(*AGENCIES, EXTRA_AGENCY),
    )
    load_before = os.getloadavg()
    with stack:
        pop, families, clients = set_up(stack, args, run_dir)
        extracts_dir = run_dir / "extracts"

        # The pushes of the run, encoded now so encoding does not compete for the CPU.
        rounds = int(args.seconds // args.push_interval) + 1
        sources = {a: (pop.csv_paths[a], pop.mapping_paths[a]) for a in pop.agencies}
        sources[EXTRA_AGENCY] = (pop.csv_paths["school"], pop.mapping_paths["school"])
        queued: dict[str, list[Path]] = {
            a: [
                encode(stack, a, csv, mapping, extracts_dir / f"{a}-{k}.jsonl")
                for k in range(rounds)
            ]
            for a, (csv, mapping) in sources.items()
        }

        settings = load_settings(stack.config_path("unlock-service"), environ={})
        assert settings.issuer_key_file is not None
        issuer = TokenIssuer(
            load_issuer_private_key(settings.issuer_key_file),
            settings.token_issuer,
            settings.token_audience,
        )
        base = stack.url("unlock-service")
        latencies: list[float] = []
        errors: collections.Counter[str] = collections.Counter()
        pushes: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        gate = threading.Barrier(args.clients + len(queued) + 1)
        stop_at = [0.0]

        def professional(n: int) -> None:
            pid, key_file = clients[n]
            from unlock_service import load_professional_key

            key = load_professional_key(key_file)
            vk = bytes(key.verify_key)
            rng = random.Random(n)
            with UnlockClient(base, key, lambda: issuer.issue(pid, vk, lifetime=300)) as client:
                gate.wait()
                began = time.perf_counter()
                k = 0
                while True:
                    if args.rate:
                        due = began + (n + k * args.clients) / args.rate
                        k += 1
                        if due >= stop_at[0]:
                            return
                        pause = due - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                        start = due
                    else:
                        start = time.perf_counter()
                        if start >= stop_at[0]:
                            return
                    try:
                        r = client.unlock(rng.choice(families), "SAFEGUARDING", WHY)
                    except httpx.HTTPError as exc:
                        with lock:
                            errors[f"transport {type(exc).__name__}"] += 1
                        continue
                    elapsed = time.perf_counter() - start
                    if r.status_code != 200:
                        try:
                            reason = r.json().get("reason", "")
                        except ValueError:
                            reason = r.text[:60]
                        with lock:
                            errors[f"{r.status_code} {reason}"] += 1
                        continue
                    body = r.json()
                    opened = open_release(body["sealed_identities"], key, body["request_id"])
                    with lock:
                        if len(opened) != body["identity_count"]:
                            errors["release opened a different count"] += 1
                        else:
                            latencies.append(elapsed)

        def agency(name: str) -> None:
            token = stack.secret(f"agency-{name}", "linkage-token")
            url = stack.url("linkage-service")
            with httpx.Client(timeout=httpx.Timeout(30.0, read=300.0)) as http:
                gate.wait()
                began = time.perf_counter()
                for k, path in enumerate(queued[name]):
                    due = began + k * args.push_interval + random.Random(name).random() * 2
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    if time.perf_counter() >= stop_at[0]:
                        return
                    try:
                        push(path, url, token, client=http)
                        with lock:
                            pushes[name] += 1
                    except Exception as exc:  # noqa: BLE001 - counted and shown, never hidden
                        with lock:
                            errors[f"push {type(exc).__name__}: {str(exc)[:80]}"] += 1

        threads = [threading.Thread(target=professional, args=(n,)) for n in range(args.clients)]
        threads += [threading.Thread(target=agency, args=(a,)) for a in queued]
        for t in threads:
            t.start()
        stop_at[0] = time.perf_counter() + args.seconds + 0.5
        pids = {name: svc.pid for name, svc in stack.services.items()}
        gate.wait()
        t_start = time.perf_counter()
        cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own_start = time.process_time()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        cpu_used = {name: cpu_seconds(pid) - cpu_start[name] for name, pid in pids.items()}
        cpu_used["bench (clients + pushers)"] = time.process_time() - own_start
        load_after = os.getloadavg()

        ms = [x * 1000 for x in latencies]
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
            f"{platform.python_version()}; load average before "
            f"{load_before[0]:.2f}, at the end {load_after[0]:.2f} (1 min; the machine is shared)"
        )
        mode = (
            f"open loop, {args.rate:g} unlocks/s offered in all"
            if args.rate
            else "closed loop (each sends the next request as soon as one returns)"
        )
        print(
            f"{args.clients} professionals for {wall:.0f} s, {mode}, real linkage + unlock "
            f"services ({'PostgreSQL' if args.database_url_base else 'SQLite'}), "
            f"{len(queued)} agencies pushing every {args.push_interval:g} s:"
        )
        if ms:
            print(
                f"  {len(ms)} released; p50 {statistics.median(ms):.1f} ms, "
                f"p90 {percentile(ms, 0.90):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
                f"max {max(ms):.1f} ms; {len(ms) / wall:.1f} unlocks/s"
            )
        print(f"  pushes: {sum(pushes.values())} ({dict(sorted(pushes.items()))})")
        if ms:
            # CPU time (user + system) is less noisy than wall time on a shared machine.
            print(
                "  CPU per released unlock (user + sys over the run / released): "
                + ", ".join(
                    f"{name} {1000 * used / len(ms):.1f} ms" for name, used in cpu_used.items()
                )
            )
        print(f"  errors: {sum(errors.values())} {dict(errors.most_common())}")

        vkey = stack.key("ig-office", "audit-log.vkey")
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "audit-log"),
                "verify-db",
                "--db",
                stack.database_urls["audit"],
                "--vkey",
                str(vkey),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        result = (done.stdout + done.stderr).strip()
        print(f"audit-log verify-db (exit {done.returncode}): {result}")
        print(f"(run directory: {run_dir}; service logs in {run_dir / 'logs'})")
    if not args.keep and args.run_dir is None and args.database_url_base is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if done.returncode == 0 else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered unlocks/s over all clients (open loop); 0 = closed loop (saturation)",
    )
    p.add_argument("--push-interval", type=float, default=10.0, help="seconds between pushes")
    p.add_argument("--households", type=int, default=600)
    p.add_argument("--seed", type=int, default=20261121)
    p.add_argument("--database-url-base", help="postgresql://postgres@127.0.0.1:5432/")
    p.add_argument("--run-dir", help="keep the run here (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = p.parse_args()
    raise SystemExit(run(args))


if __name__ == "__main__":
    main()
