"""Sign-in accounts: argon2id, TOTP once, lockout, and the sealed credential."""

from __future__ import annotations

import pyotp
import pytest

from web_service import AccountError, SignInError, create_account, reset_account, sign_in
from web_service import _store as store

PASSWORD = "correct horse battery staple"
PRO = "pro_" + "ab" * 8


@pytest.fixture
def engine(tmp_path):
    engine = store.open_engine(f"sqlite:///{tmp_path / 'web.sqlite'}")
    yield engine
    engine.dispose()


def _sign_in(engine, username, password=PASSWORD, code=None, now=1_800_000_000.0):
    return sign_in(engine, username, password, code, max_failures=3, lockout_seconds=600, now=now)


def test_a_coordinator_signs_in_and_gets_their_token_back(engine):
    create_account(
        engine,
        username="casey",
        role="coordinator",
        display_name="Casey",
        password=PASSWORD,
        credential="linkage-token-123",
    )
    user = _sign_in(engine, "casey")
    assert (user.role, user.credential, user.professional_id) == (
        "coordinator",
        "linkage-token-123",
        None,
    )
    with store.session(engine) as db:
        row = store.get_account(db, "casey")
        assert row is not None
        assert row.password_hash.startswith("$argon2id$")
        # neither the token nor the password is stored in the clear
        assert b"linkage-token-123" not in row.sealed
        assert PASSWORD not in row.password_hash


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(engine):
    create_account(
        engine, username="casey", role="coordinator", display_name="C", password=PASSWORD,
        credential="t",
    )  # fmt: skip
    with pytest.raises(SignInError) as wrong:
        _sign_in(engine, "casey", "not the right password")
    with pytest.raises(SignInError) as unknown:
        _sign_in(engine, "nobody")
    assert str(wrong.value) == str(unknown.value)


def test_three_failures_lock_the_account_for_a_while(engine):
    create_account(
        engine, username="casey", role="coordinator", display_name="C", password=PASSWORD,
        credential="t",
    )  # fmt: skip
    for _ in range(3):
        with pytest.raises(SignInError):
            _sign_in(engine, "casey", "wrong password here", now=1000.0)
    with pytest.raises(SignInError):  # the right password, but locked
        _sign_in(engine, "casey", now=1100.0)
    assert _sign_in(engine, "casey", now=1000.0 + 601).username == "casey"


def test_a_professional_needs_a_totp_code_and_each_code_works_once(engine):
    made = create_account(
        engine,
        username="sam",
        role="professional",
        display_name="Sam",
        password=PASSWORD,
        professional_id=PRO,
    )
    assert made.totp_uri is not None and made.totp_uri.startswith("otpauth://totp/")
    totp = pyotp.TOTP(pyotp.parse_uri(made.totp_uri).secret)
    now = 1_800_000_000.0
    with pytest.raises(SignInError):
        _sign_in(engine, "sam", now=now)  # no code
    with pytest.raises(SignInError):
        _sign_in(engine, "sam", code="000000" if totp.at(now) != "000000" else "111111", now=now)
    user = _sign_in(engine, "sam", code=totp.at(now), now=now)
    assert (user.role, user.professional_id, user.credential) == ("professional", PRO, None)
    with pytest.raises(SignInError):  # the same code again: a replay
        _sign_in(engine, "sam", code=totp.at(now), now=now)
    # the next step's code is still accepted (one step of drift)
    assert _sign_in(engine, "sam", code=totp.at(now + 30), now=now).username == "sam"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"username": "Bad Name!"}, "username"),
        ({"role": "superuser"}, "role"),
        ({"password": "short"}, "password"),
        ({"role": "professional", "credential": None}, "professional_id"),
        ({"credential": None}, "token"),
        ({"role": "professional", "professional_id": PRO}, "token"),
        ({"professional_id": PRO}, "professional_id"),
    ],
)
def test_a_bad_account_names_the_field(engine, fields, named):
    args = {
        "username": "casey",
        "role": "coordinator",
        "display_name": "C",
        "password": PASSWORD,
        "credential": "t",
        **fields,
    }
    with pytest.raises(AccountError, match=named):
        create_account(engine, **args)
    with store.session(engine) as db:
        assert store.list_accounts(db) == []  # nothing half-written


def test_a_taken_username_is_refused(engine):
    args = {"role": "coordinator", "display_name": "C", "password": PASSWORD, "credential": "t"}
    create_account(engine, username="casey", **args)
    with pytest.raises(AccountError, match="taken"):
        create_account(engine, username="casey", **args)


def test_a_reset_replaces_the_password_and_the_sealed_token(engine):
    args = {"role": "coordinator", "display_name": "C", "credential": "old-token"}
    create_account(engine, username="casey", password=PASSWORD, **args)
    reset_account(engine, username="casey", password="a brand new password", credential="new")
    with pytest.raises(SignInError):
        _sign_in(engine, "casey")
    assert _sign_in(engine, "casey", "a brand new password").credential == "new"


def test_a_disabled_account_cannot_sign_in(engine):
    create_account(
        engine, username="casey", role="coordinator", display_name="C", password=PASSWORD,
        credential="t",
    )  # fmt: skip
    with store.session(engine) as db:
        account = store.get_account(db, "casey")
        assert account is not None and store.set_active(db, account, False)
    with pytest.raises(SignInError):
        _sign_in(engine, "casey")
