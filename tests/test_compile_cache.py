"""compile_cache: nutpie's compiled model with its C entry points cached on disk.

The cached build must be the same sampler target as ``nutpie.compile_pymc_model``: same draws
for the same seed, data swapped by ``with_data`` without recompiling, and a fallback that
still works when the cache is switched off.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from forecast.fit.compile_cache import compile_model


def tiny_model(shift: float = 0.0):
    import pymc as pm

    with pm.Model() as model:
        prior = pm.Data("prior", np.array([[shift, 1.0], [0.5, 2.0]]))
        index = pm.Data("index", np.array([0, 1, 1, 0], dtype=np.int64))
        mu = pm.Normal("mu", prior[:, 0], prior[:, 1], shape=2)
        scale = pm.HalfNormal("scale", 1.0)
        pm.Normal("y", mu[index], scale, observed=np.array([0.3, 1.2, 0.9, -0.1]))
    return model


def draws(compiled, seed: int = 3) -> np.ndarray:
    import nutpie

    trace = nutpie.sample(compiled, draws=200, tune=200, chains=2, seed=seed, progress_bar=False)
    return np.concatenate([trace.posterior["mu"].values.ravel(), trace.posterior["scale"].values.ravel()])


@pytest.mark.slow
def test_cached_build_draws_exactly_what_nutpie_draws(caplog):
    import nutpie

    model = tiny_model()
    with caplog.at_level(logging.WARNING, logger="forecast"):
        ours = compile_model(model)
    assert not caplog.records, "the cached build fell back to nutpie's own compile"
    theirs = nutpie.compile_pymc_model(model)
    np.testing.assert_array_equal(draws(ours), draws(theirs))


@pytest.mark.slow
def test_with_data_changes_the_target_without_recompiling():
    compiled = compile_model(tiny_model())
    moved = compiled.with_data(prior=np.array([[5.0, 0.1], [0.5, 2.0]]))
    assert moved.compiled_logp_func is compiled.compiled_logp_func
    base, shifted = draws(compiled), draws(moved)
    assert abs(shifted[:800].reshape(2, 200, 2)[..., 0].mean() - 5.0) < 0.3  # mu[0] pinned near 5 by its prior
    assert abs(base[:800].reshape(2, 200, 2)[..., 0].mean() - 5.0) > 3.0


@pytest.mark.slow
def test_switching_the_cache_off_falls_back_to_nutpie(monkeypatch):
    import nutpie

    monkeypatch.setenv("FORECAST_NUTPIE_CACHE", "0")
    model = tiny_model()
    np.testing.assert_array_equal(draws(compile_model(model)), draws(nutpie.compile_pymc_model(model)))


@pytest.mark.slow
def test_a_new_process_loads_the_wrappers_instead_of_compiling_them():
    """Two fresh processes build the same model; the second finds both wrappers on disk."""
    code = (
        "import numba.core.caching as c, sys\n"
        "hits = []\n"
        "orig = c.Cache.load_overload\n"
        "def spy(self, *a, **k):\n"
        "    r = orig(self, *a, **k)\n"
        "    if 'forecast_' in self._name and r is not None: hits.append(self._name)\n"
        "    return r\n"
        "c.Cache.load_overload = spy\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_compile_cache import tiny_model\n"
        "from forecast.fit.compile_cache import compile_model\n"
        "compile_model(tiny_model(0.25))\n"
        "print(len(hits))\n"
    )
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "2", out.stderr[-2000:]


@pytest.mark.slow
def test_a_nutpie_that_no_longer_fits_is_logged_and_compiled_the_usual_way(monkeypatch, caplog):
    import forecast.fit.compile_cache as cc

    def broken(model):
        raise TypeError("_make_functions() got an unexpected keyword argument 'join_expanded'")

    monkeypatch.setattr(cc, "_compile_cached", broken)
    with caplog.at_level(logging.WARNING, logger="forecast"):
        compiled = cc.compile_model(tiny_model())
    assert "compiling the usual way" in caplog.text and "join_expanded" in caplog.text
    assert draws(compiled).shape == (1200,)


@pytest.mark.slow
def test_the_cache_key_names_the_module_that_generated_the_wrappers(monkeypatch):
    """Numba pickles the generating module's name with each wrapper: entries cached before this
    module moved (as forecast.compile_cache) failed to load, and every process compiled again."""
    import pytensor.link.numba.cache as pytensor_cache

    import forecast.fit.compile_cache as cc

    keys = []
    compile_src = pytensor_cache.compile_numba_function_src

    def spy(*args, **kwargs):
        name = args[1] if len(args) > 1 else kwargs["function_name"]
        if name.startswith("forecast_"):
            keys.append(kwargs.get("cache_key"))
        return compile_src(*args, **kwargs)

    monkeypatch.setattr(pytensor_cache, "compile_numba_function_src", spy)
    cc.compile_model(tiny_model(0.5))
    monkeypatch.setattr(cc, "__name__", "forecast.fit")  # as if the module had moved (to one that imports)
    cc.compile_model(tiny_model(0.5))
    assert len(keys) == 4 and None not in keys
    assert not set(keys[:2]) & set(keys[2:])


@pytest.mark.slow
def test_the_compiled_density_gives_the_same_bits_on_a_new_thread(tmp_path):
    """The sampler calls the log density from threads of its own: the same point must give the
    same bits there. With LLVM's "reassoc" the fused kernel's sums came out a last bit apart on a
    new thread (whose temporaries lie in another malloc arena) at ~3% of points, and one chain
    sampled the same seed two ways from run to run."""
    import ctypes
    import dataclasses
    import threading

    from helpers import write_mini
    from test_update_constraints import _constraint_study, _rows

    from forecast.data.cells import cell_data
    from forecast.data.observations import load_observations
    from forecast.fit.sampler import StudyModel
    from forecast.model.build import family_signature
    from forecast.spec.study import load_study
    from forecast.workflows.constraints import encompassing_hypothesis

    path, _ = write_mini(tmp_path, _rows(), _constraint_study())
    study = load_study(path)
    cells = cell_data(load_observations(study).table, study)
    enc = encompassing_hypothesis(study.constraints)
    model = StudyModel(dataclasses.replace(study, hypotheses=(enc,)), cells)
    _, compiled = model.compiled(family_signature(model.study, enc))
    compiled = compiled.with_data(**model._data(enc, None))
    logp, n = compiled.compiled_logp_func.ctypes, compiled.n_dim
    user_data = compiled.user_data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))
    points = np.random.default_rng(0).normal(0.0, 1.0, (3000, n))

    def evaluate(into: list) -> None:
        def ptr(a):
            return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

        for x in points:
            x = np.ascontiguousarray(x)
            grad, value = np.zeros(n), np.zeros(1)
            into.append((logp(n, ptr(x), ptr(grad), ptr(value), user_data), value[0], grad))

    here, there = [], []
    evaluate(here)
    thread = threading.Thread(target=evaluate, args=(there,))
    thread.start()
    thread.join()
    differ = sum(a[:2] != b[:2] or not np.array_equal(a[2], b[2]) for a, b in zip(here, there, strict=True))
    assert differ == 0, f"{differ} of {len(points)} points gave other bits on a new thread"
