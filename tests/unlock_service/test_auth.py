"""Tokens and request signatures: known answers, expiry, forgery, binding."""

from __future__ import annotations

import base64

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

from unlock_service import AuthError, TokenIssuer, TokenVerifier, jwk_thumbprint, sign_request
from unlock_service._auth import verify_request_signature

NOW = 1_800_000_000
PRO = "pro_" + "ab" * 8


def test_jwk_thumbprint_known_answer():
    # RFC 8037 Appendix A.2/A.3: the Ed25519 example key and its RFC 7638 thumbprint.
    x = base64.urlsafe_b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    assert jwk_thumbprint(x) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.fixture
def keys():
    issuer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    return (
        issuer,
        TokenIssuer(issuer, "iss", "aud"),
        TokenVerifier(issuer.public_key(), "iss", "aud", max_lifetime=600, leeway=30),
    )


def test_a_good_token_verifies(keys):
    _, issuer, verifier = keys
    pro_key = SigningKey(b"p" * 32)
    claims = verifier.verify(issuer.issue(PRO, bytes(pro_key.verify_key), now=NOW), NOW + 10)
    assert claims.professional_id == PRO
    assert claims.thumbprint == jwk_thumbprint(bytes(pro_key.verify_key))


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (NOW + 329, None),
        (NOW + 330, "TOKEN_EXPIRED"),
        (NOW - 29, None),
        (NOW - 31, "TOKEN_NOT_YET_VALID"),
    ],
)
def test_expiry_and_not_before_with_leeway(keys, when, reason):
    _, issuer, verifier = keys
    token = issuer.issue(PRO, b"k" * 32, lifetime=300, now=NOW)
    if reason is None:
        verifier.verify(token, when)
    else:
        with pytest.raises(AuthError) as info:
            verifier.verify(token, when)
        assert info.value.reason == reason


def _raw(claims, key=None, alg="EdDSA"):
    key = key or Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    return jwt.encode(claims, key, algorithm=alg)


GOOD = {
    "iss": "iss",
    "aud": "aud",
    "sub": PRO,
    "iat": NOW,
    "nbf": NOW,
    "exp": NOW + 60,
    "jti": "j" * 32,
    "cnf": {"jkt": "x"},
}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: _raw(GOOD, Ed25519PrivateKey.generate()), "TOKEN_FORGED"),
        (lambda: _raw(GOOD | {"aud": "other"}), "TOKEN_WRONG_AUDIENCE"),
        (lambda: _raw(GOOD | {"iss": "other"}), "TOKEN_WRONG_ISSUER"),
        (lambda: _raw({k: v for k, v in GOOD.items() if k != "cnf"}), "TOKEN_MALFORMED"),
        (lambda: _raw({k: v for k, v in GOOD.items() if k != "jti"}), "TOKEN_MALFORMED"),
        (lambda: _raw(GOOD | {"sub": "Jane Smith"}), "TOKEN_MALFORMED"),
        (lambda: _raw(GOOD | {"exp": NOW + 3600}), "TOKEN_TOO_LONG"),
        (
            lambda: jwt.encode(GOOD, "a-shared-secret-of-sufficient-length-000", algorithm="HS256"),
            "TOKEN_MALFORMED",
        ),
        (lambda: "not.a.token", "TOKEN_MALFORMED"),
    ],
    ids=[
        "forged",
        "audience",
        "issuer",
        "no-cnf",
        "no-jti",
        "bad-sub",
        "too-long",
        "hs256",
        "garbage",
    ],
)
def test_bad_tokens_are_refused_with_a_reason(keys, token, reason):
    _, _, verifier = keys
    with pytest.raises(AuthError) as info:
        verifier.verify(token(), NOW)
    assert info.value.reason == reason


def test_the_alg_none_trick_is_refused(keys):
    _, _, verifier = keys
    unsigned = jwt.encode(GOOD, None, algorithm="none")
    with pytest.raises(AuthError):
        verifier.verify(unsigned, NOW)


def test_request_signatures_bind_method_target_body_time_and_token():
    key = SigningKey(b"s" * 32)
    pub = bytes(key.verify_key)
    header = sign_request(key, "POST", "/unlocks", b'{"a":1}', "tok", now=NOW, nonce="0" * 32)
    assert (
        verify_request_signature(header, pub, "POST", "/unlocks", b'{"a":1}', "tok", NOW, 60)
        == "0" * 32
    )
    for args in [
        ("GET", "/unlocks", b'{"a":1}', "tok"),
        ("POST", "/unlocks?x=1", b'{"a":1}', "tok"),
        ("POST", "/unlocks", b'{"a":2}', "tok"),
        ("POST", "/unlocks", b'{"a":1}', "another token"),
    ]:
        with pytest.raises(AuthError, match="does not verify"):
            verify_request_signature(header, pub, *args, NOW, 60)
    with pytest.raises(AuthError) as info:
        verify_request_signature(header, pub, "POST", "/unlocks", b'{"a":1}', "tok", NOW + 61, 60)
    assert info.value.reason == "SIGNATURE_STALE"
    with pytest.raises(AuthError) as info:
        verify_request_signature("t=1,n=zz,s=x", pub, "POST", "/", b"", "tok", NOW, 60)
    assert info.value.reason == "SIGNATURE_MALFORMED"
