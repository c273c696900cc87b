"""The changed data sets of `forecast evidence`: an item removed or reversed, or a quality filter.

Each is the likelihood terms it removes and adds; its change of log p(y | H) is estimated by
PSIS, refitted where that is unreliable, and turned into posterior probabilities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.data.cells import cell_data
from forecast.errors import InputError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import StudyModel
from forecast.settings import Progress
from forecast.stats.loo import relative_ess
from forecast.workflows.evidence.context import RunContext, base_posterior, posterior_with_se
from forecast.workflows.evidence.records import ScenarioOutcome
from forecast.workflows.evidence.statistics import (
    Change,
    Term,
    change_of_log_ml,
    pattern_term_loglik,
    pattern_terms,
    terms,
)


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
    phis = ctx.concentration
    r_eff = [
        relative_ess(pattern_term_loglik(e, ctx.cells, phi).T, c)
        for e, phi, c in zip(ctx.eta, phis, ctx.chains_per, strict=True)
    ]
    cache: dict[tuple, tuple[Change, ...]] = {}  # items of one pattern change the likelihood alike
    for s in scenarios:
        if not s.removed and not s.added:
            continue
        key = (tuple(sorted(s.removed.items())), tuple(sorted(s.added.items())))
        if key not in cache:
            cache[key] = tuple(
                change_of_log_ml(e, s.removed, s.added, r_eff[j], ctx.cells, phis[j]) for j, e in enumerate(ctx.eta)
            )
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
