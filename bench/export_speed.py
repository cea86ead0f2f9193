"""Bulk export speed: every kind over HTTP, NDJSON and Parquet, against the per-record way.

Starts a real local stack (``deploy.LocalStack``: the services as separate
processes on loopback, SQLite unless ``--database-url-base``), makes a
synthetic population, encodes, registers, pushes and assesses it as the demo
journey does, then streams ``GET /export/{kind}`` for persons, households,
families, links and review pairs in both formats (analyst token) and prints
rows, bytes, seconds and rows/s of each, and the total.

The old way (before ``/export``): page ``/persons``, read ``/persons/{id}`` for
each person's record refs, then ``/records/{agency}/{ref}/links`` for each
record's links with scores: one HTTP call per person and per record. It is
timed on a sample of ``--old-sample`` persons and their records and
extrapolated to the whole population (a full run at 20k households took 454 s
and 18,448 calls; issue 16).

Run: .venv/bin/python bench/export_speed.py [--households 5000] [--old-sample 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

from deploy import LocalStack
from deploy._journey import assess, encode_extracts, make_population, push_extracts
from deploy._journey import register_agencies as register
from protocols import EXPORT_FORMATS, EXPORT_KINDS


def _export(http: httpx.Client, kind: str, fmt: str) -> tuple[int, int, float]:
    """Stream one export: (rows, bytes, seconds). Parquet rows come from its footer."""
    started = time.perf_counter()
    size = lines = 0
    body = bytearray()
    with http.stream("GET", f"/export/{kind}", params={"format": fmt}) as r:
        if r.status_code != 200:
            r.read()
            raise SystemExit(f"GET /export/{kind}?format={fmt}: HTTP {r.status_code}: {r.text}")
        for chunk in r.iter_bytes():
            size += len(chunk)
            if fmt == "ndjson":
                lines += chunk.count(b"\n")
            else:
                body += chunk
    seconds = time.perf_counter() - started
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        lines = pq.ParquetFile(pa.BufferReader(bytes(body))).metadata.num_rows
    return lines, size, seconds


def _old_way(http: httpx.Client, sample: int) -> tuple[int, int, float, int, int]:
    """Per-record reads for ``sample`` persons: (persons, records, seconds, calls, links)."""
    persons: list[str] = []
    after = None
    calls = 0
    started = time.perf_counter()
    while len(persons) < sample:
        params: dict[str, str | int] = {"limit": min(1000, sample - len(persons))}
        if after is not None:
            params["after"] = after
        page = http.get("/persons", params=params).json()
        calls += 1
        persons += [p["person_id"] for p in page["persons"]]
        after = page["next_after"]
        if after is None:
            break
    records = links = 0
    for pid in persons:
        person = http.get(f"/persons/{pid}").json()
        calls += 1
        for rec in person["records"]:
            got = http.get(f"/records/{rec['agency_id']}/{rec['record_ref']}/links").json()
            calls += 1
            records += 1
            links += len(got["links"])
    return len(persons), records, time.perf_counter() - started, calls, links


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--old-sample", type=int, default=300, help="persons read the old way")
    parser.add_argument("--database-url-base", help="PostgreSQL server (default: SQLite)")
    parser.add_argument("--dir", type=Path, help="run directory (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="export-speed-") as tmp:
        run = args.dir or Path(tmp)
        stack = LocalStack(
            run, database_url_base=args.database_url_base, database_prefix="bench_export"
        )
        with stack:
            stack.ceremony()
            stack.prepare(fresh=True)
            stack.start()
            started = time.perf_counter()
            pop = make_population(run / "population", args.households, args.seed)
            extracts, records = encode_extracts(stack, pop, run / "extracts")
            register(stack, pop)
            push_extracts(stack, extracts)
            assess(stack)
            print(
                f"{records:,} records of {args.households:,} households pushed, linked and "
                f"assessed in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            token = stack.secret("operators", "linkage-analyst-token")
            with httpx.Client(
                base_url=stack.url("linkage-service"),
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(30.0, read=600.0),
            ) as http:
                stats = http.get("/stats").json()
                print(f"{'kind':<11}{'format':<9}{'rows':>10}{'MB':>9}{'s':>8}{'rows/s':>11}")
                totals = {fmt: [0, 0, 0.0] for fmt in EXPORT_FORMATS}
                for kind in EXPORT_KINDS:
                    for fmt in EXPORT_FORMATS:
                        rows, size, seconds = _export(http, kind, fmt)
                        t = totals[fmt]
                        t[0], t[1], t[2] = t[0] + rows, t[1] + size, t[2] + seconds
                        print(
                            f"{kind:<11}{fmt:<9}{rows:>10,}{size / 1e6:>9.1f}{seconds:>8.2f}"
                            f"{rows / seconds:>11,.0f}",
                            flush=True,
                        )
                for fmt, (rows, size, seconds) in totals.items():
                    print(
                        f"{'all':<11}{fmt:<9}{rows:>10,}{size / 1e6:>9.1f}{seconds:>8.2f}"
                        f"{rows / seconds:>11,.0f}   (5 HTTP calls)"
                    )
                if args.old_sample > 0:
                    n, recs, seconds, calls, _links = _old_way(http, args.old_sample)
                    persons, active = int(stats["persons"]), int(stats["active_records"])
                    est_calls = persons + active + -(-persons // 1000)
                    est_seconds = seconds * est_calls / calls
                    print(
                        f"old way (per person and per record): {calls:,} calls for {n:,} persons "
                        f"and {recs:,} records in {seconds:.1f} s; for all {persons:,} persons "
                        f"and {active:,} records ~{est_calls:,} calls, ~{est_seconds:.0f} s "
                        "(and no households, families or review pairs)"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
