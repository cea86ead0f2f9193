"""``linkage-service``: serve the linkage service and administer it.

Operators migrate the database, register agencies (id, Ed25519 public key
file, allowed extract types), issue bearer tokens (printed once; only the
SHA-256 is stored in the 0600 token file), serve, and read run history and
statistics. Agencies use ``push`` to stream an extract file to the service.
``main`` parses arguments, calls library functions, prints results and turns
``LinkageError`` into a plain message and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from protocols import SecretFileError, key_id, write_private_file

from . import _store as store
from ._config import Settings, hash_token, load_settings, new_token, valid_role
from ._errors import ConfigError, LinkageError

__all__ = ["main"]

TOKEN_ENV = "LINKAGE_SERVICE_TOKEN"
_PUSH_CHUNK = 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linkage-service", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="settings file (TOML or JSON)")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    sub.add_parser("migrate", help="create or upgrade the database schema")
    agency = sub.add_parser("agency", help="agency registry").add_subparsers(
        dest="agency_command", required=True
    )
    add = agency.add_parser("add", help="register an agency (or replace its key and types)")
    add.add_argument("--id", required=True, dest="agency_id")
    add.add_argument("--public-key", required=True, type=Path, help="the agency's agency.pub")
    add.add_argument("--types", required=True, help="allowed extract types, comma-separated")
    agency.add_parser("list", help="registered agencies")
    token = sub.add_parser("token", help="bearer tokens").add_subparsers(
        dest="token_command", required=True
    )
    tadd = token.add_parser("add", help="issue a token: printed once, only its hash is kept")
    tadd.add_argument("--role", required=True, help="analyst, admin, unlock_service, agency:<id>")
    tadd.add_argument("--label", default=None)
    tadd.add_argument("--out", type=Path, help="also write the token to this new 0600 file")
    push = sub.add_parser("push", help="stream an extract file to the service (agency side)")
    push.add_argument("extract", type=Path)
    push.add_argument("--url", required=True)
    push.add_argument("--token-file", type=Path, help=f"0600 file with the token (or ${TOKEN_ENV})")
    runs = sub.add_parser("runs", help="linkage run history")
    runs.add_argument("--limit", type=int, default=20)
    sub.add_parser("stats", help="record, person, household and link counts")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _write_private(path: Path, text: str) -> None:
    try:
        write_private_file(path, text)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc


def _append_token_hash(path: Path, line: str) -> None:
    if not path.exists():
        _write_private(path, line)
        return
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"token file {path} is readable or writable by group or others")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)


def _read_public_key(path: Path, agency_id: str) -> tuple[bytes, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        raw = base64.b64decode(data["public_key"], validate=True)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{path}: not an agency public key file: {exc}") from exc
    if data.get("agency_id") != agency_id:
        raise ConfigError(
            f"{path} is the key of agency {data.get('agency_id')!r}, not {agency_id!r}"
        )
    if len(raw) != 32:
        raise ConfigError(f"{path}: public_key must be 32 bytes")
    return raw, key_id(raw)


def _read_token(path: Path | None) -> str:
    if path is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise ConfigError(f"no token: give --token-file or set {TOKEN_ENV}")
        return token
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"token file {path} must be mode 600")
    return path.read_text(encoding="utf-8").strip()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_PUSH_CHUNK):
            yield chunk


def push(path: Path, url: str, token: str, client: httpx.Client | None = None) -> dict[str, Any]:
    """Stream the extract at ``path`` to ``url``; the service's run summary."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such extract file")
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(30.0, read=None))
    try:
        response = http.post(
            url.rstrip("/") + "/extracts",
            content=_chunks(path),
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "application/x-ndjson",
                "content-length": str(path.stat().st_size),
            },
        )
    except httpx.HTTPError as exc:
        raise LinkageError(f"cannot reach {url}: {exc}") from exc
    finally:
        if own:
            http.close()
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"detail": response.text}
    if response.status_code != 200:
        raise LinkageError(f"{path}: refused ({response.status_code}): {body.get('detail')}")
    return body


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``linkage-service`` command."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except LinkageError as exc:
        print(f"linkage-service: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "push":
        summary = push(args.extract, args.url, _read_token(args.token_file))
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    settings = _settings(args)
    if args.command == "token":
        if not valid_role(args.role):
            raise ConfigError(
                f"unknown role {args.role!r}: analyst, admin, unlock_service or agency:<id>"
            )
        token = new_token()
        label = args.label or args.role.replace(":", "-")
        if args.out is not None:
            _write_private(args.out, token + "\n")
        _append_token_hash(settings.token_file, f"{hash_token(token)} {args.role} {label}\n")
        print(token)
        return 0
    if args.command == "serve":
        import uvicorn

        from ._api import create_app
        from ._logging import configure_logging

        configure_logging()
        uvicorn.run(
            create_app(settings),
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_config=None,
        )
        return 0
    engine = store.open_engine(settings.database_url)
    try:
        if args.command == "migrate":
            print(f"database {store.redact(settings.database_url)} is at the newest schema")
        elif args.command == "agency" and args.agency_command == "add":
            key, kid = _read_public_key(args.public_key, args.agency_id)
            types = [t.strip() for t in args.types.split(",") if t.strip()]
            agency = store.add_agency(engine, args.agency_id, key, kid, types)
            print(
                f"agency {agency.agency_id} key {agency.key_id} "
                f"types {','.join(agency.extract_types)}"
            )
        elif args.command == "agency":
            for a in store.list_agencies(engine):
                print(
                    f"{a.agency_id}\t{a.key_id}\t{','.join(a.extract_types)}\t{store.iso(a.registered_at)}"
                )
        elif args.command == "runs":
            for r in store.list_runs(engine, args.limit):
                print(
                    f"{r['run_id']}\t{r['status']}\t{r['agency_id']}\t{r['extract_id']}\t"
                    f"{r['finished_at']}\t{json.dumps(r['stats'], sort_keys=True)}"
                )
        elif args.command == "stats":
            print(json.dumps(store.statistics(engine), indent=2, sort_keys=True))
    finally:
        engine.dispose()
    return 0
