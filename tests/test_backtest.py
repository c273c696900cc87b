"""Scores, baselines, what was known when, and backtests on data simulated with a known trend.

Pure functions first (exact answers); then one small model, compiled once, backtested at a few
origins with exact refits and with the PSIS approximation; then the command line end to end
(`update`, `predict`, `backtest`, `score`) on the same simulated study.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import base_study, hypothesis, prior, write_study
from scipy import stats

from forecast.cli import main
from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.spec.questions import Question, load_questions
from forecast.spec.study import load_study, quarter_index
from forecast.stats.scoring import brier, interval_coverage, log_score, reliability_table, running_mean, skill
from forecast.workflows.backtest import (
    BASELINES,
    BMA,
    backtest,
    baseline_probabilities,
    cell_loglik,
    default_origins,
    known_at,
    psis_log_weights,
    question_baselines,
)

Q = quarter_index

# --- scores ----------------------------------------------------------------------------------


def test_brier_and_log_scores_are_exact():
    p, y = np.array([0.8, 0.3]), np.array([1, 0])
    assert brier(p, y) == pytest.approx(0.065, abs=1e-15)
    assert log_score(p, y) == pytest.approx((np.log(0.8) + np.log(0.7)) / 2, abs=1e-15)
    w = np.array([1.0, 3.0])
    assert brier(p, y, w) == pytest.approx((0.04 + 3 * 0.09) / 4, abs=1e-15)
    assert log_score(p, y, w) == pytest.approx((np.log(0.8) + 3 * np.log(0.7)) / 4, abs=1e-15)
    assert np.isfinite(log_score(np.array([0.0]), np.array([1])))  # floored, never -inf


def test_skill_scores():
    assert skill(0.1, 0.2) == pytest.approx(0.5)  # Brier: half the baseline's
    assert skill(-0.5, -1.0) == pytest.approx(0.5)  # log score: half the baseline's loss
    assert skill(-1.5, -1.0) == pytest.approx(-0.5)  # worse than the baseline
    assert np.isnan(skill(0.1, 0.0))
    np.testing.assert_allclose(running_mean(np.array([1.0, 3.0, 5.0])), [1, 2, 3])


@pytest.mark.parametrize("level", [0.5, 0.9])
@pytest.mark.parametrize(("n", "p"), [(1, 0.3), (5, 0.3), (12, 0.8)])
def test_interval_coverage_of_a_calibrated_discrete_forecast_is_exactly_nominal(level, n, p):
    k = np.arange(n + 1)
    cover = interval_coverage(stats.binom.cdf(k - 1, n, p), stats.binom.cdf(k, n, p), level)
    assert stats.binom.pmf(k, n, p) @ cover == pytest.approx(level, abs=1e-12)
    # A forecaster who says 0.3 when the truth is 0.8 covers far less.
    if p == 0.8:
        wrong = interval_coverage(stats.binom.cdf(k - 1, n, 0.3), stats.binom.cdf(k, n, 0.3), level)
        assert stats.binom.pmf(k, n, p) @ wrong < level - 0.3


def test_reliability_table_bins_forecasts_and_outcomes():
    rows = reliability_table(np.array([0.05, 0.07, 0.95, 0.5]), np.array([0, 1, 1, 1]), n_bins=10)
    assert [r["bin"] for r in rows] == [[0.0, 0.1], [0.5, 0.6], [0.9, 1.0]]
    assert rows[0]["mean_forecast"] == pytest.approx(0.06) and rows[0]["observed_frequency"] == 0.5
    assert rows[0]["n"] == 2 and rows[2]["observed_frequency"] == 1.0


# --- what was known when, and the baselines ---------------------------------------------------


@pytest.fixture
def mini(tmp_path):
    return load_study(write_study(tmp_path, base_study()))


def table(rows) -> pd.DataFrame:
    df = pd.DataFrame(
        rows, columns=["group", "domain", "quarter", "cooperative", "weight", "event", "report", "origin_id"]
    )
    df["event_date"] = pd.to_datetime(df.pop("event"))
    df["report_date"] = pd.to_datetime(df.pop("report"))
    return df


def test_a_backtest_uses_only_what_was_reported_by_the_origin(mini):
    t = table(
        [
            ("west", "defence", Q("2020Q1"), True, 1.0, "2020-02-01", "2020-02-01", ""),
            ("west", "defence", Q("2020Q1"), False, 1.0, "2020-03-20", "2020-04-02", ""),  # reported in Q2
            ("east", "energy", Q("2020Q2"), True, 1.0, "2020-06-30", "2020-06-30", ""),
        ]
    )
    assert len(known_at(t, Q("2020Q1"))) == 1
    assert len(known_at(t, Q("2020Q2"))) == 3
    assert default_origins(mini, t, 12) == [Q("2020Q1")]


def test_baselines_are_smoothed_base_rates_and_last_observed_shares(mini):
    t = table(
        [
            ("west", "defence", Q("2020Q1"), True, 1.0, "2020-02-01", "2020-02-01", ""),
            ("west", "defence", Q("2020Q1"), False, 1.0, "2020-02-02", "2020-02-02", ""),
            ("west", "defence", Q("2020Q3"), True, 0.5, "2020-08-02", "2020-08-02", ""),
            ("west", "defence", Q("2020Q3"), False, 1.0, "2020-08-03", "2020-08-03", "E1"),  # corroboration
            ("west", "energy", Q("2020Q2"), False, 1.0, "2020-05-02", "2020-05-02", ""),
        ]
    )
    b = baseline_probabilities(t, mini)
    assert b["base_rate"][0, 0] == pytest.approx((1.5 + 0.5) / (2.5 + 1))
    assert b["last_quarter"][0, 0] == pytest.approx((0.5 + 0.5) / (0.5 + 1))  # 2020Q3 only
    assert b["base_rate"][0, 1] == pytest.approx(0.5 / 2)
    # The east group has no events: everyone's share, smoothed (1.5 cooperative of 3.5).
    assert b["base_rate"][1, 0] == pytest.approx(2.0 / 4.5) == b["last_quarter"][1, 1]


def test_question_baselines_come_from_the_questions_own_history(mini):
    n = np.zeros((2, 2, mini.time.n_quarters), dtype=int)
    k = np.zeros_like(n)
    n[0, 0, :4] = [2, 0, 3, 1]
    k[0, 0, :4] = [2, 0, 1, 1]
    q = Question("q", "t", "west", "defence", Q("2020Q4"), "share_above", 0.5, None, None)
    # Non-void past quarters 2020Q1..2020Q4: yes, no, yes -> base (2 + 1/2) / (3 + 1); last yes.
    assert question_baselines(q, n, k, mini, Q("2020Q4")) == pytest.approx({"base_rate": 2.5 / 4, "last_quarter": 0.75})
    c = Question("c", "t", "west", "defence", Q("2020Q4"), "any_conflictual", None, None, None)
    # Every quarter counts (no events: no conflict): 2020Q1..Q3 -> no, no, yes.
    assert question_baselines(c, n, k, mini, Q("2020Q3")) == pytest.approx({"base_rate": 1.5 / 4, "last_quarter": 0.75})


def test_psis_weights_are_proportional_to_the_importance_ratios():
    lw, k = psis_log_weights(np.zeros(4000), chains=4)
    np.testing.assert_allclose(np.exp(lw), 1 / 4000) and k < 0.5
    ratios = np.random.default_rng(0).normal(0, 0.3, 4000)
    lw, k = psis_log_weights(ratios, chains=4)
    assert k < 0.5 and np.exp(lw).sum() == pytest.approx(1.0)
    body = ratios < np.quantile(ratios, 0.8)  # smoothing only touches the upper tail
    np.testing.assert_allclose(lw[body] - lw[body][0], ratios[body] - ratios[body][0], atol=1e-9)
    assert psis_log_weights(np.array([0.0, np.nan] * 50), chains=2)[1] == np.inf


def test_cell_loglik_is_the_models_weighted_bernoulli(mini):
    t = table(
        [
            ("west", "defence", Q("2020Q1"), True, 0.5, "2020-02-01", "2020-02-01", ""),
            ("east", "energy", Q("2020Q3"), False, 1.0, "2020-08-01", "2020-08-01", ""),
        ]
    )
    eta = np.random.default_rng(1).normal(size=(3, 2, 2, mini.time.n_quarters))
    p1, p2 = 1 / (1 + np.exp(-eta[:, 0, 0, 0])), 1 / (1 + np.exp(-eta[:, 1, 1, 2]))
    np.testing.assert_allclose(cell_loglik(eta, cell_data(t, mini)), 0.5 * np.log(p1) + np.log(1 - p2), atol=1e-12)


# --- the typed record: today's JSON keys, rendered as text, drawn as a PNG ----------------------


def _fake_summaries():
    """The summaries of a backtest's scored events, from hand-made rows (no fitting)."""
    from forecast.fit.sampler import Diagnostics
    from forecast.workflows.backtest import BacktestResult, BacktestSettings, OriginFit, OriginResult
    from forecast.workflows.backtest.scoring import (
        _calibration,
        _summarise_coverage,
        _summarise_lfo,
        _summarise_questions,
        _summarise_scores,
    )

    rng = np.random.default_rng(3)
    n = 40
    events = pd.DataFrame(
        {
            "origin": 8084,
            "horizon": rng.integers(1, 3, n),
            "group": rng.choice(["g", "h"], n),
            "domain": "defence",
            "y": rng.random(n) < 0.6,
            "w": rng.uniform(0.5, 1.0, n),
            **{f: rng.uniform(0.05, 0.95, n) for f in ("up", "down", BMA, *BASELINES)},
        }
    )
    forecasters = ["up", "down", BMA, *BASELINES]
    coverage = pd.DataFrame({f"{f}@{lv}": rng.random(6) for f in ("up", "down", BMA) for lv in (0.5, 0.9)})
    questions = pd.DataFrame({"question": "q1", "y": [True, False, True], **{f: [0.6, 0.4, 0.7] for f in forecasters}})
    lfo = pd.DataFrame(
        [
            {"origin": o, "hypothesis": h, "elpd": -float(o % 7 + i), "k": 0.2}
            for o in (1, 2)
            for i, h in enumerate(("up", "down"))
        ]
        + [{"origin": o, "hypothesis": BMA, "elpd": -1.5, "k": None} for o in (1, 2)]
    )
    from types import SimpleNamespace

    q = SimpleNamespace(id="q1", text="Any?", kind="any_conflictual")
    q2 = SimpleNamespace(id="q2", text="Any other?", kind="any_conflictual")
    diag = Diagnostics(1.0, 900.0, 800.0, 0, 0.0, 1.0, True)
    return BacktestResult(
        study="fake",
        origins=[8084],
        horizon=2,
        lfo_method="exact",
        converged=True,
        hypotheses=["up", "down"],
        scores=_summarise_scores(events, forecasters, ["up", "down"]),
        coverage=_summarise_coverage(coverage, ["up", "down", BMA]),
        calibration=_calibration(events),
        questions=_summarise_questions(questions, [q, q2], forecasters, ["up", "down"]),
        lfo=_summarise_lfo(lfo, ["up", "down"], "exact"),
        by_origin=[OriginResult(8084, 30, {"up": 0.6, "down": 0.4}, {"up": OriginFit(8084, "up", True, None, -3.0, 0.1, diag)})],
        settings=BacktestSettings(SETTINGS, "exact", 0.7, pool="this process"),
        data_cutoff="2021-12-31",
    )  # fmt: skip


def test_the_backtest_record_keeps_the_json_layout():
    d = json.loads(json.dumps(_fake_summaries().to_dict(), allow_nan=False))
    assert d["forecasters"] == ["up", "down", BMA, *BASELINES] and d["origins"] == ["2021Q1"]
    assert set(d["scores"]) == {"overall", "skill", "by_horizon", "by_cell"}
    assert set(d["scores"]["overall"]) == {"up", "down", BMA, *BASELINES, "n_events", "weight"}
    assert set(d["scores"]["overall"]["up"]) == {"log_score", "brier"}
    assert set(d["scores"]["skill"]["up"]) == set(BASELINES) and set(d["scores"]["skill"]) == {"up", "down", BMA}
    assert set(d["scores"]["by_horizon"]) <= {"1", "2"}
    cell = d["scores"]["by_cell"][0]
    assert {"group", "domain", "n_events", "weight", "skill", "up"} <= set(cell)
    assert set(d["coverage"]["up"]) == {"interval_50", "interval_90", "n_cells"}
    assert set(d["calibration"]) == {BMA, *BASELINES}
    assert set(d["calibration"][BMA][0]) == {"bin", "mean_forecast", "observed_frequency", "n", "weight"}
    q1, q2 = d["questions"]
    assert set(q1) == {"id", "text", "kind", "n_resolved", "base_rate_observed", "scores", "skill"}
    assert set(q2) == {"id", "text", "kind", "n_resolved"} and q2["n_resolved"] == 0
    assert set(d["lfo"]) == {"method", "pareto_k_refit", "hypotheses"}
    assert [h["id"] for h in d["lfo"]["hypotheses"]] == ["up", "down", BMA]
    assert set(d["lfo"]["hypotheses"][0]) >= {"elpd_lfo", "se", "n_blocks", "pareto_k_max", "elpd_diff", "elpd_diff_se"}
    origin = d["by_origin"][0]
    assert origin["origin"] == "2021Q1" and set(origin["fits"]["up"]) == {
        "refit", "pareto_k", "log_marginal_likelihood", "converged", "problems"
    }  # fmt: skip
    assert d["settings"]["draws"] == SETTINGS.draws and d["settings"]["lfo"] == "exact" and d["settings"]["pool"]


def test_the_backtest_renders_as_text_and_draws_its_reliability_diagram():
    from forecast.reports.plots.backtest import reliability
    from forecast.reports.text.backtest import render_backtest

    result = _fake_summaries()
    text = render_backtest(result)
    assert "backtest at 1 origins 2021Q1..2021Q1" in text and "skill vs base rate" in text
    assert "Question q1 (3 resolved)" in text and "elpd_lfo" in text
    png = reliability(result.calibration_values())
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


# --- a backtest on data simulated with a known trend -------------------------------------------

TREND_PER_YEAR = 1.6
EVENTS_PER_CELL = 6
ORIGINS = (Q("2021Q1"), Q("2021Q2"), Q("2021Q3"), Q("2021Q4"), Q("2022Q1"))
HORIZON = 2
SETTINGS = SamplerSettings(draws=300, tune=300, chains=4, cores=2, seed=5)


def _trend_study(directory) -> tuple:
    data = base_study(observations="trend.csv")
    data["study"]["name"] = "trend"
    data["groups"] = [{"id": "g", "label": "G", "counterparts": ["c"]}]
    data["time"].update(start="2020Q1", end="2022Q4", reference="2021Q2", components=["trend"])
    common = {"tilt": {"all": prior("Normal", mu=0.0, sigma=1.5)}, "spread": {"all": prior("HalfNormal", sigma=0.5)}}
    data["hypotheses"] = [
        hypothesis("trending", 0.5, {**common, "trend": {"all": prior("Normal", mu=0.0, sigma=1.5)}}),
        hypothesis("flat", 0.5, {**common, "trend": {"all": prior("Normal", mu=0.0, sigma=0.05)}}),
    ]
    data["questions"] = [
        {
            "id": "any_conflict",
            "text": "Any conflictual defence interaction next quarter?",
            "group": "g",
            "domain": "defence",
            "quarter": "2023Q1",
            "kind": "any_conflictual",
            "created": "2022-12-01",
        },
        {
            "id": "mostly_cooperative",
            "text": "More than half of energy interactions cooperative?",
            "group": "g",
            "domain": "energy",
            "quarter": "2023Q1",
            "kind": "share_above",
            "threshold": 0.5,
            "created": "2022-12-01",
        },
    ]
    study_path = write_study(directory, data, name="trend.toml")
    rng = np.random.default_rng(42)
    lines = ["id,event_date,report_date,counterpart,domain,outcome,reliability,description,source"]
    n = 0
    for t in range(12):
        years = (t - 5) / 4
        for dom, offset in (("defence", -0.3), ("energy", 0.3)):
            p = 1 / (1 + np.exp(-(offset + TREND_PER_YEAR * years)))
            for j in range(EVENTS_PER_CELL):
                n += 1
                q = Q("2020Q1") + t
                day = dt.date(q // 4, 3 * (q % 4) + 1, 1) + dt.timedelta(days=10 * j + 3)
                late = n % 7 == 0  # some events only become known a quarter later
                report = day + dt.timedelta(days=100 if late else 0)
                outcome = "cooperative" if rng.random() < p else "conflictual"
                lines.append(f"E{n},{day},{report},c,{dom},{outcome},A1,event {n},sim")
    (directory / "trend.csv").write_text("\n".join(lines) + "\n")
    return study_path


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The simulated study, its observations and its model, compiled once for the module."""
    d = tmp_path_factory.mktemp("trend")
    study_path = _trend_study(d)
    study = load_study(study_path)
    obs = load_observations(study)
    return study_path, study, obs, StudyModel(study, cell_data(obs.table, study))


@pytest.fixture(scope="module")
def trend(compiled):
    study_path, study, obs, model = compiled
    questions = load_questions(study)
    exact = backtest(study, obs.table, model, ORIGINS, HORIZON, SETTINGS, questions=questions, allow_unconverged=True)
    approx = backtest(study, obs.table, model, ORIGINS, HORIZON, SETTINGS, lfo="approx", allow_unconverged=True)
    return study_path, study, obs, exact, approx


@pytest.mark.slow
def test_a_backtest_on_trending_data_beats_the_base_rate(trend):
    *_, exact, _ = trend
    skill_bma = exact.scores.skill[BMA]
    assert skill_bma.base_rate.log_score > 0.05 and skill_bma.base_rate.brier > 0.05
    overall = exact.scores.overall
    assert overall["trending"].log_score > overall["flat"].log_score
    assert overall["trending"].log_score > max(overall[b].log_score for b in BASELINES)
    assert exact.by_origin[-1].posterior_probabilities["trending"] > 0.9


@pytest.mark.slow
def test_backtest_scores_every_event_in_the_forecast_quarters(trend):
    *_, obs, exact, _ = trend
    targets = {q for o in ORIGINS for q in range(o + 1, o + HORIZON + 1)}
    n_expected = sum(
        int((obs.table["quarter"] == q).sum()) * sum(1 for o in ORIGINS if 0 < q - o <= HORIZON) for q in targets
    )
    assert exact.scores.overall.n_events == n_expected
    assert set(exact.scores.by_horizon) == {1, 2}
    assert {(c.group, c.domain) for c in exact.scores.by_cell} == {("g", "defence"), ("g", "energy")}


@pytest.mark.slow
def test_backtest_fits_on_what_was_known_at_each_origin(trend):
    *_, obs, exact, _ = trend
    assert [o.n_known for o in exact.by_origin] == [len(known_at(obs.table, o)) for o in ORIGINS]
    # Late reports are left out: fewer than every event up to the origin.
    assert exact.by_origin[0].n_known < int((obs.table["quarter"] <= ORIGINS[0]).sum())


@pytest.mark.slow
def test_backtest_intervals_cover_and_the_hypotheses_are_compared_leaving_the_future_out(trend):
    *_, exact, _ = trend
    cover = exact.coverage["trending"]
    assert cover.n_cells == len(ORIGINS) * HORIZON * 2
    assert 0.7 <= cover.interval_90 <= 1.0 and 0.25 <= cover.interval_50 <= 0.8
    lfo = {h.id: h for h in exact.lfo.hypotheses}
    assert lfo["trending"].elpd_lfo > lfo["flat"].elpd_lfo
    assert lfo["trending"].elpd_diff == 0 and lfo["flat"].elpd_diff == pytest.approx(
        lfo["flat"].elpd_lfo - lfo["trending"].elpd_lfo
    )
    assert lfo["flat"].elpd_diff_se > 0
    assert lfo["trending"].n_blocks == len(ORIGINS)
    assert exact.calibration[BMA] and exact.timings["fits"] == 2 * len(ORIGINS)


@pytest.mark.slow
def test_backtest_reasks_the_registered_questions(trend):
    *_, exact, _ = trend
    by_id = {q.id: q for q in exact.questions}
    assert by_id["any_conflict"].n_resolved == len(ORIGINS) * HORIZON
    assert set(by_id["any_conflict"].scores) == {"trending", "flat", BMA, *BASELINES}
    assert 0 < by_id["mostly_cooperative"].n_resolved <= len(ORIGINS) * HORIZON


@pytest.mark.slow
def test_approximate_lfo_refits_less_and_agrees_with_exact_refits(trend):
    *_, exact, approx = trend
    assert approx.timings["fits"] < exact.timings["fits"]
    refits = [o.fits["trending"].refit for o in approx.by_origin]
    assert refits[0] and not all(refits)
    for e, a in zip(exact.lfo.hypotheses, approx.lfo.hypotheses, strict=True):
        assert a.elpd_lfo == pytest.approx(e.elpd_lfo, abs=1.5), e.id
    assert all(
        o.fits[h].pareto_k is None or o.fits[h].refit or o.fits[h].pareto_k <= 0.7
        for o in approx.by_origin
        for h in ("trending", "flat")
    )


@pytest.mark.slow
def test_origins_fanned_out_as_tasks_give_the_same_fits(trend, compiled):
    """The executor path (one task per origin, as on worker processes or Dask), run in-process."""
    from forecast.fit.pool import InlineExecutor, Pool, cached_model, register_model

    _, study, obs, exact, _ = trend
    model = compiled[3]
    register_model(model)  # the "worker" finds the compiled model in the one model cache
    assert cached_model(study, model.cells) is model
    pool = Pool(InlineExecutor(), "tasks in this process", 2, SETTINGS.cores, True, "local")
    fanned = backtest(study, obs.table, model, ORIGINS[:3], HORIZON, SETTINGS, allow_unconverged=True, pool=pool)
    # Same data and seeds; but nutpie does not always repeat a seed's draws on the first run of a
    # configuration in a process (STACK-FACTS, "Reproducibility"), so agree to Monte Carlo error:
    # fits on other data (all of it, or another origin's) would be off by nats.
    for a, b in zip(fanned.by_origin, exact.by_origin[:3], strict=False):
        assert a.origin == b.origin and a.n_known == b.n_known
        for h in ("trending", "flat"):
            got, want = a.fits[h].log_ml, b.fits[h].log_ml
            assert got == pytest.approx(want, abs=0.3)
    assert fanned.timings["fits"] == 2 * 3


@pytest.mark.slow
def test_the_backtest_result_is_one_json_object(trend):
    *_, exact, _ = trend
    d = json.loads(json.dumps(exact.to_dict()))
    assert {
        "study", "origins", "horizon", "forecasters", "scores", "coverage", "calibration", "questions", "lfo",
        "by_origin", "converged", "settings",
    } <= set(d)  # fmt: skip
    assert d["forecasters"] == ["trending", "flat", "bma", "base_rate", "last_quarter"]


# --- the command line, end to end ---------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def fitted(trend, tmp_path_factory):
    from forecast.workflows.update import run_update

    study_path, *_ = trend
    runs = tmp_path_factory.mktemp("runs")
    settings = SamplerSettings(draws=500, tune=500, chains=4, seed=3)
    # The gate is not what is tested here: a borderline R-hat must not fail the module.
    result = run_update(study_path, settings, runs_root=runs, allow_unconverged=True)
    return study_path, runs, result


def gate(update) -> list[str]:
    return [] if update.converged else ["--allow-unconverged"]


@pytest.mark.slow
def test_predict_json_gives_forecasts_questions_and_milestones(fitted):
    study_path, runs, update = fitted
    result = invoke("predict", study_path, "--horizon", "3", "--json", "--quiet", "--runs-dir", runs, *gate(update))
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert {"study", "run_dir", "issued", "run_created", "data_cutoff", "origin", "quarters", "hypotheses"} <= set(d)
    assert d["origin"] == "2022Q4" and d["quarters"] == ["2023Q1", "2023Q2", "2023Q3"]
    # The simulated data end in 2022: today every forecast quarter and both questions are over, and it says so.
    assert d["staleness"]["quarters_over"] == d["quarters"] and d["latest_observation"] == "2022-11-23"
    assert d["staleness"]["questions_over"] == ["any_conflict", "mostly_cooperative"]
    assert [w.split(":")[0] for w in d["warnings"]] == ["Stale data", "Stale questions"]
    assert len(d["forecasts"]) == 2 * 3
    probs = {h["id"]: h["posterior_probability"] for h in update.to_dict()["hypotheses"]}
    for q in d["questions"]:
        mixed = sum(probs[h] * p for h, p in q["by_hypothesis"].items())
        assert q["probability"] == pytest.approx(mixed, abs=1e-12)
    for row in d["forecasts"]:
        mixed = sum(probs[h] * row["by_hypothesis"][h]["mean"] for h in probs)
        assert row["mean"] == pytest.approx(mixed, abs=1e-12)
    assert d["milestones"]["leading"] == sorted(probs, key=probs.get, reverse=True)[:2]
    assert len(d["milestones"]["cells"]) == 2
    stored = json.loads((runs / "trend" / update.run_dir.split("/")[-1] / "forecasts.json").read_text())
    assert stored["questions"] == d["questions"]
    assert not list((runs / "trend").glob("*/.forecasts.json.tmp-*"))


@pytest.mark.slow
def test_backtest_cli_writes_into_the_run_and_compares_lfo_with_loo(fitted):
    study_path, runs, update = fitted
    result = invoke(
        "backtest", study_path, "--origins", "2022Q1:2022Q2", "--horizon", "1", "--lfo", "approx", "--draws", "300",
        "--tune", "300", "--allow-unconverged", "--json", "--quiet", "--runs-dir", runs,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["origins"] == ["2022Q1", "2022Q2"] and d["run_dir"] == update.run_dir
    loo = {h["id"]: h["elpd_loo"] for h in update.to_dict()["hypotheses"]}
    assert {h["id"]: h["elpd_loo"] for h in d["lfo"]["hypotheses"] if h["id"] != BMA} == loo
    assert (runs / "trend" / d["run_dir"].split("/")[-1] / "backtest.json").is_file()
    assert (runs / "trend" / d["run_dir"].split("/")[-1] / "backtest_reliability.png").stat().st_size > 1000


@pytest.mark.slow
def test_score_cli_reports_open_questions(fitted):
    study_path, runs, update = fitted
    assert invoke("predict", study_path, "--quiet", "--runs-dir", runs, *gate(update)).exit_code == 0
    result = invoke("score", study_path, "--json", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    # Both questions are about 2023Q1, past the study's window: resolved by now, awaiting data.
    assert d["n_scored"] == 0 and all(q["status"].startswith("no forecast") for q in d["questions"])
