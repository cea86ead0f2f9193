"""Clerical decisions through the service: stored once, honoured at every later push, audited."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from linkage_service import _store as store
from linkage_service._decisions import decide, decisions_csv, list_decisions
from linkage_service._errors import ConflictError, NotFound
from linkage_service._review import review_summary
from linkage_service._service import LinkageService, default_engine_factory

from ._factories import Agency, build_extract, make_record
from .conftest import ingest


def _persons(svc: LinkageService) -> dict[int, str]:
    with svc.sql.connect() as c:
        return {int(r): str(p) for r, p in c.execute(sa.select(store.record_person))}


def _ids(svc: LinkageService) -> dict[str, int]:
    with svc.sql.connect() as c:
        rows = c.execute(sa.select(store.records.c.record_ref, store.records.c.id)).all()
    return {str(ref): int(i) for ref, i in rows}


@pytest.fixture
def real(make_service: Any) -> LinkageService:
    svc: LinkageService = make_service(factory=default_engine_factory)
    return svc


def _push(svc: LinkageService, a: Agency, recs: list[dict[str, Any]]) -> Any:
    kind = "police" if a.agency_id == "police" else "education"
    return ingest(svc, build_extract(a, recs, extract_type=kind), a.agency_id)


def test_a_match_decision_merges_the_persons_at_the_next_push_and_they_stay_merged(
    real: LinkageService, school: Agency, police: Agency, rng: random.Random
) -> None:
    a, b = make_record(rng), make_record(rng)
    _push(real, school, [a])
    _push(real, police, [b])
    ids = _ids(real)
    ra, rb = ids[a["record_ref"]], ids[b["record_ref"]]
    assert _persons(real)[ra] != _persons(real)[rb]
    view = decide(real.sql, rb, ra, "match", "SAME_PERSON", actor="coordinator:kim")
    assert (view.a.record_id, view.b.record_id) == (min(ra, rb), max(ra, rb))
    assert view.effect == "pending" and view.decided_by == "coordinator:kim"
    assert review_summary(real.sql).decisions.pending == 1
    _push(real, school, [a, make_record(rng)])  # the next push, of anything
    assert _persons(real)[ra] == _persons(real)[rb]
    [done] = list_decisions(real.sql).decisions
    assert done.effect == "merged"
    # later pushes, and a service restarted from the database, keep them one person
    _push(real, police, [b, make_record(rng)])
    real.start()
    _push(real, school, [a])
    assert _persons(real)[ra] == _persons(real)[rb]
    summary = review_summary(real.sql).decisions
    assert (summary.match, summary.applied, summary.pending) == (1, 1, 0)


def test_a_non_match_decision_splits_a_linked_pair_and_it_stays_split(
    real: LinkageService, school: Agency, police: Agency, rng: random.Random
) -> None:
    a = make_record(rng)
    twin = {**a, "record_ref": rng.randbytes(16).hex()}
    _push(real, school, [a])
    _push(real, police, [twin])
    ids = _ids(real)
    ra, rb = ids[a["record_ref"]], ids[twin["record_ref"]]
    assert _persons(real)[ra] == _persons(real)[rb], "the engine links identical filters"
    decide(real.sql, ra, rb, "non_match", "TWINS", actor="admin:ops")
    assert list_decisions(real.sql).decisions[0].effect == "pending"
    _push(real, school, [a, make_record(rng)])
    assert _persons(real)[ra] != _persons(real)[rb]
    # a third record identical to both joins one of them, never both; restarts change nothing
    third = {**a, "record_ref": rng.randbytes(16).hex()}
    _push(real, police, [twin, third])
    real.start()
    _push(real, school, [a])
    persons = _persons(real)
    assert persons[ra] != persons[rb]
    [view] = list_decisions(real.sql).decisions
    assert view.effect == "apart" and view.current
    # the pair is in no one's review queue and its links view names the decision
    with real.sql.connect() as c:
        queued = c.execute(
            sa.select(sa.func.count())
            .select_from(store.review)
            .where(store.review.c.record_a == min(ra, rb), store.review.c.record_b == max(ra, rb))
        ).scalar_one()
    assert queued == 0
    links = store.record_links(real.sql, "school", a["record_ref"])
    assert [d["decision"] for d in links["decisions"]] == ["non_match"]


def test_a_decision_holds_for_the_source_records_when_a_refresh_changes_them(
    real: LinkageService, school: Agency, police: Agency, rng: random.Random
) -> None:
    a = make_record(rng)
    twin = {**a, "record_ref": rng.randbytes(16).hex()}
    _push(real, school, [a])
    _push(real, police, [twin])
    ids = _ids(real)
    decide(real.sql, ids[a["record_ref"]], ids[twin["record_ref"]], "non_match", "TWINS", actor="c")
    _push(real, school, [a, make_record(rng)])
    # a quarter on, both agencies send them again changed: stored under new record ids
    older = {**a, "age": a["age"] + 1}
    _push(real, school, [older])
    _push(real, police, [{**twin, "age": twin["age"] + 1}])
    now = _active(real)
    assert now[a["record_ref"]] != ids[a["record_ref"]], "the refresh made new record ids"
    persons = _persons(real)
    assert persons[now[a["record_ref"]]] != persons[now[twin["record_ref"]]]


def _active(svc: LinkageService) -> dict[str, int]:
    r = store.records
    with svc.sql.connect() as c:
        rows = c.execute(sa.select(r.c.record_ref, r.c.id).where(r.c.active == sa.true())).all()
    return {str(ref): int(i) for ref, i in rows}


def test_a_second_decision_is_refused_unless_it_is_a_recorded_change(
    real: LinkageService, school: Agency, rng: random.Random
) -> None:
    a, b, c = make_record(rng), make_record(rng), make_record(rng)
    _push(real, school, [a, b, c])
    ids = _ids(real)
    ra, rb = ids[a["record_ref"]], ids[b["record_ref"]]
    decide(real.sql, ra, rb, "match", "SAME_PERSON", actor="coordinator:kim")
    with pytest.raises(ConflictError, match="already decided match"):
        decide(real.sql, ra, rb, "non_match", "OOPS", actor="coordinator:lee")
    with pytest.raises(ConflictError, match="already decided match"):
        decide(real.sql, ra, rb, "match", "AGAIN", actor="coordinator:lee", change=True)
    with pytest.raises(ConflictError, match="no decision to change"):
        decide(real.sql, ra, ids[c["record_ref"]], "match", "X1", actor="a", change=True)
    with pytest.raises(ConflictError, match="against itself"):
        decide(real.sql, ra, ra, "match", "X1", actor="a")
    with pytest.raises(NotFound, match="record 999999"):
        decide(real.sql, ra, 999999, "match", "X1", actor="a")
    changed = decide(real.sql, rb, ra, "non_match", "TWINS", actor="coordinator:lee", change=True)
    assert changed.version == 2 and changed.current
    history = list_decisions(real.sql).decisions
    assert [(d.version, d.decision, d.current, d.effect) for d in history] == [
        (1, "match", False, "superseded"),
        (2, "non_match", True, "apart"),
    ]
    assert [d.decided_by for d in history] == ["coordinator:kim", "coordinator:lee"]
    text = decisions_csv(history)
    assert text.splitlines()[0].startswith("id,agency_a,record_ref_a")
    assert "TWINS" in text and a["record_ref"] in text and len(text.splitlines()) == 3


def test_concurrent_deciders_have_exactly_one_winner(
    real: LinkageService, school: Agency, rng: random.Random
) -> None:
    a, b = make_record(rng), make_record(rng)
    _push(real, school, [a, b])
    ids = _ids(real)
    ra, rb = ids[a["record_ref"]], ids[b["record_ref"]]
    start = threading.Barrier(6)
    won: list[str] = []
    lost: list[str] = []

    def go(k: int) -> None:
        start.wait()
        try:
            decide(real.sql, ra, rb, ("match", "non_match")[k % 2], "RACE", actor=f"c:{k}")
            won.append(f"c:{k}")
        except ConflictError:
            lost.append(f"c:{k}")

    threads = [threading.Thread(target=go, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 5
    [stored] = list_decisions(real.sql).decisions
    assert stored.decided_by == won[0]


def test_review_scores_are_probabilities(real: LinkageService) -> None:
    with pytest.raises(sa.exc.IntegrityError), real.sql.begin() as c:
        c.execute(
            store.review.insert().values(
                record_a=1, record_b=2, score=1.03, evidence="{}", run_id=1, uncertainty=0.53
            )
        )


def test_migration_0007_removes_review_rows_scored_before_probabilities(tmp_path: Any) -> None:
    from alembic import command
    from alembic.config import Config

    engine = store.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", "linkage_service:_migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0006")
        conn.execute(
            sa.text(
                "INSERT INTO review (record_a, record_b, score, evidence, run_id, uncertainty) "
                "VALUES (1, 2, 1.03, '{}', 1, 0.53), (3, 4, 0.6, '{}', 1, 0.1)"
            )
        )
    store.migrate(engine)
    with engine.connect() as conn:
        kept = conn.execute(sa.select(store.review.c.record_a, store.review.c.score)).all()
    engine.dispose()
    assert [(a, s) for a, s in kept] == [(3, 0.6)]
