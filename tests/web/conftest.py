"""Browser tests: the web pages over the real services, in headless Chromium.

``web_stack`` runs the whole local stack once per session (witness, linkage
service, unlock service, web service as processes), with a small synthetic
population encoded, pushed over HTTP and assessed, and the demo's web accounts
and professionals' key and token files. Pages are driven by Playwright in
Debian's Chromium (``/usr/bin/chromium`` or ``$CHROMIUM``; no browser is
downloaded). ``check_accessible`` runs axe-core (installed from npm by the
project's set-up) on the page and fails on any WCAG 2.2 A/AA violation;
``screenshot`` saves the page (into ``docs/screenshots`` with
``UPDATE_SCREENSHOTS=1``, else ``tests/web/screenshots-out``). Every page also
fails its test if the browser reports a Content-Security-Policy violation or a
script error.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest

from deploy._journey import (
    assess,
    encode_extracts,
    make_population,
    pick_families,
    push_extracts,
    register_agencies,
)
from deploy._local import DemoProfessional, LocalStack, WebAccount

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "web_service" / "assets" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS")
    else Path(__file__).parent / "screenshots-out"
)
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _chromium() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    return found if found and Path(found).exists() else None


@dataclass
class WebStack:
    """The running stack, what the tests sign in with, and the demo data's ids."""

    stack: LocalStack
    url: str
    accounts: dict[str, WebAccount]
    professionals: dict[str, DemoProfessional]
    family_id: str
    threshold: float
    _steps: dict[str, int] = field(default_factory=dict)

    def files(self, name: str) -> tuple[Path, Path]:
        """A professional's key file and JWT file."""
        pro = self.professionals[name]
        return pro.key_file, self.stack.pro_dir / f"{name}.token"

    def totp_code(self, username: str) -> str:
        """A TOTP code the server has not accepted yet for ``username`` (waits a step
        if both it may use were used).

        Only the current step and the next: the server accepts one step either side
        of its own, so a code for the previous step is refused if a step boundary
        passes between making the code and posting the form (a CI run failed so)."""
        seed = self.accounts[username].totp_seed
        assert seed is not None
        totp = pyotp.TOTP(seed)
        while True:
            now = int(time.time()) // totp.interval
            for step in (now, now + 1):
                if step > self._steps.get(username, 0):
                    self._steps[username] = step
                    return totp.generate_otp(step)
            time.sleep(1)


@pytest.fixture(scope="session")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    run = tmp_path_factory.mktemp("web-run")
    with LocalStack(run) as stack:
        stack.ceremony()
        stack.prepare(fresh=True)
        pros = stack.register_professionals()
        accounts = stack.register_web_accounts(pros)
        stack.issue_tokens(pros)
        stack.start()
        pop = make_population(run / "population", 400, 11)
        extracts, _ = encode_extracts(stack, pop, run / "extracts")
        register_agencies(stack, pop)
        push_extracts(stack, extracts)
        assess(stack)
        threshold, (family, _score), _below = pick_families(stack)
        yield WebStack(
            stack,
            stack.url("web-service"),
            {a.username: a for a in accounts},
            {p.name: p for p in pros},
            family,
            threshold,
        )


# Module scope: Playwright's sync API runs an event loop in this thread while the
# browser is open, which would stop other modules' async tests from running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        pytest.fail("no Chromium: apt-get install chromium (or set $CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


def new_page(browser: Any) -> Any:
    """A page in a fresh browser context (no cookies, no session storage), with
    axe-core injected by the browser itself (not subject to the page's CSP) and
    every CSP violation or script error recorded in ``page.problems``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        # An HTTP error status is the test's to assert; anything else logged as an
        # error (a CSP violation, a script error) fails the test.
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    return page


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; the test fails if the browser reported a CSP violation or a
    script error."""
    page = new_page(browser)
    yield page
    page.context.close()
    assert not page.problems, f"the browser reported errors: {page.problems}"


def sign_in(page: Any, web: WebStack, username: str) -> None:
    """Sign in through the form as ``username`` (with a TOTP code if the account has one)."""
    account = web.accounts[username]
    page.goto(f"{web.url}/sign-in")
    page.get_by_label("User name").fill(account.username)
    page.get_by_label("Password", exact=True).fill(account.password)
    if account.totp_seed:
        page.get_by_label("Security code").fill(web.totp_code(username))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")
    assert "/sign-in" not in page.url, page.content()[:2000]


def load_key(page: Any, web: WebStack, name: str) -> None:
    """Load professional ``name``'s key and token files through the page's key panel."""
    key_file, token_file = web.files(name)
    page.set_input_files("#key-file", str(key_file))
    page.set_input_files("#token-file", str(token_file))
    page.get_by_role("button", name="Load key").click()
    page.get_by_role("button", name="Forget them").wait_for()


def check_accessible(page: Any) -> None:
    """axe-core on the current page: no WCAG 2.2 A/AA violation.

    Waits for the page to have loaded first: right after a click on a link the old
    document may be gone before the new one exists (seen under load: axe found
    no ``document``).
    """
    page.wait_for_load_state("load")
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})",
        WCAG,
    )
    violations = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
    ]
    assert not violations, f"{page.url}: axe-core violations:\n{json.dumps(violations, indent=1)}"


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as ``name`` (PNG)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_no_plaintext(text: str, web: WebStack) -> None:
    """No name of the synthetic population appears in ``text`` (a response or page
    the server produced): identities are opened only in the browser."""
    names = population_names(web)
    leaked = [n for n in names if n in text]
    assert not leaked, f"plaintext identities in a server response: {leaked[:5]}"


_NAMES: dict[str, list[str]] = {}


def population_names(web: WebStack) -> list[str]:
    key = str(web.stack.run_dir)
    if key not in _NAMES:
        import csv

        names: set[str] = set()
        for path in (web.stack.run_dir / "population").glob("*.csv"):
            # some agencies' extracts are not UTF-8 (their own habits)
            with path.open(encoding="utf-8", errors="replace") as handle:
                for row in csv.DictReader(handle):
                    for column, value in row.items():
                        if (
                            column
                            and "name" in column.lower()
                            and value
                            and len(value) >= 5
                            and "\ufffd" not in value
                        ):
                            names.add(value)
        _NAMES[key] = sorted(names)
    return _NAMES[key]
