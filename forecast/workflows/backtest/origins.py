"""The backtest's origins: what was known at each, and every hypothesis fitted on it.

``fit_origin_task`` is the worker entry point when exact refits are fanned out over
``forecast.fit.pool`` (one origin per task); a ``_Forecast`` is what travels back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import expit

from forecast.data.cells import CellData
from forecast.errors import ConvergenceError, InputError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.pool import cached_model
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.build import draws_as_arrays
from forecast.model.predictive import logit_grid
from forecast.model.record import concentration_draws
from forecast.settings import derive_seed
from forecast.spec.questions import quarter_start
from forecast.spec.study import Study, quarter_index, quarter_label
from forecast.workflows.backtest.records import OriginFit
from forecast.workflows.backtest.scoring import cell_loglik

DEFAULT_ORIGINS = 12


# --- what was known when ---------------------------------------------------------------------


def known_at(table: pd.DataFrame, quarter: int) -> pd.DataFrame:
    """The observations reported by the last day of ``quarter`` (what a forecaster knew then)."""
    return table[table["report_date"] < pd.Timestamp(quarter_start(quarter + 1))]


def last_target_quarter(study: Study, table: pd.DataFrame) -> int:
    """The last quarter forecasts can be checked against: the latest event's, within the window."""
    return min(study.time.end, int(table["quarter"].max()))


def default_origins(study: Study, table: pd.DataFrame, n: int = DEFAULT_ORIGINS) -> list[int]:
    """The ``n`` origins ending one quarter before the last checkable quarter."""
    last = last_target_quarter(study, table) - 1
    return list(range(max(study.time.start, last - n + 1), last + 1))


def _parse_origins(text: str | None, study: Study, table: pd.DataFrame, n: int) -> list[int]:

    if text is None:
        origins = default_origins(study, table, n)
    else:
        parts = text.split(":")
        try:
            first, last = (quarter_index(parts[0].strip()), quarter_index(parts[-1].strip()))
        except ValueError:
            raise InputError(f"--origins: '{text}' is not a quarter or a range like '2022Q4:2025Q3'") from None
        if len(parts) > 2 or last < first:
            raise InputError(f"--origins: '{text}' is not a range like '2022Q4:2025Q3' (first:last)")
        origins = list(range(first, last + 1))
    last_target = last_target_quarter(study, table)
    if not origins or origins[0] < study.time.start or origins[-1] >= last_target:
        raise InputError(
            f"--origins must lie in {quarter_label(study.time.start)}..{quarter_label(last_target - 1)}, "
            f"the quarters that have a later quarter with data to check forecasts against"
        )
    return origins


# --- one hypothesis's posterior as it moves from origin to origin --------------------------------


@dataclass
class _Posterior:
    """A hypothesis's last refit, kept to carry forward by importance sampling (``lfo="approx"``)."""

    eta: np.ndarray  # (draws, G, D, window quarters)
    chains: int
    cells: CellData
    log_ml: float
    log_ml_se: float
    concentration: np.ndarray | None = None  # (draws,): an overdispersed model's, else None


@dataclass
class _Forecast:
    """One hypothesis at one origin: what the scoring needs, and nothing more (it travels between processes)."""

    fit: OriginFit
    share: np.ndarray | None  # (draws, G, D, targets): the cooperative share at the target quarters
    weights: np.ndarray  # (draws,)
    loglik_next: np.ndarray | None  # (draws,): log-likelihood of the next quarter's events
    k_next: float | None  # Pareto k of the weights (approximate LFO), None for a fit at this origin
    concentration: np.ndarray | None = None  # (draws,): an overdispersed model's, else None


def _origin_seed(seed: int, origin: int) -> int:
    return derive_seed(seed, origin)


def _forecast_from(post: _Posterior, study: Study, targets, next_block, fit: OriginFit, log_w, k) -> _Forecast:
    share = expit(post.eta[..., [q - study.time.start for q in targets]]) if targets else None
    phi = post.concentration
    ll = cell_loglik(post.eta, next_block, phi) if next_block is not None and next_block.n_cells else None
    return _Forecast(fit, share, np.exp(log_w), ll, k, phi)


def _refit(model: StudyModel, h, origin: int, cells_t: CellData, settings: SamplerSettings, say) -> tuple:
    study = model.study
    seeded = replace(settings, seed=_origin_seed(settings.seed, origin))
    judged = fit_hypothesis(model, h, seeded, cells=cells_t, with_loo=False, progress=say)
    fit, bridge = judged.fit, judged.bridge
    posterior = fit.trace.posterior
    eta = logit_grid(draws_as_arrays(posterior, study), study, study.time.end, np.random.default_rng(0))
    phi = concentration_draws(posterior, study)
    post = _Posterior(eta, fit.settings.chains, cells_t, bridge.log_ml, bridge.se, phi)
    return post, OriginFit(origin, h.id, True, None, bridge.log_ml, bridge.se, fit.diagnostics)


def fit_origin(
    model: StudyModel, origin: int, cells_t: CellData, targets: list[int], next_block, settings: SamplerSettings
) -> dict[str, _Forecast]:
    """Exact refits of every hypothesis on what was known at ``origin`` (one backtest task)."""
    out = {}
    for h in model.study.hypotheses:
        post, fit = _refit(model, h, origin, cells_t, settings, None)
        out[h.id] = _forecast_from(
            post, model.study, targets, next_block, fit, np.full(post.eta.shape[0], -np.log(post.eta.shape[0])), None
        )
    return out


def fit_origin_task(
    study: Study, cells: CellData, origin: int, cells_t: CellData, targets, next_block, settings
) -> dict[str, _Forecast]:
    """Worker entry point: ``fit_origin`` on this process's compiled model (built the first time)."""
    return fit_origin(cached_model(study, cells), origin, cells_t, targets, next_block, settings)


@dataclass(frozen=True)
class _Origin:
    origin: int
    known: pd.DataFrame
    cells: CellData
    targets: list[int]
    next_block: CellData | None


def _check_converged(forecasts: dict[str, _Forecast], origin: int, allow_unconverged: bool) -> bool:
    ok = True
    for h, f in forecasts.items():
        d = f.fit.diagnostics
        if d is not None and not d.converged:
            ok = False
            if not allow_unconverged:
                raise ConvergenceError(
                    f"origin {quarter_label(origin)}, hypothesis '{h}': the fit failed its convergence checks after "
                    f"one retry ({'; '.join(d.problems)}); nothing was written. "
                    "Try more --tune/--draws, later origins, or --allow-unconverged."
                )
    return ok
