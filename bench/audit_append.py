"""Audit log append benchmark: durable appends per second and append-to-checkpoint latency.

Every append counted here has returned, i.e. its batch was committed with
fsync (SQLite WAL, synchronous=FULL; PostgreSQL default synchronous_commit).
Run: .venv/bin/python bench/audit_append.py [--db URL] [--entries N] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit_log._entries import Decision  # noqa: E402
from audit_log._log import AuditLog  # noqa: E402
from audit_log._note import NoteSigner  # noqa: E402

ORIGIN = "bench.example/log"


def make_entries(count: int, offset: int = 0) -> list[Decision]:
    """Distinct, valid decision entries (built before timing starts)."""
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    return [
        Decision(
            time=t0 + timedelta(seconds=n),
            request_id=f"req_{n + offset:016x}",
            professional_id=f"pro_{(n + offset) % 97:016x}",
            family_id=f"fam_{(n + offset) % 1013:016x}",
            purpose_code="SAFEGUARDING",
            decision="granted",
            reason_code="POLICY_OK",
            policy_sha256="ab" * 32,
            policy_version="1.2.0",
        )
        for n in range(count)
    ]


def concurrent_appends(log: AuditLog, entries: list[Decision], threads: int) -> float:
    """Appends/s with ``threads`` callers each appending one entry at a time."""
    chunks = [entries[i::threads] for i in range(threads)]

    def worker(chunk: list[Decision]) -> None:
        for entry in chunk:
            log.append(entry)

    workers = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(entries) / (time.perf_counter() - start)


def batched_appends(log: AuditLog, entries: list[Decision], batch: int) -> float:
    """Appends/s from one caller using append_many in batches of ``batch``."""
    start = time.perf_counter()
    for i in range(0, len(entries), batch):
        log.append_many(entries[i : i + batch])
    return len(entries) / (time.perf_counter() - start)


def checkpoint_latency(log: AuditLog, samples: int, interval: float) -> list[float]:
    """Seconds from calling append to a published signed checkpoint that includes the entry.

    A background thread signs a checkpoint every ``interval`` seconds, as the
    service does; the sample ends when the published checkpoint covers it.
    """
    stop = threading.Event()

    def checkpointer() -> None:
        while not stop.wait(interval):
            log.checkpoint()

    thread = threading.Thread(target=checkpointer)
    thread.start()
    latencies = []
    try:
        for entry in make_entries(samples, offset=10_000_000):
            start = time.perf_counter()
            index = log.append(entry).index
            while True:
                note = log.published_checkpoint() or ""
                size = int(note.split("\n")[1]) if note.count("\n") > 2 else 0
                if size > index:
                    break
                time.sleep(0.001)
            latencies.append(time.perf_counter() - start)
            time.sleep(interval * 0.37)  # land at varied points in the cycle
    finally:
        stop.set()
        thread.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batch-wait", type=float, default=0.0)
    parser.add_argument("--checkpoint-interval", type=float, default=0.25)
    parser.add_argument("--latency-samples", type=int, default=20)
    args = parser.parse_args()

    print(
        f"machine: nproc={os.cpu_count()} python={platform.python_version()} "
        f"{platform.system()} {platform.machine()}"
    )
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        print(
            f"database: {url.split('@')[-1]}  batch_size={args.batch_size} "
            f"batch_wait={args.batch_wait}s"
        )
        signer = NoteSigner.generate(ORIGIN)
        entries = make_entries(args.entries)
        half = len(entries) // 2
        with AuditLog.open(
            url, signer, batch_size=args.batch_size, batch_wait=args.batch_wait
        ) as log:
            rate = concurrent_appends(log, entries[:half], args.threads)
            print(
                f"concurrent appends ({args.threads} threads, one entry per call): "
                f"{rate:,.0f} entries/s durable"
            )
            rate = batched_appends(log, entries[half:], args.batch_size)
            print(
                f"append_many (1 caller, {args.batch_size} per call): {rate:,.0f} entries/s durable"
            )
            single = make_entries(500, offset=20_000_000)
            start = time.perf_counter()
            for entry in single:
                log.append(entry)
            per = (time.perf_counter() - start) / len(single)
            print(
                f"sequential single appends (1 caller): {1 / per:,.0f} entries/s "
                f"({per * 1000:.2f} ms per durable append)"
            )
            lat = checkpoint_latency(log, args.latency_samples, args.checkpoint_interval)
            every = args.checkpoint_interval * 1000
            print(
                f"append -> signed published checkpoint (checkpoint every {every:.0f} ms): "
                f"median {statistics.median(lat) * 1000:.0f} ms, "
                f"max {max(lat) * 1000:.0f} ms over {len(lat)} samples"
            )
            start = time.perf_counter()
            index = log.append(make_entries(1, offset=30_000_000)[0]).index
            log.receipt(index)
            print(
                f"append -> receipt with an immediately signed checkpoint: "
                f"{(time.perf_counter() - start) * 1000:.1f} ms"
            )
            print(f"log size at end: {log.size}")


if __name__ == "__main__":
    main()
