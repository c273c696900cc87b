"""`forecast calibrate`: simulation-based calibration of the hypothesis test.

The checks are pure functions, tested first on probabilities whose calibration is known by
construction (calibrated ones must pass, over-confident and biased ones must fail). Then a
small real calibration runs the whole update on 20 simulated data sets of a static one-group
study: its posterior probabilities must be consistent with exact calibration within the Monte
Carlo band. That run is small on purpose (CI); its band is wide, so it can catch gross errors
(a wrong sign, a bridge sampler off by nats, probabilities computed against the wrong prior),
not subtle ones: `forecast calibrate --datasets 200` is the real check.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.special import softmax

from forecast.cli import main
from forecast.fit.sampler import SamplerSettings
from forecast.spec.study import load_study
from forecast.workflows.calibrate import (
    CALIBRATION,
    calibration_checks,
    design_analysis,
    run_calibration,
    simulate_replicate,
)
from forecast.workflows.simulate import uniform_design

STUDY_TEMPLATE = """
[study]
name = "calmini"
question = "Does T cooperate with C?"
actor = "T"
observations = "events.csv"
[time]
start = "2020Q1"
end = "2020Q4"
components = []
[[groups]]
id = "g"
label = "G"
counterparts = ["c"]
[[domains]]
id = "d"
label = "D"
[[domains]]
id = "e"
label = "E"
[[hypotheses]]
id = "up"
label = "Up"
prior_probability = {p_up}
claim = "c"
[hypotheses.priors]
tilt.all = {{ dist = "Normal", kwargs = {{ mu = 0.75, sigma = 0.5 }} }}
spread.all = {{ dist = "LogNormal", kwargs = {{ mu = -1.2, sigma = 0.2 }} }}
[[hypotheses]]
id = "down"
label = "Down"
prior_probability = {p_down}
claim = "c"
[hypotheses.priors]
tilt.all = {{ dist = "Normal", kwargs = {{ mu = -0.75, sigma = 0.5 }} }}
spread.all = {{ dist = "LogNormal", kwargs = {{ mu = -1.2, sigma = 0.2 }} }}
"""
STUDY = STUDY_TEMPLATE.format(p_up=0.5, p_down=0.5)
SMALL = SamplerSettings(draws=1000, tune=1000, chains=2, seed=3)
N_DATASETS = 20
N_EVENTS = 12


# --- the checks can pass and can fail ----------------------------------------------------------------


def calibrated_sample(k: int, rng: np.random.Generator, prior=(0.3, 0.7)):
    """Posterior probabilities that are calibrated by construction: draw P(H1|y), then H from it."""
    # P(H1 | y) spread over (0, 1) with mean 0.3, the prior probability, as data would give.
    p1 = rng.beta(0.6, 1.4, size=k)
    true = (rng.uniform(size=k) >= p1).astype(int)  # hypothesis 0 is true with probability p1
    return true, np.stack([p1, 1 - p1], axis=1), np.array(prior)


def test_calibrated_probabilities_pass_every_check():
    true, post, prior = calibrated_sample(4000, np.random.default_rng(1))
    out = calibration_checks(true, post, prior, n_bins=5)
    assert out["consistent"], out
    assert out["mean_posterior"][0]["mean_posterior"] == pytest.approx(0.3, abs=0.02)
    assert all(b["within"] for b in out["bins"] if b["n"])


def test_over_confident_probabilities_fail():
    true, post, prior = calibrated_sample(4000, np.random.default_rng(2))
    sharp = post**3 / (post**3).sum(axis=1, keepdims=True)  # the same ranking, pushed towards 0 and 1
    out = calibration_checks(true, sharp, prior)
    assert not out["consistent"]
    assert out["brier"]["z"] > 3  # over-confident: positive


def test_probabilities_computed_against_the_wrong_prior_fail():
    true, post, prior = calibrated_sample(4000, np.random.default_rng(3))
    odds = post[:, 0] / post[:, 1] * (0.5 / 0.5) / (0.3 / 0.7)  # as if the prior were 50/50
    wrong = np.stack([odds / (1 + odds), 1 / (1 + odds)], axis=1)
    out = calibration_checks(true, wrong, prior)
    assert not out["consistent"]
    assert not out["mean_posterior"][0]["within"]


def test_design_analysis_of_hand_made_results():
    true = np.array([0, 0, 1, 1, 1])
    post = np.array([[0.95, 0.05], [0.4, 0.6], [0.2, 0.8], [0.05, 0.95], [0.92, 0.08]])
    out = design_analysis(true, post, ["a", "b"])
    assert out["picks_true"] == pytest.approx(3 / 5)
    assert out["decisive"] == pytest.approx(2 / 5)  # 0.95 for a, 0.95 for b
    assert out["misleading"] == pytest.approx(1 / 5)  # 0.92 for a when b is true
    assert out["by_truth"]["a"] == {"n": 2, "picks_true": 0.5, "decisive": 0.5, "mean_posterior_of_true": 0.675}
    assert out["mean_posterior_of_true"] == pytest.approx((0.95 + 0.4 + 0.8 + 0.95 + 0.08) / 5)


def test_replicates_are_reproducible_and_draw_hypotheses_from_the_prior(tmp_path):
    (tmp_path / "s.toml").write_text(STUDY_TEMPLATE.format(p_up=0.2, p_down=0.8))
    (tmp_path / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n")
    study = load_study(tmp_path / "s.toml")
    assert [h.prior_probability for h in study.hypotheses] == [0.2, 0.8]
    design = uniform_design(study, N_EVENTS, np.random.default_rng(0))
    a = simulate_replicate(study, design, 9, 4)
    b = simulate_replicate(study, design, 9, 4)
    assert a[0] == b[0] and a[1].equals(b[1])
    trues = [simulate_replicate(study, design, 9, i)[0] for i in range(300)]
    assert np.mean(np.array(trues) == 0) == pytest.approx(0.2, abs=4 * np.sqrt(0.16 / 300))


# --- a small real calibration -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    d = tmp_path_factory.mktemp("calibrate")
    (d / "s.toml").write_text(STUDY)
    (d / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n")
    result = run_calibration(
        d / "s.toml", SMALL, n_datasets=N_DATASETS, n=N_EVENTS, workers=0, runs_root=d / "runs", bar=False
    )
    return d, result.to_dict()


def test_small_calibration_is_consistent_with_exact_calibration(calibration):
    _, out = calibration
    assert out["converged"] and out["n_datasets"] == N_DATASETS and out["n_events"] == N_EVENTS
    c = out["calibration"]
    assert c["consistent"], json.dumps(c, indent=1)
    for m in c["mean_posterior"]:
        assert m["band_low"] <= m["mean_posterior"] <= m["band_high"]
    # the data sets carry information: the tool is right more often than a coin
    assert out["design_analysis"]["picks_true"] > 0.5


def test_the_small_run_would_catch_a_log_marginal_likelihood_off_by_three_nats(calibration):
    """The power of the CI-sized check: the same replicates with one hypothesis's log ML shifted."""
    _, out = calibration
    hyps = out["hypotheses"]
    prior = np.array([out["prior_probability"][h] for h in hyps])
    true = np.array([hyps.index(r["true"]) for r in out["replicates"]])
    log_ml = np.array([[r["log_marginal_likelihood"][h] for h in hyps] for r in out["replicates"]])
    post = softmax(np.log(prior) + log_ml + np.array([3.0, 0.0]), axis=1)
    assert not calibration_checks(true, post, prior)["consistent"]


def test_calibration_replicates_match_their_simulated_truth(calibration):
    d, out = calibration
    study = load_study(d / "s.toml")
    design = uniform_design(study, N_EVENTS, np.random.default_rng([SMALL.seed, 5]))
    for r in out["replicates"][:5]:
        true, table = simulate_replicate(study, design, SMALL.seed, r["index"])
        assert r["true"] == study.hypotheses[true].id
        assert r["n_cooperative"] == int(table["cooperative"].sum())
        assert sum(r["posterior_probability"].values()) == pytest.approx(1.0)


def test_calibration_is_written_atomically(calibration):
    d, out = calibration
    written = json.loads(open(out["written"]).read())
    assert written["calibration"] == out["calibration"] and CALIBRATION in out["written"]
    assert not list((d / "runs").rglob(".*tmp*"))


def test_cli_calibrate_json_and_bad_input(calibration):
    d, _ = calibration
    runner = CliRunner()
    bad = runner.invoke(main, ["calibrate", str(d / "s.toml"), "--datasets", "1"])
    assert bad.exit_code == 2
    ok = runner.invoke(
        main,
        [
            "calibrate",
            str(d / "s.toml"),
            "--datasets",
            "2",
            "--n",
            str(N_EVENTS),
            "--draws",
            "1000",
            "--tune",
            "1000",
            "--chains",
            "2",
            "--workers",
            "0",
            "--runs-dir",
            str(d / "runs"),
            "--json",
            "-q",
            "--allow-unconverged",
        ],
    )
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.stdout)
    for key in (
        "study",
        "hypotheses",
        "n_datasets",
        "n_events",
        "calibration",
        "consistent",
        "design_analysis",
        "replicates",
        "converged",
        "pool",
        "written",
    ):
        assert key in out


@pytest.mark.skipif(
    not os.environ.get("FORECAST_PARALLEL_TESTS"),
    reason="starts two worker processes that each compile the model (minutes on a loaded 2-core machine); "
    "set FORECAST_PARALLEL_TESTS=1 to run",
)
def test_parallel_workers_give_the_same_data_sets_and_conclusions(calibration):
    d, inline = calibration
    out = run_calibration(
        d / "s.toml", SMALL, n_datasets=2, n=N_EVENTS, workers=2, runs_root=d / "runs", bar=False, write=False
    ).to_dict()
    assert out["pool"]["workers"] == 2 and len({r["worker"] for r in out["replicates"]}) >= 1
    for par, seq in zip(out["replicates"], inline["replicates"][:2], strict=True):
        assert par["true"] == seq["true"] and par["n_cooperative"] == seq["n_cooperative"]
        for h in par["log_marginal_likelihood"]:
            se = np.hypot(par["log_marginal_likelihood_se"][h], seq["log_marginal_likelihood_se"][h])
            assert par["log_marginal_likelihood"][h] == pytest.approx(
                seq["log_marginal_likelihood"][h], abs=4 * se + 0.01
            )
