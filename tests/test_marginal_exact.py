"""Bridge-sampling log marginal likelihoods and posterior probabilities against exact values.

The exact values come from numerical integration (``tests/exact.py``, which does not import the
toolkit) on small static studies; the weighted counts it integrates are tallied here from the
events as written, not from ``forecast.data.cells``, so the whole path — study file, observation CSV,
reliability weights, cell sums, model, nutpie draws, bridge sampler, posterior probabilities —
is checked end to end. Required agreement: 0.1 nats for log p(y | H), 0.02 for P(H | y).

Each study is compiled and fitted once per module (a compile costs 10-20 s).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import exact
import numpy as np
import pytest

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit.hypothesis import loo
from forecast.fit.sampler import SamplerSettings, StudyModel, clear_compiled_models
from forecast.model.build import CENTRE_AT
from forecast.spec.study import load_study
from forecast.stats.bridge import bridge_sampling
from forecast.stats.loo import Loo, posterior_probabilities

LOG_ML_TOL = 0.1  # nats
PROB_TOL = 0.02
SE_MAX = 0.1
SE_MULTIPLE = 5.0
SE_SLACK = 0.02

SETTINGS = SamplerSettings(draws=2000, tune=1000, chains=4, cores=2, seed=20240601)

# Likelihood weight of each reliability code used below, written out by hand: Admiralty grades
# are the product of the [reliability] tables in STUDY_TEMPLATE; plain numbers are themselves.
WEIGHT = {"A1": 1.0, "C3": 0.75 * 0.75, "0.5": 0.5, "1": 1.0}

QUARTER_DATE = {1: "2020-02-14", 2: "2020-05-14", 3: "2020-08-14", 4: "2020-11-13"}

STUDY_TEMPLATE = """
[study]
name = "{name}"
question = "Exact marginal likelihood check"
actor = "Testland"
observations = "events.csv"

[time]
step = "quarter"
start = "2020Q1"
end = "2020Q4"
components = []

{groups}
{domains}
[reliability]
source = {{ A = 1.0, B = 0.9, C = 0.75, D = 0.5, E = 0.25, F = 0.5 }}
credibility = {{ "1" = 1.0, "2" = 0.9, "3" = 0.75, "4" = 0.5, "5" = 0.25, "6" = 0.5 }}

{hypotheses}
"""


@dataclass(frozen=True)
class Events:
    """``n`` events of one counterpart, domain, outcome, reliability code and quarter."""

    counterpart: str
    domain: str
    outcome: str
    reliability: str
    n: int
    quarter: int = 1


@dataclass(frozen=True)
class Case:
    name: str
    groups: dict[str, list[str]]  # group id -> counterparts
    domains: list[str]
    # hypothesis id -> (prior probability, {(param, group id or "all"): (dist, kwargs)})
    hypotheses: dict[str, tuple[float, dict[tuple[str, str], tuple[str, dict[str, float]]]]]
    events: list[Events]
    # ``[model]`` of the study: overdispersion's concentration prior (dist, kwargs), None without.
    concentration: tuple[str, dict[str, float]] | None = None


def normal(mu: float, sigma: float) -> tuple[str, dict[str, float]]:
    return "Normal", {"mu": mu, "sigma": sigma}


def half_normal(sigma: float) -> tuple[str, dict[str, float]]:
    return "HalfNormal", {"sigma": sigma}


CASES = {
    # One group, one domain, one quarter: a single cell; unit weights.
    "one_cell": Case(
        name="one_cell",
        groups={"partner": ["alpha"]},
        domains=["trade"],
        hypotheses={
            "friendly": (0.5, {("tilt", "all"): normal(1.0, 0.75), ("spread", "all"): half_normal(0.5)}),
            "hostile": (0.5, {("tilt", "all"): normal(-0.5, 0.75), ("spread", "all"): half_normal(0.5)}),
        },
        events=[
            Events("alpha", "trade", "cooperative", "A1", 13),
            Events("alpha", "trade", "conflictual", "A1", 7),
        ],
    ),
    # One group, three domains with different cooperative shares: partial pooling through
    # spread; reliability weights A1 (1.0), C3 (0.5625) and plain 0.5.
    "three_cells_weighted": Case(
        name="three_cells_weighted",
        groups={"partner": ["alpha", "beta"]},
        domains=["defence", "energy", "trade"],
        hypotheses={
            "uniform": (0.4, {("tilt", "all"): normal(0.5, 1.0), ("spread", "all"): half_normal(0.3)}),
            "issue_specific": (0.35, {("tilt", "all"): normal(0.0, 1.0), ("spread", "all"): half_normal(1.5)}),
            "hostile": (0.25, {("tilt", "all"): normal(-1.0, 0.5), ("spread", "all"): half_normal(1.0)}),
        },
        events=[
            Events("alpha", "defence", "cooperative", "A1", 6),
            Events("beta", "defence", "cooperative", "C3", 5),
            Events("alpha", "defence", "cooperative", "0.5", 3),
            Events("alpha", "defence", "conflictual", "A1", 2),
            Events("beta", "defence", "conflictual", "0.5", 2),
            Events("alpha", "energy", "cooperative", "A1", 2),
            Events("alpha", "energy", "cooperative", "C3", 2),
            Events("beta", "energy", "conflictual", "A1", 7),
            Events("alpha", "energy", "conflictual", "C3", 4),
            Events("beta", "energy", "conflictual", "0.5", 3),
            Events("alpha", "trade", "cooperative", "A1", 4),
            Events("beta", "trade", "cooperative", "0.5", 4),
            Events("alpha", "trade", "conflictual", "C3", 3),
            Events("alpha", "trade", "conflictual", "A1", 3),
        ],
    ),
    # Two groups x two domains, events spread over quarters (one log-odds per group and domain
    # in a static study), unit weights written both as a grade and as a plain number.
    "two_groups": Case(
        name="two_groups",
        groups={"east": ["gamma"], "west": ["delta", "epsilon"]},
        domains=["energy", "security"],
        hypotheses={
            "pivot_east": (
                0.5,
                {
                    ("tilt", "east"): normal(1.0, 0.75),
                    ("tilt", "west"): normal(-0.5, 0.75),
                    ("spread", "all"): half_normal(0.75),
                },
            ),
            "anchored_west": (
                0.5,
                {
                    ("tilt", "east"): normal(-0.5, 0.75),
                    ("tilt", "west"): normal(1.0, 0.75),
                    ("spread", "east"): half_normal(0.5),
                    ("spread", "west"): half_normal(1.0),
                },
            ),
        },
        events=[
            Events("gamma", "energy", "cooperative", "A1", 6, quarter=1),
            Events("gamma", "energy", "cooperative", "1", 4, quarter=3),
            Events("gamma", "energy", "conflictual", "A1", 2, quarter=2),
            Events("gamma", "security", "cooperative", "A1", 3, quarter=2),
            Events("gamma", "security", "conflictual", "1", 6, quarter=4),
            Events("delta", "energy", "cooperative", "A1", 5, quarter=1),
            Events("epsilon", "energy", "conflictual", "A1", 4, quarter=2),
            Events("delta", "security", "cooperative", "1", 8, quarter=3),
            Events("epsilon", "security", "cooperative", "A1", 3, quarter=4),
            Events("delta", "security", "conflictual", "A1", 3, quarter=1),
        ],
    ),
}


# Strong data (400 events per domain): the case the data-dependent centring is for. With the
# default threshold every domain effect is sampled centred; the exact answer is the same model's.
CASES["strong_data_centred"] = Case(
    name="strong_data_centred",
    groups={"partner": ["alpha"]},
    domains=["defence", "energy", "trade", "security"],
    hypotheses={
        "uniform": (0.5, {("tilt", "all"): normal(0.0, 1.0), ("spread", "all"): half_normal(0.4)}),
        "issue_specific": (0.5, {("tilt", "all"): normal(0.5, 1.0), ("spread", "all"): half_normal(1.5)}),
    },
    events=[
        Events("alpha", "defence", "cooperative", "A1", 300),
        Events("alpha", "defence", "conflictual", "A1", 100),
        Events("alpha", "energy", "cooperative", "C3", 120),
        Events("alpha", "energy", "conflictual", "C3", 280),
        Events("alpha", "trade", "cooperative", "0.5", 250),
        Events("alpha", "trade", "conflictual", "0.5", 150),
        Events("alpha", "security", "cooperative", "A1", 200),
        Events("alpha", "security", "conflictual", "A1", 200),
    ],
)


# Overdispersion (``[model] overdispersion = "cell"``): each cell's share is Beta around its
# probability, one concentration for the study (default prior). Group and domain ids of their
# own: a compiled model is shared by studies of the same structure (fit.sampler), and these
# studies' models differ from the plain ones only by the [model] option.
DEFAULT_CONCENTRATION = ("LogNormal", {"mu": float(np.log(20.0)), "sigma": 1.0})
CASES["one_cell_overdispersed"] = Case(
    name="one_cell_overdispersed",
    groups={"urn": ["omicron"]},
    domains=["talks"],
    hypotheses={
        "friendly": (0.5, {("tilt", "all"): normal(1.0, 0.75), ("spread", "all"): half_normal(0.5)}),
        "hostile": (0.5, {("tilt", "all"): normal(-0.5, 0.75), ("spread", "all"): half_normal(0.5)}),
    },
    events=[
        Events("omicron", "talks", "cooperative", "A1", 40),
        Events("omicron", "talks", "conflictual", "A1", 8),
    ],
    concentration=DEFAULT_CONCENTRATION,
)
# Two cells in one group (two domains): partial pooling through spread, one shared concentration,
# fractional (C3) weights in the gamma functions.
CASES["two_cells_overdispersed"] = Case(
    name="two_cells_overdispersed",
    groups={"urn": ["omicron"]},
    domains=["talks", "arms"],
    hypotheses={
        "uniform": (0.5, {("tilt", "all"): normal(0.5, 1.0), ("spread", "all"): half_normal(0.3)}),
        "issue_specific": (0.5, {("tilt", "all"): normal(0.0, 1.0), ("spread", "all"): half_normal(1.5)}),
    },
    events=[
        Events("omicron", "talks", "cooperative", "A1", 30),
        Events("omicron", "talks", "conflictual", "A1", 3),
        Events("omicron", "arms", "cooperative", "C3", 3),
        Events("omicron", "arms", "conflictual", "C3", 9),
    ],
    concentration=DEFAULT_CONCENTRATION,
)


def _toml_prior(dist: str, kwargs: dict[str, float]) -> str:
    args = ", ".join(f"{k} = {v!r}" for k, v in kwargs.items())
    return f'{{ dist = "{dist}", kwargs = {{ {args} }} }}'


def write_study(case: Case, directory: Path) -> Path:
    groups = "\n".join(
        f'[[groups]]\nid = "{g}"\nlabel = "{g}"\ncounterparts = [{", ".join(repr(c) for c in cs)}]\n'
        for g, cs in case.groups.items()
    ).replace("'", '"')
    domains = "\n".join(f'[[domains]]\nid = "{d}"\nlabel = "{d}"\n' for d in case.domains)
    hyps = []
    for hid, (prob, priors) in case.hypotheses.items():
        lines = [
            f'[[hypotheses]]\nid = "{hid}"\nlabel = "{hid}"\nclaim = "{hid}"\nprior_probability = {prob!r}\n',
            "[hypotheses.priors]",
        ]
        lines += [f"{param}.{group} = {_toml_prior(*prior)}" for (param, group), prior in priors.items()]
        hyps.append("\n".join(lines) + "\n")
    text = STUDY_TEMPLATE.format(name=case.name, groups=groups, domains=domains, hypotheses="\n".join(hyps))
    if case.concentration is not None:
        text += f'\n[model]\noverdispersion = "cell"\nconcentration = {_toml_prior(*case.concentration)}\n'
    rows = ["id,event_date,counterpart,domain,outcome,reliability,description,source"]
    k = 0
    for e in case.events:
        for _ in range(e.n):
            k += 1
            rows.append(
                f"ev{k:03d},{QUARTER_DATE[e.quarter]},{e.counterpart},{e.domain},{e.outcome},{e.reliability},event {k},test"
            )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "events.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    path = directory / "study.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def weighted_counts(case: Case) -> dict[str, list[tuple[float, float]]]:
    """Per group, (summed cooperative weight, summed conflictual weight) of each observed domain."""
    group_of = {c: g for g, cs in case.groups.items() for c in cs}
    sums: dict[tuple[str, str], list[float]] = {}
    for e in case.events:
        cell = sums.setdefault((group_of[e.counterpart], e.domain), [0.0, 0.0])
        cell[0 if e.outcome == "cooperative" else 1] += e.n * WEIGHT[e.reliability]
    return {g: [tuple(sums[(g, d)]) for d in case.domains if (g, d) in sums] for g in case.groups}


def group_prior(priors: dict, param: str, group: str):
    dist, kwargs = priors.get((param, group)) or priors[(param, "all")]
    return exact.pymc_prior(dist, **kwargs)


def weighted_cell_counts(case: Case) -> dict[str, list[list[tuple[float, float]]]]:
    """Per group, per observed domain, the (cooperative, conflictual) summed weights of each
    quarter's cell: the overdispersed model's Beta draws are per cell, not per domain."""
    group_of = {c: g for g, cs in case.groups.items() for c in cs}
    sums: dict[tuple[str, str], dict[int, list[float]]] = {}
    for e in case.events:
        cell = sums.setdefault((group_of[e.counterpart], e.domain), {}).setdefault(e.quarter, [0.0, 0.0])
        cell[0 if e.outcome == "cooperative" else 1] += e.n * WEIGHT[e.reliability]
    return {
        g: [[tuple(c) for _, c in sorted(sums[(g, d)].items())] for d in case.domains if (g, d) in sums]
        for g in case.groups
    }


def exact_log_ml(case: Case, hid: str) -> float:
    priors = case.hypotheses[hid][1]
    if case.concentration is not None:
        counts = weighted_cell_counts(case)
        return exact.log_ml_polya(
            [group_prior(priors, "tilt", g) for g in case.groups],
            [group_prior(priors, "spread", g) for g in case.groups],
            exact.pymc_prior(case.concentration[0], **case.concentration[1]),
            [counts[g] for g in case.groups],
        )
    counts = weighted_counts(case)
    return exact.log_ml_study(
        [(group_prior(priors, "tilt", g), group_prior(priors, "spread", g)) for g in case.groups],
        [counts[g] for g in case.groups],
    )


@dataclass
class Result:
    case: Case
    hypotheses: list[str]
    prior: np.ndarray
    exact_log_ml: np.ndarray
    exact_prob: np.ndarray
    log_ml: np.ndarray
    se: np.ndarray
    prob: np.ndarray
    prob_se: np.ndarray
    converged: dict[str, tuple[bool, tuple[str, ...]]]
    loo: dict[str, Loo] = field(default_factory=dict)  # PSIS-LOO of each hypothesis's fit


def run_case(case: Case, directory: Path, centre_at: float = CENTRE_AT) -> Result:
    """Fit and bridge every hypothesis; ``centre_at=0`` samples every domain effect centred."""
    study = load_study(write_study(case, directory))
    assert study.overdispersed == (case.concentration is not None)
    obs = load_observations(study)
    cells = cell_data(obs.table, study)
    if study.overdispersed:  # the compiled-model cache is keyed by structure, not by [model]
        clear_compiled_models()
    sm = StudyModel(study, cells, centre_at=centre_at)
    assert sm.centring.any_domain == case.name.endswith("_centred"), "the case exercises the wrong parameterisation"
    log_ml, se, converged, loos = [], [], {}, {}
    for k, h in enumerate(study.hypotheses):
        fit = sm.fit(h, SETTINGS)
        converged[h.id] = (fit.diagnostics.converged, fit.diagnostics.problems)
        # Proposal draws independent across hypotheses, as the toolkit's own update seeds them.
        res = bridge_sampling(sm.log_posterior(h), fit.unconstrained, np.random.default_rng([7, k]))
        log_ml.append(res.log_ml)
        se.append(res.se)
        loos[h.id] = loo(sm, fit)
    hids = [h.id for h in study.hypotheses]
    prior = np.array([h.prior_probability for h in study.hypotheses])
    p, p_se = posterior_probabilities(np.array(log_ml), np.array(se), prior)
    ex = np.array([exact_log_ml(case, hid) for hid in hids])
    return Result(
        case,
        hids,
        prior,
        ex,
        exact.posterior_probabilities(ex, prior),
        np.array(log_ml),
        np.array(se),
        p,
        p_se,
        converged,
        loos,
    )


@pytest.fixture(scope="module")
def one_cell(tmp_path_factory) -> Result:
    return run_case(CASES["one_cell"], tmp_path_factory.mktemp("one_cell"))


@pytest.fixture(scope="module")
def three_cells_weighted(tmp_path_factory) -> Result:
    return run_case(CASES["three_cells_weighted"], tmp_path_factory.mktemp("three_cells_weighted"))


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory) -> Result:
    return run_case(CASES["two_groups"], tmp_path_factory.mktemp("two_groups"))


@pytest.fixture(scope="module")
def strong_data_centred(tmp_path_factory) -> Result:
    return run_case(CASES["strong_data_centred"], tmp_path_factory.mktemp("strong_data_centred"))


@pytest.fixture(scope="module")
def one_cell_overdispersed(tmp_path_factory) -> Result:
    return run_case(CASES["one_cell_overdispersed"], tmp_path_factory.mktemp("one_cell_overdispersed"))


@pytest.fixture(scope="module")
def two_cells_overdispersed(tmp_path_factory) -> Result:
    return run_case(CASES["two_cells_overdispersed"], tmp_path_factory.mktemp("two_cells_overdispersed"))


def _report(r: Result) -> str:
    return "\n".join(
        f"{h}: exact {e:.4f}, bridge {m:.4f} ± {s:.4f} (err {m - e:+.4f}); P exact {pe:.4f}, P est {pm:.4f}"
        for h, e, m, s, pe, pm in zip(r.hypotheses, r.exact_log_ml, r.log_ml, r.se, r.exact_prob, r.prob, strict=True)
    )


CASE_NAMES = list(CASES)


# --- the quadrature itself ----------------------------------------------------------------


def test_quadrature_inner_integral_matches_adaptive_quad():
    """Adaptive Gauss-Hermite over z against scipy's adaptive quadrature, including a large
    spread with a lopsided cell (a sharply pinned, skewed integrand) and a tiny spread. (That the
    default node count is enough for the log marginal likelihood is checked by refinement below.)"""
    from scipy import integrate

    for t, s, a, b in [(0.3, 0.5, 13.0, 7.0), (2.7, 8.9, 0.06, 4.9), (-1.0, 0.001, 3.0, 9.0), (1.5, 3.0, 9.6, 4.2)]:
        zs = np.linspace(-s * b, s * a, 20001)
        z0 = float(zs[np.argmax(exact._z_log_integrand(zs, t, s, a, b))])
        shift = float(exact._z_log_integrand(z0, t, s, a, b))
        val, _ = integrate.quad(
            lambda z, t=t, s=s, a=a, b=b, c=shift: np.exp(exact._z_log_integrand(z, t, s, a, b) - c),
            z0 - 40.0,
            z0 + 40.0,
            points=[z0],
            epsabs=0.0,
            epsrel=1e-12,
            limit=500,
        )
        got = float(exact.log_domain_integral(t, s, a, b, n_nodes=160))
        assert abs(got - (np.log(val) + shift)) < 1e-9, (t, s, a, b)


def test_quadrature_is_converged_and_agrees_with_prior_monte_carlo():
    tp, sp = exact.pymc_prior("Normal", mu=0.5, sigma=1.0), exact.pymc_prior("HalfNormal", sigma=1.0)
    counts = [(12.0, 5.0)]
    base = exact.log_ml_group(tp, sp, counts)
    fine = exact.log_ml_group(tp, sp, counts, n_tilt=401, n_log_spread=301, n_nodes=40)
    wide = exact.log_ml_group(
        tp, sp, counts, tilt_range=(-12.0, 13.0), log_spread_range=(-35.0, 3.0), n_tilt=401, n_log_spread=301
    )
    assert abs(base - fine) < 1e-6
    assert abs(base - wide) < 1e-6
    # An independent, cruder method: average the likelihood over draws from the prior.
    rng = np.random.default_rng(0)
    n = 1_000_000
    eta = tp.rvs(n, random_state=rng) + sp.rvs(n, random_state=rng) * rng.standard_normal(n)
    loglik = 12.0 * exact.log_sigmoid(eta) + 5.0 * exact.log_sigmoid(-eta)
    m = loglik.max()
    mc = m + np.log(np.mean(np.exp(loglik - m)))
    assert abs(base - mc) < 0.01
    # No data, no evidence.
    assert exact.log_ml_group(tp, sp, []) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_overdispersed_quadrature_is_converged_and_agrees_with_prior_monte_carlo():
    tp, sp = exact.pymc_prior("Normal", mu=1.0, sigma=0.75), exact.pymc_prior("HalfNormal", sigma=0.5)
    cp = exact.pymc_prior(DEFAULT_CONCENTRATION[0], **DEFAULT_CONCENTRATION[1])
    cells = [[[(12.0, 5.0)]]]
    base = exact.log_ml_polya([tp], [sp], cp, cells)
    fine = exact.log_ml_polya([tp], [sp], cp, cells, n_tilt=181, n_log_spread=151, n_log_phi=91, eta_step=0.005)
    assert abs(base - fine) < 1e-6
    rng = np.random.default_rng(1)
    n = 1_000_000
    eta = tp.rvs(n, random_state=rng) + sp.rvs(n, random_state=rng) * rng.standard_normal(n)
    loglik = exact.log_polya(eta, cp.rvs(n, random_state=rng), 12.0, 5.0)
    m = loglik.max()
    assert abs(base - (m + np.log(np.mean(np.exp(loglik - m))))) < 0.01
    # A concentration pinned far out is the plain model.
    huge = exact.pymc_prior("LogNormal", mu=float(np.log(1e7)), sigma=0.01)
    assert exact.log_ml_polya([tp], [sp], huge, cells) == pytest.approx(
        exact.log_ml_group(tp, sp, [(12.0, 5.0)]), abs=1e-4
    )


def test_counts_are_tallied_as_the_toolkit_tallies_them(tmp_path):
    """The exact side's weighted counts equal the toolkit's cell sums (per group and domain)."""
    for case in CASES.values():
        study = load_study(write_study(case, tmp_path / case.name))
        cells = cell_data(load_observations(study).table, study)
        mine = weighted_counts(case)
        for gi, g in enumerate(case.groups):
            theirs = []
            for di, _ in enumerate(case.domains):
                sel = (cells.group == gi) & (cells.domain == di)
                if sel.any():
                    theirs.append((cells.w_coop[sel].sum(), cells.w_conf[sel].sum()))
            np.testing.assert_allclose(np.array(theirs), np.array(mine[g]), rtol=1e-12)


# --- the toolkit against the quadrature ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_NAMES)
def test_fits_pass_the_convergence_gate(case, request):
    r: Result = request.getfixturevalue(case)
    failed = {h: probs for h, (ok, probs) in r.converged.items() if not ok}
    assert not failed, f"{case}: {failed}"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_NAMES)
def test_log_marginal_likelihood_within_tenth_of_a_nat_of_quadrature(case, request):
    r: Result = request.getfixturevalue(case)
    err = np.abs(r.log_ml - r.exact_log_ml)
    assert np.all(err < LOG_ML_TOL), _report(r)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_NAMES)
def test_bridge_standard_error_is_small_and_honest(case, request):
    r: Result = request.getfixturevalue(case)
    assert np.all(np.isfinite(r.se)) and np.all(r.se > 0), _report(r)
    assert np.all(r.se < SE_MAX), _report(r)
    err = np.abs(r.log_ml - r.exact_log_ml)
    assert np.all(err < SE_MULTIPLE * r.se + SE_SLACK), _report(r)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_NAMES)
def test_posterior_probabilities_within_two_points_of_quadrature(case, request):
    r: Result = request.getfixturevalue(case)
    assert r.prob.sum() == pytest.approx(1.0)
    assert np.all(np.abs(r.prob - r.exact_prob) < PROB_TOL), _report(r)
    # The cases are chosen to be informative: no hypothesis is certain or negligible.
    assert np.all((r.exact_prob > 0.03) & (r.exact_prob < 0.97)), _report(r)


def _gaussian_draws(rng: np.random.Generator, chains: int, draws: int, dim: int) -> np.ndarray:
    return rng.standard_normal((chains, draws, dim))


def _standard_normal_log_density(x: np.ndarray) -> np.ndarray:
    # Unnormalised N(0, I): the exact log marginal likelihood is (dim / 2) log(2 pi).
    return -0.5 * (x**2).sum(axis=1)


def test_bridge_on_a_gaussian_posterior_is_exact_and_passes_the_check():
    from forecast.stats.bridge import bridge_problem

    dim = 3
    result = bridge_sampling(
        _standard_normal_log_density, _gaussian_draws(np.random.default_rng(5), 4, 1000, dim), np.random.default_rng(6)
    )
    assert result.log_ml == pytest.approx(0.5 * dim * np.log(2 * np.pi), abs=3 * result.se + 1e-3)
    assert bridge_problem(result) is None


def test_bridge_with_fewer_draws_than_dimensions_is_flagged_not_trusted():
    from forecast.stats.bridge import BRIDGE_SE_MAX, bridge_problem

    # The proposal's covariance comes from 2 x 20 draws in 60 dimensions: rank-deficient, so
    # the proposal misses the posterior and the estimate's error cannot be vouched for.
    result = bridge_sampling(
        _standard_normal_log_density, _gaussian_draws(np.random.default_rng(7), 2, 40, 60), np.random.default_rng(8)
    )
    assert not result.se <= BRIDGE_SE_MAX
    assert "use more --draws" in bridge_problem(result)


def test_bridge_takes_known_standard_normal_coordinates_exactly():
    from forecast.stats.bridge import bridge_problem

    # 3 coordinates to fit, 57 the model declares standard normal (unused sampler coordinates):
    # the proposal is then fitted in 3 dimensions only, so 2 x 40 draws are enough.
    dim, fitted = 60, 3
    draws = _gaussian_draws(np.random.default_rng(9), 2, 80, dim)
    exact = np.arange(dim) >= fitted
    result = bridge_sampling(_standard_normal_log_density, draws, np.random.default_rng(10), standard_normal=exact)
    assert result.log_ml == pytest.approx(0.5 * dim * np.log(2 * np.pi), abs=max(3 * result.se, 0.02))
    assert bridge_problem(result) is None
    naive = bridge_sampling(_standard_normal_log_density, draws, np.random.default_rng(10))
    assert bridge_problem(naive) is not None


@pytest.mark.slow
def test_overdispersed_loo_of_one_cell_matches_exact_leave_one_out(one_cell_overdispersed):
    """Non-factorised LOO: an event's elpd is log p(y_i | y_-i) = log p(y) - log p(y_-i), both
    by quadrature (the cell without one cooperative, or one conflictual, event)."""
    r: Result = one_cell_overdispersed
    case = r.case
    cp = exact.pymc_prior(case.concentration[0], **case.concentration[1])
    (a, b) = weighted_cell_counts(case)["urn"][0][0]
    for k, hid in enumerate(r.hypotheses):
        priors = case.hypotheses[hid][1]
        tp, sp = group_prior(priors, "tilt", "urn"), group_prior(priors, "spread", "urn")

        def log_ml(a_, b_, tp=tp, sp=sp):
            return exact.log_ml_polya([tp], [sp], cp, [[[(a_, b_)]]])

        coop = r.exact_log_ml[k] - log_ml(a - 1.0, b)
        conf = r.exact_log_ml[k] - log_ml(a, b - 1.0)
        expected = a * coop + b * conf
        got = r.loo[hid]
        assert got.pareto_k_max < 0.7
        assert got.elpd == pytest.approx(expected, abs=0.1), (hid, got.elpd, expected)
