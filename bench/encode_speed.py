"""Encoding speed and memory: records/s for the full agency pipeline.

Generates the synthetic population (about 5.2 agency records per household),
then encodes every agency's CSV with ``encode_csv`` exactly as ``agency-client
encode`` does: normalise, person and address filters, keyed tokens and
blocking keys, sealed identity, signed extract, worker processes on every core.
Each encode runs in a fresh child process so its peak memory (main process and
worker processes separately) is its own. The main process's CPU per record is
printed too; with ``--workers 1`` that is the whole pipeline's CPU cost. A CPU
check (a fixed loop) before and after each encode shows how fast the machine
was at the time: a shared or virtual machine's speed drifts by tens of percent.

    .venv/bin/python bench/encode_speed.py                      # 100k and 1M records
    .venv/bin/python bench/encode_speed.py --records 100000 --workers 1
    .venv/bin/python bench/encode_speed.py --agencies csc --derives   # one agency, through derives
    .venv/bin/python bench/encode_speed.py --records 100000 --workers 1 --schema FILE  # another

``--derives`` rewrites the children's social care mapping so its identity goes
through ``[[derive]]`` transforms (its one-cell address split into street and
town, its sex codes mapped): the same records, the cost of the transforms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from agency_client import *
from agency_client._synthetic import PopulationConfig
pop, keys, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
agencies = sys.argv[5].split(",")
schema_file = Path(sys.argv[6]) if sys.argv[6] else None
secret = load_secret(keys / "secret")
seal = load_seal_public_key(keys / "unlock" / "seal.pub")
schema = load_schema(schema_file)
rows = records = 0
started, cpu_started = time.perf_counter(), time.process_time()
for agency in agencies:
    s = encode_csv(pop / f"{agency}.csv", load_mapping(pop / f"{agency}.mapping.toml"), schema,
                   secret, load_agency_key(keys / agency / "agency.key"), seal,
                   out / f"{agency}.jsonl", extract_date=PopulationConfig().extract_date,
                   policy=BadRowPolicy.DROP_FIELD, workers=workers)
    rows += s.rows_read
    records += s.record_count
seconds, main_cpu = time.perf_counter() - started, time.process_time() - cpu_started
print(json.dumps({"rows": rows, "records": records, "seconds": seconds, "main_cpu": main_cpu,
                  "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _tree_rss(root: int) -> tuple[float, float]:
    """(total, largest) resident MB of ``root`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(stat[1])
            rss[int(entry)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parents.items() if p == pid]
        tree.update(kids)
        frontier.extend(kids)
    sizes = [rss.get(p, 0.0) for p in tree]
    return sum(sizes), max(sizes, default=0.0)


def _run_sampled(cmd: list[str]) -> tuple[str, float, float]:
    """Run ``cmd``; return its stdout and the peak total and peak single-process RSS (MB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_total = peak_one = 0.0
    while proc.poll() is None:
        total, one = _tree_rss(proc.pid)
        peak_total, peak_one = max(peak_total, total), max(peak_one, one)
        time.sleep(0.25)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"encode failed:\n{err}")
    return out, peak_total, peak_one


def _cpu_check() -> float:
    """Seconds of CPU for a fixed pure-Python loop: how fast this machine is right now.

    Shared and virtual machines change speed from minute to minute (here by up to
    half); printed beside each figure so runs can be compared fairly.
    """
    started = time.process_time()
    sum(i * i for i in range(3_000_000))
    return time.process_time() - started


def _use_derives(mapping: Path) -> None:
    """Rewrite the csc mapping: address and sex through [[derive]] transforms."""
    text = mapping.read_text(encoding="utf-8")
    for old, new in (
        ('address_lines = "Address"', 'address_lines = ["street", "town"]'),
        ('sex = "Gender"', 'sex = "sex_code"'),
        ('sex_values = { "Male" = "M", "Female" = "F" }\n', ""),
    ):
        if old not in text:
            raise SystemExit(f"{mapping}: expected {old!r} in the synthetic csc mapping")
        text = text.replace(old, new)
    text += """
[[derive]]
name = "street"
from = "Address"
split_address = "street"

[[derive]]
name = "town"
from = "Address"
split_address = "town"

[[derive]]
name = "sex_code"
from = "Gender"
map = { "Male" = "M", "Female" = "F" }
"""
    mapping.write_text(text, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--agencies", nargs="+", help="encode only these agencies")
    ap.add_argument(
        "--derives", action="store_true", help="the csc mapping reads its identity through derives"
    )
    ap.add_argument("--schema", type=Path, help="a linkage schema file (default: the shipped one)")
    args = ap.parse_args()

    from agency_client import generate_agency_key, generate_seal_keypair, generate_secret
    from agency_client._synthetic import PopulationConfig, generate_population

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}; workers {args.workers}; schema "
        f"{args.schema or 'shipped'}"
    )
    work = Path(tempfile.mkdtemp(prefix="encode-speed-"))
    try:
        keys = work / "keys"
        generate_secret(keys / "secret")
        generate_seal_keypair(keys / "unlock")
        for target in args.records:
            households = max(int(target / 5.19), 100)
            pop_dir = work / f"pop-{target}"
            t0 = time.perf_counter()
            pop = generate_population(PopulationConfig(households=households), pop_dir)
            gen_s = time.perf_counter() - t0
            agencies = [a for a in pop.agencies if not args.agencies or a in args.agencies]
            for agency in agencies:
                if not (keys / agency / "agency.key").exists():
                    generate_agency_key(agency, keys / agency)
            if args.derives:
                _use_derives(pop_dir / "csc.mapping.toml")
            out = work / f"out-{target}"
            out.mkdir()
            cpu_before = _cpu_check()
            stdout, peak_total, peak_one = _run_sampled(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(pop_dir),
                    str(keys),
                    str(out),
                    str(args.workers),
                    ",".join(agencies),
                    str(args.schema or ""),
                ]
            )
            r = json.loads(stdout.strip().splitlines()[-1])
            size = sum(p.stat().st_size for p in out.glob("*.jsonl"))
            print(
                f"{r['rows']:>9,} rows ({len(agencies)} agencies, generated in {gen_s:.0f}s): "
                f"encoded {r['records']:,} records in {r['seconds']:.1f}s = "
                f"{r['rows'] / r['seconds']:,.0f} records/s; main process CPU "
                f"{1e6 * r['main_cpu'] / r['rows']:.0f} us/record; peak RSS main process "
                f"{r['main_peak_mb']:.0f} MB, all processes together {peak_total:.0f} MB "
                f"(largest {peak_one:.0f} MB); extracts {size / 1e6:,.0f} MB; CPU check "
                f"{cpu_before:.3f}s before, {_cpu_check():.3f}s after (lower is faster)"
            )
            shutil.rmtree(pop_dir, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
