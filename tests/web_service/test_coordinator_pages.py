"""The coordinator's pages in process, over a real linkage service holding a
linked, assessed synthetic population: every page renders, filters filter,
bad filters get a GOV.UK error (never a 500), a status change needs the CSRF
token, another role gets 403, and the charts' numbers are in tables."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyotp
import pytest

from agency_client._synthetic import PopulationConfig
from evaluation._harness import ingest_population, load_population
from linkage_service._api import create_app as create_linkage_app
from linkage_service._config import Settings as LinkageSettings
from linkage_service.programme._assessment import TRANSITIONS as LINKAGE_TRANSITIONS
from tests._inprocess import PortalTransport, lifespans, start_blocking_portal
from tests.linkage_service._factories import TOKENS, auth, write_tokens
from web_service import _store as web_store
from web_service._accounts import create_account
from web_service._app import create_app as create_web_app
from web_service._charts import bar_chart, bins, histogram, line_chart
from web_service._config import Settings as WebSettings
from web_service._pages.coordinator import REPORTS, TRANSITIONS

AS_AT = PopulationConfig(households=1).extract_date
ENGLAND = ZoneInfo("Europe/London")
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Stack:
    web: httpx.Client
    linkage: httpx.Client
    engine: Any
    portal: Any
    web_app: Any
    pro_totp: str
    transport: httpx.BaseTransport


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("coordinator")
    pop = load_population(300, seed=11, workdir=work / "pop")
    ingest_population(pop, f"sqlite:///{work / 'linkage.db'}").dispose()
    key = work / "attestation.key"
    key.write_text(base64.b64encode(bytes(range(1, 33))).decode())
    key.chmod(0o600)
    linkage_app = create_linkage_app(
        LinkageSettings(
            database_url=f"sqlite:///{work / 'linkage.db'}",
            token_file=write_tokens(work / "tokens"),
            staging_dir=work,
            attestation_key_file=key,
        )
    )
    engine = web_store.open_engine(f"sqlite:///{work / 'web.db'}")
    create_account(
        engine,
        username="cora",
        role="coordinator",
        display_name="Cora Coordinator",
        password=PASSWORD,
        credential=TOKENS["coordinator"],
    )
    pro = create_account(
        engine,
        username="pat",
        role="professional",
        display_name="Pat Professional",
        password=PASSWORD,
        professional_id="pro_" + "ab" * 8,
    )
    with start_blocking_portal() as portal:
        web_app = create_web_app(
            WebSettings(
                linkage_url="http://linkage",
                unlock_url="http://unlock",
                cookie_secure=False,
            ),
            engine=engine,
            transports={"linkage": PortalTransport(linkage_app, portal)},
        )
        with (
            lifespans(portal, linkage_app, web_app),
            httpx.Client(
                transport=PortalTransport(linkage_app, portal), base_url="http://linkage"
            ) as linkage,
            httpx.Client(transport=PortalTransport(web_app, portal), base_url="http://web") as web,
        ):
            transport = PortalTransport(web_app, portal)
            r = linkage.post(
                "/assessments", json={"as_at": AS_AT.isoformat()}, headers=auth("admin")
            )
            assert r.status_code == 200, r.text
            assert pro.totp_uri is not None
            yield Stack(web, linkage, engine, portal, web_app, pro.totp_uri, transport)
    engine.dispose()


def sign_in(s: Stack, username: str = "cora", code: str = "") -> httpx.Client:
    client = httpx.Client(transport=s.transport, base_url="http://web")
    r = client.post(
        "/sign-in", data={"username": username, "password": PASSWORD, "code": code, "next": "/"}
    )
    assert r.status_code == 303, r.text
    return client


@pytest.fixture
def cora(stack: Stack) -> Iterator[httpx.Client]:
    client = sign_in(stack)
    yield client
    client.close()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def families_json(s: Stack, **params: Any) -> list[dict[str, Any]]:
    r = s.linkage.get("/families", params={"limit": 1000, **params}, headers=auth("analyst"))
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["families"]
    return rows


def listed(html: str) -> list[str]:
    return re.findall(r'<a class="govuk-link app-mono" href="/families/(fam_[0-9a-f]+)">', html)


def test_every_page_renders(stack, cora):
    top = families_json(stack, eligible="true")[0]["family_id"]
    pages = [
        "/families",
        "/families?eligible=all",
        f"/families/{top}",
        "/claims",
        "/reports",
        "/review",
        "/charts",
        *(f"/reports/{name}" for name in REPORTS),
    ]
    for path in pages:
        r = cora.get(path)
        assert r.status_code == 200, (path, r.text[-2000:])
        assert "<h1" in r.text and "There is a problem" not in r.text, path
        assert "Content-Security-Policy" in r.headers
    home = cora.get("/families").text
    assert top in listed(home)
    # colour never alone: the band and any step are written out
    assert re.search(r"govuk-tag--red\">High", home)


def test_the_work_list_filters(stack, cora):
    eligible = families_json(stack, eligible="true")
    district = next(f["postcode_district"] for f in eligible if f["postcode_district"])
    page = cora.get("/families", params={"area": district.lower()}).text
    assert set(listed(page)) == {
        f["family_id"] for f in eligible if f["postcode_district"] == district
    }
    page = cora.get("/families", params={"problem": "domestic_abuse"}).text
    wanted = [f["family_id"] for f in eligible if "domestic_abuse" in f["problems_met"]]
    assert wanted and listed(page) == wanted[:50]
    page = cora.get("/families", params={"band": "high"}).text
    assert listed(page) == [f["family_id"] for f in eligible if f["score"] >= 40][:50]
    page = cora.get("/families", params={"band": "low", "eligible": "all"}).text
    everyone = families_json(stack)
    assert listed(page) == [f["family_id"] for f in everyone if f["score"] < 20][:50]
    assert "Next" in page and "offset=50" in page  # paging keeps the filters
    second = cora.get("/families", params={"band": "low", "eligible": "all", "offset": 50}).text
    assert listed(second) == [f["family_id"] for f in everyone if f["score"] < 20][50:100]
    page = cora.get("/families", params={"status": "closed"}).text
    assert listed(page) == [] and "No families match" in page


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"area": "not a district"}, "Enter a postcode district"),
        ({"problem": "dragons"}, "Choose a problem from the list"),
        ({"status": "lost"}, "Choose a status from the list"),
        ({"band": "extreme"}, "Choose a score band"),
        ({"offset": "-3"}, "not a whole number"),
        ({"offset": "9" * 30}, "not a whole number"),
    ],
)
def test_bad_filters_get_an_error_summary(cora, params, message):
    r = cora.get("/families", params=params)
    assert r.status_code == 400
    assert "There is a problem" in r.text and message in r.text
    field = next(iter(params))
    assert f'href="#{field}"' in r.text and f'id="{field}"' in r.text


def test_bad_report_and_claims_input(cora):
    r = cora.get("/reports/progress-data", params={"cohort": "last year"})
    assert r.status_code == 400 and "Enter a cohort quarter" in r.text
    assert cora.get("/reports/nonsense").status_code == 404
    assert cora.get("/reports/nonsense.csv").status_code == 404
    r = cora.get("/claims", params={"window_id": "soon"})
    assert r.status_code == 400 and "Enter a claim window" in r.text
    r = cora.get("/families/not%20an%20id")
    assert r.status_code in (404, 422) and r.status_code != 500
    r = cora.get("/families/fam_00000000000000ff")
    assert r.status_code == 404 and "Not found" in r.text


def test_attach_with_csrf_then_claims_and_csv(stack, cora):
    identified = families_json(stack, eligible="true", status="identified")
    fid = identified[-1]["family_id"]
    page = cora.get(f"/families/{fid}").text
    assert "Why this score" in page and "Change status" in page
    token = csrf_of(page)
    form = {"status": "attached", "reason": "WORK_STARTED", "on": AS_AT.isoformat()}
    r = cora.post(f"/families/{fid}/status", data=form)  # no token
    assert r.status_code == 403
    r = cora.post(f"/families/{fid}/status", data={**form, "csrf_token": "forged"})
    assert r.status_code == 403
    assert families_json(stack, status="identified", eligible="true")[-1]["family_id"] == fid
    r = cora.post(
        f"/families/{fid}/status", data={**form, "reason": "lower case", "csrf_token": token}
    )
    assert r.status_code == 400 and "Enter a reason code" in r.text and 'href="#reason"' in r.text
    r = cora.post(f"/families/{fid}/status", data={**form, "on": "1/11/26", "csrf_token": token})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.text
    # dates the linkage service refuses, said beside the date with what was entered kept
    tomorrow = (dt.datetime.now(ENGLAND).date() + dt.timedelta(days=1)).isoformat()
    early = (AS_AT - dt.timedelta(days=400)).isoformat()
    for day, why in ((tomorrow, "is after today"), (early, "before the family was identified")):
        r = cora.post(f"/families/{fid}/status", data={**form, "on": day, "csrf_token": token})
        assert r.status_code == 400 and why in r.text and 'href="#on"' in r.text, day
        assert f'value="{day}"' in r.text
    assert families_json(stack, status="identified", eligible="true")[-1]["family_id"] == fid
    r = cora.post(f"/families/{fid}/status", data={**form, "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == f"/families/{fid}"
    page = cora.get(f"/families/{fid}").text
    assert f"Family {fid} is now attached." in page
    assert "Distance travelled" in page and "Domain scores" in page and "Outcomes" in page
    assert "WORK_STARTED" in page
    view = stack.linkage.get(f"/families/{fid}", headers=auth("analyst")).json()
    assert view["status"] == "attached" and view["attached_on"] == AS_AT.isoformat()
    # the same move again: the linkage service's refusal (409), beside the form
    r = cora.post(f"/families/{fid}/status", data={**form, "csrf_token": token})
    assert r.status_code == 400 and "already attached" in r.text and 'href="#status"' in r.text
    # a claim batch, then the claims page and the evidence export
    window = f"{AS_AT.year}-H{1 if AS_AT.month <= 6 else 2}"
    claims_page = cora.get("/claims").text
    assert cora.post("/claims", data={"window_id": window}).status_code == 403
    r = cora.post("/claims", data={"window_id": "soon", "csrf_token": csrf_of(claims_page)})
    assert r.status_code == 400 and "Enter a claim window" in r.text
    r = cora.post("/claims", data={"window_id": window, "csrf_token": csrf_of(claims_page)})
    assert r.status_code == 303 and r.headers["location"] == f"/claims?window_id={window}"
    page = cora.get("/claims", params={"window_id": window}).text
    assert f"Claims for {window}: 1 attachment, 0 result, £1,000 in all." in page
    assert fid in page and "£1,000" in page and "Evidence for claim" in page
    r = cora.get("/claims/export.csv", params={"window_id": window})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="claims-{window}.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and {row["family_id"] for row in rows} >= {fid}
    r = cora.get("/reports/status.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    status_rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sum(int(x["attached"]) for x in status_rows) >= 1 and "ruleset_sha256" in status_rows[0]
    r = cora.get("/reports/work-list.csv", params={"problem": "domestic_abuse"})
    assert r.status_code == 200 and "domestic_abuse" in r.text
    charts = cora.get("/charts").text
    assert "Claims per window" in charts and window in charts


def test_review_decision_needs_csrf(stack, cora):
    page = cora.get("/review").text
    pair = re.search(r'action="/review/(\d+)/(\d+)/decision"', page)
    assert pair, "no pair in the queue"
    a, b = pair.groups()
    form = {"decision": "non_match", "reason": "DIFFERENT_PERSON"}
    assert cora.post(f"/review/{a}/{b}/decision", data=form).status_code == 403
    bad = {"reason": "no reason!", "csrf_token": csrf_of(page)}
    r = cora.post(f"/review/{a}/{b}/decision", data=bad)
    assert r.status_code == 400 and "There is a problem" in r.text
    assert f'href="#pair-{a}-{b}-match"' in r.text and f'id="pair-{a}-{b}-match"' in r.text
    assert f'href="#pair-{a}-{b}-reason"' in r.text and 'value="NO REASON!"' in r.text
    r = cora.post(f"/review/{a}/{b}/decision", data={**form, "csrf_token": csrf_of(page)})
    assert r.status_code == 303
    after = cora.get("/review").text
    assert f"Records {a} and {b}: not the same person (DIFFERENT_PERSON)." in after
    decisions = stack.linkage.get(
        "/review/decisions", params={"record_id": a}, headers=auth("analyst")
    ).json()["decisions"]
    assert any(
        d["decision"] == "non_match"
        and {d["a"]["record_id"], d["b"]["record_id"]} == {int(a), int(b)}
        for d in decisions
    )


def test_a_decision_in_force_is_changed_on_the_decisions_page(stack, cora):
    page = cora.get("/review").text
    a, b = re.search(r'action="/review/(\d+)/(\d+)/decision"', page).groups()
    form = {"decision": "match", "reason": "SAME_PERSON", "csrf_token": csrf_of(page)}
    assert cora.post(f"/review/{a}/{b}/decision", data=form).status_code == 303
    # deciding it again from a stale queue page: said beside the pair, with where to change it
    r = cora.post(f"/review/{a}/{b}/decision", data={**form, "decision": "non_match"})
    assert r.status_code == 400 and "already decided match" in r.text
    assert "changed under Review decisions" in r.text
    listing = cora.get("/review/decisions").text
    card = f'id="decision-{a}-{b}"'
    assert card in listing and "Match: same person (SAME_PERSON)" in listing
    action = f"/review/{a}/{b}/change"
    assert f'action="{action}"' in listing
    change = {"decision": "non_match", "reason": "TWIN"}
    assert cora.post(action, data=change).status_code == 403  # no CSRF token
    r = cora.post(action, data={"decision": "", "reason": "x", "csrf_token": csrf_of(listing)})
    assert r.status_code == 400 and f'href="#decision-{a}-{b}-match"' in r.text
    assert f'href="#decision-{a}-{b}-reason"' in r.text
    r = cora.post(action, data={**change, "csrf_token": csrf_of(listing)})
    assert r.status_code == 303 and r.headers["location"] == "/review/decisions"
    after = cora.get("/review/decisions").text
    assert f"Records {a} and {b}: changed to not the same person (TWIN)" in after
    assert "Not a match (TWIN), change 1 on this pair" in after
    decisions = stack.linkage.get(
        "/review/decisions", params={"record_id": a}, headers=auth("analyst")
    ).json()["decisions"]
    mine = [d for d in decisions if {d["a"]["record_id"], d["b"]["record_id"]} == {int(a), int(b)}]
    assert [(d["version"], d["decision"], d["current"]) for d in mine] == [
        (1, "match", False),
        (2, "non_match", True),
    ]
    r = cora.get("/review/decisions", params={"after": "soon"})
    assert r.status_code == 400 and "not a whole number" in r.text


def test_other_roles_and_no_session_are_refused(stack):
    code = pyotp.parse_uri(stack.pro_totp).now()
    pat = sign_in(stack, "pat", code)
    for path in (
        "/families",
        "/charts",
        "/claims",
        "/review",
        "/review/decisions",
        "/reports/status",
    ):
        r = pat.get(path)
        assert r.status_code == 403 and "You cannot do this" in r.text, path
    with httpx.Client(transport=stack.transport, base_url="http://web") as anyone:
        r = anyone.get("/families?band=high")
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=")
        r = anyone.post("/families/fam_00000000000000ff/status", data={"status": "closed"})
        assert r.status_code == 401


def test_status_moves_match_the_linkage_service():
    assert TRANSITIONS == LINKAGE_TRANSITIONS


def test_charts_are_accessible_svg_with_escaped_text():
    svg = str(bar_chart("Families <by> area", [("M15 & co", 3.0), ("B1", -2.0)], unit=" families"))
    assert svg.startswith('<svg class="app-chart" role="img" aria-labelledby="')
    assert "<title id=" in svg and "<desc id=" in svg and "M15 &amp; co" in svg
    assert "&lt;by&gt;" in svg and "<by>" not in svg and "style=" not in svg
    assert "3 families" in svg and "-2 families" in svg  # values as text, not colour alone
    assert bins([0, 9, 10, 41, 45], 10) == [
        ("0–9", 2),
        ("10–19", 1),
        ("20–29", 0),
        ("30–39", 0),
        ("40–49", 2),
    ]
    hist = str(
        histogram("Scores", [1, 12, 44], bin_width=10, threshold=40, threshold_label="unlock")
    )
    assert "unlock (40)" in hist and 'stroke-dasharray="6 4"' in hist
    line = str(
        line_chart("Scores", {"A": [("c1", 1.0), ("c2", 3.0)], "B": [("c1", 2.0)]}, reference=2)
    )
    assert "<polyline" in line and "baseline (2)" in line and ">A<" in line and ">B<" in line
    assert "No data" in str(bar_chart("Empty", []))
