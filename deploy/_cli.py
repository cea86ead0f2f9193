"""``family-linkage``: the key ceremony, the local run, and the whole demo journey.

``family-linkage keys``  the key ceremony (``_ceremony``);
``family-linkage up``    the services and the web pages on loopback until Ctrl-C (``_local``);
``family-linkage demo``  the README's journey on a fresh local run (``_journey``).

``main`` parses arguments, calls the library, prints a short summary and turns
:class:`DeployError` into a plain message and exit status 1. Ctrl-C and SIGTERM
stop the services before the command returns.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from protocols import pipe_safe
from service_common import redact_url

from ._ceremony import CeremonyItem
from ._ceremony import main as ceremony_main
from ._errors import DeployError
from ._journey import rel
from ._local import LocalStack, ServiceProcess, WebAccount, terminate_on_signals

__all__ = ["main"]

PROG = "family-linkage"
DEMO_HOUSEHOLDS = 1500
DEMO_SEED = 20261121


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "keys", help="the key ceremony (see 'family-linkage keys --help')", add_help=False
    )

    def stack_options(q: argparse.ArgumentParser, run_dir: str, prefix: str) -> None:
        q.add_argument("--dir", type=Path, default=Path(run_dir), help=f"run directory ({run_dir})")
        q.add_argument("--keys", type=Path, help="an existing ceremony tree (default: DIR/keys)")
        q.add_argument(
            "--database-url-base",
            metavar="URL",
            help="PostgreSQL server, e.g. postgresql://postgres@127.0.0.1:5432/ (one database "
            "per service is created), without a password: give that in PGPASSWORD or "
            "~/.pgpass; default: SQLite files in DIR/state",
        )
        q.add_argument("--database-prefix", default=prefix, help=f"database names ({prefix}_*)")

    up = sub.add_parser("up", help="run the services and the web pages on loopback until Ctrl-C")
    stack_options(up, "local-run", "family_linkage")
    up.add_argument("--linkage-port", type=int, help="default: a free port")
    up.add_argument("--unlock-port", type=int, help="default: a free port")
    up.add_argument("--witness-port", type=int, help="default: a free port")
    up.add_argument("--web-port", type=int, help="default: a free port")
    up.add_argument("--fresh", action="store_true", help="remove the previous state first")

    demo = sub.add_parser("demo", help="the whole journey on a fresh local run, then stop")
    stack_options(demo, "demo-run", "family_linkage_demo")
    demo.add_argument("--households", type=int, default=DEMO_HOUSEHOLDS)
    demo.add_argument("--seed", type=int, default=DEMO_SEED)
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the services and the web pages running after the journey, until Ctrl-C",
    )
    return p


@pipe_safe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``family-linkage``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["keys"]:
        return ceremony_main(args_list[1:], prog=f"{PROG} keys")
    args = _parser().parse_args(args_list)
    restore = terminate_on_signals()
    try:
        if args.command == "up":
            return _up(args)
        return _demo(args)
    except DeployError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the services were stopped", file=sys.stderr)
        return 130
    finally:
        restore()


def _where(stack: LocalStack) -> str:
    if stack.database_url_base is None:
        return f"SQLite files in {rel(stack.state_dir)}"
    names = ", ".join(url.rsplit("/", 1)[1] for url in stack.database_urls.values())
    return f"PostgreSQL databases {names} at {redact_url(stack.database_url_base)}"


def _ceremony_summary(items: list[CeremonyItem], keys: Path) -> str:
    made = sum(1 for i in items if i.status in ("created", "added"))
    kept = sum(1 for i in items if i.status == "exists")
    parties = len({i.party for i in items})
    if made == 0:
        return (
            f"reused the key ceremony in {rel(keys)}: {kept} files, {parties} parties, "
            "none replaced"
        )
    return (
        f"key ceremony in {rel(keys)}: {made} files made, {kept} already there, "
        f"one directory per party ({parties})"
    )


def _stopped(codes: dict[str, int | None]) -> str:
    # uvicorn re-raises the SIGTERM it handled, so a clean stop reads -15.
    clean = {0, -signal.SIGTERM}
    if all(code in clean for code in codes.values()):
        return f"stopped all {len(codes)} services cleanly (SIGTERM)"
    return "stopped: " + ", ".join(
        f"{name} ({'clean' if code in clean else f'exit {code}'})" for name, code in codes.items()
    )


def _services_line(service: ServiceProcess) -> str:
    return f"{service.name:<16} {service.url:<24} pid {service.pid}  log {rel(service.log_path)}"


def _up(args: argparse.Namespace) -> int:
    ports = {
        "linkage-service": args.linkage_port,
        "unlock-service": args.unlock_port,
        "witness": args.witness_port,
        "web-service": args.web_port,
    }
    stack = LocalStack(
        args.dir,
        keys_dir=args.keys,
        database_url_base=args.database_url_base,
        database_prefix=args.database_prefix,
        ports={k: v for k, v in ports.items() if v},
    )
    with stack:
        print(_ceremony_summary(stack.ceremony(), stack.keys))
        stack.prepare(fresh=args.fresh)
        pros = stack.register_professionals()
        accounts = stack.register_web_accounts(pros)
        stack.issue_tokens(pros)
        stack.start()
        print(f"databases: {_where(stack)}; settings in {rel(stack.config_dir)}")
        for service in stack.services.values():
            print(_services_line(service))
        print(f"demo professionals (key files in {rel(stack.pro_dir)}):")
        for pro in pros:
            print(f"  {pro.name:<14} {pro.professional_id}  {pro.role}, clearance {pro.clearance}")
        print(
            "a token: unlock-service --config "
            f"{rel(stack.config_path('unlock-service'))} token issue --professional <id>"
        )
        print(_web_lines(stack, accounts))
        try:
            # announced inside the try: a Ctrl-C right after the line is read still stops cleanly
            print("Ctrl-C stops them all.", flush=True)
            while True:
                stack.check_running()
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        codes = stack.stop()
    print(_stopped(codes))
    return 0


def _web_lines(stack: LocalStack, accounts: list[WebAccount]) -> str:
    lines = [f"web pages: {stack.url('web-service')} (sign in as one of these demo accounts)"]
    for a in accounts:
        totp = ", with a TOTP code" if a.totp_seed else ""
        lines.append(f"  {a.username:<14} {a.role}{totp}")
    lines.append(
        f"  passwords and TOTP seeds: {rel(stack.pro_dir / 'web-accounts.json')}; professionals "
        f"load their key and token files ({rel(stack.pro_dir)}/<name>.key, .token) in the browser"
    )
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from ._journey import PURPOSE, run_journey

    started = time.perf_counter()
    steps = ["keys", "services", "population", "encode", "push + link", "assess", "unlock"]
    steps += ["verify", "web"]
    seen: set[str] = set()

    def report(step: str, line: str) -> None:
        if step in seen:
            print(f"{'':<18}{line}", flush=True)
            return
        seen.add(step)
        number = f"[{steps.index(step) + 1}/{len(steps)}]"
        print(f"{number} {step:<12} {line}", flush=True)

    again = (args.dir / "state").exists()
    stack = LocalStack(
        args.dir,
        keys_dir=args.keys,
        database_url_base=args.database_url_base,
        database_prefix=args.database_prefix,
    )
    print(f"{PROG} demo: run directory {rel(stack.run_dir)}")
    if again:
        print("  (a previous run is there: its keys are reused, its databases and logs replaced)")
    with stack:
        report("keys", _ceremony_summary(stack.ceremony(), stack.keys))
        stack.prepare(fresh=True)
        pros = stack.register_professionals()
        accounts = stack.register_web_accounts(pros)
        stack.issue_tokens(pros)
        stack.start()
        report("services", f"{len(stack.services)} processes on 127.0.0.1, {_where(stack)}")
        for service in stack.services.values():
            print(f"{'':<18}{_services_line(service)}")
        admin = next(p for p in pros if p.role == "admin")
        cleared = next(p for p in pros if p.name == "social-worker")
        print(
            f"{'':<18}professionals registered (audited): admin {admin.professional_id}, "
            f"social worker {cleared.professional_id} (clearance {cleared.clearance})"
        )
        journey = run_journey(
            stack,
            pros,
            households=args.households,
            seed=args.seed,
            report=report,
            web_accounts=accounts,
        )
        if args.serve:
            print(_web_lines(stack, accounts))
            try:
                print("the services keep running for the pages: Ctrl-C stops them.", flush=True)
                while True:
                    stack.check_running()
                    time.sleep(1.0)
            except KeyboardInterrupt:
                pass
        codes = stack.stop()
    seconds = time.perf_counter() - started
    print(
        f"OK in {seconds:.0f}s: family {journey.family_above} released to a cleared "
        f"professional for {PURPOSE} and the IG officer verified the log and the receipt."
    )
    print(
        f"one trace {journey.trace_id} runs from the agencies' pushes through both services: "
        f"grep it in {rel(stack.log_dir)}/*.log"
    )
    print(_stopped(codes))
    if not args.serve:
        print(
            f"to use the web pages on this run's data: {PROG} up --dir {rel(stack.run_dir)} "
            f"(or {PROG} demo --serve), then open the web-service URL it prints"
        )
    return 0
