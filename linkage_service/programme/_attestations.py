"""Attestations: signed at each cycle for families at or above the unlock threshold.

The unlock service fetches a family's current attestation and then exactly the
sealed blobs it names; nothing else here returns a sealed blob.

Must never: read or return a sealed blob except in :func:`family_blobs`,
which only the unlock service's role reaches, only for the records an
attestation of the latest cycle names, and never for a flagged family.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Iterable

from nacl.signing import SigningKey
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from protocols import (
    Attestation,
    AttestedMember,
    FamilyBlobs,
    SealedBlob,
    SignedAttestation,
    attestation_message,
    attestation_sha256,
    key_id,
)

from .. import _store as store
from .._errors import ConflictError, NotFound, StorageError, Superseded
from . import _restrictions as restrictions_
from . import _store as pstore
from ._programme import (
    Assessment,
    FamilyInput,
)
from ._riskmodel import RiskModel
from ._ruleset import Ruleset

__all__ = ["attest", "current_attestation", "family_blobs", "unknown_family"]

_INSERT_BATCH = 2000  # rows per executemany


def attest(
    conn: Connection,
    cycle_id: int,
    ruleset: Ruleset,
    model: RiskModel,
    as_at: dt.date,
    when: dt.datetime,
    signer: SigningKey,
    cohort: Iterable[FamilyInput],
    assessed: dict[str, Assessment],
) -> int:
    kid = key_id(bytes(signer.verify_key))
    assessed_at = dt.datetime.combine(as_at, dt.time(), dt.UTC)
    ruleset_sha, model_sha = ruleset.sha256(), model.sha256()
    rows = []
    for family in cohort:
        a = assessed[family.family_id]
        if a.score < model.thresholds.unlock:
            continue
        members = tuple(
            AttestedMember(person_id=m.person_id, agency_id=ag, record_ref=ref)
            for m in family.members
            for ag, ref, _t in m.records
        )
        att = Attestation(
            attestation_id="att_" + secrets.token_hex(16),
            family_id=family.family_id,
            members=members,
            score=float(a.score),
            threshold=float(model.thresholds.unlock),
            clearance_required=a.clearance_required,
            ruleset_name=ruleset.name,
            ruleset_version=ruleset.version,
            ruleset_sha256=ruleset_sha,
            model_name=model.name,
            model_version=model.version,
            model_sha256=model_sha,
            cycle_id=cycle_id,
            assessed_at=assessed_at,
            issued_at=when,
            key_id=kid,
        )
        signature = signer.sign(attestation_message(att)).signature
        signed = SignedAttestation(attestation=att, signature=base64.b64encode(signature).decode())
        rows.append(
            pstore.AttestationRow(
                attestation_id=att.attestation_id,
                family_id=family.family_id,
                cycle_id=cycle_id,
                sha256=attestation_sha256(att),
                body=signed.model_dump_json(),
            )
        )
    pstore.add_attestations(conn, rows, _INSERT_BATCH)
    return len(rows)


def unknown_family(conn: Connection, family_id: str, where: str) -> NotFound:
    """The error for a family id not found ``where``: Superseded if re-linking retired it."""
    got = store.successors(conn, family_id)
    if got is not None and got[1] and got[1] != [family_id]:
        state, current = got
        return Superseded(
            f"family {family_id} was {state} when records were re-linked; it is now "
            f"{', '.join(current)}",
            current,
        )
    return NotFound(f"no family {family_id!r} {where}")


def _refuse_flagged(conn: Connection, family_id: str) -> None:
    kind = restrictions_.release_block(conn, family_id)
    if kind is not None:
        raise ConflictError(f"family {family_id} carries a {kind} flag: nothing is released")


def current_attestation(engine: Engine, family_id: str) -> SignedAttestation:
    """The family's attestation from the latest cycle; ConflictError if it is below threshold."""
    try:
        with engine.connect() as conn:
            latest = pstore.max_cycle_id(conn)
            score = None if latest is None else pstore.snapshot_score(conn, latest, family_id)
            _refuse_flagged(conn, family_id)
            if latest is None or score is None:
                raise unknown_family(conn, family_id, "in the latest assessment")
            body = pstore.attestation_body(conn, family_id, latest)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the attestation of {family_id}: {exc}") from exc
    if body is None:
        raise ConflictError(
            f"family {family_id} scores {score} in cycle {latest}: below the unlock "
            "threshold (or no attestation key is configured), so no attestation"
        )
    return SignedAttestation.model_validate_json(body)


def family_blobs(engine: Engine, family_id: str, sha256: str) -> FamilyBlobs:
    """The sealed blobs of exactly the records the attestation ``sha256`` names.

    Only an attestation of the latest assessment cycle releases anything: one
    from an earlier cycle (the family may have dropped below the threshold, or
    changed members, since) is refused with ConflictError, as is a hash that is
    no attestation of this family.
    """
    try:
        with engine.connect() as conn:
            found = pstore.attestation_by_hash(conn, family_id, sha256)
            if found is None:
                raise ConflictError(f"{sha256} is not an attestation of family {family_id}")
            body, signed_in = found
            _refuse_flagged(conn, family_id)
            latest = pstore.max_cycle_id(conn)
            if signed_in != latest:
                raise ConflictError(
                    f"attestation {sha256[:16]}… of family {family_id} was signed in cycle "
                    f"{signed_in} and is superseded by cycle {latest}: only the latest "
                    "assessment's attestation releases blobs (fetch the current attestation)"
                )
            att = SignedAttestation.model_validate_json(body).attestation
            held = pstore.sealed_blobs(conn, {(m.agency_id, m.record_ref) for m in att.members})
            blobs: list[SealedBlob] = []
            for m in att.members:
                row = held.get((m.agency_id, m.record_ref))
                if row is None:
                    continue  # a record deleted since: nothing to release for it
                blobs.append(
                    SealedBlob(
                        agency_id=m.agency_id,
                        record_ref=m.record_ref,
                        extract_id=row.extract_id,
                        seal_key_id=row.seal_key_id,
                        sealed_identity=base64.b64encode(row.sealed_identity).decode(),
                    )
                )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the blobs of {family_id}: {exc}") from exc
    return FamilyBlobs(family_id=family_id, attestation_sha256=sha256, blobs=tuple(blobs))
