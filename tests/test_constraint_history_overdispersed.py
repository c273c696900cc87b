"""`forecast history`'s "what moved it" for constraint hypotheses on an overdispersed study.

With ``[model] overdispersion = "cell"`` an interval's event terms are the cells' Polya changes,
which need each draw's concentration (``forecast.workflows.history.attribution``); without it the
collector gives only the interval's total. The constraint tracker passes, for each region, the
encompassing draws inside it WITH their concentration draws (the same draws, in the same order),
and at the prior point independent draws of the study's concentration prior.

Fast layer: a spy collector on the tracker, fed independent encompassing prior draws dressed as a
posterior whose concentration is the draw's index, so alignment is checked draw by draw. Slow
layer: the tiny constraint-only study of tests/test_constraint_history.py made overdispersed, its
history computed with small fits: per-event contributions that sum to each attributed interval's
change, close to the change of the log Bayes factors.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import write_mini
from test_constraint_history import constraint_study, rows

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit.sampler import SamplerSettings
from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, draws_as_arrays, rv_name
from forecast.spec.study import CONCENTRATION, load_study
from forecast.workflows.constraints import PriorDraws, Regions
from forecast.workflows.history import compute_history
from forecast.workflows.history.attribution import PRIOR_DRAWS_FACTOR, parts_of
from forecast.workflows.history.constraints import MIN_REGION_DRAWS, ConstraintTracker

SMALL = SamplerSettings(draws=1000, tune=500, chains=4, cores=2, seed=5)  # as tests/test_constraint_history.py
TINY = SamplerSettings(draws=100, tune=100, chains=2, cores=1, seed=3)  # never sampled: sizes the prior point
PRIOR_DRAWS = 4_000


def overdispersed_constraint_study(overdispersed: bool = True) -> dict:
    """tests/test_constraint_history.py's constraint-only study, with a Polya cell likelihood."""
    study = constraint_study(prior_specified=False)
    if overdispersed:
        study["model"] = {"overdispersion": "cell"}
    return study


class SpyCollector:
    """Records what the tracker hands the attribution collector."""

    def __init__(self):
        self.calls: dict[tuple[int, str], tuple] = {}

    def draws(self, point, hid, parts, chains, concentration=None):
        self.calls[(point, hid)] = (parts, chains, concentration)

    def without_draws(self, point, hid):
        self.calls[(point, hid)] = None


def as_posterior(study, arrays: dict[str, np.ndarray], chains: int, concentration: np.ndarray | None):
    """Draws laid out as ``draws_as_arrays`` reads them: (chain, draw, ...) variables."""

    def shaped(v: np.ndarray) -> np.ndarray:
        return v.reshape(chains, -1, *v.shape[1:])

    data = {}
    for param in study.parameters:
        for i, g in enumerate(study.groups):
            data[rv_name(param, g.id)] = (("chain", "draw"), shaped(arrays[param][..., i]))
    data[DOMAIN_EFFECT] = (("chain", "draw", "g", "d"), shaped(arrays[DOMAIN_EFFECT]))
    if RW_STEPS in arrays:
        data[RW_STEPS] = (("chain", "draw", "g", "s"), shaped(arrays[RW_STEPS]))
    if concentration is not None:
        data[CONCENTRATION] = (("chain", "draw"), shaped(concentration))
    return xr.Dataset(data)


def tracker_with_spy(tmp_path, overdispersed: bool = True):
    path, _ = write_mini(tmp_path, rows(), overdispersed_constraint_study(overdispersed))
    study = load_study(path)
    obs = load_observations(study)
    spy = SpyCollector()
    tracker = ConstraintTracker(study, cell_data(obs.table, study), TINY, collector=spy, prior_draws=PRIOR_DRAWS)
    return study, tracker, spy


# --- fast: what the tracker hands the collector --------------------------------------------------------


def test_each_region_gets_the_concentration_draws_of_its_own_in_region_draws(tmp_path):
    study, tracker, spy = tracker_with_spy(tmp_path)
    assert study.overdispersed
    chains, n = 2, 600
    rng = np.random.default_rng(11)
    draws = PriorDraws(study, study.constraints.priors)
    arrays = draws.arrays(rng.standard_normal((n, draws.dim)))
    index = np.arange(n, dtype=float)
    posterior = as_posterior(study, arrays, chains, 1.0 + index)  # concentration = 1 + the draw's position
    tracker.run_point(1, 2020 * 4, "2020-03-31", 6, 6, posterior, [])
    flat = draws_as_arrays(posterior, study)
    margins = Regions(study, study.constraints).margins(flat)
    checked = 0
    for hid in tracker.ids:
        inside = margins[hid] >= 0
        call = spy.calls[(1, hid)]
        if inside.sum() < MIN_REGION_DRAWS:
            assert call is None
            continue
        (a, b), chains_arg, phi = call
        assert chains_arg is None
        # the same draws, in the same order: positions of the draws inside the region
        assert np.array_equal(phi - 1.0, index[inside]), hid
        ref_a, ref_b = parts_of({k: v[inside] for k, v in flat.items()}, study)
        assert np.array_equal(a, ref_a) and np.array_equal(b, ref_b)
        checked += 1
    assert checked >= 2


def test_the_prior_point_draws_concentrations_from_the_studys_prior(tmp_path):
    study, tracker, spy = tracker_with_spy(tmp_path)
    tracker.prior_point(2020 * 4 - 1, "2019-12-31")
    n_total = PRIOR_DRAWS_FACTOR * TINY.chains * TINY.draws
    sizes, logs = 0, []
    for hid in tracker.ids:
        (a, _), _, phi = spy.calls[(0, hid)]
        assert phi is not None and phi.shape == (a.shape[0],) and (phi > 0).all()
        sizes += a.shape[0]
        logs.append(np.log(phi))
    assert sizes == n_total  # the regions partition the space: every prior draw is in one of them
    # log concentration ~ Normal(log 20, 1) (the default prior, independent of the regions)
    log_phi = np.concatenate(logs)
    prior = study.concentration.kwargs
    assert log_phi.mean() == pytest.approx(prior["mu"], abs=4 * prior["sigma"] / np.sqrt(n_total))
    assert log_phi.std() == pytest.approx(prior["sigma"], rel=4 / np.sqrt(2 * n_total))


def test_the_prior_points_parameter_draws_do_not_depend_on_overdispersion(tmp_path):
    _, plain, plain_spy = tracker_with_spy(tmp_path / "plain", overdispersed=False)
    _, od, od_spy = tracker_with_spy(tmp_path / "od")
    plain.prior_point(2020 * 4 - 1, "2019-12-31")
    od.prior_point(2020 * 4 - 1, "2019-12-31")
    for hid in plain.ids:
        (a0, b0), _, phi0 = plain_spy.calls[(0, hid)]
        (a1, b1), _, phi1 = od_spy.calls[(0, hid)]
        assert phi0 is None and phi1 is not None
        assert np.array_equal(a0, a1) and np.array_equal(b0, b1)


# --- slow: a history with small fits ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def od_history(tmp_path_factory):
    d = tmp_path_factory.mktemp("odchist")
    path, _ = write_mini(d, rows(), overdispersed_constraint_study())
    study = load_study(path)
    return study, compute_history(study, load_observations(study), settings=SMALL)


@pytest.mark.slow
def test_what_moved_an_overdispersed_constraint_comparison_names_events_and_sums_to_its_change(od_history):
    study, history = od_history
    assert study.overdispersed
    c = history.constraints
    assert [p.source for p in c.points] == ["prior", "fit", "fit", "fit", "fit"]
    moved = c.attribution
    assert moved is not None and moved.hypotheses[0] == c.leader
    fitted = [i for i in moved.intervals if i.change is not None]
    assert fitted and all(i.importance_change is not None for i in fitted), [i.note for i in moved.intervals]
    assert not [i for i in moved.intervals if i.note and "no posterior draws" in i.note]
    attributed = [i for i in fitted if i.attributed]
    assert attributed, [(i.start, i.end, i.note) for i in fitted]
    for i in attributed:
        assert i.top_events  # per-event contributions, not only the interval's total
        assert i.importance_change == pytest.approx(
            sum(e.contribution for e in i.top_events) + (i.other_contribution or 0.0), abs=1e-9
        )
        assert abs(i.agreement_z) < 4
    assert moved.top_events
