"""Audit log start-up benchmark: how long opening a 1,000,000-entry log takes.

Opening an ``AuditLog`` re-hashes every stored entry (RFC 6962 leaf hash),
checks each row's indexed columns against its leaf bytes, rebuilds the Merkle
tree and checks it against the latest signed checkpoint; the service refuses
to start on any mismatch. This times exactly that call, on SQLite.

The log is built once through the ordinary append path (unlock requests and
their decisions, a break-glass use now and then, a signed checkpoint every
10,000 entries) and reused while it holds the asked number of entries.
Run: .venv/bin/python bench/audit_startup.py [--entries N] [--db PATH] [--repeat R]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit_log._entries import BreakGlass, Decision, Entry, UnlockRequest  # noqa: E402
from audit_log._log import AuditLog  # noqa: E402
from audit_log._note import NoteSigner  # noqa: E402
from audit_log._store import count_entries, open_engine  # noqa: E402

ORIGIN = "bench.example/log"
SEED = bytes(range(32))  # a fixed bench key, so a built log can be reopened later
CHECKPOINT_EVERY = 10_000
BUILD_CHUNK = 5_000


def _entries(start: int, count: int) -> list[Entry]:
    """Entries ``start`` .. ``start + count - 1``: request/decision pairs, some break-glass."""
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    policy = hashlib.sha256(b"policy").hexdigest()
    out: list[Entry] = []
    for i in range(start, start + count):
        n = i // 2
        when = t0 + timedelta(seconds=n)
        ids = {
            "time": when,
            "request_id": f"req_{n:016x}",
            "professional_id": f"pro_{n % 997:016x}",
            "family_id": f"fam_{n % 100_003:016x}",
        }
        digest = hashlib.sha256(n.to_bytes(8, "big")).hexdigest()
        if i % 2 == 0:
            out.append(
                UnlockRequest(
                    **ids,
                    purpose_code="SAFEGUARDING",
                    attestation_sha256=digest,
                    justification_sha256=digest,
                )
            )
        elif n % 1000 == 999:
            out.append(BreakGlass(**ids, purpose_code="EMERGENCY", justification_sha256=digest))
        else:
            out.append(
                Decision(
                    **ids,
                    purpose_code="SAFEGUARDING",
                    decision="granted" if n % 5 else "refused",
                    reason_code="POLICY_OK" if n % 5 else "NO_ATTESTATION",
                    policy_sha256=policy,
                    policy_version="1.2.0",
                )
            )
    return out


def stored_entries(path: Path) -> int:
    """How many entries the log at ``path`` holds (0 if there is none)."""
    if not path.exists():
        return 0
    engine = open_engine(str(path), migrate_schema=False)
    try:
        return count_entries(engine)
    finally:
        engine.dispose()


def build(path: Path, entries: int, signer: NoteSigner) -> float:
    """Build a log of ``entries`` entries at ``path`` through AuditLog; seconds taken."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    start = time.perf_counter()
    with AuditLog.open(str(path), signer, batch_size=BUILD_CHUNK) as log:
        done = 0
        while done < entries:
            count = min(BUILD_CHUNK, entries - done)
            log.append_many(_entries(done, count))
            done += count
            if done % CHECKPOINT_EVERY == 0 or done == entries:
                log.checkpoint()
            if done % 100_000 == 0:
                print(f"  built {done:,} entries ({time.perf_counter() - start:.0f}s)", flush=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--db",
        type=Path,
        default=Path(__file__).parent / "out" / "audit_startup.sqlite",
        help="SQLite file to build or reuse (default bench/out/audit_startup.sqlite)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed start-ups (default 3)")
    args = parser.parse_args()

    print(
        f"machine: nproc={os.cpu_count()} python={platform.python_version()} "
        f"{platform.system()} {platform.machine()} load={os.getloadavg()[0]:.2f}"
    )
    signer = NoteSigner.from_seed(ORIGIN, SEED)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    have = stored_entries(args.db)
    if have == args.entries:
        print(f"reusing {args.db} ({have:,} entries)")
    else:
        print(f"building {args.db} with {args.entries:,} entries (found {have:,})")
        seconds = build(args.db, args.entries, signer)
        print(f"built in {seconds:.1f}s")

    timings: list[float] = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        log = AuditLog.open(str(args.db), signer)
        timings.append(time.perf_counter() - start)
        size = log.size
        log.close()
    print(
        f"start-up verification of {size:,} entries: best {min(timings):.2f}s, "
        f"median {statistics.median(timings):.2f}s over {len(timings)} runs "
        f"({', '.join(f'{t:.2f}' for t in timings)})"
    )


if __name__ == "__main__":
    main()
