"""Jinja filters: dates and numbers the way GOV.UK pages write them."""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["FILTERS", "when"]


def when(value: Any) -> str:
    """``3 December 2026, 3:52pm`` (UTC) from an ISO 8601 string, a date or epoch
    seconds / microseconds; ``–`` for nothing."""
    if value in (None, ""):
        return "–"
    moment: dt.datetime | dt.date
    if isinstance(value, (int, float)):
        seconds = value / 1_000_000 if value > 10**11 else value
        moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    elif isinstance(value, dt.datetime | dt.date):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
        if len(str(value)) == 10:
            moment = moment.date()
    if isinstance(moment, dt.datetime):
        hour = moment.strftime("%I").lstrip("0") or "12"
        return f"{moment.day} {moment:%B %Y}, {hour}:{moment:%M}{moment:%p}".replace(
            "AM", "am"
        ).replace("PM", "pm")
    return f"{moment.day} {moment:%B %Y}"


def number(value: Any) -> str:
    """Thousands separated by commas; ``–`` for nothing."""
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def label(value: Any) -> str:
    """``pending_claim`` -> ``Pending claim``."""
    text = str(value or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "–"


FILTERS = {"when": when, "number": number, "label": label}
