"""Independent fits fanned out over worker processes: local ones by default, Dask when asked.

A sensitivity grid (and later backtests, or many studies) is a list of independent fits of the
same compiled model with different priors or data. They are written against the standard
``concurrent.futures.Executor``:

- no scheduler: a local ``ProcessPoolExecutor`` (``spawn``: the parent may hold sampler
  threads, so it is not forked) with as many processes as fits can run side by side (see
  ``open_pool``), or in-process when that is one, when there is one task, or ``workers=0``;
- ``scheduler="tcp://host:8786"``: a Dask distributed cluster, through
  ``Client(address).get_executor()``.

A compiled nutpie model does not pickle, so a task carries the study and its cell data (plain
data, a few kilobytes), and each worker process builds and compiles the model the first time
it sees that study and keeps it for every later task (``cached_model``: the one process-wide
cache of study models, keyed by a hash of the model's structure and data). Run Dask workers with
one thread each (``--nthreads 1``): PyTensor compilation is not thread-safe.

``fan_out`` runs any picklable task function over a pool (sensitivity grids through
``run_fits``, backtest origins, ...), in task order, cancelling what is left on an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import numpy as np

from forecast.data.cells import CellData
from forecast.errors import InputError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.build import rv_name, slots
from forecast.spec.study import Hypothesis, Study

# One process-wide cache of compiled study models (in workers, and in the parent when inline).
_MODELS: dict[str, StudyModel] = {}


@dataclass(frozen=True)
class FitTask:
    """One fit: a hypothesis (possibly with changed priors) of the study the batch shares."""

    key: str  # the caller's label, e.g. a sensitivity variant id
    hypothesis: Hypothesis
    settings: SamplerSettings
    bridge_seed: int


@dataclass(frozen=True)
class FitOutcome:
    """What comes back from a worker: small, JSON-able, no draws."""

    key: str
    hypothesis: str
    log_ml: float
    log_ml_se: float
    diagnostics: dict
    converged: bool
    attempts: int
    seconds: float
    posterior_means: dict[str, float]  # hyperparameter -> posterior mean, e.g. "tilt__russia"
    worker: str  # host:pid of the process that ran it
    compiled_here: bool  # this task built and compiled the model (the first one on that worker)
    compile_seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def model_key(study: Study, cells: CellData) -> str:
    """A hash of what the compiled model depends on: the study's structure and the cell data."""
    h = hashlib.sha256()
    h.update(pickle.dumps((study.groups, study.domains, study.time, tuple(study.parameters))))
    for name, arr in sorted(cells.as_model_data().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def register_model(model: StudyModel) -> None:
    """Reuse an already compiled model for in-process tasks of the same study and data."""
    _MODELS[model_key(model.study, model.cells)] = model


def cached_model(study: Study, cells: CellData) -> StudyModel:
    """This process's model of ``study`` on ``cells``: built (and compiled on first use) once."""
    key = model_key(study, cells)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = StudyModel(study, cells)
    return model


def fit_one(study: Study, cells: CellData, task: FitTask) -> FitOutcome:
    """Worker entry point: fit one task on this process's (cached) compiled model."""
    compiled_here = model_key(study, cells) not in _MODELS
    model = cached_model(study, cells)
    before = model.compile_seconds
    judged = fit_hypothesis(model, task.hypothesis, task.settings, bridge_seed=task.bridge_seed, with_loo=False)
    fit, bridge = judged.fit, judged.bridge
    means = {
        rv_name(p, g): float(fit.trace.posterior[rv_name(p, g)].mean())
        for p, g in slots(study)
        if rv_name(p, g) in fit.trace.posterior
    }
    return FitOutcome(
        key=task.key,
        hypothesis=task.hypothesis.id,
        log_ml=float(bridge.log_ml),
        log_ml_se=float(bridge.se),
        diagnostics=fit.diagnostics.to_dict(),
        converged=bool(fit.diagnostics.converged),
        attempts=fit.attempts,
        seconds=fit.seconds,
        posterior_means=means,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        compiled_here=compiled_here or model.compile_seconds > before,
        compile_seconds=model.compile_seconds - before,
    )


class InlineExecutor(Executor):
    """Runs each task in the calling process when submitted (no workers, no pickling)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # the caller sees it through future.result()
            future.set_exception(e)
        return future


@dataclass
class Pool:
    """An executor and how to use it."""

    executor: Executor
    description: str
    workers: int
    cores_per_fit: int  # nutpie chains sampled in parallel inside one task
    # Run one task alone first, so that other workers on the same machine find the on-disk
    # compile caches warm. Off by default: measured here, a warm cache saved little of the
    # compile time, and waiting serialises one compile.
    warm_first: bool = False
    kind: str = "inline"


def _limit_threads() -> None:
    """Worker initialiser: one BLAS/OpenMP thread per worker process."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


@contextlib.contextmanager
def open_pool(
    scheduler: str | None = None,
    workers: int | None = None,
    n_tasks: int = 0,
    cores: int = 2,
    connect_timeout: float = 20.0,
) -> Iterator[Pool]:
    """The executor for ``n_tasks`` fits; closed (workers stopped, client closed) on exit.

    ``scheduler``: a Dask scheduler address (one core per fit there). Otherwise ``workers``
    local processes, each fit sampling its chains on ``cpu_count // workers`` cores. By default
    every fit keeps the ``cores`` a `forecast update` fit uses (2) and there are as many worker
    processes as fit side by side (``cpu_count // cores``, at most one per task); when that is
    one (a 2-core machine) the fits run in this process, chains in parallel, because a worker
    process would only add its start-up and its own compile (measured: 5 refits of the default
    study took 249 s on two 1-core workers; in-process, see README "Benchmarks"). ``workers=0``
    forces in-process.
    """
    if scheduler:
        if "://" not in scheduler:
            raise InputError(f"--scheduler: expected an address like tcp://host:8786, got {scheduler!r}")
        import logging

        from distributed import Client

        logging.getLogger("distributed").setLevel(logging.ERROR)
        try:
            client = Client(scheduler, timeout=f"{connect_timeout}s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"--scheduler: cannot reach a Dask scheduler at {scheduler} ({e})") from None
        try:
            n = max(1, len(client.scheduler_info().get("workers", {})))
            yield Pool(client.get_executor(pure=False), f"Dask at {scheduler} ({n} workers)", n, 1, False, "dask")
        finally:
            client.close()
        return
    cpus = os.cpu_count() or 1
    n = max(1, cpus // max(1, cores)) if workers is None else workers
    n = min(n, n_tasks)
    if n <= 1 or workers == 0:
        yield Pool(InlineExecutor(), "this process", 1, cores, False, "inline")
        return
    import multiprocessing

    executor = ProcessPoolExecutor(
        max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=_limit_threads
    )
    try:
        yield Pool(executor, f"{n} local worker processes", n, max(1, cpus // n), False, "local")
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


class ProgressBar:
    """A one-line progress bar on stderr (a line per step when stderr is not a terminal)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30):
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._draw("")

    def step(self, note: str = "") -> None:
        self.done += 1
        self._draw(note)

    def _draw(self, note: str) -> None:
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{self.label} [{bar}] {self.done}/{self.total} {time.perf_counter() - self.t0:5.0f} s {note}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if self.done >= self.total:
                self.stream.write("\n")
        elif self.done or not self.total:
            self.stream.write(line.rstrip() + "\n")
        self.stream.flush()


@dataclass
class FanOut:
    """Results of a batch, in task order, with where and how they ran."""

    outcomes: list[FitOutcome]
    pool: str
    workers: int
    seconds: float
    compiles: int = field(default=0)  # how many tasks built and compiled a model


def fan_out(
    pool: Pool,
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    on_result: Callable[[int, Any], None] | None = None,
) -> list:
    """``fn(*task)`` for every task on ``pool``, results in task order.

    ``on_result(index, result)`` is called as each finishes (in the order they finish). In
    process, tasks run one at a time, so progress moves as each finishes; with
    ``pool.warm_first`` one task runs alone first (workers then find the compile caches warm).
    An error (or Ctrl-C) cancels the tasks not yet started and propagates.
    """
    results: list = [None] * len(tasks)

    def collect(index: int, future: Future) -> None:
        results[index] = future.result()
        if on_result:
            on_result(index, results[index])

    pending = list(enumerate(tasks))
    if pool.kind == "inline":
        while pending:
            index, args = pending.pop(0)
            collect(index, pool.executor.submit(fn, *args))
    if pool.warm_first and len(pending) > 1:
        index, args = pending.pop(0)
        collect(index, pool.executor.submit(fn, *args))
    futures = {pool.executor.submit(fn, *args): index for index, args in pending}
    try:
        for future in as_completed(futures):
            collect(futures[future], future)
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return results


def run_fits(
    study: Study,
    cells: CellData,
    tasks: Sequence[FitTask],
    pool: Pool,
    *,
    bar: bool = True,
    label: str = "fits",
    stream: TextIO | None = None,
    on_result: Callable[[FitOutcome], None] | None = None,
) -> FanOut:
    """Run every task on ``pool``; a progress bar on stderr unless ``bar`` is False."""
    t0 = time.perf_counter()
    tasks = [replace(t, settings=replace(t.settings, cores=pool.cores_per_fit)) for t in tasks]
    progress = ProgressBar(len(tasks), label, stream) if bar and tasks else None

    def collect(_index: int, out: FitOutcome) -> None:
        if on_result:
            on_result(out)
        if progress:
            progress.step(f"{out.key} ({out.seconds:.1f} s)")

    outcomes = fan_out(pool, fit_one, [(study, cells, t) for t in tasks], collect)
    return FanOut(
        outcomes, pool.description, pool.workers, time.perf_counter() - t0, sum(o.compiled_here for o in outcomes)
    )
