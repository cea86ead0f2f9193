"""The linkage-service command line: migrate, agency, token, push, runs, stats."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from linkage_service._cli import main, push
from linkage_service._config import load_tokens
from linkage_service._errors import LinkageError

from ._factories import agency, build_extract, make_record


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "linkage.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "cli.db"}"\ntoken_file = "{tmp_path / "tokens"}"\n'
    )
    return path


def _pub(tmp_path: Path, agency_id: str, raw: bytes) -> Path:
    import base64

    path = tmp_path / f"{agency_id}.pub"
    path.write_text(
        json.dumps({"agency_id": agency_id, "public_key": base64.b64encode(raw).decode()})
    )
    return path


def test_migrate_agency_token_runs_stats(config, tmp_path, capsys):
    assert main(["--config", str(config), "migrate"]) == 0
    school = agency("school", 1)
    pub = _pub(tmp_path, "school", school.public)
    args = ["--config", str(config), "agency", "add", "--id", "school", "--public-key", str(pub)]
    assert main([*args, "--types", "education,early_help"]) == 0
    assert main(["--config", str(config), "agency", "list"]) == 0
    out = capsys.readouterr().out
    assert f"school\t{school.key_id}\tearly_help,education" in out
    assert (
        main(
            [
                "--config",
                str(config),
                "token",
                "add",
                "--role",
                "analyst",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert (tmp_path / "t").read_text().strip() == token
    assert (tmp_path / "tokens").stat().st_mode & 0o777 == 0o600
    assert token not in (tmp_path / "tokens").read_text()  # only its hash is stored
    assert load_tokens(tmp_path / "tokens").authenticate(f"Bearer {token}").role == "analyst"
    assert main(["--config", str(config), "runs"]) == 0
    assert main(["--config", str(config), "stats"]) == 0
    assert json.loads(capsys.readouterr().out)["active_records"] == 0


def test_errors_are_plain_messages(config, tmp_path, capsys):
    assert main(["--config", str(config), "token", "add", "--role", "root"]) == 1
    assert "unknown role 'root'" in capsys.readouterr().err
    pub = _pub(tmp_path, "police", b"k" * 32)
    args = ["--config", str(config), "agency", "add", "--id", "school", "--public-key", str(pub)]
    assert main([*args, "--types", "education"]) == 1
    assert "key of agency 'police'" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.toml"), "stats"]) == 1
    assert "cannot read settings file" in capsys.readouterr().err


def test_push_streams_the_file(tmp_path):
    body = build_extract(agency("school", 1), [make_record(random.Random(3))])
    path = tmp_path / "school.jsonl"
    path.write_bytes(body)
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = request.read()
        seen["auth"] = request.headers["authorization"]
        return httpx.Response(200, json={"run_id": 1, "records_added": 1})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    assert push(path, "http://svc/", "tok", client)["run_id"] == 1
    assert seen == {"body": body, "auth": "Bearer tok"}

    refused = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(409, json={"detail": "replayed"}))
    )
    with pytest.raises(LinkageError, match="refused \\(409\\): replayed"):
        push(path, "http://svc", "tok", refused)


def test_programme_commands(tmp_path, capsys):
    import base64

    from ._programme_helpers import AS_AT, Member, TinyDb

    db = TinyDb(tmp_path / "prog.db")
    hid, _ = db.household(
        1,
        [
            Member(
                34,
                "F",
                ("health",),
                [
                    ("police", "dv_incidents", 3, AS_AT),
                    ("health", "months_mental_health", 6, AS_AT),
                ],
            ),
            Member(6, "M", ("school",), [("csc", "child_protection_plan", 1, AS_AT)]),
        ],
    )
    db.engine.dispose()
    fid = "fam_" + hid[3:]
    key = tmp_path / "att.key"
    key.write_text(base64.b64encode(bytes(range(3, 35))).decode())
    key.chmod(0o600)
    config = tmp_path / "p.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "prog.db"}"\ntoken_file = "{tmp_path / "t"}"\n'
        f'attestation_key_file = "{key}"\n'
    )
    base = ["--config", str(config)]
    assert main([*base, "ruleset", "show"]) == 0
    assert "ruleset troubled-families-phase2 1.0 sha256" in capsys.readouterr().out
    assert main([*base, "assess", "--as-at", AS_AT.isoformat()]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["eligible"], stats["attestations"]) == (1, 1)
    assert main([*base, "families", "--eligible", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("family_id,score,rank") and lines[1].startswith(fid)
    assert main([*base, "family", fid]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "identified"
    assert main([*base, "status", fid, "attached", "--reason", "WORK_STARTED"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline_cycle"] == 1
    assert main([*base, "status", fid, "attached", "--reason", "WORK_STARTED"]) == 1
    assert "already attached" in capsys.readouterr().err
    assert main([*base, "claims", "run", "2027-H1"]) == 1
    assert "latest assessment (cycle 1) is as at 2026-11-01, in window 2026-H2" in (
        capsys.readouterr().err
    )
    assert main([*base, "claims", "run", "2026-H2"]) == 0
    assert json.loads(capsys.readouterr().out)["attachment_claims"] == 1
    assert main([*base, "claims", "export", "--window", "2026-H2"]) == 0
    assert fid in capsys.readouterr().out
    out = tmp_path / "audit" / "claims-2026-H2"
    out.parent.mkdir()
    assert main([*base, "claims", "export", "--window", "2026-H2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [f"{out}.csv", f"{out}.json"]
    assert (tmp_path / "audit" / "claims-2026-H2.csv").read_text().count("\n") == 2
    claimed = json.loads((tmp_path / "audit" / "claims-2026-H2.json").read_text())["claims"]
    assert [c["family_id"] for c in claimed] == [fid]
    assert main([*base, "status", fid, "claimed", "--reason", "BY_HAND"]) == 1
    assert "only through a claim batch" in capsys.readouterr().err
    # switching the ruleset: the next cycle uses it, no restart
    assert main([*base, "ruleset", "use", "supporting-families-2022", "--reason", "PHASE"]) == 0
    assert json.loads(capsys.readouterr().out)["previous"]["name"] == "troubled-families-phase2"
    assert main([*base, "ruleset", "show"]) == 0
    assert "ruleset supporting-families-2022 1.0" in capsys.readouterr().out
    assert main([*base, "ruleset", "use", "supporting-families-2022", "--reason", "PHASE"]) == 1
    assert "already the active ruleset" in capsys.readouterr().err
    assert main([*base, "report", "status", "--csv"]) == 0
    assert "attached" in capsys.readouterr().out
    assert main([*base, "lead", fid, "team_north"]) == 0
    assert json.loads(capsys.readouterr().out)["lead_professional"] == "team_north"
    assert main([*base, "lead", fid, "Ms Smith"]) == 1
    assert "expected a professional id or team code" in capsys.readouterr().err
    assert main([*base, "report", "progress-data", "--cohort", "2026-Q4", "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 14 and rows[0].startswith("measure,category")
    assert main([*base, "report", "breakdowns", "--by", "lead_professional"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["group"] == "team_north"
    assert main([*base, "report", "cost-avoidance", "--years", "2", "--average-gbp", "9000"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["saving_per_family_year_gbp"] == 67190
    assert main([*base, "report", "status", "--years", "2"]) == 1
    assert "report status takes no years" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    assert main(["ruleset", "check", str(bad)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


def test_review_summary_and_export(tmp_path, capsys):
    from ._programme_helpers import AS_AT, TinyDb
    from .test_review import build

    db = TinyDb(tmp_path / "review.db")
    case = build(db)
    db.engine.dispose()
    config = tmp_path / "r.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "review.db"}"\ntoken_file = "{tmp_path / "t"}"\n'
    )
    base = ["--config", str(config)]
    assert main([*base, "review", "summary"]) == 0
    out = capsys.readouterr().out
    assert "review pairs: 5 (impact as of no assessment cycle yet; 5 not assessed in it)" in out
    assert main([*base, "review", "export"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []  # nothing assessed: nothing impactful
    assert main([*base, "assess", "--as-at", AS_AT.isoformat()]) == 0
    capsys.readouterr()
    assert main([*base, "review", "summary"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "review pairs: 5 (impact as of assessment cycle 1; 0 not assessed in it)"
    assert lines[1] == (
        "would change a family: 3 (eligibility 1, unlock threshold 1, both 1); "
        "families affected: 3; no change: 2"
    )
    assert "  0.4-0.5          2" in lines
    assert "    " + "agree".ljust(32) + " " + "3".rjust(9) in lines  # sex agrees in 3 pairs
    assert main([*base, "review", "summary", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["impact"]["eligibility"] == 1
    assert main([*base, "review", "export"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split(",")[6] for r in rows[1:]] == ["threshold", "both", "eligibility"]
    assert rows[3].split(",")[7] == case["family"][1]
    assert main([*base, "review", "export", "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6
    # a clerical decision takes the pair out of the queue and is exported for audit
    a, b, _p = case["pairs"]["both"]
    decide = [*base, "review", "decide", str(b), str(a), "match", "--actor", "coordinator:kim"]
    assert main([*decide, "--reason", "same person"]) == 1
    assert "reason code" in capsys.readouterr().err
    assert main([*decide, "--reason", "SAME_PERSON"]) == 0
    assert json.loads(capsys.readouterr().out)["effect"] == "pending"
    assert main([*decide, "--reason", "SAME_PERSON"]) == 1
    assert "already decided match" in capsys.readouterr().err
    assert main([*base, "review", "export", "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert main([*base, "review", "decisions"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and rows[1].split(",")[8:12][0] == "match"
    assert ",coordinator:kim," in rows[1]
    assert main([*base, "review", "decisions", "--json", "--current"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["reason"] == "SAME_PERSON"


def test_review_needs_a_subcommand(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["review"])
    assert exit_.value.code == 2 and "review_command" in capsys.readouterr().err
