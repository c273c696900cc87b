"""The one hierarchical model every hypothesis shares, built from a study.

For counterpart group g, domain d and quarter t the log-odds that an interaction is
cooperative is

    eta[g, d, t] = tilt[g] + spread[g] * z[g, d] + trend[g] * years[t] + rw[g, t]

with z ~ Normal(0, 1) (non-centred partial pooling of domains within a group), ``years`` the
time from the study's reference quarter, and ``rw`` a random walk anchored at zero at the
reference quarter whose quarterly steps have standard deviation volatility[g]. The
likelihood is the reliability-weighted Bernoulli log-likelihood summed per cell.

Parameterisation follows the data. With few events per domain or quarter the posterior of a
domain effect or a walk is close to its prior, and the non-centred form above samples well.
With many (imported event data: 10^5-10^6 events) each cell's log-odds is pinned down and the
non-centred posterior becomes a thin curved ridge that NUTS crosses slowly. So:

- a domain effect whose data carry clearly more information than its prior (Fisher
  information times the prior median of its scale >= ``CENTRE_AT``) is sampled centred, as the
  domain's log-odds directly, Normal(tilt, spread);
- a group's walk whose quarters carry enough information (median over quarters, times the
  prior median volatility squared, >= ``WALK_LEVELS_AT``) is sampled in levels: the walk's value at every quarter
  but the reference one, with the random-walk density on its increments, Normal(trend / 4,
  volatility). Levels, not increments: when the data pin every quarter's level, increments
  (differences of pinned levels) are strongly correlated with their neighbours and NUTS needs
  ~10x more steps per draw; the map from levels to increments is linear with unit Jacobian, so
  the density is the same model's.

Centring around tilt and trend, not zero, keeps those two from sliding against every pinned
element. The stored ``domain_z`` and ``rw_z`` are Deterministics with the same standardised
meaning either way, so everything downstream reads one layout. Unused elements of either form
are independent Normal(0, 1) variables that touch nothing: they change neither the model's
posterior nor its marginal likelihood.

Hypotheses differ only in the priors of tilt, spread, trend and volatility. Those priors'
parameters are ``pm.Data`` (one matrix, ``prior_params``), so one compiled model serves every
hypothesis that uses the same distribution families, and every variant of a sensitivity grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecast.data.cells import CellData
from forecast.spec.priors import FAMILIES, MAX_PARAMS
from forecast.spec.study import Hypothesis, Study

PRIOR_DATA = "prior_params"
DOMAIN_EFFECT = "domain_z"
RW_STEPS = "rw_z"
# The sampler's own coordinates for the standardised effects (see _mixed, _walk_in_levels); which
# of them a fit uses depends on the data, so results keep only the effects they map to.
DOMAIN_NC, DOMAIN_C = f"{DOMAIN_EFFECT}_nc", f"{DOMAIN_EFFECT}_c"  # as _mixed names them
RW_NC, RW_LEVELS = f"{RW_STEPS}_nc", f"{RW_STEPS}_levels"
SAMPLER_COORDINATES = (DOMAIN_NC, DOMAIN_C, RW_NC, RW_LEVELS)
DOMAIN_CENTRED = "domain_centred"
RW_CENTRED = "rw_centred"

# Centre an element when its data's Fisher information times its prior scale squared reaches
# this: the data then outweigh the prior an order of magnitude. The default study stays well
# below it (at most 4.4, for one domain), so small studies keep the plain non-centred model.
CENTRE_AT = 10.0
# A group's walk is sampled in levels once its median quarter's information times the prior
# median volatility squared reaches this: levels are then pinned at least as tightly by the
# data as by the walk's prior (measured on synthetic studies: at 10^6 events a group left on
# the increments form below this kept the whole fit at R-hat 1.02-1.04 with 30 steps a draw).
WALK_LEVELS_AT = 1.0


@dataclass(frozen=True)
class Centring:
    """Which domain effects (group, domain) are sampled centred, and which groups' walks in levels.

    ``steps`` has one row per group, all True (the walk is sampled in levels) or all False.
    """

    domain: np.ndarray  # bool (G, D)
    steps: np.ndarray  # bool (G, Q - 1), rows constant

    @property
    def any_domain(self) -> bool:
        return bool(self.domain.any())

    @property
    def any_steps(self) -> bool:
        return bool(self.steps.any())

    def __or__(self, other: Centring) -> Centring:
        return Centring(self.domain | other.domain, self.steps | other.steps)


def information(study: Study, cells: CellData) -> tuple[np.ndarray, np.ndarray]:
    """Fisher information of the data about each (group, domain) and (group, quarter) log-odds.

    Each cell contributes weight x p(1 - p) at its (smoothed) observed cooperative share.
    """
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    weight = cells.w_coop + cells.w_conf
    share = (cells.w_coop + 0.5) / (weight + 1.0)
    info = weight * share * (1.0 - share)
    per_domain = np.zeros((n_g, n_d))
    np.add.at(per_domain, (cells.group, cells.domain), info)
    per_quarter = np.zeros((n_g, n_q))
    np.add.at(per_quarter, (cells.group, cells.quarter), info)
    return per_domain, per_quarter


def centring(study: Study, cells: CellData, hypothesis: Hypothesis, at: float = CENTRE_AT) -> Centring:
    """The data-dependent parameterisation (see the module docstring) for one hypothesis's priors.

    ``at`` is the domains' threshold; the walks' scales with it (0 centres everything, inf nothing).
    """
    per_domain, per_quarter = information(study, cells)
    spread = np.array([float(hypothesis.priors[("spread", g.id)].ppf(0.5)) for g in study.groups])
    domain = per_domain * spread[:, None] ** 2 >= at
    steps = np.zeros((len(study.groups), max(study.time.n_quarters - 1, 0)), dtype=bool)
    if "random_walk" in study.time.components and steps.size:
        vol = np.array([float(hypothesis.priors[("volatility", g.id)].ppf(0.5)) for g in study.groups])
        levels = np.median(per_quarter, axis=1) * vol**2 >= at * WALK_LEVELS_AT / CENTRE_AT
        steps = np.repeat(levels[:, None], steps.shape[1], axis=1)
    return Centring(domain=domain, steps=steps)


def study_centring(study: Study, cells: CellData, at: float = CENTRE_AT) -> Centring:
    """Elements any hypothesis centres: which centred variables the shared model needs."""
    out = centring(study, cells, study.hypotheses[0], at)
    for h in study.hypotheses[1:]:
        out = out | centring(study, cells, h, at)
    return out


def slots(study: Study) -> list[tuple[str, str]]:
    """(parameter, group id) pairs in the order of the rows of ``prior_params`` (``Study.slots``)."""
    return study.slots


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


def latent_parts(xp: Any, params: dict[str, Any], years: Any, ref: int, components: tuple[str, ...]) -> tuple[Any, Any]:
    """The two additive parts of the log-odds: (..., group, domain) and (..., group, quarter).

    ``eta[g, d, t] = a[g, d] + b[g, t]``. Written once for both array libraries: ``xp`` is
    numpy (post-processing draws, leading sample axes allowed) or ``pytensor.tensor``.
    """
    tilt, spread, z = params["tilt"], params["spread"], params[DOMAIN_EFFECT]
    a = tilt[..., :, None] + spread[..., :, None] * z
    b = 0.0 * tilt[..., :, None] + 0.0 * years
    if "trend" in components:
        b = b + params["trend"][..., :, None] * years
    if "random_walk" in components and RW_STEPS in params:
        steps = params[RW_STEPS]
        walk = xp.concatenate([xp.zeros_like(steps[..., :1]), xp.cumsum(steps, axis=-1)], axis=-1)
        b = b + (walk - walk[..., ref : ref + 1]) * params["volatility"][..., :, None]
    return a, b


def latent_logit(xp: Any, params: dict[str, Any], years: Any, ref: int, components: tuple[str, ...]) -> Any:
    """Log-odds of cooperation on the whole (..., group, domain, quarter) grid."""
    a, b = latent_parts(xp, params, years, ref, components)
    return a[..., :, :, None] + b[..., :, None, :]


@dataclass(frozen=True)
class PriorVector:
    """One sampled vector: a parameter's groups whose priors share a distribution family."""

    name: str  # the PyMC variable; never stored (``split_prior_vectors`` names its elements)
    param: str
    family: str
    rows: tuple[int, ...]  # rows of ``prior_params`` (= slots), in group order


def prior_vectors(study: Study, signature: tuple[str, ...]) -> list[PriorVector]:
    """The prior's vector variables: one per (parameter, family) in the family signature.

    One vector instead of a scalar per group makes the graph several times smaller: PyTensor
    compiles it faster and nutpie evaluates it faster.
    """
    out: list[PriorVector] = []
    all_slots = slots(study)
    for param in study.parameters:
        by_family: dict[str, list[int]] = {}
        for k, (p, _) in enumerate(all_slots):
            if p == param:
                by_family.setdefault(signature[k], []).append(k)
        out += [PriorVector(f"{param}__{f}", param, f, tuple(rows)) for f, rows in by_family.items()]
    return out


def split_prior_vectors(posterior, study: Study, signature: tuple[str, ...]):
    """The posterior (an ``xarray.Dataset``) in the layout every result keeps, whatever the
    parameterisation: each prior vector as one scalar per slot (``tilt__<group>``,
    ``spread__<group>``, ...), the standardised effects ``domain_z`` and ``rw_z``, and none of
    the sampler's coordinates (``SAMPLER_COORDINATES``).
    """
    import xarray as xr

    all_slots = slots(study)
    vectors = prior_vectors(study, signature)
    out = posterior.drop_vars([v.name for v in vectors] + [n for n in SAMPLER_COORDINATES if n in posterior])
    scalars = {}
    for v in vectors:
        values = posterior[v.name].values
        for i, row in enumerate(v.rows):
            scalars[rv_name(*all_slots[row])] = xr.DataArray(values[..., i], dims=("chain", "draw"))
    return out.assign(scalars)


def _rv(family: str, name: str, p: Any, n: int):
    """A vector of ``n`` independent variables of ``family`` with parameters ``p`` (n, MAX_PARAMS)."""
    import pymc as pm

    builders: dict[str, Callable[[], Any]] = {
        "Normal": lambda: pm.Normal(name, mu=p[:, 0], sigma=p[:, 1], shape=n),
        "StudentT": lambda: pm.StudentT(name, nu=p[:, 0], mu=p[:, 1], sigma=p[:, 2], shape=n),
        "HalfNormal": lambda: pm.HalfNormal(name, sigma=p[:, 0], shape=n),
        "HalfStudentT": lambda: pm.HalfStudentT(name, nu=p[:, 0], sigma=p[:, 1], shape=n),
        "LogNormal": lambda: pm.LogNormal(name, mu=p[:, 0], sigma=p[:, 1], shape=n),
        "Gamma": lambda: pm.Gamma(name, alpha=p[:, 0], beta=p[:, 1], shape=n),
        "Exponential": lambda: pm.Exponential(name, lam=p[:, 0], shape=n),
    }
    assert set(builders) == set(FAMILIES), "every family a study may name must have a builder"
    return builders[family]()


def build_model(
    study: Study,
    cells: CellData,
    signature: tuple[str, ...],
    prior_params: np.ndarray | None = None,
    centred: Centring | None = None,
):
    """A PyMC model for the study's cells; priors enter as data. Builds, never samples.

    ``centred`` (default: ``study_centring(study, cells)``) decides which centred variables
    exist; its masks are data, so each hypothesis (and other cells) set their own.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from forecast.model.likelihood import CellLoglik  # PyTensor, like PyMC above: loaded when a model is built

    groups = [g.id for g in study.groups]
    coords = {"group": groups, "domain": [d.id for d in study.domains], "quarter": study.time.quarters}
    n_q = study.time.n_quarters
    with pm.Model(coords=coords) as model:
        hp = pm.Data(PRIOR_DATA, np.ones((len(signature), MAX_PARAMS)) if prior_params is None else prior_params)
        data = cells.as_model_data()
        cell_index = pm.Data("cell_index", data["cell_index"])
        cell_weights = pm.Data("cell_weights", data["cell_weights"])
        pieces: dict[str, list[tuple[PriorVector, Any]]] = {}
        for v in prior_vectors(study, signature):
            contiguous = v.rows == tuple(range(v.rows[0], v.rows[-1] + 1))
            p = hp[v.rows[0] : v.rows[-1] + 1] if contiguous else hp[np.array(v.rows)]
            pieces.setdefault(v.param, []).append((v, _rv(v.family, v.name, p, len(v.rows))))
        params: dict[str, Any] = {}
        for param, parts in pieces.items():
            if len(parts) == 1:
                params[param] = parts[0][1]
            else:  # groups with different families: back into group order
                order = np.argsort([row for v, _ in parts for row in v.rows])
                params[param] = pt.concatenate([rv for _, rv in parts])[order]
        centred = centred or study_centring(study, cells)
        walk = "random_walk" in study.time.components and n_q > 1
        shift = None  # what the centred domain variables omit of the domain log-odds (see _walk_in_levels)
        if walk and centred.any_steps:
            mask = pm.Data(RW_CENTRED, centred.steps.astype(np.float64))
            drift = params["trend"] / 4.0 if "trend" in study.time.components else pt.zeros(len(groups))
            ref = study.time.reference - study.time.start
            params[RW_STEPS], shift = _walk_in_levels(mask, centred.steps.shape, drift, params["volatility"], ref)
        elif walk:
            params[RW_STEPS] = pm.Normal(RW_STEPS, 0.0, 1.0, shape=(len(groups), n_q - 1))
        if centred.any_domain:
            mask = pm.Data(DOMAIN_CENTRED, centred.domain.astype(np.float64))
            params[DOMAIN_EFFECT] = _mixed(
                DOMAIN_EFFECT, mask, centred.domain.shape, params["tilt"], params["spread"], ("group", "domain"), shift
            )
        else:
            params[DOMAIN_EFFECT] = pm.Normal(DOMAIN_EFFECT, 0.0, 1.0, dims=("group", "domain"))
        zeros = pt.zeros(len(groups))
        loglik = CellLoglik(ref=study.time.reference - study.time.start)(
            params["tilt"],
            params["spread"],
            params[DOMAIN_EFFECT],
            params["trend"] if "trend" in study.time.components else zeros,
            params["volatility"] if walk else zeros,
            params[RW_STEPS] if walk else pt.zeros((len(groups), max(n_q - 1, 0))),
            years_from_reference(study),
            cell_index,
            cell_weights,
        )[0]
        # Reliability-weighted Bernoulli log-likelihood: w * log p for cooperative events,
        # w * log(1 - p) for conflictual ones, summed per cell (forecast/likelihood.py).
        pm.Potential("weighted_loglik", loglik)
    return model


def _mixed(
    name: str,
    mask: Any,
    shape: tuple[int, int],
    centre: Any,
    scale: Any,
    dims: tuple[str, str] | None,
    shift: Any = None,
):
    """Standardised effects ``(x - centre) / scale``: x ~ Normal(centre, scale) drawn directly
    where the mask is 1 (centred), as ``centre + scale * z`` elsewhere (non-centred).

    With ``shift`` (one value per row), the centred variable is ``x - shift``: see
    ``_walk_in_levels``. The map is a translation, so the density is the same model's.
    """
    import pymc as pm
    import pytensor.tensor as pt

    use_centred = pt.gt(mask, 0.5)
    mu, sd = centre[:, None], scale[:, None]
    standard = pm.Normal(f"{name}_nc", 0.0, 1.0, shape=shape)
    if shift is None:
        direct = pm.Normal(f"{name}_c", pt.switch(use_centred, mu, 0.0), pt.switch(use_centred, sd, 1.0), shape=shape)
        x = direct
    else:
        direct = pm.Flat(f"{name}_c", shape=shape)
        x = direct + shift[:, None]
        density = pt.switch(use_centred, pm.logp(pm.Normal.dist(mu, sd), x), pm.logp(pm.Normal.dist(0.0, 1.0), direct))
        pm.Potential(f"{name}_c_density", density.sum())
    return pm.Deterministic(name, pt.switch(use_centred, (x - mu) / sd, standard), dims=dims)


def zero_sum_basis(n: int) -> np.ndarray:
    """(n, n - 1): orthonormal columns spanning the vectors that sum to zero."""
    q, _ = np.linalg.qr(np.eye(n)[:, :-1] - 1.0 / n)
    return q


def _walk_in_levels(mask: Any, shape: tuple[int, int], drift: Any, volatility: Any, ref: int):
    """Standardised walk increments ``rw_z`` and, per group, the shift for the centred domains.

    Where ``mask`` rows are 1 the walk is sampled in levels, and in the coordinates in which
    pinned data make the posterior round: the walk's deviations from its own mean over the
    quarters (``dev``, through an orthonormal zero-sum basis) and, in ``_mixed``, each centred
    domain's log-odds plus that mean. The walk itself is ``dev - dev[ref]`` (0 at the
    reference quarter) and a domain's log-odds is its variable plus ``dev[ref]``, so every
    cell's log-odds is (domain variable + dev[t]), each term pinned by many cells. Anchored at
    the reference quarter instead, every domain and every level would share one direction
    only the reference quarter's data pin down, which NUTS crosses slowly.

    The map from these coordinates to (domain log-odds, levels) is linear with a constant
    Jacobian, added as a Potential, so the density (and the marginal likelihood) is the same
    model's. The random-walk density on the increments enters through a Potential too; a
    group sampled non-centred gives its unused variables independent Normal(0, 1) densities.
    """
    import pymc as pm
    import pytensor.tensor as pt

    n_g, n_steps = shape
    basis = zero_sum_basis(n_steps + 1)  # (Q, Q - 1)
    # log |det| of free coordinates -> levels at the quarters other than the reference one.
    to_levels = np.delete(np.eye(n_steps + 1) - np.eye(n_steps + 1)[ref], ref, axis=0) @ basis
    log_jacobian = float(np.linalg.slogdet(to_levels)[1])

    use_levels = pt.gt(mask, 0.5)
    in_levels = use_levels[:, 0]
    standard = pm.Normal(RW_NC, 0.0, 1.0, shape=shape)
    free = pm.Flat(RW_LEVELS, shape=shape)
    dev = free @ basis.T  # (G, Q), rows sum to zero
    walk = dev - dev[:, ref : ref + 1]
    increments = walk[:, 1:] - walk[:, :-1]
    mu, sd = drift[:, None], volatility[:, None]
    density = pt.switch(
        use_levels,
        pm.logp(pm.Normal.dist(mu, sd), increments),
        pm.logp(pm.Normal.dist(0.0, 1.0), free),
    )
    pm.Potential(f"{RW_STEPS}_levels_density", density.sum() + log_jacobian * in_levels.sum())
    rw_z = pm.Deterministic(RW_STEPS, pt.switch(use_levels, (increments - mu) / sd, standard))
    return rw_z, pt.switch(in_levels, dev[:, ref], 0.0)


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
    a, b = latent_parts(
        np, arrays, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )
    return a[:, cells.group, cells.domain] + b[:, cells.group, cells.quarter]
