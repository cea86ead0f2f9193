"""IG review: entry queries, exports and anomaly reports over the stored log.

Plain functions shared by the HTTP review API and the ``audit-log`` CLI. They
only read: nothing here can append, change or delete an entry. Anomalies are
prompts for a human reviewer, not verdicts: too many unlocks by one
professional in a period, unlocks outside working hours, every break-glass
use (always worth a look, whatever the counts), and break-glass unlocks that
nobody reviewed within the allowed number of days.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from . import _store as store
from ._entries import LeafRecord, entry_columns, micros, parse_leaf
from ._storage_errors import ConfigError, StorageError

__all__ = [
    "Anomaly",
    "AnomalyConfig",
    "CSV_COLUMNS",
    "entry_record",
    "filter_mismatch",
    "find_anomalies",
    "format_csv",
    "format_jsonl",
    "granted_decisions",
    "request_entries",
]

# Every field any entry type has, in a stable order, so one CSV holds them all.
CSV_COLUMNS = (
    "index",
    "logged_at",
    "type",
    "time",
    "request_id",
    "professional_id",
    "approver_id",
    "reviewer_id",
    "actor_id",
    "family_id",
    "purpose_code",
    "decision",
    "reason_code",
    "break_glass",
    "outcome",
    "policy_sha256",
    "policy_version",
    "attestation_sha256",
    "justification_sha256",
    "notes_sha256",
    "key_name",
    "old_key_sha256",
    "new_key_sha256",
    "config_sha256",
    "config_version",
    "version",
)


def entry_record(leaf: bytes) -> dict[str, Any]:
    """The JSON form of one stored leaf: index, logged_at and the entry fields."""
    record = parse_leaf(leaf)
    return {
        "index": record.index,
        "logged_at": json.loads(leaf)["logged_at"],
        "entry": record.entry.model_dump(mode="json"),
    }


def filter_mismatch(record: LeafRecord, where: store.EntryFilter) -> str | None:
    """The first filter ``record`` fails (as ``field=value``), or None if it matches.

    A client uses this to check a server answered the question it was asked:
    a genuine entry that does not match the filter is still a wrong answer.
    """
    columns = entry_columns(record.entry)
    for name in ("type", "professional_id", "family_id", "purpose_code", "decision", "request_id"):
        wanted = getattr(where, name)
        if wanted is not None and columns[name] != wanted:
            return f"{name}={columns[name]!r}, asked for {wanted!r}"
    when = columns["event_time"]
    if where.since is not None and when < micros(where.since):
        return f"time {record.entry.time.isoformat()} is before {where.since.isoformat()}"
    if where.until is not None and when >= micros(where.until):
        return f"time {record.entry.time.isoformat()} is not before {where.until.isoformat()}"
    if record.index < where.start_index or (
        where.end_index is not None and record.index >= where.end_index
    ):
        return f"index {record.index} is outside [{where.start_index}, {where.end_index})"
    return None


def format_jsonl(leaves: Iterable[bytes]) -> Iterator[str]:
    """One line per leaf: the canonical leaf JSON itself (hashable to its leaf hash)."""
    for leaf in leaves:
        parse_leaf(leaf)  # refuse to export something that is not a valid leaf
        yield leaf.decode("utf-8") + "\n"


def format_csv(leaves: Iterable[bytes]) -> Iterator[str]:
    """CSV text, header first, with one column per entry field (empty when absent)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for leaf in leaves:
        record = entry_record(leaf)
        writer.writerow(
            {"index": record["index"], "logged_at": record["logged_at"], **record["entry"]}
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


@dataclass(frozen=True)
class AnomalyConfig:
    """Thresholds for anomaly reports; the defaults are a starting point for local policy."""

    max_unlocks_per_period: int = 20
    period: Literal["day", "week"] = "day"
    working_start: time = time(8, 0)
    working_end: time = time(18, 0)
    working_days: frozenset[int] = field(default_factory=lambda: frozenset(range(5)))
    timezone: str = "Europe/London"
    break_glass_review_days: int = 7

    def zone(self) -> ZoneInfo:
        """The configured local time zone; ConfigError if unknown."""
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown time zone {self.timezone!r} in anomaly config") from exc


@dataclass(frozen=True)
class Anomaly:
    """One finding for a reviewer: what kind, which entries, whom, and why."""

    kind: Literal[
        "unlocks_over_limit",
        "outside_working_hours",
        "break_glass_used",
        "break_glass_unreviewed",
    ]
    professional_id: str | None
    indices: tuple[int, ...]
    detail: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["indices"] = list(self.indices)
        return data


def _period_start(when: datetime, period: str) -> str:
    if period == "week":
        start = when.date() - timedelta(days=when.weekday())
        return f"week of {start.isoformat()}"
    return when.date().isoformat()


def find_anomalies(
    engine: Engine,
    config: AnomalyConfig,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> list[Anomaly]:
    """Anomalies among entries with event time in [since, until)."""
    zone = config.zone()
    now = now or datetime.now(UTC)
    e = store.entries.c
    where = [e.event_time >= micros(since)] if since else []
    if until:
        where.append(e.event_time < micros(until))
    granted = sa.select(e.idx, e.professional_id, e.event_time).where(
        e.type == "decision", e.decision == "granted", *where
    )
    glass = sa.select(e.idx, e.professional_id, e.event_time, e.request_id).where(
        e.type == "break_glass", *where
    )
    try:
        with engine.connect() as connection:
            unlocks = connection.execute(granted.order_by(e.idx)).all()
            breaks = connection.execute(glass.order_by(e.idx)).all()
            request_ids = [row.request_id for row in breaks]
            reviewed = {
                rid
                for (rid,) in connection.execute(
                    sa.select(e.request_id).where(e.type == "review", e.request_id.in_(request_ids))
                )
            }
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read entries for anomaly report: {exc}") from exc

    found: list[Anomaly] = []
    per_period: Counter[tuple[str, str]] = Counter()
    members: dict[tuple[str, str], list[int]] = {}
    for idx, professional, event_time in unlocks:
        local = _from_micros(event_time).astimezone(zone)
        key = (str(professional), _period_start(local, config.period))
        per_period[key] += 1
        members.setdefault(key, []).append(int(idx))
        if (
            local.weekday() not in config.working_days
            or not config.working_start <= local.time() < config.working_end
        ):
            found.append(
                Anomaly(
                    "outside_working_hours",
                    str(professional),
                    (int(idx),),
                    f"unlock granted at {local.isoformat(timespec='minutes')} local time",
                )
            )
    for key, count in per_period.items():
        if count > config.max_unlocks_per_period:
            found.append(
                Anomaly(
                    "unlocks_over_limit",
                    key[0],
                    tuple(members[key]),
                    f"{count} unlocks granted in {config.period} {key[1]} "
                    f"(limit {config.max_unlocks_per_period})",
                )
            )
    overdue = now - timedelta(days=config.break_glass_review_days)
    for idx, professional, event_time, request_id in breaks:
        when = _from_micros(event_time)
        # Flagged whatever the counts: the rate-limit-sized unlock threshold
        # above never sees a burst of break-glass that stays under it.
        found.append(
            Anomaly(
                "break_glass_used",
                str(professional),
                (int(idx),),
                f"break-glass {request_id} at {when.isoformat(timespec='minutes')}",
            )
        )
        if request_id not in reviewed and when < overdue:
            found.append(
                Anomaly(
                    "break_glass_unreviewed",
                    str(professional),
                    (int(idx),),
                    f"break-glass {request_id} at {when.isoformat(timespec='minutes')} has no "
                    f"review after {config.break_glass_review_days} days",
                )
            )
    found.sort(key=lambda a: (a.indices[0], a.kind))
    return found


def request_entries(engine: Engine, request_id: str) -> list[LeafRecord]:
    """Every entry about ``request_id``, parsed from the stored leaf bytes, in index order."""
    found = store.query_entries(engine, store.EntryFilter(request_id=request_id, limit=None))
    records = [parse_leaf(e.leaf_data) for e in found]
    return [r for r in records if getattr(r.entry, "request_id", None) == request_id]


def granted_decisions(engine: Engine, start: int, end: int) -> list[LeafRecord]:
    """Granted ``decision`` entries with index in [start, end), parsed from the leaf bytes."""
    where = store.EntryFilter(
        type="decision", decision="granted", start_index=start, end_index=end, limit=None
    )
    records = [parse_leaf(e.leaf_data) for e in store.query_entries(engine, where)]
    return [
        r
        for r in records
        if r.entry.type == "decision" and r.entry.decision == "granted"  # the bytes, not columns
    ]


def _from_micros(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))
