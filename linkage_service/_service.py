"""The linkage service's core: engine state, and applying a checked extract atomically.

:class:`LinkageService` owns the database engine, the in-memory linkage engine
(built from the stored state at start) and a lock so one extract applies at a
time. :meth:`LinkageService.apply` does everything in ONE database
transaction: insert the new and changed records, retire the agency's records
that are absent or changed, supersede its previous extract, hand the
engine the clerical decisions in force, call
``engine.update(added, removed)`` and write what changed (persons, links and
review candidates as soon as the engine has them final, then households and
id events) and the run. Any failure
rolls the transaction back and rebuilds the engine from the database, so the
previous state is intact in both. A failed run is then recorded on its own.

Logs carry extract ids, agency ids, run ids and counts only.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import itertools
import json
import logging
import operator
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar, cast

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from protocols import (
    IndicatorType,
    LinkageSchema,
    SubjectAccessAnswer,
    SubjectQuery,
    age_span,
    gc_paused,
)

from . import _kernel as kernel
from . import _store as store
from ._batch import SEX_CODES, RecordBatch, TokenColumns
from ._errors import (
    ConfigError,
    EngineError,
    IngestError,
    LinkageError,
    ReplayError,
    StorageError,
)
from ._ingest import (
    DEFAULT_MAX_RECORDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    ExtractReceiver,
    Received,
    VerifyPool,
)
from ._subject import subject_answer

__all__ = [
    "Delta",
    "EngineFactory",
    "LinkEngine",
    "LinkageService",
    "configured_engine_factory",
    "default_engine_factory",
]

_logger = logging.getLogger("linkage_service.ingest")
_R = TypeVar("_R")
_EPOCH = dt.date(1970, 1, 1)
_WRITE_BATCH = 20_000  # staged records written per round
# rounds queued for the writer thread at most (up to 3 writes each): the apply
# reads ahead of the inserts by this much and starts linking while they finish;
# it bounds the rows held in memory (at most 160,000 records' rows)
_WRITE_AHEAD = 8
_DELTA_ROWS = 50_000  # rows of the delta (person, household, pair) built per queued insert
# A record's row as inserted: ``retired_by`` is left NULL, and its binary values go
# in as ``bytearray`` (both drivers store either as a blob): SQLite's driver binds a
# ``bytes`` or a None through its adapter registry (about 0.7 and 0.4 us a value,
# against 0.2 for a bytearray): a quarter of a record row's insert
# (bench/sqlite_insert.py --bulk-only).
_RECORD_COLUMNS = (
    "id",
    "seq",
    "agency_id",
    "record_ref",
    "extract_id",
    "first_extract_id",
    "active",
    "content_sha256",
    "clk",
    "address_clk",
    "exact_tokens",
    "blocking_keys",
    "age",
    "age_band",
    "sex",
    "district",
    "extract_date",
    "sealed_identity",
)
_INDICATOR_COLUMNS = ("record_id", "type", "value", "date")
# the tables an apply writes and the read routes query
_ANALYZED = (
    store.records,
    store.indicators,
    store.record_person,
    store.persons,
    store.person_household,
    store.households,
    store.links,
    store.review,
    store.id_events,
)
_PAIR_COLUMNS = ("record_a", "record_b", "score", "evidence", "run_id")


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


_EVENT_COLUMNS = ("run_id", "kind", "from_id", "to_id")
_ID_COLUMNS = ("id", "created_run", "retired_run")  # persons and households
_pair_key = operator.itemgetter(0, 1)  # a pair row's (record_a, record_b)


class Delta(Protocol):
    """What ``LinkEngine.update`` returns (the engine's ``Delta``, structurally)."""

    person_of: Mapping[int, str]
    persons_retired: Sequence[str]
    merges: Sequence[tuple[str, str]]
    splits: Sequence[tuple[str, str]]
    household_of: Mapping[str, str]
    households_retired: Sequence[str]
    household_merges: Sequence[tuple[str, str]]
    household_splits: Sequence[tuple[str, str]]
    # the ids of person_of and household_of the engine did not hold before the
    # update (made by it, or coming back); the others are live in the store
    persons_unheld: Collection[str]
    households_unheld: Collection[str]
    # of those, the ids the update made (new everywhere: created without a look-up)
    persons_made: Collection[str]
    households_made: Collection[str]
    # (record a, record b, score, evidence); a sequence with a ``json_rows()`` gives
    # the same with the evidence as its stored JSON (:func:`_pairs_json`)
    links: Sequence[tuple[int, int, float, Mapping[str, Any]]]
    review: Sequence[tuple[int, int, float, Mapping[str, Any]]]
    stats: Mapping[str, float]


class _SearchSettings(Protocol):
    search_dice: float  # subject access: the person-filter Dice worth returning


class LinkEngine(Protocol):
    """The incremental linkage engine as the service uses it."""

    @property
    def config(self) -> _SearchSettings:
        """Its settings (the service reads subject access's Dice threshold)."""
        ...

    def update(
        self,
        added: RecordBatch,
        removed: Sequence[int],
        previous: Mapping[int, str] | None = None,
        persons_ready: Callable[[Delta], None] | None = None,
    ) -> Delta:
        """Link ``added`` records, forget ``removed`` ones; what changed.

        ``previous``: added record id -> the person its source record last belonged to.
        ``persons_ready``: called once, before returning, with the delta whose persons,
        links and review are final (the service stores them while the households
        are worked out).
        """
        ...

    def record_persons(self, record_ids: Sequence[int]) -> Mapping[int, str]:
        """The person of each live record among ``record_ids`` (others are left out)."""
        ...

    def search(
        self, clk: bytes, exact: Mapping[str, bytes], threshold: float | None = None
    ) -> list[tuple[int, float, str | None]]:
        """Live records that may be the encoded person: (record id, dice, person id)."""
        ...


EngineFactory = Callable[[RecordBatch, dict[int, str], dict[str, str]], LinkEngine]


def default_engine_factory(
    batch: RecordBatch, person_of: dict[int, str], household_of: dict[str, str]
) -> LinkEngine:
    """``linkage_service._engine.LinkageEngine.from_state`` with its default config."""
    return configured_engine_factory(None)(batch, person_of, household_of)


def configured_engine_factory(pairs: object | None, lsh_bits: int | None = None) -> EngineFactory:
    """:func:`default_engine_factory` as the settings configure it: blocking and
    scoring on ``pairs`` (a :class:`linkage_service._distributed.DaskPairs`; None:
    in this process), ``lsh_bits`` bits per person LSH band (None: the engine's default)."""

    def make(
        batch: RecordBatch, person_of: dict[int, str], household_of: dict[str, str]
    ) -> LinkEngine:
        try:
            module: Any = importlib.import_module("linkage_service._engine")
        except ImportError as exc:
            raise ConfigError(f"the linkage engine is not available: {exc}") from exc
        config = module.EngineConfig()
        if lsh_bits is not None:
            config = module.EngineConfig(lsh_bits=lsh_bits)
        engine: LinkEngine = module.LinkageEngine.from_state(
            batch, person_of, household_of, config, pairs=pairs
        )
        return engine

    return make


# --- record batches ---------------------------------------------------------------------


class BatchBuilder:
    """Collects the columns of a :class:`RecordBatch` row by row; :meth:`build` makes the arrays.

    Rows are appended to lists and byte buffers (a numpy element assignment per
    field per record cost more than the rest of staging a record).
    """

    def __init__(self, clk_bytes: int, address_bytes: int) -> None:
        self.n = 0
        self._cb, self._ab = clk_bytes, address_bytes
        self._no_address = bytes(address_bytes)
        self._ids: list[int] = []
        self._agency: list[int] = []
        self._clk = bytearray()
        self._address = bytearray()
        self._has_address: list[bool] = []
        self._age: list[int] = []
        self._sex: list[int] = []
        self._district: list[str] = []  # "" = unknown
        self._day: list[int] = []
        self._dependent: list[bool] = []
        self._expectant: list[bool] = []
        self.exact = TokenColumns()
        self.blocking = TokenColumns()

    def add(
        self,
        *,
        record_id: int,
        agency_idx: int,
        clk: bytes,
        address_clk: bytes | None,
        age: int | None,
        sex: str | None,
        district: str | None,
        extract_date: dt.date,
        exact: Mapping[str, bytes],
        age_band: str | None = None,
        blocking: Mapping[str, bytes],
        indicator_types: Iterable[str],
    ) -> None:
        """Append one record."""
        k = self.n
        if len(clk) != self._cb:
            raise EngineError(
                f"record {record_id}: person filter of {len(clk)} bytes, expected {self._cb} "
                "(records of two schemas cannot be linked together)"
            )
        self._ids.append(record_id)
        self._agency.append(agency_idx)
        self._clk += clk
        if address_clk is not None and len(address_clk) == self._ab:
            self._address += address_clk
            self._has_address.append(True)
        else:
            self._address += self._no_address
            self._has_address.append(False)
        # the engine's age column: whole years, or the floor of the band from 25
        span = age_span(age, age_band)
        self._age.append(-1 if span is None else span[0])
        self._sex.append(SEX_CODES.get(sex or "", 0))
        self._district.append(district or "")
        self._day.append((extract_date - _EPOCH).days)
        types = set(indicator_types)
        self._dependent.append(_IN_EDUCATION in types and age is not None and 16 <= age <= 18)
        self._expectant.append(_EXPECTANT in types)
        if exact:
            self.exact.put(k, exact)
        if blocking:
            self.blocking.put(k, blocking)
        self.n += 1

    def build(self) -> RecordBatch:
        """The batch of the rows added so far."""
        n = self.n
        return RecordBatch(
            ids=np.asarray(self._ids, dtype=np.int64),
            agency=np.asarray(self._agency, dtype=np.int16),
            clk=np.frombuffer(self._clk, dtype="<u8").reshape(n, self._cb // 8).astype(np.uint64),
            address_clk=np.frombuffer(self._address, dtype="<u8")
            .reshape(n, self._ab // 8)
            .astype(np.uint64),
            has_address=np.asarray(self._has_address, dtype=np.bool_),
            age=np.asarray(self._age, dtype=np.int16),
            sex=np.asarray(self._sex, dtype=np.int8),
            district=np.asarray(self._district, dtype="U4"),
            extract_day=np.asarray(self._day, dtype=np.int32),
            dependent_flag=np.asarray(self._dependent, dtype=np.bool_),
            expectant_flag=np.asarray(self._expectant, dtype=np.bool_),
            exact=self.exact.build(n),
            blocking=self.blocking.build(n),
        )


_IN_EDUCATION = IndicatorType.IN_EDUCATION_OR_TRAINING.value
_EXPECTANT = IndicatorType.EXPECTANT_PARENT.value
_FLAG_TYPES = (_IN_EDUCATION, _EXPECTANT)


def load_state(
    conn: Connection, clk_bytes: int, address_bytes: int
) -> tuple[RecordBatch, dict[int, str], dict[str, str]]:
    """Every active record as a batch, with the stored record -> person -> household maps."""
    r, a = store.records, store.agencies
    flags: dict[int, set[str]] = {}
    q_flags = (
        sa.select(store.indicators.c.record_id, store.indicators.c.type)
        .join(r, r.c.id == store.indicators.c.record_id)
        .where(r.c.active, store.indicators.c.type.in_(_FLAG_TYPES))
    )
    for rid, typ in conn.execute(q_flags):
        flags.setdefault(int(rid), set()).add(str(typ))
    builder = BatchBuilder(clk_bytes, address_bytes)
    q = (
        sa.select(
            r.c.id,
            a.c.idx,
            r.c.clk,
            r.c.address_clk,
            r.c.age,
            r.c.age_band,
            r.c.sex,
            r.c.district,
            r.c.extract_date,
            r.c.exact_tokens,
            r.c.blocking_keys,
        )
        .join(a, a.c.agency_id == r.c.agency_id)
        .where(r.c.active)
        .order_by(r.c.seq)  # arrival order: the order the engine held them in
    )
    for row in conn.execute(q, execution_options={"yield_per": 10_000}):
        builder.add(
            record_id=int(row.id),
            agency_idx=int(row.idx),
            clk=bytes(row.clk),
            address_clk=None if row.address_clk is None else bytes(row.address_clk),
            age=row.age,
            age_band=row.age_band,
            sex=row.sex,
            district=row.district,
            extract_date=row.extract_date,
            exact={k: bytes.fromhex(v) for k, v in json.loads(row.exact_tokens).items()},
            blocking={k: bytes.fromhex(v) for k, v in json.loads(row.blocking_keys).items()},
            indicator_types=flags.get(int(row.id), ()),
        )
    person_of = {
        int(rid): str(pid)
        for rid, pid in conn.execute(
            sa.select(store.record_person.c.record_id, store.record_person.c.person_id)
            .join(r, r.c.id == store.record_person.c.record_id)
            .where(r.c.active)
        )
    }
    live = set(person_of.values())
    household_of = {
        str(p): str(h) for p, h in conn.execute(sa.select(store.person_household)) if str(p) in live
    }
    return builder.build(), person_of, household_of


# --- the service ------------------------------------------------------------------------


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"cannot store {type(value).__name__} in link evidence")


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=_jsonable)


_FAST_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _dumps_fast(value: object) -> str:
    """Compact JSON of link evidence (one per link): what readers ``json.loads`` back.

    orjson, several times faster than ``json`` here; unlike ``_dumps`` it writes
    no NaN or infinity (as null): evidence has none (missing gaps are None
    already, match model weights are finite).
    """
    return orjson.dumps(value, default=_jsonable, option=_FAST_JSON).decode()


def _token_json(tokens: Mapping[str, bytes]) -> str:
    """A record's exact or blocking tokens as stored: ``{name: hex}`` in compact JSON."""
    return orjson.dumps({k: v.hex() for k, v in tokens.items()}).decode()


class LinkageService:
    """Database + linkage engine + the apply lock. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        schemas: dict[str, LinkageSchema],
        engine_factory: EngineFactory = default_engine_factory,
        *,
        max_body_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_line_bytes: int = 64 * 1024,
        max_records: int | None = DEFAULT_MAX_RECORDS,
        staging_dir: Any = None,
        verify_workers: int = 0,
    ) -> None:
        if not schemas:
            raise ConfigError("no schema is pinned: the service could accept no extract")
        self.sql = engine
        self.schemas = schemas
        primary = next(iter(schemas.values()))
        self._clk_bytes = primary.person_filter.output_bits // 8
        self._address_bytes = primary.address_filter.output_bits // 8
        self._factory = engine_factory
        self._lock = threading.Lock()
        self._engine: LinkEngine | None = None
        self.max_body_bytes = max_body_bytes
        self.max_line_bytes = max_line_bytes
        self.max_records = max_records
        self.staging_dir = staging_dir
        # worker processes checking large chunks beside the receiving thread (0: none)
        self.verify_pool = VerifyPool(verify_workers, staging_dir) if verify_workers > 0 else None
        self.busy = threading.Event()

    def start(self) -> None:
        """Build the linkage engine from the stored state."""
        with self._lock, gc_paused():
            self._engine = self._build()

    def close(self) -> None:
        """Stop the verify workers, if any (the engine and the database are the caller's)."""
        if self.verify_pool is not None:
            self.verify_pool.close()

    def _build(self) -> LinkEngine:
        started = time.monotonic()
        try:
            with self.sql.connect() as conn:
                batch, person_of, household_of = load_state(
                    conn, self._clk_bytes, self._address_bytes
                )
                stored_model = store.latest_match_model(conn)
                decisions = store.current_decisions(conn)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot load the linkage state: {exc}") from exc
        engine = self._factory(batch, person_of, household_of)
        adopt = getattr(engine, "adopt_model", None)
        if stored_model is not None and adopt is not None:
            adopt(stored_model)  # the version in force when the service stopped
        _set_decisions(engine, decisions)
        _logger.info(
            "engine built",
            extra={"records": len(batch), "seconds": round(time.monotonic() - started, 3)},
        )
        return engine

    def search(self, query: SubjectQuery) -> SubjectAccessAnswer:
        """Subject access: what is held about the persons an encoded identity may match.

        The query must be encoded with a pinned schema. Records are grouped by
        person, with their data and indicators, the families of the person's
        household in every assessment (scores, reasons, status, claims), and
        the records' sealed blobs (see :mod:`linkage_service._subject`).
        """
        if query.schema_fingerprint not in self.schemas:
            raise IngestError(
                f"schema {query.schema_fingerprint} is not one this service accepts: encode "
                "the query with a schema it pins (its schema_files and schema_fingerprints "
                "settings)",
                field="schema_fingerprint",
            )
        clk = base64.b64decode(query.clk)
        if len(clk) != self._clk_bytes:
            raise IngestError(
                f"filter has {len(clk) * 8} bits, expected {self._clk_bytes * 8}", field="clk"
            )
        exact = {k.value: base64.b64decode(v) for k, v in query.exact_tokens.items()}
        with self._lock:
            if self._engine is None:
                self._engine = self._build()
            hits = self._engine.search(clk, exact)
            hits += self._retired_hits(
                clk, exact, self._engine.config.search_dice, [rid for rid, _sc, _p in hits]
            )
        hits.sort(key=lambda h: (-h[1], h[0]))
        return subject_answer(self.sql, hits, dt.datetime.now(dt.UTC))

    def _retired_hits(
        self, clk: bytes, exact: Mapping[str, bytes], threshold: float, live: Sequence[int]
    ) -> list[tuple[int, float, str | None]]:
        """Retired records (not in the engine, still held) that may be the person of
        ``clk`` / ``exact``, as :meth:`LinkageEngine.search` finds live ones: a person
        filter's Dice at least ``threshold``, or a keyed exact token that agrees. With the
        person each last belonged to. A scan of the retired records, once a search.

        An agency record is listed once (subject access keys records by agency and ref):
        a retired version of a record ``live`` (the live hits) holds is left out, and of
        several retired versions of one record the latest is kept.
        """
        query = np.frombuffer(clk, dtype="<u8").reshape(1, -1).astype(np.uint64)
        wanted = {name: token.hex() for name, token in exact.items()}
        found: dict[int, float] = {}
        try:
            with self.sql.connect() as conn:
                for ids, clks, tokens in store.retired_filters(conn):
                    # a filter of another length (retired under an earlier schema) is
                    # compared by its keyed tokens alone
                    same = [k for k, c in enumerate(clks) if len(c) == len(clk)]
                    dice = np.zeros(len(ids))
                    if same:
                        held = np.frombuffer(b"".join(clks[k] for k in same), dtype="<u8")
                        dice[same] = kernel.dice_pairs(
                            query,
                            held.reshape(len(same), -1),
                            np.zeros(len(same), np.int64),
                            np.arange(len(same)),
                        )
                    for k, rid in enumerate(ids):
                        if dice[k] >= threshold or (wanted and _shares_token(tokens[k], wanted)):
                            found[rid] = float(dice[k])
                versions = store.record_versions(conn, [*found, *live])
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot search the retired records: {exc}") from exc
        live_keys = {versions[rid][:2] for rid in live if rid in versions}
        latest: dict[tuple[str, str], int] = {}  # (agency, ref) -> its latest version
        for rid in found:
            key = versions[rid][:2]
            if key in live_keys:
                continue
            if key not in latest or versions[rid].seq > versions[latest[key]].seq:
                latest[key] = rid
        return [(rid, found[rid], versions[rid].person_id) for rid in latest.values()]

    def exclusive(self, fn: Callable[[], _R]) -> _R:
        """Run ``fn`` while no extract is being applied (an assessment reads one state)."""
        with self._lock:
            return fn()

    def receiver(self, agency_id: str) -> ExtractReceiver:
        """A receiver for one upload by ``agency_id``."""
        return ExtractReceiver(
            agency_id=agency_id,
            engine=self.sql,
            schemas=self.schemas,
            max_body_bytes=self.max_body_bytes,
            max_line_bytes=self.max_line_bytes,
            max_records=self.max_records,
            staging_dir=self.staging_dir,
            verify_pool=self.verify_pool,
        )

    def apply(self, received: Received) -> dict[str, Any]:
        """Apply a checked extract in one transaction; the run summary."""
        header = received.header
        if received.earlier_run_id is not None:
            return self._idempotent(header.extract_id, received.earlier_run_id)
        with self._lock:
            self.busy.set()
            started = store.now_micros()
            touched = [False]
            try:
                with gc_paused():
                    summary = self._apply_locked(received, started, touched)
                self._refresh_statistics()
            except _AlreadyApplied as done:
                return self._idempotent(header.extract_id, done.run_id)
            except Exception as exc:
                # Anything (the engine may raise any type): roll back, rebuild, record the
                # failed run, and re-raise as this package's error; nothing is swallowed.
                self._after_failure(received, started, exc, touched[0])
                if isinstance(exc, LinkageError):
                    raise
                if isinstance(exc, SQLAlchemyError):
                    raise StorageError(
                        f"extract {header.extract_id} not applied, database error: {exc}"
                    ) from exc
                raise EngineError(
                    f"extract {header.extract_id} not applied: the linkage engine failed "
                    f"({type(exc).__name__}: {exc}); the previous state is intact"
                ) from exc
            finally:
                self.busy.clear()
        _logger.info("extract applied", extra=summary)
        if "warning" in summary:
            _logger.warning(
                "extracts of several schemas held",
                extra={"schemas_held": summary["schemas_held"], "extract_id": header.extract_id},
            )
        return summary

    def _refresh_statistics(self) -> None:
        """Keep the planner's statistics current after an apply (reads stay on their indexes).

        Committed already: a failure here leaves the applied extract as it is and
        is logged, not raised (the next apply tries again).
        """
        t0 = time.monotonic()
        try:
            with self.sql.begin() as conn:
                store.analyze(conn, _ANALYZED)
        except SQLAlchemyError as exc:
            _logger.error("statistics not refreshed", extra={"error": type(exc).__name__})
            return
        _logger.info("statistics refreshed", extra={"seconds": round(time.monotonic() - t0, 3)})

    def _idempotent(self, extract_id: str, run_id: int) -> dict[str, Any]:
        run = store.get_run(self.sql, run_id)
        _logger.info("extract already applied", extra={"extract_id": extract_id, "run_id": run_id})
        return {**run["stats"], "run_id": run_id, "extract_id": extract_id, "idempotent": True}

    def _after_failure(
        self, received: Received, started: int, exc: BaseException, touched: bool
    ) -> None:
        header = received.header
        _logger.error(
            "extract not applied",
            extra={
                "extract_id": header.extract_id,
                "agency_id": header.agency_id,
                "error": type(exc).__name__,
            },
        )
        if touched:
            try:
                self._engine = self._build()
            except (LinkageError, SQLAlchemyError) as rebuild:
                self._engine = None
                _logger.error("engine rebuild failed", extra={"error": type(rebuild).__name__})
        try:
            with self.sql.begin() as conn:
                top = conn.execute(sa.select(sa.func.max(store.runs.c.id))).scalar_one_or_none()
                conn.execute(
                    store.runs.insert().values(
                        id=(top or 0) + 1,
                        kind="ingest",
                        status="failed",
                        agency_id=header.agency_id,
                        extract_id=header.extract_id,
                        started_at=started,
                        finished_at=store.now_micros(),
                        stats=_dumps({"records_received": received.trailer.record_count}),
                        error=str(exc)[:2000],
                    )
                )
        except SQLAlchemyError:
            _logger.error("cannot record the failed run", extra={"extract_id": header.extract_id})

    def _apply_locked(
        self, received: Received, started: int, touched: list[bool]
    ) -> dict[str, Any]:
        header, trailer = received.header, received.trailer
        if self._engine is None:
            self._engine = self._build()
        engine = self._engine
        r = store.records
        with store.bulk_transaction(self.sql) as conn:
            prior = conn.execute(
                sa.select(store.extracts.c.body_sha256, store.extracts.c.run_id).where(
                    store.extracts.c.extract_id == header.extract_id
                )
            ).first()
            if prior is not None:
                if prior.body_sha256 == received.body_sha256:
                    raise _AlreadyApplied(int(prior.run_id))
                raise ReplayError(
                    f"extract {header.extract_id} was already received with different content"
                )
            agency = store.get_agency(conn, header.agency_id)
            if agency is None:
                raise ReplayError(f"agency {header.agency_id!r} was removed during the upload")
            run_id = (
                int(
                    conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(store.runs.c.id), 0))
                    ).scalar_one()
                )
                + 1
            )
            # arrival order, kept inside the database; the ids themselves are random
            next_seq = (
                int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(r.c.seq), 0))).scalar_one())
                + 1
            )
            current: dict[str, tuple[int, bytes]] = {
                str(ref): (int(rid), bytes(digest))
                for rid, ref, digest in conn.execute(
                    sa.select(r.c.id, r.c.record_ref, r.c.content_sha256).where(
                        r.c.agency_id == header.agency_id, r.c.active
                    )
                )
            }
            previous_active = len(current)
            # a ref absent from the active set may have been held before: only an
            # agency that has sent an extract before has such records to look up
            sent_before = (
                conn.execute(
                    sa.select(store.extracts.c.extract_id)
                    .where(store.extracts.c.agency_id == header.agency_id)
                    .limit(1)
                ).first()
                is not None
            )
            builder = BatchBuilder(self._clk_bytes, self._address_bytes)
            removed: list[int] = []
            # new record id -> the person its source record last belonged to: a
            # changed record gets a new id, and so does one that left an extract and
            # came back; the engine keeps their persons (and so their families) ids
            previous: dict[int, str] = {}
            kept = changed = 0
            fresh_ids = iter(store.fresh_record_ids(conn, trailer.record_count))
            xid, extract_date = header.extract_id, header.extract_date.isoformat()
            records = received.records()
            # the bulk writes run in a thread of their own, in order, while this one
            # prepares the next batch and the engine links; every other use of the
            # connection meanwhile holds writer.lock (one statement at a time)
            with _Writer(_threaded_writes(conn), ahead=3 * _WRITE_AHEAD) as writer:
                while True:
                    batch = list(itertools.islice(records, _WRITE_BATCH))
                    if not batch:
                        break
                    new_rows: list[tuple[Any, ...]] = []
                    new_inds: list[tuple[Any, ...]] = []
                    keep_rows: list[tuple[int, bytes]] = []
                    retire_now: list[int] = []
                    replaces: dict[int, int] = {}  # new record id -> the active one it replaces
                    returning: dict[
                        str, int
                    ] = {}  # record ref absent from the active set -> new id
                    for rec in batch:
                        old = current.pop(rec.record_ref, None)
                        if old is not None and old[1] == rec.digest:
                            kept += 1
                            # it now belongs to this extract, with its freshly sealed identity
                            keep_rows.append((old[0], rec.sealed))
                            continue
                        rid = next(fresh_ids)
                        seq = next_seq
                        next_seq += 1
                        if old is not None:
                            changed += 1
                            retire_now.append(old[0])
                            replaces[rid] = old[0]
                        elif sent_before:
                            returning[rec.record_ref] = rid
                        new_rows.append(
                            (
                                rid,
                                seq,
                                header.agency_id,
                                rec.record_ref,
                                xid,
                                xid,
                                True,
                                bytearray(rec.digest),
                                bytearray(rec.clk),
                                None if rec.address_clk is None else bytearray(rec.address_clk),
                                _token_json(rec.exact),
                                _token_json(rec.blocking),
                                rec.age,
                                rec.age_band,
                                rec.sex,
                                rec.district,
                                extract_date,
                                bytearray(rec.sealed),
                            )
                        )
                        new_inds.extend((rid, t, v, d) for t, v, d in rec.indicators)
                        builder.add(
                            record_id=rid,
                            agency_idx=agency.idx,
                            clk=rec.clk,
                            address_clk=rec.address_clk,
                            age=rec.age,
                            age_band=rec.age_band,
                            sex=rec.sex,
                            district=rec.district,
                            extract_date=header.extract_date,
                            exact=rec.exact,
                            blocking=rec.blocking,
                            indicator_types=[t for t, _, _ in rec.indicators],
                        )
                    if replaces:
                        # the engine holds the person of every active record
                        held = engine.record_persons(list(replaces.values()))
                        previous.update(
                            {new: held[old] for new, old in replaces.items() if old in held}
                        )
                    if returning:
                        with writer.lock:
                            previous.update(_returning_persons(conn, header.agency_id, returning))
                    if retire_now:
                        # the records a changed one replaces retire first (one active
                        # row per ref): queued before this batch's rows
                        writer.put(_retire, conn, retire_now, xid)
                        removed.extend(retire_now)
                    new_rows.sort(key=_first)  # in key order: appends to the id index
                    writer.put(store.bulk_insert, conn, r, _RECORD_COLUMNS, new_rows)
                    writer.put(
                        store.bulk_insert, conn, store.indicators, _INDICATOR_COLUMNS, new_inds
                    )
                    if keep_rows:
                        writer.put(store.keep_records, conn, xid, keep_rows)
                with writer.lock:
                    absent = [rid for rid, _ in current.values()]
                    if absent:
                        _retire(conn, absent, header.extract_id)
                        removed.extend(absent)
                    superseded = conn.execute(
                        store.extracts.update()
                        .where(
                            store.extracts.c.agency_id == header.agency_id,
                            store.extracts.c.status == "applied",
                        )
                        .values(status="superseded")
                    ).rowcount
                    decided = store.has_decisions(conn)
                # the clerical decisions in force bind this update (one may have been
                # recorded since the last, by the API or the command line); they follow
                # the source records to their new ids, so need every record stored
                decisions: dict[tuple[int, int], str] = {}
                if decided:
                    writer.finish()
                    decisions = store.current_decisions(conn)
                added = builder.build()
                touched[0] = True
                _set_decisions(engine, decisions)
                added_ids = set(added.ids.tolist())
                new_persons: list[set[str]] = []

                def persons_ready(d: Delta) -> None:
                    new_persons.append(_write_persons(conn, writer, run_id, d, removed, added_ids))

                t0 = time.monotonic()
                delta = engine.update(added, removed, previous, persons_ready)
                link_seconds = time.monotonic() - t0
                if len(new_persons) != 1:
                    raise RuntimeError(
                        f"the engine called persons_ready {len(new_persons)} times, not once"
                    )
                _write_households(conn, writer, run_id, delta, new_persons[0])
                writer.finish()  # every write is done (or its error raised) before the run
            stats: dict[str, Any] = {
                "agency_id": header.agency_id,
                "extract_id": header.extract_id,
                "records_received": trailer.record_count,
                "records_added": len(added),
                "records_kept": kept,
                "records_changed": changed,
                "records_retired": len(absent),
                "previous_active": previous_active,
                "extracts_superseded": int(superseded or 0),
                "persons_changed": len(delta.person_of),
                "persons_retired": len(delta.persons_retired),
                "merges": len(delta.merges),
                "splits": len(delta.splits),
                "households_changed": len(delta.household_of),
                "households_retired": len(delta.households_retired),
                "links": len(delta.links),
                "review": len(delta.review),
                "link_seconds": round(link_seconds, 3),
                "engine": {k: float(v) for k, v in delta.stats.items()},
            }
            new_model = getattr(delta, "model", None)
            if new_model is not None:
                stats["match_model"] = new_model.to_json()
                stats["match_model_id"] = new_model.fingerprint()[:16]
            stats.update(_schemas_notice(conn, header.agency_id, header.schema_fingerprint))
            conn.execute(
                store.runs.insert().values(
                    id=run_id,
                    kind="ingest",
                    status="applied",
                    agency_id=header.agency_id,
                    extract_id=header.extract_id,
                    started_at=started,
                    finished_at=store.now_micros(),
                    stats=_dumps(stats),
                    error=None,
                )
            )
            conn.execute(
                store.extracts.insert().values(
                    extract_id=header.extract_id,
                    agency_id=header.agency_id,
                    extract_type=header.extract_type,
                    created_at=header.created_at.isoformat(),
                    extract_date=header.extract_date,
                    schema_fingerprint=header.schema_fingerprint,
                    record_count=trailer.record_count,
                    records_sha256=trailer.records_sha256,
                    body_sha256=received.body_sha256,
                    status="applied",
                    received_at=started,
                    run_id=run_id,
                    seal_key_id=header.seal_key_id,
                )
            )
        return {**stats, "run_id": run_id, "idempotent": False}


def _schemas_notice(conn: Connection, agency_id: str, fingerprint: str) -> dict[str, Any]:
    """``schemas_held`` and a ``warning`` when the current extracts use several schemas.

    During a move to a new schema both are pinned while the agencies re-encode;
    a filter of one schema compared with a filter of another scores as strangers
    do, so links between agencies on different schemas are missing until the last
    one has pushed. Every apply in that window says so (run summary, log, the
    ``agency-client push`` output). Empty when one schema is held. Called after
    this agency's earlier extract was superseded, before this one is recorded.
    """
    x = store.extracts
    held: dict[str, set[str]] = {fingerprint: {agency_id}}
    for fp, agency in conn.execute(
        sa.select(x.c.schema_fingerprint, x.c.agency_id).where(x.c.status == "applied")
    ):
        held.setdefault(fp, set()).add(agency)
    if len(held) == 1:
        return {}
    by_schema = {fp[:16]: sorted(agencies) for fp, agencies in sorted(held.items())}
    named = "; ".join(f"schema {fp}: {', '.join(a)}" for fp, a in by_schema.items())
    return {
        "schemas_held": by_schema,
        "warning": (
            f"the current extracts use {len(held)} schemas ({named}): records of different "
            "schemas cannot match, so links between these agencies are missing until every "
            "agency has pushed under one schema"
        ),
    }


class _Writer:
    """The apply's bulk writes, run in order on its connection by a thread of its own.

    SQLite's driver releases the GIL inside each step and psycopg while the server
    works, so a batch's insert proceeds while the next batch is prepared and while
    the engine links. The writes stay in the caller's transaction: the caller holds
    ``lock`` for any other use of the connection until :meth:`finish`, which
    re-raises the first write that failed (the writes after it are skipped).
    Leaving the ``with`` block always waits for the thread, so a failure on
    either side rolls back a connection that no thread is using.
    ``threaded=False`` runs each write at once, in the caller's thread. At most
    ``ahead`` writes wait in the queue; :meth:`put` blocks while it is full.
    """

    def __init__(self, threaded: bool = True, ahead: int = 3) -> None:
        self.lock = threading.Lock()
        self._error: BaseException | None = None
        self._jobs: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=ahead)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="apply-writes", daemon=True)
            self._thread.start()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def put(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue ``fn(*args)`` (bound in order); raise now if an earlier write failed."""
        if self._error is not None:
            raise self._error
        if self._thread is None:
            with self.lock:
                fn(*args)
            return
        self._jobs.put(lambda: fn(*args))

    def finish(self) -> None:
        """Wait for every queued write; re-raise the first that failed."""
        self._stop()
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is not None:
                continue  # drain, so the caller never blocks on a full queue
            try:
                with self.lock:
                    job()
            except BaseException as exc:  # re-raised in the caller's thread by finish()
                self._error = exc


def _threaded_writes(conn: Connection) -> bool:
    """Whether the writes of an apply may run in a second thread on ``conn``.

    Not on an in-memory SQLite database: its connection belongs to one thread.
    """
    return conn.dialect.name == "postgresql" or conn.engine.url.database not in (
        None,
        "",
        ":memory:",
    )


def _set_decisions(engine: LinkEngine, decisions: Mapping[tuple[int, int], str]) -> None:
    """Hand the clerical decisions in force to an engine that honours them."""
    setter = getattr(engine, "set_decisions", None)
    if setter is not None:
        setter(decisions)
    elif decisions:
        raise ConfigError(
            f"the linkage engine {type(engine).__name__} cannot honour clerical decisions, "
            f"and {len(decisions)} are in force"
        )


class _AlreadyApplied(Exception):
    """The same bytes were applied by a concurrent upload: answer with that run."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _returning_persons(
    conn: Connection, agency_id: str, returning: Mapping[str, int]
) -> dict[int, str]:
    """New record id -> the person of its ref's last record (retired, so not in the
    engine), for refs absent from the agency's active records."""
    rp, r = store.record_person, store.records
    out: dict[int, str] = {}
    for refs in store.key_chunks(conn, sorted(returning)):
        rows = conn.execute(
            sa.select(r.c.record_ref, rp.c.person_id)
            .join(rp, rp.c.record_id == r.c.id)
            .where(
                r.c.agency_id == agency_id, store.key_in(conn, r.c.record_ref, refs), ~r.c.active
            )
            .order_by(r.c.seq)
        )
        for ref, pid in rows:  # the latest record of a ref comes last
            out[returning[str(ref)]] = str(pid)
    return out


def _shares_token(stored: str, wanted: Mapping[str, str]) -> bool:
    """Whether a record's exact tokens (stored JSON, ``{name: hex}``) hold one of ``wanted``."""
    if not any(token in stored for token in wanted.values()):
        return False  # the common case, without parsing
    held = json.loads(stored)
    return any(held.get(name) == token for name, token in wanted.items())


def _retire(conn: Connection, ids: Sequence[int], extract_id: str) -> None:
    r = store.records
    for part in store.key_chunks(conn, list(ids)):
        conn.execute(
            r.update()
            .where(store.key_in(conn, r.c.id, part))
            .values(active=False, retired_by=extract_id)
        )


def _write_persons(
    conn: Connection,
    writer: _Writer,
    run_id: int,
    delta: Delta,
    removed: Sequence[int],
    added: set[int],
) -> set[str]:
    """Store the persons, links and review pairs ``engine.update`` changed (its
    ``persons_ready`` call, while it works out the households); ``added`` are the ids
    of the records just inserted. Returns the person ids that are new to the store.

    Rows keyed by a record (or person) that did not exist before this transaction
    cannot be in any table yet, so only the others are deleted before being
    written again; everything is inserted in bulk. The writes go to ``writer``'s
    thread, in the order they are made here, while this thread builds the next
    rows (the link evidence's JSON, the pairs' keys) and then the engine works out
    the households: on SQLite the inserts are the apply's longest path, so they
    start as soon as what they write is final. Only the look-ups of which ids
    exist run here, holding ``writer.lock``; they read tables no write queued
    before them touches.
    """
    p, rp = store.persons, store.record_person
    put = writer.put
    # persons: create new ids, revive any that come back, then map records (an id
    # the engine held before this update is live here: only the others are looked up)
    made = set(delta.persons_made)
    with writer.lock:
        new_persons = _ensure_ids(conn, p, sorted(set(delta.persons_unheld) - made), run_id)
    _create_ids(writer, conn, p, made, run_id)
    new_persons |= made
    items = sorted(delta.person_of.items())
    for ids in store.key_chunks(conn, [int(k) for k, _ in items if int(k) not in added]):
        put(conn.execute, rp.delete().where(store.key_in(conn, rp.c.record_id, ids)))
    for lo in range(0, len(items), _DELTA_ROWS):
        rows = [(int(k), v) for k, v in items[lo : lo + _DELTA_ROWS]]
        put(store.bulk_insert, conn, rp, ("record_id", "person_id"), rows)
    _retire_ids(writer, conn, run_id, "person", delta.persons_retired, delta.merges, delta.splits)
    # links and review candidates: forget pairs of removed records, then upsert
    for table in (store.links, store.review):
        for ids in store.key_chunks(conn, list(removed)):
            put(
                conn.execute,
                table.delete().where(
                    sa.or_(
                        store.key_in(conn, table.c.record_a, ids),
                        store.key_in(conn, table.c.record_b, ids),
                    )
                ),
            )
    for table, other, pairs in (
        (store.links, store.review, delta.links),
        (store.review, store.links, delta.review),
    ):
        columns = _PAIR_COLUMNS + (("uncertainty",) if table is store.review else ())
        rows_: list[tuple[Any, ...]] = []
        old_keys: list[tuple[int, int]] = []
        for a, b, score, evidence in _pairs_json(pairs):
            lo, hi = (a, b) if a < b else (b, a)
            row: tuple[Any, ...] = (lo, hi, score, evidence, run_id)
            if table is store.review:
                # its queue order; its impact is unknown until the next assessment cycle
                row += (store.review_uncertainty(float(score)),)
            rows_.append(row)
            if lo not in added and hi not in added:
                old_keys.append((lo, hi))
            if len(rows_) == _DELTA_ROWS:
                _put_pairs(writer, conn, table, other, columns, rows_, old_keys)
                rows_, old_keys = [], []
        _put_pairs(writer, conn, table, other, columns, rows_, old_keys)
    return new_persons


def _write_households(
    conn: Connection, writer: _Writer, run_id: int, delta: Delta, new_persons: set[str]
) -> None:
    """Store the households ``engine.update`` changed, after :func:`_write_persons`
    (``new_persons``: the person ids it found new to the store, who have no
    household row to delete)."""
    h, ph = store.households, store.person_household
    put = writer.put
    # (no write queued before touches the households table)
    made = set(delta.households_made)
    with writer.lock:
        _ensure_ids(conn, h, sorted(set(delta.households_unheld) - made), run_id)
    _create_ids(writer, conn, h, made, run_id)
    hitems = sorted(delta.household_of.items())
    for pids in store.key_chunks(conn, [k for k, _ in hitems if k not in new_persons]):
        put(conn.execute, ph.delete().where(store.key_in(conn, ph.c.person_id, pids)))
    for lo in range(0, len(hitems), _DELTA_ROWS):
        put(
            store.bulk_insert,
            conn,
            ph,
            ("person_id", "household_id"),
            hitems[lo : lo + _DELTA_ROWS],
        )
    _retire_ids(
        writer,
        conn,
        run_id,
        "household",
        delta.households_retired,
        delta.household_merges,
        delta.household_splits,
    )


def _retire_ids(
    writer: _Writer,
    conn: Connection,
    run_id: int,
    kind: Literal["person", "household"],
    retired: Iterable[str],
    merges: Iterable[tuple[str, str]],
    splits: Iterable[tuple[str, str]],
) -> None:
    """Queue the retirement of the ``kind`` ("person" or "household") ids ``retired``
    (their household memberships go with them) and the id events of the update: the
    retired, then ``merges`` and ``splits`` (from, to)."""
    table, member = (
        (store.persons, store.person_household.c.person_id)
        if kind == "person"
        else (store.households, store.person_household.c.household_id)
    )
    gone = sorted(set(retired))
    for part in store.key_chunks(conn, gone):
        writer.put(
            conn.execute,
            table.update().where(store.key_in(conn, table.c.id, part)).values(retired_run=run_id),
        )
        writer.put(
            conn.execute, store.person_household.delete().where(store.key_in(conn, member, part))
        )
    # (run_id, kind, from_id, to_id), in the order they are read back (by id)
    events: list[tuple[int, str, str, str | None]] = [
        (run_id, f"{kind}_retired", x, None) for x in gone
    ]
    events += [(run_id, f"{kind}_merge", a, b) for a, b in merges]
    events += [(run_id, f"{kind}_split", a, b) for a, b in splits]
    # in bulk: as an executemany, each event was a statement whose step let go of the
    # interpreter lock, and won it back only after the busy thread beside it let go
    writer.put(store.bulk_insert, conn, store.id_events, _EVENT_COLUMNS, events)


def _pairs_json(
    pairs: Sequence[tuple[int, int, float, Mapping[str, Any]]],
) -> Iterator[tuple[int, int, float, str]]:
    """``pairs`` with their evidence as stored, compact JSON (:func:`_dumps_fast`).

    The engine's pairs (:class:`~linkage_service._engine.Evidence`) write it
    themselves, several times faster than building each pair's dict first.
    """
    json_rows = getattr(pairs, "json_rows", None)
    if json_rows is not None:
        return cast(Iterator[tuple[int, int, float, str]], json_rows())
    return (
        (int(a), int(b), float(score), _dumps_fast(dict(evidence)))
        for a, b, score, evidence in pairs
    )


def _put_pairs(
    writer: _Writer,
    conn: Connection,
    table: sa.Table,
    other: sa.Table,
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    old_keys: list[tuple[int, int]],
) -> None:
    """Queue the upsert of pair ``rows`` into ``table``: a pair now in one table leaves
    the other (and its old row in this one), then the rows go in, in key order (the
    engine gives pairs in no order; SQLite's inserts of a 1M push's links took a
    quarter less time in key order)."""
    for t in (table, other):
        writer.put(store.delete_pairs, conn, t, old_keys)
    rows.sort(key=_pair_key)
    writer.put(store.bulk_insert, conn, table, columns, rows)


def _create_ids(
    writer: _Writer, conn: Connection, table: sa.Table, ids: Collection[str], run_id: int
) -> None:
    """Queue the creation of ``ids``, which no row of ``table`` holds (the engine made
    them this update): no look-up first, one bulk insert in key order. Were one held
    after all, the insert fails and the whole apply with it."""
    rows = [(i, run_id, None) for i in sorted(ids)]
    writer.put(store.bulk_insert, conn, table, _ID_COLUMNS, rows)


def _ensure_ids(conn: Connection, table: sa.Table, ids: Sequence[str], run_id: int) -> set[str]:
    """Create the ids ``table`` does not hold and revive retired ones; the ids created."""
    created: set[str] = set()
    for part in store.key_chunks(conn, list(ids)):
        # id -> whether it is retired; only those are revived (most are live already)
        existing = {
            str(i): retired is not None
            for i, retired in conn.execute(
                sa.select(table.c.id, table.c.retired_run).where(
                    store.key_in(conn, table.c.id, part)
                )
            )
        }
        created.update(i for i in part if i not in existing)
        back = [i for i in part if existing.get(i)]
        if back:
            conn.execute(
                table.update()
                .where(store.key_in(conn, table.c.id, back), table.c.retired_run.is_not(None))
                .values(retired_run=None)
            )
    fresh = [(i, run_id, None) for i in ids if i in created]  # one bulk insert, in order
    store.bulk_insert(conn, table, _ID_COLUMNS, fresh)
    return created
