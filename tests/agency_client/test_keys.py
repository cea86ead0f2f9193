"""Key files: fail closed on loose permissions, placeholders, wrong formats; never overwrite."""

from __future__ import annotations

import json
import os

import pytest

from agency_client._errors import KeyFileError
from agency_client._keys import (
    SECRET_ENV,
    generate_agency_key,
    generate_secret,
    load_agency_key,
    load_agency_public_key,
    load_secret,
)


def test_round_trip_and_modes(tmp_path):
    priv, pub = generate_agency_key("school", tmp_path)
    assert os.stat(priv).st_mode & 0o777 == 0o600
    key = load_agency_key(priv)
    public = load_agency_public_key(pub)
    assert key.public_key == public.public_key and key.key_id == public.key_id
    sig = key.signing_key.sign(b"hello").signature
    assert public.verify(b"hello", sig) and not public.verify(b"hellO", sig)


def test_world_readable_secret_is_refused(tmp_path):
    path = generate_secret(tmp_path / "s")
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable or writable by group or others"):
        load_secret(path)


def test_missing_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(KeyFileError, match="no linkage secret"):
        load_secret(None)
    path = generate_secret(tmp_path / "s")
    monkeypatch.setenv(SECRET_ENV, str(path))
    assert len(load_secret(None)) == 32
    with pytest.raises(KeyFileError, match="does not exist"):
        load_secret(tmp_path / "nope")


def test_placeholder_and_short_secrets_are_refused(tmp_path):
    for name, raw in (
        ("zeros", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ("short", "c2hvcnQ="),
    ):
        path = tmp_path / name
        path.write_text(json.dumps({"format": "family-linkage/linkage-secret/v1", "secret": raw}))
        os.chmod(path, 0o600)
        with pytest.raises(KeyFileError):
            load_secret(path)


def test_wrong_key_file_is_named(tmp_path):
    priv, pub = generate_agency_key("school", tmp_path)
    os.chmod(pub, 0o600)
    with pytest.raises(KeyFileError, match="agency-key/v1"):
        load_agency_key(pub)
    bad = tmp_path / "bad.key"
    bad.write_text("not json")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="not a JSON key file"):
        load_agency_key(bad)


def test_never_overwrites_a_key(tmp_path):
    generate_agency_key("school", tmp_path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_agency_key("school", tmp_path)
