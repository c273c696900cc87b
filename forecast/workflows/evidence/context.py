"""A finished run read for `forecast evidence`: the data it was fitted to, its draws as log-odds.

``load_run`` applies the one staleness rule; ``base_posterior`` and ``posterior_with_se`` give
the posterior probabilities from the run's (or a changed data set's) log marginal likelihoods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from forecast.data.cells import CellData, cell_data, corroboration, evidence_table
from forecast.data.observations import Observations, load_observations
from forecast.errors import RunStoreError
from forecast.fit.sampler import SamplerSettings
from forecast.model.build import draws_as_arrays, latent_logit, years_from_reference
from forecast.model.record import concentration_draws
from forecast.runs.layout import SUMMARY
from forecast.runs.stored import StoredRun
from forecast.spec.study import Study
from forecast.stats.loo import PARETO_K_GOOD, posterior_probabilities


@dataclass
class RunContext:
    """A finished run with the data and draws evidence needs."""

    study: Study
    run: StoredRun
    table: pd.DataFrame  # the run's observations, with origin_id flattened to each row's root event
    cells: CellData
    settings: SamplerSettings
    hypotheses: list[str]
    prior: np.ndarray
    log_ml: np.ndarray
    log_ml_se: np.ndarray
    eta: list[np.ndarray] = field(repr=False)  # per hypothesis: (draws, group, domain, quarter)
    # per hypothesis: an overdispersed model's concentration draws (draws,), else None
    concentration: list[np.ndarray | None] = field(default_factory=list, repr=False)
    draws: int = 0
    # per hypothesis: its fit's chains (the draws of eta[i] are chain-major, chains_per[i] of them;
    # a fit short of effective draws got more chains than the others)
    chains_per: tuple[int, ...] = ()

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def summary(self) -> dict:
        return self.run.summary

    @property
    def chains(self) -> int:
        """The fewest chains of any hypothesis's fit."""
        return min(self.chains_per, default=0)

    @property
    def n_samples(self) -> int:
        return self.chains * self.draws

    @property
    def k_threshold(self) -> float:
        if self.n_samples < 10:  # no prior-specified draws (constraint hypotheses only)
            return float(PARETO_K_GOOD)
        return float(min(1 - 1 / np.log10(self.n_samples), PARETO_K_GOOD))


def load_run(study: Study, run: StoredRun, obs: Observations | None = None) -> RunContext:
    """A run of ``study`` with its draws; refused (RunStoreError, exit 2) unless it matches the
    current inputs (``StoredRun.check_inputs``, the one staleness rule).

    ``obs``: the current observations, if already read. When the run matches, they are the very
    observations it was fitted to (same SHA-256), so the file is read and validated once.
    """
    obs = obs or load_observations(study)
    run.check_inputs(study, obs.sha256)
    rows = {h["id"]: h for h in run.summary.get("hypotheses", [])}
    hyps = [h.id for h in study.hypotheses]
    if sorted(rows) != sorted(hyps):
        raise RunStoreError(f"{run.path}: its hypotheses {sorted(rows)} are not the study's {sorted(hyps)}")
    table = flatten_origins(evidence_table(obs.table, study))  # the rows the study counts ([evidence] initiators)
    cells = cell_data(table, study)
    eta, concentration, chains_per, draws = [], [], [], 0
    years = years_from_reference(study)
    ref = study.time.reference - study.time.start
    for h in hyps:
        post = run.open_posterior(h)
        chains_per.append(int(post.sizes["chain"]))
        draws = int(post.sizes["draw"])
        eta.append(latent_logit(np, draws_as_arrays(post, study), years, ref, study.time.components))
        concentration.append(concentration_draws(post, study))
    try:
        settings = SamplerSettings(**run.summary["settings"])
    except (KeyError, TypeError):
        raise RunStoreError(f"{run.path / SUMMARY}: no readable sampler settings; the file is damaged") from None
    return RunContext(
        study=study,
        run=run,
        table=table,
        cells=cells,
        settings=settings,
        hypotheses=hyps,
        prior=np.array([rows[h]["prior_probability"] for h in hyps]),
        log_ml=np.array([rows[h]["log_marginal_likelihood"] for h in hyps]),
        log_ml_se=np.array([rows[h]["log_marginal_likelihood_se"] for h in hyps]),
        eta=eta,
        concentration=concentration,
        draws=draws,
        chains_per=tuple(chains_per),
    )


def flatten_origins(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each ``origin_id`` replaced by the row's root event (or '' for a root).

    Counting is unchanged, and a row removed later no longer breaks a chain of reports.
    """
    roots, _ = corroboration(table)
    ids = table["id"].astype(str).to_numpy()
    return table.assign(origin_id=np.where(roots != ids, roots, "").astype(object))


# --- the run's conclusion -------------------------------------------------------------------------


def base_posterior(ctx: RunContext) -> np.ndarray:
    return softmax(np.log(ctx.prior) + ctx.log_ml)


def posterior_with_se(ctx: RunContext, log_ml: np.ndarray, log_ml_se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As ``forecast.stats.loo.posterior_probabilities``."""

    return posterior_probabilities(log_ml, log_ml_se, ctx.prior)
