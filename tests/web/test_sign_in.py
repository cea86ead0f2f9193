"""Sign-in in a real browser: the form, a wrong password, TOTP, sign-out, CSRF."""

from __future__ import annotations

from typing import Any

from .conftest import WebStack, check_accessible, screenshot, sign_in


def test_sign_in_page_is_accessible_and_refuses_a_wrong_password(
    web_stack: WebStack, page: Any
) -> None:
    page.goto(f"{web_stack.url}/families")
    assert "/sign-in" in page.url  # sent to sign in first
    check_accessible(page)
    screenshot(page, "sign-in.png")
    page.get_by_label("User name").fill("coordinator")
    page.get_by_label("Password", exact=True).fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text("There is a problem").is_visible()
    check_accessible(page)  # the error summary too


def test_coordinator_signs_in_lands_on_families_and_signs_out(
    web_stack: WebStack, page: Any
) -> None:
    sign_in(page, web_stack, "coordinator")
    assert page.url.endswith("/families")
    assert page.get_by_role("heading", name="Families").is_visible()
    check_accessible(page)
    page.get_by_role("button", name="Sign out").click()
    assert "/sign-in" in page.url
    page.goto(f"{web_stack.url}/families")
    assert "/sign-in" in page.url  # the session is gone


def test_ig_officer_needs_a_totp_code(web_stack: WebStack, page: Any) -> None:
    account = web_stack.accounts["ig-officer"]
    page.goto(f"{web_stack.url}/sign-in")
    page.get_by_label("User name").fill(account.username)
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text("There is a problem").is_visible()  # no code: refused
    sign_in(page, web_stack, "ig-officer")
    assert "/sign-in" not in page.url


def test_a_page_of_another_role_is_refused(web_stack: WebStack, page: Any) -> None:
    sign_in(page, web_stack, "coordinator")
    response = page.goto(f"{web_stack.url}/relay/unlock/unlocks")
    assert response is not None and response.status == 403
