"""The coordinator's journey in a real browser over the real services: find a
family with the filters, open it, attach it, make the window's claims and see
them, download a report as CSV, decide a review pair; axe-core on every page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

from .conftest import WebStack, assert_no_plaintext, check_accessible, screenshot, sign_in


def shown(locator: Any) -> bool:
    """Wait (up to 10 s) for ``locator`` to be visible: after a click the next page
    may still be loading."""
    locator.wait_for(state="visible", timeout=10_000)
    return True


def _find_family(page: Any, web: WebStack) -> None:
    """Page through the high-score band until the family's link shows."""
    link = page.locator(f'a[href="/families/{web.family_id}"]')
    for _ in range(20):
        if link.count():
            return
        with page.expect_navigation():
            page.get_by_role("link", name="Next page").click()
    raise AssertionError(f"{web.family_id} not in the high band's pages")


def test_coordinator_journey(web_stack: WebStack, page: Any, tmp_path: Path) -> None:
    web = web_stack
    sign_in(page, web, "coordinator")
    assert shown(page.get_by_role("heading", name="Families", exact=True))
    check_accessible(page)

    # find the family: the high score band, then its own area as well
    page.get_by_label("Score band").select_option("high")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"band=high"))
    _find_family(page, web)
    row = page.locator("tr", has=page.locator(f'a[href="/families/{web.family_id}"]'))
    assert "High" in row.inner_text()  # the band in words, not colour alone
    district = row.locator("td").nth(1).inner_text().strip()
    if district != "–":
        page.get_by_label("Area (postcode district)").fill(district)
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_url(re.compile(rf"area={district}.*band=high"))
        assert page.locator(f'a[href="/families/{web.family_id}"]').count() == 1
        assert page.get_by_label("Score band").input_value() == "high"
    check_accessible(page)
    screenshot(page, "coordinator-families.png")
    # a bad filter: an error summary that links to the field
    page.get_by_label("Area (postcode district)").fill("not a district")
    page.get_by_role("button", name="Apply filters").click()
    assert shown(page.get_by_text("There is a problem"))
    check_accessible(page)

    # open it: the score explained, then attach it
    page.goto(f"{web.url}/families/{web.family_id}")
    assert shown(page.get_by_role("heading", name="Why this score"))
    reasons = page.locator("table", has=page.get_by_text("Reason codes: their points"))
    points = [
        int(t) for t in reasons.locator("tbody td.govuk-table__cell--numeric").all_inner_texts()
    ]
    total = int(reasons.locator("tfoot td").inner_text())
    assert points and sum(points) == total >= web.threshold
    check_accessible(page)
    # the main content (the account bar names the demo coordinator, Casey, a name the
    # synthetic population has too)
    assert_no_plaintext(page.locator("main").inner_html(), web)
    page.get_by_label(re.compile(r"^Attached")).check()
    page.get_by_label("Reason code").fill("WORK_STARTED")
    page.get_by_role("button", name="Change status").click()
    assert shown(page.get_by_text(f"Family {web.family_id} is now attached."))
    assert shown(page.get_by_role("heading", name="Distance travelled"))
    assert shown(page.get_by_text("Domain scores"))
    check_accessible(page)
    screenshot(page, "coordinator-family.png")

    # claims: make this half-year's claims, see the family's attachment fee
    today = dt.date.today()
    window = f"{today.year}-H{1 if today.month <= 6 else 2}"
    page.get_by_role("link", name="Claims", exact=True).click()
    check_accessible(page)
    page.get_by_label("Make the claims for a window").fill(window)
    page.get_by_role("button", name="Make claims").click()
    assert shown(page.get_by_text(f"Claims for {window}:"))
    row = page.locator("tr", has=page.locator(f'a[href="/families/{web.family_id}"]'))
    assert "Attachment" in row.inner_text() and "£1,000" in row.inner_text()
    check_accessible(page)
    with page.expect_download() as got:
        page.get_by_role("link", name=re.compile("Download the claims")).click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text("utf-8"))))
    assert web.family_id in {r["family_id"] for r in rows}

    # a report as a page, and its CSV
    page.get_by_role("link", name="Reports", exact=True).click()
    check_accessible(page)
    page.get_by_role("link", name="Families by status and area", exact=True).click()
    assert shown(page.get_by_role("heading", name="Families by status and area"))
    check_accessible(page)
    with page.expect_download() as got:
        page.get_by_role("link", name="Download this report (CSV)").click()
    text = Path(got.value.path()).read_text("utf-8")
    status_rows = list(csv.DictReader(io.StringIO(text)))
    assert sum(int(r["attached"]) for r in status_rows) >= 1
    assert "ruleset_sha256" in status_rows[0]
    assert_no_plaintext(text, web)

    # the review queue: decide the first pair
    page.get_by_role("link", name="Review", exact=True).click()
    check_accessible(page)
    card = page.locator(".govuk-summary-card").first
    title = card.locator("h2").inner_text()
    a, b = re.findall(r"Records (\d+) .* and (\d+) ", title)[0]
    card.get_by_label("Not a match").check()
    card.get_by_label("Reason code").fill("DIFFERENT_PERSON")
    card.get_by_role("button", name=re.compile("Record decision")).click()
    assert shown(page.get_by_text(f"Records {a} and {b}: not the same person"))
    check_accessible(page)
    # decided wrongly: changed on the decisions page, as the pair's next version
    page.get_by_role("link", name="see or change the decisions in force").click()
    check_accessible(page)
    card = page.locator(f"#decision-{a}-{b}")
    assert shown(card.get_by_text("Not a match (DIFFERENT_PERSON)"))
    card.get_by_label("Match: same person").check()
    card.get_by_label("Reason code for the change").fill("DATE_TYPO")
    card.get_by_role("button", name=re.compile("Change decision")).click()
    assert shown(page.get_by_text(f"Records {a} and {b}: changed to the same person"))
    assert shown(page.locator(f"#decision-{a}-{b}").get_by_text("change 1 on this pair"))
    check_accessible(page)

    # the charts, each with its table
    page.get_by_role("link", name="Charts", exact=True).click()
    assert page.locator("svg[role=img]").count() >= 5
    caption = page.locator("caption", has_text="eligible families by score")
    assert f"unlock threshold {int(web.threshold)}" in caption.inner_text()
    check_accessible(page)
    screenshot(page, "coordinator-charts.png")
