"""Bulk export: every kind round-trips in NDJSON and Parquet, pages are keyset reads,
HTTP authenticates, authorises and names a bad field, and the CLI writes the same rows."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from agency_client._synthetic import PopulationConfig
from evaluation._harness import ingest_population, load_population
from linkage_service import _export as export_
from linkage_service import _store as store
from linkage_service._api import create_app
from linkage_service._cli import main
from linkage_service._config import Settings
from linkage_service._errors import NotFound
from linkage_service.programme import _store as pstore
from linkage_service.programme._assessment import run_cycle
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from protocols import EXPORT_KINDS, ExportKind

from ._factories import auth, write_tokens

AS_AT = PopulationConfig(households=1).extract_date
PAGE = 7  # rows per page: small, so every kind (review pairs are the fewest) spans several pages


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linked, assessed population of 300 households (links and review pairs too)."""
    work = tmp_path_factory.mktemp("export")
    pop = load_population(300, seed=11, workdir=work / "pop")
    sql = ingest_population(pop, f"sqlite:///{work / 'linkage.db'}")
    try:
        run_cycle(sql, default_ruleset(), default_model(), AS_AT, actor="test")
    finally:
        sql.dispose()
    return work / "linkage.db"


@pytest.fixture
def db(linked: Path, tmp_path: Path) -> Path:
    """A copy of the linked database this test may change."""
    path = tmp_path / "linkage.db"
    path.write_bytes(linked.read_bytes())
    return path


@pytest.fixture
def engine(db: Path) -> Iterator[Engine]:
    sql = store.open_engine(f"sqlite:///{db}")
    yield sql
    sql.dispose()


def _ndjson_rows(kind: ExportKind, body: bytes) -> list[BaseModel]:
    model = export_.ROW_MODELS[kind]
    return [model.model_validate_json(line) for line in body.splitlines()]


def _parquet_rows(kind: ExportKind, body: bytes) -> list[BaseModel]:
    table = pq.read_table(pa.BufferReader(body))
    assert table.schema == export_.SCHEMAS[kind]
    model = export_.ROW_MODELS[kind]
    out = []
    for row in table.to_pylist():
        if "evidence" in row:
            row["evidence"] = json.loads(row["evidence"])
        out.append(model.model_validate(row))
    return out


def _key(kind: ExportKind, row: Any) -> Any:
    if kind in ("links", "review"):
        return (row.a.record_id, row.b.record_id)
    return getattr(
        row, {"persons": "person_id", "households": "household_id"}.get(kind, "family_id")
    )


def _expected_count(engine: Engine, kind: ExportKind) -> int:
    stats = store.statistics(engine)
    if kind == "families":
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(pstore.snapshots)
                    .where(pstore.snapshots.c.cycle_id == pstore.latest_cycle_id(engine))
                ).scalar_one()
            )
    return int(stats[{"review": "review_candidates"}.get(kind, kind)])


@pytest.mark.parametrize("kind", EXPORT_KINDS)
def test_each_kind_round_trips_in_ndjson_and_parquet(engine, kind):
    ndjson = b"".join(export_.stream(engine, kind, "ndjson", page_size=PAGE))
    parquet = b"".join(export_.stream(engine, kind, "parquet", page_size=PAGE))
    rows = _ndjson_rows(kind, ndjson)
    assert _parquet_rows(kind, parquet) == rows
    expected = _expected_count(engine, kind)
    assert expected > PAGE * 3, "the population must span pages"
    keys = [_key(kind, r) for r in rows]
    assert len(rows) == expected and keys == sorted(set(keys))  # all of them, once, in order


def test_persons_carry_every_active_record_ref_once(engine):
    rows = _ndjson_rows("persons", b"".join(export_.stream(engine, "persons", "ndjson")))
    refs = [(r.agency_id, r.record_ref) for p in rows for r in p.records]
    assert len(refs) == len(set(refs)) == store.statistics(engine)["active_records"]
    one = rows[len(rows) // 2]
    held = store.get_person(engine, one.person_id)
    assert [(r["agency_id"], r["record_ref"]) for r in held["records"]] == [
        (r.agency_id, r.record_ref) for r in one.records
    ]
    assert one.household_id == held["household_id"]


def test_links_and_families_agree_with_the_per_record_and_family_reads(engine):
    links = _ndjson_rows("links", b"".join(export_.stream(engine, "links", "ndjson")))
    pair = links[len(links) // 3]
    per_record = store.record_links(engine, pair.a.agency_id, pair.a.record_ref)["links"]
    same = [x for x in per_record if x["b"]["record_id"] == pair.b.record_id]
    assert same and same[0]["score"] == pair.score and same[0]["evidence"] == pair.evidence
    families = _ndjson_rows("families", b"".join(export_.stream(engine, "families", "ndjson")))
    assert any(f.eligible for f in families) and any(not f.eligible for f in families)
    top = max(families, key=lambda f: f.score)
    assert top.rank == 1 and top.status == "identified" and top.members


def _page_reads(engine: Engine, table: str) -> list[tuple[str, Any]]:
    """The page queries on ``table`` the engine runs from now on: (SQL, parameters)."""
    seen: list[tuple[str, Any]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, parameters, *_args):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("SELECT") and f"ORDER BY {table}." in statement:
            seen.append((statement, parameters))

    return seen


@pytest.mark.parametrize(("kind", "table"), [("persons", "persons"), ("links", "links")])
def test_the_export_reads_one_keyset_page_at_a_time(engine, kind, table):
    reads = _page_reads(engine, table)
    export = export_.stream(engine, kind, "ndjson", page_size=PAGE)
    assert len(reads) == 1  # the first page, read before the response starts
    chunks = iter(export)
    first = next(chunks)
    assert len(reads) == 1 and len(first.splitlines()) == PAGE == export.rows
    second = next(chunks)
    assert len(reads) == 2 and len(second.splitlines()) == PAGE
    rest = b"".join(chunks)
    total = 2 * PAGE + len(rest.splitlines())
    # full pages, then the short (maybe empty) one that ends the export
    assert len(reads) == total // PAGE + 1 and export.rows == total
    # each page after the first starts after the last key of the one before: no OFFSET
    # (SQLite's LIMIT always comes with an OFFSET parameter: it stays 0)
    assert all("LIMIT" in sql and tuple(params)[-2:] == (PAGE, 0) for sql, params in reads)
    assert all(">" in sql.split("WHERE", 1)[1] for sql, _ in reads[1:])


def test_a_push_between_pages_neither_repeats_nor_skips_a_row(engine):
    before = [
        r.person_id
        for r in _ndjson_rows("persons", b"".join(export_.stream(engine, "persons", "ndjson")))
    ]
    chunks = iter(export_.stream(engine, "persons", "ndjson", page_size=PAGE))
    seen = [r.person_id for r in _ndjson_rows("persons", next(chunks))]
    # between two pages, as a push does: persons appear on both sides of the cursor,
    # one not yet exported is retired
    retired = before[PAGE + 5]
    with engine.begin() as conn:
        conn.execute(
            store.persons.insert(),
            [
                {"id": "per_0000000000000000", "created_run": 99},
                {"id": "per_ffffffffffffffff", "created_run": 99},
            ],
        )
        conn.execute(
            store.persons.update().where(store.persons.c.id == retired).values(retired_run=99)
        )
    seen += [r.person_id for r in _ndjson_rows("persons", b"".join(chunks))]
    assert len(seen) == len(set(seen))  # nothing twice
    kept = [p for p in before if p != retired]
    assert [p for p in seen if p in set(before)] == kept  # nothing that stayed is skipped
    assert retired not in seen
    assert "per_ffffffffffffffff" in seen and "per_0000000000000000" not in seen


def test_families_without_an_assessment_are_not_found(tmp_path):
    sql = store.open_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(NotFound, match="no assessment has been run"):
            export_.stream(sql, "families", "ndjson")
        assert b"".join(export_.stream(sql, "persons", "ndjson")) == b""
        empty = b"".join(export_.stream(sql, "links", "parquet"))
        assert pq.read_table(pa.BufferReader(empty)).num_rows == 0
    finally:
        sql.dispose()


def test_the_parquet_row_groups_are_bounded(engine, monkeypatch):
    monkeypatch.setattr(export_, "ROW_GROUP", 100)
    body = b"".join(export_.stream(engine, "links", "parquet", page_size=PAGE))
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    assert meta.num_row_groups > 3
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(sizes) < 100 + PAGE


# --- HTTP -------------------------------------------------------------------------------


@pytest.fixture
async def client(db: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=f"sqlite:///{db}",
        token_file=write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
        export_page_size=PAGE,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://linkage") as c:
            yield c


@pytest.mark.anyio
@pytest.mark.parametrize("kind", EXPORT_KINDS)
async def test_http_export_streams_the_same_rows_in_either_format(client, engine, kind):
    expected = _ndjson_rows(kind, b"".join(export_.stream(engine, kind, "ndjson")))
    r = await client.get(f"/export/{kind}", headers=auth("analyst"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    assert f'filename="{kind}.ndjson"' in r.headers["content-disposition"]
    assert _ndjson_rows(kind, r.content) == expected
    r = await client.get(f"/export/{kind}", params={"format": "parquet"}, headers=auth("admin"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    assert _parquet_rows(kind, r.content) == expected
    accept = {**auth("coordinator"), "accept": "application/vnd.apache.parquet"}
    r = await client.get(f"/export/{kind}", headers=accept)
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert _parquet_rows(kind, r.content) == expected


@pytest.mark.anyio
async def test_http_export_authenticates_and_authorises(client, caplog):
    assert (await client.get("/export/persons")).status_code == 401
    bad = {"authorization": "Bearer wrong"}
    assert (await client.get("/export/persons", headers=bad)).status_code == 401
    for role in ("agency:school", "unlock_service"):
        r = await client.get("/export/links", params={"format": "parquet"}, headers=auth(role))
        assert r.status_code == 403, role
    caplog.set_level(logging.INFO, logger="linkage_service.api")
    for role in ("analyst", "coordinator", "admin"):
        assert (await client.get("/export/households", headers=auth(role))).status_code == 200
    logged = [r for r in caplog.records if r.getMessage() == "bulk export"]
    assert [(r.export_kind, r.export_format, r.role) for r in logged] == [  # type: ignore[attr-defined]
        ("households", "ndjson", role) for role in ("analyst", "coordinator", "admin")
    ]


@pytest.mark.anyio
async def test_http_export_names_a_bad_kind_or_format(client):
    r = await client.get("/export/names", headers=auth("analyst"))
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["path", "kind"]]
    r = await client.get("/export/persons", params={"format": "csv"}, headers=auth("analyst"))
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["query", "format"]]


@pytest.mark.anyio
async def test_http_families_export_before_an_assessment_is_404(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        token_file=write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://linkage") as c:
            r = await c.get("/export/families", headers=auth("analyst"))
            assert r.status_code == 404 and "no assessment" in r.json()["detail"]
            r = await c.get("/export/review", headers=auth("analyst"))
            assert r.status_code == 200 and r.content == b""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- CLI --------------------------------------------------------------------------------


def _config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "linkage.toml"
    path.write_text(f'database_url = "sqlite:///{db}"\ntoken_file = "{tmp_path / "tokens"}"\n')
    return path


def test_cli_exports_each_kind_to_a_private_file(db, engine, tmp_path, capsys):
    config = _config(tmp_path, db)
    for kind in EXPORT_KINDS:
        expected = _ndjson_rows(kind, b"".join(export_.stream(engine, kind, "ndjson")))
        out = tmp_path / f"{kind}.parquet"  # the suffix picks Parquet
        assert main(["--config", str(config), "export", kind, "--out", str(out)]) == 0
        assert (
            capsys.readouterr().out == f"{len(expected)} {kind} rows (parquet) written to {out}\n"
        )
        assert out.stat().st_mode & 0o777 == 0o600
        assert _parquet_rows(kind, out.read_bytes()) == expected
        text = tmp_path / f"{kind}.out"
        args = ["--config", str(config), "export", kind, "--out", str(text), "--page-size", "9"]
        assert main([*args, "--format", "ndjson"]) == 0
        assert _ndjson_rows(kind, text.read_bytes()) == expected
        assert capsys.readouterr().out.startswith(f"{len(expected)} {kind} rows (ndjson)")
    assert not list(tmp_path.glob("*.partial"))


def test_cli_export_errors_are_plain(tmp_path, capsys):
    config = _config(tmp_path, tmp_path / "empty.db")
    out = tmp_path / "families.ndjson"
    assert main(["--config", str(config), "export", "families", "--out", str(out)]) == 1
    assert "no assessment has been run" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "export", "names", "--out", str(out)])
    assert exited.value.code == 2
    assert "invalid choice: 'names'" in capsys.readouterr().err
    missing = tmp_path / "no-such-dir" / "persons.ndjson"
    assert main(["--config", str(config), "export", "persons", "--out", str(missing)]) == 1
    assert f"cannot write the persons export to {missing}" in capsys.readouterr().err


@pytest.mark.parametrize("kind", EXPORT_KINDS)
def test_no_export_page_scans_the_records_table(engine, kind):
    # a page's cost must not grow with the database: records are read by primary key,
    # never through a scan or the ``active`` index (every active record, every page)
    statements: list[tuple[str, Any]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _keep(_conn, _cursor, statement, parameters, *_args):  # type: ignore[no-untyped-def]
        if not statement.startswith("EXPLAIN"):
            statements.append((statement, parameters))

    assert b"".join(export_.stream(engine, kind, "ndjson", page_size=PAGE))
    sa.event.remove(engine, "before_cursor_execute", _keep)
    plans = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            plans += [str(row[-1]) for row in plan]
    assert plans
    assert not [p for p in plans if p.startswith("SCAN records")]


@pytest.mark.postgres
def test_every_kind_exports_from_postgresql(empty_postgres_url, tmp_path):
    url = empty_postgres_url
    pop = load_population(150, seed=11, workdir=tmp_path / "pop")
    sql = ingest_population(pop, url)
    try:
        run_cycle(sql, default_ruleset(), default_model(), AS_AT, actor="test")
        for kind in EXPORT_KINDS:
            rows = _ndjson_rows(kind, b"".join(export_.stream(sql, kind, "ndjson", page_size=7)))
            parquet = b"".join(export_.stream(sql, kind, "parquet", page_size=7))
            assert _parquet_rows(kind, parquet) == rows, kind
            keys = [_key(kind, r) for r in rows]
            assert len(rows) == _expected_count(sql, kind) > 7 and keys == sorted(set(keys)), kind
    finally:
        sql.dispose()
