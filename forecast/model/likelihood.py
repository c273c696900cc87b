"""The reliability-weighted cell log-likelihood, with its gradient, as one fused PyTensor Op.

For group g, domain d and quarter t the model's log-odds are (see forecast/model.py)

    eta[g, d, t] = a[g, d] + b[g, t]
    a[g, d] = tilt[g] + spread[g] * z[g, d]
    b[g, t] = trend[g] * years[t] + volatility[g] * (walk[g, t] - walk[g, ref]),
    walk[g, t] = steps[g, 0] + ... + steps[g, t - 1]

and the log-likelihood sums ``w_coop * log sigmoid(eta) + w_conf * log sigmoid(-eta)`` over the
observed cells. NUTS spends its time evaluating this and its gradient. Built from ordinary
PyTensor ops, that graph has ~80 nodes (advanced indexing to gather the cells, advanced
increments to scatter the gradient back, a cumulative sum and its transpose, concatenations,
broadcasts) and in PyTensor's Numba backend each node allocates its output: ~75% of every
gradient evaluation went there. This Op computes the value and every gradient in one pass over
the cells plus O(groups x (domains + quarters)) work, allocating only the gradient arrays.

It returns the log-likelihood and its gradients with respect to tilt, spread, z, trend,
volatility and steps; its pullback reuses them (NUTS needs first derivatives only). A study
without a trend or a random walk passes zeros for those inputs. ``perform`` is the NumPy
reference (any PyTensor backend); the Numba implementation is the one nutpie compiles.
``tests/test_likelihood.py`` checks both against each other, against ``model.latent_logit``
and against finite differences. With ``[model] overdispersion = "cell"`` the model uses
``forecast.model.overdispersion.CellPolyaLoglik`` instead (same layout, one more parameter).
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

# Bump when the Numba implementation changes: it salts the on-disk compile cache key.
_IMPLEMENTATION_VERSION = 2

# Inputs, in order, with their ranks. The first six are differentiable parameters.
PARAMETERS = (("tilt", 1), ("spread", 1), ("z", 2), ("trend", 1), ("volatility", 1), ("steps", 2))
DATA = (("years", 1), ("index", 2), ("weights", 2))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _relative_walk(steps: np.ndarray, ref: int) -> np.ndarray:
    walk = np.concatenate([np.zeros_like(steps[:, :1]), np.cumsum(steps, axis=1)], axis=1)
    return walk - walk[:, ref : ref + 1]


def cell_eta_numpy(tilt, spread, z, trend, volatility, steps, years, index, ref: int):
    """Each cell's log-odds, and the walk relative to the reference quarter (G, Q)."""
    rel = _relative_walk(steps, ref)
    a = tilt[:, None] + spread[:, None] * z
    b = trend[:, None] * years + volatility[:, None] * rel
    g, d, t = index[:, 0], index[:, 1], index[:, 2]
    return a[g, d] + b[g, t], rel


def parameter_gradients_numpy(grad_eta, spread, z, volatility, steps, years, index, rel, ref: int):
    """Gradients with respect to (tilt, spread, z, trend, volatility, steps), from d/deta per cell."""
    g, d, t = index[:, 0], index[:, 1], index[:, 2]
    da, db = np.zeros(z.shape), np.zeros(rel.shape)
    np.add.at(da, (g, d), grad_eta)
    np.add.at(db, (g, t), grad_eta)
    d_rel = db * volatility[:, None]
    # rel[:, t] = sum_s steps[:, s] * (1[s < t] - 1[s < ref])
    after = np.cumsum(d_rel[:, ::-1], axis=1)[:, ::-1][:, 1:]  # sum over t > s
    before_ref = (np.arange(steps.shape[1]) < ref).astype(float)
    d_steps = after - before_ref * d_rel.sum(axis=1, keepdims=True)
    return (
        da.sum(axis=1),
        (da * z).sum(axis=1),
        da * spread[:, None],
        db @ years,
        (db * rel).sum(axis=1),
        d_steps,
    )


def cell_loglik_numpy(tilt, spread, z, trend, volatility, steps, years, index, weights, ref: int):
    """Reference implementation: (log-likelihood, d/dtilt, d/dspread, d/dz, d/dtrend, d/dvolatility, d/dsteps)."""
    eta, rel = cell_eta_numpy(tilt, spread, z, trend, volatility, steps, years, index, ref)
    loglik = float(np.sum(-weights[:, 0] * _softplus(-eta) - weights[:, 1] * _softplus(eta)))
    p = 1.0 / (1.0 + np.exp(-eta))
    grad_eta = weights[:, 0] * (1.0 - p) - weights[:, 1] * p
    return (loglik, *parameter_gradients_numpy(grad_eta, spread, z, volatility, steps, years, index, rel, ref))


class FusedCellLoglik(Op):
    """A cell log-likelihood fused with its gradients: (parameters..., years, index, weights) ->
    (loglik, one gradient per parameter).

    Subclasses name their differentiable ``parameters`` (name, rank) and their NumPy ``reference``
    (the Numba implementation is registered per subclass). ``ref`` is the quarter at which the
    walk is anchored at zero.
    """

    __props__ = ("ref",)
    parameters: tuple[tuple[str, int], ...] = ()

    def __init__(self, ref: int):
        self.ref = int(ref)

    @staticmethod
    def reference(*inputs, ref: int):
        raise NotImplementedError

    def make_node(self, *inputs):
        name_of = type(self).__name__
        n_params = len(self.parameters)
        if len(inputs) != n_params + len(DATA):
            raise TypeError(f"{name_of} takes {n_params + len(DATA)} inputs")
        variables = []
        for (name, ndim), x in zip(self.parameters + DATA, inputs, strict=True):
            x = pt.as_tensor_variable(x) if name == "index" else pt.as_tensor_variable(x, dtype="float64")
            if x.ndim != ndim:
                raise TypeError(f"{name_of}: {name} must have {ndim} dimension(s), not {x.ndim}")
            variables.append(x)
        if not variables[n_params + 1].dtype.startswith(("int", "uint")):
            raise TypeError(f"{name_of}: index must be integer")
        outputs = [pt.dscalar()] + [x.type() for x in variables[:n_params]]
        return Apply(self, variables, outputs)

    def perform(self, node, inputs, output_storage):
        for storage, value in zip(output_storage, self.reference(*inputs, ref=self.ref), strict=True):
            storage[0] = np.asarray(value, dtype=np.float64)

    def infer_shape(self, fgraph, node, input_shapes):
        return [(), *input_shapes[: len(self.parameters)]]

    def connection_pattern(self, node):
        n_out = 1 + len(self.parameters)
        return [[True] * n_out] * len(self.parameters) + [[False] * n_out] * 2 + [[True] * n_out]

    def pullback(self, inputs, outputs, cotangents):
        g_loglik, *g_grads = cotangents
        if not all(isinstance(g.type, DisconnectedType) for g in g_grads):
            raise NotImplementedError(f"{type(self).__name__} has no second derivatives")
        return [
            *(g_loglik * grad for grad in outputs[1:]),
            disconnected_type(),
            disconnected_type(),
            grad_not_implemented(self, len(inputs) - 1, inputs[-1], "the reliability weights are data"),
        ]


class CellLoglik(FusedCellLoglik):
    """(tilt, spread, z, trend, volatility, steps, years, index, weights) -> (loglik, 6 gradients).

    Shapes: tilt, spread, trend, volatility (G,); z (G, D); steps (G, Q - 1); years (Q,);
    index (N, 3) integer (group, domain, quarter) per cell; weights (N, 2) (cooperative,
    conflictual) per cell. ``ref`` is the quarter at which the walk is anchored at zero.
    """

    parameters = PARAMETERS
    reference = staticmethod(cell_loglik_numpy)


# PyTensor's fast-math flags for its own Numba code (no assumptions about NaN or infinity).
FASTMATH = {"arcp", "contract", "afn", "reassoc", "nsz"}


@numba.njit(cache=True, boundscheck=False, fastmath=FASTMATH)
def bernoulli_cells(a, b, index, weights):
    """The cells' reliability-weighted Bernoulli log-likelihood at log-odds ``a[g, d] + b[g, t]``
    and its gradients with respect to ``a`` (G, D) and ``b`` (G, Q): (total, da, db). The one
    pass over the cells that this Op and ``forecast.model.coordinates`` share."""
    da = np.zeros(a.shape)
    db = np.zeros(b.shape)
    total = 0.0
    for c in range(index.shape[0]):
        g, d, t = index[c, 0], index[c, 1], index[c, 2]
        eta = a[g, d] + b[g, t]
        wc, wf = weights[c, 0], weights[c, 1]
        # softplus(eta) = max(eta, 0) + log1p(exp(-|eta|)), and sigmoid(eta) from the same
        # exp, without branches (cells' signs are unpredictable).
        e = np.exp(-abs(eta))
        softplus = max(eta, 0.0) + np.log1p(e)
        total -= wc * (softplus - eta) + wf * softplus
        r = 1.0 / (1.0 + e)
        p = r if eta >= 0.0 else e * r
        grad = wc - (wc + wf) * p
        da[g, d] += grad
        db[g, t] += grad
    return total, da, db


@register_funcify_default_op_cache_key(CellLoglik)
def _numba_cell_loglik(op, node, **kwargs):
    ref = op.ref

    @numba_basic.numba_njit(boundscheck=False)
    def cell_loglik_numba(tilt, spread, z, trend, volatility, steps, years, index, weights):
        n_g, n_d = z.shape
        n_q = years.shape[0]
        rel = np.zeros((n_g, n_q))
        b = np.empty((n_g, n_q))
        a = np.empty((n_g, n_d))
        for g in range(n_g):
            for t in range(1, n_q):
                rel[g, t] = rel[g, t - 1] + steps[g, t - 1]
            anchor = rel[g, ref]
            for t in range(n_q):
                rel[g, t] -= anchor
                b[g, t] = trend[g] * years[t] + volatility[g] * rel[g, t]
            for d in range(n_d):
                a[g, d] = tilt[g] + spread[g] * z[g, d]

        total, da, db = bernoulli_cells(a, b, index, weights)

        d_tilt = np.zeros(n_g)
        d_spread = np.zeros(n_g)
        d_z = np.empty((n_g, n_d))
        d_trend = np.zeros(n_g)
        d_vol = np.zeros(n_g)
        d_steps = np.empty(steps.shape)
        for g in range(n_g):
            for d in range(n_d):
                d_tilt[g] += da[g, d]
                d_spread[g] += da[g, d] * z[g, d]
                d_z[g, d] = da[g, d] * spread[g]
            total_rel = 0.0
            for t in range(n_q):
                d_trend[g] += db[g, t] * years[t]
                d_vol[g] += db[g, t] * rel[g, t]
                total_rel += db[g, t] * volatility[g]
            # rel[g, t] = sum_s steps[g, s] * (1[s < t] - 1[s < ref])
            after = 0.0
            for s in range(n_q - 2, -1, -1):
                after += db[g, s + 1] * volatility[g]
                d_steps[g, s] = after - total_rel if s < ref else after
        return np.array(total), d_tilt, d_spread, d_z, d_trend, d_vol, d_steps

    return cell_loglik_numba, _IMPLEMENTATION_VERSION
