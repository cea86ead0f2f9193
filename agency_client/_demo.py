"""The README demo: generate a population, encode every agency's extract, verify.

Everything it writes goes under one output directory (``demo-out/`` by default):
``population/`` (synthetic plaintext CSVs, mappings and ground truth),
``keys/`` (demo keys, mode 600), ``extracts/`` (signed extracts). A second run
reuses the keys and regenerates the rest, so it is safe to repeat.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from protocols import open_sealed_identity, private_dir

from ._extract import encode_csv, verify_extract
from ._keys import (
    generate_agency_key,
    generate_seal_keypair,
    generate_secret,
    load_agency_key,
    load_agency_public_key,
    load_seal_private_key,
    load_seal_public_key,
    load_secret,
)
from ._mapping import load_mapping
from ._privacy import Needles, identity_needles, scan_extract
from ._rows import BadRowPolicy
from ._schema_file import load_schema
from ._synthetic import GeneratedPopulation, PopulationConfig, generate_population


def generate(
    out: Path,
    households: int,
    seed: int,
    error_rate: float,
    console: Console,
    surnames: str = "lists",
) -> GeneratedPopulation:
    """Generate the synthetic population with a progress bar and a summary line."""
    from ._cli import progress_bar

    started = time.perf_counter()
    with progress_bar(console) as bar:
        task = bar.add_task("generating households", total=households)
        pop = generate_population(
            PopulationConfig(
                households=households, seed=seed, error_rate=error_rate, surnames=surnames
            ),
            out,
            progress=lambda n: bar.advance(task, n),
        )
    console.print(
        f"generated {pop.household_count:,} households ({pop.family_count:,} families), "
        f"{pop.person_count:,} people, {pop.record_count:,} agency records across "
        f"{len(pop.agencies)} agencies in {time.perf_counter() - started:.1f}s -> {out}"
    )
    return pop


def ensure_keys(keys: Path, agencies: tuple[str, ...]) -> None:
    """Create any demo key that does not exist yet (never overwrites)."""
    if not (keys / "linkage.secret").exists():
        generate_secret(keys / "linkage.secret")
    if not (keys / "unlock" / "seal.key").exists():
        generate_seal_keypair(keys / "unlock")
    for agency in agencies:
        if not (keys / agency / "agency.key").exists():
            generate_agency_key(agency, keys / agency)


def run_demo(out: Path, households: int, seed: int, console: Console) -> int:
    """Run the whole agency-side demo; returns the process exit status."""
    from ._cli import progress_bar

    console.rule("1. synthetic population (plaintext, stays inside each agency)")
    # The demo's own directories: owner-only, also when left by an earlier run.
    for directory in (out, out / "population", out / "extracts"):
        private_dir(directory, own=True)
    pop = generate(out / "population", households, seed, 1.0, console)

    console.rule("2. keys")
    keys = out / "keys"
    ensure_keys(keys, pop.agencies)
    console.print(
        f"linkage secret {keys / 'linkage.secret'} (agencies only); unlock sealing key "
        f"{keys / 'unlock'}; one signing key per agency under {keys}/<agency>/"
    )

    console.rule("3. encode each agency's extract")
    schema = load_schema(None)
    secret = load_secret(keys / "linkage.secret")
    seal_pub = load_seal_public_key(keys / "unlock" / "seal.pub")
    table = Table(
        "agency", "rows", "records", "fields dropped", "person fill", "rows/s", "signature"
    )
    needles = Needles()
    extracts: dict[str, Path] = {}
    for agency in pop.agencies:
        mapping = load_mapping(pop.mapping_paths[agency])
        target = out / "extracts" / f"{agency}.jsonl"
        with progress_bar(console) as bar:
            task = bar.add_task(f"encoding {agency}", total=None)
            summary = encode_csv(
                pop.csv_paths[agency],
                mapping,
                schema,
                secret,
                load_agency_key(keys / agency / "agency.key"),
                seal_pub,
                target,
                extract_date=PopulationConfig().extract_date,
                policy=BadRowPolicy.DROP_FIELD,
                progress=lambda n, t=task: bar.advance(t, n),  # type: ignore[misc]
            )
        info = verify_extract(
            target, load_agency_public_key(keys / agency / "agency.pub"), schema=schema
        )
        extracts[agency] = target
        needles.update(identity_needles(pop.csv_paths[agency], mapping))
        table.add_row(
            agency,
            f"{summary.rows_read:,}",
            f"{summary.record_count:,}",
            str(summary.fields_dropped),
            f"{info.person_fill.mean:.3f}",
            f"{summary.rows_read / max(summary.seconds, 1e-9):,.0f}",
            "verified" if info.signature_checked else "NOT CHECKED",
        )
    console.print(table)

    console.rule("4. privacy check")
    leaks = {agency: scan_extract(path, needles) for agency, path in extracts.items()}
    total = sum(len(v) for v in leaks.values())
    console.print(
        f"searched {len(extracts)} extracts for {len(needles.all()):,} identifying values "
        f"(names, dates of birth, postcodes, NHS/NI/UPN, system ids): {total} found"
    )
    for agency, found in leaks.items():
        if found:
            console.print(f"{agency}: {len(found)} identifiers in clear", style="red")

    first = next(iter(extracts.values()))
    seal_key = load_seal_private_key(keys / "unlock" / "seal.key")
    from ._extract import iter_records

    rec = next(iter_records(first))
    payload = open_sealed_identity(
        str(rec["sealed_identity"]), seal_key, expect_record_ref=str(rec["record_ref"])
    )
    present = [k for k, v in payload.model_dump().items() if v not in (None, (), "")]
    console.print(
        f"the unlock service's key opens a sealed identity of {payload.agency_id} record "
        f"{payload.record_ref}: fields {', '.join(present)}"
    )
    console.rule("done")
    console.print(
        f"extracts in {out / 'extracts'}; inspect one with:\n"
        f"  agency-client inspect {first} --public-key {keys}/{first.stem}/agency.pub"
    )
    return 1 if total else 0
