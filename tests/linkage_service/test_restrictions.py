"""Opt-out and restriction flags: what each kind stops, on a hand-built linked database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey
from pydantic import ValidationError

from linkage_service import _store as store
from linkage_service._config import Settings
from linkage_service._errors import ConflictError, NotFound
from linkage_service.programme import _store as pstore
from linkage_service.programme._assessment import (
    run_cycle,
    set_status,
)
from linkage_service.programme._attestations import current_attestation, family_blobs
from linkage_service.programme._claims import create_claims
from linkage_service.programme._restrictions import (
    DEFAULT_RESTRICTIONS,
    RestrictionEffects,
    lift_restriction,
    list_restrictions,
    set_restriction,
)
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from protocols import CycleRestrictions, RestrictionLifted, RestrictionSet

from ._programme_helpers import AS_AT, Member, TinyDb

TF = default_ruleset("troubled-families-phase2")
MODEL = default_model()
SIGNER = SigningKey(bytes(range(32)))


def ago(days: int) -> dt.date:
    return AS_AT - dt.timedelta(days=days)


def complex_family() -> list[Member]:
    """Eligible (domestic abuse, health, children who need help) and above unlock."""
    return [
        Member(
            34,
            "F",
            ("health",),
            [
                ("police", "dv_incidents", 3, ago(30)),
                ("health", "months_mental_health", 6, ago(60)),
                ("health", "months_alcohol_misuse", 4, ago(60)),
            ],
        ),
        Member(9, "M", ("school",), [("csc", "child_protection_plan", 1, ago(100))]),
    ]


@pytest.fixture
def db(tmp_path: Path) -> TinyDb:
    tiny = TinyDb(tmp_path / "tiny.db")
    for n in (1, 2, 3):
        tiny.household(n, complex_family())
    return tiny


def fam(n: int) -> str:
    return f"fam_{n:016x}"


def cycle(db: TinyDb, as_at: dt.date = AS_AT, **kw: object) -> dict:
    return run_cycle(db.engine, TF, MODEL, as_at, actor="test", signer=SIGNER, **kw).stats


def test_defaults_and_validation() -> None:
    assert DEFAULT_RESTRICTIONS["OPT_OUT"].stops() == ("profiling", "release")
    assert DEFAULT_RESTRICTIONS["RESTRICTED"].stops() == ("profiling", "claims", "release")
    s = Settings(token_file=Path("t"))
    assert s.restrictions == DEFAULT_RESTRICTIONS
    rule = {"profiling": False, "claims": True}
    custom = Settings(
        token_file=Path("t"),
        restrictions={"OPT_OUT": rule, "RESTRICTED": rule, "CLAIMS_ONLY": rule},
    )
    assert custom.restrictions["CLAIMS_ONLY"].stops() == ("claims", "release")
    with pytest.raises(ValidationError, match="no rule for RESTRICTED"):
        Settings(token_file=Path("t"), restrictions={"OPT_OUT": rule})
    with pytest.raises(ValidationError, match="OPT_OUT: release = false; any restriction"):
        Settings(
            token_file=Path("t"),
            restrictions={"OPT_OUT": {**rule, "release": False}, "RESTRICTED": rule},
        )
    with pytest.raises(ValidationError, match="restrictions.opt_out"):
        Settings(token_file=Path("t"), restrictions={"opt_out": rule, "RESTRICTED": rule})


def test_an_opt_out_leaves_the_family_out_of_scoring_ranking_and_attestation(db: TinyDb) -> None:
    first = cycle(db)
    assert first.restrictions == CycleRestrictions(
        excluded=0, excluded_by_kind={}, claims_blocked_by_kind={}
    )
    assert (first.families, first.eligible, first.attestations) == (3, 3, 3)
    out = set_restriction(db.engine, fam(2), "OPT_OUT", DEFAULT_RESTRICTIONS, actor="ig")
    assert out == RestrictionSet(
        family_id=fam(2), kind="OPT_OUT", persons=2, stops=["profiling", "release"]
    )
    set_restriction(db.engine, fam(3), "RESTRICTED", DEFAULT_RESTRICTIONS, actor="ig")
    stats = cycle(db, AS_AT + dt.timedelta(days=1))
    assert stats.restrictions == CycleRestrictions(
        excluded=2,
        excluded_by_kind={"OPT_OUT": 1, "RESTRICTED": 1},
        claims_blocked_by_kind={"RESTRICTED": 1},
    )
    assert (stats.families, stats.eligible, stats.attestations) == (1, 1, 1)
    with db.engine.connect() as conn:
        s = pstore.snapshots
        rows = conn.execute(
            sa.select(s.c.family_id, s.c.rank).where(s.c.cycle_id == stats.cycle_id)
        ).all()
    assert [(r.family_id, r.rank) for r in rows] == [(fam(1), 1)]
    # nothing is released for a flagged family, even from an older attestation
    with pytest.raises(ConflictError, match="carries a OPT_OUT flag: nothing is released"):
        current_attestation(db.engine, fam(2))
    with db.engine.connect() as conn:
        a = pstore.attestations
        old = conn.execute(sa.select(a.c.sha256).where(a.c.family_id == fam(2))).scalar_one()
    with pytest.raises(ConflictError, match="nothing is released"):
        family_blobs(db.engine, fam(2), old)
    assert [(r.family_id, r.kind) for r in list_restrictions(db.engine)] == [
        (fam(2), "OPT_OUT"),
        (fam(3), "RESTRICTED"),
    ]
    # lifted: profiled and released again
    assert lift_restriction(db.engine, fam(2)) == RestrictionLifted(
        family_id=fam(2), lifted="OPT_OUT"
    )
    with pytest.raises(NotFound, match="carries no restriction"):
        lift_restriction(db.engine, fam(2))
    third = cycle(db, AS_AT + dt.timedelta(days=2))
    assert third.restrictions.excluded_by_kind == {"RESTRICTED": 1}
    assert current_attestation(db.engine, fam(2)).attestation.family_id == fam(2)


def test_a_flag_follows_the_people_into_another_family(db: TinyDb) -> None:
    cycle(db)
    set_restriction(db.engine, fam(2), "OPT_OUT", DEFAULT_RESTRICTIONS, actor="ig")
    # a refresh re-links household 2's people under a new household id
    with db.engine.begin() as conn:
        ph = store.person_household
        conn.execute(store.households.insert().values(id="hh_" + "9" * 16, created_run=1))
        conn.execute(
            ph.update()
            .where(ph.c.household_id == f"hh_{2:016x}")
            .values(household_id="hh_" + "9" * 16)
        )
    stats = cycle(db, AS_AT + dt.timedelta(days=1))
    assert stats.restrictions.excluded_by_kind == {"OPT_OUT": 1}
    # never snapshotted, so never attested
    with pytest.raises(NotFound, match="no family 'fam_9999999999999999' in the latest"):
        current_attestation(db.engine, "fam_" + "9" * 16)


def test_a_restriction_on_processing_blocks_claims_an_opt_out_does_not(db: TinyDb) -> None:
    cycle(db)
    for n in (1, 2, 3):
        set_status(db.engine, fam(n), "attached", actor="c", reason="WORK_STARTED", on=AS_AT)
    set_restriction(db.engine, fam(2), "OPT_OUT", DEFAULT_RESTRICTIONS, actor="ig")
    set_restriction(db.engine, fam(3), "RESTRICTED", DEFAULT_RESTRICTIONS, actor="ig")
    with pytest.raises(ConflictError, match=f"family {fam(3)}: its RESTRICTED flag stops claims"):
        create_claims(db.engine, "2026-H2", actor="c", family_ids=[fam(3)])
    batch = create_claims(db.engine, "2026-H2", actor="c")
    assert (batch.attachment_claims, batch.restricted) == (2, 1)
    with db.engine.connect() as conn:
        claimed = sorted(conn.execute(sa.select(pstore.claims.c.family_id)).scalars())
    assert claimed == [fam(1), fam(2)]
    # a configuration where an opt-out also stops claims
    strict = {**DEFAULT_RESTRICTIONS, "OPT_OUT": RestrictionEffects(profiling=True, claims=True)}
    with pytest.raises(ConflictError, match="OPT_OUT flag stops claims"):
        create_claims(db.engine, "2026-H2", actor="c", family_ids=[fam(2)], restrictions=strict)


def test_an_unknown_kind_is_refused_by_name(db: TinyDb) -> None:
    with pytest.raises(ConflictError, match="kind 'GAGGED' has no rule"):
        set_restriction(db.engine, fam(1), "GAGGED", DEFAULT_RESTRICTIONS, actor="ig")
