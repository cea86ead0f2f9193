"""The key ceremony: every key each party needs, one directory per party, and what goes where.

``family-linkage keys --out keys --agency police --agency schools`` makes::

    keys/agency-<id>/     one per agency: its signing key, the shared linkage
                          secret, the unlock service's public sealing key and its
                          bearer token for pushing to the linkage service
    keys/linkage-service/ attestation key, token table, agencies' public keys
    keys/unlock-service/  sealing key (seal/<key id>/ and seal/CURRENT), audit log
                          key, local token issuer key, the pinned linkage
                          attestation key, its tokens
    keys/witness/         the IG witness key, the log key it witnesses, its tokens
    keys/ig-office/       the log and witness verifier keys, an IG officer token
    keys/operators/       linkage-service admin and analyst tokens

Every directory is 0700 and every secret file 0600. Keys are made by the
generators their owners already ship (``agency_client`` for agency and secret
keys, ``unlock_service`` for the sealing key; the ``audit-log`` command for the
log and witness keys; PyNaCl for the Ed25519 seeds the linkage service and the
unlock issuer load), never by code here. A file that exists is never
overwritten: a re-run reports it and makes only what is missing (a new
``--agency`` gets a copy of the existing linkage secret). ``ceremony.json`` (no
key material) records what was made; a recorded file that has gone missing
stops the run rather than being silently replaced by a new key, because
replacing a key is a rotation (docs/operations.md).

Errors: :class:`CeremonyError` (a :class:`DeployError`) names the file and what to do.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nacl.signing import SigningKey

from agency_client import AgencyClientError, generate_agency_key, generate_secret
from audit_log._cli import main as audit_log_main
from audit_log._config import load_cosigner, load_signer
from audit_log._storage_errors import ConfigError as AuditConfigError
from linkage_service._config import hash_token, valid_role
from protocols import SecretFileError, check_private_file, new_token, write_private_file
from unlock_service import UnlockError
from unlock_service._release import rotate_seal_key

from ._errors import CeremonyError

__all__ = ["CeremonyItem", "main", "run_ceremony"]

MANIFEST = "ceremony.json"
MANIFEST_FORMAT = "family-linkage/key-ceremony/v1"

# Where each party's directory goes and who receives it.
DESTINATIONS = {
    "linkage-service": "the linkage service host: /etc/family-linkage/linkage-service/ "
    "(or systemd credentials, see deploy/systemd/)",
    "unlock-service": "the unlock service host: /etc/family-linkage/unlock-service/",
    "witness": "the IG office's witness host: /etc/family-linkage/witness/",
    "ig-office": "IG officers' workstations (verifier keys are public; the token is not)",
    "operators": "linkage service operators (admin), analysts and coordinators: one token each",
}


@dataclass(frozen=True)
class CeremonyItem:
    """One file of the ceremony: whose it is, what it holds, and what the run did."""

    party: str
    path: Path
    what: str
    secret: bool
    status: str  # "created", "exists" or "added" (a line appended to a token table)


class _Run:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[CeremonyItem] = []
        self.recorded: dict[str, dict[str, object]] = {}

    # -- bookkeeping -----------------------------------------------------------

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def note(self, party: str, path: Path, what: str, secret: bool, status: str) -> None:
        self.items.append(CeremonyItem(party, path, what, secret, status))
        self.recorded.setdefault(
            self.rel(path),
            {"party": party, "what": what, "secret": secret, "created": _now()},
        )

    def directory(self, party: str) -> Path:
        path = self.root / party
        _private_dir(path)
        return path

    # -- files -----------------------------------------------------------------

    def pair(
        self,
        party: str,
        private: Path,
        public: Path,
        what: str,
        make: Callable[[], object],
    ) -> None:
        """A key pair made together by ``make()``; a half-present pair is refused."""
        have_private, have_public = private.exists(), public.exists()
        if have_private != have_public:
            present, absent = (private, public) if have_private else (public, private)
            raise CeremonyError(
                f"{present} exists but {absent} does not: a half key pair is not completed "
                "with a new key; restore the missing file or move both away"
            )
        status = "exists"
        if not have_private:
            make()
            status = "created"
        _check_secret(private)
        self.note(party, private, what + " (private)", True, status)
        self.note(party, public, what + " (public)", False, status)

    def public_copy(self, party: str, source: Path, target: Path, what: str) -> None:
        """``target`` holds the same bytes as the public file ``source``."""
        data = source.read_bytes()
        if target.exists():
            if target.read_bytes() != data:
                raise CeremonyError(
                    f"{target} differs from {source}: it holds another key; move it away "
                    "(if the key was rotated, hand out the new public key deliberately)"
                )
            self.note(party, target, what, False, "exists")
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o644)
        self.note(party, target, what, False, "created")

    def secret_copy(self, party: str, source: Path, target: Path, what: str) -> None:
        """``target`` is a 0600 copy of the secret file ``source``."""
        text = source.read_text(encoding="utf-8")
        if target.exists():
            _check_secret(target)
            if target.read_text(encoding="utf-8") != text:
                raise CeremonyError(
                    f"{target} differs from {source}: two linkage secrets would make "
                    "encodings that never match; keep one"
                )
            self.note(party, target, what, True, "exists")
            return
        _write_secret(target, text)
        self.note(party, target, what, True, "created")

    def token(
        self,
        caller_party: str,
        caller_file: Path,
        table_party: str,
        table: Path,
        role: str,
        label: str,
        what: str,
    ) -> None:
        """A bearer token in the caller's 0600 file and its SHA-256 in the service's table."""
        if caller_file.exists():
            _check_secret(caller_file)
            token = caller_file.read_text(encoding="utf-8").strip()
            caller_status = "exists"
        else:
            token = new_token()
            _write_secret(caller_file, token + "\n")
            caller_status = "created"
        self.note(caller_party, caller_file, what, True, caller_status)
        digest = hash_token(token)
        line = f"{digest} {role} {label}\n"
        if not table.exists():
            _write_secret(table, line)
            status = "created"
        else:
            _check_secret(table)
            lines = table.read_text(encoding="utf-8").splitlines()
            known = {
                raw.split("#", 1)[0].split()[0] for raw in lines if raw.split("#", 1)[0].split()
            }
            if digest in known:
                status = "exists"
            else:
                with table.open("a", encoding="utf-8") as handle:
                    handle.write(line)
                status = "added"
        self.items.append(
            CeremonyItem(table_party, table, f"token table: {role} ({label})", True, status)
        )
        self.recorded.setdefault(
            self.rel(table),
            {"party": table_party, "what": "bearer token table", "secret": True, "created": _now()},
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _private_dir(path: Path) -> None:
    """Create ``path`` as a 0700 directory, or refuse one that others can enter."""
    if path.exists():
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise CeremonyError(f"{path} exists and is not a directory")
        if info.st_mode & 0o077:
            raise CeremonyError(
                f"{path} has mode {stat.filemode(info.st_mode)}: key directories must be "
                f"private to their owner (chmod 700 {path})"
            )
        return
    path.mkdir(parents=True, mode=0o700)
    path.chmod(0o700)  # mkdir's mode is masked by the umask


def _check_secret(path: Path) -> None:
    try:
        check_private_file(path, "secret file")
    except SecretFileError as exc:
        raise CeremonyError(str(exc)) from exc


def _write_secret(path: Path, text: str) -> None:
    try:
        write_private_file(path, text)
    except SecretFileError as exc:
        raise CeremonyError(str(exc)) from exc


def _ed25519_seed_pair(private: Path, public: Path) -> None:
    """An Ed25519 key as the services load it: base64 seed (0600) and base64 public key."""
    key = SigningKey.generate()
    _write_secret(private, base64.b64encode(bytes(key)).decode("ascii") + "\n")
    public.write_text(base64.b64encode(bytes(key.verify_key)).decode("ascii") + "\n")
    public.chmod(0o644)


def _audit_keygen(command: list[str], private: Path, public: Path) -> None:
    """Run ``audit-log [witness] keygen`` and keep the verifier key it prints."""
    out = io.StringIO()
    if audit_log_main([*command, "--out", str(private)], stdout=out) != 0:
        raise CeremonyError(f"audit-log {' '.join(command)} failed for {private} (see above)")
    vkey = out.getvalue().strip()
    public.write_text(vkey + "\n", encoding="utf-8")
    public.chmod(0o644)


def _seal_key(run: _Run, directory: Path) -> Path:
    """The unlock service's sealing key directory as its keyring reads it; the current seal.pub.

    ``seal/<key id>/seal.key|seal.pub`` and ``seal/CURRENT`` naming the key agencies
    seal to, made by the unlock service's own ``rotate_seal_key`` (later rotations
    add directories beside it, see docs/operations.md).
    """
    _private_dir(directory)
    current = directory / "CURRENT"
    status = "exists"
    if not current.exists():
        if (directory / "seal.key").exists() or any(directory.glob("*/seal.key")):
            raise CeremonyError(
                f"{directory} holds sealing keys but no CURRENT file naming the key agencies "
                "seal to: restore CURRENT (or move the directory away)"
            )
        try:
            rotate_seal_key(directory)
        except UnlockError as exc:
            raise CeremonyError(f"cannot make the sealing key in {directory}: {exc}") from exc
        status = "created"
    kid = current.read_text(encoding="utf-8").strip()
    private, public = directory / kid / "seal.key", directory / kid / "seal.pub"
    for path in (private, public):
        if not path.exists():
            raise CeremonyError(f"{current} names key {kid!r} but {path} does not exist")
    _check_secret(private)
    run.note("unlock-service", private, "X25519 sealing key (private)", True, status)
    run.note("unlock-service", public, "X25519 sealing key (public)", False, status)
    run.note("unlock-service", current, "the sealing key agencies seal to", False, status)
    return public


def _check_names(agencies: Sequence[str], log_origin: str, witness_name: str) -> None:
    for agency in agencies:
        if not valid_role(f"agency:{agency}"):
            raise CeremonyError(
                f"agency id {agency!r} is not valid: lower-case letter first, then 1-39 of "
                "a-z, 0-9, '_' or '-'"
            )
    if len(set(agencies)) != len(agencies):
        raise CeremonyError("an agency is named twice")
    for what, name in (("log origin", log_origin), ("witness name", witness_name)):
        if not name or "+" in name or any(ch.isspace() for ch in name):
            raise CeremonyError(f"{what} {name!r} must be non-empty with no space or '+'")


def _read_manifest(root: Path) -> dict[str, dict[str, object]]:
    path = root / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CeremonyError(f"{path} is not a ceremony record: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise CeremonyError(f"{path} is not a ceremony record of format {MANIFEST_FORMAT}")
    files = data.get("files")
    if not isinstance(files, dict):
        raise CeremonyError(f"{path}: 'files' must be an object")
    missing = sorted(rel for rel in files if not (root / rel).exists())
    if missing:
        raise CeremonyError(
            f"{path} records files that are no longer in {root}: {', '.join(missing)}. "
            "A missing key is not silently replaced: restore it from the ceremony copy, or "
            "rotate it deliberately (docs/operations.md) and remove its entry from "
            f"{MANIFEST}"
        )
    return files


def run_ceremony(
    root: Path,
    agencies: Sequence[str],
    *,
    log_origin: str = "family-linkage/audit-log",
    witness_name: str = "family-linkage/ig-witness",
) -> list[CeremonyItem]:
    """Make every key that is missing under ``root``; list every file and what was done."""
    _check_names(agencies, log_origin, witness_name)
    _private_dir(root)
    run = _Run(root)
    run.recorded = _read_manifest(root)
    try:
        _make(run, agencies, log_origin, witness_name)
    except (AgencyClientError, AuditConfigError, SecretFileError) as exc:
        raise CeremonyError(str(exc)) from exc
    finally:
        manifest = {"format": MANIFEST_FORMAT, "files": dict(sorted(run.recorded.items()))}
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return run.items


def _make(run: _Run, agencies: Sequence[str], log_origin: str, witness_name: str) -> None:
    linkage = run.directory("linkage-service")
    unlock = run.directory("unlock-service")
    witness = run.directory("witness")
    ig = run.directory("ig-office")
    ops = run.directory("operators")
    _private_dir(linkage / "agencies")

    # The unlock service's keys first: agencies need its public sealing key.
    seal_pub = _seal_key(run, unlock / "seal")
    log_key, log_vkey = unlock / "audit-log.key", unlock / "audit-log.vkey"
    run.pair(
        "unlock-service",
        log_key,
        log_vkey,
        f"audit log signing key ({log_origin})",
        lambda: _audit_keygen(["keygen", "--name", log_origin], log_key, log_vkey),
    )
    if load_signer(log_key).vkey != log_vkey.read_text(encoding="utf-8").strip():
        raise CeremonyError(f"{log_vkey} is not the verifier key of {log_key}")
    run.pair(
        "unlock-service",
        unlock / "issuer.key",
        unlock / "issuer.pub",
        "local token issuer key (Ed25519, professionals' JWTs)",
        lambda: _ed25519_seed_pair(unlock / "issuer.key", unlock / "issuer.pub"),
    )

    att_key, att_pub = linkage / "attestation.key", linkage / "attestation.pub"
    run.pair(
        "linkage-service",
        att_key,
        att_pub,
        "attestation key (Ed25519)",
        lambda: _ed25519_seed_pair(att_key, att_pub),
    )
    run.public_copy(
        "unlock-service",
        att_pub,
        unlock / "linkage-attestation.pub",
        "pinned linkage attestation public key",
    )

    wit_key, wit_vkey = witness / "witness.key", witness / "witness.vkey"
    run.pair(
        "witness",
        wit_key,
        wit_vkey,
        f"IG witness cosigning key ({witness_name})",
        lambda: _audit_keygen(["witness", "keygen", "--name", witness_name], wit_key, wit_vkey),
    )
    if load_cosigner(wit_key).vkey != wit_vkey.read_text(encoding="utf-8").strip():
        raise CeremonyError(f"{wit_vkey} is not the verifier key of {wit_key}")
    run.public_copy(
        "witness", log_vkey, witness / "audit-log.vkey", "log verifier key it witnesses"
    )
    run.public_copy("unlock-service", wit_vkey, unlock / "witness.vkey", "witness verifier key")
    run.public_copy("ig-office", log_vkey, ig / "audit-log.vkey", "audit log verifier key (pin)")
    run.public_copy("ig-office", wit_vkey, ig / "witness.vkey", "witness verifier key (pin)")

    # Agencies: the linkage secret is made once and copied into each agency's bundle.
    secret_source: Path | None = None
    for agency in agencies:
        existing = run.root / f"agency-{agency}" / "linkage-secret.json"
        if existing.exists():
            secret_source = existing
            break
    for agency in agencies:
        party = f"agency-{agency}"
        bundle = run.directory(party)
        run.pair(
            party,
            bundle / "agency.key",
            bundle / "agency.pub",
            f"agency {agency} signing key (Ed25519)",
            partial(generate_agency_key, agency, bundle),
        )
        secret = bundle / "linkage-secret.json"
        if secret_source is None:
            generate_secret(secret)
            _check_secret(secret)
            run.note(party, secret, "shared linkage secret (agencies only)", True, "created")
            secret_source = secret
        else:
            run.secret_copy(party, secret_source, secret, "shared linkage secret (agencies only)")
        run.public_copy(party, seal_pub, bundle / "seal.pub", "unlock service sealing public key")
        run.public_copy(
            "linkage-service",
            bundle / "agency.pub",
            linkage / "agencies" / f"{agency}.pub",
            f"agency {agency} public key (register with `linkage-service agency add`)",
        )
        run.token(
            party,
            bundle / "linkage-token",
            "linkage-service",
            linkage / "tokens",
            f"agency:{agency}",
            f"ceremony-{agency}",
            "bearer token for pushing extracts to the linkage service",
        )

    tokens = linkage / "tokens"
    run.token(
        "unlock-service",
        unlock / "linkage-token",
        "linkage-service",
        tokens,
        "unlock_service",
        "ceremony-unlock-service",
        "bearer token for the linkage service (attestations, sealed blobs)",
    )
    for role in ("admin", "analyst", "coordinator"):
        run.token(
            "operators",
            ops / f"linkage-{role}-token",
            "linkage-service",
            tokens,
            role,
            f"ceremony-{role}",
            f"linkage service {role} bearer token",
        )
    run.token(
        "unlock-service",
        unlock / "witness-token",
        "witness",
        witness / "tokens",
        "writer",
        "ceremony-audit-log",
        "bearer token the audit log presents to the witness ($AUDIT_LOG_WITNESS_TOKEN)",
    )
    run.token(
        "ig-office",
        ig / "audit-token",
        "unlock-service",
        unlock / "audit-tokens",
        "ig_officer",
        "ceremony-ig-office",
        "IG officer bearer token for the audit read API ($AUDIT_LOG_TOKEN)",
    )


def _report(root: Path, items: Sequence[CeremonyItem], agencies: Sequence[str]) -> str:
    lines: list[str] = []
    parties: dict[str, list[CeremonyItem]] = {}
    for item in items:
        parties.setdefault(item.party, []).append(item)
    for party in sorted(parties):
        if party.startswith("agency-"):
            where = (
                f"agency {party.removeprefix('agency-')!r} only, over a secure channel: "
                "the host that runs its agency-client"
            )
        else:
            where = DESTINATIONS.get(party, party)
        lines.append(f"{root / party}/  ->  {where}")
        seen: set[tuple[Path, str]] = set()
        for item in parties[party]:
            if (item.path, item.what) in seen:
                continue
            seen.add((item.path, item.what))
            kind = "secret" if item.secret else "public"
            rel = item.path.relative_to(root / party)
            lines.append(f"    {item.status:<8} {kind:<7} {str(rel):<28} {item.what}")
        lines.append("")
    counts = {s: sum(1 for i in items if i.status == s) for s in ("created", "added", "exists")}
    lines.append(
        f"{counts['created']} files created, {counts['added']} token lines added, "
        f"{counts['exists']} already there (never overwritten). Record: {root / MANIFEST}"
    )
    lines.append("")
    lines.append("Next steps:")
    for agency in agencies:
        lines.append(
            f"  linkage-service agency add --id {agency} --public-key "
            f"{root / 'linkage-service' / 'agencies' / (agency + '.pub')} --types <types>"
        )
    lines.append(
        "  The linkage secret goes to agencies ONLY: never to the linkage service, the "
        "unlock service, their backups or tickets. Copy the bundles out, then keep this "
        "tree offline (encrypted) or destroy it; see docs/operations.md."
    )
    return "\n".join(lines)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--out", type=Path, required=True, help="ceremony directory (0700)")
    parser.add_argument(
        "--agency", action="append", default=[], dest="agencies", help="an agency id (repeat)"
    )
    parser.add_argument("--log-origin", default="family-linkage/audit-log")
    parser.add_argument("--witness-name", default="family-linkage/ig-witness")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "family-linkage keys") -> int:
    """Run the ``family-linkage keys`` command line; return the exit status."""
    args = _parser(prog).parse_args(argv)
    try:
        items = run_ceremony(
            args.out, args.agencies, log_origin=args.log_origin, witness_name=args.witness_name
        )
    except CeremonyError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(_report(args.out, items, args.agencies))
    return 0
