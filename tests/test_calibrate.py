"""`forecast calibrate`: simulation-based calibration of the hypothesis test.

The checks are pure functions, tested first on probabilities whose calibration is known by
construction (calibrated ones must pass, over-confident and biased ones must fail; the stated
power is what a simulation of the check finds). The command's plumbing (progress, verdict, where
it writes) runs on fake replicates, without sampling. Then, in the slow layer, a small real
calibration runs the whole update on 20 simulated data sets of a static one-group study: its
posterior probabilities must be consistent with exact calibration within the Monte Carlo band.
That run is small on purpose (CI); its band is wide, so it can catch gross errors (a wrong sign,
a bridge sampler off by nats, probabilities computed against the wrong prior), not subtle ones:
`forecast calibrate --datasets 200` is the real check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from builders_cli import calibrate_args
from click.testing import CliRunner
from helpers import copy_golden, prior, static_study, write_study
from scipy.special import softmax

import forecast.workflows.calibrate.run as calibrate_module
from forecast.cli import main
from forecast.fit.sampler import SamplerSettings
from forecast.reports.text.calibrate import render_calibration
from forecast.runs.layout import CALIBRATION
from forecast.spec.study import load_study
from forecast.workflows.calibrate import (
    BAND_LEVEL,
    MIN_DATASETS,
    POWER,
    TOO_FEW,
    Replicate,
    calibration_checks,
    design_analysis,
    detectable_shift,
    run_calibration,
    simulate_replicate,
)
from forecast.workflows.simulate import uniform_design

GOLDEN = Path(__file__).resolve().parent / "golden"


def cal_study(p_up: float = 0.5) -> dict:
    return static_study(
        "calmini",
        {"up": 0.75, "down": -0.75},
        spread=prior("LogNormal", mu=-1.2, sigma=0.2),
        probabilities={"up": p_up, "down": round(1 - p_up, 12)},
        domains=("d", "e"),
    )


STUDY = cal_study()
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


@pytest.mark.parametrize("k", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_a_calibrated_tool_fails_the_checks_together_about_one_time_in_a_hundred(k):
    """BAND_LEVEL is the checks' joint level: four hypotheses with Dirichlet-spread posteriors and
    the truth drawn from them (calibrated by construction), 400 runs. Each check at 99% on its own
    with normal quantiles failed 19% of runs at k = 20 and 8% at k = 200."""
    rng = np.random.default_rng(k)
    prior = np.full(4, 0.25)
    failed = 0
    for _ in range(400):
        post = rng.dirichlet(np.full(4, 0.7), size=k)
        true = (rng.uniform(size=(k, 1)) > post.cumsum(axis=1)).sum(axis=1)
        failed += not calibration_checks(true, post, prior).consistent
    # 1 - BAND_LEVEL = 1% nominal; allow for Monte Carlo error and the approximations' small excess.
    assert failed / 400 <= 0.03, failed


def test_poisson_binomial_band_is_exact():
    from scipy import stats as st

    from forecast.workflows.calibrate.checks import poisson_binomial_band

    p = np.full(30, 0.3)  # equal probabilities: the binomial
    lo, hi = poisson_binomial_band(p, 0.01)
    assert st.binom.cdf(lo - 1, 30, 0.3) <= 0.005 < st.binom.cdf(lo, 30, 0.3)
    assert st.binom.sf(hi, 30, 0.3) <= 0.005 < st.binom.sf(hi - 1, 30, 0.3)
    mixed = np.array([0.0, 1.0, 1.0, 0.0])  # certain outcomes: exactly two
    assert poisson_binomial_band(mixed, 0.01) == (2, 2)


def test_the_skewness_correction_is_increasing_and_inverted_exactly():
    from forecast.workflows.calibrate.checks import SkewCorrection

    for gamma in (-2.0, 0.0, 1.5):
        g = SkewCorrection(gamma, 20)
        t = np.linspace(-6, 6, 121)
        values = np.array([g(x) for x in t])
        assert np.all(np.diff(values) >= 0)
        np.testing.assert_allclose([g.inverse(v) for v in values], t, atol=1e-9)


def test_calibrated_probabilities_pass_every_check():
    true, post, prior = calibrated_sample(4000, np.random.default_rng(1))
    out = calibration_checks(true, post, prior, n_bins=5)
    assert out.consistent, out
    assert out.mean_posterior[0].mean_posterior == pytest.approx(0.3, abs=0.02)
    assert all(b.within for b in out.bins if b.n)


def test_over_confident_probabilities_fail():
    true, post, prior = calibrated_sample(4000, np.random.default_rng(2))
    sharp = post**3 / (post**3).sum(axis=1, keepdims=True)  # the same ranking, pushed towards 0 and 1
    out = calibration_checks(true, sharp, prior)
    assert out.consistent is False
    assert out.brier.z > 3  # over-confident: positive


def test_probabilities_computed_against_the_wrong_prior_fail():
    true, post, prior = calibrated_sample(4000, np.random.default_rng(3))
    odds = post[:, 0] / post[:, 1] * (0.5 / 0.5) / (0.3 / 0.7)  # as if the prior were 50/50
    wrong = np.stack([odds / (1 + odds), 1 / (1 + odds)], axis=1)
    out = calibration_checks(true, wrong, prior)
    assert out.consistent is False
    assert not out.mean_posterior[0].within


def test_design_analysis_of_hand_made_results():
    true = np.array([0, 0, 1, 1, 1])
    post = np.array([[0.95, 0.05], [0.4, 0.6], [0.2, 0.8], [0.05, 0.95], [0.92, 0.08]])
    out = design_analysis(true, post, ["a", "b"])
    assert out.picks_true == pytest.approx(3 / 5)
    assert out.decisive == pytest.approx(2 / 5)  # 0.95 for a, 0.95 for b
    assert out.misleading == pytest.approx(1 / 5)  # 0.92 for a when b is true
    assert out.by_truth["a"].to_dict() == {"n": 2, "picks_true": 0.5, "decisive": 0.5, "mean_posterior_of_true": 0.675}
    assert out.mean_posterior_of_true == pytest.approx((0.95 + 0.4 + 0.8 + 0.95 + 0.08) / 5)


def test_replicates_are_reproducible_and_draw_hypotheses_from_the_prior(tmp_path):
    write_study(tmp_path, cal_study(0.2), "s.toml")
    (tmp_path / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n")
    study = load_study(tmp_path / "s.toml")
    assert [h.prior_probability for h in study.hypotheses] == [0.2, 0.8]
    design = uniform_design(study, N_EVENTS, np.random.default_rng(0))
    a = simulate_replicate(study, design, 9, 4)
    b = simulate_replicate(study, design, 9, 4)
    assert a[0] == b[0] and a[1].equals(b[1])
    trues = [simulate_replicate(study, design, 9, i)[0] for i in range(100)]
    assert np.mean(np.array(trues) == 0) == pytest.approx(0.2, abs=4 * np.sqrt(0.16 / 100))


def test_monte_carlo_bands_stay_inside_zero_and_one():
    rng = np.random.default_rng(4)
    p1 = rng.beta(0.2, 3.0, size=25)  # a rare hypothesis, posteriors spread out: prior - z se < 0
    true = (rng.uniform(size=25) >= p1).astype(int)
    out = calibration_checks(true, np.stack([p1, 1 - p1], axis=1), np.array([0.06, 0.94]))
    rare, common = out.mean_posterior
    assert rare.prior - 2.576 * rare.se < 0 and rare.band_low == 0.0
    assert common.prior + 2.576 * common.se > 1 and common.band_high == 1.0
    for m in out.mean_posterior:
        assert 0 <= m.band_low <= m.band_high <= 1
    for b in out.bins:
        assert b.n == 0 or 0 <= b.band_low <= b.band_high <= 1


def test_too_few_data_sets_give_no_verdict_but_say_what_they_could_detect():
    true, post, prior = calibrated_sample(MIN_DATASETS - 1, np.random.default_rng(5))
    out = calibration_checks(true, post, prior)
    assert out.consistent is None and out.verdict == TOO_FEW and out.min_datasets == MIN_DATASETS
    assert out.power.n_datasets == MIN_DATASETS - 1
    assert out.power.mean_posterior == pytest.approx(max(m.detectable for m in out.mean_posterior))
    enough = calibration_checks(*calibrated_sample(MIN_DATASETS, np.random.default_rng(5)))
    assert enough.consistent is not None and enough.verdict != TOO_FEW
    # four data sets of a calibrated tool used to read "consistent with exact calibration"
    tiny = calibration_checks(*calibrated_sample(4, np.random.default_rng(6)))
    assert tiny.consistent is None and tiny.power.mean_posterior > 0.2


def test_the_stated_power_is_what_a_simulation_of_the_check_finds():
    """Shift every P(H1 | y) by the detectable amount: the check must fail about POWER of the time."""
    k, reps, prior = 40, 300, np.array([0.4, 0.6])
    rng = np.random.default_rng(7)
    samples = []
    for _ in range(reps):
        p1 = 0.15 + 0.5 * rng.beta(2.0, 2.0, size=k)  # mean 0.4, inside [0.15, 0.65]
        samples.append(((rng.uniform(size=k) >= p1).astype(int), p1))
    first = [calibration_checks(t, np.stack([p, 1 - p], axis=1), prior).mean_posterior[0] for t, p in samples[:100]]
    se = np.mean([m.se for m in first])
    shift = np.mean([m.detectable for m in first])
    # Each check at its share of the 1% (Bonferroni over the checks), Student t with k - 1 df.
    assert shift > detectable_shift(se) and shift < detectable_shift(se, 4.5)
    caught = np.mean(
        [
            not calibration_checks(t, np.stack([p + shift, 1 - p - shift], axis=1), prior).mean_posterior[0].within
            for t, p in samples
        ]
    )
    assert caught == pytest.approx(POWER, abs=4 * np.sqrt(POWER * (1 - POWER) / reps) + 0.03)


# --- the command on fake replicates (no sampling) ---------------------------------------------------------


def fake_replicates(monkeypatch, events: list | None = None):
    """Replace the update of each data set by calibrated coin flips; record the order of events."""

    def run_replicate(study, design, settings, index):
        rng = np.random.default_rng(index)
        if events is not None:
            events.append(("fit", index))
        true = int(rng.integers(2))
        return Replicate(
            index, true, 3, (float(rng.normal(1.0 - 2 * true, 1.0)), 0.0), (0.1, 0.1), (True, True), (), 0.01, "here"
        )

    monkeypatch.setattr(calibrate_module, "run_replicate", run_replicate)


def write_cal_study(d: Path) -> Path:
    write_study(d, STUDY, "s.toml")
    (d / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n")
    return d / "s.toml"


def test_in_process_progress_is_a_line_per_data_set_with_the_time_left(tmp_path, monkeypatch):
    events: list = []
    fake_replicates(monkeypatch, events)
    run_calibration(
        write_cal_study(tmp_path), SMALL, n_datasets=5, n=N_EVENTS, workers=0, write=False,
        progress=lambda line: events.append(("line", line)),
    )  # fmt: skip
    lines = [e[1] for e in events if e[0] == "line" and "data sets done" in e[1]]
    assert len(lines) == 5
    assert lines[0].startswith("calibration: 1/5 data sets done") and "left" in lines[0]
    assert lines[-1].startswith("calibration: 5/5 data sets done") and "all done" in lines[-1]
    # each line comes as its data set finishes, before the next one starts
    order = [e[0] if e[0] == "fit" else "line" for e in events if e[0] == "fit" or "data sets done" in e[1]]
    assert order == ["fit", "line"] * 5


def test_without_a_run_the_calibration_says_so_and_is_written_outside_runs(tmp_path, monkeypatch):
    fake_replicates(monkeypatch)
    result = run_calibration(write_cal_study(tmp_path), SMALL, n_datasets=3, n=N_EVENTS, runs_root=tmp_path / "runs")
    assert result.run_dir is None and "no run to add it to" in result.note and "no runs of study" in result.note
    assert Path(result.written).parent == tmp_path / "runs" / "calmini" / "calibration"
    stored = json.loads(Path(result.written).read_text())
    assert stored["note"] == result.note and stored["calibration"]["verdict"] == TOO_FEW
    text = render_calibration(result)
    assert "Too few data sets to judge (3 < 20)" in text and "probability points" in text
    assert "Note: no run to add it to" in text and "Consistent with exact calibration" not in text


def test_calibration_goes_into_the_latest_run_when_it_matches_the_current_inputs(tmp_path, monkeypatch):
    fake_replicates(monkeypatch)
    study, _, run = copy_golden(tmp_path)
    result = run_calibration(study, SMALL, n_datasets=MIN_DATASETS, runs_root=tmp_path / "runs")  # the study's design
    assert result.run_dir == str(run) and result.written == str(run / CALIBRATION) and result.note is None
    out = result.to_dict()
    assert list(out)[:15] == [
        "study", "hypotheses", "prior_probability", "n_datasets", "n_events", "design", "settings", "pool",
        "converged", "n_unconverged", "calibration", "consistent", "design_analysis", "replicates", "timings",
    ]  # fmt: skip
    assert list(out["calibration"]) == [
        "band_level", "mean_posterior", "bins", "brier", "consistent", "min_datasets", "verdict", "power",
    ]  # fmt: skip
    assert out["consistent"] in (True, False) and out["calibration"]["power"]["probability"] == POWER
    assert out["calibration"]["band_level"] == BAND_LEVEL
    assert "with probability 80%" in render_calibration(result)
    # observations changed since the run: the design comes from them, so the run no longer matches
    events = study.parent / "events.csv"
    events.write_text("\n".join(events.read_text().splitlines()[:-1]) + "\n")
    again = run_calibration(study, SMALL, n_datasets=3, runs_root=tmp_path / "runs")
    assert again.run_dir is None and "the observations have changed" in again.note


# --- a small real calibration -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """20 data sets through the whole update (slow: only tests marked slow use it)."""
    d = tmp_path_factory.mktemp("calibrate")
    write_study(d, STUDY, "s.toml")
    (d / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n")
    result = run_calibration(d / "s.toml", SMALL, n_datasets=N_DATASETS, n=N_EVENTS, workers=0, runs_root=d / "runs")
    return d, result.to_dict()


@pytest.mark.slow
def test_small_calibration_is_consistent_with_exact_calibration(calibration):
    _, out = calibration
    assert out["converged"] and out["n_datasets"] == N_DATASETS and out["n_events"] == N_EVENTS
    c = out["calibration"]
    assert c["consistent"], json.dumps(c, indent=1)
    for m in c["mean_posterior"]:
        assert m["band_low"] <= m["mean_posterior"] <= m["band_high"]
    # the data sets carry information: the tool is right more often than a coin
    assert out["design_analysis"]["picks_true"] > 0.5


@pytest.mark.slow
def test_the_small_run_would_catch_a_log_marginal_likelihood_off_by_three_nats(calibration):
    """The power of the CI-sized check: the same replicates with one hypothesis's log ML shifted."""
    _, out = calibration
    hyps = out["hypotheses"]
    prior = np.array([out["prior_probability"][h] for h in hyps])
    true = np.array([hyps.index(r["true"]) for r in out["replicates"]])
    log_ml = np.array([[r["log_marginal_likelihood"][h] for h in hyps] for r in out["replicates"]])
    post = softmax(np.log(prior) + log_ml + np.array([3.0, 0.0]), axis=1)
    assert calibration_checks(true, post, prior).consistent is False


@pytest.mark.slow
def test_calibration_replicates_match_their_simulated_truth(calibration):
    d, out = calibration
    study = load_study(d / "s.toml")
    design = uniform_design(study, N_EVENTS, np.random.default_rng([SMALL.seed, 5]))
    for r in out["replicates"][:5]:
        true, table = simulate_replicate(study, design, SMALL.seed, r["index"])
        assert r["true"] == study.hypotheses[true].id
        assert r["n_cooperative"] == int(table["cooperative"].sum())
        assert sum(r["posterior_probability"].values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_calibration_is_written_atomically(calibration):
    d, out = calibration
    written = json.loads(open(out["written"]).read())
    assert written["calibration"] == out["calibration"] and CALIBRATION in out["written"]
    assert not list((d / "runs").rglob(".*tmp*"))


@pytest.mark.slow
def test_cli_calibrate_json_and_bad_input(calibration):
    d, _ = calibration
    runner = CliRunner()
    bad = runner.invoke(main, ["calibrate", str(d / "s.toml"), "--datasets", "1"])
    assert bad.exit_code == 2
    args = calibrate_args(
        d / "s.toml", d / "runs", datasets=2, n_events=N_EVENTS, extra=("--json", "--allow-unconverged")
    )
    ok = runner.invoke(main, args)
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
@pytest.mark.slow
def test_parallel_workers_give_the_same_data_sets_and_conclusions(calibration):
    d, inline = calibration
    out = run_calibration(
        d / "s.toml", SMALL, n_datasets=2, n=N_EVENTS, workers=2, runs_root=d / "runs", write=False
    ).to_dict()
    assert out["pool"]["workers"] == 2 and len({r["worker"] for r in out["replicates"]}) >= 1
    for par, seq in zip(out["replicates"], inline["replicates"][:2], strict=True):
        assert par["true"] == seq["true"] and par["n_cooperative"] == seq["n_cooperative"]
        for h in par["log_marginal_likelihood"]:
            se = np.hypot(par["log_marginal_likelihood_se"][h], seq["log_marginal_likelihood_se"][h])
            assert par["log_marginal_likelihood"][h] == pytest.approx(
                seq["log_marginal_likelihood"][h], abs=4 * se + 0.01
            )
