"""The whole journey with each service on its own PostgreSQL database.

The run creates ``e2e_<random>_linkage``, ``_unlock``, ``_audit`` and ``_web`` and drops
them afterwards; skipped without a server, failed when REQUIRE_POSTGRES=1 (CI).
"""

from __future__ import annotations

import uuid
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from deploy._journey import unlock

from .conftest import World, run_cli, running_journey

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def world(postgres_url, tmp_path_factory) -> World:
    # family-linkage refuses a password in the URL; a TEST_POSTGRES_URL with one
    # gives it as an operator would, in PGPASSWORD (the services inherit it)
    parts = urlsplit(postgres_url)
    netloc = parts.netloc.rsplit("@", 1)
    if parts.password is not None:
        netloc[0] = netloc[0].split(":", 1)[0]  # user:password -> user
    base = urlunsplit(parts._replace(netloc="@".join(netloc), path="/"))
    prefix = f"e2e_{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as mp:
        if parts.password is not None:
            mp.setenv("PGPASSWORD", unquote(parts.password))
        with running_journey(
            tmp_path_factory.mktemp("e2e-pg") / "run",
            database_url_base=base,
            database_prefix=prefix,
        ) as w:
            assert all(u.startswith(base) for u in w.stack.database_urls.values())
            yield w


def test_the_journey_on_postgresql_releases_and_verifies(world):
    j = world.journey
    assert j.released is not None and j.released.status_code == 200 and j.released.identities > 0
    assert "consistent with size" in j.ig_after and "cosigned by" in j.ig_receipt
    refused = unlock(world.stack, world.pros["uncleared"], j.family_above)
    assert (refused.status_code, refused.reason) == (403, "CLEARANCE_INSUFFICIENT")


def test_the_postgresql_audit_log_verifies_with_the_audit_log_command(world):
    stack = world.stack
    done = run_cli(
        "audit-log", "verify-db", "--db", stack.database_urls["audit"],
        "--vkey", str(stack.key("ig-office", "audit-log.vkey")),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run_cli(
        "audit-log", "checkpoint", "--url", stack.url("unlock-service") + "/audit",
        "--vkey", str(stack.key("ig-office", "audit-log.vkey")),
        "--witness-vkey", str(stack.key("ig-office", "witness.vkey")),
        "--state", str(stack.run_dir / "ig-office" / "last-seen.checkpoint"),
        env={"AUDIT_LOG_TOKEN": stack.secret("ig-office", "audit-token")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "verified checkpoint of size" in done.stdout
