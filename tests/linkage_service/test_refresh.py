"""Refreshes over a programme year: the same people keep their person and family ids.

Every agency sends its whole extract again a quarter later (records change because
their dates do, so each is stored under a new record id); a person whose records
are the same people's keeps its id, and so does a household whose members do.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from evaluation._harness import ingest_population, load_population, push_refresh
from evaluation._year import family_contents, kept_ids, person_contents
from linkage_service import _store as store
from linkage_service._service import LinkageService
from protocols import default_schema

QUARTER = dt.timedelta(days=91)


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("refresh")
    pop = load_population(400, seed=31, workdir=work / "pop", secret_seed=3)
    sql = ingest_population(pop, f"sqlite:///{work / 'linkage.db'}")
    schema = default_schema()
    service = LinkageService(sql, {schema.fingerprint(): schema})
    service.start()
    return pop, sql, service


def test_quarterly_refreshes_keep_person_and_family_ids(year):
    pop, sql, service = year
    persons, households = person_contents(sql), family_contents(sql)
    day = dt.date(2026, 9, 30)
    for quarter in range(1, 4):
        push_refresh(pop, service, day + quarter * QUARTER)
        now_persons, now_households = person_contents(sql), family_contents(sql)
        kept, same, _ = kept_ids(persons, now_persons)
        assert same >= 0.98 * len(persons), f"quarter {quarter}: persons re-linked differently"
        assert kept == same, f"quarter {quarter}: {same - kept} unchanged persons got new ids"
        kept, same, _ = kept_ids(households, now_households)
        assert kept >= 0.99 * same, f"quarter {quarter}: {same - kept} of {same} households"
        persons, households = now_persons, now_households


def test_a_record_that_leaves_and_comes_back_keeps_its_person(year):
    pop, sql, service = year
    persons = person_contents(sql)
    school = [(p, refs) for p, refs in persons.items() if any(a == "school" for a, _ in refs)]
    # a pupil known only to the school: leaving the extract retires the person
    pid, refs = next((p, refs) for p, refs in sorted(school) if len(refs) == 1)
    ((_, ref),) = refs
    with sql.connect() as conn:
        r = store.records
        sid_row = conn.execute(
            sa.select(r.c.id).where(r.c.agency_id == "school", r.c.record_ref == ref, r.c.active)
        ).scalar_one()
    assert sid_row
    from agency_client import load_agency_key, record_ref

    key = load_agency_key(pop.workdir / "keys" / "school" / "agency.key")

    def not_this_pupil(agency: str, line: bytes) -> bool:
        sid = line.split(b",", 1)[0].decode()  # the school's first column is its pupil id
        return agency != "school" or record_ref(key.record_ref_key, "school", sid) != ref

    push_refresh(pop, service, dt.date(2027, 9, 30), keep=not_this_pupil)
    gone = person_contents(sql)
    assert pid not in gone
    assert _retired_run(sql, pid) is not None
    push_refresh(pop, service, dt.date(2027, 12, 31))
    back = person_contents(sql)
    assert back.get(pid) == refs, "the pupil came back under a new person id"
    # the engine did not hold the id when it came back: the store revived its row
    assert _retired_run(sql, pid) is None


def _retired_run(sql: sa.Engine, pid: str) -> int | None:
    p = store.persons
    with sql.connect() as conn:
        got = conn.execute(sa.select(p.c.retired_run).where(p.c.id == pid)).scalar_one()
    return None if got is None else int(got)
