"""The data-dependent parameterisation: which elements are centred, and that the rule is the
documented one (Fisher information x prior median scale^2 >= CENTRE_AT). That centred fits
meet exact answers is checked in test_marginal_exact (case ``strong_data_centred``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytensor
import pytest

from forecast.data.cells import CellData, cell_data
from forecast.data.observations import load_observations
from forecast.model.build import CENTRE_AT, WALK_LEVELS_AT, Centring, centring, information, study_centring
from forecast.spec.study import load_study
from tests.helpers import DEFAULT_STUDY


def cells_of(rows: list[tuple[int, int, int, float, float]]) -> CellData:
    """CellData from (group, domain, quarter, cooperative weight, conflictual weight) rows."""
    a = np.array(rows, dtype=float)
    empty = np.zeros(0)
    return CellData(
        group=a[:, 0].astype(int),
        domain=a[:, 1].astype(int),
        quarter=a[:, 2].astype(int),
        w_coop=a[:, 3],
        w_conf=a[:, 4],
        n_events=(a[:, 3] + a[:, 4]).astype(int),
        pattern_cell=empty.astype(int),
        pattern_coop=empty.astype(bool),
        pattern_weight=empty,
        pattern_count=empty,
        event_pattern=empty.astype(int),
    )


def test_default_study_keeps_the_plain_non_centred_model():
    study = load_study(DEFAULT_STUDY)
    cells = cell_data(load_observations(study).table, study)
    c = study_centring(study, cells)
    assert not c.any_domain and not c.any_steps


def test_information_is_weight_times_binomial_variance_summed_per_domain_and_quarter():
    study = load_study(DEFAULT_STUDY)
    cells = cells_of([(0, 1, 3, 30.0, 10.0), (0, 1, 4, 5.0, 5.0), (2, 0, 3, 0.0, 4.0)])
    per_domain, per_quarter = information(study, cells)
    p1, p2, p3 = 30.5 / 41, 5.5 / 11, 0.5 / 5
    assert np.isclose(per_domain[0, 1], 40 * p1 * (1 - p1) + 10 * p2 * (1 - p2))
    assert np.isclose(per_domain[2, 0], 4 * p3 * (1 - p3))
    assert np.isclose(per_quarter[0, 3], 40 * p1 * (1 - p1)) and np.isclose(per_quarter[0, 4], 10 * p2 * (1 - p2))
    assert per_domain.sum() == per_quarter.sum()


def test_a_domain_is_centred_once_its_information_outweighs_the_prior_scale():
    study = load_study(DEFAULT_STUDY)
    h = study.hypotheses[0]
    spread = float(h.priors[("spread", study.groups[1].id)].ppf(0.5))
    # Information per unit weight at a 50/50 share is ~0.25: choose weights either side of the rule.
    needed = CENTRE_AT / spread**2 / 0.25
    light = cells_of([(1, 2, 10, 0.45 * needed, 0.45 * needed)])
    heavy = cells_of([(1, 2, 10, 0.55 * needed, 0.55 * needed)])
    assert not centring(study, light, h).any_domain
    c = centring(study, heavy, h)
    assert c.domain.sum() == 1 and c.domain[1, 2]


def test_a_walk_is_sampled_in_levels_once_its_median_quarter_outweighs_the_volatility_prior():
    study = load_study(DEFAULT_STUDY)
    h = study.hypotheses[0]
    vol = float(h.priors[("volatility", study.groups[0].id)].ppf(0.5))
    n_q = study.time.n_quarters
    needed = WALK_LEVELS_AT / vol**2 / 0.25  # weight per quarter at a 50% cooperative share
    half = [(0, 0, t, 0.55 * needed, 0.55 * needed) for t in range(n_q // 2 - 1)]
    most = [(0, 0, t, 0.55 * needed, 0.55 * needed) for t in range(n_q // 2 + 1)]
    light = [(0, 0, t, 0.45 * needed, 0.45 * needed) for t in range(n_q)]
    assert not centring(study, cells_of(half), h).any_steps  # the median quarter has no data
    assert not centring(study, cells_of(light), h).any_steps
    steps = centring(study, cells_of(most), h).steps
    assert steps[0].all() and not steps[1:].any()  # the whole walk of group 0, no other group


def test_a_study_without_a_random_walk_centres_no_steps():
    study = load_study(DEFAULT_STUDY)
    static = replace(study, time=replace(study.time, components=("trend",)))
    both = cells_of([(0, 0, 10, 1e6, 1e6), (0, 3, 11, 1e6, 1e6)])
    assert not centring(static, both, static.hypotheses[0]).any_steps


@pytest.mark.slow
def test_walk_in_levels_and_centred_domains_are_an_exact_change_of_variables(tmp_path):
    """Both forms are one model: at corresponding points the log densities differ exactly by
    the log Jacobian of the map between their coordinates (and by the unused variables'
    standard normal densities), so posteriors and marginal likelihoods agree."""
    from scipy.stats import norm

    from forecast.model.build import (
        DOMAIN_EFFECT,
        RW_STEPS,
        build_model,
        family_signature,
        prior_values,
        years_from_reference,
        zero_sum_basis,
    )
    from tests.helpers import event, write_mini

    rows = [event(1, counterpart="us"), event(2, counterpart="russia", domain="energy", event_date="2021-05-02")]
    study = load_study(write_mini(tmp_path, rows)[0])
    cells = cell_data(load_observations(study).table, study)
    h = study.hypotheses[0]
    sig = family_signature(study, h)
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    ref = study.time.reference - study.time.start
    everything = Centring(domain=np.ones((n_g, n_d), bool), steps=np.ones((n_g, n_q - 1), bool))
    nothing = Centring(domain=np.zeros((n_g, n_d), bool), steps=np.zeros((n_g, n_q - 1), bool))
    plain = build_model(study, cells, sig, prior_values(study, h), centred=nothing)
    levels = build_model(study, cells, sig, prior_values(study, h), centred=everything)

    rng = np.random.default_rng(11)
    tilt, trend = rng.normal(0, 1, n_g), rng.normal(0, 0.1, n_g)
    spread, vol = rng.uniform(0.3, 1.2, n_g), rng.uniform(0.05, 0.4, n_g)
    z, rw_z = rng.normal(size=(n_g, n_d)), rng.normal(size=(n_g, n_q - 1))
    hyper = {"tilt__Normal": tilt, "trend__Normal": trend}
    hyper |= {"spread__HalfNormal_log__": np.log(spread), "volatility__HalfNormal_log__": np.log(vol)}
    plain_point = {**hyper, DOMAIN_EFFECT: z, RW_STEPS: rw_z}

    a = tilt[:, None] + spread[:, None] * z
    walk = np.concatenate([np.zeros((n_g, 1)), np.cumsum(rw_z, axis=1)], axis=1)
    w = trend[:, None] * years_from_reference(study) + vol[:, None] * (walk - walk[:, ref : ref + 1])
    dev = w - w.mean(axis=1, keepdims=True)
    unused_d, unused_w = rng.normal(size=(n_g, n_d)), rng.normal(size=(n_g, n_q - 1))
    levels_point = {
        **hyper,
        f"{DOMAIN_EFFECT}_nc": unused_d,
        f"{DOMAIN_EFFECT}_c": a - dev[:, ref : ref + 1],
        f"{RW_STEPS}_nc": unused_w,
        f"{RW_STEPS}_levels": dev @ zero_sum_basis(n_q),
    }
    basis = zero_sum_basis(n_q)
    to_levels = np.delete(np.eye(n_q) - np.eye(n_q)[ref], ref, axis=0) @ basis
    expected = (
        plain.compile_logp()(plain_point)
        - n_d * np.log(spread).sum()
        - (n_q - 1) * np.log(vol).sum()
        + n_g * np.linalg.slogdet(to_levels)[1]
        + norm.logpdf(unused_d).sum()
        + norm.logpdf(unused_w).sum()
    )
    assert levels.compile_logp()(levels_point) == pytest.approx(expected, abs=1e-8)
    # and the stored layout is the same: the Deterministics give back z and rw_z
    outputs = levels.replace_rvs_by_values([levels[DOMAIN_EFFECT], levels[RW_STEPS]])
    got = pytensor.function(levels.value_vars, outputs, on_unused_input="ignore")(
        *(levels_point[v.name] for v in levels.value_vars)
    )
    np.testing.assert_allclose(got[0], z, atol=1e-10)
    np.testing.assert_allclose(got[1], rw_z, atol=1e-10)


@pytest.mark.slow
def test_the_unused_coordinates_are_exactly_the_standard_normal_ones(tmp_path, monkeypatch):
    """The bridge sampler takes the coordinates ``standard_normal_coordinates`` marks as exact
    N(0, 1) factors of the posterior: moving one changes the log density by its standard normal
    density alone, and every other coordinate enters the model otherwise."""
    from forecast.fit import sampler as inference
    from forecast.fit.sampler import StudyModel
    from tests.helpers import event, write_mini

    rows = [event(1, counterpart="us"), event(2, counterpart="russia", domain="energy", event_date="2021-05-02")]
    study = load_study(write_mini(tmp_path, rows)[0])
    cells = cell_data(load_observations(study).table, study)
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    model = StudyModel(study, cells, centre_at=0.0)  # compiled with both coordinates everywhere
    rng = np.random.default_rng(5)
    # A hypothesis that centres some domains and walks in levels for some groups only.
    domain = np.zeros((n_g, n_d), dtype=bool)
    domain[0, 0] = domain[-1, -1] = True
    steps = np.zeros((n_g, n_q - 1), dtype=bool)
    steps[0] = True
    mixed = Centring(domain=domain, steps=steps)
    assert mixed.domain.any() and not mixed.domain.all() and mixed.steps.any() and not mixed.steps.all()
    monkeypatch.setattr(inference, "centring", lambda *args, **kwargs: mixed)
    h = study.hypotheses[0]
    exact = model.standard_normal_coordinates(h)
    logp = model.log_posterior(h)

    x = rng.normal(0.0, 0.3, size=(1, exact.size))
    base = logp(x)[0]
    step = 0.7
    standard_like = np.zeros(exact.size, dtype=bool)
    for j in range(exact.size):
        moved = x.copy()
        moved[0, j] += step
        change = logp(moved)[0] - base
        standard_normal_change = -0.5 * (moved[0, j] ** 2 - x[0, j] ** 2)
        if exact[j]:
            assert change == pytest.approx(standard_normal_change, abs=1e-9), j
        standard_like[j] = change == pytest.approx(standard_normal_change, abs=1e-9)
    # one unused coordinate per element that has both: a domain effect and a walk step each
    assert exact.sum() == n_g * n_d + n_g * (n_q - 1)
    # Not every coordinate is standard normal: the hyperparameters and the centred (levels)
    # coordinates in use are not. (A used non-centred coordinate that no data reach is, exactly.)
    n_hyper = 4 * n_g
    n_centred_in_use = int(domain.sum() + steps.sum())
    assert (~standard_like[~exact]).sum() >= n_hyper + n_centred_in_use
