"""Information governance pages: the audit log browser, checkpoint status,
receipt verification, the anomaly report, break-glass reviews and subject access.

Reads go to the audit log with the officer's own audit-log token; every
checkpoint and receipt is verified here with the pinned keys (``.._audit``)
before a page says it is good. Break-glass reviews and subject access are
unlock-service calls the officer's browser signs with their own key
(``/static/unlock.js`` through the relay): these pages are only the shell.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import HTMLResponse

from audit_log import AuditLogError

from .._app import CsrfChecked, render
from .._audit import (
    TYPE_NAMES,
    CheckpointStatus,
    ReceiptProblem,
    check_checkpoint,
    check_receipt,
    proof_hashes,
    read_vkeys,
    verified_entries,
)
from .._charts import bar_chart
from .._errors import BackendError, ConfigError
from .._sessions import Session
from ._common import IgSession, backend

__all__ = ["router"]

router = APIRouter()
PAGE = 50
# A receipt is a few kilobytes (a checkpoint, its signatures and up to 63 hashes)
# and an entry well under one: anything this big is not one.
MAX_UPLOAD = 64 * 1024
PROFESSIONAL = re.compile(r"^pro_[0-9a-f]{4,64}$")
FAMILY = re.compile(r"^fam_[0-9a-f]{4,64}$")
PURPOSE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
ANOMALY_KINDS = {
    "unlocks_over_limit": "More unlocks than the limit",
    "outside_working_hours": "Unlock outside working hours",
    "break_glass_unlock": "Break-glass unlock",
    "break_glass_unreviewed": "Break-glass use not reviewed in time",
}


def _date(
    prefix: str, label: str, day: str, month: str, year: str, errors: dict[str, str]
) -> dt.date | None:
    """A date from GOV.UK's three boxes; None if all are empty (an error is added
    for a partial or impossible date, linked to the first box)."""
    parts = [day.strip(), month.strip(), year.strip()]
    if not any(parts):
        return None
    if not all(p.isdigit() for p in parts):
        errors[f"{prefix}_day"] = f"{label} must be a real date, like 27 3 2026"
        return None
    try:
        value = dt.date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError:
        errors[f"{prefix}_day"] = f"{label} must be a real date, like 27 3 2026"
        return None
    if value.year < 2000:
        errors[f"{prefix}_day"] = f"{label} must include a 4-digit year, like 2026"
        return None
    return value


def _midnight(day: dt.date) -> str:
    return dt.datetime.combine(day, dt.time(0), dt.UTC).isoformat()


def _date_range(
    values: dict[str, str], errors: dict[str, str]
) -> tuple[dt.date | None, dt.date | None]:
    since = _date(
        "from",
        "The from date",
        values["from_day"],
        values["from_month"],
        values["from_year"],
        errors,
    )
    until = _date(
        "to", "The to date", values["to_day"], values["to_month"], values["to_year"], errors
    )
    if since and until and until < since:
        errors["to_day"] = "The to date must be the same as or after the from date"
    return since, until


DATE_FIELDS = ("from_day", "from_month", "from_year", "to_day", "to_month", "to_year")


@router.get("/audit", response_class=HTMLResponse)
def audit_entries(
    request: Request,
    session: IgSession,
    professional: str = "",
    family: str = "",
    purpose: str = "",
    decision: str = "",
    type: str = "",
    from_day: str = "",
    from_month: str = "",
    from_year: str = "",
    to_day: str = "",
    to_month: str = "",
    to_year: str = "",
    start: int = 0,
    trail: str = "",
) -> HTMLResponse:
    """Audit log entries, filtered, oldest first, one page at a time."""
    form = {
        "professional": professional.strip().lower(),
        "family": family.strip().lower(),
        "purpose": purpose.strip().upper().replace(" ", "_"),
        "decision": decision if decision in ("granted", "refused") else "",
        "type": type if type in TYPE_NAMES else "",
        "from_day": from_day,
        "from_month": from_month,
        "from_year": from_year,
        "to_day": to_day,
        "to_month": to_month,
        "to_year": to_year,
    }
    errors: dict[str, str] = {}
    if form["professional"] and not PROFESSIONAL.match(form["professional"]):
        errors["professional"] = (
            "Enter a professional id as the log writes it, like pro_3e60fbdb62d0d763"
        )
    if form["family"] and not FAMILY.match(form["family"]):
        errors["family"] = "Enter a family id as the log writes it, like fam_9a1c02d4e5f60718"
    if form["purpose"] and not PURPOSE.match(form["purpose"]):
        errors["purpose"] = "Enter a purpose code in letters, like SAFEGUARDING"
    since, until = _date_range(form, errors)
    entries: list[Any] = []
    next_start = None
    problem = None
    status: CheckpointStatus | None = None
    if not errors:
        status, problem = _verified_checkpoint(request, session)
        if status is not None and not status.verified:
            problem = f"The log's latest checkpoint did not verify. {status.problem}"
    if status is not None and status.verified and status.checkpoint is not None:
        lower = dt.datetime.combine(since, dt.time(0), dt.UTC) if since else None
        upper = (
            dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0), dt.UTC) if until else None
        )
        filters = {
            "professional_id": form["professional"],
            "family_id": form["family"],
            "purpose_code": form["purpose"],
            "decision": form["decision"],
            "type": form["type"],
        }
        answer = backend(request, "audit").get_json(
            "/entries",
            session.user.credential,
            **filters,
            since=lower.isoformat() if lower else None,
            until=upper.isoformat() if upper else None,
            start=max(0, start),
            limit=PAGE,
            proof_size=status.checkpoint.size,
        )
        try:
            entries = verified_entries(
                answer.get("entries", []), status.checkpoint, filters, lower, upper
            )
        except AuditLogError as exc:
            problem = (
                "The audit log's answer failed verification against its signed checkpoint, "
                f"so no entry is shown: {exc}"
            )
            entries = []
        else:
            next_start = answer.get("next_start")
    kept = {k: v for k, v in form.items() if v}
    previous = [int(s) for s in trail.split(",") if s.isdigit()]
    links: dict[str, str] = {}
    if next_start is not None:
        links["next"] = "/audit?" + urlencode(
            kept | {"start": next_start, "trail": ",".join(map(str, [*previous, start]))}
        )
    if start > 0:
        back = previous[-1] if previous else 0
        links["previous"] = "/audit?" + urlencode(
            kept | {"start": back, "trail": ",".join(map(str, previous[:-1]))}
        )
    return render(
        request,
        "ig/entries.html",
        400 if errors else 200,
        title="Audit log",
        form=form,
        errors=errors,
        entries=entries,
        links=links,
        page_number=len(previous) + 1 if start > 0 else 1,
        types=TYPE_NAMES,
        filtered=bool(kept),
        problem=problem,
        checkpoint=status.checkpoint if status and status.verified else None,
    )


@router.get("/audit/checkpoint", response_class=HTMLResponse)
def checkpoint(request: Request, session: IgSession) -> HTMLResponse:
    """The latest checkpoint, verified with the pinned keys and against the last one seen."""
    status, config_problem = _verified_checkpoint(request, session)
    return render(
        request,
        "ig/checkpoint.html",
        503 if config_problem else 200,
        title="Checkpoint status",
        status=status,
        config_problem=config_problem,
    )


def _verified_checkpoint(
    request: Request, session: Session
) -> tuple[CheckpointStatus | None, str | None]:
    """The log's latest checkpoint checked with the pinned keys and against the last
    one verified here; (None, why) when the keys are not set up."""
    settings = request.app.state.settings
    try:
        log_vkey, witness_vkeys = read_vkeys(
            settings.audit_log_vkey_file, settings.witness_vkey_file
        )
    except ConfigError as exc:
        return None, str(exc)
    audit = backend(request, "audit")
    token = session.user.credential
    note = audit.call("GET", "/checkpoint", token).text

    def consistency(old: int, new: int) -> list[bytes]:
        return proof_hashes(audit.get_json("/proof/consistency", token, old=old, new=new))

    status = check_checkpoint(request.app.state.engine, note, log_vkey, witness_vkeys, consistency)
    return status, None


@router.get("/audit/receipt", response_class=HTMLResponse)
def receipt_form(request: Request, session: IgSession) -> HTMLResponse:
    """The receipt upload form."""
    return render(
        request,
        "ig/receipt.html",
        title="Check a receipt",
        errors={},
        result=None,
        limit=MAX_UPLOAD,
    )


def _read(upload: UploadFile | None, field: str, errors: dict[str, str]) -> bytes | None:
    """The uploaded file's bytes; None if no file was chosen; an error if too big."""
    if upload is None or not upload.filename:
        return None
    data = upload.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        errors[field] = f"The selected file must be smaller than {MAX_UPLOAD // 1024} KB"
        return None
    if not data:
        errors[field] = "The selected file is empty"
        return None
    return data


@router.post("/audit/receipt", response_class=HTMLResponse)
def receipt_check(
    request: Request,
    session: IgSession,
    _csrf: CsrfChecked,
    receipt: Annotated[UploadFile | None, File()] = None,
    entry: Annotated[UploadFile | None, File()] = None,
) -> HTMLResponse:
    """Verify an uploaded receipt (and its entry) as ``audit-log verify-receipt`` does."""
    errors: dict[str, str] = {}
    receipt_bytes = _read(receipt, "receipt", errors)
    entry_bytes = _read(entry, "entry", errors)
    if receipt_bytes is None and "receipt" not in errors:
        errors["receipt"] = "Select the receipt file"
    result = None
    if not errors and receipt_bytes is not None:
        settings = request.app.state.settings
        try:
            log_vkey, witness_vkeys = read_vkeys(
                settings.audit_log_vkey_file, settings.witness_vkey_file
            )
        except ConfigError as exc:
            return render(
                request,
                "error.html",
                503,
                title="Receipts cannot be checked yet",
                message=f"The keys to check receipts with are not set up: {exc}.",
            )
        try:
            audit = backend(request, "audit")

            def fetch_entry(index: int) -> bytes:
                try:
                    leaf = audit.call("GET", f"/leaves/{index}", session.user.credential)
                except BackendError as exc:
                    if exc.status not in (400, 404, 422):
                        raise
                    raise ReceiptProblem(
                        "receipt",
                        f"The audit log holds no entry {index}: the receipt is not from this log",
                    ) from exc
                return leaf.content

            result = check_receipt(receipt_bytes, entry_bytes, log_vkey, witness_vkeys, fetch_entry)
        except ReceiptProblem as problem:
            errors[problem.field] = problem.message
    return render(
        request,
        "ig/receipt.html",
        422 if errors else 200,
        title="Receipt verified" if result else "Check a receipt",
        errors=errors,
        result=result,
        limit=MAX_UPLOAD,
    )


@router.get("/audit/anomalies", response_class=HTMLResponse)
def anomalies(
    request: Request,
    session: IgSession,
    from_day: str = "",
    from_month: str = "",
    from_year: str = "",
    to_day: str = "",
    to_month: str = "",
    to_year: str = "",
) -> HTMLResponse:
    """The anomaly report, with granted unlocks per day and per professional."""
    form = {
        "from_day": from_day,
        "from_month": from_month,
        "from_year": from_year,
        "to_day": to_day,
        "to_month": to_month,
        "to_year": to_year,
    }
    errors: dict[str, str] = {}
    since, until = _date_range(form, errors)
    report: dict[str, Any] = {"anomalies": [], "unlocks_per_day": []}
    if not errors:
        report = backend(request, "audit").get_json(
            "/reports/anomalies",
            session.user.credential,
            since=_midnight(since) if since else None,
            until=_midnight(until + dt.timedelta(days=1)) if until else None,
        )
    daily = report.get("unlocks_per_day", [])
    per_day: Counter[str] = Counter()
    per_professional: Counter[str] = Counter()
    for row in daily:
        per_day[row["day"]] += row["unlocks"]
        per_professional[row["professional_id"]] += row["unlocks"]
    day_rows = [(_day_label(day), float(n)) for day, n in sorted(per_day.items())]
    pro_rows = [(pro, float(n)) for pro, n in per_professional.most_common()]
    found = [
        {
            "kind": ANOMALY_KINDS.get(a["kind"], a["kind"]),
            "professional_id": a.get("professional_id"),
            "indices": a.get("indices", []),
            "detail": a.get("detail", ""),
        }
        for a in report.get("anomalies", [])
    ]
    return render(
        request,
        "ig/anomalies.html",
        400 if errors else 200,
        title="Anomaly report",
        form=form,
        errors=errors,
        anomalies=found,
        daily=daily,
        day_rows=day_rows,
        pro_rows=pro_rows,
        timezone=report.get("timezone"),
        limit=report.get("limit"),
        period=report.get("period"),
        day_chart=bar_chart(
            "Unlocks granted per day",
            day_rows,
            unit="unlocks",
            description=None if day_rows else "No unlocks were granted in this period.",
        ),
        pro_chart=bar_chart(
            "Unlocks granted per professional",
            pro_rows,
            unit="unlocks",
            description=None if pro_rows else "No unlocks were granted in this period.",
        ),
    )


def _day_label(day: str) -> str:
    value = dt.date.fromisoformat(day)
    return f"{value:%a} {value.day} {value:%b %Y}"


@router.get("/audit/reviews", response_class=HTMLResponse)
def reviews(request: Request, session: IgSession) -> HTMLResponse:
    """Break-glass review tasks with their deadlines (signed in the browser: ig.js)."""
    return render(request, "ig/reviews.html", title="Break-glass reviews")


@router.get("/audit/subject-access", response_class=HTMLResponse)
def subject_access(request: Request, session: IgSession) -> HTMLResponse:
    """A subject access search (signed and opened in the browser: ig.js)."""
    return render(request, "ig/subject_access.html", title="Subject access")
