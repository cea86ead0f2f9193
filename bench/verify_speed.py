"""Upload checks alone: an extract fed to the service's receiver in this process, no HTTP.

The service checks every record line as its chunk arrives (``ExtractReceiver``:
the wire model, base64, sizes, dates, the content digest, staging), on the
receiving thread and, with a ``VerifyPool``, on worker processes beside it.
Through ``bench/ingest_speed.py`` those checks share the machine with the
client, the HTTP layer and the applies, so their time there moves with
everything else; here they run alone. Feeds the first ``--mib`` MiB of an
agency's cached extract (``bench/ingest_speed.py`` or ``bench/linkage_scale.py``
makes the cache) in 8 MiB chunks, as ``agency-client push`` sends them, to
receivers without a pool and with pools of the given sizes, alternating,
``--rounds`` times; the pools are started in a first round that is not
counted (a worker's start takes about a second). Prints microseconds of wall
time a line, the median and the fastest round.

    .venv/bin/python bench/verify_speed.py
    .venv/bin/python bench/verify_speed.py --agency school --workers 1 2 --rounds 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 8 * 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--agency", default="health", help="whose cached extract to feed")
    ap.add_argument("--mib", type=int, default=64, help="how much of it (MiB)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1], help="pool sizes to try")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--records", type=int, default=1_000_000, help="the cached population's size")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "out")
    args = ap.parse_args()

    from agency_client import load_schema
    from evaluation._harness import load_population, population_dir
    from linkage_service import _store as store
    from linkage_service._ingest import ExtractReceiver, VerifyPool

    sys.path.insert(0, str(Path(__file__).parent))
    from ingest_speed import _register

    cache = population_dir(args.cache, args.records, args.seed)
    pop = load_population(
        max(int(args.records / 5.19), 100), args.seed, cache, workers=os.cpu_count() or 1
    )
    schema = load_schema(None)
    data = (cache / "extracts" / f"{args.agency}.jsonl").read_bytes()[: args.mib * 1024 * 1024]
    data = data[: data.rfind(b"\n", 0, len(data) - 1) + 1]  # whole lines, no trailer
    lines = data.count(b"\n") - 1  # less the header
    with tempfile.TemporaryDirectory(prefix="verify-speed-") as tmp:
        url = f"sqlite:///{tmp}/linkage.sqlite"
        store.open_engine(url).dispose()
        _register(url, pop)
        sql = store.open_engine(url)
        pools: dict[str, VerifyPool | None] = {"no pool": None}
        pools.update({f"{n} worker(s)": VerifyPool(n, tmp) for n in args.workers})
        seconds: dict[str, list[float]] = {label: [] for label in pools}
        try:
            for round_ in range(args.rounds + 1):
                for label, pool in pools.items():
                    receiver = ExtractReceiver(
                        agency_id=args.agency,
                        engine=sql,
                        schemas={schema.fingerprint(): schema},
                        max_body_bytes=4 * 1024**3,
                        max_line_bytes=1 << 20,
                        max_records=None,
                        staging_dir=Path(tmp),
                        verify_pool=pool,
                    )
                    t0 = time.perf_counter()
                    for at in range(0, len(data), CHUNK):
                        receiver.feed(data[at : at + CHUNK])
                    took = time.perf_counter() - t0
                    receiver.close()
                    if round_:
                        seconds[label].append(took)
        finally:
            for pool in pools.values():
                if pool is not None:
                    pool.close()
            sql.dispose()
    mib = len(data) / 2**20
    print(f"{args.agency}: {lines:,} record lines ({mib:.0f} MiB), {args.rounds} rounds")
    for label, took in seconds.items():
        per = [t / lines * 1e6 for t in took]
        print(
            f"  {label:12s} {statistics.median(per):6.1f} us a line (fastest {min(per):.1f}), "
            f"{lines / statistics.median(took):,.0f} lines/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
