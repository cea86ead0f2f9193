"""The local run: the services as separate processes on loopback, one run directory.

:class:`LocalStack` lays out a run directory::

    <run>/keys/      the key ceremony's tree (made by ``run_ceremony`` if absent)
    <run>/config/    linkage-service.toml, unlock-service.toml, policy.toml,
                     witness.toml: one settings file per service, key paths only
    <run>/state/     SQLite databases, the witness's state, the linkage staging dir
    <run>/logs/      each service's standard error: JSON lines with trace ids
    <run>/professionals/  demo professionals' key files and ids (0600)
    <run>/professionals/web-accounts.json  the demo's web sign-in accounts (0600)

and runs ``linkage-service serve``, ``unlock-service serve`` (the audit log is
inside it, mounted at ``/audit``, and asks the witness to cosign each
checkpoint), ``audit-log witness serve`` and ``web-service serve`` (the pages
for coordinators, professionals and IG officers) as child processes on 127.0.0.1,
on free ports unless given. Databases are SQLite files by default; with
``database_url_base`` (``postgresql://user@host:5432/``) each service gets its
own PostgreSQL database, ``<prefix>_linkage``, ``<prefix>_unlock``,
``<prefix>_audit`` and ``<prefix>_web``, created if missing. The URL may not
hold a password (it would land in the settings files): libpq reads it from
``PGPASSWORD`` or a password file, here and in every service.

Processes are stopped with SIGTERM, then SIGKILL after a grace period, in
:meth:`LocalStack.stop`, which the context manager always calls (also on
Ctrl-C or an exception). Each child runs in its own session (a Ctrl-C at the
terminal reaches only this process, which then stops them in order) and, on
Linux, asks the kernel to SIGTERM it if the thread that started it dies, so a
killed parent leaves no orphan behind.

Demo professionals are registered before the unlock service starts, because
the audit log has a single writer: the unlock service process, once it runs.

Errors: :class:`StackError` (a :class:`DeployError`) names the service and
shows the end of its log.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import parse_qs, urlsplit

import httpx

from agency_client._synthetic import AGENCIES
from protocols import write_private_file
from service_common import redact_url

from ._ceremony import CeremonyItem, run_ceremony
from ._errors import StackError

__all__ = [
    "DemoProfessional",
    "WebAccount",
    "LocalStack",
    "ServiceProcess",
    "database_names",
    "drop_databases",
]

CONFIG_DIR = Path(__file__).resolve().parent / "config"
HOST = "127.0.0.1"
SERVICES = ("witness", "linkage-service", "unlock-service", "web-service")
WITNESS_TOKEN_ENV = "AUDIT_LOG_WITNESS_TOKEN"
# Which programs run each service, and the module whose main() runs it where
# the console script is not beside this interpreter (python -m deploy from a checkout).
_PROGRAMS = {
    "linkage-service": "linkage_service._cli",
    "unlock-service": "unlock_service._cli",
    "audit-log": "audit_log._cli",
    "web-service": "web_service._cli",
}
_PR_SET_PDEATHSIG = 1
# The unlock-service settings the stack writes itself (``unlock_settings`` adds others).
_UNLOCK_WRITTEN = frozenset(
    {
        "database_url", "policy_file", "seal_key_dir", "audit_database_url", "audit_key_file",
        "audit_token_file", "checkpoint_interval", "linkage_url", "linkage_token_file",
        "linkage_public_key_file", "issuer_public_key_file", "issuer_key_file", "host", "port",
    }
)  # fmt: skip


@dataclass
class ServiceProcess:
    """One running service: its name, URL, command line, log file and process."""

    name: str
    url: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return None if self.process is None else self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of its log, for an error message."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass(frozen=True)
class WebAccount:
    """A demo sign-in account of the web service (password and TOTP seed for the demo)."""

    username: str
    role: str
    password: str
    totp_seed: str | None
    professional_id: str | None


@dataclass(frozen=True)
class DemoProfessional:
    """A professional registered with the unlock service for the demo: id, role, key file."""

    name: str
    professional_id: str
    role: str
    clearance: int
    key_file: Path


# name, role, team, clearance: an administrator (bootstraps the registry), a
# social worker cleared for every family the shipped risk model can produce
# (levels 2-3), one whose clearance 0 is too far below any family's, a team
# manager who approves requests that need a second professional, and an IG
# officer (reviews, restrictions, subject access).
DEMO_PROFESSIONALS = (
    ("admin", "admin", "ig-office", 9),
    ("social-worker", "social_worker", "north-early-help", 3),
    ("uncleared", "social_worker", "north-early-help", 0),
    ("team-manager", "team_manager", "north-early-help", 4),
    ("ig-officer", "ig_officer", "ig-office", 0),
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _program(name: str) -> list[str]:
    """The command that runs console script ``name`` with this interpreter's packages."""
    script = Path(sys.executable).parent / name
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    module = _PROGRAMS[name]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: stop() and the signal handlers still stop the children


def _toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _toml_value(value: float | int | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _toml_str(value) if isinstance(value, str) else repr(value)


def database_names(prefix: str) -> dict[str, str]:
    """The PostgreSQL database of each store for a run with this prefix."""
    return {
        "linkage": f"{prefix}_linkage",
        "unlock": f"{prefix}_unlock",
        "audit": f"{prefix}_audit",
        "web": f"{prefix}_web",
    }


# How libpq (and so psycopg, here and in every service) finds a password that
# is not in the URL: the operations guide's "PostgreSQL" paragraph says the same.
PASSWORD_CHANNELS = (
    "PGPASSWORD in the environment of family-linkage (the services it starts inherit it), "
    "or a line in ~/.pgpass or in the 0600 file PGPASSFILE names"
)


def _check_database_url_base(base: str) -> None:
    """StackError unless ``base`` is a PostgreSQL URL without a password.

    A password in the URL would be written into every service's settings file
    and printed, and it stays in the shell's history; libpq reads it from
    :data:`PASSWORD_CHANNELS` instead.
    """
    if not base.startswith(("postgresql://", "postgres://")):
        raise StackError(
            f"--database-url-base {redact_url(base)!r}: expected postgresql://user@host:port/"
        )
    try:
        parts = urlsplit(base)
        has_password = parts.password is not None or "password" in parse_qs(parts.query)
    except ValueError as exc:
        raise StackError(f"--database-url-base {redact_url(base)!r}: {exc}") from exc
    if has_password:
        raise StackError(
            f"--database-url-base {redact_url(base)!r} holds a password: it would be written "
            "into the services' settings files and kept in the shell's history. Leave it out of "
            f"the URL and give it as libpq reads it: {PASSWORD_CHANNELS}"
        )


def _pg_admin(base: str) -> str:
    return base.rstrip("/") + "/postgres"


def _check_prefix(prefix: str) -> None:
    if not prefix.replace("_", "").isalnum() or not prefix[:1].isalpha() or len(prefix) > 40:
        raise StackError(
            f"database prefix {prefix!r}: a letter, then letters, digits or '_' (40 at most)"
        )


def _pg_databases(base: str, prefix: str, *, fresh: bool) -> None:
    import psycopg

    _check_prefix(prefix)
    try:
        with psycopg.connect(_pg_admin(base), autocommit=True, connect_timeout=5) as admin:
            for name in database_names(prefix).values():
                if fresh:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                exists = admin.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if exists is None:
                    admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise StackError(
            f"PostgreSQL at {redact_url(base)}: cannot create the run's databases: {exc}"
        ) from exc


def drop_databases(base: str, prefix: str) -> None:
    """Drop a PostgreSQL run's four databases (tests and ``--fresh``)."""
    import psycopg

    _check_prefix(prefix)
    try:
        with psycopg.connect(_pg_admin(base), autocommit=True, connect_timeout=5) as admin:
            for name in database_names(prefix).values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        raise StackError(
            f"PostgreSQL at {redact_url(base)}: cannot drop the run's databases: {exc}"
        ) from exc


class LocalStack:
    """The linkage service, the unlock service with its audit log, and an IG witness."""

    def __init__(
        self,
        run_dir: Path,
        *,
        keys_dir: Path | None = None,
        database_url_base: str | None = None,
        database_prefix: str = "family_linkage",
        ports: Mapping[str, int] | None = None,
        agencies: Sequence[str] = AGENCIES,
        checkpoint_interval: float = 0.5,
        extra_env: Mapping[str, str] | None = None,
        unlock_settings: Mapping[str, float | int | str] | None = None,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.keys = (keys_dir or self.run_dir / "keys").resolve()
        self.config_dir = self.run_dir / "config"
        self.state_dir = self.run_dir / "state"
        self.log_dir = self.run_dir / "logs"
        self.pro_dir = self.run_dir / "professionals"
        self.database_url_base = database_url_base
        self.database_prefix = database_prefix
        self.agencies = tuple(agencies)
        self.checkpoint_interval = checkpoint_interval
        self.extra_env = dict(extra_env or {})
        # More top-level unlock-service settings (``claim_lease`` for a crash
        # test, say); the settings loader still validates every one at start-up.
        self.unlock_settings = dict(unlock_settings or {})
        clash = _UNLOCK_WRITTEN & set(self.unlock_settings)
        if clash:
            raise StackError(f"unlock_settings may not override {sorted(clash)}")
        if database_url_base is not None:
            _check_database_url_base(database_url_base)
            _check_prefix(database_prefix)
        wanted = dict(ports or {})
        unknown = set(wanted) - set(SERVICES)
        if unknown:
            raise StackError(f"unknown service(s) {sorted(unknown)}: expected {SERVICES}")
        self.ports = {name: wanted.get(name) or _free_port() for name in SERVICES}
        self.services: dict[str, ServiceProcess] = {}

    # -- layout -----------------------------------------------------------------

    def url(self, service: str) -> str:
        """The base URL of ``service`` (``linkage-service``, ``unlock-service``, ``witness``)."""
        return f"http://{HOST}:{self.ports[service]}"

    @property
    def database_urls(self) -> dict[str, str]:
        """The URL of each store: ``linkage``, ``unlock``, ``audit``, ``web``."""
        if self.database_url_base is None:
            return {
                "linkage": f"sqlite:///{self.state_dir / 'linkage.sqlite'}",
                "unlock": f"sqlite:///{self.state_dir / 'unlock.sqlite'}",
                "audit": f"sqlite:///{self.state_dir / 'unlock-audit.sqlite'}",
                "web": f"sqlite:///{self.state_dir / 'web.sqlite'}",
            }
        base = self.database_url_base.rstrip("/")
        return {k: f"{base}/{v}" for k, v in database_names(self.database_prefix).items()}

    def config_path(self, service: str) -> Path:
        """Where a service's settings file is written."""
        return self.config_dir / f"{service}.toml"

    def key(self, *parts: str) -> Path:
        """A file of the ceremony tree."""
        return self.keys.joinpath(*parts)

    def secret(self, *parts: str) -> str:
        """The text of a ceremony secret (a bearer token), stripped."""
        return self.key(*parts).read_text(encoding="utf-8").strip()

    # -- preparing ----------------------------------------------------------------

    def ceremony(self) -> list[CeremonyItem]:
        """Make whatever key is missing (an existing key is never replaced)."""
        return run_ceremony(self.keys, self.agencies)

    def prepare(self, *, fresh: bool = False) -> None:
        """Directories, databases and one settings file per service.

        ``fresh`` removes the previous run's state (databases, logs, demo
        professionals) first; keys are kept.
        """
        if fresh:
            for path in (self.state_dir, self.log_dir, self.pro_dir):
                shutil.rmtree(path, ignore_errors=True)
        for path in (self.run_dir, self.config_dir, self.state_dir, self.log_dir, self.pro_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.state_dir / "linkage-staging").mkdir(exist_ok=True, mode=0o700)
        if self.database_url_base is not None:
            _pg_databases(self.database_url_base, self.database_prefix, fresh=fresh)
        self._write_configs()

    def _write_configs(self) -> None:
        urls = self.database_urls
        linkage = [
            "# Linkage service settings for the local run (written by family-linkage).",
            f"database_url = {_toml_str(urls['linkage'])}",
            f"token_file = {_toml_str(self.key('linkage-service', 'tokens'))}",
            f"attestation_key_file = {_toml_str(self.key('linkage-service', 'attestation.key'))}",
            f"staging_dir = {_toml_str(self.state_dir / 'linkage-staging')}",
            f"host = {_toml_str(HOST)}",
            f"port = {self.ports['linkage-service']}",
        ]
        unlock_dir = self.key("unlock-service")
        unlock = [
            "# Unlock service settings for the local run (written by family-linkage).",
            f"database_url = {_toml_str(urls['unlock'])}",
            f"policy_file = {_toml_str(self.config_dir / 'policy.toml')}",
            f"seal_key_dir = {_toml_str(unlock_dir / 'seal')}",
            f"audit_database_url = {_toml_str(urls['audit'])}",
            f"audit_key_file = {_toml_str(unlock_dir / 'audit-log.key')}",
            f"audit_token_file = {_toml_str(unlock_dir / 'audit-tokens')}",
            f"checkpoint_interval = {self.checkpoint_interval}",
            f"linkage_url = {_toml_str(self.url('linkage-service'))}",
            f"linkage_token_file = {_toml_str(unlock_dir / 'linkage-token')}",
            f"linkage_public_key_file = {_toml_str(unlock_dir / 'linkage-attestation.pub')}",
            f"issuer_public_key_file = {_toml_str(unlock_dir / 'issuer.pub')}",
            f"issuer_key_file = {_toml_str(unlock_dir / 'issuer.key')}",
            f"host = {_toml_str(HOST)}",
            f"port = {self.ports['unlock-service']}",
            # The demo professionals' browsers load an hour's JWT with their key.
            *(
                []
                if "max_token_lifetime" in self.unlock_settings
                else ["max_token_lifetime = 3600"]
            ),
            *(f"{name} = {_toml_value(v)}" for name, v in self.unlock_settings.items()),
            "",
            "[[audit_witnesses]]",
            f"url = {_toml_str(self.url('witness'))}",
            f"vkey = {_toml_str(unlock_dir / 'witness.vkey')}",
            f"token_env = {_toml_str(WITNESS_TOKEN_ENV)}",
        ]
        witness = [
            "# Options of `audit-log witness serve` for the local run (it has no settings file).",
            f"key = {_toml_str(self.key('witness', 'witness.key'))}",
            f"state = {_toml_str(self.state_dir / 'witness-state')}",
            f"log_vkey = [{_toml_str(self.key('witness', 'audit-log.vkey'))}]",
            f"tokens = {_toml_str(self.key('witness', 'tokens'))}",
            f"host = {_toml_str(HOST)}",
            f"port = {self.ports['witness']}",
        ]
        web = [
            "# Web service settings for the local run (written by family-linkage).",
            f"database_url = {_toml_str(urls['web'])}",
            f"linkage_url = {_toml_str(self.url('linkage-service'))}",
            f"unlock_url = {_toml_str(self.url('unlock-service'))}",
            f"audit_log_vkey_file = {_toml_str(self.key('ig-office', 'audit-log.vkey'))}",
            f"witness_vkey_file = {_toml_str(self.key('ig-office', 'witness.vkey'))}",
            f"host = {_toml_str(HOST)}",
            f"port = {self.ports['web-service']}",
        ]
        for name, lines in (
            ("linkage-service", linkage),
            ("unlock-service", unlock),
            ("witness", witness),
            ("web-service", web),
        ):
            self.config_path(name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        policy = self.config_dir / "policy.toml"
        if not policy.exists():
            shutil.copyfile(CONFIG_DIR / "policy.toml", policy)

    def register_professionals(self) -> list[DemoProfessional]:
        """The demo professionals, registered once (before the unlock service starts)."""
        if self.services.get("unlock-service") is not None:
            raise StackError("register professionals before the unlock service starts")
        record = self.pro_dir / "professionals.json"
        if record.exists():
            return [
                DemoProfessional(
                    p["name"], p["professional_id"], p["role"], p["clearance"], Path(p["key_file"])
                )
                for p in json.loads(record.read_text(encoding="utf-8"))
            ]
        from audit_log import AuditLog, AuditLogError
        from unlock_service import (
            UnlockError,
            add_professional,
            generate_professional_key,
            load_policy,
            load_settings,
        )
        from unlock_service._config import load_audit_signer
        from unlock_service._store import open_engine

        made: list[DemoProfessional] = []
        try:
            settings = load_settings(self.config_path("unlock-service"), environ={})
            policy = load_policy(settings.policy_file)
            engine = open_engine(settings.database_url)
            try:
                with AuditLog.open(
                    settings.audit_database_url, load_audit_signer(settings.audit_key_file)
                ) as audit:
                    actor: str | None = None
                    for name, role, team, clearance in DEMO_PROFESSIONALS:
                        if role not in policy.rules.roles:
                            continue  # a test's own policy without this role
                        key_file = self.pro_dir / f"{name}.key"
                        key_file.unlink(missing_ok=True)
                        key = generate_professional_key(key_file)
                        pro = add_professional(
                            engine,
                            audit,
                            policy,
                            actor_id=actor,
                            role=role,
                            team=team,
                            clearance=clearance,
                            public_key=bytes(key.verify_key),
                        )
                        actor = actor or pro.professional_id
                        made.append(
                            DemoProfessional(name, pro.professional_id, role, clearance, key_file)
                        )
            finally:
                engine.dispose()
        except (UnlockError, AuditLogError) as exc:
            raise StackError(f"cannot register the demo professionals: {exc}") from exc
        record.write_text(
            json.dumps([{**p.__dict__, "key_file": str(p.key_file)} for p in made], indent=2)
            + "\n",
            encoding="utf-8",
        )
        return made

    def register_web_accounts(self, pros: Sequence[DemoProfessional]) -> list[WebAccount]:
        """The demo's web sign-in accounts (made once; kept in ``web-accounts.json``).

        A coordinator with the operators' linkage coordinator token, one
        professional account per demo professional and an IG officer with the
        IG office's audit token. Passwords and TOTP seeds are random and written
        to the 0600 file for the demo user: a real user would be given them and
        enrol the seed in an authenticator app. Each professional also gets a
        JWT of the longest lifetime the unlock service accepts, in
        ``professionals/<name>.token``, loaded by their browser with the key.
        """
        import pyotp

        from web_service import WebError, create_account
        from web_service import _store as web_store
        from web_service import load_settings as web_settings

        record = self.pro_dir / "web-accounts.json"
        if record.exists():
            return [WebAccount(**a) for a in json.loads(record.read_text(encoding="utf-8"))]
        wanted: list[tuple[str, str, str, str | None, str | None]] = [
            ("coordinator", "coordinator", "Casey Coordinator", None,
             self.secret("operators", "linkage-coordinator-token")),
        ]  # fmt: skip
        for pro in pros:
            if pro.role == "ig_officer":
                wanted.append(
                    (pro.name, "ig_officer", "Indira IG Officer", pro.professional_id,
                     self.secret("ig-office", "audit-token"))
                )  # fmt: skip
            else:
                name = pro.name.replace("-", " ").title()
                wanted.append((pro.name, "professional", name, pro.professional_id, None))
        made: list[WebAccount] = []
        try:
            engine = web_store.open_engine(
                web_settings(self.config_path("web-service"), environ={}).database_url
            )
            try:
                for username, role, display, pro_id, credential in wanted:
                    password = secrets.token_urlsafe(15)
                    account = create_account(
                        engine,
                        username=username,
                        role=role,
                        display_name=display,
                        password=password,
                        professional_id=pro_id,
                        credential=credential,
                    )
                    seed = pyotp.parse_uri(account.totp_uri).secret if account.totp_uri else None
                    made.append(WebAccount(username, role, password, seed, pro_id))
            finally:
                engine.dispose()
        except WebError as exc:
            raise StackError(f"cannot create the demo's web accounts: {exc}") from exc
        write_private_file(record, json.dumps([a.__dict__ for a in made], indent=2) + "\n")
        return made

    def issue_tokens(self, pros: Sequence[DemoProfessional], lifetime: int = 3600) -> None:
        """A JWT for each demo professional in ``professionals/<name>.token`` (0600)."""
        from unlock_service import load_professional_key, load_settings
        from unlock_service._auth import TokenIssuer
        from unlock_service._config import load_issuer_private_key

        settings = load_settings(self.config_path("unlock-service"), environ={})
        if settings.issuer_key_file is None:
            raise StackError("the unlock service's settings name no issuer key")
        issuer = TokenIssuer(
            load_issuer_private_key(settings.issuer_key_file),
            settings.token_issuer,
            settings.token_audience,
        )
        life = min(lifetime, settings.max_token_lifetime)
        for pro in pros:
            key = load_professional_key(pro.key_file)
            token = issuer.issue(pro.professional_id, bytes(key.verify_key), lifetime=life)
            path = self.pro_dir / f"{pro.name}.token"
            path.unlink(missing_ok=True)
            write_private_file(path, token + "\n")

    def register_workers(
        self,
        admin_id: str,
        count: int,
        *,
        prefix: str,
        team: str,
        role: str = "social_worker",
        clearance: int = 9,
    ) -> list[tuple[str, Path]]:
        """``count`` more professionals (id, key file), registered before the unlock service
        starts (load and crash runs: many clients, each with its own key)."""
        if self.services.get("unlock-service") is not None:
            raise StackError("register professionals before the unlock service starts")
        from audit_log import AuditLog
        from unlock_service import add_professional, generate_professional_key, load_policy
        from unlock_service import load_settings as load_unlock_settings
        from unlock_service._config import load_audit_signer
        from unlock_service._store import open_engine

        settings = load_unlock_settings(self.config_path("unlock-service"), environ={})
        policy = load_policy(settings.policy_file)
        engine = open_engine(settings.database_url)
        out = []
        try:
            with AuditLog.open(
                settings.audit_database_url, load_audit_signer(settings.audit_key_file)
            ) as audit:
                for n in range(count):
                    key_file = self.pro_dir / f"{prefix}-{n}.key"
                    key_file.unlink(missing_ok=True)
                    key = generate_professional_key(key_file)
                    pro = add_professional(
                        engine,
                        audit,
                        policy,
                        actor_id=admin_id,
                        role=role,
                        team=team,
                        clearance=clearance,
                        public_key=bytes(key.verify_key),
                    )
                    out.append((pro.professional_id, key_file))
        finally:
            engine.dispose()
        return out

    # -- processes --------------------------------------------------------------

    def _commands(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        base = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        witness = [
            *_program("audit-log"),
            "witness",
            "serve",
            "--key",
            str(self.key("witness", "witness.key")),
            "--state",
            str(self.state_dir / "witness-state"),
            "--log-vkey",
            str(self.key("witness", "audit-log.vkey")),
            "--tokens",
            str(self.key("witness", "tokens")),
            "--host",
            HOST,
            "--port",
            str(self.ports["witness"]),
        ]
        linkage = [
            *_program("linkage-service"),
            "--config",
            str(self.config_path("linkage-service")),
            "serve",
        ]
        unlock = [
            *_program("unlock-service"),
            "--config",
            str(self.config_path("unlock-service")),
            "serve",
        ]
        web = [
            *_program("web-service"),
            "--config",
            str(self.config_path("web-service")),
            "serve",
        ]
        unlock_env = {**base, WITNESS_TOKEN_ENV: self.secret("unlock-service", "witness-token")}
        # The settings files are complete; an operator's LINKAGE_SERVICE_*,
        # UNLOCK_SERVICE_* or WEB_SERVICE_* variables must not redirect the local run.
        for env in (base, unlock_env):
            for name in list(env):
                if name.startswith(("LINKAGE_SERVICE_", "UNLOCK_SERVICE_", "WEB_SERVICE_")):
                    del env[name]
        return {
            "witness": (witness, dict(base)),
            "linkage-service": (linkage, dict(base)),
            "unlock-service": (unlock, unlock_env),
            "web-service": (web, dict(base)),
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start the three services and wait until each answers its health check."""
        try:
            for name, (argv, env) in self._commands().items():
                self._spawn(name, argv, env)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def kill(self, name: str) -> int | None:
        """SIGKILL one running service (a crash, for recovery tests); its exit status."""
        service = self.services.get(name)
        if service is None or service.process is None:
            raise StackError(f"{name} is not running")
        if service.process.poll() is None:
            service.process.kill()
        code = service.process.wait()
        if service._log is not None:
            service._log.close()
            service._log = None
        del self.services[name]
        return code

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start one service again (after :meth:`kill`) and wait until it is healthy."""
        if name in self.services:
            raise StackError(f"{name} is still running: kill or stop it first")
        argv, env = self._commands()[name]
        self._spawn(name, argv, env)
        self.wait_healthy(timeout)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        service = ServiceProcess(name, self.url(name), argv, log_path, env, _log=log)
        self.services[name] = service
        try:
            service.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.run_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            raise StackError(f"cannot start {name} ({argv[0]}): {exc}") from exc

    def _health(self, name: str, client: httpx.Client) -> bool:
        url = self.url(name)
        try:
            if name == "linkage-service":
                token = self.secret("operators", "linkage-admin-token")
                r = client.get(f"{url}/health", headers={"Authorization": f"Bearer {token}"})
                return r.status_code == 200
            if name in ("unlock-service", "web-service"):
                return client.get(f"{url}/health").status_code == 200
            # The witness serves only POST /add-checkpoint: any HTTP answer means it is up.
            client.get(f"{url}/")
            return True
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every started service is healthy; StackError if one exits or times out."""
        deadline = time.monotonic() + timeout
        pending = set(self.services)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in sorted(pending):
                    service = self.services[name]
                    assert service.process is not None
                    code = service.process.poll()
                    if code is not None:
                        raise StackError(
                            f"{name} exited with status {code} while starting; the end of "
                            f"{service.log_path}:\n{service.log_tail()}"
                        )
                    if self._health(name, client):
                        pending.discard(name)
                if not pending:
                    return
                if time.monotonic() > deadline:
                    names = ", ".join(sorted(pending))
                    tails = "\n".join(
                        f"--- {n} ({self.services[n].log_path}):\n{self.services[n].log_tail()}"
                        for n in sorted(pending)
                    )
                    raise StackError(f"not healthy after {timeout:.0f}s: {names}\n{tails}")
                time.sleep(0.1)

    def check_running(self) -> None:
        """StackError if a started service has exited."""
        for name, service in self.services.items():
            code = None if service.process is None else service.process.poll()
            if code is not None:
                raise StackError(
                    f"{name} exited with status {code}; the end of {service.log_path}:\n"
                    f"{service.log_tail()}"
                )

    def stop(self, grace: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every service (unlock first), SIGKILL what is left after ``grace``.

        Returns each service's exit status. Safe to call twice.
        """
        order = [n for n in reversed(SERVICES) if n in self.services]
        for name in order:
            process = self.services[name].process
            if process is not None and process.poll() is None:
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        codes: dict[str, int | None] = {}
        for name in order:
            service = self.services[name]
            process = service.process
            if process is not None:
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                codes[name] = process.returncode
            if service._log is not None:
                service._log.close()
                service._log = None
        self.services.clear()
        return codes

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def terminate_on_signals() -> Callable[[], None]:
    """Treat SIGTERM and SIGHUP like Ctrl-C, so ``finally`` blocks stop the children.

    Returns a function that restores the previous handlers.
    """

    def _exit(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _exit) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
