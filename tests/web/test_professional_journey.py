"""A professional's journey in a real browser: load the key, ask for a family,
open the release grouped into people, download the receipt; a request that
needs approval, approved by a team manager on the approvals page.

Every response the web server sent the browser is checked for plaintext
identities: they exist only in the browser, after it opened the sealed release
with the professional's key.
"""

from __future__ import annotations

from typing import Any

from .conftest import (
    WebStack,
    assert_no_plaintext,
    check_accessible,
    load_key,
    new_page,
    population_names,
    screenshot,
    sign_in,
)


def _record_responses(page: Any, web: WebStack) -> list[str]:
    bodies: list[str] = []

    def keep(response: Any) -> None:
        if response.url.startswith(web.url) and "/static/" not in response.url:
            try:
                bodies.append(response.text())
            except Exception:  # a redirect has no body to read
                pass

    page.on("response", keep)
    return bodies


def test_social_worker_asks_for_a_family_and_opens_it_in_the_browser(
    web_stack: WebStack, page: Any
) -> None:
    bodies = _record_responses(page, web_stack)
    sign_in(page, web_stack, "social-worker")
    assert page.url.endswith("/requests")
    page.goto(f"{web_stack.url}/requests/new?family={web_stack.family_id}")
    check_accessible(page)  # the key panel
    load_key(page, web_stack, "social-worker")
    page.get_by_label("Child safeguarding enquiry").check()
    page.get_by_label("Justification").fill(
        "Section 47 enquiry opened today after a referral from the school."
    )
    check_accessible(page)
    page.get_by_role("button", name="Send the request").click()
    page.wait_for_url("**/requests/req_*")
    page.get_by_role("heading", name="Receipt").wait_for()
    heading = page.locator("#release h2").first.inner_text()
    assert f"people in family {web_stack.family_id}" in heading
    people = page.locator("#release .govuk-summary-card").count()
    assert people >= 2
    text = page.locator("#release").inner_text()
    assert "Known to" in text
    assert any(name in text for name in population_names(web_stack))  # opened here
    check_accessible(page)
    screenshot(page, "professional-release.png")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the receipt").click()
    assert download.value.suggested_filename.startswith("receipt-req_")
    for body in bodies:
        assert_no_plaintext(body, web_stack)

    page.goto(f"{web_stack.url}/requests")
    page.locator("#requests table").wait_for()
    assert "Released" in page.locator("#requests").inner_text()
    check_accessible(page)
    screenshot(page, "professional-requests.png")


def test_a_request_needing_approval_is_approved_on_the_approvals_page(
    web_stack: WebStack, browser: Any
) -> None:
    page = new_page(browser)
    other = new_page(browser)
    try:
        sign_in(page, web_stack, "social-worker")
        page.goto(f"{web_stack.url}/requests/new?family={web_stack.family_id}")
        load_key(page, web_stack, "social-worker")
        page.get_by_label("Allocating a key worker").check()
        page.get_by_label("Justification").fill(
            "The family met the threshold; allocating a key worker this week."
        )
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_url("**/requests/req_*")
        request_id = page.url.rsplit("/", 1)[1]
        page.locator("#decision dl").wait_for()
        assert "Pending" in page.locator("#decision").inner_text()

        sign_in(other, web_stack, "team-manager")
        other.goto(f"{web_stack.url}/approvals")
        load_key(other, web_stack, "team-manager")
        card = other.locator(".govuk-summary-card", has_text=request_id)
        card.wait_for()
        check_accessible(other)
        screenshot(other, "professional-approvals.png")
        card.get_by_role("button", name="Approve").click()
        other.get_by_text(f"Approved: {request_id}").wait_for()

        page.reload()
        page.get_by_role("button", name="Release and open the identities").click()
        page.get_by_role("heading", name="Receipt").wait_for()
        assert page.locator("#release .govuk-summary-card").count() >= 2
        assert not page.problems and not other.problems
    finally:
        page.context.close()
        other.context.close()


def test_a_refusal_says_why_in_plain_language(web_stack: WebStack, page: Any) -> None:
    sign_in(page, web_stack, "uncleared")
    page.goto(f"{web_stack.url}/requests/new?family={web_stack.family_id}")
    load_key(page, web_stack, "uncleared")
    page.get_by_label("Child safeguarding enquiry").check()
    page.get_by_label("Justification").fill("Checking the family for a safeguarding enquiry now.")
    page.get_by_role("button", name="Send the request").click()
    summary = page.locator(".govuk-error-summary")
    summary.wait_for()
    assert "Your request was refused" in summary.inner_text()
    assert "audit log" in summary.inner_text()
    check_accessible(page)


def test_a_key_file_of_someone_else_is_refused(web_stack: WebStack, page: Any) -> None:
    sign_in(page, web_stack, "social-worker")
    page.goto(f"{web_stack.url}/requests")
    _key, token = web_stack.files("uncleared")
    key, _token = web_stack.files("social-worker")
    page.set_input_files("#key-file", str(key))
    page.set_input_files("#token-file", str(token))
    page.get_by_role("button", name="Load key").click()
    summary = page.locator(".govuk-error-summary")
    summary.wait_for()
    assert "not for you" in summary.inner_text()
