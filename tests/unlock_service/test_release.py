"""Attestation checks, sealing-key custody and rotation, opening blobs exactly."""

from __future__ import annotations

import datetime as dt
import random
import stat

import pytest
from nacl.signing import SigningKey

from protocols import FamilyBlobs, SealedBlob, attestation_sha256, key_id
from unlock_service import ConfigError, ReleaseError, SealKeyring, verify_attestation
from unlock_service._release import AttestationRefused, open_family, rotate_seal_key

from ._factories import IDENTITIES, T0, FakeLinkage, seal_identity
from .conftest import current_seal_public

MAX = dt.timedelta(days=30)


@pytest.fixture
def linkage():
    return FakeLinkage(SigningKey(b"L" * 32), random.Random(7))


FAM = "fam_" + "ab" * 8
MEMBERS = [("school", "1" * 32), ("police", "2" * 32)]


def test_a_genuine_fresh_attestation_verifies(linkage):
    signed = linkage.attest(FAM, MEMBERS, assessed=T0 - dt.timedelta(days=29))
    att = verify_attestation(signed, linkage.key.verify_key, FAM, MAX, T0)
    assert att.family_id == FAM


@pytest.mark.parametrize(
    ("kwargs", "family", "reason"),
    [
        ({"tamper": True}, FAM, "ATTESTATION_FORGED"),
        ({"key": SigningKey(b"x" * 32)}, FAM, "ATTESTATION_WRONG_KEY"),
        ({}, "fam_" + "cd" * 8, "ATTESTATION_WRONG_FAMILY"),
        ({"assessed": T0 - dt.timedelta(days=31)}, FAM, "ATTESTATION_STALE"),
        ({"assessed": T0 + dt.timedelta(hours=1)}, FAM, "ATTESTATION_FUTURE"),
    ],
)
def test_bad_attestations_are_refused(linkage, kwargs, family, reason):
    signed = linkage.attest(FAM, MEMBERS, **kwargs)
    with pytest.raises(AttestationRefused) as info:
        verify_attestation(signed, linkage.key.verify_key, family, MAX, T0)
    assert info.value.reason == reason


def test_freshness_follows_the_cycle_not_a_fixed_age(linkage):
    # quarterly cycles: assessed 80 days ago, still the latest cycle (4)
    signed = linkage.attest(FAM, MEMBERS, assessed=T0 - dt.timedelta(days=80), cycle=4)
    key = linkage.key.verify_key
    assert verify_attestation(signed, key, FAM, None, T0, latest_cycle=4).cycle_id == 4
    with pytest.raises(AttestationRefused, match="from assessment cycle 4; the latest cycle is 5"):
        verify_attestation(signed, key, FAM, None, T0, latest_cycle=5)
    # a policy's age limit still applies on top
    with pytest.raises(AttestationRefused) as info:
        verify_attestation(signed, key, FAM, MAX, T0, latest_cycle=4)
    assert info.value.reason == "ATTESTATION_STALE"


def test_while_the_linkage_key_is_rotated_either_pinned_key_is_accepted_and_no_other(linkage):
    old, new, other = linkage.key, SigningKey(b"N" * 32), SigningKey(b"x" * 32)
    pinned = (new.verify_key, old.verify_key)
    for key in (old, new):
        signed = linkage.attest(FAM, MEMBERS, key=key)
        assert verify_attestation(signed, pinned, FAM, MAX, T0).family_id == FAM
    with pytest.raises(AttestationRefused) as info:
        verify_attestation(linkage.attest(FAM, MEMBERS, key=other), pinned, FAM, MAX, T0)
    assert info.value.reason == "ATTESTATION_WRONG_KEY"
    assert key_id(bytes(new.verify_key)) in str(info.value)
    assert key_id(bytes(old.verify_key)) in str(info.value)


def test_a_signature_by_one_pinned_key_naming_the_other_is_forged(linkage):
    new = SigningKey(b"N" * 32)
    signed = linkage.attest(FAM, MEMBERS, key=new)
    claims_old = signed.model_copy(
        update={
            "attestation": signed.attestation.model_copy(
                update={"key_id": key_id(bytes(linkage.key.verify_key))}
            )
        }
    )
    with pytest.raises(AttestationRefused) as info:
        verify_attestation(claims_old, (new.verify_key, linkage.key.verify_key), FAM, MAX, T0)
    assert info.value.reason == "ATTESTATION_FORGED"


def test_a_signature_by_another_key_that_claims_the_pinned_key_id_is_forged(linkage):
    other = SigningKey(b"y" * 32)
    signed = linkage.attest(FAM, MEMBERS)
    from protocols import attestation_message

    from ._factories import b64

    forged = signed.model_copy(
        update={"signature": b64(other.sign(attestation_message(signed.attestation)).signature)}
    )
    with pytest.raises(AttestationRefused) as info:
        verify_attestation(forged, linkage.key.verify_key, FAM, MAX, T0)
    assert info.value.reason == "ATTESTATION_FORGED"


def _blobs(directory, signed, members=MEMBERS, seal_pub=None, kid=None):
    seal_pub = seal_pub or current_seal_public(directory)
    kid = kid or (directory / "CURRENT").read_text().strip()
    return FamilyBlobs(
        family_id=FAM,
        attestation_sha256=attestation_sha256(signed.attestation),
        blobs=tuple(
            SealedBlob(
                agency_id=a,
                record_ref=r,
                extract_id="e" * 32,
                seal_key_id=kid,
                sealed_identity=seal_identity(seal_pub, a, r, IDENTITIES[i]),
            )
            for i, (a, r) in enumerate(members)
        ),
    )


def test_rotation_keeps_old_keys_so_old_blobs_still_open(tmp_path, linkage):
    keys = tmp_path / "keys"
    _, first, _, _ = rotate_seal_key(keys)
    signed = linkage.attest(FAM, MEMBERS)
    old_blobs = _blobs(keys, signed)
    old, second, old_pub, new_pub = rotate_seal_key(keys)
    assert old == first and second != first and old_pub != new_pub
    ring = SealKeyring(keys)
    assert ring.current_id == second and ring.key_ids() == sorted([first, second])
    sha = attestation_sha256(signed.attestation)
    assert len(open_family(old_blobs, signed.attestation, sha, ring)) == 2
    assert len(open_family(_blobs(keys, signed), signed.attestation, sha, ring)) == 2
    # blobs without a key id are tried against every key
    anon = FamilyBlobs(
        family_id=FAM,
        attestation_sha256=sha,
        blobs=tuple(b.model_copy(update={"seal_key_id": None}) for b in old_blobs.blobs),
    )
    assert len(open_family(anon, signed.attestation, sha, ring)) == 2
    mode = stat.S_IMODE((keys / second / "seal.key").stat().st_mode)
    assert mode == 0o600


def test_a_failed_audit_before_the_switch_leaves_the_old_key_current(tmp_path):
    keys = tmp_path / "keys"
    _, first, _, _ = rotate_seal_key(keys)

    def fail(_old, _new):
        raise RuntimeError("audit down")

    with pytest.raises(RuntimeError):
        rotate_seal_key(keys, fail)
    assert SealKeyring(keys).key_ids() == [first]
    assert [p.name for p in keys.iterdir() if p.is_dir()] == [first]


def test_a_loose_key_file_stops_the_keyring(tmp_path):
    keys = tmp_path / "keys"
    _, kid, _, _ = rotate_seal_key(keys)
    (keys / kid / "seal.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SealKeyring(keys)
    with pytest.raises(ConfigError, match="does not exist"):
        SealKeyring(tmp_path / "missing")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.model_copy(update={"blobs": b.blobs[:1]}), "BLOBS_MISMATCH"),
        (lambda b: b.model_copy(update={"blobs": b.blobs + b.blobs[:1]}), "BLOBS_MISMATCH"),
        (lambda b: b.model_copy(update={"attestation_sha256": "0" * 64}), "BLOBS_MISMATCH"),
        (
            # a blob moved to the other record: the payload names its own record
            lambda b: b.model_copy(
                update={
                    "blobs": (
                        b.blobs[0].model_copy(
                            update={"sealed_identity": b.blobs[1].sealed_identity}
                        ),
                        b.blobs[1],
                    )
                }
            ),
            "BLOB_DOES_NOT_OPEN",
        ),
        (
            lambda b: b.model_copy(
                update={
                    "blobs": (b.blobs[0].model_copy(update={"seal_key_id": "f" * 16}), b.blobs[1])
                }
            ),
            "SEAL_KEY_UNKNOWN",
        ),
    ],
    ids=["missing", "duplicated", "other-attestation", "moved", "unknown-key"],
)
def test_blobs_must_be_exactly_the_attested_records(tmp_path, linkage, mutate, reason):
    keys = tmp_path / "keys"
    rotate_seal_key(keys)
    signed = linkage.attest(FAM, MEMBERS)
    sha = attestation_sha256(signed.attestation)
    with pytest.raises(ReleaseError) as info:
        open_family(mutate(_blobs(keys, signed)), signed.attestation, sha, SealKeyring(keys))
    assert info.value.reason == reason


def test_a_release_survives_a_rotation_between_sealing_and_release(env):
    pro = env.add_pro()
    family = env.add_family()  # sealed to the first key
    rotate_seal_key(env.settings.seal_key_dir)
    r = env.client(pro).unlock(family, "SAFEGUARDING", "child seen with injuries")
    assert r.status_code == 200, r.text
