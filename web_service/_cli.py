"""``web-service``: serve the pages and manage sign-in accounts.

    web-service --config web.toml serve
    web-service --config web.toml account add USER --role coordinator --name "A Coordinator" \\
        --password-file pw --token-file linkage-coordinator-token
    web-service --config web.toml account add USER --role professional \\
        --professional-id pro_... --password-file pw
    web-service --config web.toml account list | disable USER | enable USER | reset USER ...

``account add`` and ``reset`` print the TOTP enrolment URI (otpauth://) once for
professionals and IG officers: the user adds it to an authenticator app.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from protocols import SecretFileError, check_private_file, pipe_safe

from . import _store as store
from ._accounts import ROLES, create_account, reset_account
from ._config import Settings, load_settings
from ._errors import AccountError, ConfigError, WebError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="web-service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="settings file (TOML or JSON)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the pages")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    account = sub.add_parser("account", help="sign-in accounts")
    acc = account.add_subparsers(dest="action", required=True)
    add = acc.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--name", default="", help="the name shown on the pages")
    add.add_argument("--password-file", type=Path, help="0600 file (else asked for)")
    add.add_argument("--token-file", type=Path, help="the user's bearer token (0600 file)")
    add.add_argument("--professional-id", help="the unlock service's id of the professional")
    reset = acc.add_parser("reset", help="new password and TOTP seed (token given again)")
    reset.add_argument("username")
    reset.add_argument("--password-file", type=Path)
    reset.add_argument("--token-file", type=Path)
    acc.add_parser("list", help="list accounts")
    for name in ("disable", "enable"):
        p = acc.add_parser(name, help=f"{name} an account")
        p.add_argument("username")
    return parser


@pipe_safe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``web-service``."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "serve":
            _serve(settings, args)
        else:
            _account(settings, args)
    except WebError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _secret(path: Path | None, what: str, *, ask: bool) -> str | None:
    if path is None:
        if not ask:
            return None
        first = getpass.getpass(f"{what}: ")
        if getpass.getpass(f"{what} again: ") != first:
            raise AccountError(f"the two {what}s differ")
        return first
    try:
        check_private_file(path, what)
        return path.read_text(encoding="utf-8").strip()
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def _account(settings: Settings, args: argparse.Namespace) -> None:
    engine = store.open_engine(settings.database_url)
    try:
        if args.action == "add":
            made = create_account(
                engine,
                username=args.username,
                role=args.role,
                display_name=args.name,
                password=_secret(args.password_file, "password", ask=True) or "",
                professional_id=args.professional_id,
                credential=_secret(args.token_file, "token file", ask=False),
            )
            print(json.dumps(made.__dict__, indent=2))
        elif args.action == "reset":
            made = reset_account(
                engine,
                username=args.username,
                password=_secret(args.password_file, "password", ask=True) or "",
                credential=_secret(args.token_file, "token file", ask=False),
            )
            print(json.dumps(made.__dict__, indent=2))
        elif args.action == "list":
            with store.session(engine) as db:
                rows = [
                    {
                        "username": a.username,
                        "role": a.role,
                        "name": a.display_name,
                        "professional_id": a.professional_id,
                        "totp": a.totp_required,
                        "active": a.active,
                    }
                    for a in store.list_accounts(db)
                ]
            print(json.dumps(rows, indent=2))
        else:
            with store.session(engine) as db:
                account = store.get_account(db, args.username)
                if account is None:
                    raise AccountError(f"no account {args.username!r}")
                if not store.set_active(db, account, args.action == "enable"):
                    raise AccountError(f"account {args.username!r} changed meanwhile: try again")
            print(f"{args.username}: {args.action}d")
    finally:
        engine.dispose()


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from service_common import ServiceCommonError, setup_telemetry

    from ._app import create_app
    from ._logging import configure_logging

    try:
        telemetry = setup_telemetry("web-service")
    except ServiceCommonError as exc:
        raise ConfigError(str(exc)) from exc
    configure_logging()
    try:
        uvicorn.run(
            create_app(settings),
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_config=None,  # keep the JSON handlers set above
            # our own lines only (sign-ins, lockouts, failed calls), as the other
            # services: a request line would carry page queries and relayed ids
            access_log=False,
            workers=1,  # sessions live in this process's memory
        )
    finally:
        telemetry.shutdown()
