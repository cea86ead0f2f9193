"""AuditLog: group commit, checkpoints, receipts, start-up checks and tamper detection."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from audit_log._checkpoint import open_checkpoint, sign_checkpoint, verify_tlog_proof
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
