"""Rulesets and risk models: the shipped files load; every kind of bad file is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage_service.programme._riskmodel import default_model, load_model
from linkage_service.programme._ruleset import (
    RulesetError,
    default_ruleset,
    load_ruleset,
    shipped_rulesets,
)

MINIMAL = """
format = "family-linkage/ruleset/v1"
name = "tiny"
version = "1.0"
title = "A tiny ruleset"

[eligibility]
min_problems = 1

[measures.dv_12m]
title = "DV incidents"
events = ["dv_incidents"]
window_days = 365
aggregate = "sum"

[indicators.dv]
title = "DV"
measure = "dv_12m"
op = ">="
threshold = 1

[problems.abuse]
title = "Abuse"
any_of = ["dv"]
sources = ["police_incidents"]
"""


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_rulesets_load_and_the_model_fits_both():
    names = set(shipped_rulesets())
    assert names == {"troubled-families-phase2", "supporting-families-2022"}
    tf = default_ruleset("troubled-families-phase2")
    sf = default_ruleset("supporting-families-2022")
    assert (tf.eligibility.min_problems, len(tf.problems)) == (2, 6)
    assert (sf.eligibility.min_problems, len(sf.problems)) == (3, 10)
    assert set(sf.measures) == set(tf.measures)  # inherited from the base file
    assert set(sf.outcomes) == set(sf.problems)
    assert len({f.progress for f in tf.measures.values()} - {None}) == 5
    assert sum(1 for m in tf.measures.values() if m.progress) == 13  # Family Progress Data
    model = default_model()
    model.check_against(tf)
    model.check_against(sf)


def test_minimal_ruleset_and_its_hash_ignores_comments(tmp_path):
    a = load_ruleset(write(tmp_path, MINIMAL))
    b = load_ruleset(write(tmp_path, "# a comment\n" + MINIMAL, "b.toml"))
    c = load_ruleset(write(tmp_path, MINIMAL.replace("threshold = 1", "threshold = 2"), "c.toml"))
    assert a.sha256() == b.sha256() != c.sha256()
    assert len(a.sha256()) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('measure = "dv_12m"', 'measure = "nope"'),
            "indicators.dv.measure: unknown measure 'nope'",
        ),
        (
            ('any_of = ["dv"]', 'any_of = ["ghost"]'),
            "problems.abuse.any_of: unknown indicator 'ghost'",
        ),
        (("threshold = 1", 'threshold = "1"'), "indicators.dv.threshold"),
        (('events = ["dv_incidents"]', 'events = ["dv_incident"]'), "measures.dv_12m.events.0"),
        (("window_days = 365", "window_days = 365.5"), "measures.dv_12m.window_days"),
        (('aggregate = "sum"', 'aggregate = "average"'), "measures.dv_12m.aggregate"),
        (("min_problems = 1", "min_problems = 2"), "eligibility.min_problems: 2 is more than"),
        (('op = ">="', 'op = "=>"'), "indicators.dv.op"),
        (('version = "1.0"', 'version = "one"'), "version"),
        (('title = "DV"\n', 'title = "DV"\nseverity = 9\n'), "indicators.dv.severity"),
    ],
)
def test_bad_rules_are_refused_by_name(tmp_path, change, message):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(RulesetError) as err:
        load_ruleset(write(tmp_path, MINIMAL.replace(old, new, 1)))
    assert message in str(err.value)
    assert "r.toml" in str(err.value)


def test_a_cycle_in_combined_indicators_is_named(tmp_path):
    text = (
        MINIMAL
        + """
[indicators.a]
title = "A"
any_of = ["b"]

[indicators.b]
title = "B"
all_of = ["dv", "c"]

[indicators.c]
title = "C"
any_of = ["a"]
"""
    )
    with pytest.raises(RulesetError, match="a cycle in definitions: a -> b -> c -> a"):
        load_ruleset(write(tmp_path, text))


def test_an_indicator_is_either_a_threshold_or_a_combination(tmp_path):
    both = MINIMAL.replace('title = "DV"\n', 'title = "DV"\nany_of = ["dv"]\n')
    with pytest.raises(RulesetError, match="either measure/op/threshold or any_of/all_of"):
        load_ruleset(write(tmp_path, both))
    half = MINIMAL.replace('op = ">="\n', "")
    with pytest.raises(RulesetError, match="needs both op and threshold"):
        load_ruleset(write(tmp_path, half))


def test_outcomes_must_name_a_problem_and_a_measure(tmp_path):
    good = (
        MINIMAL
        + """
[outcomes.abuse]
title = "No DV"
all_of = [{ measure = "dv_12m", op = "==", value = 0, missing_as_zero = true }]
"""
    )
    assert load_ruleset(write(tmp_path, good)).outcomes["abuse"].all_of[0].missing_as_zero
    with pytest.raises(RulesetError, match="outcomes.crime: no problem 'crime'"):
        load_ruleset(write(tmp_path, good.replace("[outcomes.abuse]", "[outcomes.crime]")))
    with pytest.raises(RulesetError, match="outcomes.abuse.all_of.0.measure: unknown measure"):
        load_ruleset(write(tmp_path, good.replace('{ measure = "dv_12m"', '{ measure = "x"')))


def test_base_files_resolve_and_loops_are_refused(tmp_path):
    write(tmp_path, MINIMAL, "base.toml")
    child = load_ruleset(
        write(
            tmp_path,
            'base = "base.toml"\nname = "child"\nversion = "2.0"\ntitle = "Child"\n'
            "[eligibility]\nmin_problems = 1\nfamilies_only = false\n",
            "child.toml",
        )
    )
    assert (child.name, child.version, child.eligibility.families_only) == ("child", "2.0", False)
    assert set(child.indicators) == {"dv"}
    write(tmp_path, 'base = "loop2.toml"\n' + MINIMAL, "loop1.toml")
    write(tmp_path, 'base = "loop1.toml"\n', "loop2.toml")
    with pytest.raises(RulesetError, match="loops back"):
        load_ruleset(tmp_path / "loop1.toml")
    with pytest.raises(RulesetError, match="same directory"):
        load_ruleset(write(tmp_path, 'base = "../x.toml"\n', "escape.toml"))


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(RulesetError, match="does not exist"):
        load_ruleset(tmp_path / "missing.toml")
    with pytest.raises(RulesetError, match="not valid TOML"):
        load_ruleset(write(tmp_path, "name = ", "broken.toml"))
    with pytest.raises(RulesetError, match="no shipped ruleset 'nope'"):
        default_ruleset("nope")


def test_a_model_refers_only_to_what_the_ruleset_defines(tmp_path):
    tiny = load_ruleset(write(tmp_path, MINIMAL))
    with pytest.raises(
        RulesetError, match="factors.CHILD_PROTECTION.when: ruleset tiny 1.0 has no"
    ):
        default_model().check_against(tiny)
    text = """
format = "family-linkage/risk-model/v1"
name = "tiny-model"
version = "1"
title = "M"
[thresholds]
unlock = 10
step_up = 5
step_down = 5
[clearance]
default = 1
[factors.DV]
title = "DV"
when = "indicator:dv"
points = 10
"""
    model = load_model(write(tmp_path, text, "m.toml"))
    model.check_against(tiny)
    with pytest.raises(RulesetError, match="thresholds.unlock"):
        load_model(write(tmp_path, text.replace("unlock = 10", 'unlock = "10"'), "m2.toml"))
    with pytest.raises(RulesetError, match="reason codes used twice: DV"):
        load_model(
            write(
                tmp_path,
                text + '[combinations.DV]\ntitle = "x"\nall_of = ["indicator:dv", "indicator:dv"]\n'
                "points = 1\n",
                "m3.toml",
            )
        )
