"""``linkage-service``: serve the linkage service and administer it.

Operators migrate the database, register agencies (id, Ed25519 public key
file, allowed extract types), issue bearer tokens (printed once; only the
SHA-256 is stored in the 0600 token file), serve, and read run history and
statistics. Agencies use ``push`` to stream an extract file to the service.
Coordinators and analysts check rulesets, run assessments, list and inspect
families, change statuses, make claim batches and export them, print reports
(JSON or CSV), export persons, households, families, links or review pairs in
bulk (``export``: NDJSON or Parquet, streamed page by page), summarise the
review queue and export the pairs of it that would change a family (CSV),
record clerical decisions on review pairs (``review decide``; the running
service applies them at its next push) and export every decision with who and
when (``review decisions``).
``main`` parses arguments, calls library functions, prints results and turns
``LinkageError`` into a plain message and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import datetime as dt
import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from protocols import (
    EXPORT_FORMATS,
    EXPORT_KINDS,
    DecisionView,
    ExportFormat,
    ReviewSummary,
    SecretFileError,
    key_id,
    pipe_safe,
    write_private_file,
)
from service_common import ServiceCommonError, setup_telemetry, traced_transport

from . import _decisions as decisions
from . import _export as export_
from . import _review as review
from . import _store as store
from ._config import (
    Settings,
    hash_token,
    load_attestation_key,
    load_programme,
    load_settings,
    new_token,
    valid_role,
)
from ._errors import ConfigError, LinkageError
from ._matchmodel import MatchModel, render_markdown
from .programme import _active as active
from .programme import _assessment as assessment
from .programme import _claims as claims
from .programme import _reports as reports
from .programme._riskmodel import load_model
from .programme._ruleset import default_ruleset, load_ruleset

__all__ = ["main"]

TOKEN_ENV = "LINKAGE_SERVICE_TOKEN"
_PUSH_CHUNK = 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linkage-service", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="settings file (TOML or JSON)")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    sub.add_parser("migrate", help="create or upgrade the database schema")
    agency = sub.add_parser("agency", help="agency registry").add_subparsers(
        dest="agency_command", required=True
    )
    add = agency.add_parser("add", help="register an agency (or replace its key and types)")
    add.add_argument("--id", required=True, dest="agency_id")
    add.add_argument("--public-key", required=True, type=Path, help="the agency's agency.pub")
    add.add_argument("--types", required=True, help="allowed extract types, comma-separated")
    agency.add_parser("list", help="registered agencies")
    token = sub.add_parser("token", help="bearer tokens").add_subparsers(
        dest="token_command", required=True
    )
    tadd = token.add_parser("add", help="issue a token: printed once, only its hash is kept")
    tadd.add_argument("--role", required=True, help="analyst, admin, unlock_service, agency:<id>")
    tadd.add_argument("--label", default=None)
    tadd.add_argument("--out", type=Path, help="also write the token to this new 0600 file")
    push = sub.add_parser("push", help="stream an extract file to the service (agency side)")
    push.add_argument("extract", type=Path)
    push.add_argument("--url", required=True)
    push.add_argument("--token-file", type=Path, help=f"0600 file with the token (or ${TOKEN_ENV})")
    runs = sub.add_parser("runs", help="linkage run history")
    runs.add_argument("--limit", type=int, default=20)
    sub.add_parser("stats", help="record, person, household and link counts")
    mm = sub.add_parser("match-model", help="the match model in force: m, u and weights")
    mm.add_argument("--json", action="store_true", help="its stored JSON instead of a card")
    assess = sub.add_parser("assess", help="assess every family: snapshots, statuses, attestations")
    assess.add_argument("--as-at", type=_date, help="assessment date YYYY-MM-DD (default today)")
    assess.add_argument("--actor", default="cli", help="who runs it (recorded)")
    rs = sub.add_parser("ruleset", help="programme rulesets and risk models").add_subparsers(
        dest="ruleset_command", required=True
    )
    check = rs.add_parser("check", help="validate a ruleset file (and a model file against it)")
    check.add_argument("ruleset_file", type=Path)
    check.add_argument("--model", type=Path, help="a risk model file to check against it")
    rs.add_parser("show", help="the active ruleset and the model: versions and SHA-256")
    use = rs.add_parser("use", help="switch the active ruleset from the next cycle on")
    use.add_argument("ruleset", help="a shipped ruleset name or a ruleset .toml file")
    use.add_argument("--reason", required=True, help="reason code, e.g. PROGRAMME_PHASE")
    use.add_argument("--actor", default="cli", help="who switches it (recorded)")
    fam = sub.add_parser("families", help="families of the latest assessment")
    fam.add_argument("--eligible", action="store_true", help="eligible families only")
    fam.add_argument("--status", help="families with this status only")
    fam.add_argument("--limit", type=int, default=50)
    fam.add_argument("--csv", action="store_true", help="CSV instead of tab-separated text")
    show = sub.add_parser("family", help="one family: score, reasons, problems, progress")
    show.add_argument("family_id")
    status = sub.add_parser("status", help="move a family to a new status")
    status.add_argument("family_id")
    status.add_argument("status", help="identified, attached, in_progress, pending_claim, ...")
    status.add_argument("--reason", required=True, help="reason code, e.g. WORK_STARTED")
    status.add_argument("--on", type=_date, help="date the change took effect (attachment)")
    status.add_argument("--actor", default="cli")
    claim = sub.add_parser("claims", help="payment-by-results claims").add_subparsers(
        dest="claims_command", required=True
    )
    crun = claim.add_parser("run", help="make the claim batch for a claim window")
    crun.add_argument("window_id", help="a window of the ruleset's calendar, e.g. 2026-H2")
    crun.add_argument("--family", action="append", dest="family_ids", help="only this family")
    crun.add_argument("--actor", default="cli")
    cexp = claim.add_parser(
        "export", help="claims for internal audit: CSV, one row per evidence item, and JSON"
    )
    cexp.add_argument("--window", dest="window_id")
    cexp.add_argument(
        "--out", type=Path, help="write FILE.csv and FILE.json beside it (default: CSV to stdout)"
    )
    cexp.add_argument("--sample-pct", type=float, default=100.0, help="e.g. 10 for a 10%% sample")
    cexp.add_argument("--seed", type=int, default=0, help="sample seed (reproducible)")
    rv = sub.add_parser("review", help="the clerical review queue").add_subparsers(
        dest="review_command", required=True
    )
    rsum = rv.add_parser(
        "summary", help="review pairs: how many would change a family, and what the rest are"
    )
    rsum.add_argument("--json", action="store_true", help="the summary as JSON")
    rexp = rv.add_parser(
        "export", help="CSV of the queue's pairs that would change a family, in queue order"
    )
    rexp.add_argument("--all", action="store_true", help="every pair, not only impactful ones")
    rdec = rv.add_parser(
        "decide", help="record a clerical decision, match or non-match, on a pair of records"
    )
    rdec.add_argument("record_a", type=int, help="record id (as in the queue)")
    rdec.add_argument("record_b", type=int, help="record id (as in the queue)")
    rdec.add_argument("decision", choices=decisions.DECISIONS)
    rdec.add_argument("--reason", required=True, help="reason code, e.g. SAME_PERSON")
    rdec.add_argument("--actor", required=True, help="who decides (recorded), e.g. coordinator:kim")
    rdec.add_argument(
        "--change", action="store_true", help="replace the pair's decision (recorded as a change)"
    )
    rlist = rv.add_parser("decisions", help="every clerical decision, for audit (CSV or JSON)")
    rlist.add_argument("--json", action="store_true", help="JSON instead of CSV")
    rlist.add_argument("--current", action="store_true", help="only the decisions in force")
    rep = sub.add_parser("report", help="programme reports (JSON, or CSV with --csv)")
    rep.add_argument("name", choices=sorted(reports.REPORTS))
    rep.add_argument("--cycle", type=int, help="cycle id (default: the latest)")
    rep.add_argument("--problem", help="work-list: families with this problem first")
    rep.add_argument("--limit", type=int)
    rep.add_argument("--cohort", help="progress-data, distance-travelled: YYYY-Qn of attachment")
    rep.add_argument("--by", choices=reports.BREAKDOWNS, help="breakdowns: one dimension")
    rep.add_argument("--cadence-days", type=int, help="forecast: days between reviews")
    rep.add_argument("--horizon-cycles", type=int, help="forecast: reviews to look ahead")
    rep.add_argument("--unlock-margin", type=int, help="cusp: points below the unlock threshold")
    rep.add_argument("--margin-pct", type=float, help="cusp: percent of an indicator's threshold")
    for flag in ("average-gbp", "multiple-needs-gbp", "multiple-needs-from", "intervention-gbp"):
        rep.add_argument(f"--{flag}", type=int, help="cost-avoidance parameter")
    rep.add_argument("--years", type=float, help="cost-avoidance: years a saving lasts")
    rep.add_argument("--csv", action="store_true", help="CSV rows instead of JSON")
    exp = sub.add_parser(
        "export", help="bulk export, streamed: persons, households, families, links or review"
    )
    exp.add_argument("kind", choices=EXPORT_KINDS)
    exp.add_argument("--out", required=True, type=Path, help="the file to write (mode 600)")
    exp.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        dest="export_format",
        help="ndjson (default) or parquet; a .parquet --out means parquet",
    )
    exp.add_argument(
        "--page-size", type=int, default=export_.PAGE, help="rows per keyset page (one read each)"
    )
    lead = sub.add_parser("lead", help="record a family's lead professional (a code, not a name)")
    lead.add_argument("family_id")
    lead.add_argument("code", help="professional id or team code; '-' clears it")
    lead.add_argument("--actor", default="cli")
    return p


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from exc


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _write_private(path: Path, text: str) -> None:
    try:
        write_private_file(path, text)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc


def _append_token_hash(path: Path, line: str) -> None:
    if not path.exists():
        _write_private(path, line)
        return
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"token file {path} is readable or writable by group or others")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)


def _read_public_key(path: Path, agency_id: str) -> tuple[bytes, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        raw = base64.b64decode(data["public_key"], validate=True)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{path}: not an agency public key file: {exc}") from exc
    if data.get("agency_id") != agency_id:
        raise ConfigError(
            f"{path} is the key of agency {data.get('agency_id')!r}, not {agency_id!r}"
        )
    if len(raw) != 32:
        raise ConfigError(f"{path}: public_key must be 32 bytes")
    return raw, key_id(raw)


def _read_token(path: Path | None) -> str:
    if path is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise ConfigError(f"no token: give --token-file or set {TOKEN_ENV}")
        return token
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"token file {path} must be mode 600")
    return path.read_text(encoding="utf-8").strip()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_PUSH_CHUNK):
            yield chunk


def push(path: Path, url: str, token: str, client: httpx.Client | None = None) -> dict[str, Any]:
    """Stream the extract at ``path`` to ``url``; the service's run summary."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such extract file")
    own = client is None
    # Traced: the push starts (or continues) a trace the linkage service carries on.
    http = client or httpx.Client(
        timeout=httpx.Timeout(30.0, read=None), transport=traced_transport()
    )
    try:
        response = http.post(
            url.rstrip("/") + "/extracts",
            content=_chunks(path),
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "application/x-ndjson",
                "content-length": str(path.stat().st_size),
            },
        )
    except httpx.HTTPError as exc:
        raise LinkageError(f"cannot reach {url}: {exc}") from exc
    finally:
        if own:
            http.close()
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"detail": response.text}
    if response.status_code != 200:
        raise LinkageError(f"{path}: refused ({response.status_code}): {body.get('detail')}")
    return body


@pipe_safe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``linkage-service`` command."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except LinkageError as exc:
        print(f"linkage-service: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "push":
        try:
            telemetry = setup_telemetry("agency-push")
        except ServiceCommonError as exc:
            raise ConfigError(str(exc)) from exc
        try:
            with telemetry.tracer("linkage_service.push").start_as_current_span("push extract"):
                summary = push(args.extract, args.url, _read_token(args.token_file))
        finally:
            telemetry.shutdown()
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    if args.command == "ruleset" and args.ruleset_command == "check":
        ruleset = load_ruleset(args.ruleset_file)
        print(f"{args.ruleset_file}: {ruleset.name} {ruleset.version} sha256 {ruleset.sha256()}")
        if args.model is not None:
            model = load_model(args.model)
            model.check_against(ruleset)
            print(f"{args.model}: {model.name} {model.version} sha256 {model.sha256()}")
        return 0
    settings = _settings(args)
    if args.command == "token":
        if not valid_role(args.role):
            raise ConfigError(
                f"unknown role {args.role!r}: analyst, admin, unlock_service or agency:<id>"
            )
        token = new_token()
        label = args.label or args.role.replace(":", "-")
        if args.out is not None:
            _write_private(args.out, token + "\n")
        _append_token_hash(settings.token_file, f"{hash_token(token)} {args.role} {label}\n")
        print(token)
        return 0
    if args.command == "serve":
        import uvicorn

        from ._api import create_app
        from ._logging import configure_logging

        # Quiet unless OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT say otherwise;
        # the JSON logs carry the trace ids either way.
        try:
            telemetry = setup_telemetry("linkage-service")
        except ServiceCommonError as exc:
            raise ConfigError(str(exc)) from exc
        configure_logging()
        try:
            uvicorn.run(
                create_app(settings),
                host=args.host or settings.host,
                port=args.port or settings.port,
                log_config=None,
                access_log=False,  # our own lines only: ids and counts, never a query value
            )
        finally:
            telemetry.shutdown()
        return 0
    engine = store.open_engine(settings.database_url)
    try:
        if args.command == "migrate":
            print(f"database {store.redact(settings.database_url)} is at the newest schema")
        elif args.command == "agency" and args.agency_command == "add":
            key, kid = _read_public_key(args.public_key, args.agency_id)
            types = [t.strip() for t in args.types.split(",") if t.strip()]
            agency = store.add_agency(engine, args.agency_id, key, kid, types)
            print(
                f"agency {agency.agency_id} key {agency.key_id} "
                f"types {','.join(agency.extract_types)}"
            )
        elif args.command == "agency":
            for a in store.list_agencies(engine):
                print(
                    f"{a.agency_id}\t{a.key_id}\t{','.join(a.extract_types)}\t{store.iso(a.registered_at)}"
                )
        elif args.command == "runs":
            for r in store.list_runs(engine, args.limit):
                print(
                    f"{r['run_id']}\t{r['status']}\t{r['agency_id']}\t{r['extract_id']}\t"
                    f"{r['finished_at']}\t{json.dumps(r['stats'], sort_keys=True)}"
                )
        elif args.command == "export":
            fmt: ExportFormat = args.export_format or (
                "parquet" if args.out.suffix == ".parquet" else "ndjson"
            )
            rows = export_.write_export(engine, args.kind, fmt, args.out, page_size=args.page_size)
            print(f"{rows} {args.kind} rows ({fmt}) written to {args.out}")
        elif args.command == "stats":
            print(json.dumps(store.statistics(engine), indent=2, sort_keys=True))
        elif args.command == "match-model":
            with engine.connect() as conn:
                stored = store.latest_match_model(conn)
            if stored is None:
                raise ConfigError("no match model yet: one is estimated at the first link")
            match_model = MatchModel.from_json(stored)
            print(json.dumps(stored, indent=2) if args.json else render_markdown(match_model))
        else:
            _programme_command(args, settings, engine)
    finally:
        engine.dispose()
    return 0


def _json(view: BaseModel, indent: int | None = None) -> str:
    """A service answer as its route writes it (aliases, keys left out when absent), sorted."""
    body = view.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return json.dumps(body, indent=indent, sort_keys=True)


def _programme_command(args: argparse.Namespace, settings: Settings, engine: Engine) -> None:
    if args.command == "ruleset" and args.ruleset_command == "use":
        configured, model = load_programme(settings)
        new = (
            load_ruleset(Path(args.ruleset))
            if args.ruleset.endswith(".toml")
            else default_ruleset(args.ruleset)
        )
        switched = active.switch_ruleset(
            engine, new, model, configured, actor=args.actor, reason=args.reason
        )
        print(_json(switched, indent=2))
    elif args.command == "ruleset":
        configured, model = load_programme(settings)
        ruleset = active.active_ruleset(engine, configured)
        print(f"ruleset {ruleset.name} {ruleset.version} sha256 {ruleset.sha256()}")
        print(f"model {model.name} {model.version} sha256 {model.sha256()}")
    elif args.command == "assess":
        configured, model = load_programme(settings)
        ruleset = active.active_ruleset(engine, configured)
        signer = (
            None
            if settings.attestation_key_file is None
            else load_attestation_key(settings.attestation_key_file)
        )
        result = assessment.run_cycle(
            engine,
            ruleset,
            model,
            args.as_at or dt.date.today(),
            actor=args.actor,
            signer=signer,
            restrictions=settings.restrictions,
        )
        print(_json(result.stats, indent=2))
    elif args.command == "families":
        page = assessment.list_families(
            engine,
            eligible=True if args.eligible else None,
            status=args.status,
            limit=args.limit,
        )
        rows = page.families
        columns = [
            "family_id",
            "score",
            "rank",
            "problems",
            "eligible",
            "status",
            "step",
            "postcode_district",
            "clearance_required",
        ]
        out = io.StringIO()
        writer = csv.writer(out, delimiter="," if args.csv else "\t", lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            values = [getattr(r, c) for c in columns]
            writer.writerow(["" if v is None else v for v in values])
        print(out.getvalue(), end="")
    elif args.command == "family":
        print(_json(assessment.family_view(engine, args.family_id), indent=2))
    elif args.command == "status":
        changed = assessment.set_status(
            engine, args.family_id, args.status, actor=args.actor, reason=args.reason, on=args.on
        )
        print(_json(changed))
    elif args.command == "lead":
        code = None if args.code == "-" else args.code
        lead = assessment.set_lead_professional(engine, args.family_id, code, actor=args.actor)
        print(_json(lead))
    elif args.command == "claims" and args.claims_command == "run":
        batch = claims.create_claims(
            engine,
            args.window_id,
            actor=args.actor,
            family_ids=args.family_ids,
            restrictions=settings.restrictions,
        )
        print(_json(batch, indent=2))
    elif args.command == "report":
        report = reports.run_report(
            engine,
            args.name,
            args.cycle,
            **{k: getattr(args, k, None) for k in reports.PARAMETERS},
        )
        if args.csv:
            print(reports.to_csv(report), end="")
        else:
            answer = report.model_dump(mode="json", exclude_unset=True)
            print(json.dumps(answer, indent=2, sort_keys=True))
    elif args.command == "claims":
        made = claims.list_claims(engine, args.window_id)
        text = claims.export_claims(made, sample_pct=args.sample_pct, seed=args.seed)
        if args.out is None:
            print(text, end="")
        else:
            body = claims.export_claims_json(made, sample_pct=args.sample_pct, seed=args.seed)
            csv_path, json_path = args.out.with_suffix(".csv"), args.out.with_suffix(".json")
            try:
                csv_path.write_text(text, encoding="utf-8")
                json_path.write_text(body, encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot write the claims export {args.out}: {exc}") from exc
            print(f"{csv_path}\n{json_path}")
    elif args.command == "review" and args.review_command == "summary":
        summary = review.review_summary(engine)
        if args.json:
            print(summary.model_dump_json(indent=2))
        else:
            print(_summary_text(summary), end="")
    elif args.command == "review" and args.review_command == "decide":
        if not re.fullmatch(decisions.REASON_PATTERN, args.reason):
            raise ConfigError(f"--reason {args.reason!r} is not a reason code like SAME_PERSON")
        if not args.actor or len(args.actor) > 80:
            raise ConfigError("--actor must name who decides, in at most 80 characters")
        view = decisions.decide(
            engine,
            args.record_a,
            args.record_b,
            args.decision,
            args.reason,
            actor=args.actor,
            change=args.change,
        )
        print(view.model_dump_json(indent=2))
    elif args.command == "review" and args.review_command == "decisions":
        found: list[DecisionView] = []
        after = 0
        while True:
            chunk = decisions.list_decisions(engine, current_only=args.current, after=after)
            found.extend(chunk.decisions)
            if chunk.next_after is None:
                break
            after = chunk.next_after
        if args.json:
            print(json.dumps([d.model_dump(mode="json") for d in found], indent=2))
        else:
            print(decisions.decisions_csv(found), end="")
    elif args.command == "review":
        pairs = review.iter_queue(engine, impactful_only=not args.all)
        print(review.queue_csv(pairs), end="")


def _summary_text(s: ReviewSummary) -> str:
    i = s.impact
    cycle = "no assessment cycle yet" if s.cycle_id is None else f"assessment cycle {s.cycle_id}"
    lines = [
        f"review pairs: {s.pairs:,} (impact as of {cycle}; {i.not_assessed:,} not assessed in it)",
        f"would change a family: {s.impactful:,} (eligibility {i.eligibility:,}, "
        f"unlock threshold {i.threshold:,}, both {i.both:,}); "
        f"families affected: {s.families_affected:,}; no change: {i.none:,}",
        "match probability:",
        *(f"  {b.low:.1f}-{b.high:.1f}  {b.pairs:>9,}" for b in s.probability),
        "comparison levels:",
    ]
    for c in s.comparisons:
        lines.append(f"  {c.comparison}")
        lines.extend(f"    {lv.level:<32} {lv.pairs:>9,}" for lv in c.levels)
    if s.unexplained:
        lines.append(f"  (no comparison levels in the evidence of {s.unexplained:,} pairs)")
    return "\n".join(lines) + "\n"
