"""Attestation checks, sealing-key custody, and opening and re-sealing a family's blobs.

* :func:`verify_attestation` accepts a linkage attestation only if it is
  signed by a pinned linkage key (Ed25519 over
  :func:`protocols.attestation_message`) and names that key's id (two keys
  are pinned while the linkage service's key is rotated), is about the
  family asked for, is from the linkage service's latest assessment cycle
  (when the caller says which) and, if the policy sets an age limit, was
  assessed no longer ago than that.
  Each failure has its own reason code.
* :class:`SealKeyring` holds the unlock service's X25519 private keys, one
  directory per key (``<key id>/seal.key``, 0600, the format of
  :mod:`protocols._seal`, which ``agency-client seal-keygen`` also writes)
  plus ``CURRENT`` naming the key new extracts are sealed to. Old keys stay
  so blobs sealed before a rotation still open. :func:`rotate_seal_key` adds
  a key and moves ``CURRENT``.
* :func:`open_family` opens exactly the attested records' blobs and checks
  each payload names the agency and record ref of its blob;
  :func:`seal_release` seals the identities to the requesting professional
  (release format v2: each record with its attested person id, and the
  people with the agency records that name each).
* :func:`open_subject_blobs` opens exactly the records a subject access
  answer holds; :func:`seal_subject_identities` seals them to the IG officer.

Professionals register one Ed25519 key; identities are sealed (libsodium
sealed box) to its X25519 form (``crypto_sign_ed25519_pk_to_curve25519``),
which the professional opens with the matching converted private key. The
private keys and opened identities are never logged, stored or put in an
error message.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, SealedBox
from nacl.signing import VerifyKey

from protocols import (
    RELEASE_FORMAT_V2,
    AgencyRecord,
    Attestation,
    AttestedMember,
    FamilyBlobs,
    IdentityPayload,
    ReleasedRecord,
    ReleaseV2,
    SealedBlob,
    SealError,
    SignedAttestation,
    SubjectAccessAnswer,
    SubjectIdentities,
    attestation_message,
    generate_seal_keypair,
    group_people,
    key_id,
    load_seal_private_key,
    open_sealed_identity,
)

from ._errors import ConfigError, ReleaseError

__all__ = [
    "RELEASE_FORMAT",
    "AttestationRefused",
    "SealKeyring",
    "open_blob",
    "open_for_service",
    "open_family",
    "open_subject_blobs",
    "rotate_seal_key",
    "seal_for_service",
    "seal_release",
    "seal_subject_identities",
    "verify_attestation",
]

RELEASE_FORMAT = RELEASE_FORMAT_V2
_KEY_DIR = re.compile(r"^[0-9a-f]{16}$")


class AttestationRefused(ReleaseError):
    """The attestation is forged, wrongly keyed, stale or about another family."""

    status = 403


def verify_attestation(
    signed: SignedAttestation,
    pinned: VerifyKey | Sequence[VerifyKey],
    family_id: str,
    max_age: dt.timedelta | None,
    now: dt.datetime,
    *,
    skew: dt.timedelta = dt.timedelta(minutes=5),
    latest_cycle: int | None = None,
) -> Attestation:
    """The attestation, if genuine, current and about ``family_id``; else AttestationRefused.

    Genuine: signed by the pinned key whose id it names; ``pinned`` is one key,
    or the keys pinned while the linkage service's key is rotated (the new and
    the old), any of which is accepted. Current: from ``latest_cycle`` when
    given (an attestation is valid while its cycle is the linkage service's
    latest, whatever the cycle cadence), and no older than ``max_age`` when the
    policy sets one.
    """
    att = signed.attestation
    keys = {key_id(bytes(k)): k for k in ([pinned] if isinstance(pinned, VerifyKey) else pinned)}
    key = keys.get(att.key_id)
    if key is None:
        names = " or ".join(keys) or "(none)"
        raise AttestationRefused(
            f"attestation {att.attestation_id} names key {att.key_id}, not the pinned linkage "
            f"key {names}",
            "ATTESTATION_WRONG_KEY",
        )
    try:
        key.verify(attestation_message(att), base64.b64decode(signed.signature))
    except (BadSignatureError, binascii.Error, ValueError) as exc:
        raise AttestationRefused(
            f"attestation {att.attestation_id} signature does not verify with the pinned "
            "linkage key",
            "ATTESTATION_FORGED",
        ) from exc
    if att.family_id != family_id:
        raise AttestationRefused(
            f"attestation {att.attestation_id} is about {att.family_id}, not {family_id}",
            "ATTESTATION_WRONG_FAMILY",
        )
    assessed = att.assessed_at
    if assessed.tzinfo is None or att.issued_at.tzinfo is None:
        raise AttestationRefused(
            f"attestation {att.attestation_id} has a time without a zone", "ATTESTATION_MALFORMED"
        )
    if assessed > now + skew or att.issued_at > now + skew:
        raise AttestationRefused(
            f"attestation {att.attestation_id} is dated in the future ({assessed.isoformat()})",
            "ATTESTATION_FUTURE",
        )
    if latest_cycle is not None and att.cycle_id != latest_cycle:
        raise AttestationRefused(
            f"attestation {att.attestation_id} is from assessment cycle {att.cycle_id}; the "
            f"latest cycle is {latest_cycle}",
            "ATTESTATION_STALE",
        )
    if max_age is not None and now - assessed > max_age:
        raise AttestationRefused(
            f"attestation {att.attestation_id} was assessed {(now - assessed).days} days ago; "
            f"the policy accepts at most {max_age.days}",
            "ATTESTATION_STALE",
        )
    return att


# --- the unlock service's sealing keys ------------------------------------------------


class SealKeyring:
    """The unlock service's X25519 private keys by key id, and the current one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._keys: dict[str, PrivateKey] = {}
        self.current_id = ""
        self.reload()

    def reload(self) -> None:
        """Read every key in the directory (fail closed on any bad or loose key file)."""
        keys: dict[str, PrivateKey] = {}
        if not self.directory.is_dir():
            raise ConfigError(
                f"seal key directory {self.directory} does not exist "
                "(create the first key with 'unlock-service keys rotate')"
            )
        for sub in sorted(self.directory.iterdir()):
            if not sub.is_dir() or not _KEY_DIR.match(sub.name):
                continue
            try:
                private = load_seal_private_key(sub / "seal.key")
            except SealError as exc:
                raise ConfigError(f"seal key {sub.name}: {exc}") from exc
            kid = key_id(bytes(private.public_key))
            if kid != sub.name:
                raise ConfigError(f"seal key directory {sub} holds the key {kid}")
            keys[kid] = private
        current = _read_current(self.directory)
        if current not in keys:
            raise ConfigError(
                f"seal key directory {self.directory}: CURRENT names {current or 'nothing'}, "
                f"which is not one of its keys {sorted(keys)}"
            )
        with self._lock:
            self._keys = keys
            self.current_id = current

    def key_ids(self) -> list[str]:
        """Every key id held."""
        with self._lock:
            return sorted(self._keys)

    def get(self, kid: str) -> PrivateKey | None:
        """The private key ``kid``, reloading the directory once if it is not known."""
        with self._lock:
            found = self._keys.get(kid)
        if found is None:
            self.reload()
            with self._lock:
                found = self._keys.get(kid)
        return found

    def all(self) -> list[tuple[str, PrivateKey]]:
        """Every key, current first."""
        with self._lock:
            return sorted(self._keys.items(), key=lambda kv: kv[0] != self.current_id)


def _read_current(directory: Path) -> str:
    try:
        return (directory / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read {directory / 'CURRENT'}: {exc.strerror}") from exc


def rotate_seal_key(
    directory: Path, before_switch: Callable[[bytes | None, bytes], None] | None = None
) -> tuple[str | None, str, bytes | None, bytes]:
    """Create a new sealing key and make it current; (old id, new id, old pub, new pub).

    ``before_switch(old_pub, new_pub)`` runs once the new key exists but before
    it becomes current (the audit entry goes there); if it raises, the new key
    is removed and nothing changes. The new key's ``seal.pub`` is what agencies
    must now seal to; old keys are kept so earlier extracts still open.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = _read_current(directory) or None
    old_pub: bytes | None = None
    if old is not None:
        try:
            old_pub = bytes(load_seal_private_key(directory / old / "seal.key").public_key)
        except SealError as exc:
            raise ConfigError(f"current seal key {old}: {exc}") from exc
    staging = Path(tempfile.mkdtemp(prefix=".new-", dir=directory))
    try:
        private_path, _public_path = generate_seal_keypair(staging)
        new_pub = bytes(load_seal_private_key(private_path).public_key)
        if before_switch is not None:
            before_switch(old_pub, new_pub)
    except SealError as exc:
        shutil.rmtree(staging)
        raise ConfigError(f"cannot create a seal key in {directory}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging)
        raise
    new = key_id(new_pub)
    staging.rename(directory / new)
    tmp = directory / "CURRENT.tmp"
    tmp.write_text(new + "\n", encoding="utf-8")
    os.replace(tmp, directory / "CURRENT")
    return old, new, old_pub, new_pub


def seal_for_service(text: str, keyring: SealKeyring) -> str:
    """``text`` sealed to the service's current key: ``<key id>:<base64 sealed box>``."""
    kid = keyring.current_id
    key = keyring.get(kid)
    if key is None:
        raise ReleaseError(f"the current seal key {kid} is not held", "SEAL_KEY_UNKNOWN")
    sealed = SealedBox(key.public_key).encrypt(text.encode("utf-8"))
    return f"{kid}:{base64.b64encode(sealed).decode('ascii')}"


def open_for_service(sealed: str, keyring: SealKeyring) -> str:
    """Open what :func:`seal_for_service` sealed; ReleaseError if it will not open."""
    kid, _, body = sealed.partition(":")
    key = keyring.get(kid) if _KEY_DIR.match(kid) else None
    if key is None:
        raise ReleaseError(
            f"sealed to key {kid!r}, which this service does not hold", "SEAL_KEY_UNKNOWN"
        )
    try:
        return SealedBox(key).decrypt(base64.b64decode(body, validate=True)).decode("utf-8")
    except (CryptoError, binascii.Error, ValueError) as exc:
        raise ReleaseError("the sealed text does not open", "BLOB_DOES_NOT_OPEN") from exc


# --- opening and re-sealing -----------------------------------------------------------


def open_family(
    blobs: FamilyBlobs, attestation: Attestation, sha256: str, keyring: SealKeyring
) -> list[IdentityPayload]:
    """Open exactly the attested records' blobs; ReleaseError (nothing returned) otherwise."""
    if blobs.family_id != attestation.family_id or blobs.attestation_sha256 != sha256:
        raise ReleaseError(
            f"the linkage service sent blobs for {blobs.family_id} / "
            f"{blobs.attestation_sha256[:16]}…, not the attested {attestation.family_id}",
            "BLOBS_MISMATCH",
        )
    expected = {(m.agency_id, m.record_ref) for m in attestation.members}
    got = [(b.agency_id, b.record_ref) for b in blobs.blobs]
    if len(set(got)) != len(got) or set(got) != expected:
        missing = len(expected - set(got))
        extra = len(set(got) - expected)
        raise ReleaseError(
            f"the blobs are not exactly the attested records ({missing} missing, {extra} "
            f"unattested, {len(got) - len(set(got))} duplicated)",
            "BLOBS_MISMATCH",
        )
    return [open_blob(blob, keyring) for blob in blobs.blobs]


def open_blob(blob: SealedBlob, keyring: SealKeyring) -> IdentityPayload:
    """Open one blob with the key it names (or any key held); ReleaseError if it will not."""
    where = f"blob of {blob.agency_id} record {blob.record_ref}"
    candidates: Sequence[tuple[str, PrivateKey]]
    if blob.seal_key_id is not None:
        key = keyring.get(blob.seal_key_id)
        if key is None:
            raise ReleaseError(
                f"{where} is sealed to key {blob.seal_key_id}, which this service does not hold",
                "SEAL_KEY_UNKNOWN",
            )
        candidates = [(blob.seal_key_id, key)]
    else:
        candidates = keyring.all()
    payload: IdentityPayload | None = None
    problem = "no sealing key is held"
    for _kid, key in candidates:
        try:
            payload = open_sealed_identity(
                blob.sealed_identity, key, expect_record_ref=blob.record_ref
            )
            break
        except SealError as exc:
            problem = str(exc)
    if payload is None:
        raise ReleaseError(f"{where} does not open: {problem}", "BLOB_DOES_NOT_OPEN")
    if payload.agency_id != blob.agency_id or payload.record_ref != blob.record_ref:
        raise ReleaseError(f"{where} holds another record's identity", "BLOB_MISPLACED")
    return payload


def open_subject_blobs(answer: SubjectAccessAnswer, keyring: SealKeyring) -> list[IdentityPayload]:
    """Open the blobs of exactly the records a subject access answer holds; else ReleaseError."""
    held = answer.held.record_keys()
    got = [(b.agency_id, b.record_ref) for b in answer.blobs]
    if len(set(got)) != len(got) or set(got) != held:
        raise ReleaseError(
            f"the linkage service's blobs are not exactly the {len(held)} records it says it "
            f"holds ({len(held - set(got))} missing, {len(set(got) - held)} extra, "
            f"{len(got) - len(set(got))} duplicated)",
            "BLOBS_MISMATCH",
        )
    return [open_blob(blob, keyring) for blob in answer.blobs]


def seal_subject_identities(
    payloads: Sequence[IdentityPayload],
    *,
    query_sha256: str,
    audit_index: int,
    professional_key: bytes,
) -> str:
    """A subject access search's identities as one sealed box to the IG officer's key (base64)."""
    body = SubjectIdentities(
        query_sha256=query_sha256, audit_index=audit_index, identities=tuple(payloads)
    )
    return _seal_to(body.model_dump_json().encode("utf-8"), professional_key)


def _seal_to(body: bytes, professional_key: bytes) -> str:
    try:
        recipient = VerifyKey(professional_key).to_curve25519_public_key()
        sealed = SealedBox(recipient).encrypt(body)
    except (CryptoError, ValueError) as exc:
        raise ReleaseError(
            "the professional's registered key cannot receive a sealed release", "BAD_KEY"
        ) from exc
    return base64.b64encode(sealed).decode("ascii")


def seal_release(
    payloads: Sequence[IdentityPayload],
    *,
    request_id: str,
    family_id: str,
    professional_key: bytes,
    members: Sequence[AttestedMember],
) -> tuple[str, int]:
    """The identities, grouped into the attested people, as one sealed box to the
    professional's key (base64, release format v2); and how many people.

    Each record's person id comes from the signed attestation (``members``),
    which names exactly the records opened (:func:`open_family` checked).
    """
    person_of = {(m.agency_id, m.record_ref): m.person_id for m in members}
    try:
        records = tuple(
            ReleasedRecord(person_id=person_of[(p.agency_id, p.record_ref)], identity=p)
            for p in payloads
        )
    except KeyError as exc:
        raise ReleaseError(
            "an opened record is not one the attestation names", "BLOBS_MISMATCH"
        ) from exc
    people = group_people(
        [
            (
                r.person_id,
                AgencyRecord(agency_id=r.identity.agency_id, record_ref=r.identity.record_ref),
            )
            for r in records
        ]
    )
    body = ReleaseV2(request_id=request_id, family_id=family_id, records=records, people=people)
    raw = body.model_dump_json().encode("utf-8")
    return _seal_to(raw, professional_key), len(people)
