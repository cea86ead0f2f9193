"""Secret files and bearer-token tables, shared by every party (standard library only).

Fail closed: a secret file that is missing, is not a regular file, or can be
read or written by group or others is refused with a message saying how to fix
it; a key file is never overwritten; a token table with no entries, a malformed
line or an unknown role is refused with the file and line named. Token files
hold only SHA-256 digests of the tokens; tokens are compared in constant time
against every entry.

Plaintext and identifying outputs (a synthetic population, extracts, problem
reports) are written through :func:`open_private` (0600) into directories made
by :func:`private_dir` (0700).

Errors are :class:`SecretFileError`; each package translates it into its own
configuration error at the boundary.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


class SecretFileError(ValueError):
    """A secret or token file cannot be used; the message names the file and the fix."""


def check_private_file(path: Path, what: str) -> None:
    """Refuse ``path`` unless it is a regular file only its owner can read or write."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise SecretFileError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise SecretFileError(f"{what} {path} cannot be read: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{what} {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SecretFileError(
            f"{what} {path} has mode {stat.filemode(info.st_mode)}: it must not be readable or "
            f"writable by group or others (chmod 600 {path})"
        )


def private_dir(path: Path, *, own: bool = False) -> Path:
    """Create ``path`` and any missing parent with mode 0700; ``path`` itself on return.

    An existing directory is left as it is unless ``own`` (the caller made it
    for its own outputs, a demo's run directory say): then it is narrowed to
    0700 too. A directory the caller was merely handed (``/tmp``) is never
    changed; the files written in it are 0600 anyway (:func:`open_private`).
    """
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)  # mkdir's mode is masked by the umask, never widened
    if own and not missing:
        path.chmod(0o700)
    return path


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """Open ``path`` for writing (truncated) with mode 0600, also when it already existed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_private writes ('w' or 'wb'), not {mode!r}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an earlier file of that name may have been wider
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private_file(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 holding ``text``; never overwrite an existing file."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise SecretFileError(f"{path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise SecretFileError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def key_id(public_key: bytes) -> str:
    """Short, stable identifier of a public key: hex of the first 8 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def token_digest(token: str) -> bytes:
    """The SHA-256 digest under which a bearer token is stored."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its role and the label from the token file."""

    role: str
    label: str


class TokenTable:
    """Bearer tokens by SHA-256 digest; a lookup compares every entry in constant time."""

    def __init__(self, entries: list[tuple[bytes, Caller]]) -> None:
        if not entries:
            raise SecretFileError("the token table is empty: no caller could ever authenticate")
        self._entries = entries

    def digests(self) -> list[bytes]:
        """Every configured token digest."""
        return [digest for digest, _ in self._entries]

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller an ``Authorization: Bearer <token>`` header belongs to, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = token_digest(token.strip())
        found: Caller | None = None
        for digest, caller in self._entries:
            # visit every entry so timing does not reveal which one matched
            if hmac.compare_digest(presented, digest):
                found = caller
        return found


def load_token_file(path: Path, valid_role: Callable[[str], bool], roles: str) -> TokenTable:
    """Parse lines ``<sha256 hex of token> <role> [label]`` (``#`` starts a comment).

    ``roles`` describes the valid roles for the error message.
    """
    check_private_file(path, "token file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"cannot read token file {path}: {exc}") from exc
    entries: list[tuple[bytes, Caller]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (2, 3):
            raise SecretFileError(f"{path}:{number}: expected '<sha256 hex> <role> [label]'")
        digest_hex, role = fields[0], fields[1]
        if len(digest_hex) != 64:
            raise SecretFileError(f"{path}:{number}: token hash must be 64 hex digits")
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError as exc:
            raise SecretFileError(f"{path}:{number}: token hash is not hex") from exc
        if not valid_role(role):
            raise SecretFileError(f"{path}:{number}: unknown role {role!r}, expected {roles}")
        entries.append((digest, Caller(role, fields[2] if len(fields) == 3 else f"line {number}")))
    if not entries:
        raise SecretFileError(f"token file {path} has no tokens: refusing to serve")
    return TokenTable(entries)
