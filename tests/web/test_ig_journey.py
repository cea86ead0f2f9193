"""The IG officer's journey in a real browser over the real services: sign in
with TOTP, browse the audit log filtered by the family a professional unlocked,
check the checkpoint status, upload the unlock's receipt and see it verified,
open the anomaly report; axe-core on every page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy._journey import unlock

from .conftest import WebStack, check_accessible, load_key, screenshot, sign_in


@pytest.fixture(scope="module")
def released(web_stack: WebStack) -> dict[str, Any]:
    """The social worker's grant of the demo family (as ``family-linkage demo`` does)."""
    worker = web_stack.professionals["social-worker"]
    answer = unlock(web_stack.stack, worker, web_stack.family_id)
    assert answer.status_code == 200, answer.body
    return answer.body


def test_ig_officer_journey(
    web_stack: WebStack, page: Any, released: dict[str, Any], tmp_path: Path
) -> None:
    sign_in(page, web_stack, "ig-officer")
    assert page.url.endswith("/audit")
    assert page.get_by_role("heading", name="Audit log").is_visible()
    check_accessible(page)

    # the log, filtered by the family that was unlocked
    page.get_by_label("Family id").fill(web_stack.family_id)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state("networkidle")
    assert f"family={web_stack.family_id}" in page.url
    table = page.locator("table.govuk-table").first
    assert table.get_by_text("Unlock request").first.is_visible()
    assert table.get_by_text("Granted").first.is_visible()
    assert table.get_by_text(str(released["audit_index"]), exact=True).first.is_visible()
    other_families = page.locator(
        f"a[href^='/audit?family=']:not([href='/audit?family={web_stack.family_id}'])"
    )
    assert other_families.count() == 0
    check_accessible(page)
    screenshot(page, "ig-audit.png")

    # checkpoint status: verified with the pinned keys, twice (the second is consistent)
    page.get_by_role("link", name="Checkpoints").click()
    assert page.get_by_role("heading", name="Checkpoint verified").is_visible()
    check_accessible(page)
    page.reload()
    assert page.get_by_role("heading", name="Checkpoint verified").is_visible()
    assert page.get_by_text("Checkpoint failed verification").count() == 0

    # the receipt the release came with, uploaded with its entry
    index = released["audit_index"]
    receipt = tmp_path / f"receipt-{index}.proof"
    receipt.write_text(released["receipt"], encoding="utf-8")
    entry = tmp_path / f"entry-{index}.json"
    entry.write_bytes(released["leaf"].encode("utf-8"))
    page.get_by_role("link", name="Receipts").click()
    page.get_by_label("Receipt file").wait_for()  # the receipts page, not the one before
    check_accessible(page)
    page.get_by_label("Receipt file").set_input_files(str(receipt))
    page.get_by_label("Entry file").set_input_files(str(entry))
    page.get_by_role("button", name="Check receipt").click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", name="Receipt verified").is_visible()
    assert page.get_by_text(f"Entry {index} is in the audit log").is_visible()
    assert page.get_by_text(web_stack.family_id).first.is_visible()
    check_accessible(page)
    screenshot(page, "ig-receipt.png")

    # the receipt alone, as the professional downloads it: the entry is read from the log
    alone = tmp_path / f"receipt-{released['request_id']}.txt"
    alone.write_text(released["receipt"], encoding="utf-8")
    page.get_by_label("Receipt file").set_input_files(str(alone))
    page.get_by_role("button", name="Check receipt").click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", name="Receipt verified").is_visible()
    assert page.get_by_text("the entry was read from the audit log").is_visible()

    # a forged file: an error summary naming the problem, still accessible
    forged = tmp_path / "forged.proof"
    forged.write_text(released["receipt"].replace(f"index {index}", f"index {index + 1}", 1))
    page.get_by_label("Receipt file").set_input_files(str(forged))
    page.get_by_label("Entry file").set_input_files(str(entry))
    page.get_by_role("button", name="Check receipt").click()
    page.wait_for_load_state("networkidle")
    summary = page.locator(".govuk-error-summary")
    assert summary.is_visible()
    assert "does not prove this entry" in summary.inner_text()
    check_accessible(page)

    # the anomaly report: tables and charts
    page.get_by_role("link", name="Anomalies").click()
    assert page.get_by_role("heading", name="Anomaly report").is_visible()
    assert page.locator("svg[role='img']").count() == 2
    assert page.get_by_role("table").filter(has_text="Unlocks granted per professional").count()
    check_accessible(page)
    screenshot(page, "ig-anomalies.png")


def _break_glass(web: WebStack, name: str) -> str:
    """``name`` uses break-glass on the demo family (opening a review task); the request id."""
    from unlock_service import UnlockClient, load_professional_key

    stack = web.stack
    key_file, token_file = web.files(name)  # the JWT the stack issued at start
    key = load_professional_key(key_file)
    token = token_file.read_text(encoding="utf-8").strip()
    with UnlockClient(stack.url("unlock-service"), key, token) as client:
        answer = client.unlock(
            web.family_id,
            "EMERGENCY",
            "Police report an immediate risk to a child tonight; no manager is reachable.",
            break_glass=True,
        )
    assert answer.status_code == 200, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


def test_ig_officer_reviews_a_break_glass_use(web_stack: WebStack, page: Any) -> None:
    request_id = _break_glass(web_stack, "team-manager")
    sign_in(page, web_stack, "ig-officer")
    page.goto(f"{web_stack.url}/audit/reviews")
    check_accessible(page)  # the key panel
    load_key(page, web_stack, "ig-officer")
    card = page.locator(".govuk-summary-card").filter(has_text=request_id)
    card.wait_for()
    assert card.get_by_text("Due in 3 days").is_visible()
    check_accessible(page)
    screenshot(page, "ig-reviews.png")
    # nothing chosen: an error summary linked to the fields
    card.get_by_role("button", name="Record the outcome").click()
    summary = page.locator(".govuk-error-summary")
    assert "Choose whether the break-glass use" in summary.inner_text()
    check_accessible(page)
    card.get_by_label("Yes: uphold it").check()
    card.get_by_label("Review notes").fill("Police log confirms the risk; manager unreachable.")
    card.get_by_role("button", name="Record the outcome").click()
    page.get_by_text(f"Review of {request_id} recorded (Upheld)").wait_for()
    closed = page.get_by_role("table").filter(has_text="Reviewed")
    closed.get_by_text(request_id).wait_for()  # the lists load after the banner
    assert page.locator(".govuk-summary-card").filter(has_text=request_id).count() == 0
    check_accessible(page)


def test_ig_officer_runs_a_subject_access_search(
    web_stack: WebStack, page: Any, tmp_path: Path
) -> None:
    import csv

    from agency_client import load_schema, load_secret
    from agency_client._subject import subject_query

    truth = web_stack.stack.run_dir / "population" / "truth"
    with (truth / "persons.csv").open(newline="") as handle:
        person = next(csv.DictReader(handle))
    with (truth / "households.csv").open(newline="") as handle:
        postcode = next(
            h["postcode"]
            for h in csv.DictReader(handle)
            if h["household_id"] == person["household_id"]
        )
    query = subject_query(
        {
            "given_names": person["given_name"],
            "family_name": person["family_name"],
            "date_of_birth": person["date_of_birth"],
            "sex": person["sex"],
            "postcode": postcode,
        },
        load_schema(None),
        load_secret(web_stack.stack.key("agency-health", "linkage-secret.json")),
    )
    query_file = tmp_path / "query.json"
    query_file.write_text(query.model_dump_json())
    assert person["family_name"] not in query_file.read_text()

    sign_in(page, web_stack, "ig-officer")
    page.goto(f"{web_stack.url}/audit/subject-access")
    load_key(page, web_stack, "ig-officer")
    check_accessible(page)
    page.get_by_role("button", name="Search").click()  # no file: error summary
    assert "Choose the subject query file" in page.locator(".govuk-error-summary").inner_text()
    page.set_input_files("#query-file", str(query_file))
    page.get_by_role("button", name="Search").click()
    page.get_by_role("heading", name="What is held").wait_for()
    identities = page.get_by_role("table").filter(has_text="Identities the agencies hold")
    assert identities.get_by_text(person["family_name"]).first.is_visible()
    records = page.get_by_role("table").filter(has_text="Records")
    assert records.get_by_role("columnheader", name="Held").is_visible()
    assert records.get_by_role("cell", name="Live").first.is_visible()
    check_accessible(page)
    screenshot(page, "ig-subject-access.png")
