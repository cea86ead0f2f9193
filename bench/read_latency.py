"""Read latency at size: p50 and p99 of the read routes' store reads over a linked council.

Loads the cached synthetic population (as bench/ingest_speed.py makes it),
applies every agency's extract through ``LinkageService`` (the real engine,
with the statistics refresh every apply does) into a new SQLite file or a
PostgreSQL database it creates and drops, then times, for ``--samples``
random persons, households and records, the store functions the read routes
call: ``/persons/{id}``, ``/households/{id}``, ``/records/{agency}/{ref}/links``,
``/persons`` and ``/households`` pages, ``/review`` pages. In process (no HTTP:
the routes add only pydantic validation of the answer).

    .venv/bin/python bench/read_latency.py --records 200000 --databases sqlite,postgresql
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _load(url: str, pop: Any, staging: Path) -> Any:
    from agency_client import load_agency_public_key, load_mapping
    from linkage_service import _store as store
    from linkage_service._service import LinkageService
    from protocols import default_schema

    sql = store.open_engine(url)
    for a in pop.agencies:
        pub = load_agency_public_key(pop.workdir / "keys" / a / "agency.pub")
        mapping = load_mapping(pop.workdir / "population" / f"{a}.mapping.toml")
        store.add_agency(sql, a, pub.public_key, pub.key_id, [mapping.agency.extract_type])
    schema = default_schema()
    svc = LinkageService(sql, {schema.fingerprint(): schema}, staging_dir=staging, max_records=None)
    svc.start()
    for a in pop.agencies:
        receiver = svc.receiver(a)
        try:
            with pop.extract_paths[a].open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    receiver.feed(chunk)
            svc.apply(receiver.finish())
        finally:
            receiver.close()
    return sql


def _time(fn: Callable[[], Any], samples: int) -> tuple[float, float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    out.sort()
    return statistics.median(out), out[min(len(out) - 1, int(len(out) * 0.99))]


def measure(url: str, label: str, pop: Any, staging: Path, samples: int) -> None:
    """Load the population into ``url`` and print p50/p99 per read."""
    import sqlalchemy as sa

    from linkage_service import _store as store

    t0 = time.perf_counter()
    sql = _load(url, pop, staging)
    print(
        f"[{label}] loaded and linked {len(pop.batch):,} records in {time.perf_counter() - t0:.0f}s"
    )
    rng = random.Random(1)
    with sql.connect() as conn:
        persons = [str(p) for (p,) in conn.execute(sa.select(store.persons.c.id))]
        households = [str(h) for (h,) in conn.execute(sa.select(store.households.c.id))]
        refs = [
            (str(a), str(r))
            for a, r in conn.execute(
                sa.select(store.records.c.agency_id, store.records.c.record_ref).where(
                    store.records.c.active
                )
            )
        ]
    reads: dict[str, Callable[[], Any]] = {
        "GET /persons/{id}": lambda: store.get_person(sql, rng.choice(persons)),
        "GET /households/{id}": lambda: store.get_household(sql, rng.choice(households)),
        "GET /records/{agency}/{ref}/links": lambda: store.record_links(sql, *rng.choice(refs)),
        "GET /persons?after=&limit=100": lambda: store.list_persons(sql, rng.choice(persons), 100),
        "GET /households?after=&limit=100": lambda: store.list_households(
            sql, rng.choice(households), 100
        ),
        "GET /review?offset=0&limit=50": lambda: store.list_review(sql, 0, 50),
    }
    for name, fn in reads.items():
        p50, p99 = _time(fn, samples)
        print(f"[{label}] {name:<36} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    sql.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--databases", default="sqlite,postgresql")
    args = ap.parse_args()

    from evaluation._harness import load_population, population_dir
    from evaluation._scratch_db import scratch_postgres

    pop = load_population(
        max(int(args.records / 5.19), 100),
        args.seed,
        population_dir(args.cache, args.records, args.seed),
        workers=os.cpu_count() or 1,
    )
    with tempfile.TemporaryDirectory(prefix="read-latency-") as tmp:
        work = Path(tmp)
        for db in args.databases.split(","):
            if db == "sqlite":
                measure(f"sqlite:///{work / 'linkage.sqlite'}", "sqlite", pop, work, args.samples)
                continue
            if db != "postgresql":
                raise SystemExit(f"unknown database {db!r}: sqlite or postgresql")
            with scratch_postgres("bench_reads") as url:
                if url is not None:
                    measure(url, "postgresql", pop, work, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
