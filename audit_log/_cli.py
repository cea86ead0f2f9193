"""``audit-log``: the command line for log operators and IG officers.

Operators generate keys and serve the log (and the IG witness). IG officers
fetch and verify the latest checkpoint against a pinned verifier key, check it
is consistent with the last one they saw (a state file), verify receipts
(offline against an entry file, or against the entry the log holds), list,
filter and export entries, and verify a whole database copy row by row.
``main`` parses arguments, calls library functions, prints results and turns
``AuditLogError`` into a plain message and exit status 1; it never catches
anything broader. Bearer tokens come from the environment
(``AUDIT_LOG_TOKEN``), keys from 0600 files or the environment.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from protocols import field_path, pipe_safe

from . import _store as store
from ._checkpoint import CosignatureSigner, parse_tlog_proof
from ._config import (
    Settings,
    WitnessSettings,
    cosigner_skey,
    load_cosigner,
    load_signer,
    load_tokens,
    log_verifier,
    write_secret,
)
from ._errors import AuditLogError, CheckpointError, ProofError
from ._log import verify_database
from ._note import NoteSigner
from ._remote import (
    PAGE,
    check_checkpoint,
    fetch_checkpoint,
    fetch_leaf,
    verified_leaves,
    verify_receipt,
)
from ._review import format_csv, format_jsonl
from ._storage_errors import ConfigError, EntryError

__all__ = ["main"]

TOKEN_ENV = "AUDIT_LOG_TOKEN"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a UTC offset, e.g. 2026-03-01T00:00Z")
    return parsed


def _parse_hours(value: str) -> tuple[int, int]:
    start, sep, end = value.partition("-")
    try:
        if not sep:
            raise ValueError(value)
        return int(start), int(end)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not START-END in whole hours, e.g. 8-18"
        ) from exc


def _parse_days(value: str) -> frozenset[int]:
    days: set[int] = set()
    for part in value.lower().split(","):
        first, _, last = part.strip().partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise argparse.ArgumentTypeError(
                f"{value!r}: use day names {','.join(_DAYS)} or ranges like mon-fri"
            )
        lo, hi = _DAYS.index(first), _DAYS.index(last or first)
        if hi < lo:
            raise argparse.ArgumentTypeError(f"{part!r}: a day range must run forwards")
        days.update(range(lo, hi + 1))
    return frozenset(days)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audit-log", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="generate a log signing key (0600 file), print its vkey")
    p.add_argument("--name", required=True, help="key name = checkpoint origin")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("serve", help="serve the log over HTTP")
    p.add_argument("--db", required=True, help="database URL (sqlite:///… or postgresql://…)")
    p.add_argument("--key", type=Path, help="log key file (default: $AUDIT_LOG_KEY)")
    p.add_argument("--tokens", type=Path, required=True, help="bearer token file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8400)
    p.add_argument(
        "--witness",
        nargs=2,
        action="append",
        default=[],
        metavar=("URL", "VKEY"),
        help="require this witness's cosignature (token from $AUDIT_LOG_WITNESS_TOKEN)",
    )
    p.add_argument("--witness-quorum", type=int)
    p.add_argument("--checkpoint-interval", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=256, help="most entries per commit")
    p.add_argument(
        "--batch-wait", type=float, default=0.0, help="seconds to wait for a fuller batch"
    )
    anomaly = p.add_argument_group("anomaly reports (GET /reports/anomalies)")
    anomaly.add_argument(
        "--max-unlocks", type=int, default=20, help="granted unlocks per professional per period"
    )
    anomaly.add_argument("--period", choices=("day", "week"), default="day")
    anomaly.add_argument(
        "--working-hours",
        type=_parse_hours,
        default=(8, 18),
        metavar="START-END",
        help="local working hours [START, END), default 8-18",
    )
    anomaly.add_argument(
        "--working-days",
        type=_parse_days,
        default=frozenset(range(5)),
        metavar="DAYS",
        help="e.g. mon-fri (default) or mon-fri,sat",
    )
    anomaly.add_argument("--timezone", default="Europe/London", help="IANA zone of working hours")
    anomaly.add_argument(
        "--break-glass-review-days",
        type=int,
        default=7,
        help="days a break-glass unlock may wait for its review",
    )

    p = sub.add_parser("checkpoint", help="fetch, verify and remember the latest checkpoint")
    p.add_argument("--url", required=True)
    p.add_argument("--vkey", required=True, help="pinned log vkey (text or file)")
    p.add_argument("--state", type=Path, required=True, help="last verified checkpoint")
    p.add_argument("--witness-vkey", action="append", default=[], help="require its cosignature")

    p = sub.add_parser("verify-receipt", help="verify a tlog-proof receipt (offline with --entry)")
    p.add_argument("--vkey", required=True)
    p.add_argument("--receipt", type=Path, required=True)
    entry = p.add_mutually_exclusive_group(required=True)
    entry.add_argument(
        "--entry",
        type=Path,
        help="the entry: its exact leaf, alone or as the one line `export` writes",
    )
    entry.add_argument(
        "--url",
        help="read the entry the receipt names from this log (token from $AUDIT_LOG_TOKEN)",
    )
    p.add_argument("--witness-vkey", action="append", default=[], help="require its cosignature")

    for name, help_text in (("entries", "list and filter entries"), ("export", "export entries")):
        p = sub.add_parser(name, help=help_text)
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--url", help="review API base URL (token from $AUDIT_LOG_TOKEN)")
        source.add_argument("--db", help="read a database copy directly (run verify-db first)")
        p.add_argument("--vkey", help="pinned log vkey (text or file); required with --url")
        p.add_argument("--state", type=Path, help="with --url: check and update this state file")
        p.add_argument(
            "--witness-vkey", action="append", default=[], help="require its cosignature"
        )
        p.add_argument("--type")
        p.add_argument("--professional", dest="professional_id")
        p.add_argument("--family", dest="family_id")
        p.add_argument("--purpose", dest="purpose_code")
        p.add_argument("--decision", choices=("granted", "refused"))
        p.add_argument("--request", dest="request_id")
        p.add_argument("--from", dest="since", type=_parse_time)
        p.add_argument("--to", dest="until", type=_parse_time)
        p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
        p.add_argument("--out", type=Path, help="write here instead of standard output")
        if name == "entries":
            p.add_argument("--limit", type=int, default=100)

    p = sub.add_parser("verify-db", help="recompute the whole tree from a database")
    p.add_argument("--db", required=True)
    p.add_argument("--vkey", required=True)
    p.add_argument("--state", type=Path, help="also require the checkpoint in this state file")

    witness = sub.add_parser("witness", help="the IG witness").add_subparsers(
        dest="witness_command", required=True
    )
    p = witness.add_parser("keygen", help="generate a witness key (0600 file), print its vkey")
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, required=True)
    p = witness.add_parser("serve", help="serve POST /add-checkpoint")
    p.add_argument("--key", type=Path, help="witness key file (default: $AUDIT_LOG_WITNESS_KEY)")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--log-vkey", action="append", required=True, help="a log it witnesses")
    p.add_argument("--tokens", type=Path, required=True, help="token file of allowed logs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8401)
    return parser


# -- helpers -------------------------------------------------------------


def _client(url: str, http_client: httpx.Client | None) -> httpx.Client:
    if http_client is not None:
        return http_client
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"set {TOKEN_ENV} to your bearer token")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)


def _leaves_db(url: str, args: argparse.Namespace, limit: int | None) -> Iterator[bytes]:
    engine = store.open_engine(url, migrate_schema=False)
    try:
        start = 0
        seen = 0
        while True:
            page = PAGE if limit is None else min(PAGE, limit - seen)
            if page <= 0:
                return
            where = store.EntryFilter(
                type=args.type,
                professional_id=args.professional_id,
                family_id=args.family_id,
                purpose_code=args.purpose_code,
                decision=args.decision,
                request_id=args.request_id,
                since=args.since,
                until=args.until,
                start_index=start,
                limit=page,
            )
            found = store.query_entries(engine, where)
            for item in found:
                seen += 1
                yield item.leaf_data
            if len(found) < page:
                return
            start = found[-1].index + 1
    finally:
        engine.dispose()


def _filter(args: argparse.Namespace) -> store.EntryFilter:
    return store.EntryFilter(
        type=args.type,
        professional_id=args.professional_id,
        family_id=args.family_id,
        purpose_code=args.purpose_code,
        decision=args.decision,
        request_id=args.request_id,
        since=args.since,
        until=args.until,
        limit=None,
    )


def _leaves_url(
    client: httpx.Client, args: argparse.Namespace, limit: int | None, console: Console
) -> Iterator[bytes]:
    if not args.vkey:
        raise ConfigError("--url needs --vkey: entries from a server are shown only once verified")
    verifier = log_verifier(args.vkey)
    if args.state is not None:
        checkpoint, _ = check_checkpoint(client, verifier, args.state, args.witness_vkey)
    else:
        checkpoint, _ = fetch_checkpoint(client, verifier, args.witness_vkey)
    count = 0
    for leaf in verified_leaves(client, checkpoint, _filter(args), limit):
        count += 1
        yield leaf
    how = (
        "tree root recomputed from every leaf"
        if _filter(args).is_unfiltered() and limit is None
        else "inclusion proof checked for each"
    )
    console.print(
        f"verified {count} entries against the checkpoint of size {checkpoint.size} ({how})",
        highlight=False,
    )


def _write_entries(
    args: argparse.Namespace, out: TextIO, http: httpx.Client | None, console: Console
) -> int:
    """Write the entries to ``out`` only once every one of them has been checked."""
    limit = getattr(args, "limit", None)
    client = _client(args.url, http) if args.url else None
    try:
        leaves = (
            _leaves_url(client, args, limit, console)
            if client
            else _leaves_db(args.db, args, limit)
        )
        formatter = format_csv if args.format == "csv" else format_jsonl
        count = 0
        # A full export is verified only when its last leaf is in, so spool the
        # output and release it after: a failed check must print nothing.
        with tempfile.SpooledTemporaryFile(max_size=32 << 20, mode="w+", encoding="utf-8") as spool:
            for chunk in formatter(leaves):
                spool.write(chunk)
                count += chunk.count("\n")
            spool.seek(0)
            shutil.copyfileobj(spool, out)
        return count
    finally:
        if client is not None and client is not http:
            client.close()


def _export_to(
    path: Path, args: argparse.Namespace, http: httpx.Client | None, console: Console
) -> int:
    """Write to a temporary file beside ``path`` and rename it only on success."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            count = _write_entries(args, handle, http, console)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


# -- commands --------------------------------------------------------------


def _keygen(args: argparse.Namespace, console: Console) -> None:
    signer = NoteSigner.generate(args.name)
    write_secret(args.out, signer.skey)
    console.print(signer.vkey, soft_wrap=True, highlight=False)


def _witness_keygen(args: argparse.Namespace, console: Console) -> None:
    seed = os.urandom(32)
    signer = CosignatureSigner.from_seed(args.name, seed)
    write_secret(args.out, cosigner_skey(signer, seed))
    console.print(signer.vkey, soft_wrap=True, highlight=False)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = field_path(first["loc"], "(root)")
    return f"{where}: {first['msg']}"


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ._api import create_app

    try:
        settings = Settings(
            db_url=args.db,
            key_file=args.key,
            token_file=args.tokens,
            witnesses=tuple(WitnessSettings(url=url, vkey=vkey) for url, vkey in args.witness),
            witness_quorum=args.witness_quorum,
            checkpoint_interval=args.checkpoint_interval,
            batch_size=args.batch_size,
            batch_wait=args.batch_wait,
            max_unlocks_per_period=args.max_unlocks,
            anomaly_period=args.period,
            working_hours=args.working_hours,
            working_days=args.working_days,
            timezone=args.timezone,
            break_glass_review_days=args.break_glass_review_days,
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid serve options: {_describe(exc)}") from exc
    # Check keys, tokens and the anomaly config now so a misconfiguration
    # fails before binding a port.
    load_tokens(settings.token_file)
    settings.anomaly_config()
    signer = load_signer(settings.key_file, settings.key_env)
    _json_logs("audit-log")
    uvicorn.run(
        create_app(settings, signer=signer),
        host=args.host,
        port=args.port,
        log_config=None,  # keep the JSON handlers _json_logs set
        access_log=False,
    )


def _witness_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ._witness import Witness, create_witness_app

    signer = load_cosigner(args.key)
    logs = {}
    for vkey in args.log_vkey:
        verifier = log_verifier(vkey)
        logs[str(verifier.name)] = verifier
    witness = Witness(args.state, signer, logs)
    tokens = load_tokens(args.tokens)
    _json_logs("audit-witness")
    uvicorn.run(
        create_witness_app(witness, tokens.digests()),
        host=args.host,
        port=args.port,
        log_config=None,  # keep the JSON handlers _json_logs set
        access_log=False,  # its own lines: each checkpoint cosigned or refused
    )


# Log fields of the log server and the witness beyond the shared ones: sizes only.
SAFE_LOG_FIELDS = ("size",)


def _json_logs(service: str, stream: TextIO | None = None) -> None:
    """This package's and uvicorn's logs to ``stream`` (stderr) as JSON lines, as every
    service writes them."""
    from service_common import configure_logging

    configure_logging(
        ["audit_log", "uvicorn.error"],
        safe_fields=SAFE_LOG_FIELDS,
        service_name=service,
        stream=stream,
    )


def _verify_receipt(args: argparse.Namespace, console: Console, http: httpx.Client | None) -> None:
    try:
        receipt = args.receipt.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read receipt {args.receipt}: {exc}") from exc
    if args.entry is not None:
        try:
            entry = args.entry.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read entry {args.entry}: {exc}") from exc
        source = str(args.entry)
    else:
        try:
            index = parse_tlog_proof(receipt).index
        except CheckpointError as exc:
            raise CheckpointError(f"{args.receipt} is not a receipt: {exc}") from exc
        client = _client(args.url, http)
        try:
            entry = fetch_leaf(client, index)
        finally:
            if client is not http:
                client.close()
        source = f"entry {index} as the log at {args.url} holds it"
    try:
        checked = verify_receipt(receipt, entry, args.vkey, args.witness_vkey)
    except ProofError as exc:
        raise ProofError(
            f"{source} is not the entry {args.receipt} proves (or the receipt was altered): {exc}"
        ) from exc
    except EntryError as exc:
        raise EntryError(f"{source}: {exc}") from exc
    cp = checked.checkpoint
    cosigned = f", cosigned by {', '.join(checked.witnesses)}" if checked.witnesses else ""
    read = f" (entry read from {args.url})" if args.entry is None else ""
    console.print(
        f"verified: entry {checked.index} is in the log of size {cp.size} "
        f"({cp.origin}){cosigned}{read}"
    )


def _verify_db(args: argparse.Namespace, console: Console) -> None:
    verifier = log_verifier(args.vkey)
    expected: list[str] = []
    if args.state is not None:
        try:
            expected.append(args.state.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read state file {args.state}: {exc}") from exc
    engine = store.open_engine(args.db, migrate_schema=False)
    try:
        total = store.count_entries(engine)
        with Progress(
            TextColumn("verifying entries"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress:
            task = progress.add_task("verify", total=total)
            result = verify_database(
                engine,
                verifier,
                progress=lambda n: progress.update(task, completed=n),
                expected=expected,
            )
    finally:
        engine.dispose()
    console.print(
        f"verified: {result.size} entries, {result.checkpoints} signed checkpoints, "
        f"latest checkpoint size {result.latest_checkpoint_size}, "
        f"root {base64.b64encode(result.root_hash).decode()}",
        highlight=False,
    )


@pipe_safe
def main(
    argv: Sequence[str] | None = None,
    *,
    http_client: httpx.Client | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the ``audit-log`` command line; return the exit status."""
    args = _parser().parse_args(argv)
    out = stdout or sys.stdout
    console = Console(file=out, highlight=False, soft_wrap=True)
    try:
        if args.command == "keygen":
            _keygen(args, console)
        elif args.command == "serve":
            _serve(args)
        elif args.command == "checkpoint":
            client = _client(args.url, http_client)
            try:
                new, old = check_checkpoint(
                    client, log_verifier(args.vkey), args.state, args.witness_vkey
                )
            finally:
                if client is not http_client:
                    client.close()
            since = "first checkpoint seen" if old is None else f"consistent with size {old.size}"
            console.print(f"verified checkpoint of size {new.size} ({since})")
        elif args.command == "verify-receipt":
            _verify_receipt(args, console, http_client)
        elif args.command in ("entries", "export"):
            # Verification notes go to standard error, keeping the data clean.
            notes = Console(stderr=True, highlight=False, soft_wrap=True)
            if args.out is not None:
                count = _export_to(args.out, args, http_client, notes)
                notes.print(f"wrote {count} lines to {args.out}")
            else:
                _write_entries(args, out, http_client, notes)
        elif args.command == "verify-db":
            _verify_db(args, console)
        elif args.command == "witness":
            if args.witness_command == "keygen":
                _witness_keygen(args, console)
            else:
                _witness_serve(args)
    except AuditLogError as exc:
        # Plain text, unwrapped: the message names the index or file to look at.
        print(f"audit-log: error: {exc}", file=sys.stderr)
        return 1
    return 0
