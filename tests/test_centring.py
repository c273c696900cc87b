"""The data-dependent parameterisation: which elements are centred, and that the rule is the
documented one (Fisher information x prior median scale^2 >= CENTRE_AT); that every form is an
exact change of variables of the one model (same log density up to the log Jacobian of the map,
hence the same posterior and marginal likelihood). That centred fits meet exact answers is
checked in test_marginal_exact (case ``strong_data_centred``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytensor
import pytest

from forecast.data.cells import CellData, cell_data
from forecast.data.observations import load_observations
from forecast.model.build import (
    CENTRE_AT,
    CENTRE_WITHIN_AT,
    LEADING_MODE_AT,
    LEADING_MODE_QUANTILE,
    WALK_LEVELS_AT,
    WALK_MODES_AT,
    Centring,
    centring,
    information,
    study_centring,
    time_weights,
    walk_modes,
)
from forecast.spec.study import load_study
from tests.helpers import DEFAULT_STUDY, event, write_mini


def two_event_study(tmp_path) -> tuple:
    """The helpers' mini study (two groups, two domains, 2020Q1..2021Q4) with two events, with us in
    2020 and with russia on energy in 2021; returns the loaded study and its cells."""
    rows = [event(1, counterpart="us"), event(2, counterpart="russia", domain="energy", event_date="2021-05-02")]
    study = load_study(write_mini(tmp_path, rows)[0])
    return study, cell_data(load_observations(study).table, study)


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


def test_once_one_domain_is_centred_the_others_are_centred_from_a_lower_threshold():
    study = load_study(DEFAULT_STUDY)
    h = study.hypotheses[0]
    spread = float(h.priors[("spread", study.groups[1].id)].ppf(0.5))
    unit = 1.0 / spread**2 / 0.25  # weight at a 50% share that gives information x spread^2 = 1
    within = (1, 0, 10, 0.6 * CENTRE_WITHIN_AT * unit, 0.6 * CENTRE_WITHIN_AT * unit)
    below = (1, 1, 10, 0.4 * CENTRE_WITHIN_AT * unit, 0.4 * CENTRE_WITHIN_AT * unit)
    strong = (1, 2, 10, 0.6 * CENTRE_AT * unit, 0.6 * CENTRE_AT * unit)
    assert not centring(study, cells_of([within, below]), h).any_domain  # nothing strong: the plain model
    c = centring(study, cells_of([within, below, strong]), h)
    assert c.domain[1].tolist()[:3] == [True, False, True] and c.domain.sum() == 2


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

    study, cells = two_event_study(tmp_path)
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
    hyper = {"trend__Normal": trend}
    hyper |= {"spread__HalfNormal_log__": np.log(spread), "volatility__HalfNormal_log__": np.log(vol)}
    plain_point = {**hyper, "tilt__Normal": tilt, DOMAIN_EFFECT: z, RW_STEPS: rw_z}

    a = tilt[:, None] + spread[:, None] * z
    walk = np.concatenate([np.zeros((n_g, 1)), np.cumsum(rw_z, axis=1)], axis=1)
    w = trend[:, None] * years_from_reference(study) + vol[:, None] * (walk - walk[:, ref : ref + 1])
    dev = w - w.mean(axis=1, keepdims=True)
    unused_d, unused_w, unused_t = rng.normal(size=(n_g, n_d)), rng.normal(size=(n_g, n_q - 1)), rng.normal(size=n_g)
    levels_point = {
        **hyper,
        f"{DOMAIN_EFFECT}_nc": unused_d,
        f"{DOMAIN_EFFECT}_c": a - dev[:, ref : ref + 1],
        f"{RW_STEPS}_nc": unused_w,
        f"{RW_STEPS}_levels": dev @ zero_sum_basis(n_q),
        # every group's tilt is derived from its (all centred) domains: tilt = mean(a) + spread * offset / sqrt(D)
        "tilt_free": unused_t,
        "tilt_offset": (tilt - a.mean(axis=1)) * np.sqrt(n_d) / spread,
    }
    basis = zero_sum_basis(n_q)
    to_levels = np.delete(np.eye(n_q) - np.eye(n_q)[ref], ref, axis=0) @ basis
    expected = (
        plain.compile_logp()(plain_point)
        + ((1 - n_d) * np.log(spread) - 0.5 * np.log(n_d)).sum()  # (offset, x) -> (tilt, z)
        - (n_q - 1) * np.log(vol).sum()
        + n_g * np.linalg.slogdet(to_levels)[1]
        + norm.logpdf(unused_d).sum()
        + norm.logpdf(unused_w).sum()
        + norm.logpdf(unused_t).sum()
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

    study, cells = two_event_study(tmp_path)
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
    # one unused coordinate per element that has both: a domain effect, a walk step, a group's
    # tilt (its own coordinate where derived from centred domains, else the derivation's offset)
    assert exact.sum() == n_g * n_d + n_g * (n_q - 1) + n_g
    # Not every coordinate is standard normal: the hyperparameters and the centred (levels)
    # coordinates in use are not. (A used non-centred coordinate that no data reach is, exactly.)
    n_hyper = 4 * n_g
    n_centred_in_use = int(domain.sum() + steps.sum())
    assert (~standard_like[~exact]).sum() >= n_hyper + n_centred_in_use


def walk_modes_of(study, rows) -> np.ndarray:
    """Group 0's walk's information about its modes, most informed first, for these rows."""
    _, per_quarter = information(study, cells_of(rows))
    return walk_modes(
        per_quarter, study.time.reference - study.time.start, np.zeros(len(study.groups), bool)
    ).information[0]


def test_a_walk_between_increments_and_levels_is_sampled_in_its_modes_and_a_weaker_one_in_its_leading_modes():
    study = load_study(DEFAULT_STUDY)
    h = study.hypotheses[0]
    vol = float(h.priors[("volatility", study.groups[0].id)].ppf(0.5))
    n_q = study.time.n_quarters

    def rows(factor: float) -> list:  # every quarter of group 0 at ``factor`` times the rule (50% shares)
        weight = factor * WALK_MODES_AT / vol**2 / 0.25
        return [(0, 0, t, weight / 2, weight / 2) for t in range(n_q)]

    # well below WALK_MODES_AT: the leading modes only (the others stay plain increments), the
    # more of them the more data
    c = centring(study, cells_of(rows(0.03)), h)
    kept = c.walk.information[0] > 0
    assert c.modes[0] and not c.modes[1:].any() and not c.any_steps
    assert 1 <= kept.sum() < kept.size // 2 and not c.walk.information[1:].any()
    assert not kept[np.argmin(kept) :].any()  # the most informed first
    high = float(h.priors[("volatility", study.groups[0].id)].ppf(LEADING_MODE_QUANTILE))
    np.testing.assert_array_equal(kept, walk_modes_of(study, rows(0.03)) * high**2 >= LEADING_MODE_AT)
    assert c.walk.drift[0] > 0 and not c.walk.drift[1:].any()  # its modes carry the trend's drift
    assert (centring(study, cells_of(rows(0.01)), h).walk.information[0] > 0).sum() < kept.sum()
    c = centring(study, cells_of(rows(1.1)), h)
    assert c.modes[0] and not c.modes[1:].any() and not c.any_steps
    assert (c.walk.information[0] > 0).sum() > kept.sum()
    # levels take over from the modes at WALK_LEVELS_AT
    c = centring(study, cells_of(rows(1.1 * WALK_LEVELS_AT / WALK_MODES_AT)), h)
    assert c.any_steps and not c.any_modes


def test_a_centred_domain_averages_its_quarters_by_their_information():
    info = np.zeros((2, 2, 4))
    info[0, 0] = [0.0, 3.0, 1.0, 0.0]  # one domain with data in two quarters
    weights = time_weights(info, levels=np.array([False, True]))
    np.testing.assert_allclose(weights[0, 0], [0.0, 0.75, 0.25, 0.0])
    np.testing.assert_allclose(weights[0, 1], 0.25)  # no data: the plain mean
    np.testing.assert_allclose(weights[1], 0.25)  # a walk in levels: the plain mean
    np.testing.assert_allclose(weights.sum(axis=2), 1.0)


def test_the_walks_modes_diagonalise_the_datas_information_about_its_increments():
    rng = np.random.default_rng(3)
    per_quarter = rng.uniform(0.0, 50.0, size=(2, 7))
    ref = 2
    modes = walk_modes(per_quarter, ref, drift=np.array([True, False]))
    to_walk = (np.arange(7)[:, None] > np.arange(6)[None, :]).astype(float) - (np.arange(6) < ref)[None, :]
    for g in range(2):
        # information about the walk relative to its information-weighted mean
        info, total = per_quarter[g], per_quarter[g].sum()
        k = to_walk.T @ (np.diag(info) - np.outer(info, info) / total) @ to_walk
        u = modes.basis[g]
        np.testing.assert_allclose(u.T @ u, np.eye(6), atol=1e-10)
        np.testing.assert_allclose(u @ np.diag(modes.information[g]) @ u.T, k, atol=1e-8 * np.abs(k).max())
        # the mean increment's information (1' K 1 / n), for the group whose modes carry the drift
        assert modes.drift[g] == (pytest.approx(k.sum() / 6) if g == 0 else 0.0)


def _mixed_point(study, centred, rng):
    """A point of the plain model and the same point in the coordinates of ``centred``, with the
    log Jacobian of the map and the unused coordinates' standard normal log density."""
    from scipy.stats import norm

    from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, years_from_reference, zero_sum_basis

    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    ref = study.time.reference - study.time.start
    tilt, trend = rng.normal(0, 1, n_g), rng.normal(0, 0.1, n_g)
    spread, vol = rng.uniform(0.3, 1.2, n_g), rng.uniform(0.05, 0.4, n_g)
    z, rw_z = rng.normal(size=(n_g, n_d)), rng.normal(size=(n_g, n_q - 1))
    hyper = {"trend__Normal": trend}
    hyper |= {"spread__HalfNormal_log__": np.log(spread), "volatility__HalfNormal_log__": np.log(vol)}
    plain = {**hyper, "tilt__Normal": tilt, DOMAIN_EFFECT: z, RW_STEPS: rw_z}

    walk = np.concatenate([np.zeros((n_g, 1)), np.cumsum(rw_z, axis=1)], axis=1)
    b = trend[:, None] * years_from_reference(study) + vol[:, None] * (walk - walk[:, ref : ref + 1])
    a = tilt[:, None] + spread[:, None] * z
    use = centred.domain
    k = use.sum(axis=1)
    log_jacobian, unused = 0.0, []
    point = dict(hyper)
    # domains and tilt
    nc, c = rng.normal(size=(n_g, n_d)), rng.normal(size=(n_g, n_d))
    x = a + (centred.time_weights(n_q) * b[:, None, :]).sum(axis=2)
    point[f"{DOMAIN_EFFECT}_nc"] = np.where(use, nc, z)
    point[f"{DOMAIN_EFFECT}_c"] = np.where(use, x, c)
    unused += [nc[use], c[~use]]
    free, offset = rng.normal(size=n_g), rng.normal(size=n_g)
    anchored = k > 0
    mean_a = np.where(use, a, 0.0).sum(axis=1) / np.maximum(k, 1)
    point["tilt_free"] = np.where(anchored, free, tilt)
    point["tilt_offset"] = np.where(anchored, (tilt - mean_a) * np.sqrt(np.maximum(k, 1)) / spread, offset)
    unused += [free[anchored], offset[~anchored]]
    log_jacobian += (((1 - k) * np.log(spread) - 0.5 * np.log(np.maximum(k, 1)))[anchored]).sum()
    # walks: levels or modes
    levels = centred.steps[:, 0]
    basis = zero_sum_basis(n_q)
    dev = b - b.mean(axis=1, keepdims=True)
    lv, md = rng.normal(size=(n_g, n_q - 1)), rng.normal(size=(n_g, n_q - 1))
    to_levels = np.delete(np.eye(n_q) - np.eye(n_q)[ref], ref, axis=0) @ basis
    point[f"{RW_STEPS}_levels"] = np.where(levels[:, None], dev @ basis, lv)
    log_jacobian += (levels * (np.linalg.slogdet(to_levels)[1] - (n_q - 1) * np.log(vol))).sum()
    modes = centred.walk
    factor = 1.0 / np.sqrt(1.0 + vol[:, None] ** 2 * modes.information)
    share = vol**2 * modes.drift / (1.0 + vol**2 * modes.drift)
    in_modes = np.einsum("gij,gi->gj", modes.basis, rw_z + (share * trend / 4.0 / vol)[:, None]) / factor
    coordinate = np.einsum("gij,gj->gi", modes.basis, in_modes)
    point[f"{RW_STEPS}_modes"] = np.where(levels[:, None], md, coordinate)
    log_jacobian += (np.log(factor).sum(axis=1) * ~levels).sum()
    unused += [md[levels], lv[~levels]]
    return plain, point, log_jacobian + sum(norm.logpdf(u).sum() for u in unused)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["one_dominant_domain", "all_centred"])
def test_derived_tilt_time_weighted_domains_and_walk_modes_are_an_exact_change_of_variables(tmp_path, layout):
    """The parameterisations for strong data (a group's tilt derived from its centred domains,
    a centred domain as an information-weighted average over its quarters, a walk in its
    modes with the trend's drift in them, beside walks in levels and non-centred domains) are
    one model: at corresponding points the log density differs from the plain model's exactly
    by the log Jacobian of the map (and the unused coordinates' standard normal densities), so
    posteriors and marginal likelihoods are the same; the stored effects are the plain ones."""
    from forecast.model.build import (
        DOMAIN_EFFECT,
        RW_STEPS,
        build_model,
        family_signature,
        prior_values,
    )

    study, cells = two_event_study(tmp_path)
    h = study.hypotheses[0]
    sig = family_signature(study, h)
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    rng = np.random.default_rng(21)
    info = rng.uniform(0.0, 40.0, size=(n_g, n_d, n_q))
    if layout == "one_dominant_domain":  # west: one centred domain, walk in levels; east: none, walk in modes
        domain, levels = np.array([[True, False], [False, False]]), np.array([True, False])
    else:  # west: every domain centred, walk in modes; east: one centred, walk in levels
        domain, levels = np.array([[True, True], [False, True]]), np.array([False, True])
    centred = Centring(
        domain=domain,
        steps=np.repeat(levels[:, None], n_q - 1, axis=1),
        weights=time_weights(info, levels),
        modes=~levels,
        walk=walk_modes(info.sum(axis=1), study.time.reference - study.time.start, drift=~levels),
    )
    assert centred.any_domain and centred.any_steps and centred.any_modes
    nothing = Centring(domain=np.zeros((n_g, n_d), bool), steps=np.zeros((n_g, n_q - 1), bool))
    plain_model = build_model(study, cells, sig, prior_values(study, h), centred=nothing)
    model = build_model(study, cells, sig, prior_values(study, h), centred=centred)
    plain, point, correction = _mixed_point(study, centred, rng)
    expected = plain_model.compile_logp()(plain) + correction
    assert model.compile_logp()(point) == pytest.approx(expected, abs=1e-8)
    names = [DOMAIN_EFFECT, RW_STEPS, "tilt__Normal"]
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    got = pytensor.function(model.value_vars, outputs, on_unused_input="ignore")(
        *(point[v.name] for v in model.value_vars)
    )
    for name, value in zip(names, got, strict=True):
        np.testing.assert_allclose(value, plain[name], atol=1e-9, err_msg=name)


@pytest.mark.slow
def test_the_unused_coordinates_of_the_strong_data_forms_are_exactly_standard_normal(tmp_path, monkeypatch):
    """As below, with a model that has every strong-data form (tilt derived or free, domains
    centred or not, walks in levels or in modes): ``standard_normal_coordinates`` marks exactly
    one unused coordinate per domain effect, per walk step and per group's tilt."""
    from forecast.fit import sampler as inference
    from forecast.fit.sampler import StudyModel

    study, cells = two_event_study(tmp_path)
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    info = np.random.default_rng(4).uniform(0.0, 40.0, size=(n_g, n_d, n_q))
    levels = np.array([True, False])
    mixed = Centring(
        domain=np.array([[True, False], [False, False]]),
        steps=np.repeat(levels[:, None], n_q - 1, axis=1),
        weights=time_weights(info, levels),
        modes=~levels,
        walk=walk_modes(info.sum(axis=1), study.time.reference - study.time.start, drift=~levels),
    )
    monkeypatch.setattr(inference, "study_centring", lambda *args, **kwargs: mixed)
    monkeypatch.setattr(inference, "centring", lambda *args, **kwargs: mixed)
    model = StudyModel(study, cells)
    h = study.hypotheses[0]
    exact = model.standard_normal_coordinates(h)
    logp = model.log_posterior(h)
    x = np.random.default_rng(5).normal(0.0, 0.3, size=(1, exact.size))
    base = logp(x)[0]
    for j in np.flatnonzero(exact):
        moved = x.copy()
        moved[0, j] += 0.7
        assert logp(moved)[0] - base == pytest.approx(-0.5 * (moved[0, j] ** 2 - x[0, j] ** 2), abs=1e-9), j
    assert exact.sum() == n_g * n_d + n_g * (n_q - 1) + n_g
