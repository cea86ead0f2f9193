"""The IG officer's journey in a real browser over the real services: sign in
with TOTP, browse the audit log filtered by the family a professional unlocked,
check the checkpoint status, upload the unlock's receipt and see it verified,
open the anomaly report; axe-core on every page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy._journey import unlock

from .conftest import WebStack, check_accessible, screenshot, sign_in


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
