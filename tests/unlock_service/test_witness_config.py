"""The audit log's witnesses from the unlock service's settings: fail closed without a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_log import CosignatureSigner
from unlock_service import ConfigError, Settings
from unlock_service._api import _witness_endpoints


def _settings(vkey: str) -> Settings:
    p = Path("/nonexistent")
    return Settings.model_validate(
        {
            "policy_file": p,
            "seal_key_dir": p,
            "audit_key_file": p,
            "linkage_url": "http://127.0.0.1:1",
            "linkage_token_file": p,
            "linkage_public_key_file": p,
            "issuer_public_key_file": p,
            "audit_witnesses": [
                {"url": "http://127.0.0.1:2", "vkey": vkey, "token_env": "TEST_WITNESS_TOKEN"}
            ],
        }
    )


def test_a_witness_without_its_token_in_the_environment_stops_start_up(monkeypatch):
    vkey = CosignatureSigner.from_seed("ig.test/witness", b"\x07" * 32).vkey
    monkeypatch.delenv("TEST_WITNESS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"\$TEST_WITNESS_TOKEN"):
        _witness_endpoints(_settings(vkey))


def test_a_witness_with_its_token_becomes_an_endpoint(monkeypatch):
    vkey = CosignatureSigner.from_seed("ig.test/witness", b"\x07" * 32).vkey
    monkeypatch.setenv("TEST_WITNESS_TOKEN", "t" * 40)
    [endpoint] = _witness_endpoints(_settings(vkey))
    assert endpoint.name == "ig.test/witness" and endpoint.token == "t" * 40


def test_a_malformed_witness_key_stops_start_up(monkeypatch):
    monkeypatch.setenv("TEST_WITNESS_TOKEN", "t" * 40)
    with pytest.raises(ConfigError, match="audit witness"):
        _witness_endpoints(_settings("not+a+key"))
