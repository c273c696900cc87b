"""Simulation-based calibration of the constraint comparison: one encompassing fit per data set.

A study's constraint hypotheses (forecast.spec.constraints) are regions of ONE encompassing
model; each hypothesis's prior is the encompassing prior restricted to its region. So data whose
truth is known are drawn as:

1. a hypothesis H from the constraint hypotheses' prior probabilities (the complement included);
2. parameters from the encompassing prior restricted to H's region, by rejection: independent
   draws of the encompassing prior (``PriorDraws``) until one falls inside (``Regions``); the
   number of candidates is recorded, and a region whose prior mass would need more than
   ``MAX_CANDIDATES`` candidates per draw on average is refused before any fit;
3. outcomes on the study's design (the same as the prior-specified calibration uses). An
   overdispersed study's (``[model] overdispersion = "cell"``) truth also has a concentration phi,
   drawn from the study's concentration prior (no region constrains it, so the restricted prior
   leaves it as it is), and each (group, domain, quarter) cell of the design first draws its
   cooperative share from Beta(p phi, (1 - p) phi) (``simulate_outcomes``, as the prior-specified
   calibration simulates it).

Each data set is then compared exactly as `forecast update` compares the constraint hypotheses:
the encompassing model is fitted ONCE (same sampler and convergence gate), each region's
posterior mass is read off its draws, and the Bayes factors use the regions' prior masses,
which depend only on the encompassing prior and the regions and are therefore estimated once
for the whole calibration (``prior_masses``, with the seed and number of draws `forecast update`
uses). The posterior probabilities then go through the same checks as the prior-specified ones
(``checks.calibration_checks``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.data.cells import cell_data
from forecast.errors import InputError
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.build import draws_as_arrays
from forecast.model.predictive import simulate_outcomes
from forecast.settings import Progress, derive_rng, seed_sequence
from forecast.spec.constraints import ConstraintStudy
from forecast.spec.study import CONCENTRATION, Study
from forecast.stats.encompassing import Mass, bayes_factor, mass_from_draws, posterior_probabilities
from forecast.workflows.calibrate.records import RejectionInfo
from forecast.workflows.calibrate.replicates import design_table
from forecast.workflows.constraints import (
    PriorDraws,
    Regions,
    constraint_study,
    encompassing_hypothesis,
    prior_masses,
)

BATCH = 2_000  # candidates drawn at once by the rejection sampler
MAX_CANDIDATES = 1_000_000  # a region needing more candidates per draw (prior mass < 1e-6) is refused
STREAM = 37  # the seed stream of the constraint data sets (the prior-specified ones use 31)
CONSTRAINT_METHOD = (
    "Each data set: a constraint hypothesis drawn from the prior probabilities (the complement included), "
    "parameters from the encompassing prior restricted to its region by rejection (independent encompassing "
    "prior draws until one falls inside), outcomes on the study's design (overdispersed: a concentration from "
    "its prior, each cell's share from its Beta); then ONE encompassing fit, each "
    "region's posterior mass from its draws over its prior mass (estimated once, as forecast update does) "
    "gives the Bayes factors and posterior probabilities."
)


@dataclass(frozen=True)
class ConstraintSetup:
    """What every constraint data set shares, computed once: the regions' prior masses."""

    spec: ConstraintStudy
    ids: tuple[str, ...]
    prior: np.ndarray  # (H,) prior probabilities, the complement included
    masses: dict[str, Mass]
    prior_draws: int
    seconds: float


def constraint_setup(
    study: Study, seed: int, *, prior_draws: int | None = None, progress: Progress | None = None
) -> ConstraintSetup:
    """The regions' prior masses (as `forecast update` estimates them), and a refusal for any
    region too small to draw from by rejection."""
    t0 = time.perf_counter()
    spec = constraint_study(study)
    n = prior_draws or spec.prior_draws
    masses, _ = prior_masses(
        Regions(study, spec), PriorDraws(study, spec.priors), n, derive_rng(seed, "constraints", "prior"), progress
    )
    for h in spec.hypotheses:
        m = masses[h.id].value
        if m * MAX_CANDIDATES < 1:
            raise InputError(
                f"{study.path}: constraint hypothesis '{h.id}' has prior mass {m:.2g} under the encompassing prior: "
                f"drawing its parameters by rejection would take about {expected_candidates(m):.2g} encompassing "
                f"prior draws per data set (the limit is {MAX_CANDIDATES:,}); its region is too small to calibrate "
                "by simulation. Loosen its constraints, or calibrate the prior-specified comparison only "
                "(--comparison prior)"
            )
    return ConstraintSetup(
        spec,
        tuple(h.id for h in spec.hypotheses),
        np.array([h.prior_probability for h in spec.hypotheses], dtype=float),
        masses,
        n,
        time.perf_counter() - t0,
    )


def expected_candidates(mass: float) -> float:
    """Encompassing prior draws needed on average for one draw inside a region of this mass."""
    return math.inf if mass <= 0 else 1.0 / mass


def rejection_info(setup: ConstraintSetup, candidates: dict[str, list[int]]) -> dict[str, RejectionInfo]:
    """Per hypothesis: its prior mass, the candidates expected per draw, and those actually used."""
    out = {}
    for hid in setup.ids:
        used = candidates.get(hid, [])
        out[hid] = RejectionInfo(
            prior_mass=float(setup.masses[hid].value),
            expected_candidates=expected_candidates(setup.masses[hid].value),
            n_draws=len(used),
            candidates=int(sum(used)),
            max_candidates=int(max(used)) if used else 0,
        )
    return out


def restricted_draw(
    regions: Regions,
    draws: PriorDraws,
    hid: str,
    rng: np.random.Generator,
    max_candidates: int = MAX_CANDIDATES,
    mass: float | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """One draw of the encompassing prior restricted to hypothesis ``hid``'s region, by rejection.

    Returns the parameters (arrays without the sample axis, as ``simulate_outcomes`` takes them)
    and how many candidates it took (the accepted one included). With the region's prior ``mass``
    the candidates are drawn in batches of about 2 / mass (fewer wasted evaluations); the draw is
    the first candidate inside either way.
    """
    used = 0
    batch = BATCH if not mass else int(np.clip(math.ceil(2.0 / mass), 16, BATCH))
    while used < max_candidates:
        k = min(batch, max_candidates - used)
        arrays = draws.arrays(rng.standard_normal((k, draws.dim)))
        inside = np.flatnonzero(regions.margins(arrays)[hid] >= 0)
        if inside.size:
            i = int(inside[0])
            return {name: v[i] for name, v in arrays.items()}, used + i + 1
        used += k
    raise InputError(
        f"constraint hypothesis '{hid}': no encompassing prior draw fell inside its region in {max_candidates:,} "
        "candidates; its region is too small to calibrate by simulation"
    )


def constraint_replicate_seed(seed: int, index: int) -> np.random.SeedSequence:
    return seed_sequence(seed, STREAM, index)


def simulate_constraint_replicate(
    study: Study, setup: ConstraintSetup, design: pd.DataFrame, seed: int, index: int
) -> tuple[int, dict[str, np.ndarray], pd.DataFrame, int]:
    """Constraint data set ``index``: the true hypothesis, its parameters, the observations, and
    the candidates the rejection sampler needed.

    An overdispersed study's parameters include the concentration (``CONCENTRATION``), drawn from
    the study's prior after the restricted draw (so the truth and its other parameters are the same as
    without it)."""
    rng = np.random.default_rng(constraint_replicate_seed(seed, index))
    true = int(rng.choice(len(setup.prior), p=setup.prior / setup.prior.sum()))
    regions, draws = Regions(study, setup.spec), PriorDraws(study, setup.spec.priors)
    hid = setup.ids[true]
    params, candidates = restricted_draw(regions, draws, hid, rng, mass=setup.masses[hid].value)
    if study.overdispersed:
        params[CONCENTRATION] = study.concentration.sample(rng, 1)[0]
    cooperative = simulate_outcomes(study, params, design, rng)
    return true, params, design_table(study, design, cooperative), candidates


@dataclass(frozen=True)
class ConstraintReplicate:
    """One simulated data set and what one encompassing fit concluded from it."""

    index: int
    true: int  # index of the constraint hypothesis the parameters were drawn from
    n_cooperative: int
    candidates: int
    probabilities: tuple[float, ...]
    log_bf: tuple[float, ...]
    log_bf_se: tuple[float, ...]
    bound: tuple[str | None, ...]
    posterior_mass: tuple[float, ...]
    converged: tuple[bool, ...]  # one entry: the encompassing fit (same shape as ``Replicate``'s)
    problems: tuple[str, ...]
    seconds: float
    worker: str

    def posterior(self, _prior: np.ndarray | None = None) -> np.ndarray:
        return np.array(self.probabilities)


def comparison_on(
    study: Study, setup: ConstraintSetup, posterior, seed: int, index: int
) -> tuple[np.ndarray, list, list[Mass]]:
    """Posterior probabilities, Bayes factors and posterior masses from one encompassing posterior."""
    regions = Regions(study, setup.spec)
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    margins = regions.margins(draws_as_arrays(posterior, study))
    post = [mass_from_draws((margins[h] >= 0).reshape(n_chains, n_draws)) for h in setup.ids]
    bfs = [bayes_factor(setup.masses[h], m) for h, m in zip(setup.ids, post, strict=True)]
    probs, _, _ = posterior_probabilities(bfs, setup.prior, derive_rng(seed, "calibrate-constraints", index))
    return probs, bfs, post


def run_constraint_replicate(
    study: Study, design: pd.DataFrame, settings: SamplerSettings, index: int, setup: ConstraintSetup
) -> ConstraintReplicate:
    """Worker entry point: simulate constraint data set ``index`` and fit the encompassing model once."""
    t0 = time.perf_counter()
    true, _params, table, candidates = simulate_constraint_replicate(study, setup, design, settings.seed, index)
    cells = cell_data(table, study)
    enc = encompassing_hypothesis(setup.spec)
    model = StudyModel(dataclasses.replace(study, hypotheses=(enc,)), cells)
    seed = int(constraint_replicate_seed(settings.seed, index).generate_state(1)[0])
    fit = model.fit(enc, dataclasses.replace(settings, seed=seed), cells=cells)
    probs, bfs, post = comparison_on(study, setup, fit.trace.posterior, settings.seed, index)
    return ConstraintReplicate(
        index=index,
        true=true,
        n_cooperative=int(table["cooperative"].sum()),
        candidates=candidates,
        probabilities=tuple(float(p) for p in probs),
        log_bf=tuple(float(b.log_bf) for b in bfs),
        log_bf_se=tuple(float(b.log_bf_se) for b in bfs),
        bound=tuple(b.bound for b in bfs),
        posterior_mass=tuple(float(m.value) for m in post),
        converged=(bool(fit.diagnostics.converged),),
        problems=tuple(f"encompassing: {p}" for p in fit.diagnostics.problems or ()),
        seconds=time.perf_counter() - t0,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
