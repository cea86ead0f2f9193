"""Sealed identities open only with the right key, are all one length, and bind their record."""

from __future__ import annotations

import base64

import pytest
from nacl.public import PrivateKey

from protocols import (
    IdentitySealer,
    SealError,
    generate_seal_keypair,
    identity_bytes,
    load_seal_private_key,
    load_seal_public_key,
    open_sealed_identity,
    sealed_length,
)


def payload(ref: str = "a" * 26, **extra: object) -> bytes:
    base: dict[str, object] = {
        "format": "family-linkage/identity/v1",
        "agency_id": "school",
        "extract_id": "e" * 32,
        "record_ref": ref,
        "system_id": "P001",
    }
    base.update(extra)
    return identity_bytes(base)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_opens_with_the_right_key_only():
    sk = PrivateKey.generate()
    blob = IdentitySealer(sk.public_key, 512).seal(payload(given_names="Zoë"))
    opened = open_sealed_identity(b64(blob), sk)
    assert opened.given_names == "Zoë" and opened.system_id == "P001"
    with pytest.raises(SealError, match="does not open"):
        open_sealed_identity(b64(blob), PrivateKey.generate())


def test_every_blob_has_the_same_length_whatever_the_identity():
    sk = PrivateKey.generate()
    sealer = IdentitySealer(sk.public_key, 512)
    blobs = [
        sealer.seal(payload()),
        sealer.seal(payload(given_names="A" * 200, address_lines=["1 Long Road"] * 5)),
    ]
    assert {len(b) for b in blobs} == {sealed_length(512)}


def test_each_blob_opens_on_its_own_across_sealers():
    sk = PrivateKey.generate()
    a = IdentitySealer(sk.public_key, 256).seal(payload("b" * 26))
    b = IdentitySealer(sk.public_key, 256).seal(payload("c" * 26))
    assert open_sealed_identity(b64(b), sk).record_ref == "c" * 26
    assert open_sealed_identity(b64(a), sk).record_ref == "b" * 26


@pytest.mark.parametrize("position", [0, 5, 40, 60, 200, -1])
def test_any_changed_byte_is_rejected(position):
    sk = PrivateKey.generate()
    blob = bytearray(IdentitySealer(sk.public_key, 256).seal(payload()))
    blob[position] ^= 0x01
    with pytest.raises(SealError):
        open_sealed_identity(b64(bytes(blob)), sk)


def test_blob_moved_to_another_record_is_detected():
    sk = PrivateKey.generate()
    blob = IdentitySealer(sk.public_key, 256).seal(payload("d" * 26))
    with pytest.raises(SealError, match="belongs to record"):
        open_sealed_identity(b64(blob), sk, expect_record_ref="e" * 26)


def test_too_long_identity_is_refused_not_truncated():
    sk = PrivateKey.generate()
    with pytest.raises(ValueError, match="pads to"):
        IdentitySealer(sk.public_key, 128).seal(payload(given_names="x" * 200))


def test_garbage_is_a_clear_error():
    sk = PrivateKey.generate()
    with pytest.raises(SealError, match="base64"):
        open_sealed_identity("not base64!", sk)
    with pytest.raises(SealError, match="truncated"):
        open_sealed_identity(b64(b"\x01abc"), sk)


def test_key_files_round_trip_and_the_private_one_is_0600(tmp_path):
    private_path, public_path = generate_seal_keypair(tmp_path / "unlock")
    assert private_path.stat().st_mode & 0o777 == 0o600
    private = load_seal_private_key(private_path)
    public = load_seal_public_key(public_path)
    assert bytes(public.public_key) == bytes(private.public_key)
    blob = IdentitySealer(public.public_key, 256).seal(payload())
    assert open_sealed_identity(b64(blob), private).system_id == "P001"


def test_a_key_file_is_never_overwritten(tmp_path):
    generate_seal_keypair(tmp_path)
    with pytest.raises(SealError, match="already exists"):
        generate_seal_keypair(tmp_path)


def test_a_readable_private_key_or_a_wrong_file_is_refused_naming_it(tmp_path):
    private_path, public_path = generate_seal_keypair(tmp_path)
    with pytest.raises(SealError, match="expected a key file of format"):
        load_seal_public_key(private_path)
    private_path.chmod(0o644)
    with pytest.raises(SealError, match="chmod 600"):
        load_seal_private_key(private_path)
    public_path.write_text('{"format": "family-linkage/seal-public-key/v1", "public_key": "AA=="}')
    with pytest.raises(SealError, match="must decode to 32 bytes"):
        load_seal_public_key(public_path)
