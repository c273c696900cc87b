"""The strong-data model's whole log density, but the hyperparameters' priors, as one fused Op.

With strong data (imported feeds) the model samples data-dependent coordinates
(``forecast.model.build``: centred domains with a derived tilt, the walk in levels or in its
modes) and maps them to the tilt, the standardised domain effects ``z`` and the walk's
standardised increments ``rw_z``, with the densities and log Jacobians of those changes of
variables. Written as ordinary PyTensor ops that map is ~120 graph nodes (switches between the
forms, the modes' products, the time effect's cumulative sum, the prior of the derived tilt) and
as many again for the gradient; in PyTensor's Numba backend each node allocates its output, and
at 10^5 events those allocations cost twice the cells' likelihood itself. This Op computes the
same density, the cells' reliability-weighted Bernoulli log-likelihood included
(``forecast.model.likelihood``), and its gradient with respect to every coordinate and to
spread, trend and volatility, in one pass.

The model's graph still holds the map itself, for the Deterministics the results store
(``tilt__<group>``, ``domain_z``, ``rw_z``): nutpie evaluates those once per draw, not once per
leapfrog step. ``tests/test_coordinates.py`` checks that a model built with this Op has the
same log density and gradient as the one built from PyTensor ops, at random points, in every
configuration, and the gradient against finite differences.
"""

from __future__ import annotations

import hashlib
import inspect
import math

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from forecast.model.build import levels_map
from forecast.model.likelihood import FASTMATH, bernoulli_cells

# PyTensor's fast-math flags but "reassoc": with it LLVM vectorises the kernel's sums in ways that
# depend on where its temporaries happen to lie in memory, and the same point gave gradients a
# last bit apart from one thread (malloc arena) to another: enough for one chain to sample the same
# seed two ways from run to run (measured: 68 of 3000 points of a trajectory; none without it).
KERNEL_FASTMATH = FASTMATH - {"reassoc"}

# How the walk is sampled (``build_model``): no walk; its increments as a random variable of the
# model (the Op adds no density for them); levels for some groups and increments (a coordinate
# here) for the others; modes for every group; levels for some groups and modes for the others.
NO_WALK, PLAIN_WALK, LEVELS, MODES, LEVELS_MODES = range(5)
# Tilt prior families the derived tilt may have (``build._dist``).
TILT_FAMILIES = ("Normal", "StudentT")

# Differentiable inputs, in order, with their ranks: the sampler's coordinates, then the
# hyperparameters that enter the map.
PARAMETERS = (
    ("tilt_free", 1),
    ("tilt_offset", 1),
    ("domain_nc", 2),
    ("domain_c", 2),
    ("rw_nc", 2),
    ("rw_levels", 2),
    ("rw_modes", 2),
    ("spread", 1),
    ("trend", 1),
    ("volatility", 1),
)
DATA = (
    ("tilt_prior", 2),
    ("domain_mask", 2),
    ("time_weights", 3),
    ("levels_mask", 1),
    ("modes_basis", 3),
    ("modes_information", 2),
    ("modes_drift", 1),
    ("to_inc", 2),
    ("years", 1),
    ("index", 2),
    ("weights", 2),
)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _density_and_gradient(
    free, offset, znc, xc, rnc, lev, mod, spread, trend, vol,
    tilt_p, dmask, tw, lmask, basis, minfo, mdrift, to_inc, years, index, weights,
    ref, families, derived, walk, has_trend, log_jac,
):  # fmt: skip
    """(log density, gradients of the ten PARAMETERS). Plain loops: Numba compiles this function.

    ``families`` (G,) int codes into TILT_FAMILIES (used when ``derived``: the tilt is derived
    from centred domains or is the coordinate ``free``, and this density includes its prior and
    the Normal(0, 1) of ``znc``); otherwise ``free`` and ``znc`` are the model's own tilt and
    domain effects, whose densities the model carries. ``basis`` (G, n, n) holds the walk's modes as
    rows (``WalkModes.data``). ``to_inc`` (n, n) maps a group's levels
    coordinates to its walk's increments, ``log_jac`` that map's log Jacobian.
    """
    n_g, n_d = znc.shape
    n_q = years.shape[0]
    n = rnc.shape[1]
    total = 0.0
    g_free = np.zeros(n_g)
    g_offset = np.zeros(n_g)
    g_znc = np.zeros((n_g, n_d))
    g_xc = np.zeros((n_g, n_d))
    g_rnc = np.zeros((n_g, n))
    g_lev = np.zeros((n_g, n))
    g_mod = np.zeros((n_g, n))
    g_spread = np.zeros(n_g)
    g_trend = np.zeros(n_g)
    g_vol = np.zeros(n_g)

    # The walk's standardised increments, and the density of its coordinates.
    rwz = np.zeros((n_g, n))
    factor = np.ones((n_g, n))
    in_modes = np.zeros((n_g, n))  # basis.T @ mod, per group (modes with information only)
    in_levels = np.zeros(n_g, dtype=np.bool_)
    for g in range(n_g):
        if walk == NO_WALK:
            continue
        v = vol[g]
        mu = trend[g] / 4.0 if has_trend else 0.0
        in_levels[g] = (walk == LEVELS or walk == LEVELS_MODES) and lmask[g] > 0.5
        if walk == PLAIN_WALK:
            for s in range(n):
                rwz[g, s] = rnc[g, s]
        elif in_levels[g]:
            log_v = math.log(v)
            for j in range(n):  # increments = lev @ to_inc, row by row (contiguous)
                x = lev[g, j]
                for s in range(n):
                    rwz[g, s] += x * to_inc[j, s]
            for s in range(n):
                rwz[g, s] = (rwz[g, s] - mu) / v
                total += -0.5 * rwz[g, s] * rwz[g, s] - log_v - _HALF_LOG_2PI
            total += log_jac
            for s in range(n):  # the other form's coordinates, unused
                x = rnc[g, s] if walk == LEVELS else mod[g, s]
                total += -0.5 * x * x - _HALF_LOG_2PI
        elif walk == MODES or walk == LEVELS_MODES:
            # rwz = mod + basis @ ((factor - 1) * basis.T @ mod) - shift, over the modes with
            # information only (build._walk_in_modes): the others have factor 1.
            shift = mu * v * mdrift[g] / (1.0 + v * v * mdrift[g])
            bg = basis[g]
            for s in range(n):
                rwz[g, s] = mod[g, s] - shift
            # log prod(factor) as a product, one log per 1e150 of it: 46 logs cost more than the
            # matrix products below
            product = 1.0
            for k in range(n):
                if minfo[g, k] <= 0.0:
                    continue
                precision = 1.0 + v * v * minfo[g, k]
                factor[g, k] = 1.0 / math.sqrt(precision)
                product *= precision
                if product > 1e150:
                    total -= 0.5 * math.log(product)
                    product = 1.0
                x = 0.0
                for s in range(n):
                    x += bg[k, s] * mod[g, s]
                in_modes[g, k] = x
                x *= factor[g, k] - 1.0
                for s in range(n):
                    rwz[g, s] += bg[k, s] * x
            total -= 0.5 * math.log(product)
            for s in range(n):
                total += -0.5 * rwz[g, s] * rwz[g, s] - _HALF_LOG_2PI
            if walk == LEVELS_MODES:
                for s in range(n):
                    total += -0.5 * lev[g, s] * lev[g, s] - _HALF_LOG_2PI
        else:  # LEVELS: this group's increments are its coordinates
            for s in range(n):
                rwz[g, s] = rnc[g, s]
                total += -0.5 * rnc[g, s] * rnc[g, s] - 0.5 * lev[g, s] * lev[g, s] - 2.0 * _HALF_LOG_2PI

    # The time effect b[g, t] = trend * years[t] + volatility * (walk[t] - walk[ref]).
    rel = np.zeros((n_g, n_q))
    b = np.zeros((n_g, n_q))
    for g in range(n_g):
        if walk != NO_WALK:
            for t in range(1, n_q):
                rel[g, t] = rel[g, t - 1] + rwz[g, t - 1]
            anchor = rel[g, ref]
            for t in range(n_q):
                rel[g, t] -= anchor
        for t in range(n_q):
            b[g, t] = (trend[g] * years[t] if has_trend else 0.0) + (vol[g] * rel[g, t] if walk != NO_WALK else 0.0)

    # Domains: each one's log-odds at the reference quarter, the tilt, and their densities.
    a = np.empty((n_g, n_d))
    centred_a = np.zeros((n_g, n_d))
    tilt = np.empty(n_g)
    count = np.zeros(n_g)
    for g in range(n_g):
        if not derived:
            tilt[g] = free[g]
            for d in range(n_d):
                a[g, d] = free[g] + spread[g] * znc[g, d]
            continue
        k = 0
        mean = 0.0
        for d in range(n_d):
            x = xc[g, d]
            for t in range(n_q):
                x -= tw[g, d, t] * b[g, t]
            centred_a[g, d] = x
            if dmask[g, d] > 0.5:
                k += 1
                mean += x
        count[g] = k
        if k > 0:
            tilt[g] = mean / k + spread[g] * offset[g] / math.sqrt(k)
            total += math.log(spread[g]) - 0.5 * math.log(k) - 0.5 * free[g] * free[g] - _HALF_LOG_2PI
        else:
            tilt[g] = free[g]
            total += -0.5 * offset[g] * offset[g] - _HALF_LOG_2PI
        p = tilt_p[g]
        if families[g] == 0:  # Normal(mu, sigma)
            r = (tilt[g] - p[0]) / p[1]
            total += -0.5 * r * r - math.log(p[1]) - _HALF_LOG_2PI
        else:  # StudentT(nu, mu, sigma)
            nu, r = p[0], (tilt[g] - p[1]) / p[2]
            total += (
                math.lgamma(0.5 * (nu + 1.0))
                - math.lgamma(0.5 * nu)
                - 0.5 * math.log(nu * math.pi)
                - math.log(p[2])
                - 0.5 * (nu + 1.0) * math.log1p(r * r / nu)
            )
        log_s = math.log(spread[g])
        for d in range(n_d):
            total += -0.5 * znc[g, d] * znc[g, d] - _HALF_LOG_2PI
            if dmask[g, d] > 0.5:
                r = (centred_a[g, d] - tilt[g]) / spread[g]
                total += -0.5 * r * r - log_s - _HALF_LOG_2PI
                a[g, d] = centred_a[g, d]
            else:
                total += -0.5 * xc[g, d] * xc[g, d] - _HALF_LOG_2PI
                a[g, d] = tilt[g] + spread[g] * znc[g, d]

    cells_total, da, db = bernoulli_cells(a, b, index, weights)
    total += cells_total

    # Back through the domains and the tilt.
    g_a = np.empty(n_d)
    for g in range(n_g):
        if not derived:
            for d in range(n_d):
                g_free[g] += da[g, d]
                g_spread[g] += da[g, d] * znc[g, d]
                g_znc[g, d] = da[g, d] * spread[g]
            continue
        p = tilt_p[g]
        if families[g] == 0:
            g_tilt = -(tilt[g] - p[0]) / (p[1] * p[1])
        else:
            dev = tilt[g] - p[1]
            g_tilt = -(p[0] + 1.0) * dev / (p[0] * p[2] * p[2] + dev * dev)
        g_a[:] = 0.0
        for d in range(n_d):
            g_znc[g, d] = -znc[g, d]
            if dmask[g, d] > 0.5:
                r = (centred_a[g, d] - tilt[g]) / spread[g]
                g_a[d] = da[g, d] - r / spread[g]
                g_tilt += r / spread[g]
                g_spread[g] += (r * r - 1.0) / spread[g]
            else:
                g_xc[g, d] = -xc[g, d]
                g_tilt += da[g, d]
                g_spread[g] += da[g, d] * znc[g, d]
                g_znc[g, d] += da[g, d] * spread[g]
        k = count[g]
        if k > 0:
            root = math.sqrt(k)
            g_spread[g] += g_tilt * offset[g] / root + 1.0 / spread[g]
            g_offset[g] = g_tilt * spread[g] / root
            g_free[g] = -free[g]
            for d in range(n_d):
                if dmask[g, d] > 0.5:
                    g_a[d] += g_tilt / k
        else:
            g_free[g] = g_tilt
            g_offset[g] = -offset[g]
        for d in range(n_d):
            if dmask[g, d] > 0.5:
                g_xc[g, d] = g_a[d]
                for t in range(n_q):
                    db[g, t] -= g_a[d] * tw[g, d, t]

    # Back through the time effect and the walk's coordinates.
    g_rwz = np.zeros(n)
    y = np.zeros(n)
    for g in range(n_g):
        if has_trend:
            for t in range(n_q):
                g_trend[g] += db[g, t] * years[t]
        if walk == NO_WALK:
            continue
        v = vol[g]
        mu = trend[g] / 4.0 if has_trend else 0.0
        total_rel = 0.0
        for t in range(n_q):
            g_vol[g] += db[g, t] * rel[g, t]
            total_rel += db[g, t] * v
        # rel[g, t] = sum_s rwz[g, s] * (1[s < t] - 1[s < ref])
        after = 0.0
        for s in range(n - 1, -1, -1):
            after += db[g, s + 1] * v
            g_rwz[s] = after - total_rel if s < ref else after
        if walk == PLAIN_WALK:
            for s in range(n):
                g_rnc[g, s] = g_rwz[s]
        elif in_levels[g]:
            y_sum = 0.0
            for s in range(n):
                y[s] = g_rwz[s] - rwz[g, s]  # the cells' pull and the walk density's
                y_sum += y[s]
                g_vol[g] -= y[s] * rwz[g, s] / v
            g_vol[g] -= n / v
            for j in range(n):
                x = 0.0
                for s in range(n):
                    x += to_inc[j, s] * y[s]
                g_lev[g, j] = x / v
            if has_trend:
                g_trend[g] -= y_sum / v / 4.0
            for s in range(n):
                if walk == LEVELS:
                    g_rnc[g, s] = -rnc[g, s]
                else:
                    g_mod[g, s] = -mod[g, s]
        elif walk == MODES or walk == LEVELS_MODES:
            y_sum = 0.0
            for s in range(n):
                y[s] = g_rwz[s] - rwz[g, s]
                y_sum += y[s]
            bg = basis[g]
            for s in range(n):
                g_mod[g, s] = y[s]
            for k in range(n):
                if minfo[g, k] <= 0.0:
                    continue
                u = 0.0  # (basis.T @ y)[k]
                for s in range(n):
                    u += bg[k, s] * y[s]
                f = factor[g, k]
                x = u * (f - 1.0)
                for s in range(n):
                    g_mod[g, s] += bg[k, s] * x
                # d log f / d v = -v I f^2; d f / d v = -v I f^3
                g_vol[g] += -(u * in_modes[g, k] * f + 1.0) * v * minfo[g, k] * f * f
            precision = 1.0 + v * v * mdrift[g]
            h = v * mdrift[g] / precision
            dh = mdrift[g] * (1.0 - v * v * mdrift[g]) / (precision * precision)
            # rwz = ... - h(v) mu: its cotangent -sum(y)
            if has_trend:
                g_trend[g] += -y_sum * h / 4.0
            g_vol[g] += -y_sum * mu * dh
            if walk == LEVELS_MODES:
                for s in range(n):
                    g_lev[g, s] = -lev[g, s]
        else:
            for s in range(n):
                g_rnc[g, s] = g_rwz[s] - rnc[g, s]
                g_lev[g, s] = -lev[g, s]
    return total, g_free, g_offset, g_znc, g_xc, g_rnc, g_lev, g_mod, g_spread, g_trend, g_vol


# Salts the on-disk compile cache key: the source of the kernel and of the cell loop it calls, so
# an edited kernel is never served from the cache of an older one.
_SOURCE = (
    inspect.getsource(_density_and_gradient)
    + inspect.getsource(bernoulli_cells.py_func)
    + repr(sorted(KERNEL_FASTMATH))
)
_IMPLEMENTATION_VERSION = int(hashlib.sha256(_SOURCE.encode()).hexdigest()[:12], 16)


# One compiled kernel per process, cached on disk by Numba, serves every model (its constants are
# arguments): compiled once per Op instead it took ~10 s for each configuration.
_kernel = numba.njit(cache=True, boundscheck=False, fastmath=KERNEL_FASTMATH)(_density_and_gradient)


class CoordinateLoglik(Op):
    """(ten PARAMETERS, eleven DATA) -> (log density, one gradient per parameter).

    Props: ``ref`` (the quarter the walk is anchored at), ``n_quarters``, ``families`` (a tilt
    prior family code per group, index into TILT_FAMILIES, or () when the tilt and domain effects
    are the model's own random variables), ``walk`` (NO_WALK ... LEVELS_MODES) and ``trend`` (the
    study has one). The ``to_inc`` data are ``levels_map(n_quarters, ref)[0]``.
    """

    __props__ = ("ref", "n_quarters", "families", "walk", "trend")

    def __init__(self, ref: int, n_quarters: int, families: tuple[int, ...], walk: int, trend: bool):
        self.ref, self.n_quarters = int(ref), int(n_quarters)
        self.families, self.walk, self.trend = tuple(int(f) for f in families), int(walk), bool(trend)
        self.log_jacobian = levels_map(self.n_quarters, self.ref)[1]  # derived from the props

    def constants(self) -> tuple:
        """The kernel's trailing arguments (``_density_and_gradient``)."""
        families = self.families or (0,)
        return self.ref, families, bool(self.families), self.walk, self.trend, self.log_jacobian

    def make_node(self, *inputs):
        if len(inputs) != len(PARAMETERS) + len(DATA):
            raise TypeError(f"CoordinateLoglik takes {len(PARAMETERS) + len(DATA)} inputs")
        variables = []
        for (name, ndim), x in zip(PARAMETERS + DATA, inputs, strict=True):
            x = pt.as_tensor_variable(x) if name == "index" else pt.as_tensor_variable(x, dtype="float64")
            if x.ndim != ndim:
                raise TypeError(f"CoordinateLoglik: {name} must have {ndim} dimension(s), not {x.ndim}")
            variables.append(x)
        if not variables[-2].dtype.startswith(("int", "uint")):
            raise TypeError("CoordinateLoglik: index must be integer")
        outputs = [pt.dscalar()] + [x.type() for x in variables[: len(PARAMETERS)]]
        return Apply(self, variables, outputs)

    def perform(self, node, inputs, output_storage):
        values = _kernel(*inputs, *self.constants())
        for storage, value in zip(output_storage, values, strict=True):
            storage[0] = np.asarray(value, dtype=np.float64)

    def infer_shape(self, fgraph, node, input_shapes):
        return [(), *input_shapes[: len(PARAMETERS)]]

    def connection_pattern(self, node):
        n_out = 1 + len(PARAMETERS)
        return [[True] * n_out] * len(PARAMETERS) + [[False] * n_out] * (len(DATA) - 1) + [[True] * n_out]

    def pullback(self, inputs, outputs, cotangents):
        g_total, *g_grads = cotangents
        if not all(isinstance(g.type, DisconnectedType) for g in g_grads):
            raise NotImplementedError("CoordinateLoglik has no second derivatives")
        return [
            *(g_total * grad for grad in outputs[1:]),
            *(disconnected_type() for _ in DATA[:-1]),
            grad_not_implemented(self, len(inputs) - 1, inputs[-1], "the reliability weights are data"),
        ]


@register_funcify_default_op_cache_key(CoordinateLoglik)
def _numba_coordinate_loglik(op, node, **kwargs):
    ref, families, derived, walk, trend, log_jac = op.constants()
    kernel = _kernel

    @numba_basic.numba_njit(boundscheck=False)
    def coordinate_loglik(
        free, offset, znc, xc, rnc, lev, mod, spread, trend_, vol,
        tilt_p, dmask, tw, lmask, basis, minfo, mdrift, to_inc, years, index, weights,
    ):  # fmt: skip
        out = kernel(
            free, offset, znc, xc, rnc, lev, mod, spread, trend_, vol,
            tilt_p, dmask, tw, lmask, basis, minfo, mdrift, to_inc, years, index, weights,
            ref, families, derived, walk, trend, log_jac,
        )  # fmt: skip
        return (np.array(out[0]),) + out[1:]

    return coordinate_loglik, _IMPLEMENTATION_VERSION
