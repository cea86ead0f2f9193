"""The whole journey on a running local stack, step by step, as each party would do it.

Each step is a plain function over a :class:`~deploy._local.LocalStack` that
talks to the services over HTTP, with the keys the ceremony gave that party:

1. :func:`make_population` - the synthetic population (plaintext, agency side);
2. :func:`encode_extracts` - each agency encodes and signs its extract;
3. :func:`push_extracts` - the operator registers each agency, each agency pushes;
   the linkage service links on arrival;
4. :func:`assess` - an administrator runs an assessment (``POST /assessments``);
5. :func:`pick_families` - a family at or above the unlock threshold, one below;
6. :func:`unlock` - a professional asks for a family for a purpose and opens
   what is released with their own key (only a count leaves this function);
7. :func:`ig_checkpoint`, :func:`ig_verify_receipt` - the IG officer checks the
   log's checkpoint against the pinned key (and consistency with the last one
   seen) and the receipt's inclusion proof, with the ``audit-log`` command.

:func:`run_journey` runs them in order inside one trace (so the agency push,
the linkage service and the unlock service share one trace id) and returns a
:class:`Journey` of pseudonymous ids and counts. It never returns or prints an
identity. The ``family-linkage demo`` command prints its summary.

Errors: :class:`~deploy.StackError` names the step and what the service answered.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agency_client import (
    AgencyClientError,
    BadRowPolicy,
    encode_csv,
    load_agency_key,
    load_agency_public_key,
    load_mapping,
    load_schema,
    load_seal_public_key,
    load_secret,
)
from agency_client._synthetic import GeneratedPopulation, PopulationConfig, generate_population
from protocols import private_dir
from service_common import Telemetry, setup_telemetry, traced_transport

from ._errors import StackError
from ._local import DemoProfessional, LocalStack, WebAccount

__all__ = [
    "Journey",
    "Unlocked",
    "assess",
    "encode_extracts",
    "families_at_threshold",
    "ig_checkpoint",
    "ig_verify_receipt",
    "make_population",
    "pick_families",
    "push_extracts",
    "run_journey",
    "unlock",
]

PURPOSE = "SAFEGUARDING"
JUSTIFICATION = "Early help escalation: the family met the agreed risk threshold this cycle."


@dataclass(frozen=True)
class Unlocked:
    """What a professional's unlock request came to: ids, status, counts, the receipt."""

    status_code: int
    body: dict[str, Any]
    identities: int = 0
    # people the released records belong to, counted from the opened release
    people: int = 0

    @property
    def reason(self) -> str:
        """The decision's reason code (GRANTED, CLEARANCE_INSUFFICIENT, ...)."""
        return str(self.body.get("reason", ""))


@dataclass
class Journey:
    """Pseudonymous ids, counts and timings of one run through the journey."""

    population: GeneratedPopulation | None = None
    extracts: dict[str, Path] = field(default_factory=dict)
    records_encoded: int = 0
    pushed: dict[str, dict[str, Any]] = field(default_factory=dict)
    linkage_stats: dict[str, Any] = field(default_factory=dict)
    assessment: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.0
    family_above: str = ""
    family_above_score: float = 0.0
    family_below: str | None = None
    professionals: dict[str, DemoProfessional] = field(default_factory=dict)
    web_accounts: list[WebAccount] = field(default_factory=list)
    released: Unlocked | None = None
    ig_before: str = ""
    ig_after: str = ""
    ig_receipt: str = ""
    trace_id: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise StackError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


def make_population(out: Path, households: int, seed: int) -> GeneratedPopulation:
    """The synthetic population, its events dated up to today (so attestations are fresh)."""
    config = PopulationConfig(households=households, seed=seed, extract_date=dt.date.today())
    private_dir(out, own=True)  # plaintext identities: owner-only, also when left by a run
    return generate_population(config, out)


def encode_extracts(
    stack: LocalStack, pop: GeneratedPopulation, out: Path
) -> tuple[dict[str, Path], int]:
    """Each agency encodes and signs its CSV with its own ceremony bundle; paths and records."""
    schema = load_schema(None)
    private_dir(out, own=True)  # extracts: sealed identities and record refs, owner-only
    extracts: dict[str, Path] = {}
    records = 0
    extract_date = dt.date.today()
    for agency in pop.agencies:
        bundle = stack.key(f"agency-{agency}")
        target = out / f"{agency}.jsonl"
        try:
            summary = encode_csv(
                pop.csv_paths[agency],
                load_mapping(pop.mapping_paths[agency]),
                schema,
                load_secret(bundle / "linkage-secret.json"),
                load_agency_key(bundle / "agency.key"),
                load_seal_public_key(bundle / "seal.pub"),
                target,
                extract_date=extract_date,
                policy=BadRowPolicy.DROP_FIELD,
                workers=1,
            )
        except AgencyClientError as exc:
            raise StackError(f"encoding the {agency} extract: {exc}") from exc
        extracts[agency] = target
        records += summary.record_count
    return extracts, records


def register_agencies(stack: LocalStack, pop: GeneratedPopulation) -> None:
    """The operator registers each agency's public key and extract type (its database)."""
    from linkage_service import LinkageError
    from linkage_service import _store as store

    try:
        sql = store.open_engine(stack.database_urls["linkage"])
        try:
            for agency in pop.agencies:
                pub = load_agency_public_key(
                    stack.key("linkage-service", "agencies", f"{agency}.pub")
                )
                mapping = load_mapping(pop.mapping_paths[agency])
                store.add_agency(
                    sql, agency, pub.public_key, pub.key_id, [mapping.agency.extract_type]
                )
        finally:
            sql.dispose()
    except (LinkageError, AgencyClientError) as exc:
        raise StackError(f"registering the agencies: {exc}") from exc


def push_extracts(
    stack: LocalStack, extracts: dict[str, Path], telemetry: Telemetry | None = None
) -> dict[str, dict[str, Any]]:
    """Each agency streams its extract to the linkage service with its own token."""
    from linkage_service import LinkageError
    from linkage_service._cli import push

    out: dict[str, dict[str, Any]] = {}
    timeout = httpx.Timeout(30.0, read=300.0)
    with httpx.Client(timeout=timeout, transport=traced_transport(telemetry=telemetry)) as http:
        for agency, path in extracts.items():
            token = stack.secret(f"agency-{agency}", "linkage-token")
            try:
                out[agency] = push(path, stack.url("linkage-service"), token, client=http)
            except LinkageError as exc:
                raise StackError(f"pushing the {agency} extract: {exc}") from exc
    return out


def _linkage(stack: LocalStack, role: str, telemetry: Telemetry | None = None) -> httpx.Client:
    token = stack.secret("operators", f"linkage-{role}-token")
    return httpx.Client(
        base_url=stack.url("linkage-service"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, read=300.0),
        transport=traced_transport(telemetry=telemetry),
    )


def linkage_stats(stack: LocalStack, telemetry: Telemetry | None = None) -> dict[str, Any]:
    """Counts of records, persons, households and links (analyst)."""
    with _linkage(stack, "analyst", telemetry) as http:
        return _check(http.get("/stats"), "GET /stats")


def assess(stack: LocalStack, telemetry: Telemetry | None = None) -> dict[str, Any]:
    """An assessment of every family as at today (admin): the cycle's counts."""
    with _linkage(stack, "admin", telemetry) as http:
        return _check(http.post("/assessments", json={}), "POST /assessments")


def families_at_threshold(stack: LocalStack) -> list[str]:
    """Every family at or above the unlock threshold in the latest assessment."""
    with _linkage(stack, "analyst") as http:
        programme = _check(http.get("/programme"), "GET /programme")
        threshold = float(programme["model"]["thresholds"]["unlock"])
        out: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = _check(
                http.get("/families", params={"offset": offset, "limit": 500}), "GET /families"
            )
            out += [f["family_id"] for f in page["families"] if float(f["score"]) >= threshold]
            offset = page.get("next_offset")
    return out


def pick_families(
    stack: LocalStack, telemetry: Telemetry | None = None
) -> tuple[float, tuple[str, float], str | None]:
    """The unlock threshold, the highest-scoring family (at or above it), and one below it."""
    with _linkage(stack, "analyst", telemetry) as http:
        programme = _check(http.get("/programme"), "GET /programme")
        threshold = float(programme["model"]["thresholds"]["unlock"])
        top = _check(http.get("/families", params={"limit": 1}), "GET /families")["families"]
        if not top or float(top[0]["score"]) < threshold:
            raise StackError(
                f"no family reached the unlock threshold {threshold:g}: generate more households"
            )
        below: str | None = None
        offset = 0
        while below is None:
            page = _check(
                http.get("/families", params={"offset": offset, "limit": 500}), "GET /families"
            )
            for row in page["families"]:
                if float(row["score"]) < threshold:
                    below = str(row["family_id"])
                    break
            if page.get("next_offset") is None:
                break
            offset = int(page["next_offset"])
    return threshold, (str(top[0]["family_id"]), float(top[0]["score"])), below


def unlock(
    stack: LocalStack,
    pro: DemoProfessional,
    family_id: str,
    *,
    purpose: str = PURPOSE,
    justification: str = JUSTIFICATION,
    telemetry: Telemetry | None = None,
) -> Unlocked:
    """``pro`` asks for ``family_id``; on release, opens it with their key and counts it."""
    from unlock_service import (
        TokenIssuer,
        UnlockClient,
        UnlockError,
        load_professional_key,
        load_settings,
        open_release_body,
    )
    from unlock_service._config import load_issuer_private_key

    try:
        settings = load_settings(stack.config_path("unlock-service"), environ={})
        assert settings.issuer_key_file is not None
        issuer = TokenIssuer(
            load_issuer_private_key(settings.issuer_key_file),
            settings.token_issuer,
            settings.token_audience,
        )
        key = load_professional_key(pro.key_file)
        token = issuer.issue(pro.professional_id, bytes(key.verify_key), lifetime=300)
        with UnlockClient(
            stack.url("unlock-service"),
            key,
            token,
            transport=traced_transport(telemetry=telemetry),
        ) as client:
            response = client.unlock(family_id, purpose, justification)
        body: dict[str, Any] = response.json()
        if response.status_code != 200:
            return Unlocked(response.status_code, body)
        release = open_release_body(body["sealed_identities"], key, body["request_id"])
    except UnlockError as exc:
        raise StackError(f"unlock request of {pro.professional_id}: {exc}") from exc
    # Only counts leave: the names stay in this function's memory.
    people = len(getattr(release, "people", ()))
    return Unlocked(response.status_code, body, identities=len(release.identities), people=people)


def _audit_log(argv: list[str], http: httpx.Client | None = None) -> str:
    from audit_log._cli import main as audit_log_main

    out = io.StringIO()
    if audit_log_main(argv, http_client=http, stdout=out) != 0:
        raise StackError(f"audit-log {argv[0]} failed (its error is above)")
    return out.getvalue().strip()


def ig_checkpoint(stack: LocalStack, state: Path, wait: float = 15.0) -> str:
    """``audit-log checkpoint`` as the IG officer: pinned vkeys, consistency with ``state``.

    Waits up to ``wait`` seconds for the first witnessed checkpoint to be published.
    """
    from audit_log import AuditLogError

    token = stack.secret("ig-office", "audit-token")
    argv = [
        "checkpoint",
        "--url",
        stack.url("unlock-service") + "/audit",
        "--vkey",
        str(stack.key("ig-office", "audit-log.vkey")),
        "--witness-vkey",
        str(stack.key("ig-office", "witness.vkey")),
        "--state",
        str(state),
    ]
    deadline = time.monotonic() + wait
    with httpx.Client(
        base_url=stack.url("unlock-service") + "/audit",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    ) as http:
        while True:
            published = http.get("/checkpoint")
            if published.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        try:
            return _audit_log(argv, http)
        except AuditLogError as exc:
            raise StackError(f"audit-log checkpoint: {exc}") from exc


def ig_verify_receipt(stack: LocalStack, released: Unlocked, directory: Path) -> str:
    """``audit-log verify-receipt`` on the release's receipt and exact leaf bytes (offline)."""
    from audit_log import AuditLogError

    directory.mkdir(parents=True, exist_ok=True)
    index = released.body["audit_index"]
    receipt = directory / f"receipt-{index}.proof"
    entry = directory / f"entry-{index}.json"
    receipt.write_text(released.body["receipt"], encoding="utf-8")
    entry.write_bytes(released.body["leaf"].encode("utf-8"))
    argv = [
        "verify-receipt",
        "--vkey",
        str(stack.key("ig-office", "audit-log.vkey")),
        "--witness-vkey",
        str(stack.key("ig-office", "witness.vkey")),
        "--receipt",
        str(receipt),
        "--entry",
        str(entry),
    ]
    try:
        return _audit_log(argv)
    except AuditLogError as exc:
        raise StackError(f"audit-log verify-receipt: {exc}") from exc


def web_check(stack: LocalStack, accounts: list[WebAccount], family: str) -> str:
    """Sign in to the web pages as the coordinator, over HTTP like a browser, and
    find ``family`` on the families list; a line for the demo's output."""
    coordinator = next(a for a in accounts if a.role == "coordinator")
    url = stack.url("web-service")
    with httpx.Client(base_url=url, timeout=30.0) as web:
        signed = web.post(
            "/sign-in",
            data={"username": coordinator.username, "password": coordinator.password},
        )
        # The cookie is Secure: a browser sends it to 127.0.0.1 over plain HTTP
        # (a secure context), httpx's cookie jar does not, so it is sent by hand.
        cookie = signed.headers.get("set-cookie", "").split(";", 1)[0]
        listed = web.get("/families", params={"eligible": "yes"}, headers={"Cookie": cookie})
        found = family in listed.text
        page = web.get(f"/families/{family}", headers={"Cookie": cookie})
        if signed.status_code != 303 or listed.status_code != 200 or page.status_code != 200:
            raise StackError(
                f"the web pages did not work for the coordinator: sign-in HTTP "
                f"{signed.status_code}, families page HTTP {listed.status_code}, the "
                f"family's page HTTP {page.status_code}"
            )
    pages = len(accounts)
    return (
        f"{url} signed in as {coordinator.username}: the families list "
        f"{'shows' if found else 'lists the eligible families, not on its first page'} "
        f"{family} and its page opens; {pages} demo accounts "
        f"(passwords and TOTP seeds in {rel(stack.pro_dir / 'web-accounts.json')})"
    )


def run_journey(
    stack: LocalStack,
    professionals: list[DemoProfessional],
    *,
    households: int,
    seed: int,
    report: Callable[[str, str], None] = lambda _step, _line: None,
    telemetry: Telemetry | None = None,
    web_accounts: list[WebAccount] | tuple[WebAccount, ...] = (),
) -> Journey:
    """Every step after the stack started, in order; ``report(step, line)`` after each."""
    telemetry = telemetry or setup_telemetry("family-linkage-demo", set_global=False)
    journey = Journey(
        professionals={p.name: p for p in professionals}, web_accounts=list(web_accounts)
    )
    ig_dir = stack.run_dir / "ig-office"
    ig_dir.mkdir(exist_ok=True)
    ig_state = ig_dir / "last-seen.checkpoint"
    ig_state.unlink(missing_ok=True)  # a fresh log: the IG officer starts a fresh record

    def timed(name: str) -> Callable[[], None]:
        started = time.perf_counter()

        def done() -> None:
            journey.seconds[name] = time.perf_counter() - started

        return done

    tracer = telemetry.tracer("deploy.journey")
    with tracer.start_as_current_span("family-linkage demo journey") as span:
        journey.trace_id = format(span.get_span_context().trace_id, "032x")

        done = timed("population")
        pop = make_population(stack.run_dir / "population", households, seed)
        journey.population = pop
        done()
        report(
            "population",
            f"{pop.household_count:,} households ({pop.family_count:,} families), "
            f"{pop.person_count:,} people, {pop.record_count:,} records across "
            f"{len(pop.agencies)} agencies -> {rel(pop.out_dir)} "
            f"({journey.seconds['population']:.1f}s)",
        )

        done = timed("encode")
        journey.extracts, journey.records_encoded = encode_extracts(
            stack, pop, stack.run_dir / "extracts"
        )
        done()
        report(
            "encode",
            f"{len(journey.extracts)} agencies encoded and signed {journey.records_encoded:,} "
            f"records with their own keys: Bloom filters, keyed tokens, sealed identities "
            f"({journey.seconds['encode']:.1f}s)",
        )

        done = timed("push")
        register_agencies(stack, pop)
        journey.pushed = push_extracts(stack, journey.extracts, telemetry)
        journey.linkage_stats = linkage_stats(stack, telemetry)
        done()
        stats = journey.linkage_stats
        report(
            "push + link",
            f"{len(journey.pushed)} agencies registered and pushed over HTTP; the linkage "
            f"service holds {stats.get('active_records', 0):,} records linked into "
            f"{stats.get('persons', 0):,} persons and {stats.get('households', 0):,} "
            f"households ({journey.seconds['push']:.1f}s)",
        )

        journey.ig_before = ig_checkpoint(stack, ig_state)

        done = timed("assess")
        journey.assessment = assess(stack, telemetry)
        journey.threshold, (family, score), journey.family_below = pick_families(stack, telemetry)
        journey.family_above, journey.family_above_score = family, score
        done()
        a = journey.assessment
        report(
            "assess",
            f"cycle {a.get('cycle_id')}: {a.get('families', 0):,} families assessed, "
            f"{a.get('eligible', 0):,} eligible, {a.get('above_unlock', 0):,} at or above the "
            f"unlock threshold {journey.threshold:g} (attested); picked {family} "
            f"(score {score:g}) ({journey.seconds['assess']:.1f}s)",
        )

        done = timed("unlock")
        worker = journey.professionals["social-worker"]
        journey.released = unlock(stack, worker, family, telemetry=telemetry)
        done()
        released = journey.released
        if released.status_code != 200:
            raise StackError(
                f"the cleared professional was refused {family}: HTTP "
                f"{released.status_code} {released.reason}: {released.body.get('detail')}"
            )
        report(
            "unlock",
            f"{worker.professional_id} (social_worker, clearance {worker.clearance}) asked for "
            f"{family} for {PURPOSE}: {released.reason}; opened {released.identities} identities "
            f"(one per agency record of its members) sealed to their own key; names not shown "
            f"(audit entry {released.body['audit_index']}) "
            f"({journey.seconds['unlock']:.1f}s)",
        )

        done = timed("verify")
        journey.ig_after = ig_checkpoint(stack, ig_state)
        journey.ig_receipt = ig_verify_receipt(stack, released, ig_dir)
        done()
        report("verify", f"audit-log checkpoint: {journey.ig_before}")
        report("verify", f"audit-log checkpoint: {journey.ig_after}")
        report("verify", f"audit-log verify-receipt: {journey.ig_receipt}")

        if journey.web_accounts:
            report("web", web_check(stack, journey.web_accounts, family))
    return journey


def rel(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (for messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def journey_json(journey: Journey) -> str:
    """The journey's ids and counts as JSON (no identity is ever in a Journey)."""
    released = journey.released
    return json.dumps(
        {
            "trace_id": journey.trace_id,
            "family_id": journey.family_above,
            "identities_opened": 0 if released is None else released.identities,
            "audit_index": None if released is None else released.body.get("audit_index"),
            "linkage": journey.linkage_stats,
            "assessment": journey.assessment,
            "seconds": {k: round(v, 2) for k, v in journey.seconds.items()},
        },
        indent=2,
        sort_keys=True,
    )
