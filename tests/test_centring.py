"""The data-dependent parameterisation: which elements are centred, and that the rule is the
documented one (Fisher information x prior median scale^2 >= CENTRE_AT). That centred fits
meet exact answers is checked in test_marginal_exact (case ``strong_data_centred``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from forecast.cells import CellData, cell_data
from forecast.model import CENTRE_AT, centring, information, study_centring
from forecast.observations import load_observations
from forecast.study import load_study
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


def test_a_walk_step_needs_information_at_both_of_its_quarters():
    study = load_study(DEFAULT_STUDY)
    h = study.hypotheses[0]
    one_side = cells_of([(0, 0, 10, 1e6, 1e6)])
    both = cells_of([(0, 0, 10, 1e6, 1e6), (0, 3, 11, 1e6, 1e6)])
    assert not centring(study, one_side, h).any_steps
    steps = centring(study, both, h).steps
    assert steps.sum() == 1 and steps[0, 10]  # the step from quarter 10 to 11


def test_a_study_without_a_random_walk_centres_no_steps():
    study = load_study(DEFAULT_STUDY)
    static = replace(study, time=replace(study.time, components=("trend",)))
    both = cells_of([(0, 0, 10, 1e6, 1e6), (0, 3, 11, 1e6, 1e6)])
    assert not centring(static, both, static.hypotheses[0]).any_steps
