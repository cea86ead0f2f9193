"""``agency-client``: the command line an agency runs inside its own building.

Parses arguments, calls the library, prints results. Catches only
:class:`AgencyClientError` and prints it plainly (exit status 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from protocols import default_schema, open_private, pipe_safe

from ._check import CheckReport, check_csv
from ._errors import AgencyClientError, PushError
from ._extract import ExtractInfo, encode_csv, verify_extract
from ._keys import (
    CUSTODY_WARNING,
    generate_agency_key,
    generate_seal_keypair,
    generate_secret,
    load_agency_key,
    load_agency_public_key,
    load_seal_public_key,
    load_secret,
)
from ._mapping import load_mapping
from ._push import push_extract
from ._rows import BadRowPolicy
from ._schema_file import load_schema, write_schema
from ._subject import IDENTITY_FIELDS, load_identity, subject_query
from ._synthetic_names import SURNAME_SOURCES

TOKEN_ENV = "AGENCY_CLIENT_TOKEN"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(
        prog="agency-client",
        description="Encode an agency's records into a signed, tokenised extract.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("keygen", help="generate the agency's signing key pair")
    k.add_argument("--agency-id", required=True)
    k.add_argument("--out", type=Path, required=True, help="directory for agency.key / agency.pub")

    s = sub.add_parser("secret", help="generate a new shared linkage secret")
    s.add_argument("--out", type=Path, required=True)

    sk = sub.add_parser(
        "seal-keygen", help="generate an unlock-service sealing key pair (demos and tests)"
    )
    sk.add_argument("--out", type=Path, required=True)

    sc = sub.add_parser("schema", help="write the default linkage schema or print a fingerprint")
    sc.add_argument("--out", type=Path, help="write the default schema here")
    sc.add_argument("--schema", type=Path, help="print the fingerprint of this schema file")

    e = sub.add_parser("encode", help="encode a CSV into a signed extract")
    e.add_argument("--mapping", type=Path, required=True, help="the agency's TOML mapping file")
    e.add_argument("--input", type=Path, required=True, help="the CSV to encode")
    e.add_argument("--out", type=Path, required=True, help="extract to write (JSON Lines)")
    e.add_argument(
        "--secret", type=Path, help="linkage secret file (or $FAMILY_LINKAGE_SECRET_FILE)"
    )
    e.add_argument("--key", type=Path, required=True, help="the agency's agency.key")
    e.add_argument("--seal-key", type=Path, required=True, help="the unlock service's seal.pub")
    e.add_argument("--schema", type=Path, help="linkage schema file (default: the shipped one)")
    e.add_argument("--extract-date", type=_date, help="as-at date (default: today)")
    e.add_argument(
        "--on-bad",
        choices=[p.value for p in BadRowPolicy],
        default=BadRowPolicy.FAIL.value,
        help="fail (default), skip-row, or drop-field; problems go to a report file",
    )
    e.add_argument("--problems", type=Path, help="where to write the problem report (CSV)")
    e.add_argument("--workers", type=int, default=os.cpu_count() or 1)

    c = sub.add_parser(
        "check", help="dry-run a mapping over a CSV: parse rates and suspicious shapes"
    )
    c.add_argument("--mapping", type=Path, required=True, help="the agency's TOML mapping file")
    c.add_argument("--input", type=Path, required=True, help="the CSV to check")
    c.add_argument("--schema", type=Path, help="linkage schema file (default: the shipped one)")
    c.add_argument("--extract-date", type=_date, help="as-at date, as encode's (default: today)")
    c.add_argument(
        "--on-bad",
        choices=[p.value for p in BadRowPolicy],
        default=BadRowPolicy.FAIL.value,
        help="judge the file as encode with this --on-bad would (default: fail)",
    )

    i = sub.add_parser("inspect", help="verify an extract and show its statistics")
    i.add_argument("extract", type=Path)
    i.add_argument(
        "--public-key", type=Path, help="the agency's agency.pub, to check the signature"
    )
    i.add_argument("--schema", type=Path, help="check the schema fingerprint and filter lengths")
    i.add_argument("--json", action="store_true", help="print machine-readable JSON")

    g = sub.add_parser("generate", help="generate the synthetic demo population")
    g.add_argument("--households", type=int, default=2000)
    g.add_argument("--seed", type=int, default=20261121)
    g.add_argument("--error-rate", type=float, default=1.0)
    g.add_argument(
        "--surnames",
        choices=SURNAME_SOURCES,
        default="lists",
        help="long-tail: British surnames by published frequency, not only the fixed list",
    )
    g.add_argument("--out", type=Path, required=True)

    q = sub.add_parser(
        "subject-query", help="encode one identity for a subject access search (no plaintext out)"
    )
    q.add_argument("--identity", type=Path, help="JSON/TOML file holding one identity")
    for name in IDENTITY_FIELDS:
        flag = "--" + name.replace("_", "-")
        if name == "address_lines":
            q.add_argument(flag, action="append", help="an address line (repeatable)")
        else:
            q.add_argument(flag, help=f"{name} (overrides the file)")
    q.add_argument(
        "--secret", type=Path, help="linkage secret file (or $FAMILY_LINKAGE_SECRET_FILE)"
    )
    q.add_argument("--schema", type=Path, help="linkage schema file (default: the shipped one)")
    q.add_argument("--as-at", type=_date, help="date ages are computed at (default: today)")
    q.add_argument("--out", type=Path, help="write the query JSON here (default: stdout)")

    u = sub.add_parser(
        "push", help="upload an extract to the linkage service (resumes after a dropped link)"
    )
    u.add_argument("extract", type=Path)
    u.add_argument("--url", required=True, help="the linkage service, e.g. https://linkage:8700")
    u.add_argument(
        "--token-file", type=Path, help=f"0600 file with the agency's token (or ${TOKEN_ENV})"
    )
    u.add_argument("--chunk-mib", type=int, default=8, help="bytes per request, in MiB")
    u.add_argument(
        "--in-flight",
        type=_at_least_one,
        default=2,
        help="chunks on their way at once (the next is sent while one is checked)",
    )

    d = sub.add_parser("demo", help="generate a population, encode every agency, inspect")
    d.add_argument("--out", type=Path, default=Path("demo-out"))
    d.add_argument("--households", type=int, default=2000)
    d.add_argument("--seed", type=int, default=20261121)
    return p


@pipe_safe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``agency-client``."""
    args = build_parser().parse_args(argv)
    console = Console(markup=False, highlight=False)  # paths and names are data, not markup
    try:
        return _dispatch(args, console)
    except AgencyClientError as exc:
        # the message names user-supplied paths and columns: never markup; and one line
        # even when stderr is a file or pipe (rich would otherwise wrap at 80 columns)
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return 2


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    if args.command == "keygen":
        priv, pub = generate_agency_key(args.agency_id, args.out)
        console.print(
            f"wrote {priv} (secret, mode 600) and {pub} (give this to the linkage service)"
        )
    elif args.command == "secret":
        generate_secret(args.out)
        console.print(f"wrote {args.out} (mode 600)\n")
        console.print(CUSTODY_WARNING, style="bold yellow")
    elif args.command == "seal-keygen":
        priv, pub = generate_seal_keypair(args.out)
        console.print(f"wrote {priv} (unlock service only) and {pub} (give to every agency)")
    elif args.command == "schema":
        if args.out:
            write_schema(load_schema(None), args.out)
            console.print(f"wrote {args.out}")
        console.print(f"fingerprint {load_schema(args.schema).fingerprint()}")
    elif args.command == "encode":
        _encode(args, console)
    elif args.command == "check":
        report = check_csv(
            args.input,
            load_mapping(args.mapping),
            load_schema(args.schema),
            policy=BadRowPolicy(args.on_bad),
            extract_date=args.extract_date,
        )
        _print_check(console, report)
        return report.exit_status
    elif args.command == "inspect":
        info = verify_extract(
            args.extract,
            load_agency_public_key(args.public_key) if args.public_key else None,
            schema=load_schema(args.schema) if args.schema else None,
        )
        if args.json:
            print(json.dumps(info_to_dict(info), indent=2))
        else:
            _print_info(console, args.extract, info)
    elif args.command == "subject-query":
        _subject_query(args, console)
    elif args.command == "generate":
        from ._demo import generate

        generate(args.out, args.households, args.seed, args.error_rate, console, args.surnames)
    elif args.command == "push":
        _push(args, console)
    elif args.command == "demo":
        from ._demo import run_demo

        return run_demo(args.out, args.households, args.seed, console)
    return 0


def _subject_query(args: argparse.Namespace, console: Console) -> None:
    identity: dict[str, object] = load_identity(args.identity) if args.identity else {}
    for name in IDENTITY_FIELDS:
        value = getattr(args, name)
        if value:
            identity[name] = value
    query = subject_query(
        identity, load_schema(args.schema), load_secret(args.secret), as_at=args.as_at
    )
    text = query.model_dump_json(indent=2)
    if args.out:
        with open_private(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        console.print(f"wrote {args.out} (encodings only; give it to the IG officer)")
    else:
        print(text)


def _read_token(path: Path | None) -> str:
    if path is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise PushError(f"no token: give --token-file or set {TOKEN_ENV}")
        return token
    try:
        if path.stat().st_mode & 0o077:
            raise PushError(f"token file {path} must be mode 600")
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PushError(f"cannot read token file {path}: {exc.strerror}") from exc


def _push(args: argparse.Namespace, console: Console, client: httpx.Client | None = None) -> None:
    token = _read_token(args.token_file)
    size = args.extract.stat().st_size if args.extract.is_file() else 0
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task(f"uploading {args.extract.name}", total=size)
        summary = push_extract(
            args.extract,
            args.url,
            token,
            client=client,
            chunk_bytes=args.chunk_mib * 1024**2,
            in_flight=args.in_flight,
            progress=lambda sent, _size: bar.update(task, completed=sent),
        )
    console.print(
        f"applied {args.extract.name}: run {summary.get('run_id')}, "
        f"{summary.get('records_added', 0)} records added, "
        f"{summary.get('records_kept', 0)} kept, {summary.get('records_retired', 0)} retired"
        + (" (already applied)" if summary.get("idempotent") else ""),
        soft_wrap=True,
    )
    if summary.get("warning"):
        console.print(f"warning: {summary['warning']}", soft_wrap=True, markup=False)


def progress_bar(console: Console) -> Progress:
    """The progress bar used by long commands."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def count_lines(path: Path) -> int:
    """Number of newline characters in a file (fast, for progress totals)."""
    n = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return n


def _encode(args: argparse.Namespace, console: Console) -> None:
    mapping = load_mapping(args.mapping)
    schema = load_schema(args.schema)
    secret = load_secret(args.secret)
    key = load_agency_key(args.key)
    seal = load_seal_public_key(args.seal_key)
    total = max(count_lines(args.input) - 1, 0)
    with progress_bar(console) as bar:
        task = bar.add_task(f"encoding {args.input.name}", total=total)
        summary = encode_csv(
            args.input,
            mapping,
            schema,
            secret,
            key,
            seal,
            args.out,
            extract_date=args.extract_date,
            policy=BadRowPolicy(args.on_bad),
            workers=args.workers,
            problems_path=args.problems,
            progress=lambda n: bar.advance(task, n),
        )
    rate = summary.rows_read / summary.seconds if summary.seconds else 0.0
    console.print(
        f"wrote {summary.out_path}: {summary.record_count} records from {summary.rows_read} rows "
        f"({summary.rows_skipped} skipped, {summary.fields_dropped} fields dropped) "
        f"in {summary.seconds:.1f}s ({rate:,.0f} rows/s)"
    )
    if summary.problems_path:
        console.print(f"problems reported in {summary.problems_path}")


def _print_check(console: Console, report: CheckReport) -> None:
    console.print(
        f"{report.csv_path}: {report.rows:,} rows checked against {report.mapping_path}",
        soft_wrap=True,
    )
    if console.is_terminal:
        t = Table(show_header=True, header_style="bold")
        for name in ("mapping key", "column", "filled", "parsed"):
            t.add_column(name, justify="right" if name in ("filled", "parsed") else "left")
        for col in report.columns:
            t.add_row(col.key, col.column, f"{col.filled:,}", col.rate())
        console.print(t)
    else:  # plain, one line per column: easy to grep or diff
        for col in report.columns:
            console.print(
                f"{col.key}  column {col.column!r}  filled {col.filled}  parsed {col.rate()}",
                soft_wrap=True,
            )
    for finding in report.findings:
        style = "red" if finding.level == "error" else "yellow"
        console.print(finding.text(), style=style, soft_wrap=True)
    style = "bold red" if report.errors else "bold yellow" if report.warnings else "green"
    console.print(report.verdict(), style=style, soft_wrap=True)


def info_to_dict(info: ExtractInfo) -> dict[str, object]:
    """ExtractInfo as plain JSON data."""
    shipped = info.header.schema_fingerprint == default_schema().fingerprint()
    return {
        "header": info.header.model_dump(mode="json"),
        "record_count": info.trailer.record_count,
        "records_sha256": info.trailer.records_sha256,
        "signature_checked": info.signature_checked,
        "schema_checked": info.schema_checked,
        "schema_is_shipped_default": shipped,
        "person_filter": {
            "bits": sorted(info.person_fill.lengths),
            "fill_mean": round(info.person_fill.mean, 4),
            "fill_min": round(info.person_fill.low, 4),
            "fill_max": round(info.person_fill.high, 4),
        },
        "address_filter": {
            "count": info.address_fill.count,
            "fill_mean": round(info.address_fill.mean, 4),
        },
        "exact_tokens": dict(info.exact_tokens),
        "local_tokens": dict(info.local_tokens),
        "blocking_keys": dict(info.blocking_keys),
        "indicators": dict(info.indicators),
        "sex": dict(info.sex),
        "sealed_identity_lengths": sorted(info.sealed_lengths),
        "duplicate_record_refs": info.duplicate_refs,
    }


def _print_info(console: Console, path: Path, info: ExtractInfo) -> None:
    h = info.header
    console.print(f"{path}  agency {h.agency_id}  extract {h.extract_id}", style="bold")
    console.print(
        f"  as at {h.extract_date}  created {h.created_at:%Y-%m-%d %H:%M:%S}  signature ",
        end="",
    )
    if info.signature_checked:
        console.print("verified", style="green")
    else:
        console.print("not checked (no --public-key)", style="yellow")
    # what the fingerprint is, and only what was checked of it
    console.print(f"  schema {h.schema_fingerprint[:16]}…: ", end="")
    shipped = default_schema().fingerprint()
    if info.schema_checked:
        console.print("the --schema file's (filter lengths and identifier types checked)")
    elif h.schema_fingerprint == shipped:
        console.print("the shipped default schema's (give --schema to check the records)")
    else:
        console.print(
            f"not the shipped default schema's ({shipped[:16]}…); give the scheme's schema "
            "with --schema to check the records",
            style="yellow",
            soft_wrap=True,
        )
    t = Table(show_header=True, header_style="bold")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("records", f"{info.trailer.record_count:,}")
    t.add_row("duplicate record refs", str(info.duplicate_refs))
    t.add_row("person filter bits", ",".join(map(str, sorted(info.person_fill.lengths))))
    pf = info.person_fill
    t.add_row("person filter fill mean (min-max)", f"{pf.mean:.3f} ({pf.low:.3f}-{pf.high:.3f})")
    t.add_row("address filters", f"{info.address_fill.count:,} (fill {info.address_fill.mean:.3f})")
    t.add_row("sealed identity length(s)", ",".join(map(str, sorted(info.sealed_lengths))))
    for name, n in sorted(info.exact_tokens.items()):
        t.add_row(f"exact token {name}", f"{n:,}")
    for name, n in sorted(info.local_tokens.items()):
        t.add_row(f"local identifier token {name}", f"{n:,}")
    for name, n in sorted(info.blocking_keys.items()):
        t.add_row(f"blocking key {name}", f"{n:,}")
    for name, n in sorted(info.indicators.items()):
        t.add_row(f"indicator {name}", f"{n:,}")
    console.print(t)


if __name__ == "__main__":
    sys.exit(main())
