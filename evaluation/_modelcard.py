"""Model cards: what a risk model reads, how it weighs it, and how it does on the demo population.

:func:`model_facts` describes a model version from its file alone: its inputs
(the indicators it reads, with their definitions in the ruleset), weights
(factors, critical combinations, points per problem), thresholds and
clearance rules. :func:`evaluate_model` measures it against the synthetic
population's ground truth after one assessment cycle: eligibility agreement
and precision, how well ``score >= unlock`` picks out true families with three
or more problems (precision, recall, ROC AUC), and a bias report: the score
distribution by sex and age band of the family's oldest adult and by postcode
district, flagging any group whose share above the unlock threshold differs
from the whole cohort's by more than a stated margin. :func:`build_model_card`
runs the whole evaluation (generate, encode, ingest, assess) and
:func:`render_markdown` writes the card.

Groups are formed from what the service itself holds (the coarse age and sex
of each member's records), so the same report can be run on live data; the
ground truth only labels the families.

Must never: be imported by the running service's request path (it generates
plaintext synthetic data through ``_harness``), or change a model.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from linkage_service.programme import _store as pstore
from linkage_service.programme._riskmodel import RiskModel, default_model
from linkage_service.programme._ruleset import Ruleset, default_ruleset
from protocols import age_span

__all__ = [
    "AGE_BANDS",
    "build_model_card",
    "evaluate_model",
    "model_facts",
    "render_markdown",
    "roc_auc",
    "score_summary",
    "write_model_card",
]

# From 25 these are the bands agencies send instead of an age (protocols.AGE_BANDS):
# the report can only be as fine as what the service holds.
AGE_BANDS: Final = ((18, 24), (25, 34), (35, 49), (50, None))
UNKNOWN: Final = "(unknown)"
DEMO_HOUSEHOLDS: Final = 2000
DEMO_SEED: Final = 20261121
MARGIN: Final = 0.05  # absolute difference in the share above unlock that is flagged
MIN_GROUP: Final = 30  # smaller groups are reported but not flagged (too few to tell)
COMPLEX_FROM: Final = 3  # "true complex family": at least this many true problems
REGENERATE: Final = (".venv/bin/python bench/model_card.py",)


# --- the model file ---------------------------------------------------------------------------


def _refs(model: RiskModel) -> list[str]:
    refs = [f.when for f in model.factors.values()]
    refs += [r for c in model.combinations.values() for r in c.all_of]
    refs += [r.when for r in model.clearance.rules]
    return list(dict.fromkeys(refs))


def _definition(ruleset: Ruleset, iid: str) -> str:
    ind = ruleset.indicators[iid]
    if ind.measure is not None:
        m = ruleset.measures[ind.measure]
        return (
            f"{ind.measure} {ind.op} {ind.threshold:g} "
            f"({m.aggregate} of {', '.join(e.value for e in m.events)} over "
            f"{m.window_days} days, {m.members} members)"
        )
    parts = []
    if ind.any_of:
        parts.append("any of " + ", ".join(ind.any_of))
    if ind.all_of:
        parts.append("all of " + ", ".join(ind.all_of))
    return "; ".join(parts)


def model_facts(model: RiskModel, ruleset: Ruleset) -> dict[str, Any]:
    """Inputs, weights, thresholds and clearance of ``model`` as read with ``ruleset``."""
    model.check_against(ruleset)
    inputs = []
    for ref in _refs(model):
        kind, name = ref.split(":", 1)
        if kind == "indicator":
            title, definition = ruleset.indicators[name].title, _definition(ruleset, name)
        else:
            title = ruleset.problems[name].title
            definition = "any of " + ", ".join(ruleset.problems[name].any_of)
        inputs.append({"ref": ref, "title": title, "definition": definition})
    return {
        "model": {
            "name": model.name,
            "version": model.version,
            "title": model.title,
            "sha256": model.sha256(),
        },
        "ruleset": {"name": ruleset.name, "version": ruleset.version, "sha256": ruleset.sha256()},
        "inputs": inputs,
        "factors": [
            {"code": c, "title": f.title, "when": f.when, "points": f.points}
            for c, f in model.factors.items()
        ],
        "combinations": [
            {"code": c, "title": x.title, "all_of": list(x.all_of), "points": x.points}
            for c, x in model.combinations.items()
        ],
        "points_per_problem": model.points_per_problem,
        "problems": list(ruleset.problems),
        "max_score": (
            sum(max(f.points, 0) for f in model.factors.values())
            + sum(x.points for x in model.combinations.values())
            + model.points_per_problem * len(ruleset.problems)
        ),
        "thresholds": model.thresholds.model_dump(),
        "clearance": {
            "default": model.clearance.default,
            "rules": [{"when": r.when, "level": r.level} for r in model.clearance.rules],
        },
    }


# --- statistics -------------------------------------------------------------------------------


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (ties count half); None if one class.

    The Mann-Whitney form: the chance a random positive outscores a random
    negative, from mid-ranks of the pooled scores.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.bool_)
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores but {len(y)} labels")
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    mid = np.cumsum(counts) - (counts - 1) / 2.0  # mid-rank of each distinct score
    ranks = mid[inverse]
    u = float(ranks[y].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def score_summary(scores: Sequence[int], unlock: int) -> dict[str, Any]:
    """n, mean, median, 90th percentile and the share at or above ``unlock``."""
    a: npt.NDArray[np.float64] = np.asarray(scores, dtype=np.float64)
    if len(a) == 0:
        return {"n": 0, "mean": None, "median": None, "p90": None, "above_unlock": None}
    return {
        "n": len(a),
        "mean": round(float(a.mean()), 2),
        "median": round(float(np.median(a)), 2),
        "p90": round(float(np.percentile(a, 90)), 2),
        "above_unlock": round(float((a >= unlock).mean()), 4),
    }


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _age_band(age: int | None) -> str:
    if age is None:
        return UNKNOWN
    for low, high in AGE_BANDS:
        if age >= low and (high is None or age <= high):
            return f"{low}-{high}" if high is not None else f"{low}+"
    return UNKNOWN


def _youngest_possible(member: Mapping[str, Any]) -> int | None:
    """A member's age, or from 25 (extract v2) the floor of their age band."""
    span = age_span(member.get("age"), member.get("age_band"))
    return None if span is None else span[0]


def _member_band(member: Mapping[str, Any]) -> str:
    """The bias report's band of a member: their age band as sent, else from their age."""
    band = member.get("age_band")
    return str(band) if band is not None else _age_band(member.get("age"))


def _oldest_adult(members: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The adult who stands for the family in the bias report: the oldest.

    From 25 only an age band's floor is known, so adults of one band tie often
    (a couple). The tie goes to the adult with the smallest ``[agency, record
    ref]``: refs are keyed hashes, unrelated to sex or age, and the same in every
    run on the same extracts. Person ids are drawn afresh by every run, so a tie
    broken by them moved the sex breakdown by about ten families between runs.
    """
    aged = [(_youngest_possible(m), m) for m in members]
    adults = [(a, m) for a, m in aged if a is not None and a >= 18]
    if not adults:
        return None
    oldest = max(a for a, _ in adults)
    tied = [m for a, m in adults if a == oldest]
    return min(tied, key=lambda m: (_first_record(m), str(m["person_id"])))


def _first_record(member: Mapping[str, Any]) -> tuple[str, str]:
    """A member's smallest ``(agency, record ref)``; ``("", "")`` when none is stored."""
    refs = [(str(ag), str(ref)) for ag, ref in member.get("records") or ()]
    return min(refs, default=("", ""))


@dataclass(frozen=True)
class _Family:
    household_id: str
    score: int
    eligible: bool
    sex: str
    age_band: str
    district: str
    complex_truth: bool | None  # None: no true household behind it


def _groups(
    families: Sequence[_Family], unlock: int, margin: float, min_group: int
) -> dict[str, Any]:
    overall = score_summary([f.score for f in families], unlock)
    out: dict[str, Any] = {"overall": overall, "margin": margin, "min_group": min_group}
    flags: list[dict[str, Any]] = []
    for by in ("sex", "age_band", "district"):
        members: dict[str, list[_Family]] = {}
        for f in families:
            members.setdefault(str(getattr(f, by)), []).append(f)
        rows = []
        for key in sorted(members, key=lambda k: (k == UNKNOWN, k)):
            group = members[key]
            row: dict[str, Any] = {"group": key, **score_summary([f.score for f in group], unlock)}
            labelled = [f for f in group if f.complex_truth is not None]
            complex_ = [f for f in labelled if f.complex_truth]
            row["true_complex_share"] = _ratio(len(complex_), len(labelled))
            row["recall"] = _ratio(sum(1 for f in complex_ if f.score >= unlock), len(complex_))
            diff = row["above_unlock"] - overall["above_unlock"]
            row["difference"] = round(diff, 4)
            row["flag"] = ""
            if abs(diff) > margin:
                row["flag"] = "DIFFERS" if len(group) >= min_group else "small group"
                if len(group) >= min_group:
                    flags.append({"by": by, "group": key, "n": len(group), "difference": diff})
            rows.append(row)
        out[by] = rows
    out["flags"] = flags
    return out


def evaluate_model(
    population: Any,
    engine: Engine,
    cycle_id: int,
    *,
    margin: float = MARGIN,
    min_group: int = MIN_GROUP,
    complex_from: int = COMPLEX_FROM,
) -> dict[str, Any]:
    """Accuracy against the ground truth and the bias report of one cycle on ``population``.

    ``population`` is an ``_harness.Population`` whose records were ingested
    into ``engine``. Each true family is matched to the assessed family holding
    most of its records (and each assessed family to the true household holding
    most of its records, for precision).
    """
    from ._harness import eligibility_agreement, household_overlap

    truth = population.households_truth()
    with engine.connect() as conn:
        cycle = conn.execute(sa.select(pstore.cycles).where(pstore.cycles.c.id == cycle_id)).one()
        snaps = conn.execute(
            sa.select(
                pstore.snapshots.c.household_id,
                pstore.snapshots.c.district,
                pstore.snapshots.c.score,
                pstore.snapshots.c.eligible,
                pstore.snapshots.c.detail,
            ).where(pstore.snapshots.c.cycle_id == cycle_id)
        ).all()
    unlock = int(json.loads(cycle.model)["thresholds"]["unlock"])
    overlap = household_overlap(population, engine)
    assessed_of: dict[str, Counter[str]] = {}
    true_of: dict[str, Counter[str]] = {}
    for (true_hid, hid), n in overlap.items():
        assessed_of.setdefault(true_hid, Counter())[hid] += n
        true_of.setdefault(hid, Counter())[true_hid] += n

    score = {str(s.household_id): int(s.score) for s in snaps}
    eligible = {str(s.household_id): bool(s.eligible) for s in snaps}
    # true families: 3+ problems vs score >= unlock (no assessed family: score 0)
    labels: list[bool] = []
    scores: list[int] = []
    for hid, row in truth.items():
        if row["is_family"] != "Y":
            continue
        votes = assessed_of.get(hid)
        found = votes.most_common(1)[0][0] if votes else None
        labels.append(int(row["tf_problem_count"]) >= complex_from)
        scores.append(score.get(found, 0) if found is not None else 0)
    y = np.asarray(labels, dtype=np.bool_)
    hit = np.asarray(scores) >= unlock
    tp, fp = int((hit & y).sum()), int((hit & ~y).sum())
    fn, tn = int((~hit & y).sum()), int((~hit & ~y).sum())

    # assessed families: precision of eligibility, and the groups for the bias report
    families: list[_Family] = []
    eligible_true = 0
    for s in snaps:
        hid = str(s.household_id)
        votes = true_of.get(hid)
        t = truth.get(votes.most_common(1)[0][0]) if votes else None
        if eligible[hid] and t is not None and t["tf_eligible"] == "Y":
            eligible_true += 1
        oldest = _oldest_adult(json.loads(s.detail).get("members", ()))
        families.append(
            _Family(
                household_id=hid,
                score=int(s.score),
                eligible=bool(s.eligible),
                sex=str(oldest.get("sex") or UNKNOWN) if oldest else UNKNOWN,
                age_band=_member_band(oldest) if oldest else UNKNOWN,
                district=s.district or UNKNOWN,
                complex_truth=None if t is None else int(t["tf_problem_count"]) >= complex_from,
            )
        )
    n_eligible = sum(eligible.values())
    true_eligible = sum(
        1 for r in truth.values() if r["is_family"] == "Y" and r["tf_eligible"] == "Y"
    )
    agreement = eligibility_agreement(population, engine, cycle_id)
    found_eligible = true_eligible - sum(1 for d in agreement["disagreements"] if d["expected"])
    auc = roc_auc(scores, labels)
    return {
        "cycle": {
            "id": int(cycle.id),
            "as_at": cycle.as_at.isoformat(),
            "ruleset": f"{cycle.ruleset_name} {cycle.ruleset_version}",
            "ruleset_sha256": cycle.ruleset_sha256,
            "model": f"{cycle.model_name} {cycle.model_version}",
            "model_sha256": cycle.model_sha256,
        },
        "families_assessed": len(snaps),
        "eligibility": {
            "true_families": agreement["families"],
            "agree": agreement["agree"],
            "agreement": round(agreement["rate"], 4),
            "eligible_assessed": n_eligible,
            "eligible_truly_eligible": eligible_true,
            "precision": _ratio(eligible_true, n_eligible),
            "true_eligible": true_eligible,
            "recall": _ratio(found_eligible, true_eligible),
        },
        "unlock_vs_complex": {
            "label": f"true family with {complex_from}+ problems (generator truth)",
            "unlock": unlock,
            "true_families": len(labels),
            "positives": int(y.sum()),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "roc_auc": None if auc is None else round(auc, 4),
        },
        "bias": _groups(families, unlock, margin, min_group),
    }


# --- the card ---------------------------------------------------------------------------------


def build_model_card(
    model: RiskModel | None = None,
    ruleset: Ruleset | None = None,
    *,
    households: int = DEMO_HOUSEHOLDS,
    seed: int = DEMO_SEED,
    workdir: Path | None = None,
    margin: float = MARGIN,
    min_group: int = MIN_GROUP,
    secret_seed: int | None = 1,
) -> dict[str, Any]:
    """The model card of ``model`` (the shipped one by default) as JSON-ready data.

    The linkage secret is fixed by ``secret_seed`` (None: a fresh one) so that the
    same code regenerates the same card.

    Generates the demo population (``households``, ``seed``), encodes and
    ingests it into a fresh SQLite database under ``workdir`` (a temporary
    directory by default), runs one cycle with ``ruleset`` (TF Phase 2 by
    default) as at the population's extract date, and evaluates it.
    """
    from agency_client._synthetic import PopulationConfig
    from linkage_service.programme._assessment import run_cycle

    from ._harness import ingest_population, load_population

    model = model or default_model()
    ruleset = ruleset or default_ruleset()
    facts = model_facts(model, ruleset)
    with tempfile.TemporaryDirectory(prefix="model-card-") as tmp:
        work = workdir or Path(tmp)
        population = load_population(
            households, seed=seed, workdir=work / "population", secret_seed=secret_seed
        )
        db = work / "model-card.sqlite"
        db.unlink(missing_ok=True)
        engine = ingest_population(population, f"sqlite:///{db}")
        try:
            as_at = PopulationConfig(households=households, seed=seed).extract_date
            result = run_cycle(engine, ruleset, model, as_at, actor="model-card")
            evaluation = evaluate_model(
                population, engine, result.cycle_id, margin=margin, min_group=min_group
            )
        finally:
            engine.dispose()
    return {
        **facts,
        "evaluation": {
            "population": {"households": households, "seed": seed, "as_at": as_at.isoformat()},
            **evaluation,
        },
        "regenerate": list(REGENERATE),
    }


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown (every number from ``card``)."""
    m, r, ev = card["model"], card["ruleset"], card["evaluation"]
    el, uv, bias = ev["eligibility"], ev["unlock_vs_complex"], ev["bias"]
    t = card["thresholds"]
    out = [
        f"# Model card: {m['name']} {m['version']}",
        "",
        f"{m['title']}. Model SHA-256 `{m['sha256']}`; evaluated with ruleset "
        f"{r['name']} {r['version']} (SHA-256 `{r['sha256']}`).",
        "",
        "Generated, not written by hand: regenerate with "
        + " or ".join(f"`{c}`" for c in card["regenerate"])
        + ". Method: docs/programme-reports.md. The linkage keys of the demo population are "
        "generated afresh on each run, so figures may move slightly between regenerations.",
        "",
        "## How it scores",
        "",
        "A points scorecard: a family's score is the sum of the points of the indicators it "
        "meets (factors), of the critical combinations it meets, and "
        f"{card['points_per_problem']} points for each problem area met (reason code BREADTH). "
        "Every term is a reason code and they sum exactly to the score. "
        f"The highest possible score is {card['max_score']}.",
        "",
        "### Thresholds",
        "",
        f"- unlock: score at or above **{t['unlock']}** (identities may be released under the "
        "unlock policy)",
        f"- step up: a rise of at least **{t['step_up']}** points since the previous cycle",
        f"- step down: a fall of at least **{t['step_down']}** points since the previous cycle",
        "",
        "### Inputs",
        "",
        *_table(
            ("input", "title", "definition (ruleset)"),
            ((f"`{i['ref']}`", i["title"], i["definition"]) for i in card["inputs"]),
        ),
        f"\nand, for breadth, the problems: {', '.join(card['problems'])}.",
        "",
        "### Weights",
        "",
        *_table(
            ("reason code", "when", "points", "title"),
            ((f["code"], f"`{f['when']}`", f["points"], f["title"]) for f in card["factors"]),
        ),
        "",
        "Critical combinations (added on top of the factors):",
        "",
        *_table(
            ("reason code", "all of", "points", "title"),
            (
                (c["code"], ", ".join(f"`{x}`" for x in c["all_of"]), c["points"], c["title"])
                for c in card["combinations"]
            ),
        ),
        "",
        "### Clearance to unlock",
        "",
        f"Default level {card['clearance']['default']}; raised by:",
        "",
        *_table(
            ("when", "level"),
            ((f"`{x['when']}`", x["level"]) for x in card["clearance"]["rules"]),
        ),
        "",
        "## Evaluation on the demo population",
        "",
        f"Synthetic population of {ev['population']['households']:,} households "
        f"(seed {ev['population']['seed']}), encoded as the agencies would, ingested and "
        f"linked by the service, assessed as at {ev['population']['as_at']} "
        f"({ev['families_assessed']:,} families assessed). Truth is the generator's.",
        "",
        "### Eligibility",
        "",
        *_table(
            ("measure", "value"),
            (
                (
                    "agreement with true eligibility (per true family)",
                    f"{_pct(el['agreement'])} ({el['agree']:,} of {el['true_families']:,})",
                ),
                (
                    "precision: our eligible families truly eligible",
                    f"{_pct(el['precision'])} ({el['eligible_truly_eligible']:,} of "
                    f"{el['eligible_assessed']:,})",
                ),
                ("recall: truly eligible families found eligible", _pct(el["recall"])),
            ),
        ),
        "",
        f"### Does `score >= {uv['unlock']}` pick out complex families?",
        "",
        f"Label: {uv['label']}; {uv['positives']:,} of {uv['true_families']:,} true families.",
        "",
        *_table(
            ("precision", "recall", "ROC AUC (score)", "TP", "FP", "FN", "TN"),
            [
                (
                    _pct(uv["precision"]),
                    _pct(uv["recall"]),
                    uv["roc_auc"],
                    uv["tp"],
                    uv["fp"],
                    uv["fn"],
                    uv["tn"],
                )
            ],
        ),
        "",
        "## Bias report",
        "",
        "Score distribution of every assessed family by the sex and age band of its oldest "
        "adult member (as the agencies' records give them) and by postcode district. "
        "`above unlock` is the share scoring at or above the unlock threshold; `difference` "
        "is that share minus the whole cohort's; `true complex` is the share of the group's "
        f"families with {COMPLEX_FROM}+ true problems and `recall` the share of those above "
        "unlock, so a difference in `above unlock` can be read against a difference in need. "
        f"A group is flagged when its difference exceeds ±{100 * bias['margin']:.0f} points "
        f"and it has at least {bias['min_group']} families (smaller ones are marked "
        "`small group`, not flagged).",
        "",
        f"Whole cohort: n {bias['overall']['n']:,}, mean {bias['overall']['mean']}, median "
        f"{bias['overall']['median']}, p90 {bias['overall']['p90']}, above unlock "
        f"{_pct(bias['overall']['above_unlock'])}.",
        "",
    ]
    if bias["flags"]:
        out.append(
            "**Flagged:** "
            + "; ".join(
                f"{f['by']} {f['group']} ({f['n']} families, {100 * f['difference']:+.1f} points)"
                for f in bias["flags"]
            )
            + "."
        )
    else:
        out.append("**Flagged:** none.")
    titles = {"sex": "By sex of oldest adult", "age_band": "By age band of oldest adult"}
    for by in ("sex", "age_band", "district"):
        out += [
            "",
            f"### {titles.get(by, 'By postcode district')}",
            "",
            *_table(
                (
                    "group",
                    "n",
                    "mean",
                    "median",
                    "p90",
                    "above unlock",
                    "difference",
                    "true complex",
                    "recall",
                    "flag",
                ),
                (
                    (
                        g["group"],
                        g["n"],
                        g["mean"],
                        g["median"],
                        g["p90"],
                        _pct(g["above_unlock"]),
                        f"{100 * g['difference']:+.1f}",
                        _pct(g["true_complex_share"]),
                        _pct(g["recall"]),
                        g["flag"],
                    )
                    for g in bias[by]
                ),
            ),
        ]
    out += [
        "",
        "## Limits",
        "",
        "- The demo population is synthetic: these figures show the method works and the "
        "scorecard is coherent with the generator's notion of need, not how it will do on a "
        "council's data. Run the bias report on live cycles too (the groups use only data the "
        "service holds).",
        "- Weights were set by hand from the programme guidance, not fitted; the AUC measures "
        "agreement with a count of problems, which the score partly contains (BREADTH).",
        "- Sex and age come from agency records and are missing for some members; those "
        f"families fall in `{UNKNOWN}`.",
        "",
    ]
    return "\n".join(out)


def write_model_card(path: Path, card: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``card`` as Markdown to ``path`` and as JSON beside it (``.json``); both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(card), encoding="utf-8")
    data = path.with_suffix(".json")
    data.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path, data
