"""`forecast constraints`: constraint hypotheses compared on one fit of the encompassing model.

1. Validate the study (its ``[encompassing]`` prior and ``[[constraint_hypotheses]]``,
   forecast.spec.constraints) and the observations.
2. Fit the encompassing model ONCE (the shared model with the encompassing priors), through the
   same sampler and convergence gate as every hypothesis of `forecast update`.
3. Draw the encompassing prior by Monte Carlo (independent draws in its standard-normal
   coordinates; the hyperparameters by their quantile functions, domain effects and walk steps as
   they are); evaluate every hypothesis's region on the prior and the posterior draws.
4. Bayes factors against the encompassing model (posterior mass / prior mass, with Monte Carlo
   errors; small prior masses by stepwise conditioning: forecast.stats.encompassing), posterior
   probabilities of each hypothesis and of the complement, overlapping hypotheses flagged.
5. Robustness to the encompassing prior: the same probabilities with the encompassing prior
   widened and narrowed (1.5x by default), the posterior reweighted by Pareto-smoothed importance
   sampling (no refit) and the prior drawn afresh.

Nothing is written; the record is rendered by forecast.reports.text.constraints or as JSON.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import ConvergenceError, ObservationError, StudyError
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.build import (
    DOMAIN_EFFECT,
    RW_STEPS,
    draws_as_arrays,
    latent_logit,
    latent_parts,
    years_from_reference,
)
from forecast.settings import Progress, derive_rng
from forecast.spec.constraints import (
    ENCOMPASSING_ID,
    ConstraintHypothesis,
    ConstraintStudy,
    Period,
    Quantity,
    reserved_id_problems,
)
from forecast.spec.priors import Prior
from forecast.spec.study import Hypothesis, Study, load_study
from forecast.stats.encompassing import (
    MIN_HITS,
    BayesFactor,
    EmptyRegion,
    Mass,
    bayes_factor,
    mass_from_draws,
    overlaps,
    posterior_probabilities,
    stepwise_mass,
)
from forecast.stats.psis import psislw
from forecast.stats.threads import THREADS, map_threads
from forecast.workflows.sensitivity.grid import scale_prior

CHUNK = 4_000  # draws evaluated at once (a draw's shares take G x D x Q floats)
# Chunks of draws are evaluated on this many threads (forecast.stats.threads). Each draw's
# margins depend on that draw alone, so the numbers do not depend on the thread count.
WORKERS = THREADS
ROBUSTNESS_FACTORS = (1.5,)
PARETO_K_MAX = 0.7
METHOD_NOTE = (
    "Each constraint hypothesis's prior is the one encompassing prior restricted to its region; its Bayes "
    "factor against the encompassing model is the region's posterior mass over its prior mass (Klugkist, "
    "Laudy & Hoijtink 2005), from one fit. Prior masses below {min_hits} draws in {n} use stepwise "
    "conditioning; a region holding no posterior draw gets an upper bound, not a zero."
)


# --- the regions on draws ----------------------------------------------------------------------


class Regions:
    """Evaluates the study's constraint quantities and each hypothesis's margin on parameter draws.

    ``arrays`` are draws in ``draws_as_arrays`` layout (leading sample axis). A hypothesis's margin
    is the smallest margin of its constraints (>= 0 inside its region), in share units; the
    complement's is minus the largest margin of the others.
    """

    def __init__(self, study: Study, spec: ConstraintStudy):
        self.study, self.spec = study, spec
        self.years = years_from_reference(study)
        self.ref = study.time.reference - study.time.start
        self.groups = [g.id for g in study.groups]
        self.domains = [d.id for d in study.domains]

    def margins(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(arrays["tilt"])
        # At most CHUNK draws at once (memory), and enough chunks to keep every worker busy.
        size = max(1, min(CHUNK, -(-n // WORKERS)))
        chunks = [{k: v[a : a + size] for k, v in arrays.items()} for a in range(0, n, size)]
        parts = map_threads(self.chunk_margins, chunks, WORKERS)
        return {h.id: np.concatenate([p[h.id] for p in parts]) for h in self.spec.hypotheses}

    def chunk_margins(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``margins`` of one chunk of draws, in the calling thread (at most CHUNK draws: memory)."""
        years = self.years.astype(arrays["tilt"].dtype, copy=False)  # keeps single-precision draws single
        a, b = latent_parts(np, arrays, years, self.ref, self.study.time.components)  # (S, G, D), (S, G, Q)
        cache: dict[object, np.ndarray] = {}
        n = len(a)
        out: dict[str, np.ndarray] = {}
        for h in self.spec.constrained:
            m = np.full(n, np.inf)
            for c in h.constraints:
                diff = np.zeros(n)
                for t in c.difference:
                    diff = diff + t.coef * (1.0 if t.quantity is None else self._value(t.quantity, a, b, arrays, cache))
                if c.op in (">", ">="):
                    cm = diff
                elif c.op in ("<", "<="):
                    cm = -diff
                else:
                    cm = c.margin - np.abs(diff)
                m = np.minimum(m, cm)
            out[h.id] = m
        if self.spec.constrained:
            out[self.spec.complement.id] = -np.max([out[h.id] for h in self.spec.constrained], axis=0)
        else:
            out[self.spec.complement.id] = np.ones(n)
        return out

    def _domain_shares(self, g: int, p: Period, a: np.ndarray, b: np.ndarray, cache) -> np.ndarray:
        """(S, D): each domain's cooperative share with group ``g``, averaged over the period's quarters."""
        key = (g, p.start, p.end)
        if key not in cache:
            t0 = self.study.time.start
            # expit(x) = (1 + tanh(x / 2)) / 2, so the mean share is (1 + mean tanh) / 2: NumPy's
            # SIMD tanh is several times faster than scipy's expit on these (draws, D, Q) arrays,
            # most of the comparison's time. Shares agree to ~1e-16 in absolute terms.
            half = 0.5 * a[:, g, :, None] + 0.5 * b[:, g, None, p.start - t0 : p.end - t0 + 1]
            mean = np.tanh(half, out=half).mean(axis=-1)
            mean += 1.0
            mean *= 0.5
            cache[key] = mean
        return cache[key]

    def _value(self, q: Quantity, a: np.ndarray, b: np.ndarray, arrays, cache) -> np.ndarray:
        if q in cache:
            return cache[q]
        g = self.groups.index(q.group)
        if q.kind == "trend":
            tilt, trend = arrays["tilt"][:, g], arrays["trend"][:, g]
            v = expit(tilt + trend) - expit(tilt)
        else:
            per_domain = [self._domain_shares(g, p, a, b, cache) for p in q.periods]  # (S, D) each
            if q.kind == "domain_gap":
                v = per_domain[0].max(axis=-1) - per_domain[0].min(axis=-1)
            else:
                d = self.domains.index(q.domain) if q.domain else None
                means = [x[:, d] if d is not None else x.mean(axis=-1) for x in per_domain]
                v = means[0] if q.kind == "share" else means[1] - means[0]
        cache[q] = v
        return v


class PriorDraws:
    """The encompassing prior in standard-normal coordinates: u ~ N(0, I) -> parameter arrays.

    Hyperparameters by their quantile functions (Normal ones exactly as mu + sigma u), domain
    effects and walk steps as they are (they are standard normal in the model).
    """

    def __init__(self, study: Study, priors: dict[tuple[str, str], Prior]):
        self.study, self.priors = study, priors
        self.n_g, self.n_d = len(study.groups), len(study.domains)
        self.walk = "random_walk" in study.time.components and study.time.n_quarters > 1
        self.n_steps = study.time.n_quarters - 1 if self.walk else 0
        self.slots = study.slots
        self.dim = len(self.slots) + self.n_g * self.n_d + self.n_g * self.n_steps

    def arrays(self, u: np.ndarray) -> dict[str, np.ndarray]:
        from scipy.special import ndtr, ndtri

        out: dict[str, np.ndarray] = {}
        columns: dict[str, list[np.ndarray]] = {}
        for k, slot in enumerate(self.slots):
            prior = self.priors[slot]
            if prior.dist == "Normal":
                x = prior.kwargs["mu"] + prior.kwargs["sigma"] * u[:, k]
            elif prior.dist == "HalfNormal":  # |N(0, sigma)| by its quantile function, without scipy.stats
                x = prior.kwargs["sigma"] * ndtri(0.5 + 0.5 * np.clip(ndtr(u[:, k]), 0.0, 1 - 1e-16))
            else:
                x = prior.ppf(np.clip(ndtr(u[:, k]), 1e-15, 1 - 1e-15))
            columns.setdefault(slot[0], []).append(x)
        for param, cols in columns.items():
            out[param] = np.stack(cols, axis=-1)
        a = len(self.slots)
        out[DOMAIN_EFFECT] = u[:, a : a + self.n_g * self.n_d].reshape(-1, self.n_g, self.n_d)
        if self.walk:
            b = a + self.n_g * self.n_d
            out[RW_STEPS] = u[:, b:].reshape(-1, self.n_g, self.n_steps)
        return out


def log_prior_density(study: Study, priors: dict[tuple[str, str], Prior], arrays: dict[str, np.ndarray]) -> np.ndarray:
    """log p(hyperparameters) under ``priors`` for each draw (the standardised effects cancel in ratios)."""
    out = np.zeros(len(arrays["tilt"]))
    groups = [g.id for g in study.groups]
    for param, group in study.slots:
        out += priors[(param, group)].logpdf(arrays[param][:, groups.index(group)])
    return out


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintHypothesisResult:
    id: str
    label: str
    claim: str
    constraints: list[str]
    complement: bool
    prior_probability: float
    prior_mass: Mass
    posterior_mass: Mass
    bayes_factor: BayesFactor  # against the encompassing model
    posterior_probability: float
    posterior_probability_se: float
    posterior_probability_upper: float  # = posterior_probability unless the Bayes factor is a bound

    @property
    def bf_text(self) -> str:
        bf = math.exp(self.bayes_factor.log_bf)
        return ("< " if self.bayes_factor.bound else "") + f"{bf:.3g}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("prior_mass", "posterior_mass", "bayes_factor"):
            d[k] = getattr(self, k).to_dict()
        return d


@dataclass(frozen=True)
class ConstraintRobustness:
    """Probabilities with the encompassing prior's every prior scaled by ``factor``."""

    factor: float
    probabilities: dict[str, float]
    max_change: float  # largest |change| of a hypothesis's posterior probability
    pareto_k: float
    reliable: bool  # Pareto k <= PARETO_K_MAX, or refitted and the refit passed the gate
    # "reweighted" (PSIS on the stated fit), "refit" (Pareto k too high: the encompassing model
    # fitted afresh with the scaled prior, as `forecast update` and `forecast constraints` do) or
    # "refit failed" (that fit failed the convergence gate: the reweighted figures, unreliable)
    method: str = "reweighted"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ConstraintComparison:
    study: str
    study_path: str
    question: str
    n_observations: int
    latest_observation: str | None
    converged: bool
    diagnostics: dict
    encompassing_priors: list[dict]
    prior_predictive: dict[str, list[float]]  # group -> share(group, all) 5%, 50%, 95% under the prior
    hypotheses: list[ConstraintHypothesisResult]
    overlaps: list[dict]
    leader: str
    robustness: list[ConstraintRobustness]
    prior_draws: int
    posterior_draws: int
    settings: dict
    method: str
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hypotheses"] = [h.to_dict() for h in self.hypotheses]
        d["robustness"] = [r.to_dict() for r in self.robustness]
        return d


# --- the workflow ------------------------------------------------------------------------------


def encompassing_hypothesis(spec: ConstraintStudy) -> Hypothesis:
    return Hypothesis(ENCOMPASSING_ID, "Encompassing model", "The shared encompassing prior.", 1.0, dict(spec.priors))


def constraint_study(study: Study) -> ConstraintStudy:
    """The study's constraint hypotheses, or a StudyError saying how to state them."""
    spec = study.constraints
    if spec is None:
        raise StudyError(
            f"{study.path}: no constraint hypotheses; add an [encompassing] table with the shared prior and "
            "[[constraint_hypotheses]] with their constraints (see priors/turkey_nato.toml)"
        )
    reserved = reserved_id_problems([h.id for h in study.hypotheses])
    if reserved:
        raise StudyError(f"{study.path}: " + "; ".join(reserved))
    if "trend" not in study.time.components:
        used = [h.id for h in spec.constrained for c in h.constraints for q in c.quantities if q.kind == "trend"]
        if used:
            raise StudyError(
                f"{study.path}: constraint hypotheses {sorted(set(used))} use trend(...), but the study's time "
                "components do not include 'trend'; add it to time.components or state the change between periods"
            )
    return spec


def prior_masses(
    regions: Regions,
    draws: PriorDraws,
    n: int,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> tuple[dict[str, Mass], dict[str, np.ndarray]]:
    """Each hypothesis's prior mass (plain Monte Carlo, stepwise conditioning when it is small) and
    the indicators of the plain draws."""
    # One generator per chunk of CHUNK draws (spawned from ``rng`` in chunk order), so chunks are
    # drawn and evaluated on WORKERS threads and the numbers depend on the seed alone, not on the
    # number of threads.
    sizes = [min(CHUNK, n - a) for a in range(0, n, CHUNK)]
    streams = rng.spawn(len(sizes))

    def chunk(i: int) -> dict[str, np.ndarray]:
        # The shares in single precision (the draws and their transforms in double, so the draws
        # are the same): the plain Monte Carlo then costs ~0.7x, and a draw can land on the other
        # side of a region's edge only within ~1e-7 of it (none of 20,000 did on the default
        # study: tests/test_constraints.py), a bias far below the Monte Carlo error of 40,000 draws.
        u = streams[i].standard_normal((sizes[i], draws.dim))
        arrays = {k: v.astype(np.float32) for k, v in draws.arrays(u).items()}
        return {hid: v >= 0 for hid, v in regions.chunk_margins(arrays).items()}

    parts = map_threads(chunk, range(len(sizes)), WORKERS)
    inside = {h.id: [p[h.id] for p in parts] for h in regions.spec.hypotheses}
    flat = {hid: np.concatenate(v) for hid, v in inside.items()}
    masses: dict[str, Mass] = {}
    for h in regions.spec.hypotheses:
        plain = mass_from_draws(flat[h.id])
        if plain.hits >= MIN_HITS:
            masses[h.id] = plain
            continue
        if progress:
            progress(f"  '{h.id}': {plain.hits} of {n} prior draws inside; stepwise conditioning")

        def margin(u: np.ndarray, hid: str = h.id) -> np.ndarray:
            return regions.margins(draws.arrays(u))[hid]

        try:
            masses[h.id] = stepwise_mass(margin, draws.dim, rng)
        except EmptyRegion as e:
            raise StudyError(_empty_message(regions.study, h, str(e))) from None
    return masses, flat


@dataclass(frozen=True)
class PriorMasses:
    """The encompassing prior's mass of each hypothesis's region (``prior_masses``) and the
    indicators of the plain prior draws (for the overlaps), from ``n`` draws of run seed ``seed``."""

    masses: dict[str, Mass]
    inside: dict[str, np.ndarray]
    seed: int
    n: int


def stated_prior_masses(
    study: Study, spec: ConstraintStudy, seed: int, n: int, progress: Progress | None = None
) -> PriorMasses:
    """``prior_masses`` of the stated encompassing prior, from the run's seed (as ``compare`` draws them)."""
    rng = derive_rng(seed, "constraints", "prior")
    return PriorMasses(*prior_masses(Regions(study, spec), PriorDraws(study, spec.priors), n, rng, progress), seed, n)


def prior_masses_in_background(
    study: Study, spec: ConstraintStudy, seed: int, n: int, progress: Progress | None = None
) -> Future[PriorMasses]:
    """``stated_prior_masses`` on a thread of its own, started now: they need no data and no fit, and
    the sampler leaves part of the machine idle, so `forecast update` computes them while the models
    sample (same numbers: the same seed's draws). An error (an empty region) is raised by
    ``result()``, where the comparison needs them."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prior-masses")
    future = executor.submit(stated_prior_masses, study, spec, seed, n, progress)
    executor.shutdown(wait=False)
    return future


def _empty_message(study: Study, h: ConstraintHypothesis, why: str) -> str:
    listed = "; ".join(c.text for c in h.constraints) or "(the complement of every other hypothesis)"
    return (
        f"{study.path}: constraint hypothesis '{h.id}' describes an empty region: {why}. Its constraints ({listed}) "
        "cannot hold together under the model; loosen or remove one"
    )


def run_constraints(
    study_path: str | Path,
    settings: SamplerSettings | None = None,
    *,
    prior_draws: int | None = None,
    allow_unconverged: bool = False,
    factors: tuple[float, ...] = ROBUSTNESS_FACTORS,
    progress: Progress | None = None,
) -> ConstraintComparison:
    """Compare a study's constraint hypotheses on one encompassing fit; see the module docstring."""
    settings = settings or SamplerSettings()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    study = load_study(study_path)
    spec = constraint_study(study)
    obs = load_observations(study)
    if obs.n == 0:
        raise ObservationError(f"{obs.path}: no observations yet; add coded events first")
    cells = cell_data(obs.table, study)
    say(f"{study.name}: {obs.n} observations; fitting the encompassing model once")
    prior = prior_masses_in_background(study, spec, settings.seed, prior_draws or spec.prior_draws, say)
    fit, model = fit_encompassing(study, spec, cells, settings, progress=say)
    if not fit.diagnostics.converged and not allow_unconverged:
        raise ConvergenceError(
            "the encompassing model's fit failed the convergence gate (after more chains or a longer-tuned refit): "
            + "; ".join(fit.diagnostics.problems)
            + ". Try more --tune/--draws, or pass --allow-unconverged to see results flagged as unreliable."
        )
    return comparison_from_fit(
        study,
        spec,
        obs,
        fit,
        model.compile_seconds,
        prior_draws=prior_draws,
        factors=factors,
        progress=say,
        t0=t0,
        cells=cells,
        settings=settings,
        model=model,
        prior=prior,
    )


def fit_encompassing(study: Study, spec: ConstraintStudy, cells, settings: SamplerSettings, progress=None):
    """The encompassing model fitted once (same sampler, retry and gate as a hypothesis's; its seed
    derived from ``settings.seed`` and ENCOMPASSING_ID like a hypothesis's from its id).

    The model is built for the encompassing hypothesis alone, so its centring (and so its draws)
    does not depend on the study's prior-specified hypotheses. Returns (fit, model).
    """
    enc = encompassing_hypothesis(spec)
    model = StudyModel(dataclasses.replace(study, hypotheses=(enc,)), cells)
    return model.fit(enc, settings, progress=progress), model


def comparison_from_fit(
    study: Study,
    spec: ConstraintStudy,
    obs,
    fit,
    compile_seconds: float = 0.0,
    *,
    prior_draws: int | None = None,
    factors: tuple[float, ...] = ROBUSTNESS_FACTORS,
    progress: Progress | None = None,
    t0: float | None = None,
    cells=None,
    settings: SamplerSettings | None = None,
    model: StudyModel | None = None,
    prior: PriorMasses | Future[PriorMasses] | None = None,
) -> ConstraintComparison:
    """``compare`` on an encompassing fit, with the fit's diagnostics, settings and timings.

    ``prior``: the stated prior's masses for this fit's seed and ``prior_draws``, if already
    computed or under way (``prior_masses_in_background``).

    With ``model`` (the encompassing fit's StudyModel) or ``cells``, a scaled encompassing prior whose
    reweighting is unreliable (Pareto k) is refitted, so the robustness shown is never a guess. On
    ``model`` the refit keeps the stated prior's parameterisation (any parameterisation is the same
    model; which one samples well follows the data more than the prior): built afresh for the 1.5x
    wider prior, the default study's model centred six domains and failed the gate, while on the
    stated prior's model it passes. ``settings``: the run's own (default: the fit's).
    """
    say = progress or (lambda _msg: None)
    t_fit = time.perf_counter()
    t0 = t_fit - fit.seconds if t0 is None else t0  # the fit's seconds include its compilation
    say("evaluating the constraint regions on prior and posterior draws")

    def refit(scaled: ConstraintStudy):
        say("refitting the encompassing model with a scaled prior (reweighting unreliable)")
        if model is not None:  # the stated prior's parameterisation: exact for any prior (see below)
            again = model.fit(encompassing_hypothesis(scaled), settings or fit.settings)
        else:
            again, _ = fit_encompassing(study, scaled, cells, settings or fit.settings)
        return again.trace.posterior if again.diagnostics.converged else None

    comparison = compare(
        study,
        spec,
        fit.trace.posterior,
        fit.settings.seed,
        prior_draws or spec.prior_draws,
        factors,
        say,
        refit=refit if (cells is not None or model is not None) else None,
        prior=prior,
    )
    t_end = time.perf_counter()
    return dataclasses.replace(
        comparison,
        n_observations=obs.n,
        latest_observation=str(obs.latest_date) if obs.latest_date else None,
        converged=fit.diagnostics.converged,
        diagnostics=fit.diagnostics.to_dict(),
        settings=dataclasses.asdict(fit.settings),
        timings={
            "fit_seconds": round(fit.seconds, 2),
            "compile_seconds": round(compile_seconds, 2),
            "comparison_seconds": round(t_end - t_fit, 2),
            "total_seconds": round(t_end - t0, 2),
        },
    )


def compare(
    study: Study,
    spec: ConstraintStudy,
    posterior,
    seed: int,
    n_prior: int,
    factors: tuple[float, ...] = ROBUSTNESS_FACTORS,
    progress: Progress | None = None,
    refit: Callable[[ConstraintStudy], object] | None = None,
    prior: PriorMasses | Future[PriorMasses] | None = None,
) -> ConstraintComparison:
    """The comparison from a fitted encompassing posterior (an xarray Dataset with chain, draw).

    ``refit(scaled_spec)`` (optional) returns the posterior of the encompassing model fitted with a
    scaled prior, or None when that fit failed the gate; it is called only where reweighting is
    unreliable. ``prior``: ``stated_prior_masses(study, spec, seed, n_prior)``, or a future of it,
    if computed beforehand (same numbers).
    """
    regions = Regions(study, spec)
    draws = PriorDraws(study, spec.priors)
    if prior is None:
        prior = stated_prior_masses(study, spec, seed, n_prior, progress)
    elif isinstance(prior, Future):
        prior = prior.result()
    if (prior.seed, prior.n) != (seed, n_prior):
        raise ValueError(f"prior masses of seed {prior.seed} and {prior.n} draws given for seed {seed} and {n_prior}")
    masses, prior_inside = prior.masses, prior.inside
    arrays = draws_as_arrays(posterior, study)
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    post_margins = regions.margins(arrays)
    hyps = spec.hypotheses
    post = {h.id: mass_from_draws((post_margins[h.id] >= 0).reshape(n_chains, n_draws)) for h in hyps}
    bfs = [bayes_factor(masses[h.id], post[h.id]) for h in hyps]
    prior_p = np.array([h.prior_probability for h in hyps])
    probs, sds, upper = posterior_probabilities(bfs, prior_p, derive_rng(seed, "constraints", "probabilities"))
    results = [
        ConstraintHypothesisResult(
            h.id,
            h.label,
            h.claim,
            [c.text for c in h.constraints],
            h.complement,
            float(h.prior_probability),
            masses[h.id],
            post[h.id],
            bf,
            float(p),
            float(s),
            float(u),
        )
        for h, bf, p, s, u in zip(hyps, bfs, probs, sds, upper, strict=True)
    ]
    found = overlaps({h.id: prior_inside[h.id] for h in spec.constrained})
    robustness = [
        _scaled(
            study, spec, regions, arrays, post_margins, probs, f, derive_rng(seed, "constraints", "scaled", k), refit
        )
        for k, f in enumerate(sorted({x for f in factors for x in (f, 1.0 / f)}, reverse=True))
    ]
    return ConstraintComparison(
        study=study.name,
        study_path=str(study.path),
        question=study.question,
        n_observations=0,
        latest_observation=None,
        converged=True,
        diagnostics={},
        encompassing_priors=[
            {"parameter": p, "group": g, "prior": spec.priors[(p, g)].describe()} for p, g in study.slots
        ],
        prior_predictive=_prior_predictive(study, draws, derive_rng(seed, "constraints", "predictive")),
        hypotheses=results,
        overlaps=[
            {"hypotheses": [a, b], "prior_fraction_in_both": round(x, 6), "advice": _overlap_advice(a, b)}
            for a, b, x in found
        ],
        leader=results[int(np.argmax(probs))].id,
        robustness=robustness,
        prior_draws=n_prior,
        posterior_draws=int(n_chains * n_draws),
        settings={},
        method=METHOD_NOTE.format(min_hits=MIN_HITS, n=n_prior),
    )


# --- the two comparisons side by side ------------------------------------------------------------


def constraint_leader_stable(comparison: ConstraintComparison) -> bool | None:
    """Whether the constraint leader keeps the lead with the encompassing prior scaled.

    False when it loses the lead under any scaling; None when that was not evaluated or a scaling's
    reweighting is unreliable (Pareto k) and the leader held in the reliable ones; else True.
    """
    if not comparison.robustness:
        return None
    flipped = any(
        max(r.probabilities, key=lambda k: r.probabilities[k]) != comparison.leader for r in comparison.robustness
    )
    if flipped:
        return False
    return True if all(r.reliable for r in comparison.robustness) else None


@dataclass(frozen=True)
class Agreement:
    """Whether the prior-specified and the constraint comparisons favour the same account.

    ``agree`` is None when there is no prior-specified comparison (fewer than two prior-specified
    hypotheses). ``sentence`` says it plainly, no stronger than the weaker of the two allows.
    """

    agree: bool | None
    prior_leader: str | None
    constraint_leader: str
    sentence: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _robust_phrase(robust: bool | None, what: str) -> str:
    if robust is True:
        return f"robust to {what}"
    if robust is False:
        return f"NOT robust to {what}"
    return f"not shown robust to {what}"


def agreement(
    constraint: ConstraintComparison,
    *,
    prior_leader: str | None = None,
    prior_label: str | None = None,
    prior_probability: float | None = None,
    prior_robust: bool | None = None,
    prior_converged: bool = True,
    prior_bayes_factor: float | None = None,
    prior_mc_can_flip: bool = False,
) -> Agreement:
    """One sentence on whether the two comparisons of a study favour the same hypothesis (by id).

    Pure: the prior-specified side is its leader's id, label and posterior probability, whether the
    lead held over the study's declared class of reasonable priors (``prior_robust``: the run's
    ``judgement["robust"]``; None = not evaluated) and whether its fits passed the gate; the
    constraint side is the comparison itself (its leader, probability, its robustness to the scaled
    encompassing prior by ``constraint_leader_stable``, its fit's gate). Agreement that rests on a
    lead that is not robust, within Monte Carlo error or from a fit that failed its checks is said
    to be tentative, as is one whose prior-specified Bayes factor (leader against runner-up,
    ``prior_bayes_factor``) is below 3 or whose order the Monte Carlo error could reverse
    (``prior_mc_can_flip``); a disagreement names both leads and how robust each is.
    """
    lead = next(h for h in constraint.hypotheses if h.id == constraint.leader)
    c_robust = constraint_leader_stable(constraint)
    c_text = f"'{lead.label}' ({lead.posterior_probability:.2f})"
    others = sorted((h.posterior_probability for h in constraint.hypotheses if h.id != lead.id), reverse=True)
    c_close = bool(others) and lead.posterior_probability - others[0] < 2 * lead.posterior_probability_se
    caveats: list[str] = []
    if not prior_converged:
        caveats.append("a prior-specified fit failed its checks (unreliable)")
    if not constraint.converged:
        caveats.append("the encompassing fit failed its checks (unreliable)")
    if c_close:
        caveats.append("the constraint lead is within Monte Carlo error of the runner-up")
    c_what = "a wider or narrower encompassing prior"
    if constraint.robustness:
        scales = sorted({round(max(r.factor, 1 / r.factor), 3) for r in constraint.robustness})
        c_what = "a " + " or ".join(f"{x:g}x" for x in scales) + " wider or narrower encompassing prior"
    if prior_leader is None:
        sentence = (
            f"The constraint hypotheses favour {c_text[:-1]}; {_robust_phrase(c_robust, c_what)}); "
            "there are not two prior-specified hypotheses to compare them with."
        )
        if caveats:
            sentence = sentence[:-1] + "; " + "; ".join(caveats) + "."
        return Agreement(None, None, constraint.leader, sentence)
    if prior_bayes_factor is not None and prior_bayes_factor < 3:
        caveats.append(f"the prior-specified evidence is weak (Bayes factor {prior_bayes_factor:.3g}, below 3)")
    if prior_mc_can_flip:
        caveats.append("the Monte Carlo error could reverse the prior-specified order")
    p_label = prior_label or prior_leader
    p_text = f"'{p_label}'" + (f" ({prior_probability:.2f}" if prior_probability is not None else " (")
    p_what = "the declared class of reasonable priors"
    agree = prior_leader == constraint.leader
    if agree:
        both = (
            f"Both comparisons favour '{p_label}' (prior-specified "
            + (f"{prior_probability:.2f}" if prior_probability is not None else "leader")
            + f", constraint {lead.posterior_probability:.2f})"
        )
        if prior_robust is True and c_robust is True and not caveats:
            sentence = f"{both}, and the lead is robust in both (to {p_what}; to {c_what})."
        else:
            weak = []
            if prior_robust is not True:
                weak.append(f"the prior-specified lead is {_robust_phrase(prior_robust, p_what)}")
            if c_robust is not True:
                weak.append(f"the constraint lead is {_robust_phrase(c_robust, c_what)}")
            sentence = f"{both}, but the agreement is tentative: " + "; ".join(weak + caveats) + "."
    else:
        sentence = (
            f"The comparisons disagree: the prior-specified hypotheses favour {p_text}; "
            f"{_robust_phrase(prior_robust, p_what)}) while the constraint hypotheses favour {c_text[:-1]}; "
            f"{_robust_phrase(c_robust, c_what)})"
        )
        sentence += ("; " + "; ".join(caveats) if caveats else "") + "; neither conclusion should be reported alone."
    return Agreement(agree, prior_leader, constraint.leader, sentence)


def agreement_with_summary(constraint: ConstraintComparison, summary: dict) -> Agreement:
    """``agreement`` with the prior-specified side read from an update record or summary.json."""
    j = summary.get("judgement") or None
    rows = summary.get("hypotheses") or []
    if j is None or len(rows) < 2:
        return agreement(constraint)
    labels = {h["id"]: h.get("label", h["id"]) for h in rows}
    converged = all(h.get("diagnostics", {}).get("converged", True) for h in rows)
    return agreement(
        constraint,
        prior_leader=j["leader"],
        prior_label=labels.get(j["leader"]),
        prior_probability=j.get("posterior_probability"),
        prior_robust=j.get("robust"),
        prior_converged=converged,
        prior_bayes_factor=j.get("bayes_factor"),
        prior_mc_can_flip=bool(j.get("mc_error_can_flip")),
    )


def _overlap_advice(a: str, b: str) -> str:
    return (
        f"'{a}' and '{b}' share part of their regions, so their probabilities are not exclusive; make them "
        f"exclusive by adding to one the negation of a constraint of the other (e.g. '>' in one, '<=' in the other)"
    )


def _prior_predictive(
    study: Study, draws: PriorDraws, rng: np.random.Generator, n: int = 4_000
) -> dict[str, list[float]]:
    """Share of cooperative interactions over the study's whole time, 5/50/95% under the encompassing prior."""
    arrays = draws.arrays(rng.standard_normal((n, draws.dim)))
    eta = latent_logit(
        np, arrays, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )
    eta *= 0.5
    share = 0.5 * (1.0 + np.tanh(eta, out=eta).mean(axis=(2, 3)))  # (S, G): mean expit, as in _domain_shares
    return {
        g.id: [round(float(x), 3) for x in np.quantile(share[:, i], [0.05, 0.5, 0.95])]
        for i, g in enumerate(study.groups)
    }


def _scaled(
    study: Study,
    spec: ConstraintStudy,
    regions: Regions,
    arrays: dict[str, np.ndarray],
    post_margins: dict[str, np.ndarray],
    base: np.ndarray,
    factor: float,
    rng: np.random.Generator,
    refit: Callable[[ConstraintStudy], object] | None = None,
) -> ConstraintRobustness:
    """Probabilities with every encompassing prior scaled by ``factor``: posterior by PSIS
    reweighting, or by ``refit`` where Pareto k says reweighting is unreliable."""
    priors = {k: scale_prior(p, factor) for k, p in spec.priors.items()}
    scaled = dataclasses.replace(spec, priors=priors)
    masses, _ = prior_masses(Regions(study, scaled), PriorDraws(study, priors), spec.prior_draws, rng)
    log_ratio = log_prior_density(study, priors, arrays) - log_prior_density(study, spec.priors, arrays)
    log_w, k = psislw(-log_ratio[None, :])
    w = np.exp(log_w[0])
    n_eff = 1.0 / float(np.sum(w**2))
    bfs = []
    for h in spec.hypotheses:
        inside = post_margins[h.id] >= 0
        p = float(np.sum(w * inside))
        se = math.sqrt(max(p * (1 - p), 0.0) / n_eff)
        hits = int(inside.sum())
        post = Mass(p, se, "reweighted", n_eff, hits, None if p > 0 else 3.0 / n_eff)
        bfs.append(bayes_factor(masses[h.id], post))
    k0 = float(k[0])
    method, reliable = "reweighted", k0 <= PARETO_K_MAX
    if not reliable and refit is not None:
        posterior = refit(scaled)
        if posterior is not None:
            n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
            margins = regions.margins(draws_as_arrays(posterior, study))
            bfs = [
                bayes_factor(masses[h.id], mass_from_draws((margins[h.id] >= 0).reshape(n_chains, n_draws)))
                for h in spec.hypotheses
            ]
            method, reliable = "refit", True
        else:
            method = "refit failed"  # the scaled prior's own fit failed the convergence gate
    probs, _, _ = posterior_probabilities(bfs, np.array([h.prior_probability for h in spec.hypotheses]), rng)
    return ConstraintRobustness(
        factor=factor,
        probabilities={h.id: round(float(p), 4) for h, p in zip(spec.hypotheses, probs, strict=True)},
        max_change=round(float(np.max(np.abs(probs - base))), 4),
        pareto_k=round(k0, 3),
        reliable=bool(reliable),
        method=method,
    )


__all__ = [
    "Agreement",
    "ConstraintComparison",
    "ConstraintHypothesisResult",
    "ConstraintRobustness",
    "PriorDraws",
    "PriorMasses",
    "Regions",
    "agreement",
    "agreement_with_summary",
    "compare",
    "comparison_from_fit",
    "constraint_leader_stable",
    "constraint_study",
    "encompassing_hypothesis",
    "fit_encompassing",
    "prior_masses_in_background",
    "stated_prior_masses",
    "run_constraints",
]
