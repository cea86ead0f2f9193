"""A professional's journey in a real browser: load the key, ask for a family,
open the release grouped into people, download the receipt; a request that
needs approval, approved by a team manager on the approvals page.

Every response the web server sent the browser is checked for plaintext
identities: they exist only in the browser, after it opened the sealed release
with the professional's key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

from protocols import ReleasedAnswer, RequestView
from unlock_service import UnlockClient, load_professional_key
from unlock_service._cli import main

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


def _status(page: Any) -> str:
    """The request page's status tag, in words."""
    return str(page.locator("#decision .govuk-tag").inner_text()).strip()


def _rows(page: Any) -> dict[str, str]:
    """The request page's summary: each row's label and its text."""
    page.locator("#decision dl").wait_for()
    keys = page.locator("#decision dt").all_inner_texts()
    values = page.locator("#decision dd").all_inner_texts()
    return {k.strip(): v.strip() for k, v in zip(keys, values, strict=True)}


def _cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``unlock-service`` run in this process: its exit status, stdout and stderr."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _as(web: WebStack, name: str, key_of: str | None = None) -> list[str]:
    """The professional options of ``request`` / ``release`` for ``name`` (signed with
    ``key_of``'s key if given)."""
    key, token = web.files(name)
    if key_of is not None:
        key, _token = web.files(key_of)
    url = web.stack.url("unlock-service")
    return ["--url", url, "--key", str(key), "--token-file", str(token)]


def _client(web: WebStack, name: str) -> UnlockClient:
    key, token = web.files(name)
    return UnlockClient(
        web.stack.url("unlock-service"),
        load_professional_key(key),
        token.read_text(encoding="utf-8").strip(),
    )


def _ask_on_the_command_line(web: WebStack, tmp_path: Path, capsys: Any) -> str:
    """A CASE_ALLOCATION request by the social worker with ``request``; its id."""
    why = tmp_path / "why.txt"
    why.write_text("The family met the threshold; allocating a key worker this week.\n")
    answer = tmp_path / "asked.json"
    code, out, err = _cli(
        capsys, "request", *_as(web, "social-worker"), "--family", web.family_id,
        "--purpose", "CASE_ALLOCATION", "--justification-file", str(why),
        "--answer", str(answer),
    )  # fmt: skip
    assert code == 0, err
    assert "is waiting for approval until" in out
    assert not answer.exists()  # nothing was released, so nothing saved
    match = re.search(r"request (req_[0-9a-f]+)", out)
    assert match, out
    return match.group(1)


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
    web_stack: WebStack, browser: Any, tmp_path: Path, capsys: Any
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
        assert _status(page) == "Waiting for approval"
        assert "Waiting for approval until" in _rows(page)
        assert "Grant expires" not in _rows(page)

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
        page.get_by_role("button", name="Release and open the identities").wait_for()
        assert _status(page) == "Granted"
        rows = _rows(page)
        assert "Grant expires" in rows and "Waiting for approval until" not in rows
        page.get_by_role("button", name="Release and open the identities").click()
        page.get_by_role("heading", name="Receipt").wait_for()
        assert page.locator("#release .govuk-summary-card").count() >= 2
        assert _status(page) == "Released"
        rows = _rows(page)
        assert "Released" in rows and "Grant expires" not in rows
        check_accessible(page)

        # the sealed answer, downloaded from the tab (no second release), opens
        # with the professional's key on the command line and with no other
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the sealed release").click()
        assert download.value.suggested_filename == f"release-{request_id}.json"
        saved = tmp_path / "release.json"
        download.value.save_as(saved)
        assert_no_plaintext(saved.read_text(), web_stack)
        assert ReleasedAnswer.model_validate_json(saved.read_bytes()).request_id == request_id
        key, _token = web_stack.files("social-worker")
        code, out, _err = _cli(capsys, "open-release", "--key", str(key), "--answer", str(saved))
        assert code == 0 and "people in" in out
        assert any(name in out for name in population_names(web_stack))
        other_key, _token = web_stack.files("team-manager")
        opened = ["open-release", "--answer", str(saved), "--key"]
        code, out, err = _cli(capsys, *opened, str(other_key))
        assert code == 2 and "the release does not open with this key" in err

        page.reload()  # the tab keeps the release; the service says released
        page.get_by_role("heading", name="Receipt").wait_for()
        assert _status(page) == "Released"
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


def test_the_command_line_asks_redeems_and_opens_a_grant(
    web_stack: WebStack, page: Any, tmp_path: Path, capsys: Any
) -> None:
    request_id = _ask_on_the_command_line(web_stack, tmp_path, capsys)
    sign_in(page, web_stack, "social-worker")
    page.goto(f"{web_stack.url}/requests/{request_id}")
    load_key(page, web_stack, "social-worker")
    assert _status(page) == "Waiting for approval"
    assert "Waiting for approval until" in _rows(page)
    # the team manager answers from the command line too: the request is listed, with why
    code, out, err = _cli(capsys, "approvals", *_as(web_stack, "team-manager"))
    assert code == 0, err
    assert request_id in out and "for CASE_ALLOCATION" in out and "allocating a key worker" in out
    # the requester cannot approve their own request
    approve = ["approve", "--request", request_id]
    code, _out, err = _cli(capsys, *approve, *_as(web_stack, "social-worker"))
    assert code == 2 and "SELF_APPROVAL" in err, err
    code, out, err = _cli(capsys, *approve, *_as(web_stack, "team-manager"))
    assert code == 0 and f"request {request_id}: granted" in out, err
    code, out, _err = _cli(capsys, "approvals", *_as(web_stack, "team-manager"))
    assert code == 0 and request_id not in out
    page.reload()
    page.get_by_role("button", name="Release and open the identities").wait_for()
    assert "Grant expires" in _rows(page)

    answer = tmp_path / "release.json"
    release = ["release", "--request", request_id, "--answer", str(answer)]
    # someone else's key with the social worker's token: refused, nothing spent
    code, _out, err = _cli(capsys, *release, *_as(web_stack, "social-worker", "team-manager"))
    assert code == 2 and "not released: SIGNATURE_INVALID (401)" in err, err
    assert not answer.exists()
    # the professional's own key: released, saved sealed (0600), then opened
    code, out, err = _cli(capsys, *release, *_as(web_stack, "social-worker"))
    assert code == 0, err
    assert f"request {request_id} released (audit entry" in out
    assert any(name in out for name in population_names(web_stack))
    assert answer.stat().st_mode & 0o777 == 0o600
    assert_no_plaintext(answer.read_text(), web_stack)
    assert ReleasedAnswer.model_validate_json(answer.read_bytes()).request_id == request_id
    # once only
    again = ["release", "--request", request_id, "--answer", str(tmp_path / "again.json")]
    code, _out, err = _cli(capsys, *again, *_as(web_stack, "social-worker"))
    assert code == 2 and "GRANT_USED" in err
    assert not (tmp_path / "again.json").exists()
    # the saved answer opens again with the key, and with no other
    key, _token = web_stack.files("social-worker")
    code, out, _err = _cli(capsys, "open-release", "--key", str(key), "--answer", str(answer))
    assert code == 0 and any(name in out for name in population_names(web_stack))
    other, _token = web_stack.files("team-manager")
    code, _out, err = _cli(capsys, "open-release", "--key", str(other), "--answer", str(answer))
    assert code == 2 and "the release does not open with this key" in err

    page.reload()
    page.locator("#decision dl").wait_for()
    assert _status(page) == "Released"
    rows = _rows(page)
    assert "Released" in rows and "Grant expires" not in rows
    assert "from the command line" in page.locator("#decision").inner_text()
    assert page.get_by_role("button", name="Release and open the identities").count() == 0


def test_refused_and_declined_requests_say_so(
    web_stack: WebStack, page: Any, tmp_path: Path, capsys: Any
) -> None:
    request_id = _ask_on_the_command_line(web_stack, tmp_path, capsys)
    decline = ["approve", "--request", request_id, "--decline"]
    code, out, err = _cli(capsys, *decline, *_as(web_stack, "team-manager"))
    assert code == 0 and f"request {request_id}: refused" in out, err
    sign_in(page, web_stack, "social-worker")
    page.goto(f"{web_stack.url}/requests/{request_id}")
    load_key(page, web_stack, "social-worker")
    assert _status(page) == "Refused"
    rows = _rows(page)
    assert "Refused" in rows
    assert not {"Waiting for approval until", "Grant expires", "Granted"} & rows.keys()
    check_accessible(page)

    why = tmp_path / "why-uncleared.txt"
    why.write_text("Checking the family for a safeguarding enquiry now.\n")
    code, _out, err = _cli(
        capsys, "request", *_as(web_stack, "uncleared"), "--family", web_stack.family_id,
        "--purpose", "SAFEGUARDING", "--justification-file", str(why),
        "--answer", str(tmp_path / "refused.json"),
    )  # fmt: skip
    assert code == 2 and "the request was refused: CLEARANCE_INSUFFICIENT (403)" in err, err
    assert not (tmp_path / "refused.json").exists()


# Every status a request can be in (protocols RequestStatus), as GET /unlocks/{id}
# answers it, with the labels its times must get. The ones the stack cannot reach
# in a test (expiry takes 15 minutes or a day, the others are transitional or an
# audit failure) are checked on the page's own function.
_PAST, _FUTURE = "2020-01-01T10:00:00Z", "2999-01-01T10:00:00Z"
_STATES = [
    ("evaluating", "GRANTED", None, None, None, "Being decided", {}),
    ("pending", "APPROVAL_REQUIRED", None, _FUTURE, None, "Waiting for approval",
     {"Waiting for approval until": _FUTURE}),
    ("pending", "APPROVAL_REQUIRED", None, _PAST, None, "Waiting for approval",
     {"Approval wait ended": _PAST}),
    ("deciding", "APPROVAL_REQUIRED", None, _FUTURE, None, "Approval being recorded",
     {"Waiting for approval until": _FUTURE}),
    ("granted", "GRANTED_WITH_APPROVAL", _PAST, _FUTURE, None, "Granted",
     {"Granted": _PAST, "Grant expires": _FUTURE}),
    ("releasing", "GRANTED", _PAST, _FUTURE, None, "Being released",
     {"Granted": _PAST, "Grant expires": _FUTURE}),
    ("released", "GRANTED", _PAST, _FUTURE, _FUTURE, "Released",
     {"Granted": _PAST, "Released": _FUTURE}),
    ("refused", "CLEARANCE_INSUFFICIENT", _PAST, None, None, "Refused", {"Refused": _PAST}),
    ("refused", "APPROVAL_DECLINED", _PAST, None, None, "Refused", {"Refused": _PAST}),
    ("refused", "FAMILY_OPTED_OUT", _PAST, _FUTURE, None, "Refused",
     {"Granted": _PAST, "Released": "No: the grant was stopped before release"}),
    ("expiring", "APPROVAL_REQUIRED", None, _PAST, None, "Expiring",
     {"Approval wait ended": _PAST}),
    ("expired", "REQUEST_EXPIRED", None, _PAST, None, "Expired",
     {"Approval wait ended": _PAST}),
    ("expired", "GRANT_EXPIRED", _PAST, _PAST, None, "Expired",
     {"Granted": _PAST, "Grant expired": _PAST}),
    ("expired", "GRANT_ABANDONED", _PAST, _FUTURE, None, "Expired",
     {"Granted": _PAST, "Released": "No: the grant was closed unused"}),
    ("audit_failed", "AUDIT_UNAVAILABLE", None, None, None, "Not recorded, nothing released",
     {"Released": "No"}),
]  # fmt: skip


def test_every_status_labels_its_times_for_what_they_are(web_stack: WebStack, page: Any) -> None:
    assert {s[0] for s in _STATES} == set(get_args(RequestView.model_fields["status"].annotation))
    sign_in(page, web_stack, "social-worker")
    got = page.evaluate(
        """async (states) => {
            const m = await import('/static/unlock.js')
            return states.map(([status, reason, decided, expires, released]) => [
              m.statusText(status),
              m.requestTimes({ status, reason, created_at: '2019-12-31T09:00:00Z',
                decided_at: decided, expires_at: expires, released_at: released })
                .map(([k, v]) => [k, String(v)])])
        }""",
        [list(s[:5]) for s in _STATES],
    )
    when = {_PAST: "1 January 2020 at 10:00 UTC", _FUTURE: "1 January 2999 at 10:00 UTC"}
    for (status, reason, *_times, words, times), (text, rows) in zip(_STATES, got, strict=True):
        assert text == words, (status, reason)
        assert rows[0] == ["Asked", "31 December 2019 at 9:00 UTC"]
        assert dict(rows[1:]) == {k: when.get(v, v) for k, v in times.items()}, (status, reason)
