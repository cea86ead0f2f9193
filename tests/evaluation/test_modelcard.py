"""Model cards: the statistics (known answers, a brute-force AUC reference), the facts read
from the model file, the bias flags, and the shipped card against the demo population."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from evaluation import _modelcard as mc
from linkage_service.programme._riskmodel import RiskModel, default_model
from linkage_service.programme._ruleset import RulesetError, default_ruleset

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CARD = ROOT / "docs" / "model-cards" / "family-complexity-1.0.json"


def _auc_pairs(scores: list[float], labels: list[bool]) -> float:
    """Reference: every (positive, negative) pair, a win 1, a tie 1/2."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_known_answers() -> None:
    assert mc.roc_auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert mc.roc_auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    assert mc.roc_auc([5, 5, 5, 5], [False, True, False, True]) == 0.5
    # positives 3 and 2 against negatives 1 and 2: wins 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
    assert mc.roc_auc([1, 2, 2, 3], [False, False, True, True]) == 0.875
    assert mc.roc_auc([1, 2], [True, True]) is None
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        mc.roc_auc([1, 2, 3], [True, False])


def test_roc_auc_matches_pairwise_reference_exhaustively() -> None:
    # every labelling of 6 items over scores with ties
    scores = [0.0, 1.0, 1.0, 2.0, 3.0, 3.0]
    for labels in itertools.product((False, True), repeat=len(scores)):
        if 0 < sum(labels) < len(labels):
            assert mc.roc_auc(scores, list(labels)) == pytest.approx(
                _auc_pairs(scores, list(labels))
            )
    rng = random.Random(5)
    for _ in range(50):
        s = [float(rng.randint(0, 8)) for _ in range(40)]
        y = [rng.random() < 0.3 for _ in range(40)]
        if 0 < sum(y) < len(y):
            assert mc.roc_auc(s, y) == pytest.approx(_auc_pairs(s, y))


def test_score_summary_known_answer() -> None:
    s = mc.score_summary([0, 10, 20, 30, 40, 50, 60, 70, 80, 90], unlock=40)
    # numpy's linear p90: position 8.1 between 80 and 90
    assert s == {"n": 10, "mean": 45.0, "median": 45.0, "p90": 81.0, "above_unlock": 0.6}
    assert mc.score_summary([], unlock=40)["n"] == 0


@pytest.mark.parametrize(
    ("age", "band"),
    [(18, "18-24"), (24, "18-24"), (25, "25-34"), (34, "25-34"), (35, "35-49"), (49, "35-49")]
    + [(50, "50+"), (97, "50+"), (None, "(unknown)"), (17, "(unknown)")],
)
def test_age_bands_edges(age: int | None, band: str) -> None:
    assert mc._age_band(age) == band


def test_oldest_adult_ignores_children_and_unknown_ages() -> None:
    members = [
        {"person_id": "p1", "age": 15, "sex": "F"},
        {"person_id": "p2", "age": None, "sex": "M"},
        {"person_id": "p3", "age": 41, "sex": "F"},
        {"person_id": "p4", "age": 39, "sex": "M"},
    ]
    assert mc._oldest_adult(members) == members[2]
    assert mc._oldest_adult(members[:2]) is None


def test_model_facts_read_the_model_file() -> None:
    model, ruleset = default_model(), default_ruleset()
    facts = mc.model_facts(model, ruleset)
    assert facts["model"]["sha256"] == model.sha256()
    assert facts["thresholds"] == {"unlock": 40, "step_up": 10, "step_down": 10}
    assert [f["code"] for f in facts["factors"]] == list(model.factors)
    assert {c["code"]: c["points"] for c in facts["combinations"]}["TOXIC_TRIO"] == 20
    refs = {i["ref"] for i in facts["inputs"]}
    assert {f.when for f in model.factors.values()} <= refs
    trio = next(i for i in facts["inputs"] if i["ref"] == "indicator:substance_misuse")
    assert trio["definition"] == "any of alcohol_misuse, drug_misuse"
    cp = next(i for i in facts["inputs"] if i["ref"] == "indicator:child_protection")
    assert cp["definition"].startswith("child_protection_12m >= 1 (")
    assert facts["max_score"] == (
        sum(f.points for f in model.factors.values())
        + sum(c.points for c in model.combinations.values())
        + 4 * len(ruleset.problems)
    )
    assert facts["clearance"]["rules"][0] == {"when": "indicator:child_protection", "level": 3}


def test_model_facts_refuse_a_model_the_ruleset_cannot_feed() -> None:
    data: dict[str, Any] = default_model().model_dump(mode="json")
    data["factors"]["GAMBLING"] = {"title": "Gambling", "when": "indicator:gambling", "points": 5}
    with pytest.raises(RulesetError, match="factors.GAMBLING.when.*no indicator 'gambling'"):
        mc.model_facts(RiskModel.model_validate(data), default_ruleset())


_IDS = itertools.count()


def _family(score: int, sex: str, band: str = "35-49", complex_: bool | None = None) -> Any:
    return mc._Family(f"hh_{next(_IDS)}", score, False, sex, band, "M4", complex_)


def test_bias_groups_flag_only_big_enough_differences() -> None:
    # F: 40 families, 20 above unlock (50%); M: 40 families, 4 above (10%); U: 5 families, 0
    fams = [_family(50 if k < 20 else 0, "F", complex_=k < 25) for k in range(40)]
    fams += [_family(50 if k < 4 else 0, "M", complex_=k < 8) for k in range(40)]
    fams += [_family(0, "(unknown)") for _ in range(5)]
    g = mc._groups(fams, unlock=40, margin=0.05, min_group=30)
    assert g["overall"]["n"] == 85 and g["overall"]["above_unlock"] == round(24 / 85, 4)
    rows = {r["group"]: r for r in g["sex"]}
    assert rows["F"]["above_unlock"] == 0.5 and rows["F"]["flag"] == "DIFFERS"
    assert rows["F"]["true_complex_share"] == round(25 / 40, 4)
    assert rows["F"]["recall"] == round(20 / 25, 4)
    assert rows["M"]["recall"] == 0.5 and rows["M"]["flag"] == "DIFFERS"
    assert rows["(unknown)"]["flag"] == "small group" and rows["(unknown)"]["recall"] is None
    assert [r["group"] for r in g["sex"]] == ["F", "M", "(unknown)"]  # unknown last
    assert {(f["by"], f["group"]) for f in g["flags"]} == {("sex", "F"), ("sex", "M")}
    wide = mc._groups(fams, unlock=40, margin=0.25, min_group=30)
    assert wide["flags"] == []


# --- the demo population ------------------------------------------------------------------


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("model-card")
    return mc.build_model_card(households=2000, workdir=work)


def test_demo_card_numbers_are_sane(card: dict[str, Any]) -> None:
    ev = card["evaluation"]
    el, uv = ev["eligibility"], ev["unlock_vs_complex"]
    # 0.989-0.992 over secrets (tests/linkage_service/test_programme_api.py)
    assert el["agreement"] >= 0.985 and el["true_families"] > 1000
    assert el["precision"] is not None and el["precision"] >= 0.98
    assert el["recall"] is not None and el["recall"] >= 0.95
    assert uv["roc_auc"] is not None and uv["roc_auc"] > 0.9
    assert uv["tp"] + uv["fp"] + uv["fn"] + uv["tn"] == uv["true_families"]
    assert uv["positives"] == uv["tp"] + uv["fn"] > 50
    bias = ev["bias"]
    for by in ("sex", "age_band", "district"):
        assert sum(r["n"] for r in bias[by]) == bias["overall"]["n"] == ev["families_assessed"]
    assert {r["group"] for r in bias["sex"]} <= {"F", "M", "(unknown)"}
    assert card["model"]["sha256"] == default_model().sha256()
    assert ev["cycle"]["model_sha256"] == default_model().sha256()


def test_markdown_and_json_are_written(card: dict[str, Any], tmp_path: Path) -> None:
    md, data = mc.write_model_card(tmp_path / "cards" / "card.md", card)
    text = md.read_text()
    assert text.startswith("# Model card: family-complexity 1.0\n")
    auc = card["evaluation"]["unlock_vs_complex"]["roc_auc"]
    assert f"| {auc:.4g} |" in text and "bench/model_card.py" in text
    assert json.loads(data.read_text()) == json.loads(json.dumps(card))


def test_shipped_card_is_for_the_shipped_model_and_ruleset() -> None:
    shipped = json.loads(SHIPPED_CARD.read_text())
    assert shipped["model"]["sha256"] == default_model().sha256(), (
        "the model changed: regenerate the card (.venv/bin/python bench/model_card.py)"
    )
    assert shipped["ruleset"]["sha256"] == default_ruleset().sha256()
    md = SHIPPED_CARD.with_suffix(".md").read_text()
    assert md == mc.render_markdown(shipped)  # the Markdown is generated from the JSON


def test_oldest_adult_tie_goes_by_record_ref_not_person_id() -> None:
    # a couple in one age band: only the band's floor is known, so they tie
    woman = {"person_id": "p_zz", "age": None, "age_band": "25-34", "sex": "F"}
    man = {"person_id": "p_aa", "age": None, "age_band": "25-34", "sex": "M"}
    woman["records"] = [["school", "9f00"], ["health", "03aa"]]
    man["records"] = [["health", "77b1"]]
    assert mc._oldest_adult([man, woman]) is woman  # ("health", "03aa") is the smallest
    # another run draws other person ids: the same adult stands for the family
    rerun = [{**man, "person_id": "p_zz"}, {**woman, "person_id": "p_aa"}]
    assert mc._oldest_adult(rerun) is rerun[1]
    # an older adult still wins whatever the refs
    elder = {"person_id": "p_e", "age": None, "age_band": "35-49", "sex": "M"}
    elder["records"] = [["police", "ffff"]]
    assert mc._oldest_adult([man, woman, elder]) is elder
