"""Settings files and environment variables, the same way for every service."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from service_common import load_service_settings


class Oops(Exception):
    pass


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "sqlite:///x.db"
    key_file: Path | None = None
    files: tuple[Path, ...] = ()
    names: tuple[str, ...] = ()
    port: int = 1


def test_file_then_environment_with_relative_paths(tmp_path):
    conf = tmp_path / "etc" / "svc.toml"
    conf.parent.mkdir()
    conf.write_text('url = "postgresql://h/d"\nkey_file = "keys/k"\nfiles = ["a", "/abs/b"]\n')
    s = load_service_settings(Example, "SVC_", conf, {"SVC_PORT": "99", "SVC_NAMES": "x,y"}, Oops)
    assert s.url == "postgresql://h/d" and s.port == 99 and s.names == ("x", "y")
    assert s.key_file == conf.parent / "keys" / "k"
    assert s.files == (conf.parent / "a", Path("/abs/b"))
    named = load_service_settings(Example, "SVC_", None, {"SVC_CONFIG": str(conf)}, Oops)
    assert named.url == "postgresql://h/d"
    assert load_service_settings(Example, "SVC_", None, {}, Oops) == Example()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("url = ", "is not valid"),
        ("port = 'many'", "invalid settings: port"),
        ("nope = 1", "invalid settings: nope"),
    ],
)
def test_bad_files_name_the_file_or_field(tmp_path, text, message):
    conf = tmp_path / "svc.toml"
    conf.write_text(text)
    with pytest.raises(Oops, match=message):
        load_service_settings(Example, "SVC_", conf, {}, Oops)
    with pytest.raises(Oops, match="cannot read settings file"):
        load_service_settings(Example, "SVC_", tmp_path / "missing.toml", {}, Oops)
