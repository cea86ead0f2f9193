"""Subject-access queries: one identity encoded exactly as an extract row would be.

An IG officer answering a subject access request needs the pseudonymised
records that concern one person. This module turns that person's identity
into a :class:`protocols.SubjectQuery` through the very code path extracts
use: the identity becomes one CSV row under a fixed mapping and goes through
:class:`RowEncoder` (normalisation, keyed filters, tokens, blocking keys). The
row's sealed identity is sealed to a throwaway key and discarded, and the
record ref, indicators and postcode district are dropped: the query holds
encodings and coarse attributes only, never plaintext.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from nacl.public import PrivateKey

from protocols import LinkageSchema, SubjectQuery

from ._errors import ConfigError, InputError
from ._mapping import AgencyMapping, AgencySection, IdentitySection
from ._rows import BadRowPolicy, RowContext, RowEncoder, encode_block_or_stop

__all__ = ["IDENTITY_FIELDS", "load_identity", "subject_query"]

# Identity fields a subject query may carry (dates as YYYY-MM-DD).
IDENTITY_FIELDS = (
    "given_names",
    "family_name",
    "former_family_names",
    "date_of_birth",
    "sex",
    "address_lines",
    "postcode",
    "nhs_number",
    "ni_number",
    "upn",
)


def load_identity(path: Path) -> dict[str, object]:
    """One identity from a JSON or TOML file (keys from :data:`IDENTITY_FIELDS`)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read identity file: {exc.strerror}") from exc
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON/TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the identity file must hold one table/object")
    return data


def subject_query(
    identity: Mapping[str, object],
    schema: LinkageSchema,
    secret: bytes,
    *,
    as_at: dt.date | None = None,
) -> SubjectQuery:
    """Encode one identity into a subject query (same encoder path as an extract row)."""
    unknown = sorted(set(identity) - set(IDENTITY_FIELDS))
    if unknown:
        raise ConfigError(f"unknown identity field(s) {unknown}; expected {IDENTITY_FIELDS}")
    cells: dict[str, str] = {"system_id": "subject"}
    address = identity.get("address_lines") or ()
    lines = [address] if isinstance(address, str) else list(address)  # type: ignore[call-overload]
    for i, line in enumerate(lines):
        cells[f"address_{i}"] = str(line)
    for name in IDENTITY_FIELDS:
        value = identity.get(name)
        if name != "address_lines" and value not in (None, ""):
            cells[name] = str(value)
    if "given_names" not in cells and "family_name" not in cells:
        raise ConfigError("a subject query needs at least a given or a family name")
    present = set(cells)
    section = IdentitySection(
        system_id="system_id",
        given_names=("given_names",) if "given_names" in present else (),
        family_name="family_name" if "family_name" in present else None,
        former_family_names=("former_family_names" if "former_family_names" in present else None),
        date_of_birth="date_of_birth" if "date_of_birth" in present else None,
        date_format="%Y-%m-%d",
        sex="sex" if "sex" in present else None,
        address_lines=tuple(f"address_{i}" for i in range(len(lines))),
        postcode="postcode" if "postcode" in present else None,
        nhs_number="nhs_number" if "nhs_number" in present else None,
        ni_number="ni_number" if "ni_number" in present else None,
        upn="upn" if "upn" in present else None,
    )
    mapping = AgencyMapping(
        agency=AgencySection(id="subject-query", extract_type="subject_query"),
        identity=section,
    )
    header = list(cells)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([cells[h] for h in header])
    ctx = RowContext(
        mapping=mapping,
        schema=schema,
        secret=secret,
        record_ref_key=os.urandom(32),
        # the row's sealed identity goes to a key nobody keeps
        seal_public_key=bytes(PrivateKey.generate().public_key),
        agency_id="subject-query",
        extract_id="0" * 32,
        extract_date=as_at or dt.date.today(),
        columns={name: i for i, name in enumerate(header)},
        policy=BadRowPolicy.FAIL,
    )
    result = encode_block_or_stop(RowEncoder(ctx), 2, buffer.getvalue())
    if result.problems or result.count != 1:
        problem = result.problems[0] if result.problems else None
        raise InputError(
            "identity",
            1,
            problem.field if problem else None,
            problem.problem if problem else "the identity did not encode",
        )
    record = json.loads(result.data)
    return SubjectQuery(
        schema_fingerprint=schema.fingerprint(),
        clk=record["clk"],
        exact_tokens=record.get("exact_tokens", {}),
        blocking_keys=record.get("blocking_keys", {}),
        age=record.get("age"),
        sex=record.get("sex"),
    )
