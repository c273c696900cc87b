"""Fanning fits out (forecast.fit.pool): a sensitivity grid on a local Dask cluster, and the pools.

The Dask test starts its own two-worker cluster, sends it the grid's fits of a tiny static
study and checks every log marginal likelihood against its exact value (quadrature,
tests/exact.py), that each worker compiled the model at most once, and the progress bar.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import replace

import numpy as np
import pytest
from exact import log_ml_group, pymc_prior
from helpers import static_study, write_study

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import InputError
from forecast.fit.pool import (
    FitTask,
    InlineExecutor,
    Pool,
    ProgressBar,
    cached_model,
    fan_out,
    model_key,
    open_pool,
    register_model,
    run_fits,
)
from forecast.fit.sampler import SamplerSettings, hypothesis_seed
from forecast.spec.study import load_study
from forecast.workflows.sensitivity import GridSpec, build_grid

STUDY = static_study(
    "fan",
    {"up": 1.0, "down": -1.0},
    tilt_sigma=1.0,
    group="a",
    counterparts=("a",),
    domains=("x", "y"),
    start="2021Q1",
    end="2021Q2",
    observations="obs.csv",
)
SETTINGS = SamplerSettings(draws=1000, tune=1000, chains=4, seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("fan")
    rows = "".join(
        f"e{i},2021-0{1 + i % 6}-1{i % 9},a,{'x' if i % 2 else 'y'},{'conflictual' if i % 4 == 0 else 'cooperative'},A1,ev {i},t\n"
        for i in range(30)
    )
    (d / "obs.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n" + rows)
    write_study(d, STUDY, "s.toml")
    study = load_study(d / "s.toml")
    return study, cell_data(load_observations(study).table, study)


def grid_tasks(study) -> list[FitTask]:
    """The fits a fully refitted grid needs: the base hypotheses and the 'up' tilt variants."""
    tasks = [FitTask(f"base/{h.id}", h, SETTINGS, hypothesis_seed(1, h.id)) for h in study.hypotheses]
    for v in build_grid(study, GridSpec(hypotheses=("up",), parameters=("tilt",), joint=False))[1:]:
        tasks.append(FitTask(v.id, replace(study.hypothesis(v.hypothesis), priors=v.priors), SETTINGS, 7))
    return tasks


def exact_log_ml(cells, priors) -> float:
    counts = [
        (float(cells.w_coop[cells.domain == k].sum()), float(cells.w_conf[cells.domain == k].sum())) for k in range(2)
    ]
    tilt, spread = priors[("tilt", "a")], priors[("spread", "a")]
    return log_ml_group(
        pymc_prior(tilt.dist, **tilt.kwargs),
        pymc_prior(spread.dist, **spread.kwargs),
        counts,
        tilt_range=(-10.0, 10.0),
        log_spread_range=(-40.0, 1.5),
    )


@pytest.mark.slow
def test_grid_on_a_local_dask_cluster(tiny):
    from distributed import LocalCluster

    study, cells = tiny
    tasks = grid_tasks(study)
    stream = io.StringIO()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        with open_pool(scheduler=cluster.scheduler_address, n_tasks=len(tasks)) as pool:
            assert pool.kind == "dask" and pool.workers == 2 and pool.cores_per_fit == 1
            fan = run_fits(study, cells, tasks, pool, label="grid", stream=stream)
    assert [o.key for o in fan.outcomes] == [t.key for t in tasks]  # in task order, whatever finished first
    workers = {o.worker for o in fan.outcomes}
    assert all(str(os.getpid()) != w.split(":")[1] for w in workers)  # ran in the workers, not here
    compiled = [o.worker for o in fan.outcomes if o.compiled_here]
    assert len(compiled) == len(set(compiled)) <= 2 and set(compiled) == workers  # once per worker, then reused
    assert fan.compiles == len(compiled)
    for task, out in zip(tasks, fan.outcomes, strict=True):
        assert out.converged, (out.key, out.diagnostics)
        exact = exact_log_ml(cells, task.hypothesis.priors)
        assert abs(out.log_ml - exact) <= 3 * out.log_ml_se + 0.02, (out.key, out.log_ml, exact)
    # posterior probabilities of the base pair from the cluster's fits match the exact ones
    lm = np.array([o.log_ml for o in fan.outcomes[:2]])
    exact = np.array([exact_log_ml(cells, h.priors) for h in study.hypotheses])
    assert np.exp(lm[0] - np.logaddexp(*lm)) == pytest.approx(np.exp(exact[0] - np.logaddexp(*exact)), abs=0.02)
    lines = stream.getvalue().strip().splitlines()
    assert lines[-1].startswith("grid [") and f"{len(tasks)}/{len(tasks)}" in lines[-1]


@pytest.mark.slow  # starts worker processes and waits out a connection timeout (~10 s)
def test_local_pool_inline_pool_and_bad_scheduler():
    with open_pool(workers=2, n_tasks=5) as pool:
        assert pool.kind == "local" and pool.workers == 2
        assert pool.cores_per_fit == max(1, (os.cpu_count() or 1) // 2)
        futures = [pool.executor.submit(math.factorial, n) for n in range(5)]
        assert [f.result() for f in futures] == [1, 1, 2, 6, 24]
    with open_pool(workers=0, n_tasks=5, cores=2) as pool:
        assert pool.kind == "inline" and pool.cores_per_fit == 2
    with open_pool(n_tasks=1) as pool:  # one task: no worker processes to start
        assert pool.kind == "inline"
    with open_pool(n_tasks=5, cores=2) as pool:  # default: as many 2-core fits as fit side by side
        assert pool.kind == ("local" if (os.cpu_count() or 1) >= 4 else "inline")
    with pytest.raises(InputError, match="expected an address like tcp://host:8786"):
        with open_pool(scheduler="localhost"):
            pass
    with pytest.raises(InputError, match="cannot reach a Dask scheduler"):
        with open_pool(scheduler="tcp://127.0.0.1:9", connect_timeout=2):
            pass


def test_inline_executor_reports_errors_through_the_future():
    future = InlineExecutor().submit(math.sqrt, -1)
    with pytest.raises(ValueError):
        future.result()


def test_progress_bar_counts_to_the_total():
    stream = io.StringIO()
    bar = ProgressBar(3, "fits", stream)
    for _ in range(3):
        bar.step("x")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("fits [" + "#" * 30 + "] 3/3")


def test_model_key_depends_on_structure_and_data_not_on_priors(tiny):
    study, cells = tiny
    other_priors = replace(study, hypotheses=study.hypotheses[:1])
    assert model_key(study, cells) == model_key(other_priors, cells)
    fewer = replace(cells, w_coop=cells.w_coop * 0.5)
    assert model_key(study, cells) != model_key(study, fewer)


def _divide(a: int, b: int) -> float:
    return a / b


@pytest.mark.parametrize("kind", ["inline", "local"])
def test_fan_out_returns_results_in_task_order_and_reports_each(kind):
    pool = Pool(InlineExecutor(), "this process", 2, 1, warm_first=(kind == "local"), kind=kind)
    seen = []
    out = fan_out(pool, _divide, [(6, 3), (1, 4), (9, 9)], lambda i, r: seen.append((i, r)))
    assert out == [2.0, 0.25, 1.0]
    assert sorted(seen) == [(0, 2.0), (1, 0.25), (2, 1.0)]


def test_fan_out_stops_at_the_first_error():
    pool = Pool(InlineExecutor(), "this process", 1, 1)
    seen = []
    with pytest.raises(ZeroDivisionError):
        fan_out(pool, _divide, [(1, 1), (1, 0), (2, 1)], lambda i, r: seen.append(i))
    assert seen == [0]  # in process, the task after the failure never ran


def test_one_model_cache_per_process(tiny):
    from forecast.fit.sampler import StudyModel

    study, cells = tiny
    model = cached_model(study, cells)  # built, not compiled: compiling waits for the first fit
    assert isinstance(model, StudyModel) and model.n_compiled == 0
    assert cached_model(replace(study, hypotheses=study.hypotheses[:1]), cells) is model  # priors are data
    other = StudyModel(study, cells)
    register_model(other)
    assert cached_model(study, cells) is other
