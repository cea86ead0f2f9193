"""The anomaly report: its rules, and that it reads only verified entry bytes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from audit_log._log import AuditLog
from audit_log._note import NoteSigner
from audit_log._review import AnomalyConfig, find_anomalies
from audit_log._storage_errors import TamperError

from ._factories import T0, hex_id, make_entry

ORIGIN = "audit.example.gov.uk/log"
NOW = T0 + timedelta(days=30)
PRO = hex_id("pro", 7)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    """A log holding: 3 daytime grants by PRO, one late grant, a refusal, and a
    reviewed break-glass unlock (use, decision, review)."""
    signer = NoteSigner.from_seed(ORIGIN, bytes(range(32)))
    with AuditLog.open(str(tmp_path / "review.db"), signer) as opened:
        bg_request = hex_id("req", 90)
        opened.append_many(
            [
                *(
                    make_entry("decision", n, professional_id=PRO, decision="granted")
                    for n in (1, 2, 3)
                ),
                make_entry("decision", 4, decision="granted", time=T0.replace(hour=23)),
                make_entry("decision", 5, decision="refused", reason_code="NO_ATTESTATION"),
                make_entry("break_glass", 90, request_id=bg_request),
                make_entry(
                    "decision", 90, request_id=bg_request, decision="granted", break_glass=True
                ),
                make_entry("review", 91, request_id=bg_request),
            ]
        )
        opened.checkpoint()
        yield opened


def _raw(log: AuditLog) -> sqlite3.Connection:
    path = log.engine.url.database
    assert path is not None
    connection = sqlite3.connect(path)
    connection.execute("DROP TRIGGER IF EXISTS entries_no_update")
    return connection


def _report(log: AuditLog, **config: object) -> list[tuple[str, tuple[int, ...]]]:
    limits = AnomalyConfig(**{"max_unlocks_per_period": 2, **config})  # type: ignore[arg-type]
    found = find_anomalies(log.verified_leaves(), limits, now=NOW)
    return [(a.kind, a.indices) for a in found]


EXPECTED = [
    ("unlocks_over_limit", (0, 1, 2)),
    ("outside_working_hours", (3,)),
    ("break_glass_unlock", (5, 6)),
]


def test_rules(log: AuditLog) -> None:
    assert _report(log) == EXPECTED


def test_a_break_glass_unlock_is_flagged_even_when_reviewed_and_under_every_limit(
    log: AuditLog,
) -> None:
    found = find_anomalies(
        log.verified_leaves(5, 8), AnomalyConfig(max_unlocks_per_period=100), now=NOW
    )
    assert [(a.kind, a.indices, a.professional_id) for a in found] == [
        ("break_glass_unlock", (5, 6), make_entry("decision", 90).professional_id)  # type: ignore[union-attr]
    ]
    assert "break-glass unlock req_" in found[0].detail


def test_an_unreviewed_break_glass_use_is_flagged_after_the_review_window(
    log: AuditLog,
) -> None:
    without_review = list(log.verified_leaves(0, 7))
    found = find_anomalies(without_review, AnomalyConfig(max_unlocks_per_period=100), now=NOW)
    assert [(a.kind, a.indices) for a in found] == [
        ("outside_working_hours", (3,)),
        ("break_glass_unlock", (5, 6)),
        ("break_glass_unreviewed", (5,)),
    ]
    early = find_anomalies(
        without_review, AnomalyConfig(max_unlocks_per_period=100), now=T0 + timedelta(days=1)
    )
    assert "break_glass_unreviewed" not in [a.kind for a in early]


def test_since_and_until_bound_the_entry_time(log: AuditLog) -> None:
    leaves = list(log.verified_leaves())
    found = find_anomalies(
        leaves, AnomalyConfig(), since=T0.replace(hour=22), until=T0 + timedelta(days=1), now=NOW
    )
    assert [(a.kind, a.indices) for a in found] == [("outside_working_hours", (3,))]


def test_rewritten_columns_do_not_change_the_report(log: AuditLog) -> None:
    # The columns are a convenience for queries; no signature covers them.
    with _raw(log) as raw:
        raw.execute("UPDATE entries SET decision = 'refused', event_time = 0")
        raw.execute("UPDATE entries SET type = 'review' WHERE type = 'break_glass'")
    assert _report(log) == EXPECTED


def test_rewritten_entry_bytes_stop_the_report_naming_the_entry(log: AuditLog) -> None:
    # A grant rewritten as a refusal (its stored hash kept) must not silently
    # drop out of the report: the report refuses and names the entry.
    leaf = log.leaf(1)
    with _raw(log) as raw:
        raw.execute(
            "UPDATE entries SET leaf_data = ? WHERE idx = 1",
            (leaf.replace(b'"decision":"granted"', b'"decision":"refused"'),),
        )
    with pytest.raises(TamperError, match="entry 1: stored leaf data no longer hashes") as info:
        _report(log)
    assert info.value.index == 1
