"""Privacy attacks on the person filters: how many records an operator could re-identify.

The attacker is an honest-but-curious linkage operator: it holds every extract
(person filters, blocking keys, clear age, sex and district) and knows the
schema, but not the linkage secret. It also has a public name-frequency list:
here a census drawn by the independent council generator
(``evaluation/_council.py``, its own name lists, another seed), never the
encoded population's own names. The encoded population is the agency client's
generator, encoded by the agency client as agencies would. The attacks are in
``evaluation/_attacks.py``:

- frequency alignment of the blocking keys' most frequent tokens;
- pattern mining of atoms (bit sets every record sharing a value shares),
  labelled blind (frequency rank) and from side knowledge (0.5%, 1%, 2% of
  persons known to the attacker);
- similarity-graph matching of the atoms with the public names.

Printed: the share of records singled out by a clean atom (nine in ten of its
members share one value; "any" counts names and day/month parts, not sex or
the birth year, which travel in the clear as sex and age), and per attack the
share of records whose given name, family name, birth date and full identity
(both names and birth year right and unique with the district) were
re-identified. Targets (issue 17), for the shipped schema: singled out < 1%;
re-identified < 1% with 2% side knowledge; < 0.1% blind.

    .venv/bin/python bench/privacy_attacks.py                      # shipped schema, 60,000 records
    .venv/bin/python bench/privacy_attacks.py --hardening none --salt none --records 20000
    .venv/bin/python bench/privacy_attacks.py --schema my-schema.json
    .venv/bin/python bench/privacy_attacks.py --write-card docs/model-cards

``--hardening`` and ``--salt`` change the person filter of the schema given (or
the shipped one). Mining stops after ``--mining-seconds`` of CPU time; with the
default the whole run takes about 3-6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"singled out": 0.01, "side knowledge 2%": 0.01, "blind": 0.001}


def _pct(x: float) -> str:
    return f"{100 * x:.3f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=60_000, help="about this many records")
    ap.add_argument("--seed", type=int, default=20261121, help="the encoded population's seed")
    ap.add_argument("--public-households", type=int, default=12_000)
    ap.add_argument("--public-seed", type=int, default=1789)
    ap.add_argument("--schema", type=Path)
    ap.add_argument("--hardening", choices=("none", "balance", "xor_fold"))
    ap.add_argument("--salt", choices=("none", "dob_year", "sex"))
    ap.add_argument("--mining-seconds", type=float, default=180.0)
    ap.add_argument(
        "--closure",
        type=float,
        default=0.97,
        help="share of an atom's members holding each bit (lower: blurred patterns too)",
    )
    ap.add_argument("--write-card", type=Path, help="write privacy-<schema>.md in this directory")
    args = ap.parse_args(argv)

    from agency_client import load_schema
    from evaluation import load_population
    from evaluation._attacks import (
        MiningConfig,
        atom_truth,
        blocking_composites,
        frequency_alignment,
        graph_match,
        label_blind,
        label_side_knowledge,
        mine,
        public_from_council,
        score,
        singled_out,
        truth_of,
        view_of,
    )
    from protocols import Hardening

    schema = load_schema(args.schema)
    update: dict[str, object] = {}
    if args.hardening:
        update["hardening"] = Hardening(args.hardening)
    if args.salt:
        update["salt"] = args.salt
    if update:
        pf = schema.person_filter.model_copy(update=update)
        schema = schema.model_copy(update={"person_filter": pf})
    pf = schema.person_filter
    started = time.process_time()
    wall = time.perf_counter()
    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    households = max(50, round(args.records / 5.05))  # the generator makes ~5.05 a household
    with tempfile.TemporaryDirectory(prefix="privacy-") as work:
        pop = load_population(households, args.seed, Path(work), schema=schema)
        from agency_client._synthetic import PopulationConfig

        view = view_of(pop, PopulationConfig(households=1, seed=args.seed).extract_date)
        truth = truth_of(pop)
    public = public_from_council(args.public_households, args.public_seed)
    prepared = time.process_time() - started

    command = "bench/privacy_attacks.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {dt.date.today().isoformat()}"
    )
    out(
        f"schema: {schema.name} ({schema.fingerprint()[:16]}...), person filter "
        f"{pf.length_bits} bits, hardening {pf.hardening.value}, salt {pf.salt}; fields: "
        + ", ".join(
            f"{f.feature.value} {f.tokenizer.value} {f.bits_per_feature}" for f in pf.fields
        )
    )
    out(
        f"mining closure {args.closure:g}; encoded: agency client generator, seed {args.seed}, "
        f"{households:,} households, "
        f"{len(view):,} records of {len(set(truth.person)):,} persons"
    )
    out(f"public list: {public.source}")

    t0 = time.process_time()
    atoms = mine(view, schema, MiningConfig(seconds=args.mining_seconds, closure=args.closure))
    mined = time.process_time() - t0
    truths = [atom_truth(a, truth) for a in atoms]
    clean = [t for t in truths if t.clean]
    by_feature: dict[str, int] = {}
    for t in clean:
        by_feature[t.feature] = by_feature.get(t.feature, 0) + 1
    shares = singled_out(atoms, truths, truth)
    out(
        f"\npattern mining: {len(atoms):,} atoms, {len(clean):,} clean ("
        + ", ".join(f"{k} {v}" for k, v in sorted(by_feature.items()))
        + f"); {mined:.0f} s CPU"
    )
    out(
        "| singled out by a clean atom | given name | family name | both names "
        "| a day/month part | any (target < 1%) |"
    )
    out("|---|---|---|---|---|---|")
    out(
        f"| share of records | {_pct(shares['given'])} | {_pct(shares['family'])} | "
        f"{_pct(shares['both names'])} | {_pct(shares['date part'])} | {_pct(shares['any'])} |"
    )

    out("\n| attack | given name | family name | birth date | birth year | identity |")
    out("|---|---|---|---|---|---|")
    results: dict[str, float] = {}

    def row(name: str, labels: list[tuple[str, object] | None]) -> None:
        r = score(atoms, labels, view, truth)
        results[name] = r.identity
        out(
            f"| {name} | {_pct(r.given)} | {_pct(r.family)} | {_pct(r.birth_date)} | "
            f"{_pct(r.year)} | {_pct(r.identity)} |"
        )

    row("no atoms (clear age only)", [None] * len(atoms))
    row("blind: frequency rank", label_blind(atoms, view, public, schema))
    row("blind: similarity-graph matching", graph_match(atoms, view, public, schema))
    for share in (0.005, 0.01, 0.02):
        row(
            f"side knowledge {100 * share:g}%",
            label_side_knowledge(atoms, view, truth, share, schema, seed=args.seed),
        )

    out("\n| frequency alignment | top tokens | aligned right | records covered | head ratio |")
    out("|---|---|---|---|---|")
    for a in frequency_alignment(view, truth, public, blocking_composites()):
        out(f"| {a.column} | {a.top} | {a.correct} | {_pct(a.records)} | {a.head_ratio:.1f} |")

    blind = max(results["blind: frequency rank"], results["blind: similarity-graph matching"])
    verdict = {
        "singled out": shares["any"],
        "side knowledge 2%": results["side knowledge 2%"],
        "blind": blind,
    }
    out("\n| target | measured | limit | met |")
    out("|---|---|---|---|")
    for name, limit in TARGETS.items():
        ok = "yes" if verdict[name] < limit else "no"
        out(f"| {name} | {_pct(verdict[name])} | {_pct(limit)} | {ok} |")
    total = time.process_time() - started
    out(
        f"\nCPU time: {total:.0f} s (population and public list {prepared:.0f} s, "
        f"mining {mined:.0f} s); wall {time.perf_counter() - wall:.0f} s"
    )
    out(f"command: .venv/bin/python {command}".rstrip())

    if args.write_card is not None:
        slug = re.sub(r"[^a-z0-9]+", "-", schema.name.lower()).strip("-")
        if pf.hardening is not Hardening.NONE or pf.salt != "none":
            slug += f"-{pf.hardening.value}-salt-{pf.salt}".replace("_", "-")
        path = args.write_card / f"privacy-{slug}.md"
        args.write_card.mkdir(parents=True, exist_ok=True)
        body = "\n".join(lines)
        path.write_text(
            f"# Privacy card: {schema.name} ({schema.fingerprint()[:16]}...)\n\n"
            "What an honest-but-curious linkage operator, holding every extract and a "
            "public name list but not the linkage secret, could learn from the person "
            "filters of this schema, measured by `bench/privacy_attacks.py` (attacks in "
            "`evaluation/_attacks.py`; definitions in its module docstring and in "
            'docs/agency-client.md, "Hardening"). The figures are for one synthetic '
            "population and one public list: a lower bound on what a better-informed "
            "attacker could do.\n\n```\n" + body + "\n```\n\n"
            "What the service holds in clear beside the filters (age under 25 or an age "
            "band, sex, a child's district) and the persons unique on it (k-anonymity, "
            "`bench/quasi_identifiers.py`): [docs/privacy.md](../privacy.md).\n",
            encoding="utf-8",
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
