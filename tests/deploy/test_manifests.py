"""The production manifests agree with the code: each example config parses with its
service's own settings model, units and recipes run commands that exist, harden the
process and hold no secrets."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from audit_log import Settings as AuditSettings
from audit_log._cli import _parser as audit_log_parser
from linkage_service import load_settings as load_linkage_settings
from linkage_service._config import Settings as LinkageSettings
from unlock_service._config import Settings as UnlockSettings
from unlock_service._config import load_settings as load_unlock_settings
from web_service._config import Settings as WebSettings
from web_service._config import load_settings as load_web_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOT = DEPLOY.parent
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
RECIPES = sorted((DEPLOY / "containers").glob("*.Containerfile"))
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_linkage_example_parses_with_the_linkage_settings_loader():
    settings = load_linkage_settings(DEPLOY / "config" / "linkage-service.toml", environ={})
    assert settings.host == "127.0.0.1"
    assert settings.attestation_key_file is not None


def test_unlock_example_parses_with_the_unlock_settings_loader():
    settings = load_unlock_settings(DEPLOY / "config" / "unlock-service.toml", environ={})
    assert settings.host == "127.0.0.1"


def test_web_example_parses_with_the_web_settings_loader():
    settings = load_web_settings(DEPLOY / "config" / "web-service.toml", environ={})
    assert settings.host == "127.0.0.1" and settings.cookie_secure
    assert settings.audit_log_vkey_file is not None and settings.witness_vkey_file is not None
    assert settings.audit_base == "https://unlock.council.example/audit"


def test_audit_log_example_parses_with_the_audit_log_settings_model():
    data = tomllib.loads((DEPLOY / "config" / "audit-log.toml").read_text())
    settings = AuditSettings.model_validate(data)
    settings.anomaly_config()
    assert settings.witnesses and settings.key_file is not None


def test_witness_example_names_the_options_of_witness_serve():
    data = tomllib.loads((DEPLOY / "config" / "witness.toml").read_text())
    argv = ["witness", "serve"]
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            argv += [f"--{key.replace('_', '-')}", str(item)]
    args = audit_log_parser().parse_args(argv)
    assert args.port == 8401 and args.host == "127.0.0.1"


def _unit(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_are_hardened(path):
    unit = _unit(path)
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit.get(key) == [value], f"{path.name}: {key}"
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User"), "runs as root"
    assert unit.get("ReadWritePaths"), "ProtectSystem=strict needs its state path"
    assert all(v.startswith("/var/lib/family-linkage/") for v in unit["ReadWritePaths"])
    assert unit.get("LoadCredential"), "keys should be credentials"


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_run_our_console_scripts(path):
    [exec_start] = _unit(path)["ExecStart"]
    commands = set(re.findall(r"/opt/family-linkage/venv/bin/([a-z-]+)", exec_start))
    assert commands
    for command in commands:
        assert command in SCRIPTS, f"{path.name} runs {command}, not a console script"


def test_unit_environment_overrides_name_real_settings_fields():
    prefixes = {
        "LINKAGE_SERVICE_": set(LinkageSettings.model_fields),
        "UNLOCK_SERVICE_": set(UnlockSettings.model_fields),
        "WEB_SERVICE_": set(WebSettings.model_fields),
    }
    for path in UNITS:
        for value in _unit(path).get("Environment", []):
            name = value.split("=", 1)[0]
            for prefix, fields in prefixes.items():
                if name.startswith(prefix) and name != prefix + "CONFIG":
                    assert name.removeprefix(prefix).lower() in fields, f"{path.name}: {name}"


def test_credential_paths_match_the_units_that_load_them():
    for path in UNITS:
        unit = _unit(path)
        loaded = {v.split(":", 1)[0] for v in unit.get("LoadCredential", [])}
        used = re.findall(
            rf"/run/credentials/{re.escape(path.name)}/([\w.-]+)", path.read_text()
        ) + re.findall(r"%d/([\w.-]+)", path.read_text())
        used += re.findall(r"\$CREDENTIALS_DIRECTORY/([\w.-]+)", path.read_text())
        assert used and set(used) <= loaded, path.name


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_container_recipes_run_as_non_root_our_console_scripts(path):
    text = path.read_text()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and all(not u.startswith(("root", "0:", "0")) for u in users)
    [entry] = re.findall(r'^ENTRYPOINT \["([a-z-]+)"', text, re.M)
    assert entry in SCRIPTS
    assert not re.search(r"^(COPY|ADD) .*keys", text, re.M), "keys are mounted, never baked in"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_container_recipes_build_the_whole_distribution(path):
    """The build stage copies every package pyproject.toml ships, and Node.js and npm,
    which setup.py needs for the web pages' pinned front-end packages."""
    build = path.read_text().split("\nFROM ")[1]
    copied = set(re.findall(r"^COPY (\w+) \1$", build, re.M))
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {name.rstrip("*") for name in shipped["packages"]["find"]["include"]}
    assert packages <= copied, f"{path.name} leaves out {sorted(packages - copied)}"
    assert re.search(r"apt-get install [^\n]*\bnodejs npm\b", build), path.name


def test_every_service_has_a_unit_a_recipe_and_an_example():
    services = {"linkage-service", "unlock-service", "web-service"}
    assert services <= {p.stem for p in UNITS}
    assert services <= {p.name.removesuffix(".Containerfile") for p in RECIPES}
    assert services <= {p.stem for p in (DEPLOY / "config").glob("*.toml")}


def test_no_secret_material_in_the_manifests():
    secretish = re.compile(r"PRIVATE\+KEY|[A-Za-z0-9+/]{43}=|\b[0-9a-f]{64}\b")
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".toml", ".service", ".Containerfile", ".md"}:
            assert not secretish.search(path.read_text()), path


def test_unlock_example_names_the_witness_and_the_policy_example_loads():
    settings = load_unlock_settings(DEPLOY / "config" / "unlock-service.toml", environ={})
    [witness] = settings.audit_witnesses
    assert witness.token_env == "AUDIT_LOG_WITNESS_TOKEN"
    from unlock_service import load_policy

    policy = load_policy(DEPLOY / "config" / "policy.toml")
    assert "SAFEGUARDING" in policy.rules.purposes
