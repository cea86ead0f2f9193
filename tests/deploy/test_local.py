"""The local run's PostgreSQL URL (a password in it is refused, never written or printed)
and its databases as the operations guide's backup section names them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from deploy import _cli
from deploy._errors import StackError
from deploy._local import LocalStack, _pg_databases, database_names

PASSWORD = "hunter2-not-for-files"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/",
        f"postgres://postgres:{PASSWORD}@127.0.0.1:5432/",
        f"postgresql://postgres@127.0.0.1:5432/?password={PASSWORD}",
    ],
    ids=["userinfo", "postgres-scheme", "query"],
)
def test_a_password_in_the_url_base_is_refused_naming_the_supported_ways(tmp_path, url):
    with pytest.raises(StackError) as info:
        LocalStack(tmp_path / "run", database_url_base=url, database_prefix="fixops_t")
    message = str(info.value)
    assert PASSWORD not in message
    assert "holds a password" in message
    assert "PGPASSWORD" in message and "~/.pgpass" in message and "PGPASSFILE" in message


def test_a_url_base_without_a_password_is_taken(tmp_path):
    stack = LocalStack(
        tmp_path / "run",
        database_url_base="postgresql://postgres@127.0.0.1:5432/",
        database_prefix="fixops_t",
    )
    assert stack.database_urls["web"] == "postgresql://postgres@127.0.0.1:5432/fixops_t_web"


@pytest.mark.parametrize("command", ["up", "demo"])
def test_up_and_demo_stop_before_writing_anything(tmp_path, capsys, command):
    run = tmp_path / "run"
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/"
    code = _cli.main([command, "--dir", str(run), "--database-url-base", url])
    out, err = capsys.readouterr()
    assert code == 1
    assert "PGPASSWORD" in err
    assert PASSWORD not in out + err
    assert not run.exists()  # no keys, no settings file


def test_a_server_that_cannot_be_reached_is_named_without_a_password():
    # _pg_databases is reached only with a checked URL; its message hides a password anyway
    with pytest.raises(StackError) as info:
        _pg_databases(f"postgresql://nobody:{PASSWORD}@127.0.0.1:1/", "fixops_t", fresh=False)
    assert PASSWORD not in str(info.value) and "127.0.0.1:1" in str(info.value)


def _backup_section() -> str:
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    return text.split("## Backup and restore", 1)[1].split("\n## ", 1)[0]


def test_the_backup_guide_names_every_database_up_and_the_examples_make():
    section = _backup_section()
    for name in database_names("family_linkage").values():  # what up makes on PostgreSQL
        assert f"`{name}`" in section, name
    for store in database_names("p"):  # each store's row and the <prefix> form
        assert f"`<prefix>_{store}`" in section, store
    config = Path(__file__).parents[2] / "deploy" / "config"
    examples = {
        **tomllib.loads((config / "linkage-service.toml").read_text(encoding="utf-8")),
        **{
            f"unlock_{k}": v
            for k, v in tomllib.loads((config / "unlock-service.toml").read_text()).items()
        },
        **{
            f"web_{k}": v
            for k, v in tomllib.loads((config / "web-service.toml").read_text()).items()
        },
    }
    fields = (
        "database_url",
        "unlock_database_url",
        "unlock_audit_database_url",
        "web_database_url",
    )
    for field in fields:
        name = examples[field].rsplit("/", 1)[1]
        assert f"pg_dump -Fc -d {name} -f" in section, (field, name)


def test_every_backup_command_in_the_guide_makes_a_private_file():
    section = _backup_section()
    commands = re.findall(r"`([^`]*(?:pg_dump -|sqlite3 )[^`]*)`", section)  # command lines
    assert len(commands) >= 5
    for command in commands:
        assert command.startswith("(umask 077 && "), command
