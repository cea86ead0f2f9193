"""The ``unlock-service`` command line: init, professionals, tokens, keys, flags, policy."""

from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa

from audit_log import parse_leaf
from unlock_service._cli import main

from ._factories import b64


@pytest.fixture
def config(tmp_path, monkeypatch):
    from unlock_service._config import write_secret

    write_secret(tmp_path / "linkage.token", "a-linkage-token-0123456789abcdef")
    (tmp_path / "linkage.pub").write_text(b64(b"L" * 32))
    out = tmp_path / "svc"
    assert (
        main(
            [
                "init",
                "--out",
                str(out),
                "--linkage-public-key",
                str(tmp_path / "linkage.pub"),
                "--linkage-token-file",
                str(tmp_path / "linkage.token"),
            ]
        )
        == 0
    )
    monkeypatch.setenv("UNLOCK_SERVICE_CONFIG", str(out / "unlock-service.toml"))
    return out


def _keygen(tmp_path, name, capsys):
    assert main(["professional", "keygen", "--out", str(tmp_path / name)]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_administration_round_trip_is_audited(config, tmp_path, capsys):
    capsys.readouterr()
    admin_pub = _keygen(tmp_path, "admin.key", capsys)
    assert (
        main(
            [
                "professional",
                "add",
                "--role",
                "admin",
                "--team",
                "ig-office",
                "--clearance",
                "9",
                "--public-key",
                admin_pub,
            ]
        )
        == 0
    )
    admin = _json(capsys)["professional_id"]
    # after the first, every change names an administrator
    worker_pub = _keygen(tmp_path, "worker.key", capsys)
    assert (
        main(
            [
                "professional",
                "add",
                "--role",
                "social_worker",
                "--team",
                "north",
                "--clearance",
                "4",
                "--public-key",
                worker_pub,
            ]
        )
        == 2
    )
    assert "--actor" in capsys.readouterr().err
    assert (
        main(
            [
                "professional",
                "add",
                "--actor",
                admin,
                "--role",
                "social_worker",
                "--team",
                "north",
                "--clearance",
                "4",
                "--public-key",
                str(tmp_path / "worker.key"),
            ]
        )
        == 0
    )
    worker = _json(capsys)["professional_id"]
    # a non-admin may not administer
    assert (
        main(
            ["professional", "set-clearance", "--actor", worker, "--id", worker, "--clearance", "9"]
        )
        == 2
    )
    assert "not an administrator" in capsys.readouterr().err
    assert (
        main(
            ["professional", "set-clearance", "--actor", admin, "--id", worker, "--clearance", "6"]
        )
        == 0
    )
    assert _json(capsys)["clearance"] == 6
    new_pub = _keygen(tmp_path, "worker2.key", capsys)
    assert (
        main(
            [
                "professional",
                "rotate-key",
                "--actor",
                admin,
                "--id",
                worker,
                "--public-key",
                new_pub,
            ]
        )
        == 0
    )
    assert _json(capsys)["revision"] == 3
    assert main(["professional", "list", "--json"]) == 0
    rows = _json(capsys)
    assert {r["professional_id"] for r in rows} == {admin, worker}
    # token issue: a JWT bound to the current key
    assert main(["token", "issue", "--professional", worker]) == 0
    token = capsys.readouterr().out.strip()
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    from unlock_service import jwk_thumbprint

    assert payload["sub"] == worker
    assert payload["cnf"]["jkt"] == jwk_thumbprint(base64.b64decode(new_pub))
    assert payload["exp"] - payload["iat"] == 300
    # sealing key rotation
    assert main(["keys", "rotate", "--actor", admin]) == 0
    assert "now current" in capsys.readouterr().out
    assert len([p for p in (config / "seal-keys").iterdir() if p.is_dir()]) == 2
    # policy show
    assert main(["policy", "show"]) == 0
    shown = _json(capsys)
    assert shown["version"] == "1.0.0" and len(shown["sha256"]) == 64
    # every change is in the audit log, with no free text
    engine = sa.create_engine(f"sqlite:///{config / 'unlock-audit.sqlite'}")
    with engine.connect() as c:
        leaves = [
            parse_leaf(bytes(r[0])).entry
            for r in c.execute(sa.text("SELECT leaf_data FROM entries ORDER BY idx"))
        ]
    engine.dispose()
    assert [(e.type, getattr(e, "reason_code", None)) for e in leaves] == [
        ("professional_change", "REGISTERED"),
        ("professional_change", "REGISTERED"),
        ("professional_change", "CLEARANCE_SET"),
        ("professional_change", "KEY_ROTATED"),
        ("key_rotation", None),
    ]
    assert leaves[0].actor_id == admin and leaves[1].actor_id == admin
    assert leaves[3].new_key_sha256 != leaves[3].old_key_sha256


def test_flags_and_reviews_from_the_command_line(config, tmp_path, capsys):
    capsys.readouterr()
    pub = _keygen(tmp_path, "admin.key", capsys)
    main(
        [
            "professional",
            "add",
            "--role",
            "admin",
            "--team",
            "ig-office",
            "--clearance",
            "9",
            "--public-key",
            pub,
        ]
    )
    admin = _json(capsys)["professional_id"]
    pub = _keygen(tmp_path, "ig.key", capsys)
    main(
        [
            "professional",
            "add",
            "--actor",
            admin,
            "--role",
            "ig_officer",
            "--team",
            "ig-office",
            "--clearance",
            "9",
            "--public-key",
            pub,
        ]
    )
    ig = _json(capsys)["professional_id"]
    family = "fam_" + "ab" * 8
    assert main(["optout", "add", "--actor", ig, "--family", family]) == 0
    assert _json(capsys)["reason"] == "OPT_OUT_ADDED"
    assert main(["optout", "add", "--actor", admin, "--family", family]) == 2  # admin may not
    capsys.readouterr()
    assert main(["optout", "remove", "--actor", ig, "--family", family]) == 0
    assert _json(capsys)["reason"] == "OPT_OUT_REMOVED"
    assert main(["review", "list", "--actor", ig]) == 0
    assert _json(capsys) == {"reviews": []}


def test_missing_settings_fail_plainly(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("UNLOCK_SERVICE_CONFIG", raising=False)
    assert main(["--config", str(tmp_path / "nope.toml"), "migrate"]) == 2
    assert "cannot read settings file" in capsys.readouterr().err


def test_a_loose_audit_key_stops_administration(config, tmp_path, capsys):
    (config / "audit.key").chmod(0o644)
    pub = _keygen(tmp_path, "a.key", capsys)
    assert (
        main(
            [
                "professional",
                "add",
                "--role",
                "admin",
                "--team",
                "x1",
                "--clearance",
                "9",
                "--public-key",
                pub,
            ]
        )
        == 2
    )
    assert "chmod 600" in capsys.readouterr().err


def test_flag_commands_need_no_witness_token(config, tmp_path, capsys, monkeypatch):
    # They only append (beside the running service, which publishes the
    # checkpoints), so a witness the settings name is never asked.
    from audit_log import CosignatureSigner

    vkey = CosignatureSigner.from_seed("ig.test/witness", b"\x07" * 32).vkey
    with (config / "unlock-service.toml").open("a") as fh:
        fh.write(
            f'\n[[audit_witnesses]]\nurl = "http://127.0.0.1:2"\nvkey = "{vkey}"\n'
            'token_env = "TEST_WITNESS_TOKEN"\n'
        )
    monkeypatch.delenv("TEST_WITNESS_TOKEN", raising=False)
    capsys.readouterr()
    pub = _keygen(tmp_path, "ig.key", capsys)
    admin_pub = _keygen(tmp_path, "admin.key", capsys)
    assert (
        main(
            [
                "professional",
                "add",
                *("--role", "admin", "--team", "ig-office", "--clearance", "9"),
                *("--public-key", admin_pub),
            ]
        )
        == 0
    )
    admin = _json(capsys)["professional_id"]
    assert (
        main(
            [
                "professional",
                "add",
                *("--actor", admin, "--role", "ig_officer", "--team", "ig-office"),
                *("--clearance", "0", "--public-key", pub),
            ]
        )
        == 0
    )
    ig = _json(capsys)["professional_id"]
    family = "fam_" + "cd" * 8
    assert main(["optout", "add", "--actor", ig, "--family", family]) == 0
    assert _json(capsys)["reason"] == "OPT_OUT_ADDED"
    assert main(["review", "list", "--actor", ig]) == 0
    assert _json(capsys) == {"reviews": []}
