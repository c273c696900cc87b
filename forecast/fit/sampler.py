"""Sampling: compile the shared model once per family signature, fit each hypothesis, check it.

nutpie is the NUTS engine (PyMC 6's default). A hypothesis is fitted by swapping its prior
parameters into the compiled model (``with_data``), so refits cost sampling time only. Every
fit is checked against the convergence gate; a fit short of effective draws only gets as many
chains again (pooled), any other failure a refit with longer tuning and a higher target
acceptance rate (``StudyModel.fit``).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from forecast.data.cells import CellData
from forecast.errors import SamplingError
from forecast.model.build import (
    CENTRE_AT,
    DOMAIN_C,
    DOMAIN_CENTRED,
    DOMAIN_NC,
    DOMAIN_WEIGHTS,
    PRIOR_DATA,
    RW_CENTRED,
    RW_LEVELS,
    RW_MODES,
    RW_NC,
    TILT_FREE,
    TILT_OFFSET,
    Centring,
    build_model,
    centring,
    family_signature,
    prior_values,
    split_prior_vectors,
    study_centring,
)
from forecast.settings import Progress, SamplerSettings, derive_seed
from forecast.spec.study import Hypothesis, Study
from forecast.stats.convergence import ess_tail, rhat_and_ess_bulk
from forecast.stats.threads import THREADS, map_threads

# The convergence gate (Vehtari et al. 2021; PyMC's own checks).
RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3
TREEDEPTH_SATURATION_MAX = 0.05
RETRY_TUNE_FACTOR = 2
RETRY_TARGET_ACCEPT = 0.95
# The seed key of the chains added to a fit that was short of effective draws (see StudyModel.fit).
MORE_CHAINS_KEY = "more chains"
# Chains are added for this many times the gate's effective sample size: ESS estimates scatter
# by ~10% between samplings of one posterior, so aiming at the gate exactly would fail half the time.
MORE_CHAINS_MARGIN = 1.2


@dataclass(frozen=True)
class Diagnostics:
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    treedepth_saturated: float  # fraction of draws that hit the maximum tree depth
    ebfmi_min: float
    converged: bool
    problems: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["problems"] = list(self.problems)
        return d


@dataclass
class Fit:
    hypothesis: str
    trace: object  # xarray.DataTree with posterior and sample_stats
    unconstrained: np.ndarray  # (chains, draws, dim) draws on the sampler's space
    diagnostics: Diagnostics
    settings: SamplerSettings
    attempts: int
    seconds: float


def diagnose(trace) -> Diagnostics:
    """Convergence diagnostics over every quantity of a fit's posterior: the hyperparameters
    and the standardised domain effects and walk steps (not the sampler's coordinates for them,
    which ``_slim`` leaves out)."""
    from arviz_stats.base import array_stats

    # One (k, chain, draw) stack of every scalar component: one call per statistic.
    parts = []
    for var in trace.posterior.data_vars.values():
        a = np.asarray(var.values, dtype=float)
        parts.append(np.moveaxis(a.reshape(a.shape[0], a.shape[1], -1), -1, 0))
    rhat, bulk, tail = _component_statistics(np.concatenate(parts))
    rhat_max = float(np.nanmax(rhat))
    ess_bulk_min = float(np.nanmin(bulk))
    ess_tail_min = float(np.nanmin(tail))
    stats = trace.sample_stats
    divergences = int(stats["diverging"].values.sum())
    saturated = float(stats["maxdepth_reached"].values.mean())
    ebfmi = float(np.min(array_stats.bfmi(stats["energy"].values)))
    problems = []
    if not rhat_max <= RHAT_MAX:
        problems.append(f"R-hat {rhat_max:.3f} > {RHAT_MAX}")
    if not ess_bulk_min >= ESS_MIN:
        problems.append(f"bulk ESS {ess_bulk_min:.0f} < {ESS_MIN}")
    if not ess_tail_min >= ESS_MIN:
        problems.append(f"tail ESS {ess_tail_min:.0f} < {ESS_MIN}")
    if divergences:
        problems.append(f"{divergences} divergent transition(s)")
    warnings_only = []
    if saturated > TREEDEPTH_SATURATION_MAX:
        warnings_only.append(f"tree depth saturated in {saturated:.0%} of draws")
    if ebfmi < EBFMI_MIN:
        warnings_only.append(f"E-BFMI {ebfmi:.2f} < {EBFMI_MIN}")
    return Diagnostics(
        rhat_max,
        ess_bulk_min,
        ess_tail_min,
        divergences,
        saturated,
        ebfmi,
        converged=not problems,
        problems=tuple(problems + [f"warning: {w}" for w in warnings_only]),
    )


def _component_statistics(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ArviZ's rank-normalised R-hat, bulk ESS (one ranking for both) and tail ESS of every row
    of a (component, chain, draw) stack, in blocks of rows on threads: each row's figures depend
    on that row alone, and NumPy's sorts and FFTs release the GIL (0.36 -> 0.13 s for the
    default study's ~160 components on two cores)."""
    step = -(-len(a) // THREADS)
    blocks = [slice(i, i + step) for i in range(0, len(a), step)]
    out = map_threads(lambda rows: (*rhat_and_ess_bulk(a[rows]), ess_tail(a[rows], prob=(0.05, 0.95))), blocks)
    return tuple(np.concatenate([o[i] for o in out]) for i in range(3))  # type: ignore[return-value]


def only_short_of_draws(diag: Diagnostics) -> bool:
    """Whether the gate failed on effective sample size alone: R-hat within it, no divergences."""
    failing = [p for p in diag.problems if not p.startswith("warning:")]
    return bool(failing) and all(p.startswith(("bulk ESS", "tail ESS")) for p in failing)


def more_chains(diag: Diagnostics, chains: int, cores: int) -> int:
    """How many chains to add to a fit short of effective draws: enough for its smallest ESS
    (bulk or tail; ESS grows with the number of chains) to reach ``MORE_CHAINS_MARGIN`` times the
    gate, in whole rounds of ``cores`` parallel chains, at least one round and at most as many
    chains again. A fit at 90% of the gate gets a third of its chains again, not all of them.
    """
    ess = min(diag.ess_bulk_min, diag.ess_tail_min)
    wanted = chains * (MORE_CHAINS_MARGIN * ESS_MIN / ess - 1.0) if ess > 0 else float(chains)
    rounds = max(1, math.ceil(wanted / max(1, cores) - 1e-9))
    return min(chains, rounds * max(1, cores))


def pooled(first: tuple, second: tuple) -> tuple:
    """Two samplings of one posterior as one (trace, unconstrained draws, diagnostics), chains of
    the second numbered after the first's; diagnostics over all chains."""
    import xarray as xr

    trace_a, unc_a, _ = first
    trace_b, unc_b, _ = second
    n = trace_a.posterior.sizes["chain"]
    parts = {}
    for group in ("posterior", "sample_stats"):
        a = trace_a[group].to_dataset()
        b = trace_b[group].to_dataset()
        b = b.assign_coords(chain=b["chain"].values + n) if "chain" in b.coords else b
        parts[group] = xr.concat([a, b], dim="chain")
    trace = xr.DataTree.from_dict(parts)
    return trace, np.concatenate([unc_a, unc_b], axis=0), diagnose(trace)


def with_problem(fit: Fit, problem: str) -> Fit:
    """The fit with a problem found after sampling (e.g. in its marginal likelihood): it no longer passes the gate."""
    d = fit.diagnostics
    return replace(fit, diagnostics=replace(d, converged=False, problems=(*d.problems, problem)))


def hypothesis_seed(seed: int, hypothesis_id: str) -> int:
    """A per-hypothesis seed that does not change when other hypotheses are added or removed."""
    return derive_seed(seed, hypothesis_id)


# Compiled models, shared by every StudyModel in this process whose model has the same
# structure: observations and priors are data, so a history, a grid or a test suite that
# builds many StudyModels of one study compiles it once. Across processes, the compiled code
# comes from PyTensor's and our (compile_cache) on-disk Numba caches.
_COMPILED: dict[tuple, tuple[object, object]] = {}


def clear_compiled_models() -> None:
    """Forget every compiled model of this process (benchmarks use it to measure cold fits)."""
    _COMPILED.clear()


def _structure_key(study: Study, signature: tuple[str, ...], centred: Centring) -> tuple:
    t = study.time
    return (
        tuple(g.id for g in study.groups),
        tuple(d.id for d in study.domains),
        (t.start, t.end, t.reference, t.components),
        signature,
        (centred.any_domain, centred.any_steps, centred.any_modes),  # which centred variables the model has
        study.model_key,  # the likelihood ([model] overdispersion) and its concentration prior
    )


class StudyModel:
    """The study's model, compiled lazily once per distribution-family signature."""

    def __init__(self, study: Study, cells: CellData, centre_at: float = CENTRE_AT):
        """``centre_at``: see ``model.CENTRE_AT`` (0 centres every element, inf none)."""
        self.study = study
        self.cells = cells
        self._signatures: set[tuple[str, ...]] = set()
        self.centre_at = centre_at
        self.centring = study_centring(study, cells, centre_at)
        self.compile_seconds = 0.0

    def compiled(self, signature: tuple[str, ...]):
        key = _structure_key(self.study, signature, self.centring)
        if key not in _COMPILED:
            import pytensor

            from forecast.fit.compile_cache import compile_model  # nutpie: loaded at the first compilation

            t0 = time.perf_counter()
            # No creation stack traces on graph nodes: they serve PyTensor debugging, not
            # analysts, and collecting them is ~10% of the graph rewriting time.
            with pytensor.config.change_flags(traceback__limit=0), _quiet():
                model = build_model(self.study, self.cells, signature, centred=self.centring)
                cm = compile_model(model)
            _COMPILED[key] = (model, cm)
            self.compile_seconds += time.perf_counter() - t0
        self._signatures.add(signature)
        return _COMPILED[key]

    @property
    def n_compiled(self) -> int:
        """Distinct compiled models this study's hypotheses have needed."""
        return len(self._signatures)

    def fit(
        self,
        hypothesis: Hypothesis,
        settings: SamplerSettings,
        progress: Progress | None = None,
        cells: CellData | None = None,
    ) -> Fit:
        """Sample one hypothesis; if the convergence gate fails, sample again.

        A fit that fails ONLY on effective sample size (R-hat within the gate, no divergences)
        has sound draws, just too few: more chains are drawn (their own seed; as many as its
        shortfall needs, ``more_chains``) and pooled with the first. Any other
        failure (or a pooled fit that still fails) is refitted afresh with longer tuning and a
        higher target acceptance. ``attempts`` counts the samplings.

        ``cells`` swaps in other observations (e.g. only those known by some quarter) without
        recompiling; by default the study's own cells are used.
        """
        t0 = time.perf_counter()
        current = settings
        fit = self._sample(hypothesis, current, cells)
        attempts = 1
        if not fit[2].converged and only_short_of_draws(fit[2]):
            extra = more_chains(fit[2], settings.chains, settings.cores)
            if progress:
                progress(f"  {hypothesis.id}: {'; '.join(fit[2].problems)}; drawing {extra} more chains")
            # Diagnosed only pooled: the added chains' own diagnostics would cost ~0.4 s and say nothing.
            more = self._sample(
                hypothesis, replace(current, chains=extra), cells, extra=MORE_CHAINS_KEY, diagnosed=False
            )
            fit = pooled(fit, more)
            current = replace(settings, chains=settings.chains + extra)
            attempts = 2
        if not fit[2].converged:
            if progress:
                progress(f"  {hypothesis.id}: {'; '.join(fit[2].problems)}; retrying with longer tuning")
            current = replace(
                settings,
                tune=settings.tune * RETRY_TUNE_FACTOR,
                target_accept=max(settings.target_accept, RETRY_TARGET_ACCEPT),
            )
            fit = self._sample(hypothesis, current, cells)
            attempts += 1
        trace, unconstrained, diag = fit
        return Fit(hypothesis.id, trace, unconstrained, diag, current, attempts, time.perf_counter() - t0)

    def _data(self, hypothesis: Hypothesis, cells: CellData | None) -> dict[str, np.ndarray]:
        data = {PRIOR_DATA: prior_values(self.study, hypothesis), **(cells or self.cells).as_model_data()}
        # Each hypothesis (and other cells, e.g. the evidence up to some quarter) gets its own
        # masks, within the centred variables this model was compiled with.
        masks = centring(self.study, cells or self.cells, hypothesis, self.centre_at)
        if self.centring.any_domain:
            data[DOMAIN_CENTRED] = (masks.domain & self.centring.domain).astype(np.float64)
            data[DOMAIN_WEIGHTS] = masks.time_weights(self.study.time.n_quarters)
        if self.centring.any_steps:
            data[RW_CENTRED] = (masks.steps & self.centring.steps).astype(np.float64)
        if self.centring.any_modes:
            data.update(masks.walk.data())
        return data

    def _sample(
        self,
        hypothesis: Hypothesis,
        settings: SamplerSettings,
        cells: CellData | None = None,
        extra: str = "",
        diagnosed: bool = True,
    ):
        import nutpie

        signature = family_signature(self.study, hypothesis)
        model, cm = self.compiled(signature)
        data = self._data(hypothesis, cells)
        cm = cm.with_data(**data)
        # nutpie's initial points come from the PyMC model's own (shared) data: give it this
        # hypothesis's priors too, so a fit never depends on which hypothesis ran before it.
        for name, value in data.items():
            model.set_data(name, value)
        with _quiet():
            sampler = nutpie.sample(
                cm,
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                cores=settings.cores,
                seed=hypothesis_seed(settings.seed, hypothesis.id)
                if not extra
                else derive_seed(settings.seed, hypothesis.id, extra),
                target_accept=settings.target_accept,
                progress_bar=False,
                save_warmup=False,
                store_unconstrained=True,
                blocking=False,
            )
            trace = _wait(sampler)
        _check_complete(trace, settings, hypothesis.id)
        unconstrained = np.array(trace.sample_stats["unconstrained_draw"].values)
        trace = _slim(trace, self.study, signature)
        return trace, unconstrained, diagnose(trace) if diagnosed else None

    def standard_normal_coordinates(self, hypothesis: Hypothesis, cells: CellData | None = None) -> np.ndarray:
        """Which unconstrained coordinates are independent standard normals under the posterior.

        The model carries both a non-centred and a centred (or levels) coordinate for every
        element it may centre; the masks pick one per element for this hypothesis and these
        cells, and the other enters nothing but its own Normal(0, 1) density
        (``model._tilt_and_domains``, ``model._walk_in_levels``): so does a group's own tilt
        coordinate where the tilt is derived from centred domains, or else the tilt's offset. Laid out as nutpie's ``unconstrained_draw``.
        """
        _, cm = self.compiled(family_signature(self.study, hypothesis))
        data = self._data(hypothesis, cells)
        names, slices, _ = cm.shape_info
        out = np.zeros(cm.n_dim, dtype=bool)

        def mark(name: str, unused: np.ndarray) -> None:
            where = slices[names.index(name)]
            if where.stop > cm.n_dim or where.stop - where.start != unused.size:
                raise RuntimeError(f"unexpected layout of the sampler's coordinate '{name}'")
            out[where] = unused.ravel()

        if RW_CENTRED in data:
            levels = data[RW_CENTRED] > 0.5
            mark(RW_MODES if self.centring.any_modes else RW_NC, levels)
            mark(RW_LEVELS, ~levels)
        if DOMAIN_CENTRED in data:
            centred = data[DOMAIN_CENTRED] > 0.5
            mark(DOMAIN_NC, centred)
            mark(DOMAIN_C, ~centred)
            anchored = centred.any(axis=1)  # the tilt derived from the centred domains
            mark(TILT_FREE, anchored)
            mark(TILT_OFFSET, ~anchored)
        return out

    def log_posterior(
        self, hypothesis: Hypothesis, cells: CellData | None = None
    ) -> Callable[[np.ndarray], np.ndarray]:
        """Unnormalised log posterior on the sampler's unconstrained space, for a batch of rows.

        Rows are laid out as nutpie's ``unconstrained_draw``. It is the very function nutpie
        sampled (its compiled log density, with this hypothesis's priors and these cells), so
        the bridge sampler needs no second compilation and cannot integrate a different target.
        """
        _, cm = self.compiled(family_signature(self.study, hypothesis))
        cm = cm.with_data(**self._data(hypothesis, cells))
        fn = cm.logp_func.vm.jit_fn
        shared = [cm.shared_data[cm.shared_var_keys[v]] for v in cm.logp_func.get_shared()]

        def logp(x: np.ndarray) -> np.ndarray:
            rows = np.ascontiguousarray(x, dtype=np.float64)
            out = np.empty(len(rows))
            for i, row in enumerate(rows):
                out[i] = fn(row, *shared)[0]
            return out

        return logp


def _wait(sampler):
    """The finished trace of a background nutpie sampler; Ctrl-C stops it and propagates.

    ``nutpie.sample(blocking=True)`` catches KeyboardInterrupt and returns the draws made so
    far as if sampling had finished: the gate then read a truncated trace as a failed fit,
    retried it, and a run was written. Waiting here, the interrupt discards the sampler's
    work and ends the command (exit 130, nothing written).
    """
    try:
        return sampler.wait()
    except KeyboardInterrupt:
        sampler.cancel()
        raise


def _check_complete(trace, settings: SamplerSettings, hypothesis_id: str) -> None:
    """A fit with fewer chains or draws than asked is never a result: raise, never retry."""
    sizes = trace.posterior.sizes
    chains, draws = int(sizes.get("chain", 0)), int(sizes.get("draw", 0))
    if (chains, draws) != (settings.chains, settings.draws):
        raise SamplingError(
            f"the sampler stopped early for hypothesis '{hypothesis_id}': {chains} chain(s) x {draws} draw(s) "
            f"instead of {settings.chains} x {settings.draws}; nothing was written"
        )


def _slim(trace, study: Study, signature: tuple[str, ...]):
    """Keep what results need: the posterior (one scalar per prior slot) and the scalar sampler
    statistics."""
    import xarray as xr

    stats = trace.sample_stats.to_dataset()
    keep = [k for k, v in stats.data_vars.items() if v.dims == ("chain", "draw") and v.dtype != object]
    posterior = split_prior_vectors(trace.posterior.to_dataset(), study, signature)
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats[keep]})


@contextlib.contextmanager
def _quiet():
    """Silence compiler chatter (numba/pytensor warnings) that means nothing to an analyst."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            yield
