"""`forecast evidence`: which observations drive the conclusion, and what if one of them is wrong.

Reads the study's latest run (posterior draws and log marginal likelihoods) and, for every
observation:

- *diagnosticity*: its leave-one-out log predictive density under each hypothesis,
  log p(y_i | y_-i, H), and the differences between hypotheses (log predictive likelihood
  ratios). The larger the spread between hypotheses, the more diagnostic the item (ACH).
- *critical items* (ACH step 6, "what if this evidence is wrong?"): the posterior probability of
  each hypothesis if the observation were removed, or its outcome reversed. Without refitting:

      log p(y_-i | H)       = log p(y | H) - log p(y_i | y_-i, H)
      log p(y_-i, y'_i | H) = log p(y_-i | H) + log p(y'_i | y_-i, H)

  with both predictive densities estimated by Pareto-smoothed importance sampling from the
  posterior draws (the same weights as PSIS-LOO). Where the Pareto k of those weights is above
  min(1 - 1/log10(S), 0.7) the estimate is unreliable, and the hypothesis is refitted on the
  changed data instead (bridge sampling on the refit), up to a budget of refits.
- *evidence quality*: the same, with every observation of reliability weight below a threshold
  dropped at once.

Corroboration (see ``forecast.data.cells``): reports of one event count once, through the report
with the highest weight. Removing or reversing a report that is not counted changes nothing;
removing the counted report lets the next-best report of the same event count instead. Event
membership is fixed by the full file, so removing a report never splits its event.

Every change of the data is expressed as the terms of the likelihood it removes and adds, so
one importance-sampling estimator serves removals, reversals and quality filters:

    log p(y') - log p(y) = -log E_w[exp(L_removed)] + log E_w[exp(L_added)],

where E_w is the PSIS-weighted mean over posterior draws with weights exp(-L_removed).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp, softmax

from forecast.data.cells import CellData, cell_data, corroboration
from forecast.data.observations import Observations, load_observations
from forecast.errors import ConvergenceError, InputError, RunStoreError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.build import draws_as_arrays, latent_logit, years_from_reference
from forecast.runs.layout import EVIDENCE, POINTWISE, SUMMARY
from forecast.runs.store import preflight
from forecast.runs.stored import StoredRun
from forecast.settings import Progress
from forecast.spec.study import Study, load_study
from forecast.stats.loo import PARETO_K_GOOD, relative_ess

DEFAULT_SHIFT = 0.1
DEFAULT_MAX_REFITS = 10
MIN_FREE_BYTES = 4 * 1024 * 1024  # room checked before refits: evidence.json of a large study is a few MB
CORROBORATION_RULE = "each event counts once, through its report with the highest reliability weight"
UNRELIABLE_RUN = "UNRELIABLE: the run's fits failed their convergence checks"

# A likelihood term: (group, domain, quarter, cooperative, weight); the model's log-likelihood is
# the sum over counted observations of weight * log sigmoid(+-eta[group, domain, quarter]).
Term = tuple[int, int, int, bool, float]


# --- loading a run ----------------------------------------------------------------------------------


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
    chains: int = 0
    draws: int = 0

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def summary(self) -> dict:
        return self.run.summary

    @property
    def n_samples(self) -> int:
        return self.chains * self.draws

    @property
    def k_threshold(self) -> float:
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
    table = flatten_origins(obs.table)
    cells = cell_data(table, study)
    eta, chains, draws = [], 0, 0
    years = years_from_reference(study)
    ref = study.time.reference - study.time.start
    for h in hyps:
        post = run.open_posterior(h)
        chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
        eta.append(latent_logit(np, draws_as_arrays(post, study), years, ref, study.time.components))
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
        chains=chains,
        draws=draws,
    )


def flatten_origins(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each ``origin_id`` replaced by the row's root event (or '' for a root).

    Counting is unchanged, and a row removed later no longer breaks a chain of reports.
    """
    roots, _ = corroboration(table)
    ids = table["id"].astype(str).to_numpy()
    return table.assign(origin_id=np.where(roots != ids, roots, "").astype(object))


# --- likelihood terms and importance sampling ------------------------------------------------------


def pattern_terms(cells: CellData) -> list[Term]:
    """The likelihood term of each pattern, in pattern order."""
    c = cells.pattern_cell
    return list(
        zip(
            cells.group[c].tolist(),
            cells.domain[c].tolist(),
            cells.quarter[c].tolist(),
            cells.pattern_coop.tolist(),
            cells.pattern_weight.tolist(),
            strict=True,
        )
    )


def terms(cells: CellData) -> Counter:
    """The likelihood's terms with their multiplicities."""
    return Counter(dict(zip(pattern_terms(cells), cells.pattern_count.tolist(), strict=True)))


def term_loglik(eta: np.ndarray, keys: list[Term]) -> np.ndarray:
    """Per-draw log-likelihood of each term: (draws, len(keys))."""
    if not keys:
        return np.zeros((eta.shape[0], 0))
    g, d, t, coop, w = (np.array(x) for x in zip(*keys, strict=True))
    e = eta[:, g, d, t]
    return w * np.where(coop.astype(bool), -np.logaddexp(0.0, -e), -np.logaddexp(0.0, e))


def psis_weights(log_ratios: np.ndarray, r_eff: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Pareto-smoothed log weights for importance ratios exp(log_ratios), and Pareto k.

    arviz-stats 1.x's ``psislw`` takes the log-*likelihood* of the left-out terms and negates it
    itself (``_psislw`` smooths ``-ary``); older ArviZ took the log ratios. Hence the sign here.
    """
    from forecast.stats.psis import psislw

    lw, k = psislw(-log_ratios, r_eff=r_eff)
    lw = np.asarray(lw, dtype=float)
    return lw - logsumexp(lw, axis=-1, keepdims=True), np.asarray(k, dtype=float)


@dataclass(frozen=True)
class Change:
    """The change of log p(y | H) when the likelihood loses and gains some terms."""

    delta: float
    pareto_k: float  # of the importance weights (nan when nothing is removed)


def change_of_log_ml(eta: np.ndarray, removed: Counter, added: Counter, r_eff: float) -> Change:
    """log p(y') - log p(y) by importance sampling from the posterior given y (module docstring)."""
    rk, ak = list(removed), list(added)
    lr = term_loglik(eta, rk) @ np.array([removed[k] for k in rk], dtype=float) if rk else np.zeros(eta.shape[0])
    la = term_loglik(eta, ak) @ np.array([added[k] for k in ak], dtype=float) if ak else np.zeros(eta.shape[0])
    if not rk:
        return Change(float(logsumexp(la) - np.log(len(la))), float("nan"))
    lw, k = psis_weights(-lr, r_eff)
    return Change(float(-logsumexp(lw + lr) + logsumexp(lw + la)), float(k))


# --- the record --------------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """Records as plain dicts and tuples as lists, in field order (numbers untouched)."""
    if is_dataclass(value) and not isinstance(value, type):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Record:
    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class ScenarioOutcome(_Record):
    """The conclusion on a changed data set (an item removed or reversed, or a quality filter)."""

    posterior_probability: dict[str, float]
    posterior_probability_se: dict[str, float]
    log_marginal_likelihood_change: dict[str, float]
    leading: str
    max_shift: float  # largest change of a posterior probability against the run's
    method: dict[str, str]  # per hypothesis: 'unchanged', 'psis', 'refit' or 'unreliable'
    pareto_k: dict[str, float | None]
    converged: bool

    @property
    def approximate(self) -> bool:
        """Refitted or unreliable for some hypothesis (flagged with * in the text)."""
        return any(m in ("refit", "unreliable") for m in self.method.values())


@dataclass(frozen=True)
class ObservationEvidence(_Record):
    """One observation: how diagnostic it is, and the conclusion without it or with it reversed."""

    id: str
    event_date: str
    report_date: str
    counterpart: str
    domain: str
    outcome: str  # 'cooperative' or 'conflictual'
    reliability: str
    weight: float
    description: str
    counted: bool
    event: str  # the event it reports (its own id for a root report)
    corroborates: str | None
    elpd_loo: dict[str, float] | None  # None for a report that is not counted
    pareto_k: dict[str, float] | None
    diagnosticity: float
    favours: str | None
    disfavours: str | None
    log_predictive_ratio: dict[str, float]
    if_removed: ScenarioOutcome
    if_reversed: ScenarioOutcome
    changes_leading: tuple[str, ...]  # 'removed' and/or 'reversed'
    critical: bool
    rank: int = 0  # 1 = most diagnostic

    @property
    def max_shift(self) -> float:
        return max(self.if_removed.max_shift, self.if_reversed.max_shift)


@dataclass(frozen=True)
class QualityCheck:
    """The conclusion without every observation whose reliability weight is below a threshold."""

    reliability_below: float
    n_dropped: int
    dropped: tuple[str, ...]
    outcome: ScenarioOutcome
    changes_leading: bool

    def to_dict(self) -> dict:
        return {
            "reliability_below": self.reliability_below,
            "n_dropped": self.n_dropped,
            "dropped": list(self.dropped),
            **self.outcome.to_dict(),
            "changes_leading": self.changes_leading,
        }


@dataclass(frozen=True)
class CorroboratedEvent(_Record):
    event: str
    reports: tuple[str, ...]
    counted: str  # the report through which the event counts


@dataclass(frozen=True)
class Corroboration(_Record):
    n_events: int
    n_reports_not_counted: int
    rule: str
    events: tuple[CorroboratedEvent, ...]  # events with more than one report


@dataclass(frozen=True)
class EvidenceResult(_Record):
    """What `forecast evidence` found: diagnosticity, critical items, evidence quality, corroboration."""

    study: str
    run_dir: str
    hypotheses: tuple[str, ...]
    prior_probability: dict[str, float]
    posterior_probability: dict[str, float]
    leading: str
    n_observations: int
    n_counted: int
    shift_threshold: float
    pareto_k_threshold: float
    pareto_k_threshold_default: float
    n_refits: int
    n_unreliable: int  # PSIS estimates above the Pareto k threshold that were not refitted
    converged: bool
    critical: tuple[str, ...]  # ids, the most consequential first
    observations: tuple[ObservationEvidence, ...]  # the most diagnostic first
    corroboration: Corroboration
    quality: QualityCheck | None
    warnings: tuple[str, ...]
    timings: dict[str, float]
    written: str | None = None  # where evidence.json was written

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.written is None:
            del out["written"]
        return out

    def observation(self, ident: str) -> ObservationEvidence:
        for x in self.observations:
            if x.id == ident:
                return x
        raise KeyError(ident)


# --- scenarios -------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A changed data set (an item removed or reversed, or a quality filter) and its effect."""

    label: str
    table: Callable[[], pd.DataFrame] | None  # builds the changed observations (for a refit)
    removed: Counter
    added: Counter
    delta: np.ndarray | None = None  # per hypothesis: change of log p(y | H)
    log_ml_se: np.ndarray | None = None  # per hypothesis: MC error of the changed log p(y | H)
    method: list[str] | None = None  # per hypothesis: 'unchanged', 'psis', 'refit' or 'unreliable'
    pareto_k: np.ndarray | None = None
    posterior: np.ndarray | None = None
    posterior_se: np.ndarray | None = None
    converged: bool = True

    def outcome(self, ctx: RunContext) -> ScenarioOutcome:
        lead = int(np.argmax(self.posterior))
        return ScenarioOutcome(
            posterior_probability=dict(zip(ctx.hypotheses, self.posterior.tolist(), strict=True)),
            posterior_probability_se=dict(zip(ctx.hypotheses, self.posterior_se.tolist(), strict=True)),
            log_marginal_likelihood_change=dict(zip(ctx.hypotheses, self.delta.tolist(), strict=True)),
            leading=ctx.hypotheses[lead],
            max_shift=float(np.max(np.abs(self.posterior - base_posterior(ctx)))),
            method=dict(zip(ctx.hypotheses, self.method, strict=True)),
            pareto_k=dict(
                zip(ctx.hypotheses, [None if not np.isfinite(k) else float(k) for k in self.pareto_k], strict=True)
            ),
            converged=self.converged,
        )


def base_posterior(ctx: RunContext) -> np.ndarray:
    return softmax(np.log(ctx.prior) + ctx.log_ml)


def posterior_with_se(ctx: RunContext, log_ml: np.ndarray, log_ml_se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As ``forecast.stats.loo.posterior_probabilities``."""
    from forecast.stats.loo import posterior_probabilities

    return posterior_probabilities(log_ml, log_ml_se, ctx.prior)


def _diff(before: Counter, after: Counter) -> tuple[Counter, Counter]:
    return before - after, after - before


def item_scenarios(ctx: RunContext) -> tuple[list[Scenario], list[Scenario]]:
    """For every observation: the data with it removed, and with its outcome reversed."""
    t, cells = ctx.table, ctx.cells
    base = terms(cells)
    keys = pattern_terms(cells)
    roots = pd.Series(cells.event_root)
    group_size = roots.map(roots.value_counts()).to_numpy()
    ids = t["id"].tolist()
    removals, reversals = [], []

    def without(i: int) -> Callable[[], pd.DataFrame]:
        return lambda: t.drop(index=t.index[i])

    def reversed_(i: int) -> Callable[[], pd.DataFrame]:
        def build() -> pd.DataFrame:
            out = t.copy()
            col = out.columns.get_loc("cooperative")
            out.iloc[i, col] = not bool(out.iloc[i, col])
            return out

        return build

    for i, ident in enumerate(ids):
        if not cells.event_counted[i]:
            # A report that is not counted: its event is counted through a better report.
            removals.append(Scenario(f"remove {ident}", None, Counter(), Counter()))
            reversals.append(Scenario(f"reverse {ident}", None, Counter(), Counter()))
            continue
        key = keys[cells.event_pattern[i]]
        flipped: Term = (*key[:3], not key[3], key[4])
        if group_size[i] == 1:
            removals.append(Scenario(f"remove {ident}", without(i), Counter({key: 1}), Counter()))
        else:  # the next-best report of the same event takes its place
            changed = terms(cell_data(without(i)(), ctx.study))
            removals.append(Scenario(f"remove {ident}", without(i), *_diff(base, changed)))
        reversals.append(Scenario(f"reverse {ident}", reversed_(i), Counter({key: 1}), Counter({flipped: 1})))
    return removals, reversals


def quality_scenario(ctx: RunContext, below: float) -> tuple[Scenario, list[str]]:
    """The data without every observation whose reliability weight is below ``below``."""
    t = ctx.table
    keep = t["weight"].to_numpy() >= below
    dropped = t.loc[~keep, "id"].tolist()
    if keep.all():
        return Scenario(f"drop reliability < {below:g}", None, Counter(), Counter()), dropped
    if not keep.any():
        raise InputError(f"--reliability-below {below:g} would drop every observation; nothing would be left to weigh")
    kept = t[keep]
    changed = terms(cell_data(kept, ctx.study))
    return Scenario(f"drop reliability < {below:g}", lambda: kept, *_diff(terms(ctx.cells), changed)), dropped


def estimate(ctx: RunContext, scenarios: list[Scenario], k_threshold: float) -> None:
    """Each scenario's change of log ML per hypothesis by PSIS; 'unreliable' where k > threshold."""
    n_h = len(ctx.hypotheses)
    for s in scenarios:
        s.delta, s.log_ml_se = np.zeros(n_h), ctx.log_ml_se.copy()
        s.pareto_k, s.method = np.full(n_h, np.nan), ["unchanged"] * n_h
    r_eff = [relative_ess(term_loglik(e, pattern_terms(ctx.cells)).T, ctx.chains) for e in ctx.eta]
    cache: dict[tuple, tuple[Change, ...]] = {}  # items of one pattern change the likelihood alike
    for s in scenarios:
        if not s.removed and not s.added:
            continue
        key = (tuple(sorted(s.removed.items())), tuple(sorted(s.added.items())))
        if key not in cache:
            cache[key] = tuple(change_of_log_ml(e, s.removed, s.added, r_eff[j]) for j, e in enumerate(ctx.eta))
        for j, ch in enumerate(cache[key]):
            s.delta[j], s.pareto_k[j] = ch.delta, ch.pareto_k
            s.method[j] = "unreliable" if ch.pareto_k > k_threshold else "psis"


def refit_log_ml(
    model: StudyModel, ctx: RunContext, hypothesis_index: int, table: pd.DataFrame, progress: Progress | None = None
) -> tuple[float, float, bool]:
    """Refit one hypothesis on changed observations (fit -> bridge -> gate); return (log ML, its SE, converged)."""
    h = ctx.study.hypotheses[hypothesis_index]
    judged = fit_hypothesis(
        model,
        h,
        ctx.settings,
        bridge_seed=ctx.settings.seed,
        cells=cell_data(table, ctx.study),
        with_loo=False,
        progress=progress,
    )
    return judged.bridge.log_ml, judged.bridge.se, judged.converged


def refit_unreliable(
    ctx: RunContext, scenarios: list[Scenario], max_refits: int, model: StudyModel | None, say: Progress
) -> tuple[int, StudyModel | None]:
    """Replace unreliable PSIS estimates by refits, worst Pareto k first, up to ``max_refits``."""
    todo = [(s.pareto_k[j], s, j) for s in scenarios for j in range(len(ctx.hypotheses)) if s.method[j] == "unreliable"]
    todo.sort(key=lambda x: -x[0])
    done = 0
    for k, s, j in todo[: max(max_refits, 0)]:
        if model is None:
            say("compiling the model for refits")
            model = StudyModel(ctx.study, ctx.cells)
        say(f"  refit '{ctx.hypotheses[j]}' for '{s.label}' (Pareto k {k:.2f})")
        log_ml, se, converged = refit_log_ml(model, ctx, j, s.table())
        s.delta[j], s.log_ml_se[j] = log_ml - ctx.log_ml[j], se
        s.method[j] = "refit"
        s.converged = s.converged and converged
        done += 1
    return done, model


def finish(ctx: RunContext, scenarios: list[Scenario]) -> None:
    """Posterior probabilities of every scenario, with the log ML errors propagated."""
    for s in scenarios:
        s.posterior, s.posterior_se = posterior_with_se(ctx, ctx.log_ml + s.delta, s.log_ml_se)


# --- the command -----------------------------------------------------------------------------------


def diagnosticity(elpd: np.ndarray, hypotheses: list[str]) -> dict:
    """For one observation: the spread of its LOO log predictive densities between hypotheses."""
    hi, lo = int(np.argmax(elpd)), int(np.argmin(elpd))
    pairs = {
        f"{a}/{b}": float(elpd[i] - elpd[j])
        for i, a in enumerate(hypotheses)
        for j, b in enumerate(hypotheses)
        if i < j
    }
    return {
        "diagnosticity": float(elpd[hi] - elpd[lo]),
        "favours": hypotheses[hi] if elpd[hi] > elpd[lo] else None,
        "disfavours": hypotheses[lo] if elpd[hi] > elpd[lo] else None,
        "log_predictive_ratio": pairs,
    }


def run_evidence(
    study_path: str | Path,
    *,
    runs_root: Path | None = None,
    run_dir: Path | None = None,
    shift: float = DEFAULT_SHIFT,
    reliability_below: float | None = None,
    refit: bool = True,
    max_refits: int = DEFAULT_MAX_REFITS,
    k_threshold: float | None = None,
    allow_unconverged: bool = False,
    write: bool = True,
    model: StudyModel | None = None,
    progress: Progress | None = None,
) -> EvidenceResult:
    """Diagnosticity, critical items, evidence quality and corroboration for a run of the study.

    ``run_dir``: a run directory (or a study's run folder); by default the study's latest run.
    The run must match the current study and observations (``StoredRun.check_inputs``).
    ``k_threshold`` overrides the Pareto k above which PSIS estimates are refitted (tests use it
    to force refits); ``model`` reuses an already compiled ``StudyModel`` for refits. With
    ``write``, evidence.json is added to the run.
    """
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if not 0 <= shift <= 1:
        raise InputError(f"--shift must lie in [0, 1], got {shift}")
    if reliability_below is not None and not 0 < reliability_below <= 1:
        raise InputError(f"--reliability-below must lie in (0, 1], got {reliability_below}")
    study = load_study(study_path)
    run = StoredRun.find(run_dir, study=study, runs_root=runs_root)
    say(f"{study.name}: reading run {run.path}")
    ctx = load_run(study, run)
    if write:  # before any refit: the run must take evidence.json
        preflight(run.path.parent.parent, run.path.parent.name, need_bytes=MIN_FREE_BYTES)
    threshold = ctx.k_threshold if k_threshold is None else k_threshold

    removals, reversals = item_scenarios(ctx)
    quality, dropped = quality_scenario(ctx, reliability_below) if reliability_below is not None else (None, [])
    scenarios = removals + reversals + ([quality] if quality is not None else [])
    estimate(ctx, scenarios, threshold)
    n_refits = 0
    if refit:
        # The quality filter is a headline figure: it is refitted first.
        if quality is not None:
            n_refits, model = refit_unreliable(ctx, [quality], max_refits, model, say)
        more, model = refit_unreliable(ctx, removals + reversals, max_refits - n_refits, model, say)
        n_refits += more
    finish(ctx, scenarios)
    converged = all(s.converged for s in scenarios)
    if not converged and not allow_unconverged:
        raise ConvergenceError(
            "a refit failed the convergence gate after one retry, so no evidence figures are reported and nothing "
            "was written. Pass --allow-unconverged to write results flagged as unreliable, or --no-refit."
        )

    result = _assemble(ctx, removals, reversals, quality, reliability_below, dropped, shift, threshold, n_refits)
    result = replace(result, timings={"total_s": time.perf_counter() - t0})
    if write:
        result = replace(result, written=str(run.write_json(EVIDENCE, result)))
    return result


def _pointwise_elpd(ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """PSIS-LOO elpd and Pareto k per pattern and hypothesis, from the posterior draws."""
    pat_ll = [term_loglik(e, pattern_terms(ctx.cells)) for e in ctx.eta]
    r_eff = [relative_ess(ll.T, ctx.chains) for ll in pat_ll]
    elpd = np.zeros((len(ctx.cells.pattern_count), len(ctx.hypotheses)))
    kpat = np.zeros_like(elpd)
    for j, ll in enumerate(pat_ll):
        lw, k = psis_weights(-ll.T, r_eff[j])
        elpd[:, j] = logsumexp(lw + ll.T, axis=-1)
        kpat[:, j] = k
    return elpd, kpat


def _warnings(ctx: RunContext, elpd: np.ndarray) -> list[str]:
    t, cells, hyps = ctx.table, ctx.cells, ctx.hypotheses
    warnings = []
    if not ctx.summary.get("converged", True):
        warnings.append(UNRELIABLE_RUN)
    stored = _stored_pointwise(ctx)
    if stored is not None:
        mine = pd.DataFrame(elpd[cells.event_pattern], columns=hyps, index=t["id"].to_numpy())
        counted_ids = t["id"].to_numpy()[cells.event_counted]
        gap = np.nanmax(np.abs(mine.loc[counted_ids].to_numpy() - stored.loc[counted_ids, hyps].to_numpy()))
        if gap > 1e-6:
            warnings.append(
                f"the run's {POINTWISE} differs from the PSIS-LOO recomputed here from the posterior draws by up to "
                f"{gap:.2g} nats; the figures above use the recomputed values"
            )
    return warnings


def _observation(ctx: RunContext, i: int, elpd: np.ndarray, kpat: np.ndarray, removed, reversed_, shift, lead):
    row = ctx.table.iloc[i]
    cells, hyps = ctx.cells, ctx.hypotheses
    counted = bool(cells.event_counted[i])
    root = str(cells.event_root[i])
    p = cells.event_pattern[i]
    e = elpd[p] if counted else np.zeros(len(hyps))
    rm, rv = removed.outcome(ctx), reversed_.outcome(ctx)
    hinge = tuple(name for name, sc in (("removed", rm), ("reversed", rv)) if sc.leading != lead)
    d = diagnosticity(e, hyps)
    return ObservationEvidence(
        id=row["id"],
        event_date=row["event_date"].date().isoformat(),
        report_date=row["report_date"].date().isoformat(),
        counterpart=row["counterpart"],
        domain=row["domain"],
        outcome="cooperative" if row["cooperative"] else "conflictual",
        reliability=row["reliability"],
        weight=float(row["weight"]),
        description=row["description"],
        counted=counted,
        event=root,
        corroborates=None if root == row["id"] else root,
        elpd_loo=dict(zip(hyps, e.tolist(), strict=True)) if counted else None,
        pareto_k=dict(zip(hyps, kpat[p].tolist(), strict=True)) if counted else None,
        diagnosticity=d["diagnosticity"],
        favours=d["favours"],
        disfavours=d["disfavours"],
        log_predictive_ratio=d["log_predictive_ratio"],
        if_removed=rm,
        if_reversed=rv,
        changes_leading=hinge,
        critical=bool(hinge) or max(rm.max_shift, rv.max_shift) >= shift,
    )


def _corroboration(ctx: RunContext) -> Corroboration:
    cells = ctx.cells
    events = pd.DataFrame({"event": cells.event_root, "id": ctx.table["id"].to_numpy(), "counted": cells.event_counted})
    multi = events.groupby("event").filter(lambda g: len(g) > 1)
    return Corroboration(
        n_events=int(events["event"].nunique()),
        n_reports_not_counted=int((~cells.event_counted).sum()),
        rule=CORROBORATION_RULE,
        events=tuple(
            CorroboratedEvent(event=ev, reports=tuple(g["id"].tolist()), counted=g.loc[g["counted"], "id"].iloc[0])
            for ev, g in multi.groupby("event", sort=True)
        ),
    )


def _assemble(
    ctx, removals, reversals, quality, reliability_below, dropped, shift, threshold, n_refits
) -> EvidenceResult:
    hyps = ctx.hypotheses
    base = base_posterior(ctx)
    lead = hyps[int(np.argmax(base))]
    elpd, kpat = _pointwise_elpd(ctx)
    items = [_observation(ctx, i, elpd, kpat, removals[i], reversals[i], shift, lead) for i in range(len(ctx.table))]
    items.sort(key=lambda x: (-x.diagnosticity, x.id))
    items = [replace(x, rank=rank) for rank, x in enumerate(items, start=1)]
    critical = sorted((x for x in items if x.critical), key=lambda x: (-len(x.changes_leading), -x.max_shift))
    methods = [m for s in removals + reversals for m in s.method]
    q = None
    if quality is not None:
        outcome = quality.outcome(ctx)
        q = QualityCheck(
            reliability_below=float(reliability_below),
            n_dropped=len(dropped),
            dropped=tuple(dropped),
            outcome=outcome,
            changes_leading=outcome.leading != lead,
        )
    return EvidenceResult(
        study=ctx.study.name,
        run_dir=str(ctx.run_dir),
        hypotheses=tuple(hyps),
        prior_probability=dict(zip(hyps, ctx.prior.tolist(), strict=True)),
        posterior_probability=dict(zip(hyps, base.tolist(), strict=True)),
        leading=lead,
        n_observations=len(ctx.table),
        n_counted=int(ctx.cells.event_counted.sum()),
        shift_threshold=shift,
        pareto_k_threshold=threshold,
        pareto_k_threshold_default=ctx.k_threshold,
        n_refits=n_refits,
        n_unreliable=int(sum(m == "unreliable" for m in methods)),
        converged=all(s.converged for s in [*removals, *reversals, *([quality] if quality is not None else [])]),
        critical=tuple(x.id for x in critical),
        observations=tuple(items),
        corroboration=_corroboration(ctx),
        quality=q,
        warnings=tuple(_warnings(ctx, elpd)),
        timings={},
    )


def _stored_pointwise(ctx: RunContext) -> pd.DataFrame | None:
    """The run's per-event LOO table (elpd per hypothesis by id), or None when it has none."""
    if not ctx.run.has(POINTWISE):
        return None
    path = ctx.run.path / POINTWISE
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise RunStoreError(f"{path}: unreadable ({type(e).__name__}); the file is damaged or truncated") from None
    cols = {f"elpd_loo__{h}": h for h in ctx.hypotheses}
    if "id" not in df.columns or not set(cols) <= set(df.columns):
        return None
    return df.set_index("id")[list(cols)].rename(columns=cols)
