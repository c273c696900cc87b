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
With many (imported event data: 10^4-10^6 events) each cell's log-odds is pinned down and the
non-centred posterior becomes a thin curved ridge that NUTS crosses slowly. So:

- a domain effect whose data carry clearly more information than its prior (Fisher
  information times the prior median of its scale >= ``CENTRE_AT``) is sampled centred, as the
  domain's log-odds averaged over its quarters with their information as weights (with one
  dominant cell: that cell's log-odds), Normal(tilt, spread);
- in a group with centred domains the tilt is derived from them (their mean plus spread times
  a standardised offset): as a coordinate of its own beside one pinned domain it made a funnel
  with the spread, which the data barely pin (``_tilt_and_domains``);
- a group's walk whose quarters carry enough information (median over quarters, times the
  prior median volatility squared, >= ``WALK_LEVELS_AT``) is sampled in levels: the walk's value at every quarter
  but the reference one, with the random-walk density on its increments, Normal(trend / 4,
  volatility). Levels, not increments: when the data pin every quarter's level, increments
  (differences of pinned levels) are strongly correlated with their neighbours and NUTS needs
  ~10x more steps per draw; the map from levels to increments is linear with unit Jacobian, so
  the density is the same model's;
- a walk with less information than that but not little (>= ``WALK_MODES_AT``: the data pin its
  slow modes, the prior its fast ones) is sampled in its modes, each scaled by its conditional
  posterior sd given the volatility, with the trend's drift in them (``_walk_in_modes``);
- a walk with less information still keeps its increments, but in its leading modes: those the
  data would pin at a high volatility (``LEADING_MODE_AT``). A few hundred events pin no quarter
  but do pin the walk's slowest modes once its volatility is large, which is where the data
  often put it (the default study: Russia's walk at 2-3 times its prior median): there the
  plain increments made a funnel with the volatility, whose upper tail then mixed slowly.

Every change of variables is exact: its log Jacobian is part of the density, so posteriors
and marginal likelihoods are the same model's (tests/test_centring.py). Centring around tilt
and trend, not zero, keeps those two from sliding against every pinned element. The stored
``tilt``, ``domain_z`` and ``rw_z`` are Deterministics with the same meaning either way, so
everything downstream reads one layout. Unused elements of any form are independent
Normal(0, 1) variables that touch nothing: they change neither the model's posterior nor its
marginal likelihood. A study without strong data (the default study) gets the plain model
but for its walks' leading modes.

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
DOMAIN_NC, DOMAIN_C = f"{DOMAIN_EFFECT}_nc", f"{DOMAIN_EFFECT}_c"  # as _tilt_and_domains names them
RW_NC, RW_LEVELS = f"{RW_STEPS}_nc", f"{RW_STEPS}_levels"
# A group's tilt: its own coordinate (``TILT_FREE``), or, in a group with centred domains,
# derived from them and ``TILT_OFFSET`` (see _tilt_and_domains).
TILT_FREE, TILT_OFFSET = "tilt_free", "tilt_offset"
RW_MODES = f"{RW_STEPS}_modes"  # see _walk_in_modes
SAMPLER_COORDINATES = (DOMAIN_NC, DOMAIN_C, RW_NC, RW_LEVELS, RW_MODES, TILT_FREE, TILT_OFFSET)
DOMAIN_CENTRED = "domain_centred"
DOMAIN_WEIGHTS = "domain_time_weights"
RW_CENTRED = "rw_centred"
# The walk's modes (see WalkModes): their basis, the data's information about each, the drift's share.
MODES_BASIS, MODES_INFORMATION, MODES_DRIFT = "rw_modes_basis", "rw_modes_information", "rw_modes_drift"

# Centre an element when its data's Fisher information times its prior scale squared reaches
# this: the data then outweigh the prior an order of magnitude. The default study stays well
# below it (at most 4.4, for one domain), so small studies keep the plain non-centred model.
CENTRE_AT = 10.0
# Once some element of a hypothesis's model reaches CENTRE_AT (or its walk is in modes), the
# others are centred from this much on: with the tilt derived from centred domains, the centred
# form is the better one as soon as the data clearly outweigh the prior, and an element left
# non-centred just below CENTRE_AT mixed slowly (R-hat 1.011-1.012 at 10^4 events, where its
# group's spread prior was narrow).
CENTRE_WITHIN_AT = 3.0
# A group's walk is sampled in levels once its median quarter's information times the prior
# median volatility squared reaches this: levels are then pinned at least as tightly by the
# data as by the walk's prior (measured on synthetic studies: at 10^6 events a group left on
# the increments form below this kept the whole fit at R-hat 1.02-1.04 with 30 steps a draw).
WALK_LEVELS_AT = 1.0
# Below that, a group's walk is sampled in its modes (``_walk_in_modes``) once its median
# quarter's information times the prior median volatility squared reaches this: the walk's
# slow modes are then pinned by the data and its fast ones by the prior, which neither the
# increments nor the levels suit (imported feeds of 10^4-10^5 events).
WALK_MODES_AT = 0.05
# Below that, the walk's increments are sampled as they are except in their leading modes: those
# whose information times the volatility squared reaches this at the prior's
# LEADING_MODE_QUANTILE of the volatility, i.e. the modes the data would pin to at least a tenth
# of the prior's precision at a high but plausible volatility. The other modes are left as
# plain increments (exactly the non-centred form) and cost nothing; on the default study this
# keeps 7-14 modes of 46 per group. (Measured on the default study's encompassing model over 30
# seeds: 12 fits of 30 fell short of tail ESS for a volatility with plain increments, 2-4 with
# the leading modes, 3 with all of them; keeping only the modes pinned at 1.0 instead of 0.1,
# 2-4 per group, did not help: 14 of 120 fits of the four models short against 16.)
LEADING_MODE_AT = 0.1
LEADING_MODE_QUANTILE = 0.99


@dataclass(frozen=True)
class WalkModes:
    """A walk's modes, per group: ``basis`` (G, n, n) holds the eigenvectors of the data's
    information about the standardised increments ``rw_z`` at unit volatility (columns, most
    informed first), ``information`` (G, n) its eigenvalues, 0 for a mode left as plain
    increments, and ``drift`` (G,) the data's information about the mean increment where the
    modes carry the trend's drift too, else 0 (see ``_walk_in_modes``)."""

    basis: np.ndarray
    information: np.ndarray
    drift: np.ndarray

    def data(self) -> dict[str, np.ndarray]:
        """The model's data; its basis with the modes as rows (contiguous for the fused kernel's
        products with a few modes)."""
        rows = np.ascontiguousarray(self.basis.transpose(0, 2, 1))
        return {MODES_BASIS: rows, MODES_INFORMATION: self.information, MODES_DRIFT: self.drift}


def walk_modes(per_quarter: np.ndarray, ref: int, drift: np.ndarray) -> WalkModes:
    """The modes of each group's walk (``WalkModes``) from its quarters' information (G, Q).

    The information is about the walk relative to its information-weighted mean (the centred
    domains carry that mean, see ``_tilt_and_domains``).
    """
    n_g, n_q = per_quarter.shape
    n = n_q - 1
    # walk[t] - walk[ref] = sum_s rw_z[s] * (1[s < t] - 1[s < ref]) at unit volatility
    to_walk = (np.arange(n_q)[:, None] > np.arange(n)[None, :]).astype(float) - (np.arange(n) < ref)[None, :]
    basis, information, mean_increment = np.zeros((n_g, n, n)), np.zeros((n_g, n)), np.zeros(n_g)
    for g in range(n_g):
        info = per_quarter[g]
        total = info.sum()
        centred = np.diag(info) - (np.outer(info, info) / total if total > 0 else 0.0)
        k = to_walk.T @ centred @ to_walk
        kappa, vectors = np.linalg.eigh(k)
        basis[g], information[g] = vectors[:, ::-1], np.clip(kappa[::-1], 0.0, None)
        mean_increment[g] = max(float(k.sum()) / n, 0.0)
    return WalkModes(basis, information, np.where(drift, mean_increment, 0.0))


def leading_modes(walk: WalkModes, keep: np.ndarray) -> WalkModes:
    """The walk with only the modes ``keep`` (G, n) sampled in modes; the others' information is
    0, which leaves them as plain increments (``_walk_in_modes``); a group with none carries no
    drift either."""
    keep = keep & (walk.information > 0)
    return WalkModes(walk.basis, np.where(keep, walk.information, 0.0), np.where(keep.any(axis=1), walk.drift, 0.0))


@dataclass(frozen=True)
class Centring:
    """Which domain effects (group, domain) are sampled centred, and which groups' walks in levels.

    ``steps`` has one row per group, all True (the walk is sampled in levels) or all False.
    ``weights`` (G, D, Q), rows summing to one, say which average over the quarters of a
    centred domain's log-odds its coordinate is (``_tilt_and_domains``); None: the plain mean.
    """

    domain: np.ndarray  # bool (G, D)
    steps: np.ndarray  # bool (G, Q - 1), rows constant
    weights: np.ndarray | None = None  # float (G, D, Q)
    modes: np.ndarray | None = None  # bool (G,): walks sampled in their modes (``_walk_in_modes``)
    walk: WalkModes | None = None  # their coordinates (data)

    @property
    def any_domain(self) -> bool:
        return bool(self.domain.any())

    @property
    def any_steps(self) -> bool:
        return bool(self.steps.any())

    @property
    def any_modes(self) -> bool:
        return self.modes is not None and bool(self.modes.any())

    def __or__(self, other: Centring) -> Centring:
        """The variables either needs (weights and modes' coordinates are data: this one's)."""
        modes = self.modes if other.modes is None else other.modes if self.modes is None else self.modes | other.modes
        return Centring(self.domain | other.domain, self.steps | other.steps, self.weights, modes, self.walk)

    def time_weights(self, n_quarters: int) -> np.ndarray:
        if self.weights is not None:
            return self.weights
        return np.full((*self.domain.shape, n_quarters), 1.0 / n_quarters)


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


def cell_information(study: Study, cells: CellData) -> np.ndarray:
    """Fisher information of the data about each (group, domain, quarter) log-odds: (G, D, Q)."""
    weight = cells.w_coop + cells.w_conf
    share = (cells.w_coop + 0.5) / (weight + 1.0)
    out = np.zeros((len(study.groups), len(study.domains), study.time.n_quarters))
    np.add.at(out, (cells.group, cells.domain, cells.quarter), weight * share * (1.0 - share))
    return out


def time_weights(info: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Which average of its quarters' log-odds a centred domain's coordinate is: (G, D, Q).

    The information-weighted one: the combination the domain's data pin down best (with one
    dominant cell, that cell's log-odds). A walk sampled in levels (``levels``, per group) and a
    domain without data take the plain mean.
    """
    total = info.sum(axis=2, keepdims=True)
    uniform = np.full(info.shape, 1.0 / info.shape[2])
    weighted = np.divide(info, total, out=uniform.copy(), where=total > 0)
    return np.where(levels[:, None, None], uniform, weighted)


def centring(study: Study, cells: CellData, hypothesis: Hypothesis, at: float = CENTRE_AT) -> Centring:
    """The data-dependent parameterisation (see the module docstring) for one hypothesis's priors.

    ``at`` is the domains' threshold; the walks' scales with it (0 centres everything, inf nothing).
    """
    per_domain, per_quarter = information(study, cells)
    spread = np.array([float(hypothesis.priors[("spread", g.id)].ppf(0.5)) for g in study.groups])
    domain = per_domain * spread[:, None] ** 2 >= at
    steps = np.zeros((len(study.groups), max(study.time.n_quarters - 1, 0)), dtype=bool)
    modes, walk = None, None
    all_modes = np.zeros(len(study.groups), dtype=bool)
    if "random_walk" in study.time.components and steps.size:
        volatility = [hypothesis.priors[("volatility", g.id)] for g in study.groups]
        vol = np.array([float(p.ppf(0.5)) for p in volatility])
        strength = np.median(per_quarter, axis=1) * vol**2
        levels = strength >= at * WALK_LEVELS_AT / CENTRE_AT
        steps = np.repeat(levels[:, None], steps.shape[1], axis=1)
        all_modes = ~levels & (strength >= at * WALK_MODES_AT / CENTRE_AT)
        trend = np.full(len(study.groups), "trend" in study.time.components)
        walk = walk_modes(per_quarter, study.time.reference - study.time.start, trend)
        high = np.array([float(p.ppf(LEADING_MODE_QUANTILE)) for p in volatility])
        leading = walk.information * high[:, None] ** 2 >= at * LEADING_MODE_AT / CENTRE_AT
        walk = leading_modes(walk, ~levels[:, None] & (all_modes[:, None] | leading))
        modes = (walk.information > 0).any(axis=1)
    # Leading modes alone do not call for centring more domains: the data pin no quarter then.
    if domain.any() or all_modes.any():
        domain = per_domain * spread[:, None] ** 2 >= at * CENTRE_WITHIN_AT / CENTRE_AT
    levels = steps.any(axis=1) if steps.size else np.zeros(len(study.groups), dtype=bool)
    weights = time_weights(cell_information(study, cells), levels)
    return Centring(domain=domain, steps=steps, weights=weights, modes=modes, walk=walk)


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
    fused: bool | None = None,
):
    """A PyMC model for the study's cells; priors enter as data. Builds, never samples.

    ``centred`` (default: ``study_centring(study, cells)``) decides which centred variables
    exist; its masks are data, so each hypothesis (and other cells) set their own. ``fused``
    (default: whenever the model has data-dependent coordinates and the plain likelihood) puts
    their densities and the cells' likelihood in one Op (``forecast.model.coordinates``); False
    builds the same density from PyTensor ops (the reference its tests compare with).
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
        centred = centred or study_centring(study, cells)
        walk = "random_walk" in study.time.components and n_q > 1
        strong = centred.any_domain or (walk and (centred.any_steps or centred.any_modes))
        if fused is None:
            fused = strong and not study.overdispersed
        if fused and study.overdispersed:
            raise ValueError("the fused density has the plain likelihood only, not the overdispersed one")
        pieces: dict[str, list[tuple[PriorVector, Any]]] = {}
        derived: list[tuple[PriorVector, Any]] = []  # tilt vectors derived from centred domains
        for v in prior_vectors(study, signature):
            contiguous = v.rows == tuple(range(v.rows[0], v.rows[-1] + 1))
            p = hp[v.rows[0] : v.rows[-1] + 1] if contiguous else hp[np.array(v.rows)]
            if v.param == "tilt" and centred.any_domain:
                derived.append((v, p))
                continue
            pieces.setdefault(v.param, []).append((v, _rv(v.family, v.name, p, len(v.rows))))
        params: dict[str, Any] = {}
        for param, parts in pieces.items():
            if len(parts) == 1:
                params[param] = parts[0][1]
            else:  # groups with different families: back into group order
                order = np.argsort([row for v, _ in parts for row in v.rows])
                params[param] = pt.concatenate([rv for _, rv in parts])[order]
        ref = study.time.reference - study.time.start
        in_modes = None
        if walk and centred.any_modes:
            modes = {k: pm.Data(k, v) for k, v in centred.walk.data().items()}
            levels = pm.Data(RW_CENTRED, centred.steps.astype(np.float64)) if centred.any_steps else None
            drift = params["trend"] / 4.0 if "trend" in study.time.components else None
            in_modes = _walk_in_modes(modes, (len(groups), n_q - 1), params["volatility"], levels, drift, not fused)
        if walk and centred.any_steps:
            mask = pm.Data(RW_CENTRED, centred.steps.astype(np.float64)) if in_modes is None else levels
            drift = params["trend"] / 4.0 if "trend" in study.time.components else pt.zeros(len(groups))
            params[RW_STEPS] = _walk_in_levels(
                mask, centred.steps.shape, drift, params["volatility"], ref, in_modes, not fused
            )
        elif in_modes is not None:
            params[RW_STEPS] = pm.Deterministic(RW_STEPS, in_modes)
        elif walk:
            params[RW_STEPS] = pm.Normal(RW_STEPS, 0.0, 1.0, shape=(len(groups), n_q - 1))
        if centred.any_domain:
            mask = pm.Data(DOMAIN_CENTRED, centred.domain.astype(np.float64))
            weights = pm.Data(DOMAIN_WEIGHTS, centred.time_weights(n_q))
            trend = params["trend"] if "trend" in study.time.components else None
            years = years_from_reference(study)
            time_effect = _time_effect(
                len(groups), trend, params.get("volatility") if walk else None, params.get(RW_STEPS), years, ref
            )
            params["tilt"], params[DOMAIN_EFFECT] = _tilt_and_domains(
                study, derived, mask, weights, params["spread"], time_effect, not fused
            )
        else:
            params[DOMAIN_EFFECT] = pm.Normal(DOMAIN_EFFECT, 0.0, 1.0, dims=("group", "domain"))
        zeros = pt.zeros(len(groups))
        latent = (
            params["tilt"],
            params["spread"],
            params[DOMAIN_EFFECT],
            params["trend"] if "trend" in study.time.components else zeros,
            params["volatility"] if walk else zeros,
            params[RW_STEPS] if walk else pt.zeros((len(groups), max(n_q - 1, 0))),
        )
        observed = (years_from_reference(study), cell_index, cell_weights)
        if fused:
            # The coordinates' densities and the cells' likelihood in one Op (forecast/model/coordinates.py);
            # the map above only yields the Deterministics the results keep.
            loglik = _fused_density(model, study, signature, hp, params, centred, walk, observed)
        elif study.overdispersed:
            # Each cell's share Beta(p phi, (1 - p) phi) around p, integrated out: the Polya
            # likelihood of its weighted counts, with the study's one concentration phi
            # (forecast/model/overdispersion.py).
            from forecast.model.overdispersion import CellPolyaLoglik, concentration_variable

            phi = concentration_variable(study.concentration)
            loglik = CellPolyaLoglik(ref=study.time.reference - study.time.start)(*latent, phi, *observed)[0]
        else:
            # Reliability-weighted Bernoulli log-likelihood: w * log p for cooperative events,
            # w * log(1 - p) for conflictual ones, summed per cell (forecast/model/likelihood.py).
            loglik = CellLoglik(ref=study.time.reference - study.time.start)(*latent, *observed)[0]
        pm.Potential("weighted_loglik", loglik)
    return model


def _dist(family: str, p: Any):
    """The ``family`` distribution with parameters ``p`` (n, MAX_PARAMS), for its log density."""
    import pymc as pm

    builders: dict[str, Callable[[], Any]] = {
        "Normal": lambda: pm.Normal.dist(mu=p[:, 0], sigma=p[:, 1]),
        "StudentT": lambda: pm.StudentT.dist(nu=p[:, 0], mu=p[:, 1], sigma=p[:, 2]),
    }
    if family not in builders:
        raise ValueError(f"a tilt prior is a real-valued family (Normal or StudentT), not {family}")
    return builders[family]()


def _fused_density(
    model: Any,
    study: Study,
    signature: tuple[str, ...],
    hp: Any,
    params: dict[str, Any],
    centred: Centring,
    walk: bool,
    observed: tuple[Any, Any, Any],
) -> Any:
    """The log density of the data-dependent coordinates and the cells, from ``CoordinateLoglik``.

    Reads the coordinates and masks the model already has (``_tilt_and_domains``,
    ``_walk_in_modes``, ``_walk_in_levels`` built them without their densities); the form it was
    not built with gets zeros, which the Op's props say to ignore.
    """
    import pytensor.tensor as pt

    from forecast.model import coordinates as co

    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    n = max(n_q - 1, 0)
    zeros = {1: pt.zeros(n_g), 2: pt.zeros((n_g, n_d)), "steps": pt.zeros((n_g, n))}
    families: tuple[int, ...] = ()
    if centred.any_domain:
        tilt_rows = [study.slots.index(("tilt", g.id)) for g in study.groups]
        for row in tilt_rows:
            if signature[row] not in co.TILT_FAMILIES:
                raise ValueError(f"a tilt prior is a real-valued family (Normal or StudentT), not {signature[row]}")
        families = tuple(co.TILT_FAMILIES.index(signature[row]) for row in tilt_rows)
        domains = (model[TILT_FREE], model[TILT_OFFSET], model[DOMAIN_NC], model[DOMAIN_C])
        domain_data = (hp[np.array(tilt_rows)], model[DOMAIN_CENTRED], model[DOMAIN_WEIGHTS])
    else:  # the model's own tilt and domain effects (their densities are theirs)
        domains = (params["tilt"], zeros[1], params[DOMAIN_EFFECT], zeros[2])
        domain_data = (pt.zeros((n_g, MAX_PARAMS)), zeros[2], pt.zeros((n_g, n_d, n_q)))
    if not walk:
        form, rnc, lev, mod = co.NO_WALK, zeros["steps"], zeros["steps"], zeros["steps"]
    elif centred.any_modes:
        form = co.LEVELS_MODES if centred.any_steps else co.MODES
        rnc, lev, mod = zeros["steps"], model[RW_LEVELS] if centred.any_steps else zeros["steps"], model[RW_MODES]
    elif centred.any_steps:
        form, rnc, lev, mod = co.LEVELS, model[RW_NC], model[RW_LEVELS], zeros["steps"]
    else:  # the model's own increments
        form, rnc, lev, mod = co.PLAIN_WALK, params[RW_STEPS], zeros["steps"], zeros["steps"]
    levels = model[RW_CENTRED][:, 0] if walk and centred.any_steps else zeros[1]
    if walk and centred.any_modes:
        modes = (model[MODES_BASIS], model[MODES_INFORMATION], model[MODES_DRIFT])
    else:
        modes = (pt.zeros((n_g, n, n)), zeros["steps"], zeros[1])
    has_trend = "trend" in study.time.components
    ref = study.time.reference - study.time.start
    op = co.CoordinateLoglik(ref, n_q, families, form, has_trend)
    inputs = (
        *domains,
        rnc,
        lev,
        mod,
        params["spread"],
        params["trend"] if has_trend else zeros[1],
        params["volatility"] if walk else zeros[1],
        *domain_data,
        levels,
        *modes,
        levels_map(n_q, ref)[0],
        *observed,
    )
    return op(*inputs)[0]


def _time_effect(n_groups: int, trend: Any, volatility: Any, steps: Any, years: np.ndarray, ref: int) -> Any:
    """The time part of the log-odds, ``b[g, t]`` of ``latent_parts``, from the model's variables
    (``trend`` and ``volatility`` None when the study has no such component)."""
    import pytensor.tensor as pt

    b = pt.zeros((n_groups, len(years)))
    if trend is not None:
        b = b + trend[:, None] * years
    if volatility is not None:
        walk = pt.concatenate([pt.zeros_like(steps[:, :1]), pt.cumsum(steps, axis=1)], axis=1)
        b = b + (walk - walk[:, ref : ref + 1]) * volatility[:, None]
    return b


def _tilt_and_domains(
    study: Study,
    tilt_vectors: list[tuple[PriorVector, Any]],
    mask: Any,
    weights: Any,
    spread: Any,
    time_effect: Any,
    density: bool = True,
) -> tuple[Any, Any]:
    """Each group's tilt and its standardised domain effects ``domain_z``, where some domains
    are sampled centred (``mask``, (G, D)).

    A centred domain's coordinate is its log-odds averaged over the quarters with ``weights``
    (G, D, Q): ``x = a + sum_t weights[t] * b[t]``, with ``a`` the domain's log-odds at the
    reference quarter and ``b`` the time effect (trend and walk). That is the combination its
    data pin down (with one dominant cell, the cell's own log-odds), whatever the walk does:
    anchored at the reference quarter instead, the domain and the walk would share a direction
    only the reference quarter's data pin down. Given the other coordinates ``x -> a`` is a
    translation, so it has unit Jacobian.

    In a group with k >= 1 centred domains the tilt is not a coordinate of its own but derived:
    ``tilt = mean(a over centred domains) + spread * offset / sqrt(k)``. Sampled as a coordinate
    beside centred domains, the tilt is pinned within spread / sqrt(k) of their mean: a funnel
    in (tilt, spread), worst with one dominant domain and weak others (the data pin that
    domain's log-odds but barely the spread). Given the centred domains the offset is a
    standard normal times the tilt's prior. The map (offset, x) -> (tilt, z) has Jacobian
    ``spread**(1 - k) / sqrt(k)``: the model's density carries ``spread / sqrt(k)`` for the
    offset, and the domains' Normal(tilt, spread) densities the rest.

    Both forms of every element exist; the masks (data) choose, and an unused coordinate is an
    independent Normal(0, 1) that touches nothing. The tilt's prior enters through a Potential
    (the tilt families are real-valued, so the coordinates are unconstrained either way).
    Without ``density`` the map only: the fused Op (``forecast.model.coordinates``) carries the
    densities, the non-centred coordinates' included.
    """
    import pymc as pm
    import pytensor.tensor as pt

    n_g, n_d = len(study.groups), len(study.domains)
    use = pt.gt(mask, 0.5)
    k = use.sum(axis=1)
    anchored = pt.gt(k, 0)
    k = pt.maximum(k, 1).astype("float64")
    standard = pm.Normal(DOMAIN_NC, 0.0, 1.0, shape=(n_g, n_d)) if density else pm.Flat(DOMAIN_NC, shape=(n_g, n_d))
    direct = pm.Flat(DOMAIN_C, shape=(n_g, n_d))
    free = pm.Flat(TILT_FREE, shape=n_g)
    offset = pm.Flat(TILT_OFFSET, shape=n_g)
    a = direct - (weights * time_effect[:, None, :]).sum(axis=2)
    mean_a = pt.switch(use, a, 0.0).sum(axis=1) / k
    tilt = pt.switch(anchored, mean_a + spread * offset / pt.sqrt(k), free)

    def std_normal(x: Any) -> Any:
        return pm.logp(pm.Normal.dist(0.0, 1.0), x)

    group_of = {g.id: i for i, g in enumerate(study.groups)}
    prior = 0.0
    for v, p in tilt_vectors:
        index = np.array([group_of[study.slots[row][1]] for row in v.rows])
        prior = prior + pm.logp(_dist(v.family, p), tilt[index]).sum()
        pm.Deterministic(v.name, tilt[index])
    sd = spread[:, None]
    if density:
        jacobian = pt.log(spread) - 0.5 * pt.log(k)
        pm.Potential("tilt_density", prior + pt.switch(anchored, jacobian + std_normal(free), std_normal(offset)).sum())
        domain = pt.switch(use, pm.logp(pm.Normal.dist(tilt[:, None], sd), a), std_normal(direct))
        pm.Potential(f"{DOMAIN_C}_density", domain.sum())
    z = pm.Deterministic(DOMAIN_EFFECT, pt.switch(use, (a - tilt[:, None]) / sd, standard), dims=("group", "domain"))
    return tilt, z


def zero_sum_basis(n: int) -> np.ndarray:
    """(n, n - 1): orthonormal columns spanning the vectors that sum to zero."""
    q, _ = np.linalg.qr(np.eye(n)[:, :-1] - 1.0 / n)
    return q


def levels_map(n_quarters: int, ref: int) -> tuple[np.ndarray, float]:
    """(to_inc, log Jacobian) of a walk sampled in levels (``_walk_in_levels``): ``to_inc``
    (Q - 1, Q - 1) maps the levels coordinates (a row) to the walk's increments, and the log
    Jacobian is that of the coordinates' map to the levels at every quarter but ``ref``."""
    if n_quarters < 2:
        return np.zeros((0, 0)), 0.0
    basis = zero_sum_basis(n_quarters)  # (Q, Q - 1)
    to_levels = np.delete(np.eye(n_quarters) - np.eye(n_quarters)[ref], ref, axis=0) @ basis
    to_inc = (basis[1:] - basis[:-1]).T  # to_inc[j, s] = basis[s + 1, j] - basis[s, j]
    return np.ascontiguousarray(to_inc), float(np.linalg.slogdet(to_levels)[1])


def _walk_in_modes(
    modes: dict[str, Any],
    shape: tuple[int, int],
    volatility: Any,
    levels: Any = None,
    drift: Any = None,
    density: bool = True,
) -> Any:
    """Standardised walk increments ``rw_z`` from coordinates in the walk's modes (``WalkModes``).

    ``rw_z = basis @ diag(f) @ basis.T @ coordinate`` with ``f = 1 / sqrt(1 + volatility**2 *
    information)``: in the basis of the modes, each mode scaled by its conditional posterior sd
    given the volatility (data approximated by their Fisher information). A mode the prior pins
    is then sampled non-centred (scale ~1) and one the data pin centred (``volatility * rw_z``
    does not move with the volatility), at every volatility, so the posterior is near round in
    every mode: the increments (non-centred) make a funnel of the slow modes at large
    volatility and levels one of the fast modes at small volatility. A mode with information 0
    has ``f = 1``: the coordinate is then the plain increments in that mode, so a walk with a few
    leading modes costs a product with those few columns only (``rw_z = coordinate + basis_r @
    ((f_r - 1) * basis_r.T @ coordinate)``), and one with none is the non-centred walk exactly.
    The map is linear given the volatility; its log Jacobian ``-sum(log(1 + volatility**2 *
    information)) / 2`` (the basis is orthonormal) enters the density with the increments'
    Normal(0, 1). Groups whose walk is in levels (``levels`` rows 1) leave these coordinates
    unused: independent Normal(0, 1) variables that touch nothing.

    Where the modes carry the drift (strong data), they are the increments with the trend's
    drift in them, ``rw_z + share * drift / volatility``, as the levels are: the data pin the
    walk's slow modes, trend and walk together, and would otherwise leave trend and ``rw_z`` on
    a ridge. ``share`` is the data's share of the mean increment's precision at this
    volatility, ``v**2 i / (1 + v**2 i)`` with ``i`` the ``drift`` data, so that a small
    volatility does not pin the trend to the walk. ``rw_z`` is the modes minus that: given
    trend and volatility a shift, so the Jacobian is the modes' alone. Without ``density`` the
    map only (the fused Op carries the density).
    """
    import pymc as pm
    import pytensor.tensor as pt

    rows, information = modes[MODES_BASIS], modes[MODES_INFORMATION]  # rows: the modes
    coordinate = pm.Flat(RW_MODES, shape=shape)
    log_factor = -0.5 * pt.log1p(volatility[:, None] ** 2 * information)
    in_modes = (rows * coordinate[:, None, :]).sum(axis=2)  # basis.T @ coordinate, per group
    rw_z = coordinate + (rows * (pt.expm1(log_factor) * in_modes)[:, :, None]).sum(axis=1)
    rw_z = pt.specify_shape(rw_z, shape)
    if drift is not None:
        precision = volatility**2 * modes[MODES_DRIFT]
        rw_z = rw_z - (precision / (1.0 + precision) * drift / volatility)[:, None]
    if density:
        used = pm.logp(pm.Normal.dist(0.0, 1.0), rw_z).sum(axis=1) + log_factor.sum(axis=1)
        unused = pm.logp(pm.Normal.dist(0.0, 1.0), coordinate).sum(axis=1)
        in_levels = pt.gt(levels[:, 0], 0.5) if levels is not None else pt.zeros(shape[0], dtype=bool)
        pm.Potential(f"{RW_MODES}_density", pt.switch(in_levels, unused, used).sum())
    return rw_z


def _walk_in_levels(
    mask: Any,
    shape: tuple[int, int],
    drift: Any,
    volatility: Any,
    ref: int,
    standard: Any = None,
    density: bool = True,
):
    """Standardised walk increments ``rw_z``.

    Where ``mask`` rows are 1 the walk is sampled in levels, and in the coordinates in which
    pinned data make the posterior round: the walk's deviations from its own mean over the
    quarters (``dev``, through an orthonormal zero-sum basis) and, in ``_tilt_and_domains``
    (with its time weights the plain mean), each centred domain's log-odds plus the walk's mean.
    The walk itself is ``dev - dev[ref]`` (0 at the reference quarter), so every cell's
    log-odds is (domain variable + dev[t]), each term pinned by many cells. Anchored at the
    reference quarter instead, every domain and every level would share one direction only the
    reference quarter's data pin down, which NUTS crosses slowly.

    The map from these coordinates to (domain log-odds, levels) is linear with a constant
    Jacobian, added as a Potential, so the density (and the marginal likelihood) is the same
    model's. The random-walk density on the increments enters through a Potential too; a
    group sampled non-centred gives its unused variables independent Normal(0, 1) densities.
    Without ``density`` the map only (the fused Op carries the densities).
    """
    import pymc as pm
    import pytensor.tensor as pt

    n_g, n_steps = shape
    basis = zero_sum_basis(n_steps + 1)  # (Q, Q - 1)
    log_jacobian = levels_map(n_steps + 1, ref)[1]

    use_levels = pt.gt(mask, 0.5)
    in_levels = use_levels[:, 0]
    if standard is None:  # the increments of the other groups' walks (else: in their modes)
        standard = pm.Normal(RW_NC, 0.0, 1.0, shape=shape) if density else pm.Flat(RW_NC, shape=shape)
    free = pm.Flat(RW_LEVELS, shape=shape)
    dev = free @ basis.T  # (G, Q), rows sum to zero
    walk = dev - dev[:, ref : ref + 1]
    increments = walk[:, 1:] - walk[:, :-1]
    mu, sd = drift[:, None], volatility[:, None]
    if density:
        terms = pt.switch(
            use_levels,
            pm.logp(pm.Normal.dist(mu, sd), increments),
            pm.logp(pm.Normal.dist(0.0, 1.0), free),
        )
        pm.Potential(f"{RW_STEPS}_levels_density", terms.sum() + log_jacobian * in_levels.sum())
    return pm.Deterministic(RW_STEPS, pt.switch(use_levels, (increments - mu) / sd, standard))


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
    # np.take on flattened axes: the same numbers as a[:, group, domain], several times faster.
    n_d, n_q = a.shape[-1], b.shape[-1]
    on_a = np.take(a.reshape(len(a), -1), cells.group * n_d + cells.domain, axis=1)
    on_a += np.take(b.reshape(len(b), -1), cells.group * n_q + cells.quarter, axis=1)
    return on_a
