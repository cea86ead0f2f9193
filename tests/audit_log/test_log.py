"""AuditLog: group commit, checkpoints, receipts, start-up checks and tamper detection."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from audit_log._checkpoint import (
    Checkpoint,
    open_checkpoint,
    sign_checkpoint,
    verify_tlog_proof,
)
from audit_log._entries import entry_columns, leaf_bytes, parse_leaf
from audit_log._errors import ProofError
from audit_log._log import AuditLog, verify_database
from audit_log._merkle import EMPTY_ROOT, MerkleTree, leaf_hash, verify_consistency
from audit_log._note import NoteSigner
from audit_log._storage_errors import ConfigError, TamperError

from ._factories import T0, db_url_factory, make_entry, mixed_entries

__all__ = ["db_url_factory"]

ORIGIN = "audit.example.gov.uk/log"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, bytes(range(32)))


@pytest.fixture
def open_log(signer: NoteSigner) -> Iterator[Callable[..., AuditLog]]:
    opened: list[AuditLog] = []

    def make(url: str, **kwargs: object) -> AuditLog:
        log = AuditLog.open(url, signer, **kwargs)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def test_fresh_log_signs_an_empty_checkpoint(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog]
) -> None:
    log = open_log(db_url_factory())
    note = log.published_checkpoint()
    assert note is not None
    cp, _ = open_checkpoint(note, log.verifier)
    assert (cp.size, cp.root_hash) == (0, EMPTY_ROOT)
    assert log.checkpoint() == note  # nothing new: no new signature


def test_appends_receipts_and_reopen(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog], signer: NoteSigner
) -> None:
    url = db_url_factory()
    log = open_log(url)
    entries = mixed_entries(40)
    done = log.append_many(entries[:30])
    assert [a.index for a in done] == list(range(30))
    single = log.append(entries[30])
    assert single.index == 30
    assert parse_leaf(single.leaf).entry == entries[30]
    receipt = log.receipt(single.index)
    cp = verify_tlog_proof(receipt, single.leaf, log.verifier)
    assert cp.size == 31
    # An earlier entry's receipt uses the already-published checkpoint.
    cp0 = verify_tlog_proof(log.receipt(0), done[0].leaf, log.verifier)
    assert cp0.size == 31
    with pytest.raises(ProofError):
        verify_tlog_proof(receipt, done[0].leaf, log.verifier)
    with pytest.raises(ProofError, match="not in the log"):
        log.receipt(31)
    log.close()
    again = open_log(url)
    assert again.size == 31
    assert again.leaf(30) == single.leaf
    assert verify_database(again.engine, again.verifier).size == 31


def test_concurrent_appenders_get_distinct_contiguous_indices(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog]
) -> None:
    log = open_log(db_url_factory(), batch_wait=0.002)
    got: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for n in range(25):
            index = log.append(make_entry("decision", k * 100 + n)).index
            with lock:
                got.append(index)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(200))
    log.checkpoint()
    assert verify_database(log.engine, log.verifier).size == 200


def test_checkpoints_are_consistent(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog]
) -> None:
    log = open_log(db_url_factory())
    notes = []
    for batch in range(4):
        log.append_many(mixed_entries(7, seed=batch))
        notes.append(log.checkpoint())
    cps = [open_checkpoint(n, log.verifier)[0] for n in notes]
    for a, b in zip(cps, cps[1:], strict=False):
        verify_consistency(
            a.size, b.size, log.consistency_proof(a.size, b.size), a.root_hash, b.root_hash
        )


def test_origin_must_match_key_name(tmp_path: Path, signer: NoteSigner) -> None:
    with pytest.raises(ConfigError, match="origin"):
        AuditLog.open(str(tmp_path / "x.db"), signer, origin="other.example/log")


def test_empty_append_many_is_a_no_op(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog]
) -> None:
    log = open_log(db_url_factory())
    assert log.append_many([]) == []
    assert log.size == 0


# -- tampering (SQLite, raw access with the triggers dropped) ------------


def _raw(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    for table in ("entries", "checkpoints", "cosignatures"):
        for action in ("update", "delete"):
            connection.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    return connection


@pytest.fixture
def tampered_db(tmp_path: Path, signer: NoteSigner) -> Callable[..., Path]:
    """A 20-entry log checkpointed at 10 and 20 (or after every entry)."""

    def make(every_entry: bool = False) -> Path:
        path = tmp_path / "tamper.db"
        with AuditLog.open(str(path), signer) as log:
            for i, entry in enumerate(mixed_entries(20, seed=3)):
                log.append(entry)
                if every_entry or i in (9, 19):
                    log.checkpoint()
        return path

    return make


def _verify(path: Path, signer: NoteSigner, expected: tuple[str, ...] = ()) -> None:
    with AuditLog.open(str(path), signer) as log:
        verify_database(log.engine, log.verifier)


def _verify_raw(path: Path, signer: NoteSigner, expected: tuple[str, ...] = ()) -> None:
    from audit_log import _store

    engine = _store.open_engine(str(path))
    try:
        verify_database(engine, signer.verifier(), expected=expected)
    finally:
        engine.dispose()


def test_untampered_database_verifies(tampered_db: Callable[..., Path], signer: NoteSigner) -> None:
    _verify(tampered_db(), signer)


def test_changed_row_is_pinpointed(tampered_db: Callable[..., Path], signer: NoteSigner) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        (data,) = raw.execute("SELECT leaf_data FROM entries WHERE idx = 7").fetchone()
        changed = data.replace(b'"logged_at":"2', b'"logged_at":"1')
        assert changed != data
        raw.execute("UPDATE entries SET leaf_data = ? WHERE idx = 7", (changed,))
    with pytest.raises(TamperError, match="entry 7") as info:
        _verify_raw(path, signer)
    assert info.value.index == 7


def test_changed_column_is_pinpointed(tampered_db: Callable[..., Path], signer: NoteSigner) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        raw.execute("UPDATE entries SET family_id = 'fam_0000000000000000' WHERE idx = 12")
    with pytest.raises(TamperError, match="entry 12: column family_id") as info:
        _verify_raw(path, signer)
    assert info.value.index == 12


def test_consistently_rewritten_row_is_pinpointed_by_checkpoints(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db(every_entry=True)
    with _raw(path) as raw:
        (data,) = raw.execute("SELECT leaf_data FROM entries WHERE idx = 7").fetchone()
        record = parse_leaf(data)
        forged = record.entry.model_copy(update={"time": T0})
        new = leaf_bytes(7, record.logged_at, forged)
        raw.execute(
            "UPDATE entries SET leaf_data = ?, leaf_hash = ?, event_time = ? WHERE idx = 7",
            (new, leaf_hash(new), entry_columns(forged)["event_time"]),
        )
    with pytest.raises(TamperError, match="checkpoint of size 8") as info:
        _verify_raw(path, signer)
    assert info.value.index == 7
    with pytest.raises(TamperError) as info:
        AuditLog.open(str(path), signer)
    assert info.value.index == 7


def test_deleted_row_is_pinpointed(tampered_db: Callable[..., Path], signer: NoteSigner) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        raw.execute("DELETE FROM entries WHERE idx = 5")
    with pytest.raises(TamperError, match="entry 5 is missing") as info:
        _verify_raw(path, signer)
    assert info.value.index == 5
    with pytest.raises(TamperError, match="entry 5 is missing"):
        AuditLog.open(str(path), signer)


def test_reordered_rows_are_pinpointed(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        rows = dict(
            (i, (d, h))
            for i, d, h in raw.execute(
                "SELECT idx, leaf_data, leaf_hash FROM entries WHERE idx IN (3, 8)"
            )
        )
        for a, b in ((3, 8), (8, 3)):
            raw.execute(
                "UPDATE entries SET leaf_data = ?, leaf_hash = ? WHERE idx = ?", (*rows[b], a)
            )
    with pytest.raises(TamperError, match="entry 3: the leaf records index 8") as info:
        _verify_raw(path, signer)
    assert info.value.index == 3


def test_truncated_log_is_pinpointed(tampered_db: Callable[..., Path], signer: NoteSigner) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        raw.execute("DELETE FROM entries WHERE idx >= 15")
    with pytest.raises(TamperError, match="first missing index 15") as info:
        _verify_raw(path, signer)
    assert info.value.index == 15
    with pytest.raises(TamperError, match="first missing index 15"):
        AuditLog.open(str(path), signer)


def test_truncation_hiding_its_checkpoint_is_caught_by_a_seen_checkpoint(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        (seen,) = raw.execute("SELECT note FROM checkpoints WHERE size = 20").fetchone()
        raw.execute("DELETE FROM entries WHERE idx >= 15")
        raw.execute("DELETE FROM checkpoints WHERE size = 20")
    _verify_raw(path, signer)  # the database alone looks fine ...
    with pytest.raises(TamperError, match="first missing index 15"):
        _verify_raw(path, signer, expected=(seen,))  # ... but not to an IG officer who saw 20


def test_replaced_checkpoint_is_detected(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db()
    impostor = NoteSigner.from_seed(ORIGIN, bytes(32))
    tree = MerkleTree([leaf_hash(b"forged")] * 10)
    from audit_log._checkpoint import Checkpoint

    forged = sign_checkpoint(Checkpoint(ORIGIN, 10, tree.root()), impostor)
    with _raw(path) as raw:
        raw.execute("UPDATE checkpoints SET note = ? WHERE size = 10", (forged,))
    with pytest.raises(TamperError, match="checkpoint of size 10 does not verify") as info:
        _verify_raw(path, signer)
    assert info.value.size == 10


def test_checkpoint_moved_to_another_size_is_detected(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        (note,) = raw.execute("SELECT note FROM checkpoints WHERE size = 10").fetchone()
        raw.execute("UPDATE checkpoints SET note = ? WHERE size = 20", (note,))
    with pytest.raises(TamperError, match="checkpoint replaced"):
        _verify_raw(path, signer)


def test_missing_checkpoints_are_not_verified(tmp_path: Path, signer: NoteSigner) -> None:
    from audit_log import _store

    engine = _store.open_engine(str(tmp_path / "bare.db"))
    with pytest.raises(TamperError, match="no signed checkpoint"):
        verify_database(engine, signer.verifier())
    engine.dispose()


# -- start-up re-hashes every entry (issue 14, item 3) -------------------------


def _granted_decision_index(path: Path) -> int:
    with sqlite3.connect(path) as raw:
        (index,) = raw.execute(
            "SELECT min(idx) FROM entries WHERE type = 'decision' AND decision = 'granted'"
        ).fetchone()
    assert index is not None
    return int(index)


def test_start_refuses_entry_bytes_rewritten_with_the_stored_hash_kept(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db()
    index = _granted_decision_index(path)
    with _raw(path) as raw:
        (data,) = raw.execute("SELECT leaf_data FROM entries WHERE idx = ?", (index,)).fetchone()
        forged = data.replace(b'"decision":"granted"', b'"decision":"refused"')
        assert forged != data
        raw.execute(
            "UPDATE entries SET leaf_data = ?, decision = 'refused' WHERE idx = ?", (forged, index)
        )
    with pytest.raises(TamperError, match=f"entry {index}: leaf data does not match") as info:
        AuditLog.open(str(path), signer)
    assert info.value.index == index
    assert "refusing to start" in str(info.value)


def test_start_refuses_a_rewritten_decision_column(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db()
    index = _granted_decision_index(path)
    with _raw(path) as raw:
        raw.execute("UPDATE entries SET decision = 'refused' WHERE idx = ?", (index,))
    with pytest.raises(
        TamperError,
        match=f"entry {index}: column decision is 'refused' but the signed leaf says 'granted'",
    ) as info:
        AuditLog.open(str(path), signer)
    assert info.value.index == index


@pytest.mark.parametrize(
    ("column", "value"),
    [("type", "review"), ("event_time", 0), ("professional_id", None), ("request_id", "req_0")],
)
def test_start_refuses_any_rewritten_column(
    tampered_db: Callable[..., Path], signer: NoteSigner, column: str, value: object
) -> None:
    path = tampered_db()
    with _raw(path) as raw:
        raw.execute(f"UPDATE entries SET {column} = ? WHERE idx = 13", (value,))
    with pytest.raises(TamperError, match=f"entry 13: column {column}") as info:
        AuditLog.open(str(path), signer)
    assert info.value.index == 13


def test_start_names_the_checkpoint_range_of_a_consistent_rewrite(
    tampered_db: Callable[..., Path], signer: NoteSigner
) -> None:
    path = tampered_db()  # checkpoints at 10 and 20
    with _raw(path) as raw:
        (data,) = raw.execute("SELECT leaf_data FROM entries WHERE idx = 12").fetchone()
        record = parse_leaf(data)
        forged = record.entry.model_copy(update={"time": T0})
        new = leaf_bytes(12, record.logged_at, forged)
        raw.execute(
            "UPDATE entries SET leaf_data = ?, leaf_hash = ?, event_time = ? WHERE idx = 12",
            (new, leaf_hash(new), entry_columns(forged)["event_time"]),
        )
    with pytest.raises(
        TamperError,
        match=r"entries 10\.\.19 do not match the signed checkpoint "
        "of size 20",
    ) as info:
        AuditLog.open(str(path), signer)
    assert (info.value.index, info.value.size) == (10, 20)


def test_start_parses_unsigned_entries_in_full(tmp_path: Path, signer: NoteSigner) -> None:
    # Past the latest checkpoint no signature vouches for the bytes, so a
    # consistently rewritten row there must at least be a valid canonical leaf.
    path = tmp_path / "tail.db"
    with AuditLog.open(str(path), signer) as log:
        log.append_many(mixed_entries(5))
        log.checkpoint()
        log.append_many(mixed_entries(4, seed=9))
    with _raw(path) as raw:
        (data,) = raw.execute("SELECT leaf_data FROM entries WHERE idx = 7").fetchone()
        spaced = data.replace(b'{"entry":{', b'{"entry": {')
        raw.execute(
            "UPDATE entries SET leaf_data = ?, leaf_hash = ? WHERE idx = 7",
            (spaced, leaf_hash(spaced)),
        )
    with pytest.raises(TamperError, match="entry 7: leaf data is not in canonical form") as info:
        AuditLog.open(str(path), signer)
    assert info.value.index == 7


def test_start_rebuilds_the_same_tree_on_both_backends(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog]
) -> None:
    from audit_log import _store
    from audit_log._leafscan import scan

    url = db_url_factory()
    log = open_log(url)
    log.append_many(mixed_entries(300, seed=5))
    log.checkpoint()
    log.append_many(mixed_entries(30, seed=6))  # an unsigned tail
    root = log._tree.root()
    log.close()
    again = open_log(url)
    assert again.size == 330 and again._tree.root() == root
    # The driver's types take the compiled path on this backend (no row left
    # to the slow Python check).
    with _store.snapshot(again.engine) as connection:
        for rows in _store.scan_rows(connection, batch=64):
            assert scan(rows, 0, rows[0][0], bytearray()) == len(rows)


def test_a_row_changed_while_running_is_not_served(tmp_path: Path, signer: NoteSigner) -> None:
    path = tmp_path / "live.db"
    with AuditLog.open(str(path), signer) as log:
        done = log.append_many(mixed_entries(12))
        assert [*log.verified_leaves()] == [a.leaf for a in done]
        assert [*log.verified_leaves(3, 5)] == [done[3].leaf, done[4].leaf]
        with _raw(path) as raw:
            raw.execute(
                "UPDATE entries SET leaf_data = ? WHERE idx = 4",
                (done[4].leaf.replace(b'"v":1', b'"v":2'),),
            )
        with pytest.raises(TamperError, match="entry 4: stored leaf data no longer hashes"):
            log.leaf(4)
        with pytest.raises(TamperError, match="entry 4") as info:
            list(log.verified_leaves())
        assert info.value.index == 4
        assert log.leaf(3) == done[3].leaf
        with _raw(path) as raw:
            raw.execute("DELETE FROM entries WHERE idx = 8")
        with pytest.raises(TamperError, match="entry 8 is missing"):
            list(log.verified_leaves(5))


# -- verify-db beside live appends (issue 14, item 6) --------------------------


def test_verify_db_beside_concurrent_appends(
    db_url_factory: Callable[[], str],
    open_log: Callable[..., AuditLog],
    signer: NoteSigner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from audit_log._cli import main

    url = db_url_factory()
    vkey = tmp_path / "log.vkey"
    vkey.write_text(signer.vkey + "\n")
    log = open_log(url, batch_size=8)
    log.append_many(mixed_entries(50))
    log.checkpoint()
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        # Appends and signs as fast as it can: each checkpoint lands right
        # after the entries it covers, the race a split read loses.
        n = 0
        try:
            while not stop.is_set():
                log.append_many(mixed_entries(3, seed=n))
                log.checkpoint()
                n += 1
        except BaseException as exc:  # surfaced in the main thread
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    sizes = []
    try:
        for _ in range(25):
            out = io.StringIO()
            status = main(["verify-db", "--db", url, "--vkey", str(vkey)], stdout=out)
            assert status == 0, capsys.readouterr().err
            sizes.append(int(out.getvalue().split("verified: ", 1)[1].split(" ", 1)[0]))
    finally:
        stop.set()
        thread.join()
    assert not failures
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # the log really grew meanwhile


def test_verify_database_reads_entries_and_checkpoints_of_one_moment(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog], signer: NoteSigner
) -> None:
    # Deterministic form of the race: the log grows and signs a larger
    # checkpoint after verify has read the entries but before it reads the
    # checkpoints. Read apart, that looks like a truncated log.
    url = db_url_factory()
    log = open_log(url)
    log.append_many(mixed_entries(20))
    log.checkpoint()
    grown: list[int] = []

    def grow(done: int) -> None:
        if not grown:
            log.append_many(mixed_entries(5, seed=2))
            log.checkpoint()
            grown.append(log.size)

    result = verify_database(log.engine, signer.verifier(), progress=grow)
    assert grown == [25]
    assert (result.size, result.latest_checkpoint_size) == (20, 20)
    assert verify_database(log.engine, signer.verifier()).size == 25


# -- another writer on the same database (an administrative CLI) --------------


def _rows(log: AuditLog) -> list[tuple[int, bytes]]:
    from audit_log import _store

    return [(i, data) for batch in _store.leaf_batches(log.engine, 0, 10**9) for i, data in batch]


def _foreign_row(index: int, entry_n: int, **change: object) -> dict[str, object]:
    """The row another writer would store at ``index``, with ``change`` applied after."""
    from audit_log import _store

    data = leaf_bytes(index, T0, make_entry("decision", entry_n))
    row: dict[str, object] = entry_columns(make_entry("decision", entry_n))
    row.update(idx=index, leaf_data=data, leaf_hash=leaf_hash(data), created_at=_store.now_micros())
    row.update(change)
    return row


def test_an_append_after_another_writers_is_retried_after_them(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog], signer: NoteSigner
) -> None:
    url = db_url_factory()
    log = open_log(url)
    first = log.append_many(mixed_entries(3))
    log.checkpoint()
    # What `unlock-service keys rotate` or `optout add` does behind the service.
    with AuditLog.open(url, signer) as cli:
        theirs = cli.append_many(mixed_entries(2, seed=7))
    assert [a.index for a in theirs] == [3, 4]
    mine = log.append(make_entry("decision", 40))
    assert mine.index == 5
    assert _rows(log) == [(a.index, a.leaf) for a in [*first, *theirs, mine]]
    cp, _ = open_checkpoint(log.checkpoint(), log.verifier)
    assert cp.size == 6
    verify_tlog_proof(log.receipt(4), theirs[1].leaf, log.verifier)
    assert verify_database(log.engine, signer.verifier()).size == 6
    log.close()
    assert open_log(url)._tree.root() == cp.root_hash


def test_a_checkpoint_another_writer_signed_is_verified_and_extended(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog], signer: NoteSigner
) -> None:
    url = db_url_factory()
    log = open_log(url)
    log.append_many(mixed_entries(4))
    log.checkpoint()
    with AuditLog.open(url, signer) as cli:
        cli.append_many(mixed_entries(3, seed=8))
        theirs, _ = open_checkpoint(cli.checkpoint(), cli.verifier)
    assert theirs.size == 7
    # No append of its own: signing finds the larger checkpoint, has the
    # writer thread adopt the rows under it, and signs nothing new.
    ours, _ = open_checkpoint(log.checkpoint(), log.verifier)
    assert (ours.size, ours.root_hash) == (7, theirs.root_hash) and log.size == 7
    log.append(make_entry("decision", 41))
    latest, _ = open_checkpoint(log.checkpoint(), log.verifier)
    assert latest.size == 8
    verify_consistency(7, 8, log.consistency_proof(7, 8), theirs.root_hash, latest.root_hash)
    assert verify_database(log.engine, signer.verifier()).checkpoints == 4  # 0, 4, 7, 8


@pytest.mark.parametrize(
    ("corruption", "change", "message"),
    [
        ("leaf_hash_changed", {"leaf_hash": b"\x00" * 32}, "does not match its stored leaf hash"),
        ("column_changed", {"family_id": "fam_0000000000000000"}, "column family_id"),
        ("index_renumbered", {"leaf_data": leaf_bytes(9, T0, make_entry("decision", 5))}, None),
        ("not_a_leaf", {"leaf_data": b"garbled"}, None),
    ],
)
def test_a_foreign_row_that_does_not_verify_stops_the_append(
    db_url_factory: Callable[[], str],
    open_log: Callable[..., AuditLog],
    signer: NoteSigner,
    corruption: str,
    change: dict[str, object],
    message: str | None,
) -> None:
    from audit_log import _store

    log = open_log(db_url_factory())
    log.append_many(mixed_entries(3))
    row = _foreign_row(3, 5, **change)
    if "leaf_data" in change and "leaf_hash" not in change:
        row["leaf_hash"] = leaf_hash(change["leaf_data"])  # type: ignore[arg-type]
    _store.insert_entries(log.engine, [row])
    for _ in range(2):  # and it keeps refusing: nothing is appended after the bad row
        with pytest.raises(TamperError, match=message or "entry 3") as info:
            log.append(make_entry("decision", 42))
        assert info.value.index == 3
        assert "another writer appended behind this process" in str(info.value)
    assert log.size == 3
    assert [i for i, _ in _rows(log)] == [0, 1, 2, 3]


def test_a_foreign_checkpoint_of_another_history_stops_the_log(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog], signer: NoteSigner
) -> None:
    from audit_log import _store

    log = open_log(db_url_factory())
    log.append_many(mixed_entries(3))
    log.checkpoint()
    _store.insert_entries(log.engine, [_foreign_row(3, 5)])
    # Signed with the log's own key, but over a tree that is not the stored one.
    forged = sign_checkpoint(Checkpoint(ORIGIN, 4, leaf_hash(b"another history")), signer)
    _store.insert_checkpoint(log.engine, 4, forged)
    with pytest.raises(TamperError, match="checkpoint of size 4 .* does not match"):
        log.append(make_entry("decision", 43))
    with pytest.raises(TamperError, match="checkpoint of size 4"):
        log.append(make_entry("decision", 44))
    with pytest.raises(TamperError, match="checkpoint of size 4"):
        log.checkpoint()
    assert [i for i, _ in _rows(log)] == [0, 1, 2, 3]


def test_a_commit_that_errs_after_it_is_durable_is_acknowledged_once(
    db_url_factory: Callable[[], str],
    open_log: Callable[..., AuditLog],
    signer: NoteSigner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audit_log import _log, _store
    from audit_log._storage_errors import StorageError

    log = open_log(db_url_factory())
    log.append_many(mixed_entries(2))
    real = _store.insert_entries
    lost: list[int] = []

    def commit_then_lose_the_answer(engine: object, rows: list[dict[str, object]]) -> None:
        real(engine, rows)  # type: ignore[arg-type]
        if not lost:
            lost.append(int(rows[0]["idx"]))  # type: ignore[call-overload]
            raise StorageError("connection lost after COMMIT")

    monkeypatch.setattr(_log.store, "insert_entries", commit_then_lose_the_answer)
    done = log.append_many(mixed_entries(3, seed=4))
    assert lost == [2] and [a.index for a in done] == [2, 3, 4]
    assert _rows(log) == [(i, d) for i, d in _rows(log)] and len(_rows(log)) == 5
    assert [d for i, d in _rows(log)][2:] == [a.leaf for a in done]
    log.checkpoint()
    assert verify_database(log.engine, signer.verifier()).size == 5


def test_two_writers_appending_at_once_get_one_winner_per_index(
    db_url_factory: Callable[[], str], open_log: Callable[..., AuditLog], signer: NoteSigner
) -> None:
    from audit_log._errors import AuditLogError

    url = db_url_factory()
    logs = [open_log(url), open_log(url)]
    acknowledged: list[tuple[int, bytes]] = []
    refused: list[AuditLogError] = []
    lock = threading.Lock()

    def worker(log: AuditLog, k: int) -> None:
        for n in range(15):
            try:
                done = log.append(make_entry("decision", k * 100 + n))
            except AuditLogError as exc:  # lost the index twice in a row
                with lock:
                    refused.append(exc)
                continue
            with lock:
                acknowledged.append((done.index, done.leaf))

    threads = [threading.Thread(target=worker, args=(logs[k % 2], k)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("cannot append entries" in str(exc) for exc in refused)
    # Every stored row was acknowledged to exactly one caller, with its bytes.
    assert sorted(acknowledged) == _rows(logs[0])
    assert len(acknowledged) == 90 - len(refused)
    for log in logs:
        log.checkpoint()
    assert verify_database(logs[0].engine, signer.verifier()).size == len(acknowledged)
