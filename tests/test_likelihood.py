"""The fused cell log-likelihood Op: same value as the model's formula, exact gradients, same in
NumPy and Numba, and usable in a PyTensor graph (gradient through the pullback)."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from builders_likelihood import random_parameters_and_cells
from numeric_gradients import assert_gradients_match_central_differences

from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, latent_logit
from forecast.model.likelihood import CellLoglik, cell_loglik_numpy

G, D, Q = 3, 4, 9


def _case(seed: int, n_cells: int = 40, ref: int = 5, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    params, years, index, weights = random_parameters_and_cells(rng, (G, D, Q), n_cells, ref, scale)
    return params, years, index, weights, ref


def _args(params, years, index, weights):
    return (*(params[k] for k in ("tilt", "spread", "z", "trend", "volatility", "steps")), years, index, weights)


def _graph(ref: int):
    inputs = [pt.dvector("tilt"), pt.dvector("spread"), pt.dmatrix("z"), pt.dvector("trend")]
    inputs += [pt.dvector("volatility"), pt.dmatrix("steps"), pt.dvector("years"), pt.lmatrix("index")]
    inputs += [pt.dmatrix("weights")]
    loglik = CellLoglik(ref)(*inputs)[0]
    grads = pt.grad(loglik, inputs[:6])
    return inputs, [loglik, *grads]


def _numba_and_python(ref: int):
    inputs, outputs = _graph(ref)
    return (
        pytensor.function(inputs, outputs, mode="NUMBA"),
        pytensor.function(inputs, outputs, mode="FAST_COMPILE"),  # Python perform
    )


def test_loglik_equals_the_weighted_bernoulli_sum_over_the_model_grid():
    params, years, index, weights, ref = _case(0)
    eta = latent_logit(
        np,
        {**params, DOMAIN_EFFECT: params["z"], RW_STEPS: params["steps"]},
        years,
        ref,
        ("trend", "random_walk"),
    )[index[:, 0], index[:, 1], index[:, 2]]
    p = 1.0 / (1.0 + np.exp(-eta))
    expected = np.sum(weights[:, 0] * np.log(p) + weights[:, 1] * np.log1p(-p))
    value = cell_loglik_numpy(*_args(params, years, index, weights), ref=ref)[0]
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", [1, 2])
def test_gradients_match_central_finite_differences(seed):
    params, years, index, weights, ref = _case(seed)

    def loglik(p):
        return cell_loglik_numpy(*_args(p, years, index, weights), ref=ref)

    names = ("tilt", "spread", "z", "trend", "volatility", "steps")
    assert_gradients_match_central_differences(loglik, params, names, h=1e-6, tol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("ref", [0, 4, Q - 1])
def test_numba_implementation_equals_numpy_reference_and_pullback(ref):
    params, years, index, weights, _ = _case(3, ref=ref, scale=8.0)  # large |eta|: both softplus branches
    args = _args(params, years, index, weights)
    expected = cell_loglik_numpy(*args, ref=ref)
    fn_numba, fn_python = _numba_and_python(ref)
    for fn in (fn_numba, fn_python):
        got = fn(*args)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_extreme_log_odds_stay_finite():
    params, years, index, weights, ref = _case(4)
    params["tilt"] = np.array([800.0, -800.0, 0.0])
    fn_numba, _ = _numba_and_python(ref)
    out = fn_numba(*_args(params, years, index, weights))
    assert all(np.all(np.isfinite(o)) for o in out)


def test_second_derivatives_are_refused():
    inputs, outputs = _graph(2)
    with pytest.raises(NotImplementedError, match="second derivatives"):
        pt.grad(outputs[1].sum(), inputs[0])
