"""The key ceremony: every key loads with its owner's loader, nothing is overwritten,
the linkage secret reaches agencies only."""

from __future__ import annotations

import base64
import shutil
import stat

import pytest
from nacl.signing import SigningKey

from agency_client import (
    load_agency_key,
    load_agency_public_key,
    load_seal_private_key,
    load_seal_public_key,
    load_secret,
)
from audit_log._config import load_cosigner, load_signer
from audit_log._config import load_tokens as load_audit_tokens
from deploy import CeremonyError, run_ceremony
from deploy._ceremony import main
from linkage_service._config import load_attestation_key
from linkage_service._config import load_tokens as load_linkage_tokens
from unlock_service import SealKeyring

AGENCIES = ("police", "schools")


def _snapshot(root):
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "ceremony.json"
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("ceremony") / "keys"
    items = run_ceremony(root, AGENCIES)
    return root, items


@pytest.fixture
def tree(made, tmp_path):
    """A private copy of the ceremony tree for tests that change it."""
    root = tmp_path / "keys"
    shutil.copytree(made[0], root)
    return root


def _bearer(path):
    return "Bearer " + path.read_text().strip()


def test_directories_are_0700_and_secrets_0600(made):
    root, items = made
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
    for item in items:
        mode = stat.S_IMODE(item.path.stat().st_mode)
        assert (mode == 0o600) if item.secret else not (mode & 0o022), item.path
    assert {i.status for i in items} <= {"created", "added"}


def test_agency_bundles_load_with_the_agency_client(made):
    root, _ = made
    seal = root / "unlock-service" / "seal"
    kid = (seal / "CURRENT").read_text().strip()
    seal_pub = load_seal_public_key(seal / kid / "seal.pub")
    secrets = set()
    for agency in AGENCIES:
        bundle = root / f"agency-{agency}"
        key = load_agency_key(bundle / "agency.key")
        assert key.agency_id == agency
        registered = load_agency_public_key(root / "linkage-service" / "agencies" / f"{agency}.pub")
        assert registered.public_key == key.public_key
        assert load_seal_public_key(bundle / "seal.pub") == seal_pub
        secrets.add(load_secret(bundle / "linkage-secret.json"))
    assert len(secrets) == 1  # one shared secret, or encodings would never match
    private = load_seal_private_key(seal / kid / "seal.key")
    assert bytes(private.public_key) == bytes(seal_pub.public_key)
    keyring = SealKeyring(seal)  # the unlock service reads the directory as made
    assert keyring.current_id == kid and keyring.key_ids() == [kid]


def test_linkage_attestation_key_loads_and_the_unlock_service_pins_its_public_key(made):
    root, _ = made
    key = load_attestation_key(root / "linkage-service" / "attestation.key")
    for pub in ("linkage-service/attestation.pub", "unlock-service/linkage-attestation.pub"):
        raw = base64.b64decode((root / pub).read_text().strip(), validate=True)
        assert raw == bytes(key.verify_key)


def test_audit_log_and_witness_keys_load_and_verifier_keys_match(made):
    root, _ = made
    signer = load_signer(root / "unlock-service" / "audit-log.key")
    for vkey in (
        "unlock-service/audit-log.vkey",
        "witness/audit-log.vkey",
        "ig-office/audit-log.vkey",
    ):
        assert (root / vkey).read_text().strip() == signer.vkey
    assert signer.name == "family-linkage/audit-log"
    cosigner = load_cosigner(root / "witness" / "witness.key")
    for vkey in ("witness/witness.vkey", "unlock-service/witness.vkey", "ig-office/witness.vkey"):
        assert (root / vkey).read_text().strip() == cosigner.vkey


def test_every_caller_token_authenticates_with_its_role(made):
    root, _ = made
    linkage = load_linkage_tokens(root / "linkage-service" / "tokens")
    expected = {f"agency-{a}/linkage-token": f"agency:{a}" for a in AGENCIES}
    expected |= {
        "unlock-service/linkage-token": "unlock_service",
        "operators/linkage-admin-token": "admin",
        "operators/linkage-analyst-token": "analyst",
    }
    for token_file, role in expected.items():
        caller = linkage.authenticate(_bearer(root / token_file))
        assert caller is not None and caller.role == role, token_file
    witness = load_audit_tokens(root / "witness" / "tokens")
    assert witness.authenticate(_bearer(root / "unlock-service" / "witness-token")).role == "writer"
    audit = load_audit_tokens(root / "unlock-service" / "audit-tokens")
    assert audit.authenticate(_bearer(root / "ig-office" / "audit-token")).role == "ig_officer"
    # token tables hold digests only
    table = (root / "linkage-service" / "tokens").read_text()
    assert (root / "operators" / "linkage-admin-token").read_text().strip() not in table


def test_the_unlock_service_loaders_accept_its_files(made):
    config = pytest.importorskip(
        "unlock_service._config", reason="unlock_service is being written; not importable yet"
    )
    root, _ = made
    config.load_issuer_private_key(root / "unlock-service" / "issuer.key")
    config.load_public_key(root / "unlock-service" / "issuer.pub", "issuer public key")
    config.load_public_key(root / "unlock-service" / "linkage-attestation.pub", "linkage key")
    config.load_audit_signer(root / "unlock-service" / "audit-log.key")
    config.load_linkage_token(root / "unlock-service" / "linkage-token")
    config.load_audit_tokens(root / "unlock-service" / "audit-tokens")
    issuer_seed = base64.b64decode((root / "unlock-service" / "issuer.key").read_text())
    issuer_pub = (root / "unlock-service" / "issuer.pub").read_text().strip()
    assert base64.b64encode(bytes(SigningKey(issuer_seed).verify_key)).decode() == issuer_pub


def test_the_linkage_secret_is_in_agency_bundles_only(made):
    root, _ = made
    secret = load_secret(root / "agency-police" / "linkage-secret.json")
    encoded = base64.b64encode(secret)
    for path in root.rglob("*"):
        if path.is_file() and not path.relative_to(root).as_posix().startswith("agency-"):
            data = path.read_bytes()
            assert encoded not in data and secret not in data, path


def test_a_rerun_changes_nothing_and_reports_everything_as_existing(tree):
    before = _snapshot(tree)
    items = run_ceremony(tree, AGENCIES)
    assert {i.status for i in items} == {"exists"}
    assert _snapshot(tree) == before


def test_a_new_agency_gets_the_existing_secret_and_nothing_else_changes(tree):
    before = _snapshot(tree)
    items = run_ceremony(tree, (*AGENCIES, "health"))
    created = {i.path.relative_to(tree).as_posix() for i in items if i.status == "created"}
    assert created == {
        "agency-health/agency.key",
        "agency-health/agency.pub",
        "agency-health/linkage-secret.json",
        "agency-health/seal.pub",
        "agency-health/linkage-token",
        "linkage-service/agencies/health.pub",
    }
    assert load_secret(tree / "agency-health" / "linkage-secret.json") == load_secret(
        tree / "agency-police" / "linkage-secret.json"
    )
    after = _snapshot(tree)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"linkage-service/tokens"}  # one line appended
    assert after["linkage-service/tokens"][0].startswith(before["linkage-service/tokens"][0])


def test_a_recorded_key_that_went_missing_is_not_replaced(tree):
    (tree / "witness" / "witness.key").unlink()
    before = _snapshot(tree)
    with pytest.raises(CeremonyError, match=r"witness/witness\.key"):
        run_ceremony(tree, AGENCIES)
    assert _snapshot(tree) == before


def test_half_a_key_pair_is_refused(tmp_path):
    root = tmp_path / "keys"
    (root / "linkage-service").mkdir(parents=True, mode=0o700)
    root.chmod(0o700)
    (root / "linkage-service" / "attestation.pub").write_text("AAAA\n")
    with pytest.raises(CeremonyError, match="half key pair"):
        run_ceremony(root, AGENCIES)
    assert not (root / "linkage-service" / "attestation.key").exists()


def test_a_directory_others_can_enter_is_refused(tmp_path):
    root = tmp_path / "keys"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    with pytest.raises(CeremonyError, match="chmod 700"):
        run_ceremony(root, AGENCIES)


@pytest.mark.parametrize("agencies", [("Police",), ("p",), ("police", "police"), ("a b",)], ids=str)
def test_bad_agency_ids_are_refused_before_anything_is_made(tmp_path, agencies):
    with pytest.raises(CeremonyError, match="agency"):
        run_ceremony(tmp_path / "keys", agencies)
    assert not (tmp_path / "keys").exists()


def test_cli_prints_what_goes_where_and_fails_plainly(tmp_path, capsys):
    root = tmp_path / "keys"
    assert main(["--out", str(root), "--agency", "police"]) == 0
    out = capsys.readouterr().out
    assert f"{root / 'agency-police'}/  ->  agency 'police' only" in out
    assert "linkage-service agency add --id police" in out
    assert "files created" in out
    assert main(["--out", str(root), "--agency", "Bad Id"]) == 1
    assert "family-linkage keys: error: agency id 'Bad Id'" in capsys.readouterr().err
