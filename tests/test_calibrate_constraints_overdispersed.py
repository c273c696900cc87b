"""`forecast calibrate --comparison constraints` on an overdispersed study.

With ``[model] overdispersion = "cell"`` the truth of a constraint data set is the encompassing
prior restricted to the hypothesis's region (as without overdispersion) plus a concentration phi
from the study's concentration prior, and each (group, domain, quarter) cell of the design first
draws its cooperative share from Beta(p phi, (1 - p) phi): a cell of m events then has
K ~ BetaBinomial(m, p phi, (1 - p) phi), whose variance is the binomial's times
1 + (m - 1) / (phi + 1).

Fast layer: that variance, cell by cell over many simulated data sets (each standardised by its
own truth, so the check is exact in expectation whatever the truths), and the concentration's
draws against its prior. Slow layer: a small real calibration (20 data sets, one overdispersed
encompassing fit each) through the command line, within its Monte Carlo band. Like
tests/test_calibrate_constraints.py's, that band is wide (CI size): it catches gross errors only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from builders_cli import calibrate_args
from click.testing import CliRunner
from helpers import prior, write_study
from test_calibrate_constraints import tiny

from forecast.cli import main
from forecast.model.predictive import cooperation_probability
from forecast.spec.study import CONCENTRATION, load_study
from forecast.workflows.calibrate import MIN_DATASETS, constraint_setup, simulate_constraint_replicate
from forecast.workflows.simulate import uniform_design

N_EVENTS = 16  # per data set, in the slow calibration (as tests/test_calibrate_constraints.py)
DENSE = 400  # per data set, in the fast variance check: about 50 events in each of the 8 cells
N_SIMULATED = 120  # data sets in the fast check (about 900 cells)
SEED = 5
# The same seed as the non-overdispersed test's. (With each check at 99% on its own, the 20-data-set
# check failed a calibrated tool about one time in six, and this seed did; the checks now hold 99%
# together: forecast/workflows/calibrate/checks.py.)
CALIBRATION_SEED = SEED


def write_overdispersed(d: Path, concentration: dict | None = None) -> Path:
    """tests/test_calibrate_constraints.py's tiny static study (one group, two domains, 2020Q1..Q4,
    three constraint hypotheses) with a Polya cell likelihood."""
    data = tiny()
    data["model"] = {"overdispersion": "cell", **({"concentration": concentration} if concentration else {})}
    write_study(d, data, "s.toml")
    (d / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n")
    return d / "s.toml"


def cell_counts(study, design, params, table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (group, domain, quarter) cell of a simulated data set: its events m, its cooperative
    events K and its true mean p (the truth's P(cooperative), the same for every event of a cell)."""
    p_row = cooperation_probability(study, {k: v for k, v in params.items() if k != CONCENTRATION}, design)
    cell = table.groupby(["group", "domain", "quarter"]).ngroup().to_numpy()
    m = np.bincount(cell)
    k = np.bincount(cell, weights=table["cooperative"].to_numpy(dtype=float))
    p = np.bincount(cell, weights=p_row) / m
    assert np.allclose(p_row, p[cell])  # one mean per cell
    return m, k, p


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """N_SIMULATED overdispersed constraint data sets on one dense design (no sampling)."""
    d = tmp_path_factory.mktemp("calod")
    study = load_study(write_overdispersed(d))
    setup = constraint_setup(study, SEED)
    design = uniform_design(study, DENSE, np.random.default_rng([SEED, 5]))
    out = [simulate_constraint_replicate(study, setup, design, SEED, i) for i in range(N_SIMULATED)]
    return study, setup, design, out


def test_an_overdispersed_constraint_study_is_calibrated_not_refused(simulated):
    study, setup, _, data_sets = simulated
    assert study.overdispersed and setup.ids == ("cooperative", "conflictual", "mixed")
    assert all(CONCENTRATION in params for _, params, _, _ in data_sets)


def test_the_truths_concentration_is_drawn_from_the_studys_prior(simulated):
    study, _, _, data_sets = simulated
    log_phi = np.log([float(params[CONCENTRATION]) for _, params, _, _ in data_sets])
    mu, sigma = study.concentration.kwargs["mu"], study.concentration.kwargs["sigma"]  # LogNormal(log 20, 1)
    n = len(log_phi)
    assert log_phi.mean() == pytest.approx(mu, abs=4 * sigma / math.sqrt(n))
    assert log_phi.std() == pytest.approx(sigma, rel=4 / math.sqrt(2 * n))


def test_simulated_cells_vary_as_beta_binomials_not_binomials(simulated):
    """Per cell of m events with true mean p and the data set's phi, the squared deviation of its
    cooperative count K from m p, over the binomial variance m p (1 - p), has expectation
    f = 1 + (m - 1) / (phi + 1) (beta-binomial), not 1. Given the truth the cells are independent,
    so R = (K - m p)^2 / (m p (1 - p) f) averages to 1 with a Monte Carlo error estimated from the
    R's own spread (only cells with p in [0.05, 0.95]: chosen by the truth, not the outcomes, so
    the expectation is unchanged, and the denominators stay away from zero)."""
    study, _, design, data_sets = simulated
    ratios, binomial = [], []
    for _, params, table, _ in data_sets:
        m, k, p = cell_counts(study, design, params, table)
        keep = (p >= 0.05) & (p <= 0.95) & (m >= 2)
        m, k, p = m[keep], k[keep], p[keep]
        plain = (k - m * p) ** 2 / (m * p * (1 - p))
        binomial.append(plain)
        ratios.append(plain / (1 + (m - 1) / (float(params[CONCENTRATION]) + 1)))
    ratios, binomial = np.concatenate(ratios), np.concatenate(binomial)
    n = len(ratios)
    assert n > 0.5 * 8 * N_SIMULATED  # most cells kept
    se = ratios.std(ddof=1) / math.sqrt(n)
    assert ratios.mean() == pytest.approx(1.0, abs=4 * se), (ratios.mean(), se)
    # Binomial cells would give 1 here; these vary several times more (phi around 20, m around 50).
    se_binomial = binomial.std(ddof=1) / math.sqrt(n)
    assert binomial.mean() > 1 + 10 * se_binomial and binomial.mean() > 2


def test_a_tight_concentration_prior_sets_how_much_the_cells_vary(tmp_path):
    """phi fixed near 1 (LogNormal(0, 0.01)): shares of a cell are nearly Uniform-like Beta(p, 1 - p)
    draws, so a cell's share is near 0 or 1 far more often than a binomial's at m around 50."""
    study = load_study(write_overdispersed(tmp_path, prior("LogNormal", mu=0.0, sigma=0.01)))
    setup = constraint_setup(study, SEED)
    design = uniform_design(study, DENSE, np.random.default_rng([SEED, 6]))
    f_expected, f_seen = [], []
    for i in range(40):
        _, params, table, _ = simulate_constraint_replicate(study, setup, design, SEED, i)
        phi = float(params[CONCENTRATION])
        assert phi == pytest.approx(1.0, rel=0.05)
        m, k, p = cell_counts(study, design, params, table)
        keep = (p >= 0.05) & (p <= 0.95) & (m >= 2)
        m, k, p = m[keep], k[keep], p[keep]
        f_seen.append((k - m * p) ** 2 / (m * p * (1 - p)))
        f_expected.append(1 + (m - 1) / (phi + 1))
    seen, expected = np.concatenate(f_seen), np.concatenate(f_expected)
    ratio = seen / expected
    assert ratio.mean() == pytest.approx(1.0, abs=4 * ratio.std(ddof=1) / math.sqrt(len(ratio)))
    assert seen.mean() > 15  # m around 50, phi = 1: about 25 times the binomial variance


# --- a small real calibration through the command line (slow) ---------------------------------------------


@pytest.mark.slow
def test_cli_calibrate_constraints_on_an_overdispersed_study_is_within_its_band(tmp_path):
    path = write_overdispersed(tmp_path)
    args = calibrate_args(
        path,
        tmp_path / "runs",
        datasets=MIN_DATASETS,
        n_events=N_EVENTS,
        seed=CALIBRATION_SEED,
        extra=("--comparison", "constraints", "--json"),
    )
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["comparisons"] == ["constraints"] and "hypotheses" not in out
    k = out["constraints"]
    assert k["n_datasets"] == MIN_DATASETS and [r["index"] for r in k["replicates"]] == list(range(MIN_DATASETS))
    assert k["converged"], [r["problems"] for r in k["replicates"] if r["problems"]]
    c = k["calibration"]
    assert c["consistent"] is True, json.dumps(c, indent=1)
    for m in c["mean_posterior"]:
        assert m["band_low"] <= m["mean_posterior"] <= m["band_high"]
    assert k["design_analysis"]["picks_true"] > 1 / 3  # the data carry information: better than a guess
    # the same data sets as simulate_constraint_replicate gives (overdispersed outcomes)
    study = load_study(path)
    setup = constraint_setup(study, CALIBRATION_SEED)
    design = uniform_design(study, N_EVENTS, np.random.default_rng([CALIBRATION_SEED, 5]))
    for r in k["replicates"][:3]:
        true, params, table, _ = simulate_constraint_replicate(study, setup, design, CALIBRATION_SEED, r["index"])
        assert r["true"] == setup.ids[true] and CONCENTRATION in params
        assert r["n_cooperative"] == int(table["cooperative"].sum())
