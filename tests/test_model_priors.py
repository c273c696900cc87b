"""Priors enter the model as one vector per (parameter, family): each group still gets its own
prior, in group order, and results still name one scalar per slot."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import base_study, event, hypothesis, prior, write_events, write_study

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.model.build import (
    DOMAIN_EFFECT,
    RW_STEPS,
    build_model,
    family_signature,
    prior_values,
    prior_vectors,
    rv_name,
    slots,
    split_prior_vectors,
    years_from_reference,
)
from forecast.model.likelihood import cell_loglik_numpy
from forecast.spec.study import load_study

# Different families and parameters per group, with the StudentT groups not adjacent.
MIXED = {
    "tilt": {
        "west": prior("StudentT", nu=4.0, mu=0.5, sigma=0.7),
        "east": prior("Normal", mu=-1.0, sigma=0.4),
        "south": prior("StudentT", nu=9.0, mu=-0.2, sigma=1.3),
    },
    "spread": {"west": prior("HalfNormal", sigma=0.5), "all": prior("Gamma", alpha=2.0, beta=3.0)},
    "trend": {"all": prior("Normal", mu=0.0, sigma=0.2)},
    "volatility": {"east": prior("Exponential", lam=5.0), "all": prior("HalfNormal", sigma=0.3)},
}


@pytest.fixture
def mixed(tmp_path):
    data = base_study()
    data["groups"].append({"id": "south", "label": "South", "counterparts": ["egypt"]})
    data["hypotheses"] = [hypothesis("mixed", 1.0, MIXED)]
    path = write_study(tmp_path, data)
    rows = [
        event(1, counterpart="us", domain="defence", event_date="2020-02-01"),
        event(2, counterpart="russia", domain="energy", outcome="conflictual", intensity=-3, event_date="2020-08-11"),
        event(3, counterpart="egypt", domain="energy", event_date="2021-05-03", reliability="C3"),
        event(4, counterpart="egypt", domain="defence", outcome="conflictual", intensity=-2, event_date="2021-11-30"),
    ]
    write_events(tmp_path / "events.csv", rows)
    study = load_study(path)
    return study, cell_data(load_observations(study).table, study)


def test_one_vector_per_parameter_and_family(mixed):
    study, _ = mixed
    h = study.hypotheses[0]
    vectors = {(v.param, v.family): v.rows for v in prior_vectors(study, family_signature(study, h))}
    row = {s: k for k, s in enumerate(slots(study))}
    assert vectors[("tilt", "StudentT")] == (row[("tilt", "west")], row[("tilt", "south")])
    assert vectors[("tilt", "Normal")] == (row[("tilt", "east")],)
    assert vectors[("spread", "Gamma")] == (row[("spread", "east")], row[("spread", "south")])
    assert len(vectors) == 7


@pytest.mark.slow
def test_model_log_density_gives_each_group_its_own_prior(mixed):
    """The model's log density at a point equals the sum of each slot's own prior density, the
    standard normal effects and the cell log-likelihood, computed independently."""
    study, cells = mixed
    h = study.hypotheses[0]
    signature = family_signature(study, h)
    model = build_model(study, cells, signature, prior_params=prior_values(study, h))
    rng = np.random.default_rng(7)
    n_g = len(study.groups)
    values = {
        "tilt": rng.normal(0, 1, n_g),
        "spread": rng.uniform(0.2, 1.0, n_g),
        "trend": rng.normal(0, 0.1, n_g),
        "volatility": rng.uniform(0.05, 0.4, n_g),
    }
    z = rng.normal(size=(n_g, len(study.domains)))
    steps = rng.normal(size=(n_g, study.time.n_quarters - 1))
    point = {DOMAIN_EFFECT: z, RW_STEPS: steps}
    for v in prior_vectors(study, signature):
        groups = [g.id for g in study.groups]
        x = values[v.param][[groups.index(slots(study)[r][1]) for r in v.rows]]
        value_var = model.rvs_to_values[model[v.name]]
        transform = model.rvs_to_transforms[model[v.name]]
        point[value_var.name] = x if transform is None else transform.forward(x).eval()
    logp = model.compile_logp(jacobian=False)(point)

    expected = sum(float(h.priors[(p, g.id)].logpdf(values[p][i])) for p in values for i, g in enumerate(study.groups))
    expected += float(np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi)))
    expected += float(np.sum(-0.5 * steps**2 - 0.5 * np.log(2 * np.pi)))
    data = cells.as_model_data()
    expected += cell_loglik_numpy(
        values["tilt"],
        values["spread"],
        z,
        values["trend"],
        values["volatility"],
        steps,
        years_from_reference(study),
        data["cell_index"],
        data["cell_weights"],
        ref=study.time.reference - study.time.start,
    )[0]
    assert logp == pytest.approx(expected, rel=1e-10)


def test_posterior_keeps_one_scalar_per_slot(mixed):
    study, _ = mixed
    signature = family_signature(study, study.hypotheses[0])
    vectors = prior_vectors(study, signature)
    posterior = xr.Dataset(
        {v.name: (("chain", "draw", f"{v.name}_dim_0"), np.full((2, 3, len(v.rows)), 0.0)) for v in vectors}
    )
    for v in vectors:
        posterior[v.name].values[...] = np.array(v.rows, dtype=float)  # each element holds its slot row
    posterior[DOMAIN_EFFECT] = (("chain", "draw", "group", "domain"), np.zeros((2, 3, 3, 2)))
    out = split_prior_vectors(posterior, study, signature)
    assert set(out.data_vars) == {rv_name(*s) for s in slots(study)} | {DOMAIN_EFFECT}
    for k, s in enumerate(slots(study)):
        assert out[rv_name(*s)].dims == ("chain", "draw")
        assert np.all(out[rv_name(*s)].values == k)
