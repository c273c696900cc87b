"""`forecast simulate`: synthetic observations from a hypothesis's prior or posterior predictive.

Cheap checks first (exact probabilities for hand-set parameters, the prior predictive's marginal
share against quadrature, labelling, where files go, the posterior predictive from the golden run);
then, in the slow layer, one large simulated data set is fitted with `forecast update`, which must
recover the hypothesis that generated it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import base_study, prior, static_study, write_mini, write_study
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit

import forecast.workflows.simulate as simulate_module
from forecast.cli import main
from forecast.data.observations import load_observations
from forecast.errors import InputError, RunStoreError
from forecast.model.build import DOMAIN_EFFECT
from forecast.model.predictive import (
    cooperation_probability,
    cooperation_probability_draws,
    one_prior_draw,
    prior_draws,
    simulate_outcomes,
)
from forecast.reports.text.simulate import render_simulate
from forecast.spec.study import load_study
from forecast.workflows.simulate import SimulationResult, run_simulate, study_design, to_toml, uniform_design
from forecast.workflows.update import run_update

GOLDEN = Path(__file__).resolve().parent / "golden"

STATIC = static_study(
    "simmini",
    {"up": 1.0, "flat": 0.0, "down": -1.0},
    tilt_sigma=0.15,
    spread=prior("LogNormal", mu=-1.5, sigma=0.2),
    probabilities={"up": 0.34, "flat": 0.33, "down": 0.33},
    counterparts=("c", "k"),
    domains=("d", "e"),
    end="2021Q4",
)


def write_static(d, rows: str = "") -> object:
    write_study(d, STATIC, "s.toml")
    (d / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n" + rows)
    return d / "s.toml"


# --- exact pieces -----------------------------------------------------------------------------------


def test_cooperation_probability_of_hand_set_parameters(tmp_path):
    data = base_study()
    data["time"]["components"] = ["trend"]
    for h in data["hypotheses"]:
        del h["priors"]["volatility"]
    study_path, _ = write_mini(tmp_path, [], data)
    study = load_study(study_path)  # groups west (us, eu), east (russia); reference 2020Q3
    params = {
        "tilt": np.array([2.0, -2.0]),
        "spread": np.array([1.0, 0.5]),
        "trend": np.array([0.4, 0.0]),
        DOMAIN_EFFECT: np.array([[0.5, -0.5], [1.0, 0.0]]),
    }
    design = pd.DataFrame(
        {
            "counterpart": ["us", "eu", "russia", "russia", "us"],
            "domain": ["defence", "energy", "defence", "energy", "defence"],
            "event_date": ["2020-08-01", "2020-09-30", "2020-07-01", "2021-02-01", "2021-08-15"],
        }
    )
    # west: 2 + 1 * z + 0.4 * years from 2020Q3; east: -2 + 0.5 * z
    expected = expit([2.5, 1.5, -1.5, -2.0, 2.5 + 0.4])
    np.testing.assert_allclose(cooperation_probability(study, params, design), expected, rtol=1e-12)


def test_prior_predictive_share_matches_quadrature(tmp_path):
    """One event per prior draw: the share of cooperative outcomes is E[sigmoid(tilt + spread z)]."""
    study = load_study(write_static(tmp_path))
    h = study.hypothesis("up")
    design = pd.DataFrame({"counterpart": ["c"], "domain": ["d"], "event_date": ["2020-05-05"]})
    rng = np.random.default_rng(3)
    n = 20000
    draws = prior_draws(study, h, n, rng)
    hits = int((rng.uniform(size=n) < cooperation_probability_draws(study, draws, design)[:, 0]).sum())
    # one draw at a time, as `simulate` does, gives the same probabilities
    one = {k: v[7] for k, v in draws.items()}
    assert cooperation_probability(study, one, design)[0] == cooperation_probability_draws(study, draws, design)[7, 0]
    assert simulate_outcomes(study, one_prior_draw(study, h, rng), design, rng).dtype == bool
    # tilt ~ N(1, 0.15), spread ~ LogNormal(-1.5, 0.2), z ~ N(0, 1): integrate over all three
    x, w = hermegauss(40)
    w = w / w.sum()
    tilt = 1.0 + 0.15 * x[:, None, None]
    spread = np.exp(-1.5 + 0.2 * x[None, :, None])
    z = x[None, None, :]
    exact = float((w[:, None, None] * w[None, :, None] * w[None, None, :] * expit(tilt + spread * z)).sum())
    se = np.sqrt(exact * (1 - exact) / n)
    assert hits / n == pytest.approx(exact, abs=4 * se)


def test_study_design_copies_counted_rows_and_keeps_report_dates(tmp_path):
    study = load_study(write_static(tmp_path))
    (tmp_path / "events.csv").write_text(
        "id,event_date,report_date,counterpart,domain,outcome,reliability,description,source,origin_id\n"
        "a,2020-02-01,2020-02-03,c,d,cooperative,A1,x,w,\n"
        "b,2020-05-01,,k,e,conflictual,C3,y,w,\n"
        "r,2020-02-01,,c,d,cooperative,D4,report of a,w,a\n"
    )
    table = load_observations(study).table
    design = study_design(study, table)
    assert design.to_dict("records") == [
        {
            "counterpart": "c",
            "domain": "d",
            "event_date": "2020-02-01",
            "report_date": "2020-02-03",
            "reliability": "A1",
        },
        {"counterpart": "k", "domain": "e", "event_date": "2020-05-01", "report_date": "", "reliability": "C3"},
    ]


def test_uniform_design_stays_inside_the_window_and_before_today(tmp_path):
    import datetime as dt

    study = load_study(write_static(tmp_path))
    design = uniform_design(study, 3000, np.random.default_rng(0), "B2", today=dt.date(2021, 5, 10))
    dates = pd.to_datetime(design["event_date"])
    assert dates.min() >= pd.Timestamp("2020-01-01") and dates.max() <= pd.Timestamp("2021-05-10")
    assert set(design["counterpart"]) == {"c", "k"} and set(design["domain"]) == {"d", "e"}
    assert (design["reliability"] == "B2").all()
    # quarters are drawn uniformly: 2020Q1..2021Q2 (6 quarters), each about a sixth
    q = (dates.dt.year * 4 + (dates.dt.month - 1) // 3).value_counts(normalize=True)
    assert len(q) == 6 and q.max() - q.min() < 0.06


def test_the_toml_writer_round_trips_a_study(tmp_path):
    import tomllib

    assert tomllib.loads(to_toml(STATIC)) == STATIC


# --- files -----------------------------------------------------------------------------------------


def test_simulated_files_are_labelled_synthetic_and_validate(tmp_path):
    study_path = write_static(tmp_path, "a,2020-02-01,c,d,cooperative,A1,x,w\nb,2021-03-01,k,e,conflictual,B2,y,w\n")
    out = tmp_path / "sim"
    result = run_simulate(study_path, "down", n=50, out=out, runs_root=tmp_path / "runs", seed=4).to_dict()
    assert result["synthetic"] is True and result["n_events"] == 50
    table = pd.read_csv(out / "observations.csv", dtype=str, keep_default_na=False)
    assert table["id"].str.startswith("SIM-").all()
    assert table["description"].str.startswith("SYNTHETIC").all()
    assert table["note_synthetic"].str.contains("synthetic: hypothesis 'down'").all()
    assert (table["source"] == "forecast simulate (synthetic)").all()
    sim_study = load_study(out / "study.toml")
    assert sim_study.name == "simmini__sim_down" and "SYNTHETIC" in sim_study.question
    assert load_observations(sim_study).n == 50
    assert json.loads((out / "simulation.json").read_text())["parameters"]["tilt"][0] < 0
    # the same seed gives the same data
    again = run_simulate(study_path, "down", n=50, out=tmp_path / "sim2", runs_root=tmp_path / "runs", seed=4)
    assert (tmp_path / "sim2" / "observations.csv").read_text() == (out / "observations.csv").read_text()
    assert again.to_dict()["n_cooperative"] == result["n_cooperative"]


def test_simulate_refuses_to_write_into_data_or_over_files(tmp_path):
    study_path = write_static(tmp_path, "a,2020-02-01,c,d,cooperative,A1,x,w\n")
    with pytest.raises(InputError, match="data directory"):
        run_simulate(study_path, "up", n=5, out=tmp_path, runs_root=tmp_path / "runs")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        run_simulate(study_path, "up", n=5, out=tmp_path / "full", runs_root=tmp_path / "runs")
    with pytest.raises(RunStoreError):
        run_simulate(study_path, "up", source="posterior", n=5, runs_root=tmp_path / "runs")
    with pytest.raises(InputError, match="no hypothesis"):
        run_simulate(study_path, "sideways", n=5, runs_root=tmp_path / "runs")


def test_an_unknown_hypothesis_lists_the_studys_hypotheses_and_exits_2(tmp_path):
    study_path = write_static(tmp_path, "a,2020-02-01,c,d,cooperative,A1,x,w\n")
    with pytest.raises(InputError) as e:
        run_simulate(study_path, "sideways", n=5, runs_root=tmp_path / "runs")
    assert "'up', 'flat', 'down'" in str(e.value) and "did you mean" not in str(e.value)
    cli = CliRunner().invoke(main, ["simulate", str(study_path), "-H", "flatt", "--n", "5"])
    assert cli.exit_code == 2
    assert "no hypothesis 'flatt'" in cli.stderr and "did you mean 'flat'" in cli.stderr
    assert "its hypotheses are 'up', 'flat', 'down'" in cli.stderr
    long = CliRunner().invoke(main, ["simulate", str(study_path), "-H", "x" * 500, "--n", "5"])
    assert long.exit_code == 2 and "x" * 81 not in long.stderr
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_the_directory_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    study_path = write_static(tmp_path, "a,2020-02-01,c,d,cooperative,A1,x,w\n")
    out = tmp_path / "sim"
    calls = []

    def failing_fsync(path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(simulate_module, "fsync", failing_fsync)
    with pytest.raises(RunStoreError, match="the disk is full"):
        run_simulate(study_path, "up", n=5, out=out, runs_root=tmp_path / "runs")
    assert not out.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".sim")]
    monkeypatch.undo()
    result = run_simulate(study_path, "up", n=5, out=out, runs_root=tmp_path / "runs")
    assert isinstance(result, SimulationResult)
    assert sorted(p.name for p in out.iterdir()) == ["observations.csv", "simulation.json", "study.toml"]
    assert json.loads((out / "simulation.json").read_text()) == result.to_dict()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    text = render_simulate(result)
    assert "Simulated 5 SYNTHETIC events from hypothesis 'up'" in text and "forecast update" in text


def _golden_runs(d: Path) -> tuple[Path, Path]:
    shutil.copytree(GOLDEN / "inputs", d / "inputs")
    run = d / "runs" / "golden" / "run-v1"
    shutil.copytree(GOLDEN / "run-v1", run)
    (run.parent / "LATEST").write_text("run-v1\n")
    return d / "inputs" / "golden.toml", d / "runs"


def test_the_posterior_predictive_reads_a_run_that_matches_the_current_inputs(tmp_path):
    study, runs = _golden_runs(tmp_path)
    result = run_simulate(study, "shift", source="posterior", seed=6, runs_root=runs)
    assert result.posterior_draw is not None and result.n_events == 48  # the study's own design
    assert result.out_dir.startswith(str((runs / "golden" / "run-v1" / "simulations").resolve()))
    assert set(result.parameters) >= {"tilt", "spread", "trend", "volatility", DOMAIN_EFFECT}
    events = study.parent / "events.csv"
    events.write_text("\n".join(events.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(RunStoreError, match="does not match the current inputs.*observations have changed"):
        run_simulate(study, "shift", source="posterior", n=5, seed=6, runs_root=runs)
    # the prior predictive only uses the run as the place to write
    assert run_simulate(study, "shift", n=5, seed=6, runs_root=runs).posterior_draw is None


def test_a_study_without_observations_needs_n(tmp_path):
    study_path, _ = write_mini(tmp_path, [])
    with pytest.raises(InputError, match="--n"):
        run_simulate(study_path, "steady", runs_root=tmp_path / "runs")
    ok = run_simulate(study_path, "steady", n=3, runs_root=tmp_path / "runs").to_dict()
    assert "simulations" in ok["out_dir"] and ok["run_dir"] is None


# --- simulate -> update recovers the generating hypothesis -------------------------------------------


@pytest.fixture(scope="module")
def recovered(tmp_path_factory):
    """A simulated data set fitted by `forecast update` (slow: only tests marked slow use it)."""
    d = tmp_path_factory.mktemp("recover")
    study_path = write_static(d, "a,2020-02-01,c,d,cooperative,A1,x,w\n")
    sim = run_simulate(study_path, "flat", n=3000, out=d / "sim", runs_root=d / "runs", seed=11).to_dict()
    update = run_update(sim["study_file"], runs_root=d / "runs")
    return d, sim, update


@pytest.mark.slow
def test_update_recovers_the_generating_hypothesis(recovered):
    _, sim, update = recovered
    assert update.converged
    post = {h.id: h.posterior_probability for h in update.hypotheses}
    # 'flat' lies between 'up' and 'down': both neighbours must lose to it. (How decisively depends
    # on the draw: with 3000 events the data pin the log-odds down, and the Bayes factor is about
    # the ratio of the priors' densities there.)
    assert max(post, key=post.get) == "flat" and post["flat"] > 0.95, post
    assert abs(sim["parameters"]["tilt"][0]) < 0.45  # the draw really is a 'flat' one


@pytest.mark.slow
def test_posterior_predictive_reproduces_the_fitted_share(recovered):
    d, sim, update = recovered
    out = run_simulate(sim["study_file"], "flat", source="posterior", out=d / "ppc", seed=2, runs_root=d / "runs")
    res = out.to_dict()
    assert res["posterior_draw"] is not None and res["n_events"] == 3000  # the study's own design
    data = load_observations(load_study(sim["study_file"])).table
    share_data = data["cooperative"].mean()
    assert res["n_cooperative"] / res["n_events"] == pytest.approx(share_data, abs=0.05)


@pytest.mark.slow
def test_cli_simulate_json_and_exit_codes(recovered, tmp_path):
    d, sim, _ = recovered
    runner = CliRunner()
    ok = runner.invoke(
        main,
        ["simulate", sim["study_file"], "-H", "up", "--n", "20", "--out", str(tmp_path / "o"), "--json"],
    )
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.stdout)
    for key in (
        "study",
        "hypothesis",
        "source",
        "seed",
        "synthetic",
        "n_events",
        "n_cooperative",
        "parameters",
        "observations",
        "study_file",
        "out_dir",
    ):
        assert key in out
    bad = runner.invoke(main, ["simulate", sim["study_file"], "-H", "nope", "--n", "5"])
    assert bad.exit_code == 2 and "no hypothesis" in bad.stderr
    again = runner.invoke(main, ["simulate", sim["study_file"], "-H", "up", "--n", "20", "--out", str(tmp_path / "o")])
    assert again.exit_code == 2 and "not empty" in again.stderr
