"""Gradients by central finite differences, to check analytic ones in tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def central_differences(f: Callable[[dict], float], params: dict, name: str, h: float) -> np.ndarray:
    """d f / d params[name], element by element: (f(x + h) - f(x - h)) / 2h, every other parameter
    held at its value (``params`` is not changed)."""
    numeric = np.zeros_like(params[name], dtype=float)
    for i in np.ndindex(params[name].shape):
        up = {k: np.array(v, dtype=float, copy=True) for k, v in params.items()}
        down = {k: np.array(v, dtype=float, copy=True) for k, v in params.items()}
        up[name][i] += h
        down[name][i] -= h
        numeric[i] = (f(up) - f(down)) / (2 * h)
    return numeric


def assert_gradients_match_central_differences(
    value_and_grads: Callable[[dict], Sequence], params: dict, names: Sequence[str], h: float, tol: float
) -> None:
    """``value_and_grads(params)`` is (value, d/d params[names[0]], ...): each gradient equals the
    central differences of the value (step ``h``) within ``tol``, absolute and relative."""
    grads = value_and_grads(params)[1:]
    for name, grad in zip(names, grads, strict=True):
        numeric = central_differences(lambda p: value_and_grads(p)[0], params, name, h)
        np.testing.assert_allclose(grad, numeric, rtol=tol, atol=tol, err_msg=name)
