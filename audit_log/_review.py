"""IG review: entry queries, exports and anomaly reports over the stored log.

Plain functions shared by the HTTP review API and the ``audit-log`` CLI. They
only read: nothing here can append, change or delete an entry. Anomalies are
prompts for a human reviewer, not verdicts: too many unlocks by one
professional in a period, unlocks outside working hours, every break-glass
unlock (always, however few), and break-glass uses that nobody reviewed within
the allowed number of days.

The anomaly report decides from the entries themselves: it is given leaf
bytes already checked against the verified tree (``AuditLog.verified_leaves``)
and reads what they say, never the database's indexed columns (``type``,
``decision``, ``event_time`` ...), which no signature covers and which anyone
with write access to the database could change.
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

from pydantic_core import from_json
from sqlalchemy.engine import Engine

from . import _store as store
from ._entries import LeafRecord, entry_columns, micros, parse_leaf
from ._storage_errors import ConfigError, EntryError

__all__ = [
    "Anomaly",
    "AnomalyConfig",
    "CSV_COLUMNS",
    "DailyUnlocks",
    "anomaly_report",
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
        "break_glass_unlock",
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


@dataclass(frozen=True)
class _Fields:
    """The fields of one entry the anomaly rules read."""

    index: int
    type: str
    time: datetime
    professional_id: str
    request_id: str
    family_id: str | None
    decision: str | None
    break_glass: bool


def _fields(leaf: bytes) -> _Fields:
    # The bytes hash to the verified tree, so they are a leaf the log itself
    # wrote from a validated entry: reading its JSON is enough (a full model
    # validation per entry would make a report over a million entries slow).
    try:
        record = from_json(leaf)
        entry = record["entry"]
        return _Fields(
            index=int(record["index"]),
            type=str(entry["type"]),
            time=datetime.fromisoformat(entry["time"]),
            professional_id=str(entry.get("professional_id") or entry.get("actor_id")),
            request_id=str(entry.get("request_id")),
            family_id=entry.get("family_id"),
            decision=entry.get("decision"),
            break_glass=entry.get("break_glass") is True,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EntryError(f"cannot read a verified leaf for the anomaly report: {exc}") from exc


@dataclass(frozen=True)
class DailyUnlocks:
    """How many unlocks one professional was granted on one local day."""

    day: str  # ISO date in the report's time zone
    professional_id: str
    unlocks: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def find_anomalies(
    leaves: Iterable[bytes],
    config: AnomalyConfig,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> list[Anomaly]:
    """Anomalies among entries with event time in [since, until).

    ``leaves`` are verified leaf bytes in index order (``AuditLog.verified_leaves``);
    a break-glass use counts as reviewed by a review entry anywhere in them.
    """
    return anomaly_report(leaves, config, since, until, now)[0]


def anomaly_report(
    leaves: Iterable[bytes],
    config: AnomalyConfig,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> tuple[list[Anomaly], list[DailyUnlocks]]:
    """``find_anomalies`` and, from the same single pass over ``leaves``, the granted
    unlocks per local day and professional (by day, then professional)."""
    zone = config.zone()
    now = now or datetime.now(UTC)
    unlocks: list[_Fields] = []
    breaks: list[_Fields] = []
    glass_index: dict[str, int] = {}
    reviewed: set[str] = set()
    for leaf in leaves:
        entry = _fields(leaf)
        if entry.type == "review":
            reviewed.add(entry.request_id)
            continue
        if entry.type not in ("decision", "break_glass"):
            continue
        if (since is not None and entry.time < since) or (
            until is not None and entry.time >= until
        ):
            continue
        if entry.type == "break_glass":
            breaks.append(entry)
            glass_index[entry.request_id] = entry.index
        elif entry.decision == "granted":
            unlocks.append(entry)

    found: list[Anomaly] = []
    per_day: Counter[tuple[str, str]] = Counter()
    per_period: Counter[tuple[str, str]] = Counter()
    members: dict[tuple[str, str], list[int]] = {}
    for unlock in unlocks:
        local = unlock.time.astimezone(zone)
        key = (unlock.professional_id, _period_start(local, config.period))
        per_period[key] += 1
        per_day[(local.date().isoformat(), unlock.professional_id)] += 1
        members.setdefault(key, []).append(unlock.index)
        if (
            local.weekday() not in config.working_days
            or not config.working_start <= local.time() < config.working_end
        ):
            found.append(
                Anomaly(
                    "outside_working_hours",
                    unlock.professional_id,
                    (unlock.index,),
                    f"unlock granted at {local.isoformat(timespec='minutes')} local time",
                )
            )
        if unlock.break_glass:
            # Always flagged, whatever the counts: break-glass skips approval.
            used_at = glass_index.get(unlock.request_id)
            found.append(
                Anomaly(
                    "break_glass_unlock",
                    unlock.professional_id,
                    (unlock.index,) if used_at is None else (used_at, unlock.index),
                    f"break-glass unlock {unlock.request_id} of {unlock.family_id} granted at "
                    f"{local.isoformat(timespec='minutes')} local time",
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
    for use in breaks:
        if use.request_id not in reviewed and use.time < overdue:
            found.append(
                Anomaly(
                    "break_glass_unreviewed",
                    use.professional_id,
                    (use.index,),
                    f"break-glass {use.request_id} at {use.time.isoformat(timespec='minutes')} "
                    f"has no review after {config.break_glass_review_days} days",
                )
            )
    found.sort(key=lambda a: (a.indices[0], a.kind))
    daily = [DailyUnlocks(day, pro, count) for (day, pro), count in sorted(per_day.items())]
    return found, daily


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
