"""nutpie's compiled model, with its C entry points cached on disk between processes.

``nutpie.compile_pymc_model`` turns PyTensor's log density (and gradient) into Numba code,
then wraps it in two C callbacks (``numba.cfunc``) that the Rust sampler calls. PyTensor
caches its part on disk, but nutpie's wrappers close over Python objects and are rebuilt in
every process: ~15-20 s for the study's model, most of a ``forecast update``.

This module builds the same ``CompiledPyMCModel`` with wrappers generated as plain source
that reads the shared data through nutpie's own ``user_data`` record (so ``with_data`` still
swaps hypotheses' priors without recompiling) and registers them with PyTensor's Numba cache
under a key derived from the source and from PyTensor's key for the wrapped function. A new
process then loads the wrappers in well under a second.

If anything here does not fit the installed nutpie (it uses nutpie internals), it falls back to
``nutpie.compile_pymc_model``: slower, never wrong. ``FORECAST_NUTPIE_CACHE=0`` forces that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings

import numpy as np

# Part of every cache key: bump it when the generated source or its environment changes.
_FORMAT = "2"

# Keeps the generated Python functions alive: PyTensor's cache registry holds them weakly.
_WRAPPERS: list = []


def compile_model(model):
    """A nutpie ``CompiledPyMCModel`` for ``model``, with the C wrappers loaded from disk."""
    import nutpie

    if os.environ.get("FORECAST_NUTPIE_CACHE", "1") == "0":
        return nutpie.compile_pymc_model(model)
    try:
        return _compile_cached(model)
    except (AttributeError, ImportError, TypeError, ValueError, KeyError, NotImplementedError) as err:
        # A log record, not a warning: callers silence compiler warnings, and this one matters
        # (every process then pays nutpie's full compile again).
        logging.getLogger("forecast").warning(
            "nutpie wrapper cache unavailable (%s: %s); compiling the usual way (slower)", type(err).__name__, err
        )
        return nutpie.compile_pymc_model(model)


def _compile_cached(model):
    """What ``nutpie.compile_pymc_model(model)`` does with the numba backend, minus the rebuild."""
    from nutpie import compile_pymc as ncp
    from pymc.initial_point import make_initial_point_fn

    initial_point_fn = make_initial_point_fn(
        model=model,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    initial_point_fn = ncp._wrap_with_lock(initial_point_fn)
    (n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_fn, shape_info, reparameterized) = ncp._make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point_fn,
        var_names=None,
    )

    shared_data, shared_var_keys = {}, {}
    for var in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if var in shared_var_keys:
            continue
        key = f"s{len(shared_var_keys)}"  # stable names, so the generated source is stable
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[key] = value
        shared_var_keys[var] = key
    user_data = ncp.make_user_data(shared_var_keys, shared_data)

    logp_keys = [shared_var_keys[v] for v in logp_fn_pt.get_shared()]
    expand_keys = [shared_var_keys[v] for v in expand_fn_pt.get_shared()]
    logp_c = _cfunc("logp", logp_fn_pt.vm.jit_fn, n_dim, n_expanded, logp_keys, shared_data, user_data)
    expand_c = _cfunc("expand", expand_fn_pt.vm.jit_fn, n_dim, n_expanded, expand_keys, shared_data, user_data)

    dims, coords = ncp._prepare_dims_and_coords(model, shape_info, reparameterized)
    return ncp.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=initial_fn,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn_pt,
        expand_func=expand_fn_pt,
        reparameterized_names=reparameterized,
    )


def _shared_layout(user_data: np.ndarray, key: str, ndim: int) -> tuple[int, list[int]]:
    """Positions, in 8-byte words of nutpie's user-data record, of one array's pointer and shape."""
    shared = user_data.dtype.fields["shared"]
    base = shared[1]
    parts = shared[0].fields
    data_at = base + parts["data"][1] + parts["data"][0].fields[key][1]
    shape_at = base + parts["shape"][1] + parts["shape"][0].fields[key][1]
    if data_at % 8 or shape_at % 8:
        raise ValueError("unexpected user-data layout")
    return data_at // 8, [shape_at // 8 + i for i in range(ndim)]


def _source(kind: str, n_dim: int, n_expanded: int, keys: list[str], shared_data: dict, user_data) -> str:
    """Python source of the C wrapper: unpack the shared arrays, call PyTensor's function."""
    lines, args = [], []
    for i, key in enumerate(keys):
        arr = shared_data[key]
        if arr.ndim == 0:
            raise NotImplementedError("0-d shared variables")
        data_at, shape_at = _shared_layout(user_data, key, arr.ndim)
        shape = ", ".join(f"int(ud[{j}])" for j in shape_at)
        lines.append(f"        a{i} = carray(as_pointer(ud[{data_at}]), ({shape},), np.{arr.dtype.name})")
        args.append(f"a{i}")
    n_words = max(user_data.dtype.itemsize // 8, 1)
    unpack = "\n".join(lines)
    call = ", ".join(["x", *args])
    if kind == "logp":
        return f"""
def forecast_logp_wrapper(dim, x_, out_, logp_, ud_):
    if dim != {n_dim}:
        return -1
    try:
        ud = carray(ud_, ({n_words},))
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_dim},))
{unpack}
        logp_val, grad = inner({call})
        logp_[0] = logp_val
        out[:] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""
    return f"""
def forecast_expand_wrapper(dim, expanded, x_, out_, ud_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        ud = carray(ud_, ({n_words},))
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_expanded},))
{unpack}
        (values,) = inner({call})
        out[:] = values
    except Exception:
        return -2
    return 0
"""


def _cfunc(kind: str, inner, n_dim: int, n_expanded: int, keys: list[str], shared_data: dict, user_data):
    import numba
    import nutpie
    from numba import types
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    src = _source(kind, n_dim, n_expanded, keys, shared_data, user_data)
    inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    cache_key = None
    if inner_key is not None:
        digest = hashlib.sha256(
            # The module name too: Numba pickles it with the function, and an entry cached by
            # a module since moved (forecast.compile_cache) fails to load.
            "\n".join([_FORMAT, __name__, src, inner_key, numba.__version__, nutpie.__version__]).encode()
        ).hexdigest()
        cache_key = f"forecast_nutpie_{kind}_{digest}"
    name = f"forecast_{kind}_wrapper"
    # ``__name__`` lets Numba rebuild the function's environment when it loads it from disk.
    env = {
        "__name__": __name__,
        "np": np,
        "carray": numba.carray,
        "as_pointer": address_as_void_pointer,
        "inner": inner,
    }
    py_func = compile_numba_function_src(src, name, global_env=env, cache_key=cache_key)
    _WRAPPERS.append(py_func)

    u64, f64 = types.uint64, types.CPointer(types.double)
    if kind == "logp":
        sig = types.int64(u64, f64, f64, f64, types.CPointer(u64))
    else:
        sig = types.int64(u64, u64, f64, f64, types.CPointer(u64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)
        return numba.cfunc(sig, cache=cache_key is not None)(py_func)
