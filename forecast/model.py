"""The one hierarchical model every hypothesis shares, built from a study.

For counterpart group g, domain d and quarter t the log-odds that an interaction is
cooperative is

    eta[g, d, t] = tilt[g] + spread[g] * z[g, d] + trend[g] * years[t] + rw[g, t]

with z ~ Normal(0, 1) (non-centred partial pooling of domains within a group), ``years`` the
time from the study's reference quarter, and ``rw`` a random walk anchored at zero at the
reference quarter whose quarterly steps have standard deviation volatility[g]. The
likelihood is the reliability-weighted Bernoulli log-likelihood summed per cell.

Hypotheses differ only in the priors of tilt, spread, trend and volatility. Those priors'
parameters are ``pm.Data`` (one matrix, ``prior_params``), so one compiled model serves every
hypothesis that uses the same distribution families, and every variant of a sensitivity grid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from forecast.cells import CellData
from forecast.priors import FAMILIES, MAX_PARAMS
from forecast.study import Hypothesis, Study

PRIOR_DATA = "prior_params"
DOMAIN_EFFECT = "domain_z"
RW_STEPS = "rw_z"


def slots(study: Study) -> list[tuple[str, str]]:
    """(parameter, group id) pairs in the order of the rows of ``prior_params``."""
    return [(p, g.id) for p in study.parameters for g in study.groups]


def rv_name(param: str, group: str) -> str:
    return f"{param}__{group}"


def family_signature(study: Study, hypothesis: Hypothesis) -> tuple[str, ...]:
    """The distribution families a hypothesis uses, slot by slot; equal signatures share a compile."""
    return tuple(hypothesis.priors[s].dist for s in slots(study))


def prior_values(study: Study, hypothesis: Hypothesis) -> np.ndarray:
    """The ``prior_params`` matrix for a hypothesis: one row per slot, parameters in family order."""
    out = np.ones((len(slots(study)), MAX_PARAMS))
    for i, s in enumerate(slots(study)):
        vals = hypothesis.priors[s].values()
        out[i, : len(vals)] = vals
    return out


def years_from_reference(study: Study) -> np.ndarray:
    return (np.arange(study.time.n_quarters) - (study.time.reference - study.time.start)) / 4.0


def latent_logit(xp: Any, params: dict[str, Any], years: Any, ref: int, components: tuple[str, ...]) -> Any:
    """Log-odds of cooperation on the whole (..., group, domain, quarter) grid.

    Written once for both array libraries: ``xp`` is numpy (post-processing draws, leading
    sample axes allowed) or ``pytensor.tensor`` (building the model).
    """
    tilt, spread, z = params["tilt"], params["spread"], params[DOMAIN_EFFECT]
    eta = (tilt[..., :, None, None] + spread[..., :, None, None] * z[..., :, :, None]) + 0.0 * years
    if "trend" in components:
        eta = eta + params["trend"][..., :, None, None] * years
    if "random_walk" in components and RW_STEPS in params:
        steps = params[RW_STEPS]
        walk = xp.concatenate([xp.zeros_like(steps[..., :1]), xp.cumsum(steps, axis=-1)], axis=-1)
        walk = (walk - walk[..., ref : ref + 1]) * params["volatility"][..., :, None]
        eta = eta + walk[..., :, None, :]
    return eta


def _rv(family: str, name: str, p: Any):
    import pymc as pm

    builders: dict[str, Callable[[], Any]] = {
        "Normal": lambda: pm.Normal(name, mu=p[0], sigma=p[1]),
        "StudentT": lambda: pm.StudentT(name, nu=p[0], mu=p[1], sigma=p[2]),
        "HalfNormal": lambda: pm.HalfNormal(name, sigma=p[0]),
        "HalfStudentT": lambda: pm.HalfStudentT(name, nu=p[0], sigma=p[1]),
        "LogNormal": lambda: pm.LogNormal(name, mu=p[0], sigma=p[1]),
        "Gamma": lambda: pm.Gamma(name, alpha=p[0], beta=p[1]),
        "Exponential": lambda: pm.Exponential(name, lam=p[0]),
    }
    assert set(builders) == set(FAMILIES), "every family a study may name must have a builder"
    return builders[family]()


def build_model(study: Study, cells: CellData, signature: tuple[str, ...], prior_params: np.ndarray | None = None):
    """A PyMC model for the study's cells; priors enter as data. Builds, never samples."""
    import pymc as pm
    import pytensor.tensor as pt

    groups = [g.id for g in study.groups]
    coords = {"group": groups, "domain": [d.id for d in study.domains], "quarter": study.time.quarters}
    n_q = study.time.n_quarters
    with pm.Model(coords=coords) as model:
        hp = pm.Data(PRIOR_DATA, np.ones((len(signature), MAX_PARAMS)) if prior_params is None else prior_params)
        data = cells.as_model_data()
        cell_index = pm.Data("cell_index", data["cell_index"])
        cell_weights = pm.Data("cell_weights", data["cell_weights"])
        params: dict[str, Any] = {}
        for k, (param, group) in enumerate(slots(study)):
            params.setdefault(param, []).append(_rv(signature[k], rv_name(param, group), hp[k]))
        params = {p: pt.stack(v) for p, v in params.items()}
        params[DOMAIN_EFFECT] = pm.Normal(DOMAIN_EFFECT, 0.0, 1.0, dims=("group", "domain"))
        if "random_walk" in study.time.components and n_q > 1:
            params[RW_STEPS] = pm.Normal(RW_STEPS, 0.0, 1.0, shape=(len(groups), n_q - 1))
        years = pt.as_tensor(years_from_reference(study))
        ref = study.time.reference - study.time.start
        eta_grid = latent_logit(pt, params, years, ref, study.time.components)
        eta = eta_grid[cell_index[:, 0], cell_index[:, 1], cell_index[:, 2]]
        # Reliability-weighted Bernoulli log-likelihood: w * log p for cooperative events,
        # w * log(1 - p) for conflictual ones, summed per cell.
        pm.Potential(
            "weighted_loglik", pt.sum(-cell_weights[:, 0] * pt.softplus(-eta) - cell_weights[:, 1] * pt.softplus(eta))
        )
    return model


def draws_as_arrays(posterior, study: Study) -> dict[str, np.ndarray]:
    """Posterior draws, flattened over (chain, draw), in the shapes ``latent_logit`` expects."""

    def flat(name: str) -> np.ndarray:
        v = posterior[name].values
        return v.reshape(-1, *v.shape[2:])

    out: dict[str, np.ndarray] = {}
    for param in study.parameters:
        out[param] = np.stack([flat(rv_name(param, g.id)) for g in study.groups], axis=-1)
    out[DOMAIN_EFFECT] = flat(DOMAIN_EFFECT)
    if RW_STEPS in posterior:
        out[RW_STEPS] = flat(RW_STEPS)
    return out


def cell_logit_draws(arrays: dict[str, np.ndarray], study: Study, cells: CellData) -> np.ndarray:
    """Log-odds at each observed cell for every draw: shape (samples, cells)."""
    eta = latent_logit(
        np, arrays, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )
    return eta[:, cells.group, cells.domain, cells.quarter]
