"""One simulated data set of `forecast calibrate`, and the full update run on it (a worker's task).

A hypothesis and its parameters are drawn from the priors and outcomes simulated on the study's
design; ``run_replicate`` is the worker entry point the data sets are fanned out to.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import softmax

from forecast.data.cells import cell_data
from forecast.data.observations import reliability_weight
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.predictive import one_prior_draw, simulate_outcomes
from forecast.settings import seed_sequence
from forecast.spec.study import Study


@dataclass(frozen=True)
class Replicate:
    """One simulated data set and what the full update concluded from it."""

    index: int
    true: int  # index of the hypothesis the data were drawn from
    n_cooperative: int
    log_ml: tuple[float, ...]
    log_ml_se: tuple[float, ...]
    converged: tuple[bool, ...]
    problems: tuple[str, ...]  # convergence problems of the fits, "hypothesis: problem"
    seconds: float
    worker: str

    def posterior(self, prior: np.ndarray) -> np.ndarray:
        return softmax(np.log(prior) + np.array(self.log_ml))


def design_table(study: Study, design: pd.DataFrame, cooperative: np.ndarray) -> pd.DataFrame:
    """A design with outcomes as the validated observation table that ``cell_data`` reads."""
    dates = pd.to_datetime(design["event_date"])
    return pd.DataFrame(
        {
            "group": design["counterpart"].map(study.counterpart_group).to_numpy(),
            "domain": design["domain"].to_numpy(),
            "quarter": (dates.dt.year * 4 + (dates.dt.month - 1) // 3).astype("Int64").to_numpy(),
            "cooperative": np.asarray(cooperative, dtype=bool),
            "weight": reliability_weight(design["reliability"].astype(str), study).to_numpy(),
        }
    )


def replicate_seed(seed: int, index: int) -> np.random.SeedSequence:
    return seed_sequence(seed, 31, index)


def simulate_replicate(study: Study, design: pd.DataFrame, seed: int, index: int) -> tuple[int, pd.DataFrame]:
    """The true hypothesis and the simulated observations of data set ``index``."""
    rng = np.random.default_rng(replicate_seed(seed, index))
    prior = np.array([h.prior_probability for h in study.hypotheses])
    true = int(rng.choice(len(prior), p=prior / prior.sum()))
    params = one_prior_draw(study, study.hypotheses[true], rng)
    cooperative = simulate_outcomes(study, params, design, rng)
    return true, design_table(study, design, cooperative)


def run_replicate(study: Study, design: pd.DataFrame, settings: SamplerSettings, index: int) -> Replicate:
    """Worker entry point: simulate data set ``index`` and run the full update on it.

    The model is the one `forecast update` would build for these data (``StudyModel`` is cheap;
    its compiled code is shared by every model of the same structure in the process).
    """
    t0 = time.perf_counter()
    true, table = simulate_replicate(study, design, settings.seed, index)
    cells = cell_data(table, study)
    model = StudyModel(study, cells)
    fit_settings = replace(settings, seed=int(replicate_seed(settings.seed, index).generate_state(1)[0]))
    log_ml, se, ok, problems = [], [], [], []
    for h in study.hypotheses:
        judged = fit_hypothesis(model, h, fit_settings, cells=cells, with_loo=False)
        log_ml.append(float(judged.bridge.log_ml))
        se.append(float(judged.bridge.se))
        ok.append(bool(judged.converged))
        problems += [f"{h.id}: {p}" for p in judged.fit.diagnostics.problems]
    return Replicate(
        index=index,
        true=true,
        n_cooperative=int(table["cooperative"].sum()),
        log_ml=tuple(log_ml),
        log_ml_se=tuple(se),
        converged=tuple(ok),
        problems=tuple(problems),
        seconds=time.perf_counter() - t0,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
