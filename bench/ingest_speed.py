"""Ingest speed: a synthetic council pushed over HTTP to a real linkage-service process and linked.

Generates and encodes the synthetic population once (cached under bench/out/,
as bench/linkage_scale.py does: seven agencies' extracts), starts ``linkage-
service serve`` as its own process on loopback, registers the agencies, and
pushes each agency's extract with ``agency_client.push_extract`` (the resumable
upload ``agency-client push`` uses), one after another, each linked by the real
engine as it is applied; or, with ``--at-once N``, up to N agencies pushing at
the same time, each with its own connection, as agencies sending their extracts
on the same day would (the service checks one agency's chunks while it applies
another's extract; applies still run one at a time, in the order the uploads
complete, so the results digest of such a run may differ from a one-at-a-time
run's). Runs on SQLite (a new file) and on PostgreSQL (a database it creates
and drops; skipped if the server is not reachable). Prints per extract and in
total: records/s end to end, and the split: upload (chunks sent, each checked
by the service as it arrives), verify (the service's time checking lines,
inside upload, and the trailer and signature at completion), apply (completion:
insert, link, write the links, statistics; with ``--at-once``, waiting for
another agency's apply too) and link (the engine's share of apply), with the
engine's stages summed over the pushes; the total's records/s is the records
over the wall time of all pushes. On Linux it also prints the service process's
CPU time (user + system, from /proc), which a shared machine disturbs less than
wall time. Last, it reads the result back from the database: person and
household pair F1 against the population's truth, and a digest of the
partitions (records by person, persons by household, by record ref) and of the
links and review pairs with their scores and evidence, which any change that
keeps the results must leave as they are (the ids are random; the digest does
not use them).

    .venv/bin/python bench/ingest_speed.py                      # 1M records
    .venv/bin/python bench/ingest_speed.py --records 200000 --databases sqlite
    .venv/bin/python bench/ingest_speed.py --at-once 2
    .venv/bin/python bench/ingest_speed.py --databases sqlite --refresh   # then a quarter on

``--refresh [DAYS]`` then has every agency encode its CSV again DAYS (91)
later and push it: the quarterly refresh a council runs, where most records
come again unchanged (kept) and those whose age moved are changed (re-linked).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tokens(path: Path, agencies: tuple[str, ...]) -> dict[str, str]:
    tokens = {a: f"bench-{a}-{uuid.uuid4().hex}" for a in agencies}
    lines = [
        f"{hashlib.sha256(t.encode()).hexdigest()} agency:{a} bench\n" for a, t in tokens.items()
    ]
    path.write_text("".join(lines))
    path.chmod(0o600)
    return tokens


def _register(url: str, pop: Any) -> None:
    from agency_client import load_agency_public_key, load_mapping
    from linkage_service import _store as store

    sql = store.open_engine(url)
    try:
        for a in pop.agencies:
            pub = load_agency_public_key(pop.workdir / "keys" / a / "agency.pub")
            mapping = load_mapping(pop.workdir / "population" / f"{a}.mapping.toml")
            store.add_agency(sql, a, pub.public_key, pub.key_id, [mapping.agency.extract_type])
    finally:
        sql.dispose()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _results(url: str, pop: Any) -> str:
    """F1 against the truth and a digest of what the pushes linked (see the module docstring)."""
    import sqlalchemy as sa

    from evaluation._harness import pair_scores
    from linkage_service import _store as store

    sql = store.open_engine(url)
    try:
        with sql.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT r.id, r.agency_id, r.record_ref, rp.person_id, ph.household_id "
                    "FROM records r JOIN record_person rp ON rp.record_id = r.id "
                    "LEFT JOIN person_household ph ON ph.person_id = rp.person_id "
                    "WHERE r.active"
                )
            ).all()
            pairs = {
                table: conn.execute(
                    sa.text(f"SELECT record_a, record_b, score, evidence FROM {table}")
                ).all()
                for table in ("links", "review")
            }
    finally:
        sql.dispose()
    ref = {int(r.id): f"{r.agency_id}/{r.record_ref}" for r in rows}
    digest = hashlib.sha256()
    for column in (3, 4):
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault(str(r[column]), []).append(ref[int(r.id)])
        digest.update(repr(sorted(sorted(g) for g in groups.values())).encode())
    for table in ("links", "review"):
        canon = sorted(
            (*sorted((ref[int(a)], ref[int(b)])), repr(score), json.loads(evidence))
            for a, b, score, evidence in pairs[table]
        )
        digest.update(json.dumps(canon, sort_keys=True).encode())
    truth = [pop.truth_by_ref[(r.agency_id, r.record_ref)] for r in rows]
    person = pair_scores([r.person_id for r in rows], [t[0] for t in truth])
    household = pair_scores([str(r.household_id) for r in rows], [t[1] for t in truth])
    return (
        f"persons F1 {person.f1:.4f}, households F1 {household.f1:.4f}; "
        f"{len(rows):,} records, {len(pairs['links']):,} links, {len(pairs['review']):,} "
        f"review; results digest {digest.hexdigest()[:16]}"
    )


def _push_all(
    base: str,
    tokens: dict[str, str],
    paths: dict[str, Path],
    label: str,
    title: str,
    at_once: int,
    service_pid: int,
) -> None:
    """Push every agency's extract in ``paths`` and print a row each, then the totals."""
    from agency_client import push_extract

    cpu_start = _cpu_seconds(service_pid)
    total = {"records": 0, "seconds": 0.0, "upload": 0.0, "verify": 0.0, "apply": 0.0}
    total["link"] = 0.0
    stages: dict[str, float] = {}
    kept = changed = 0
    lock = threading.Lock()

    def push(agency: str) -> None:
        """Push one agency's extract and print its row (rows in the order they end)."""
        nonlocal kept, changed
        marks: dict[str, float] = {}

        def progress(sent: int, size: int) -> None:
            if sent == size:
                marks["uploaded"] = time.perf_counter()

        t0 = time.perf_counter()
        with httpx.Client(timeout=httpx.Timeout(60.0, read=None)) as http:
            summary = push_extract(
                paths[agency], base, tokens[agency], client=http, progress=progress
            )
        t1 = time.perf_counter()
        upload = marks["uploaded"] - t0
        n = int(summary["records_received"])
        row = {
            "records": n,
            "seconds": t1 - t0,
            "upload": upload,
            "verify": float(summary["verify_seconds"]),
            "apply": t1 - marks["uploaded"],
            "link": float(summary["link_seconds"]),
        }
        with lock:
            for k, v in row.items():
                total[k] += v
            kept += int(summary.get("records_kept", 0))
            changed += int(summary.get("records_changed", 0))
            for k, v in summary.get("engine", {}).items():
                if k.startswith("seconds_") and k != "seconds_total":
                    stages[k[8:]] = stages.get(k[8:], 0.0) + float(v)
            print(
                f"[{label}] {title}{agency:<11} {n:>8,} records {row['seconds']:6.1f}s "
                f"({n / row['seconds']:>7,.0f}/s): upload {upload:5.1f}s "
                f"(verify {row['verify']:5.1f}s), apply {row['apply']:5.1f}s "
                f"(link {row['link']:5.1f}s)",
                flush=True,
            )

    wall0 = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        for done in [pool.submit(push, agency) for agency in paths]:
            done.result()
    wall = time.perf_counter() - wall0
    n = int(total["records"])
    how = "one agency at a time" if at_once == 1 else f"up to {at_once} agencies at once"
    what = (
        "pushed and linked" if not title else f"pushed again ({kept:,} kept, {changed:,} changed)"
    )
    print(
        f"[{label}] {title.upper()}TOTAL {n:,} records {what} in {wall:.1f}s ({how}) = "
        f"{n / wall:,.0f} records/s; summed over the pushes: upload {total['upload']:.1f}s "
        f"(verify {total['verify']:.1f}s), "
        f"apply {total['apply']:.1f}s (link {total['link']:.1f}s, insert/write/statistics "
        f"{total['apply'] - total['link']:.1f}s)"
    )
    print(f"[{label}] {title}link stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    cpu_end = _cpu_seconds(service_pid)
    if cpu_start is not None and cpu_end is not None:
        print(f"[{label}] {title}service CPU time (user + system): {cpu_end - cpu_start:.1f}s")


def _refresh_extracts(pop: Any, days: int) -> dict[str, Path]:
    """Every agency's CSV encoded again ``days`` after the load's extract date (cached).

    The same people a quarter on: what a refresh looks like to the service (a
    record whose age or age band moved is changed; the others are re-sent unchanged).
    """
    from agency_client._synthetic import PopulationConfig
    from evaluation._harness import encode_again

    when = PopulationConfig().extract_date + dt.timedelta(days=days)
    out: dict[str, Path] = {}
    t0 = time.perf_counter()
    for agency in pop.agencies:
        path = pop.workdir / "extracts" / f"{agency}.refresh-{when.isoformat()}.jsonl"
        done = path.with_suffix(".done")
        if not done.exists():
            encode_again(pop, agency, when, path, workers=os.cpu_count() or 1)
            done.touch()
        out[agency] = path
    print(f"refresh extracts at {when} ready in {time.perf_counter() - t0:.0f}s (cached)")
    return out


def run(
    database_url: str,
    label: str,
    pop: Any,
    work: Path,
    at_once: int = 1,
    refresh: int | None = None,
) -> None:
    """Serve on ``database_url``, push every agency's extract, print the figures.

    ``at_once``: how many agencies push at the same time (each its own client);
    ``refresh``: then every agency pushes again, its CSV encoded that many days on.
    """
    _register(database_url, pop)
    tokens = _tokens(work / f"tokens-{label}", pop.agencies)
    port = _free_port()
    config = work / f"linkage-{label}.toml"
    config.write_text(
        f'database_url = "{database_url}"\n'
        f'token_file = "{work / f"tokens-{label}"}"\n'
        f'staging_dir = "{work}"\n'
        f"port = {port}\n"
        "max_records_per_push = 2000000\n"
        f"max_upload_bytes = {4 * 1024**3}\n"
    )
    log = (work / f"service-{label}.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "linkage-service"), "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"linkage-service exited: see {log.name}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        print(f"[{label}] service up in {time.perf_counter() - started:.1f}s")
        _push_all(base, tokens, pop.extract_paths, label, "", at_once, proc.pid)
        print(f"[{label}] {_results(database_url, pop)}")
        if refresh is not None:
            paths = _refresh_extracts(pop, refresh)
            _push_all(base, tokens, paths, label, "refresh ", at_once, proc.pid)
            print(f"[{label}] after the refresh: {_results(database_url, pop)}")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument(
        "--at-once",
        type=int,
        default=1,
        help="agencies pushing at the same time (1: one after another, in a fixed order)",
    )
    ap.add_argument(
        "--refresh",
        type=int,
        nargs="?",
        const=91,
        metavar="DAYS",
        help="then push every agency's extract again, encoded DAYS (default 91) later",
    )
    args = ap.parse_args()

    from evaluation._harness import load_population, population_dir
    from evaluation._scratch_db import scratch_postgres

    t0 = time.perf_counter()
    pop = load_population(
        max(int(args.records / 5.19), 100),
        args.seed,
        population_dir(args.cache, args.records, args.seed),
        workers=os.cpu_count() or 1,
    )
    print(
        f"population: {len(pop.batch):,} records in {len(pop.agencies)} extracts "
        f"(ready in {time.perf_counter() - t0:.0f}s; cached)"
    )
    with tempfile.TemporaryDirectory(prefix="ingest-speed-") as tmp:
        work = Path(tmp)
        for db in args.databases.split(","):
            if db == "sqlite":
                run(
                    f"sqlite:///{work / 'linkage.sqlite'}",
                    "sqlite",
                    pop,
                    work,
                    args.at_once,
                    args.refresh,
                )
            elif db == "postgresql":
                with scratch_postgres("bench_ingest") as url:
                    if url is not None:
                        url = url.replace("postgresql://", "postgresql+psycopg://")
                        run(url, db, pop, work, args.at_once, args.refresh)
            else:
                raise SystemExit(f"unknown database {db!r}: sqlite or postgresql")
    return 0


if __name__ == "__main__":
    sys.exit(main())
