"""The match model: estimation without labels, calibration, storage, and the service keeping it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation._harness import ingest_population, pair_scores
from linkage_service import _matchmodel as mm
from linkage_service import _store as store
from linkage_service._engine import LinkageEngine
from linkage_service._matchmodel import COMPARISONS, MatchModel, estimate
from linkage_service._service import LinkageService
from protocols import default_schema

from ._engine_helpers import dice_model, population

__all__ = ["population"]  # the fixture, imported for pytest


def _draw(
    classes: list[tuple[tuple[tuple[float, ...], ...], float]], n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patterns drawn from a mixture of classes (parameters, share), and class labels."""
    label = rng.choice(len(classes), n, p=[share for _, share in classes])
    levels = []
    for k, c in enumerate(COMPARISONS):
        lv = np.zeros(n, dtype=np.int64)
        for x, (params, _share) in enumerate(classes):
            p = np.asarray(params[k], dtype=np.float64)
            if c.missing is not None:  # no missing values drawn: the levels that carry weight
                p[c.missing] = 0.0
            sel = label == x
            lv[sel] = rng.choice(len(p), int(sel.sum()), p=p / p.sum())
        levels.append(lv)
    return mm.patterns(levels), label


def test_em_recovers_the_parameters_that_generated_the_pairs() -> None:
    # known answer: pairs drawn from known matches, related people and strangers;
    # EM sees only the pattern counts (and random pairs, all strangers)
    truth = dice_model()
    related = tuple(tuple(x) for x in mm._with_missing(mm._start_r()))
    classes = [(truth.m, 0.2), (related, 0.3), (truth.u, 0.5)]
    rng = np.random.default_rng(7)
    cand, labels = _draw(classes, 300_000, rng)
    rand, _ = _draw([(truth.u, 1.0)], 100_000, rng)
    got, report = estimate(
        np.bincount(cand, minlength=mm.PATTERNS).astype(float),
        np.bincount(rand, minlength=mm.PATTERNS).astype(float),
        max_iterations=2000,
    )
    assert got is not None and report.accepted
    assert got.lam == pytest.approx(0.2, abs=0.01) and got.rho == pytest.approx(0.3, abs=0.02)
    for k in range(len(COMPARISONS)):
        assert np.allclose(got.m[k], truth.m[k], atol=0.02)
    # calibrated: among pairs scored about p, a share of about p are matches
    p = got.probability(cand)
    for lo, hi in ((0.05, 0.5), (0.5, 0.95)):
        sel = (p >= lo) & (p < hi)
        if sel.sum() > 200:
            assert lo - 0.05 <= (labels[sel] == 0).mean() <= hi + 0.05


def test_a_fit_that_finds_no_matches_is_refused() -> None:
    counts = np.zeros(mm.PATTERNS)
    counts[0] = 1000.0  # every pair at the lowest level of everything
    model, report = estimate(counts, counts.copy())
    assert model is None and not report.accepted and "separate" in report.reason
    model, report = estimate(np.zeros(mm.PATTERNS), counts)
    assert model is None and "candidate pairs" in report.reason


def test_a_model_round_trips_through_json_and_refuses_another_layout() -> None:
    model = dice_model()
    again = MatchModel.from_json(model.to_json())
    assert again.fingerprint() == model.fingerprint()
    doc = model.to_json()
    doc["comparisons"] = {"person": doc["comparisons"]["person"]}  # type: ignore[index]
    with pytest.raises(ValueError, match="comparisons differ"):
        MatchModel.from_json(doc)
    with pytest.raises(ValueError, match="not a"):
        MatchModel.from_json({"format": "something else"})


def test_from_weights_gives_exactly_those_weights() -> None:
    model = dice_model()
    assert model.level_weights(2).tolist() == pytest.approx([0.0, 12.0, -12.0])
    assert model.prior_weight == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="positive and a negative"):
        MatchModel.from_weights([[1.0] * len(c.levels) for c in COMPARISONS], 0.0)


def test_the_engine_estimates_a_model_and_links_well_with_it(population) -> None:
    eng = LinkageEngine()
    delta = eng.update(population.batch, [])
    assert delta.model is not None and eng.model is delta.model
    assert delta.fit is not None and delta.fit.accepted
    predicted = [delta.person_of[int(i)] for i in population.batch.ids.tolist()]
    assert pair_scores(predicted, population.truth_person).f1 >= 0.98
    # households put related people among the candidates: a class of their own
    assert eng.model.rho > 0.05 and eng.model.r is not None
    # every link explains itself with the model that made it, against both classes
    _a, _b, score, evidence = delta.links[0]
    assert evidence["match_model"] == eng.model.fingerprint()[:16]
    assert {"level", "weight", "weight_vs_related"} <= set(evidence["comparisons"]["person"])
    assert score >= eng.config.match_threshold


def test_pushing_agency_by_agency_relinks_when_the_model_is_re_estimated(population) -> None:
    eng = LinkageEngine()
    batch = population.batch
    estimated = 0
    for agency in np.unique(batch.agency).tolist():
        delta = eng.update(batch.take(np.flatnonzero(batch.agency == agency)), [])
        estimated += delta.model is not None
    assert estimated >= 2  # the first agency's model was replaced as data grew
    predicted = [eng.row_pid[r] for r in range(len(batch))]
    assert pair_scores(predicted, population.truth_person).f1 >= 0.97


def test_the_service_keeps_its_model_across_a_restart(population, tmp_path) -> None:
    sql = ingest_population(population, f"sqlite:///{tmp_path / 'l.db'}")
    with sql.connect() as conn:
        stored = store.latest_match_model(conn)
    assert stored is not None
    service = LinkageService(sql, {default_schema().fingerprint(): default_schema()})
    service.start()
    assert service._engine.model.fingerprint() == MatchModel.from_json(stored).fingerprint()
    runs = store.list_runs(sql)
    assert any(r["stats"].get("match_model_id") for r in runs)
    sql.dispose()


def test_the_cli_shows_the_model_in_force(population, tmp_path, capsys) -> None:
    from linkage_service._cli import main

    config = tmp_path / "linkage.toml"
    db = tmp_path / "l.db"
    config.write_text(f'database_url = "sqlite:///{db}"\ntoken_file = "{tmp_path / "tokens"}"\n')
    assert main(["--config", str(config), "migrate"]) == 0
    assert main(["--config", str(config), "match-model"]) == 1  # none yet: a plain error
    assert "no match model yet" in capsys.readouterr().err
    ingest_population(population, f"sqlite:///{db}").dispose()
    assert main(["--config", str(config), "match-model"]) == 0
    card = capsys.readouterr().out
    assert card.startswith("# Match model") and "## person" in card and "Estimated by EM" in card
    assert main(["--config", str(config), "match-model", "--json"]) == 0
    assert MatchModel.from_json(json.loads(capsys.readouterr().out)).lam > 0
