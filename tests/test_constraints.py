"""Constraint hypotheses on one encompassing prior (issue 15): schema, Bayes factors, probabilities.

Layers: the pure Bayes-factor arithmetic against closed forms (Normal-mean toy, a tail region by
stepwise conditioning); the schema's checks; regions on draws of the default study's encompassing
prior; and one small fit of a static study against exact posterior and prior masses by
quadrature (slow).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from scipy import stats

from forecast.errors import StudyError
from forecast.spec.study import load_study
from forecast.stats.encompassing import (
    EmptyRegion,
    bayes_factor,
    mass_from_draws,
    posterior_probabilities,
    stepwise_mass,
)
from forecast.workflows.constraints import (
    PriorDraws,
    Regions,
    compare,
    prior_masses,
    prior_masses_in_background,
)

STUDY = "priors/turkey_nato.toml"  # states both prior-specified and constraint hypotheses


# --- the arithmetic, against closed forms ------------------------------------------------------


def _normal_toy(n_obs=8, sigma=1.0, tau=1.0, ybar=0.7):
    """theta ~ N(0, tau^2), ybar ~ N(theta, sigma^2 / n): the posterior of theta (mean, sd)."""
    prec = 1 / tau**2 + n_obs / sigma**2
    return (n_obs * ybar / sigma**2) / prec, math.sqrt(1 / prec)


def test_bayes_factor_of_a_normal_mean_region_equals_the_closed_form():
    m, s = _normal_toy()
    c = 0.5
    rng = np.random.default_rng(1)
    prior = mass_from_draws(rng.standard_normal(40_000) > c)
    posterior = mass_from_draws((m + s * rng.standard_normal((4, 2_000))) > c)
    bf = bayes_factor(prior, posterior)
    exact = math.log(stats.norm.sf(c, m, s) / stats.norm.sf(c))
    assert bf.bound is None
    assert abs(bf.log_bf - exact) < 4 * bf.log_bf_se
    assert bf.log_bf_se < 0.05


def test_a_region_of_tiny_prior_mass_is_estimated_stepwise_not_reported_as_infinite():
    # Prior mass 1 - Phi(4) = 3.2e-5: plain draws would hold about one draw in 40000.
    c, m, s = 4.0, 4.5, 0.3
    rng = np.random.default_rng(2)
    prior = stepwise_mass(lambda u: u[:, 0] - c, 3, rng)
    posterior = mass_from_draws((m + s * rng.standard_normal((4, 2_000))) > c)
    bf = bayes_factor(prior, posterior)
    exact = math.log(stats.norm.sf(c, m, s) / stats.norm.sf(c))
    assert prior.method == "stepwise" and math.isfinite(bf.log_bf)
    assert abs(bf.log_bf - exact) < max(4 * bf.log_bf_se, 0.15)


def test_a_region_without_posterior_draws_gets_an_upper_bound_not_a_zero():
    rng = np.random.default_rng(3)
    prior = mass_from_draws(rng.standard_normal(10_000) > 0)
    posterior = mass_from_draws(np.zeros((4, 1_000), bool))
    bf = bayes_factor(prior, posterior)
    assert bf.bound == "upper" and posterior.upper is not None and 0 < posterior.upper < 0.01
    assert math.isfinite(bf.log_bf)
    p, _, upper = posterior_probabilities(
        [bf, bayes_factor(prior, mass_from_draws(np.ones((4, 1_000))))], np.array([0.5, 0.5]), rng
    )
    assert p[0] == 0 and 0 < upper[0] < 0.02 and p.sum() == pytest.approx(1)


def test_an_empty_region_is_an_error_not_a_zero():
    with pytest.raises(EmptyRegion):
        stepwise_mass(lambda u: -1.0 - u[:, 0] ** 2, 2, np.random.default_rng(4))


# --- the schema --------------------------------------------------------------------------------


def _study(tmp_path, hypotheses: str, extra: str = "") -> str:
    text = open(STUDY, encoding="utf-8").read()
    head = text.split("[[constraint_hypotheses]]")[0]
    head = head.replace('observations = "../data/turkey_nato_events.csv"', 'observations = "events.csv"')
    path = tmp_path / "study.toml"
    path.write_text(head + extra + textwrap.dedent(hypotheses), encoding="utf-8")
    return str(path)


def _problems(tmp_path, constraints: list[str]) -> str:
    listed = ", ".join(repr(c).replace("'", '"') for c in constraints)
    with pytest.raises(StudyError) as e:
        load_study(_study(tmp_path, f'[[constraint_hypotheses]]\nid = "h"\nlabel = "H"\nconstraints = [{listed}]\n'))
    return str(e.value)


def test_the_default_study_states_constraint_versions_of_its_hypotheses_with_equal_priors_and_a_complement():
    s = load_study(STUDY)
    ids = [h.id for h in s.constraints.hypotheses]
    assert ids == ["hedging", "realignment", "alignment", "none_of_these"]
    assert [h.prior_probability for h in s.constraints.hypotheses] == pytest.approx([0.25] * 4)
    assert s.constraints.complement.id == "none_of_these"
    # The same three accounts as the prior-specified hypotheses, kept apart (ids shared for the agreement).
    assert [h.id for h in s.hypotheses] == ids[:3]


def test_every_default_constraint_is_tied_to_the_founding_article_in_a_comment():
    text = open(STUDY, encoding="utf-8").read()
    section = text[text.index("[[constraint_hypotheses]]") :]
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith('"') and ("share(" in line or "change(" in line or "domain_gap(" in line):
            assert lines[i - 1].strip().startswith("#"), f"constraint without its comment: {line.strip()}"


@pytest.mark.parametrize(
    ("constraint", "says"),
    [
        ("shares(nato, after) > 0.5", "did you mean 'share'"),
        ("share(natoo, after) > 0.5", "did you mean 'nato'"),
        ("share(nato, aftr) > 0.5", "did you mean 'after'"),
        ("share(nato, 2030) > 0.5", "not inside the study's time"),
        ("share(nato, after) > 1.2", "can never hold"),
        ("domain_gap(nato, after) >= 0", "always holds"),
        ("share(nato, after) ~ 0.5", "needs 'within"),
        ("share(nato, after, energi) > 0.5", "did you mean 'energy'"),
        ("0.3 > 0.2", "name at least one quantity"),
    ],
)
def test_a_bad_constraint_is_refused_with_what_is_wrong(tmp_path, constraint, says):
    assert says in _problems(tmp_path, [constraint])


def test_constraints_that_cannot_hold_together_are_an_empty_region(tmp_path):
    text = _problems(tmp_path, ["share(nato, after) > 60%", "share(nato, after) < 0.4"])
    assert "cannot hold together" in text and "empty" in text


def _empty_region_study(tmp_path):
    """A study whose one constraint hypothesis no range check finds empty: NATO ahead of Russia by
    more than 50 points and Russia ahead of NATO by more than 50."""
    path = _study(
        tmp_path,
        """
        [[constraint_hypotheses]]
        id = "h"
        label = "H"
        constraints = ["share(nato, after) - share(russia, after) > 0.5", "share(russia, after) - share(nato, after) > 0.5"]
        """,
    )
    return load_study(path)


def test_an_empty_region_no_range_check_sees_is_an_error_when_its_prior_mass_is_estimated(tmp_path):
    s = _empty_region_study(tmp_path)
    with pytest.raises(StudyError, match="empty region"):
        prior_masses(Regions(s, s.constraints), PriorDraws(s, s.constraints.priors), 2_000, np.random.default_rng(5))


# --- regions on draws --------------------------------------------------------------------------


def _as_posterior(study, arrays, chains=4):
    import xarray as xr

    groups = [g.id for g in study.groups]
    n = len(arrays["tilt"]) // chains
    ds = {}
    for p, g in study.slots:
        ds[f"{p}__{g}"] = (("chain", "draw"), arrays[p][: n * chains, groups.index(g)].reshape(chains, n))
    ds["domain_z"] = (
        ("chain", "draw", "group", "domain"),
        arrays["domain_z"][: n * chains].reshape(chains, n, *arrays["domain_z"].shape[1:]),
    )
    ds["rw_z"] = (
        ("chain", "draw", "group", "step"),
        arrays["rw_z"][: n * chains].reshape(chains, n, *arrays["rw_z"].shape[1:]),
    )
    return xr.Dataset(ds)


def test_hypotheses_that_partition_the_space_sum_to_one_with_the_complement(tmp_path):
    path = _study(
        tmp_path,
        """
        [[constraint_hypotheses]]
        id = "russia_ahead"
        label = "Russia ahead"
        constraints = ["share(russia, after) > share(nato, after)"]

        [[constraint_hypotheses]]
        id = "nato_well_ahead"
        label = "NATO well ahead"
        constraints = ["share(nato, after) - share(russia, after) > 10%"]
        """,
    )
    s = load_study(path)
    draws = PriorDraws(s, s.constraints.priors)
    # A stand-in posterior: prior draws tilted towards NATO (any draws will do for the identity).
    arrays = draws.arrays(np.random.default_rng(6).standard_normal((4_000, draws.dim)) + 0.3)
    result = compare(s, s.constraints, _as_posterior(s, arrays), seed=7, n_prior=10_000, factors=())
    probs = [h.posterior_probability for h in result.hypotheses]
    assert sum(probs) == pytest.approx(1.0)
    assert sum(h.prior_mass.value for h in result.hypotheses) == pytest.approx(1.0)
    assert sum(h.posterior_mass.value for h in result.hypotheses) == pytest.approx(1.0)
    assert result.overlaps == []
    assert result.hypotheses[-1].complement


def test_prior_masses_computed_while_the_model_samples_give_the_same_comparison(tmp_path):
    s = load_study(STUDY)
    draws = PriorDraws(s, s.constraints.priors)
    arrays = draws.arrays(np.random.default_rng(10).standard_normal((2_000, draws.dim)) + 0.2)
    posterior = _as_posterior(s, arrays)
    after = compare(s, s.constraints, posterior, seed=11, n_prior=4_000, factors=())
    future = prior_masses_in_background(s, s.constraints, 11, 4_000)
    before = compare(s, s.constraints, posterior, seed=11, n_prior=4_000, factors=(), prior=future)
    assert before == after
    other_seed = compare(s, s.constraints, posterior, seed=12, n_prior=4_000, factors=())
    assert [h.prior_mass for h in other_seed.hypotheses] != [h.prior_mass for h in after.hypotheses]
    with pytest.raises(ValueError, match="seed 11 and 4000 draws given for seed 12"):
        compare(s, s.constraints, posterior, seed=12, n_prior=4_000, factors=(), prior=future)


def test_an_empty_region_found_in_the_background_is_raised_where_the_comparison_needs_it(tmp_path):
    s = _empty_region_study(tmp_path)
    future = prior_masses_in_background(s, s.constraints, 5, 2_000)
    with pytest.raises(StudyError, match="empty region"):
        future.result()


def test_overlapping_hypotheses_are_flagged_with_how_to_separate_them(tmp_path):
    path = _study(
        tmp_path,
        """
        [[constraint_hypotheses]]
        id = "a"
        label = "A"
        constraints = ["share(nato, after) > 0.5"]

        [[constraint_hypotheses]]
        id = "b"
        label = "B"
        constraints = ["share(nato, after) > 0.6"]
        """,
    )
    s = load_study(path)
    draws = PriorDraws(s, s.constraints.priors)
    arrays = draws.arrays(np.random.default_rng(8).standard_normal((2_000, draws.dim)))
    result = compare(s, s.constraints, _as_posterior(s, arrays), seed=9, n_prior=5_000, factors=())
    assert [o["hypotheses"] for o in result.overlaps] == [["a", "b"]]
    assert "exclusive" in result.overlaps[0]["advice"]


def test_the_encompassing_prior_is_weakly_informative_in_share_terms():
    s = load_study(STUDY)
    draws = PriorDraws(s, s.constraints.priors)
    result = compare(
        s,
        s.constraints,
        _as_posterior(s, draws.arrays(np.random.default_rng(10).standard_normal((2_000, draws.dim)))),
        seed=11,
        n_prior=5_000,
        factors=(),
    )
    for lo, mid, hi in result.prior_predictive.values():
        assert lo < 0.2 and 0.4 < mid < 0.6 and hi > 0.8
    # The prior is its own posterior here: every Bayes factor is about 1.
    for h in result.hypotheses:
        assert abs(h.bayes_factor.log_bf) < 5 * h.bayes_factor.log_bf_se + 0.05


# --- one fit against quadrature (slow) ---------------------------------------------------------

STATIC = """
[study]
name = "static_constraint"
question = "Exact constraint masses"
actor = "Testland"
observations = "events.csv"

[time]
step = "quarter"
start = "2020Q1"
end = "2020Q4"
components = []

[[groups]]
id = "partner"
label = "Partner"
counterparts = ["alpha"]

[[domains]]
id = "trade"
label = "Trade"

[encompassing.priors]
tilt.all = {{ dist = "Normal", kwargs = {{ mu = 0.0, sigma = 1.0 }} }}
spread.all = {{ dist = "HalfNormal", kwargs = {{ sigma = 0.5 }} }}

[[constraint_hypotheses]]
id = "mostly_cooperative"
label = "Mostly cooperative"
constraints = ["share(partner, all) > {c}"]
"""


def _exact_masses(a: float, b: float, c: float, tilt_sd: float = 1.0, spread_sd: float = 0.5) -> tuple[float, float]:
    """Prior and posterior P(expit(tilt + spread z) > c) by quadrature over (tilt, log spread, z).

    tilt ~ N(0, 1), spread ~ HalfNormal(0.5), z ~ N(0, 1); the likelihood of a cooperative and b
    conflictual events (unit weights) in the one cell. The trapezoidal rule on wide grids; the
    indicator's edge in z is resolved by a fine z grid.
    """
    from scipy.special import log_expit, logit

    t = np.linspace(-7 * tilt_sd, 7 * tilt_sd, 281)
    z = np.linspace(-8, 8, 3201)
    T, Z = np.meshgrid(t, z, indexing="ij")
    base = stats.norm.logpdf(T) + stats.norm.logpdf(Z)
    prior_in = post_all = post_in = 0.0
    base = stats.norm.logpdf(T, scale=tilt_sd) + stats.norm.logpdf(Z)
    u_grid = np.linspace(-12, math.log(spread_sd * 9), 161)
    for u in u_grid:
        s = math.exp(u)
        eta = T + s * Z
        log_w = base + stats.halfnorm.logpdf(s, scale=spread_sd) + u
        inside = eta > logit(c)
        w_post = np.exp(log_w + a * log_expit(eta) + b * log_expit(-eta))
        prior_in += float((np.exp(log_w) * inside).sum())
        post_all += float(w_post.sum())
        post_in += float((w_post * inside).sum())
    # Normaliser of the prior: the same grid's total (so grid constants cancel).
    prior_total = 0.0
    for u in u_grid:
        prior_total += float(np.exp(base + stats.halfnorm.logpdf(math.exp(u), scale=spread_sd) + u).sum())
    return prior_in / prior_total, post_in / post_all


@pytest.mark.slow
def test_constraint_bayes_factor_equals_exact_masses_on_a_static_model(tmp_path):
    from forecast.settings import SamplerSettings
    from forecast.workflows.constraints import run_constraints

    c, n_coop, n_conf = 0.6, 9, 4
    (tmp_path / "study.toml").write_text(STATIC.format(c=c), encoding="utf-8")
    rows = ["id,event_date,counterpart,domain,outcome,reliability,description,source"]
    for k in range(n_coop + n_conf):
        outcome = "cooperative" if k < n_coop else "conflictual"
        rows.append(f"ev{k:03d},2020-02-14,alpha,trade,{outcome},A1,event {k},test")
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    settings = SamplerSettings(draws=1_000, tune=500, chains=4, cores=2, seed=12)
    result = run_constraints(tmp_path / "study.toml", settings, prior_draws=40_000, factors=())
    h = result.hypotheses[0]
    prior, post = _exact_masses(n_coop, n_conf, c)
    assert abs(h.prior_mass.value - prior) < 4 * h.prior_mass.se
    assert abs(h.posterior_mass.value - post) < 4 * h.posterior_mass.se
    exact = math.log(post / prior)
    assert abs(h.bayes_factor.log_bf - exact) < 4 * h.bayes_factor.log_bf_se


@pytest.mark.slow
def test_a_scaled_encompassing_prior_whose_reweighting_is_unreliable_is_refitted_exactly(tmp_path, monkeypatch):
    # Every scaling is treated as unreliable (threshold below any Pareto k), so each is refitted;
    # the refit's probability must equal the exact one under the scaled prior (quadrature).
    import forecast.workflows.constraints as wc
    from forecast.settings import SamplerSettings

    monkeypatch.setattr(wc, "PARETO_K_MAX", -1.0)
    c, n_coop, n_conf = 0.6, 9, 4
    (tmp_path / "study.toml").write_text(STATIC.format(c=c), encoding="utf-8")
    rows = ["id,event_date,counterpart,domain,outcome,reliability,description,source"]
    for k in range(n_coop + n_conf):
        outcome = "cooperative" if k < n_coop else "conflictual"
        rows.append(f"ev{k:03d},2020-02-14,alpha,trade,{outcome},A1,event {k},test")
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    settings = SamplerSettings(draws=1_000, tune=500, chains=4, cores=2, seed=12)
    result = wc.run_constraints(tmp_path / "study.toml", settings, prior_draws=40_000, factors=(2.0,))
    assert [r.method for r in result.robustness] == ["refit", "refit"]
    for r in result.robustness:
        prior, post = _exact_masses(n_coop, n_conf, c, tilt_sd=r.factor, spread_sd=0.5 * r.factor)
        bf_in, bf_out = post / prior, (1 - post) / (1 - prior)
        exact = bf_in / (bf_in + bf_out)  # equal prior probabilities, the complement included
        assert r.reliable
        assert abs(r.probabilities["mostly_cooperative"] - exact) < 0.03, (r.factor, r.probabilities, exact)


def test_forecast_constraints_without_a_study_compares_the_default_studys_constraint_hypotheses(monkeypatch):
    from click.testing import CliRunner

    import forecast.workflows.constraints as workflow
    from forecast.cli import main

    seen = []

    def record(path, *args, **kwargs):
        seen.append(str(path))
        raise StudyError("stop here")

    monkeypatch.setattr(workflow, "run_constraints", record)
    out = CliRunner().invoke(main, ["constraints", "-q"])
    assert out.exit_code == 2 and seen and seen[0].endswith("priors/turkey_nato.toml")


def test_single_precision_shares_put_the_prior_draws_in_the_same_regions_as_double():
    """``prior_masses`` evaluates the shares of its (double) draws in single precision: on the
    default study not one of 20,000 draws changes region."""
    study = load_study(STUDY)
    spec = study.constraints
    regions, draws = Regions(study, spec), PriorDraws(study, spec.priors)
    arrays = draws.arrays(np.random.default_rng(7).standard_normal((20_000, draws.dim)))
    double = regions.chunk_margins(arrays)
    single = regions.chunk_margins({k: v.astype(np.float32) for k, v in arrays.items()})
    assert {k: v.dtype for k, v in single.items()} == {k: np.dtype(np.float64) for k in double}  # margins in double
    for hid, margin in double.items():
        assert np.array_equal(margin >= 0, single[hid] >= 0), hid
        assert np.max(np.abs(margin - single[hid])) < 1e-5, hid  # rounding only
