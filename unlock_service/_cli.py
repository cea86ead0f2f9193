"""``unlock-service``: serve, migrate, and administer the unlock service; and, for a
professional without a browser, ask for a family (``request``), answer a
colleague's request (``approvals``, ``approve``), redeem a grant (``release``)
and open a saved release (``open-release``) with their own key.

Parses arguments, loads settings (``--config`` TOML or ``$UNLOCK_SERVICE_CONFIG``
plus ``UNLOCK_SERVICE_*`` variables), calls the library and prints results.
Catches only :class:`UnlockError` (and the audit log's own base error) and
prints it plainly with exit status 2. Every administrative change names the
acting administrator (``--actor``) and is appended to the audit log.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.signing import SigningKey
from pydantic import BaseModel, ValidationError

from audit_log import AuditLog, AuditLogError, NoteSigner
from protocols import (
    ApprovalAnswer,
    ApprovalList,
    ErrorAnswer,
    PendingAnswer,
    ReleasedAnswer,
    SecretFileError,
    SubjectAccessReport,
    SubjectQuery,
    check_private_file,
    describe_errors,
    pipe_safe,
    private_dir,
    write_private_file,
)

from . import _admin as admin
from . import _store as store
from ._api import build_service, close_service, create_app
from ._auth import TokenIssuer
from ._client import (
    UnlockClient,
    describe_release,
    generate_professional_key,
    load_professional_key,
    open_release_body,
)
from ._config import (
    Settings,
    load_audit_signer,
    load_issuer_private_key,
    load_settings,
    write_secret,
)
from ._errors import ConfigError, Forbidden, NotFound, Refused, ReleaseError, UnlockError
from ._policy import load_policy
from ._release import rotate_seal_key
from ._service import UnlockService
from ._store import Professional
from ._subject import open_subject_identities, write_subject_access

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(
        prog="unlock-service",
        description="Policy-controlled identity release, recorded in the audit log first.",
    )
    p.add_argument("--config", type=Path, help="settings file (or $UNLOCK_SERVICE_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("init", help="create demo keys, a policy and a settings file")
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--linkage-url", default="http://127.0.0.1:8700")
    i.add_argument("--linkage-public-key", type=Path, required=True)
    i.add_argument("--linkage-token-file", type=Path, required=True)

    s = sub.add_parser("serve", help="serve the HTTP API")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    sub.add_parser("migrate", help="create or upgrade the unlock database schema")

    pro = sub.add_parser("professional", help="professionals").add_subparsers(
        dest="action", required=True
    )
    k = pro.add_parser("keygen", help="a professional's own key file (0600)")
    k.add_argument("--out", type=Path, required=True)
    a = pro.add_parser("add", help="register a professional")
    a.add_argument("--actor", help="administrator making the change (not for the first one)")
    a.add_argument("--role", required=True)
    a.add_argument("--team", required=True)
    a.add_argument("--clearance", type=int, required=True)
    a.add_argument("--public-key", required=True, help="base64 Ed25519 key or a key file")
    a.add_argument("--id", help="professional id (default: a fresh pro_<hex>)")
    ls = pro.add_parser("list", help="list professionals")
    ls.add_argument("--json", action="store_true")
    r = pro.add_parser("rotate-key", help="replace a professional's key")
    r.add_argument("--actor", required=True)
    r.add_argument("--id", required=True)
    r.add_argument("--public-key", required=True)
    c = pro.add_parser("set-clearance", help="set a professional's clearance (0-9)")
    c.add_argument("--actor", required=True)
    c.add_argument("--id", required=True)
    c.add_argument("--clearance", type=int, required=True)
    d = pro.add_parser("deactivate", help="deactivate a professional")
    d.add_argument("--actor", required=True)
    d.add_argument("--id", required=True)

    t = sub.add_parser("token", help="the local token issuer").add_subparsers(
        dest="action", required=True
    )
    ti = t.add_parser("issue", help="issue a short-lived token for a professional")
    ti.add_argument("--professional", required=True)
    ti.add_argument("--lifetime", type=int, default=300)
    ti.add_argument("--out", type=Path, help="write the token to this file (0600) instead")

    sa_ = sub.add_parser(
        "subject-access",
        help="IG officer: search for a subject and write what is held to hand over",
    )
    sa_.add_argument("--url", required=True, help="the unlock service, e.g. https://unlock:8443")
    sa_.add_argument("--key", type=Path, required=True, help="your professional key file (0600)")
    sa_.add_argument("--token-file", type=Path, required=True, help="your bearer token (0600)")
    sa_.add_argument(
        "--query", type=Path, required=True, help="the query from agency-client subject-query"
    )
    sa_.add_argument("--out", type=Path, required=True, help="directory for the files (0700)")

    rq = sub.add_parser(
        "request",
        help="professional: ask for a family's identities; a grant is saved sealed and opened",
    )
    _professional_args(rq)
    rq.add_argument("--family", required=True, help="the family id (fam_...)")
    rq.add_argument("--purpose", required=True, help="the purpose code, e.g. SAFEGUARDING")
    rq.add_argument(
        "--justification-file",
        type=Path,
        required=True,
        help="a text file with your justification (kept off the command line: it may name people)",
    )
    rq.add_argument("--break-glass", action="store_true", help="emergency use, reviewed by IG")
    _release_args(rq)

    rl_ = sub.add_parser(
        "release",
        help="professional: redeem your granted request, save it sealed and open it with your key",
    )
    _professional_args(rl_)
    rl_.add_argument("--request", required=True, help="your granted request (req_...)")
    _release_args(rl_)

    apl = sub.add_parser(
        "approvals", help="approver: the requests waiting for your approval, with their reasons"
    )
    _professional_args(apl)
    apv = sub.add_parser(
        "approve", help="approver: approve (or, with --decline, decline) a request waiting"
    )
    _professional_args(apv)
    apv.add_argument("--request", required=True, help="the request waiting (req_...)")
    apv.add_argument("--decline", action="store_true", help="decline it instead")

    orl = sub.add_parser(
        "open-release",
        help="professional: open a release with your key and show it person by person",
    )
    orl.add_argument("--key", type=Path, required=True, help="your professional key file (0600)")
    orl.add_argument(
        "--answer",
        type=Path,
        required=True,
        help="the service's JSON answer to the release (status released)",
    )
    orl.add_argument("--out", type=Path, help="write the text to this file (0600), not stdout")

    ks = sub.add_parser("keys", help="the sealing key").add_subparsers(dest="action", required=True)
    kr = ks.add_parser("rotate", help="make a new X25519 sealing key current (old ones kept)")
    kr.add_argument("--actor", required=True)

    o = sub.add_parser("optout", help="opt-out / restriction flags").add_subparsers(
        dest="action", required=True
    )
    oa = o.add_parser("add", help="flag a family")
    oa.add_argument("--actor", required=True)
    oa.add_argument("--family", required=True)
    oa.add_argument("--flag", choices=("OPT_OUT", "RESTRICTED"), default="OPT_OUT")
    oa.add_argument("--note", default="")
    orm = o.add_parser("remove", help="lift a family's flag")
    orm.add_argument("--actor", required=True)
    orm.add_argument("--family", required=True)
    orm.add_argument("--note", default="")

    rv = sub.add_parser("review", help="break-glass reviews").add_subparsers(
        dest="action", required=True
    )
    rl = rv.add_parser("list", help="list reviews")
    rl.add_argument("--actor", required=True)
    rl.add_argument("--status", choices=("open", "closed"), default="open")
    rc = rv.add_parser("close", help="close a review with an outcome")
    rc.add_argument("--actor", required=True)
    rc.add_argument("--request", required=True)
    rc.add_argument("--outcome", choices=("upheld", "not_upheld"), required=True)
    rc.add_argument("--notes", default="")

    pol = sub.add_parser("policy", help="the policy file").add_subparsers(
        dest="action", required=True
    )
    pol.add_parser("show", help="print the policy's version, hash, roles and purposes")
    return p


def _professional_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="the unlock service, e.g. https://unlock:8443")
    p.add_argument("--key", type=Path, required=True, help="your professional key file (0600)")
    p.add_argument("--token-file", type=Path, required=True, help="your bearer token (0600)")


def _release_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--answer",
        type=Path,
        required=True,
        help="new file (0600) for the service's answer, the identities still sealed to your key "
        "(open it again with open-release)",
    )
    p.add_argument("--out", type=Path, help="write the opened text to this file (0600), not stdout")


@pipe_safe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``unlock-service``."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (UnlockError, AuditLogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _public_key(value: str) -> bytes:
    path = Path(value)
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            value = str(data["public_key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a professional key file: {exc}") from exc
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ConfigError("the public key is not base64") from exc
    if len(raw) != 32:
        raise ConfigError("the public key must be 32 bytes of Ed25519 key")
    return raw


def _print(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    print(json.dumps(data, indent=2, default=str))


class _Admin:
    """The unlock database and audit log, opened for one administrative command."""

    def __init__(self, settings: Settings) -> None:
        self.policy = load_policy(settings.policy_file)
        signer = load_audit_signer(settings.audit_key_file)
        self.engine = store.open_engine(settings.database_url)
        try:
            self.audit = AuditLog.open(settings.audit_database_url, signer)
        except AuditLogError:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.audit.close()
        self.engine.dispose()


def _actor(service: UnlockService, actor_id: str) -> Professional:
    with store.transaction(service.engine) as conn:
        pro = store.get_professional(conn, actor_id)
    if pro is None or not pro.active:
        raise Forbidden(f"{actor_id} is not an active professional")
    return pro


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "init":
        _init(args)
        return 0
    if command == "subject-access":
        _subject_access(args)
        return 0
    if command == "open-release":
        _open_release(args)
        return 0
    if command in ("approvals", "approve"):
        _approve(args)
        return 0
    if command in ("request", "release"):
        _redeem(args)
        return 0
    if command == "professional" and args.action == "keygen":
        key = generate_professional_key(args.out)
        print(f"wrote {args.out} (mode 600); public key for registration:")
        print(base64.b64encode(bytes(key.verify_key)).decode("ascii"))
        return 0
    settings = _settings(args)
    if command == "serve":
        _serve(settings, args)
    elif command == "migrate":
        store.open_engine(settings.database_url).dispose()
        print(f"migrated {store.redact(settings.database_url)}")
    elif command == "policy":
        policy = load_policy(settings.policy_file)
        _print(
            {
                "file": str(settings.policy_file),
                "version": policy.version,
                "sha256": policy.sha256,
                **policy.rules.model_dump(mode="json"),
            }
        )
    elif command == "professional":
        _professional(settings, args)
    elif command == "token":
        _token(settings, args)
    elif command == "keys":
        box = _Admin(settings)
        try:
            new = admin.rotate_sealing_key(
                box.engine,
                box.audit,
                box.policy,
                actor_id=args.actor,
                directory=settings.seal_key_dir,
            )
        finally:
            box.close()
        print(f"sealing key {new} is now current; give {settings.seal_key_dir / new}/seal.pub")
        print("to every agency (restart or let the service reload; old keys are kept)")
    elif command in ("optout", "review"):
        # Appends only, beside the running service (which adopts the entries
        # and publishes the next checkpoint): no witness, so no witness token.
        service = build_service(settings, witnesses=False)
        try:
            pro = _actor(service, args.actor)
            if command == "optout":
                flag = args.flag if args.action == "add" else None
                _print(service.set_restriction(pro, args.family, flag, args.note))
            elif args.action == "list":
                _print(service.list_reviews(pro, args.status))
            else:
                _print(service.close_review(pro, args.request, args.outcome, args.notes))
        finally:
            close_service(service)
    return 0


def _professional(settings: Settings, args: argparse.Namespace) -> None:
    box = _Admin(settings)
    try:
        if args.action == "list":
            pros = store.list_professionals(box.engine)
            rows = [{**p.record(), "record_sha256": admin.record_sha256(p)} for p in pros]
            if args.json:
                _print(rows)
            else:
                for row in rows:
                    state = "active" if row["active"] else "inactive"
                    print(
                        f"{row['professional_id']}  {row['role']:<14} {row['team']:<20} "
                        f"clearance {row['clearance']}  {state}  rev {row['revision']}"
                    )
            return
        common: dict[str, Any] = {"actor_id": args.actor}
        if args.action == "add":
            pro = admin.add_professional(
                box.engine,
                box.audit,
                box.policy,
                role=args.role,
                team=args.team,
                clearance=args.clearance,
                public_key=_public_key(args.public_key),
                professional_id=args.id,
                **common,
            )
        elif args.action == "rotate-key":
            pro = admin.rotate_professional_key(
                box.engine,
                box.audit,
                box.policy,
                professional_id=args.id,
                public_key=_public_key(args.public_key),
                **common,
            )
        elif args.action == "set-clearance":
            pro = admin.set_clearance(
                box.engine,
                box.audit,
                box.policy,
                professional_id=args.id,
                clearance=args.clearance,
                **common,
            )
        else:
            pro = admin.set_active(
                box.engine, box.audit, box.policy, professional_id=args.id, active=False, **common
            )
        _print({**pro.record(), "record_sha256": admin.record_sha256(pro)})
    finally:
        box.close()


def _token(settings: Settings, args: argparse.Namespace) -> None:
    if settings.issuer_key_file is None:
        raise ConfigError("no issuer_key_file in the settings: this is not the local issuer")
    key = load_issuer_private_key(settings.issuer_key_file)
    engine = store.open_engine(settings.database_url)
    try:
        with store.transaction(engine) as conn:
            pro = store.get_professional(conn, args.professional)
    finally:
        engine.dispose()
    if pro is None or not pro.active:
        raise NotFound(f"no active professional {args.professional}")
    lifetime = min(args.lifetime, settings.max_token_lifetime)
    issuer = TokenIssuer(key, settings.token_issuer, settings.token_audience)
    token = issuer.issue(pro.professional_id, pro.public_key, lifetime=lifetime)
    if args.out is None:
        print(token)
        return
    try:
        write_private_file(args.out, token + "\n")
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    print(f"wrote a token for {pro.professional_id} to {args.out} (mode 600, {lifetime} s)")


def _subject_access(args: argparse.Namespace) -> None:
    key = load_professional_key(args.key)
    try:
        check_private_file(args.token_file, "token file")
        token = args.token_file.read_text(encoding="utf-8").strip()
        query = SubjectQuery.model_validate_json(args.query.read_bytes())
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{args.query} is not a subject query: {describe_errors(exc)}") from exc
    with UnlockClient(args.url, key, token) as client:
        try:
            response = client.subject_access(query)
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot reach {args.url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise Refused(
            f"the unlock service answered {response.status_code}: {response.text[:300]}",
            "SUBJECT_ACCESS_FAILED",
        )
    try:
        report = SubjectAccessReport.model_validate_json(response.content)
    except ValidationError as exc:
        raise ConfigError(f"the answer is not a subject access report: {exc}") from exc
    identities = open_subject_identities(report, key)
    written = write_subject_access(report, identities, args.out)
    held = report.held
    records = sum(len(p.records) for p in held.persons)
    print(
        f"search logged as audit entry {report.audit_index}: {len(held.persons)} persons, "
        f"{records} records, {len(held.families)} families, {len(report.unlocks)} unlock "
        f"requests; identities opened with your key"
    )
    for path in written:
        print(f"wrote {path} (mode 600)")
    print("check each record is the subject's before handing over (see summary.txt)")


def _open_release(args: argparse.Namespace) -> None:
    key = load_professional_key(args.key)
    try:
        answer = ReleasedAnswer.model_validate_json(args.answer.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {args.answer}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ConfigError(
            f"{args.answer} is not a released answer: {describe_errors(exc)}"
        ) from exc
    _show_release(answer, key, args.out)


def _show_release(answer: ReleasedAnswer, key: SigningKey, out: Path | None) -> None:
    release = open_release_body(answer.sealed_identities, key, answer.request_id)
    text = (
        f"released {answer.released_at.isoformat()} (audit entry {answer.audit_index}): "
        f"{answer.reason_text}\n" + describe_release(release)
    )
    if out is None:
        print(text, end="")
        return
    try:
        write_private_file(out, text)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    print(f"wrote {out} (mode 600)")


_REQUEST_ID = re.compile(r"^req_[0-9a-f]{16,64}$")  # protocols.RequestId


def _check_request_id(value: str) -> None:
    """Refuse a ``--request`` that is no request id before anything is read or asked."""
    if not _REQUEST_ID.match(value):
        raise ConfigError(f"{value!r} is not a request id (req_ and 16-64 hex digits)")


def _reserve(path: Path) -> BinaryIO:
    """Create ``path`` (0600, never an existing file) before anything is redeemed: a
    grant is released once, so its answer must have somewhere to go."""
    try:
        private_dir(path.parent)
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    except FileExistsError as exc:
        raise ConfigError(f"{path} already exists; choose a new file for the answer") from exc
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc


def _refusal(response: httpx.Response, what: str) -> Refused:
    """The service's refusal, in its own words (its reason sentence and audit entry)."""
    try:
        error = ErrorAnswer.model_validate_json(response.content)
    except ValidationError:
        return Refused(
            f"{what}: the unlock service answered {response.status_code}: {response.text[:300]}",
            "UNEXPECTED_ANSWER",
        )
    logged = (
        ""
        if error.audit_index is None
        else f" (request {error.request_id}, audit entry {error.audit_index})"
    )
    return Refused(
        f"{what}: {error.reason} ({response.status_code}): {error.reason_text}{logged}",
        error.reason,
        request_id=error.request_id,
        audit_index=error.audit_index,
    )


def _professional_client(args: argparse.Namespace) -> tuple[UnlockClient, SigningKey]:
    """A client signing as the professional whose key and token files ``args`` name,
    and their key."""
    key = load_professional_key(args.key)
    try:
        check_private_file(args.token_file, "token file")
        token = args.token_file.read_text(encoding="utf-8").strip()
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    return UnlockClient(args.url, key, token), key


def _approve(args: argparse.Namespace) -> None:
    """``approvals`` lists the requests waiting for the caller; ``approve`` answers one,
    signed as the approvals page signs it (the service logs the answer)."""
    if args.command == "approve":
        _check_request_id(args.request)
    unlock, _key = _professional_client(args)
    with unlock as client:
        try:
            if args.command == "approvals":
                response = client.approvals()
            else:
                response = client.approve(args.request, approve=not args.decline)
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot reach {args.url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise _refusal(response, "not answered" if args.command == "approve" else "not listed")
    try:
        if args.command == "approve":
            done = ApprovalAnswer.model_validate_json(response.content)
            print(f"request {done.request_id}: {done.status} ({done.reason}): {done.reason_text}")
            return
        waiting = ApprovalList.model_validate_json(response.content).approvals
    except ValidationError as exc:
        raise ConfigError(
            f"the unlock service's answer is malformed: {describe_errors(exc)}"
        ) from exc
    if not waiting:
        print("no request is waiting for your approval")
    for w in waiting:
        print(
            f"{w.request_id}  family {w.family_id}  by {w.requester_id} ({w.requester_role})  "
            f"for {w.purpose_code}  approvals {w.approvals}/{w.approvals_required}  "
            f"answer by {w.expires_at.isoformat()}"
        )
        if w.justification:
            print(f"    why: {w.justification}")


def _redeem(args: argparse.Namespace) -> None:
    """``request`` and ``release``: one signed call, as the web pages make it; a release
    is written to ``--answer`` still sealed, and only then opened with the key."""
    if args.command == "release":
        _check_request_id(args.request)
    justification = ""
    if args.command == "request":
        try:
            justification = args.justification_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    unlock, key = _professional_client(args)
    handle = _reserve(args.answer)
    saved = False
    complete = True  # the answer file holds the whole answer
    try:
        with unlock as client:
            try:
                if args.command == "request":
                    response = client.unlock(
                        args.family, args.purpose, justification, args.break_glass
                    )
                else:
                    response = client.release(args.request)
            except httpx.HTTPError as exc:
                raise ConfigError(f"cannot reach {args.url}: {type(exc).__name__}") from exc
        if response.status_code == 202 and args.command == "request":
            pending = PendingAnswer.model_validate_json(response.content)
            print(
                f"request {pending.request_id} (audit entry {pending.audit_index}) is waiting "
                f"for approval until {pending.expires_at.isoformat()}: {pending.reason_text}"
            )
            print(f"once approved: unlock-service release --request {pending.request_id} ...")
            return
        if response.status_code != 200:
            what = "not released" if args.command == "release" else "the request was refused"
            raise _refusal(response, what)
        # Saved before anything else is done with it: the grant is used now, so the
        # file is kept even if writing it fails, and the answer is opened from memory.
        saved = True
        try:
            handle.write(response.content)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            complete = False
            print(
                f"unlock-service: the answer could not be saved in {args.answer} "
                f"({exc.strerror}); the grant is used, so it is opened from memory now: "
                "keep what follows safe",
                file=sys.stderr,
            )
        answer = ReleasedAnswer.model_validate_json(response.content)
    except ValidationError as exc:
        kept = f" (kept as it came in {args.answer})" if saved else ""
        raise ConfigError(
            f"the unlock service's answer is malformed{kept}: {describe_errors(exc)}"
        ) from exc
    finally:
        if complete:
            handle.close()
        else:
            with contextlib.suppress(OSError):  # its write failed already, and said so
                handle.close()
        if not saved:
            args.answer.unlink(missing_ok=True)
    if complete:
        print(
            f"request {answer.request_id} released (audit entry {answer.audit_index}); the "
            f"answer, sealed to your key, is saved in {args.answer} (mode 600)"
        )
    try:
        _show_release(answer, key, args.out)
    except ReleaseError as exc:
        if not complete:
            raise
        raise ReleaseError(
            f"{exc}; the release is saved sealed in {args.answer}: open it with "
            f"unlock-service open-release --key <your key> --answer {args.answer}",
            exc.reason,
        ) from exc


# Log fields that are pseudonymous ids or codes, never identities; "detail" is
# only ever an audit log error's first line (``audit_failure``).
SAFE_LOG_FIELDS = ("professional_id", "family_id", "decision", "reason", "records", "detail")


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from service_common import ServiceCommonError, configure_logging, setup_telemetry

    # Traces and metrics: quiet unless OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT
    # (or ..._METRICS_...) say console or otlp; the JSON logs carry the trace ids.
    try:
        telemetry = setup_telemetry("unlock-service")
    except ServiceCommonError as exc:
        raise ConfigError(str(exc)) from exc
    configure_logging(
        ["unlock_service", "uvicorn.error"],
        safe_fields=SAFE_LOG_FIELDS,
        service_name="unlock-service",
    )
    try:
        app = create_app(settings)
        uvicorn.run(
            app,
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_config=None,  # keep the JSON handlers set above
            log_level="warning",
            access_log=False,  # URLs carry family ids only, but keep the log to our own lines
        )
    finally:
        telemetry.shutdown()


_POLICY_EXAMPLE = """\
# Unlock policy: deny by default; see docs/unlock-service.md.
[policy]
name = "council-default"
version = "1.0.0"

[justification]
min_chars = 20
max_chars = 1000

[attestation]
# An attestation is fresh while its assessment cycle is the linkage service's
# latest (so it follows the cycle cadence); max_age_days adds an age limit.
# max_age_days = 120

[grants]
ttl_seconds = 900
approval_wait_seconds = 86400

[rate_limit]
max_requests = 20
window_seconds = 86400

[approval]
required = 1
clearance_gap = 1

[break_glass]               # emergency release without the second person
max_uses = 2                # granted uses per professional per window
window_seconds = 604800
cooldown_seconds = 3600     # between two uses by one professional
clearance_gap = 0           # ceiling: never above the requester's own clearance
review_days = 3             # the IG review deadline (and the anomaly report's)

[roles.admin]
admin = true

[roles.social_worker]
request = true

[roles.team_manager]
request = true
approve = true

[roles.ig_officer]
review = true
restrict = true
subject_access = true

[purposes.SAFEGUARDING]
description = "Child safeguarding enquiry (s.47 or early help escalation)"
roles = ["social_worker", "team_manager"]

[purposes.CASE_ALLOCATION]
description = "Allocating a key worker to a family that met the threshold"
roles = ["social_worker", "team_manager"]
approval = true

[purposes.EMERGENCY]
description = "Immediate risk of serious harm: break-glass, reviewed by IG"
roles = ["social_worker", "team_manager"]
break_glass = true
"""


def _init(args: argparse.Namespace) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seed = Ed25519PrivateKey.generate()
    raw = seed.private_bytes_raw()
    write_secret(out / "issuer.key", base64.b64encode(raw).decode("ascii"))
    pub = seed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (out / "issuer.pub").write_text(base64.b64encode(pub).decode("ascii") + "\n")
    write_secret(out / "audit.key", NoteSigner.generate("unlock-service.local/audit").skey)
    _old, kid, _o, _n = rotate_seal_key(out / "seal-keys")
    policy = out / "policy.toml"
    if not policy.exists():
        policy.write_text(_POLICY_EXAMPLE, encoding="utf-8")
    settings = out / "unlock-service.toml"
    if not settings.exists():
        settings.write_text(
            "\n".join(
                [
                    'database_url = "sqlite:///' + str((out / "unlock.sqlite").resolve()) + '"',
                    'audit_database_url = "sqlite:///'
                    + str((out / "unlock-audit.sqlite").resolve())
                    + '"',
                    'policy_file = "policy.toml"',
                    'seal_key_dir = "seal-keys"',
                    'audit_key_file = "audit.key"',
                    f'linkage_url = "{args.linkage_url}"',
                    f'linkage_token_file = "{args.linkage_token_file.resolve()}"',
                    f'linkage_public_key_file = "{args.linkage_public_key.resolve()}"',
                    'issuer_public_key_file = "issuer.pub"',
                    'issuer_key_file = "issuer.key"',
                    "",
                ]
            ),
            encoding="utf-8",
        )
    print(f"wrote {out}: issuer.key/.pub, audit.key, seal-keys/{kid} (current), policy.toml,")
    print(f"unlock-service.toml; agencies seal to {out / 'seal-keys' / kid / 'seal.pub'}")
    print("Note: the first sealing key is made without an audit entry (no log exists yet);")
    print("every later 'keys rotate' is audited.")


if __name__ == "__main__":
    sys.exit(main())
