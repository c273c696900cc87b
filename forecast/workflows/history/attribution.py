"""What moved it: each change of the log Bayes factor, split over the new evidence of its interval.

Between two evaluated quarters the likelihood gains the terms of the events that became known
(and, when a better-corroborated report of a known event arrives, swaps that event's term). Order
those events by report date; then by the chain rule, for each hypothesis H,

    log p(y_t | H) - log p(y_(t-1) | H) = sum_k log p(e_k | y_(t-1), e_1..e_(k-1), H),

so the change of log BF = log p(y | H1) - log p(y | H2) is exactly the sum of the events'
sequential log predictive differences. Each term is estimated by importance sampling from the
earlier quarter's posterior draws: with l_k(theta) the event's log-likelihood term (its reliability
weight times log sigmoid(+-eta)),

    F_k = log p(e_1..e_k | y_(t-1), H) = log E_(t-1)[exp(l_1 + ... + l_k)],

Pareto-smoothed (PSIS), and event k's contribution is F_k - F_(k-1). The contributions telescope
to F_n, the importance-sampling estimate of the whole interval's change, which is compared with
the difference of the bridge-sampled log marginal likelihoods.

When the joint weights exp(l_1 + ... + l_n) are too heavy-tailed (Pareto k above
min(1 - 1/log10(S), 0.7)), the later quarter's draws carry the chain from the other end:
G_k = log E_t[exp(-(l_(k+1) + ... + l_n))] = F_k - F_n, so events k > m take G_k - G_(k-1) and
events k <= m take F_k - F_(k-1), for the split m that keeps every weight's k lowest (the earlier
fit is preferred on ties). When no split keeps k under the threshold, the interval's total is
reported without shares. Ratios whose tail has k below 1/3 are used unsmoothed (smoothing a tail
that holds most of the mass biases the mean; the reference PSIS implementation does the same).

The order within an interval is a choice (the chronological one): an event's share is what it
added given the events before it. An interval with more than ``MAX_EVENTS`` new events is chained
in blocks of one counterpart, domain and outcome instead of event by event.

Pure functions of draws and the observation table; ``Collector`` gathers the per-draw terms while
``compute_history`` fits, so no posterior is held longer than one quarter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from forecast.data.cells import cell_data
from forecast.model.build import draws_as_arrays, latent_parts, years_from_reference
from forecast.model.predictive import prior_draws
from forecast.model.record import concentration_draws
from forecast.settings import derive_rng
from forecast.spec.study import CONCENTRATION, Hypothesis, Study
from forecast.stats.convergence import ess_mean
from forecast.stats.loo import PARETO_K_GOOD, cell_loglik
from forecast.stats.psis import psislw
from forecast.workflows.history.records import Attribution, EventContribution, HistoryPoint, IntervalAttribution

TOP_EVENTS = 5  # per interval
TOP_EVENTS_WINDOW = 10  # over the whole window
PRIOR_DRAWS_FACTOR = 4  # prior draws (independent, cheap) per posterior draw, for the first interval
MAX_EVENTS = 400  # an interval with more new events is split by (counterpart, domain, outcome) instead
TERM_BLOCK_ELEMENTS = 1 << 22  # likelihood terms x draws evaluated at once
SMOOTH_FROM_K = 1 / 3  # tails with a lower Pareto k are left unsmoothed (Vehtari et al.'s reference PSIS)
AGREEMENT_Z = 4.0  # importance-sampled and bridge-sampled changes further apart than this are flagged


def k_threshold(n_draws: int) -> float:
    """The Pareto k above which an importance-sampling estimate from ``n_draws`` draws is unreliable."""
    return float(min(1 - 1 / np.log10(n_draws), PARETO_K_GOOD))


# --- the new evidence of each interval ------------------------------------------------------------


@dataclass(frozen=True)
class _Counts:
    w_coop: np.ndarray
    w_conf: np.ndarray


def polya_cell_loglik(eta: np.ndarray, counts: np.ndarray, concentration: np.ndarray) -> np.ndarray:
    """The Polya cell log-likelihood (``forecast.stats.loo.cell_loglik``) per draw, (draws, cells),
    of cells with weighted counts ``counts`` (cells, 2: cooperative, conflictual) at log-odds
    ``eta`` (draws, cells) and concentration draws (draws,)."""
    return cell_loglik(eta, _Counts(counts[:, 0], counts[:, 1]), concentration)


@dataclass(frozen=True)
class _CellSteps:
    """(unit, cell) pairs of an interval in chain order, with the cell's counts before and after the unit."""

    unit: np.ndarray
    group: np.ndarray
    domain: np.ndarray
    quarter: np.ndarray
    before: np.ndarray  # (pairs, 2)
    after: np.ndarray  # (pairs, 2)


@dataclass(frozen=True)
class IntervalEvidence:
    """The likelihood terms an interval adds (weight > 0) or takes away (weight < 0), by event.

    ``rows`` are the table positions of each event's report counted from this interval on, in
    the order their contributions are chained (report date, event date, file order); term
    ``i`` belongs to event ``unit[i]``. After ``blocks()`` a unit is a block of ``count`` events
    (``rows``: the first of them).
    """

    rows: np.ndarray
    replaced: list[list[int]]  # per unit: table positions of the reports it supersedes
    group: np.ndarray
    domain: np.ndarray
    quarter: np.ndarray  # model quarter (0 = study start)
    cooperative: np.ndarray
    weight: np.ndarray  # signed
    unit: np.ndarray
    count: np.ndarray | None = None  # events per unit (None: one each)
    # The weighted (cooperative, conflictual) counts at the interval's start of the cells its terms
    # touch, by (group, domain, model quarter): what an overdispersed model's changes need.
    base: dict[tuple[int, int, int], tuple[float, float]] | None = None

    @property
    def n_events(self) -> int:
        """Events whose terms are new in the interval (blocks counted by their events)."""
        return len(self.rows) if self.count is None else int(self.count.sum())

    @property
    def n_units(self) -> int:
        return len(self.rows)

    @property
    def added_weight(self) -> np.ndarray:
        """The reliability weight each unit adds to the likelihood (its new reports' weights)."""
        return np.bincount(self.unit, weights=np.maximum(self.weight, 0.0), minlength=self.n_units)

    def loglik(self, parts: tuple[np.ndarray, np.ndarray], concentration: np.ndarray | None = None) -> np.ndarray:
        """Each unit's log-likelihood change per draw, (units, draws), from ``latent_parts``' (a, b).

        ``concentration`` (draws,): an overdispersed model's. A unit's change is then not the sum of
        its events' Bernoulli terms but, cell by cell, the Polya cell log-likelihood with the units
        before it (and ``base``, the cell's counts at the interval's start) minus that without it,
        so the units' changes still sum to the interval's change of the log-likelihood.
        """
        if concentration is not None:
            return self._polya_loglik(parts, concentration)
        a, b = parts
        out = np.zeros((self.n_units, a.shape[0]))
        step = max(1, TERM_BLOCK_ELEMENTS // max(a.shape[0], 1))  # bounded memory for large intervals
        for start in range(0, len(self.unit), step):
            sel = slice(start, start + step)
            g = self.group[sel]
            eta = a[:, g, self.domain[sel]] + b[:, g, self.quarter[sel]]
            terms = np.where(self.cooperative[sel], -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta))
            np.add.at(out, self.unit[sel], (terms * self.weight[sel]).T)
        return out

    def sequential_cells(self) -> _CellSteps:
        """For each (unit, cell it touches), in chain order: the cell and its weighted counts before
        and after the unit (starting from ``base``, the counts at the interval's start)."""
        if self.base is None:
            raise ValueError("IntervalEvidence.base (the cells' counts at the interval's start) is needed")
        running = {k: np.array(v, dtype=np.float64) for k, v in self.base.items()}
        order = np.argsort(self.unit, kind="stable")
        units, cells, before, after = [], [], [], []
        i = 0
        while i < len(order):
            u = self.unit[order[i]]
            delta: dict[tuple[int, int, int], np.ndarray] = {}
            while i < len(order) and self.unit[order[i]] == u:
                t = order[i]
                key = (int(self.group[t]), int(self.domain[t]), int(self.quarter[t]))
                d = delta.setdefault(key, np.zeros(2))
                d[0 if self.cooperative[t] else 1] += self.weight[t]
                i += 1
            for key, d in delta.items():
                old = running.get(key, np.zeros(2))
                new = np.maximum(old + d, 0.0)  # rounding can leave -1e-16 where nothing is left
                units.append(u)
                cells.append(key)
                before.append(old)
                after.append(new)
                running[key] = new
        arr = np.array(cells, dtype=np.int64).reshape(-1, 3)
        return _CellSteps(
            np.array(units, dtype=np.int64),
            arr[:, 0],
            arr[:, 1],
            arr[:, 2],
            np.array(before, dtype=np.float64).reshape(-1, 2),
            np.array(after, dtype=np.float64).reshape(-1, 2),
        )

    def _polya_loglik(self, parts: tuple[np.ndarray, np.ndarray], concentration: np.ndarray) -> np.ndarray:
        a, b = parts
        phi = np.asarray(concentration, dtype=np.float64).reshape(-1)
        steps = self.sequential_cells()
        out = np.zeros((self.n_units, a.shape[0]))
        step = max(1, TERM_BLOCK_ELEMENTS // max(a.shape[0], 1))
        for start in range(0, len(steps.unit), step):
            sel = slice(start, start + step)
            g = steps.group[sel]
            eta = a[:, g, steps.domain[sel]] + b[:, g, steps.quarter[sel]]
            change = polya_cell_loglik(eta, steps.after[sel], phi) - polya_cell_loglik(eta, steps.before[sel], phi)
            np.add.at(out, steps.unit[sel], change.T)
        return out

    def blocks(self, table: pd.DataFrame) -> IntervalEvidence:
        """The same terms with the events of one counterpart, domain and outcome as one unit (the
        chain rule holds for any grouping; used when an interval has too many events to chain)."""
        counterpart, domain, coop = (table[c].to_numpy() for c in ("counterpart", "domain", "cooperative"))
        keys = [(counterpart[r], domain[r], bool(coop[r])) for r in self.rows]
        index: dict[tuple, int] = {}
        block_of = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
        first = self.rows[np.unique(block_of, return_index=True)[1]]  # blocks are numbered in chain order
        replaced: list[list[int]] = [[] for _ in index]
        for u, r in zip(block_of, self.replaced, strict=True):
            replaced[u] += r
        return replace(
            self,
            rows=first,
            replaced=replaced,
            unit=block_of[self.unit],
            count=np.bincount(block_of, minlength=len(index)),
        )


def counted_reports(table: pd.DataFrame, known: np.ndarray, quarter: int, study: Study) -> tuple[set[int], dict]:
    """The table positions the likelihood counts with the evidence known by ``quarter``, and each
    considered row's root event (``forecast.data.cells``: evidence rows, corroboration)."""
    positions = np.flatnonzero(known <= quarter)
    cells = cell_data(table.iloc[positions], study)
    chosen = positions[cells.event_row]
    return set(chosen[cells.event_counted].tolist()), dict(zip(chosen.tolist(), cells.event_root.tolist(), strict=True))


def interval_evidence(
    table: pd.DataFrame, study: Study, before: set[int], after: set[int], roots: Mapping[int, str]
) -> IntervalEvidence:
    """The events whose counted report changed between two sets of counted reports (``roots``:
    each row's root event with the later evidence)."""
    added, removed = sorted(after - before), sorted(before - after)
    by_root: dict[str, tuple[list[int], list[int]]] = {}
    for pos in added:
        by_root.setdefault(roots[pos], ([], []))[0].append(pos)
    for pos in removed:
        by_root.setdefault(roots[pos], ([], []))[1].append(pos)
    report, event = table["report_date"].to_numpy(), table["event_date"].to_numpy()
    units = sorted(
        by_root.values(),
        key=lambda ar: min((report[p], event[p], p) for p in (ar[0] or ar[1])),
    )
    gidx = {g.id: i for i, g in enumerate(study.groups)}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    group, domain = table["group"].to_numpy(), table["domain"].to_numpy()
    quarter, coop, w = (table[c].to_numpy() for c in ("quarter", "cooperative", "weight"))
    cols: dict[str, list] = {k: [] for k in ("g", "d", "t", "c", "w", "u")}
    for u, (adds, removes) in enumerate(units):
        for sign, rows in ((1.0, adds), (-1.0, removes)):
            for p in rows:
                cols["g"].append(gidx[group[p]])
                cols["d"].append(didx[domain[p]])
                cols["t"].append(int(quarter[p]) - study.time.start)
                cols["c"].append(bool(coop[p]))
                cols["w"].append(sign * float(w[p]))
                cols["u"].append(u)
    touched = set(zip(cols["g"], cols["d"], cols["t"], strict=True))
    base: dict[tuple[int, int, int], tuple[float, float]] = {}
    for p in before:
        key = (gidx[group[p]], didx[domain[p]], int(quarter[p]) - study.time.start)
        if key in touched:
            wc, wf = base.get(key, (0.0, 0.0))
            base[key] = (wc + float(w[p]), wf) if bool(coop[p]) else (wc, wf + float(w[p]))
    return IntervalEvidence(
        base=base,
        rows=np.array([(adds or removes)[0] for adds, removes in units], dtype=np.int64),
        replaced=[list(removes) for _, removes in units],
        group=np.array(cols["g"], dtype=np.int64),
        domain=np.array(cols["d"], dtype=np.int64),
        quarter=np.array(cols["t"], dtype=np.int64),
        cooperative=np.array(cols["c"], dtype=bool),
        weight=np.array(cols["w"], dtype=np.float64),
        unit=np.array(cols["u"], dtype=np.int64),
    )


# --- importance sampling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMeans:
    """PSIS estimates of log E[exp(row)] for each row of log importance ratios."""

    value: np.ndarray
    se: np.ndarray  # Monte Carlo standard error (delta method)
    pareto_k: np.ndarray


def psis_log_means(log_ratios: np.ndarray, chains: int | None) -> LogMeans:
    """log of the mean importance ratio of each row (rows, draws), Pareto-smoothed.

    ``chains``: the draws are that many chains, chain-major (their autocorrelation enters the
    relative efficiency); None for independent draws.
    """
    rows = np.atleast_2d(np.asarray(log_ratios, dtype=np.float64))
    n_rows, n = rows.shape
    value, se, k = np.empty(n_rows), np.empty(n_rows), np.empty(n_rows)
    flat = np.ptp(rows, axis=1) < 1e-12  # nothing to weight: the ratio is a constant
    value[flat], se[flat], k[flat] = rows[flat, 0], 0.0, 0.0
    live = np.flatnonzero(~flat)
    if not len(live):
        return LogMeans(value, se, k)
    sub = rows[live]
    if chains is None or chains < 1:
        r_eff = np.ones(len(live))
    else:
        ratios = np.exp(sub - sub.max(axis=1, keepdims=True)).reshape(len(live), chains, n // chains)
        r_eff = np.clip(np.nan_to_num(ess_mean(ratios, relative=True), nan=1.0), 1e-3, 1.0)
    for i, row, r in zip(live, sub, r_eff, strict=True):
        try:
            lw, kk = psislw(-row, r_eff=float(r))
        except ValueError:  # a degenerate tail: unreliable
            value[i], se[i], k[i] = logsumexp(row) - np.log(n), np.nan, np.inf
            continue
        if kk < SMOOTH_FROM_K:
            # A short tail: the raw ratios (smoothing a tail that holds most of the mass, as with
            # the bounded ratios of a sharp likelihood, biases the mean; the reference PSIS
            # implementation leaves tails with k < 1/3 unsmoothed for that reason).
            lw = row - logsumexp(row)
            value[i] = logsumexp(row) - np.log(n)
        else:
            # Below the tail the smoothed weights are the raw ratios, normalised: the draw with the
            # smallest ratio recovers the normalising constant of the smoothed sum.
            j = int(np.argmin(row))
            value[i] = row[j] - lw[j] - np.log(n)
        w = np.exp(lw)
        se[i] = np.sqrt(max(float(np.sum(w * w)) - 1.0 / n, 0.0) / r)
        k[i] = float(kk) if np.isfinite(kk) else np.inf
    return LogMeans(value, se, k)


@dataclass(frozen=True)
class Decomposition:
    """One hypothesis's change of log p(y | H) over an interval, split over its events."""

    contributions: np.ndarray  # log p(e_k | everything before it, H), in chain order
    total: float  # their sum: the importance-sampling estimate of the interval's change
    se: float
    pareto_k: float  # the largest k of the weights used (-inf with no events to weight)
    threshold: float
    from_earlier: int  # events weighted from the earlier fit's draws (the rest: the later fit's)

    @property
    def reliable(self) -> bool:
        return bool(self.pareto_k <= self.threshold)


def decompose(
    earlier: np.ndarray,
    later: np.ndarray | None,
    earlier_chains: int | None,
    later_chains: int | None,
    split: int | None = None,
) -> Decomposition:
    """Sequential log predictive densities of an interval's events (see the module docstring).

    ``earlier``/``later``: each event's log-likelihood change (events, draws) at the earlier and
    the later quarter's posterior draws (``later`` None: the earlier draws only). ``split``
    forces the number of events weighted from the earlier draws (tests; by default it is chosen
    by Pareto k).
    """
    n = earlier.shape[0]
    threshold = k_threshold(earlier.shape[1] if later is None else min(earlier.shape[1], later.shape[1]))
    if n == 0:
        return Decomposition(np.zeros(0), 0.0, 0.0, -np.inf, threshold, 0)
    forward = psis_log_means(np.cumsum(earlier, axis=0), earlier_chains)  # F_1..F_n
    f = np.concatenate([[0.0], forward.value])
    f_se = np.concatenate([[0.0], forward.se])
    f_k = np.concatenate([[-np.inf], forward.pareto_k])
    if later is None or (split is None and np.max(f_k) <= threshold) or split == n:
        return Decomposition(np.diff(f), float(f[n]), float(f_se[n]), float(np.max(f_k)), threshold, n)
    # G_k = log E_t[exp(-(l_(k+1) + ... + l_n))] for k = 0..n-1; G_n = 0.
    tails = -np.cumsum(later[::-1], axis=0)[::-1]  # row k (k = 0..n-1): -(l_(k+1) + ... + l_n)
    backward = psis_log_means(tails, later_chains)
    g = np.concatenate([backward.value, [0.0]])
    g_se = np.concatenate([backward.se, [0.0]])
    g_k = np.concatenate([backward.pareto_k, [-np.inf]])
    # The earlier fit's weights are too heavy-tailed for all n events: split at m, F_1..F_m
    # forward and G_m..G_(n-1) backward, where the largest k of the weights used is lowest.
    worst = np.array([max(np.max(f_k[: m + 1]), np.max(g_k[m:])) for m in range(n + 1)])
    m = int(np.flatnonzero(worst <= np.min(worst))[-1]) if split is None else split  # ties: the earlier fit
    contributions = np.concatenate([np.diff(f[: m + 1]), np.diff(g[m:])])
    total = float(f[m] - g[m])
    se = float(np.hypot(f_se[m], g_se[m]))
    return Decomposition(contributions, total, se, float(worst[m]), threshold, m)


def parts_of(arrays: Mapping[str, np.ndarray], study: Study) -> tuple[np.ndarray, np.ndarray]:
    """``latent_parts`` (a, b) of draws (arrays as ``draws_as_arrays`` lays them out)."""
    return latent_parts(
        np, arrays, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )


# --- gathering the terms while the fits run --------------------------------------------------------


class Collector:
    """Per-draw event terms of each interval, taken from each fit as ``compute_history`` makes it.

    Points are numbered as ``History.points``: 0 is the prior, point j >= 1 the j-th evaluated
    quarter; interval j runs from point j-1 to point j. After the fits of point j (``posterior``,
    or ``prior`` for point 0), interval j is decomposed (it needed the draws of both ends) and
    the next interval with new evidence gets its terms at these draws.
    """

    def __init__(self, study: Study, table: pd.DataFrame, known: np.ndarray, quarters: list[int]):
        self.study, self.table = study, table
        self.evidence: dict[int, IntervalEvidence] = {}
        before: set[int] = set()
        for j, q in enumerate(quarters, start=1):
            after, roots = counted_reports(table, known, q, study)
            if after != before:
                evidence = interval_evidence(table, study, before, after, roots)
                self.evidence[j] = evidence.blocks(table) if evidence.n_units > MAX_EVENTS else evidence
            before = after
        self.n_points = len(quarters) + 1
        self._pending: dict[str, tuple[int, np.ndarray, int | None]] = {}  # hid -> (interval, terms, chains)
        self.decompositions: dict[int, dict[str, Decomposition]] = {}

    def prior(self, hypothesis: Hypothesis, n_draws: int, seed: int) -> None:
        """Point 0: independent draws from the hypothesis's priors."""
        draws = prior_draws(self.study, hypothesis, n_draws, derive_rng(seed, "history-attribution", hypothesis.id))
        self._advance(0, hypothesis.id, parts_of(draws, self.study), None, draws.get(CONCENTRATION))

    def posterior(self, point: int, hypothesis_id: str, posterior, chains: int) -> None:
        """Point ``point``'s fit of a hypothesis (its posterior: an xarray Dataset or DataTree node)."""
        parts = parts_of(draws_as_arrays(posterior, self.study), self.study)
        self._advance(point, hypothesis_id, parts, chains, concentration_draws(posterior, self.study))

    def draws(
        self,
        point: int,
        hypothesis_id: str,
        parts: tuple[np.ndarray, np.ndarray],
        chains: int | None,
        concentration: np.ndarray | None = None,
    ) -> None:
        """Point ``point``'s draws of a hypothesis given as ``parts_of`` (a, b); ``chains`` None for
        draws that are not whole chains (e.g. the encompassing draws inside a constraint region).
        An overdispersed study's draws need their ``concentration`` draws; without them the
        hypothesis is treated as having no draws here (its interval's total only, no shares)."""
        self._advance(point, hypothesis_id, parts, chains, concentration)

    def without_draws(self, point: int, hypothesis_id: str) -> None:
        """Point ``point`` has a result but no draws to hand (e.g. a run written before this one)."""
        self._advance(point, hypothesis_id, None, None)

    def _advance(self, point: int, hid: str, parts, chains: int | None, concentration=None) -> None:
        if self.study.overdispersed and concentration is None:
            parts = None  # the per-event terms are not the overdispersed likelihood's: no shares
        phi = concentration if self.study.overdispersed else None
        pending = self._pending.get(hid)
        if pending is not None and pending[0] == point:
            del self._pending[hid]
            later = self.evidence[point].loglik(parts, phi) if parts is not None else None
            self.decompositions.setdefault(point, {})[hid] = decompose(pending[1], later, pending[2], chains)
        nxt = next((j for j in range(point + 1, self.n_points) if j in self.evidence), None)
        if nxt is not None and parts is not None:
            self._pending[hid] = (nxt, self.evidence[nxt].loglik(parts, phi), chains)

    # --- the record ---------------------------------------------------------------------------

    def attribution(self, points: list[HistoryPoint]) -> Attribution | None:
        """What moved the log Bayes factor of the two hypotheses leading at the last point."""
        if len(points) < 2 or len(points[-1].probabilities) < 2:
            return None
        final = points[-1].probabilities
        first, second = sorted(final, key=lambda h: -final[h])[:2]
        log_bf = [_log_bf(p, first, second) for p in points]
        intervals, everything = [], []
        for j in range(1, len(points)):
            if points[j].source == "reused":
                continue
            interval, events = self._interval(points, j, first, second, log_bf)
            intervals.append(interval)
            everything += events
        attributed = [i for i in intervals if i.attributed]
        unattributed = [i.change for i in intervals if not i.attributed]
        everything.sort(key=lambda e: -abs(e.contribution))
        return Attribution(
            hypotheses=[first, second],
            log_bf=log_bf[-1][0],
            log_bf_se=log_bf[-1][1],
            intervals=intervals,
            top_events=everything[:TOP_EVENTS_WINDOW],
            attributed_change=float(sum(i.importance_change or 0.0 for i in attributed)),
            unattributed_change=None if any(c is None for c in unattributed) else float(sum(unattributed)),
        )

    def _interval(self, points, j, first, second, log_bf) -> tuple[IntervalAttribution, list[EventContribution]]:
        start, end = points[j - 1], points[j]
        (before, before_se), (after, after_se) = log_bf[j - 1], log_bf[j]
        change = None if before is None or after is None else after - before
        record = dict(
            start=start.quarter,
            end=end.quarter,
            start_date=start.as_of,
            end_date=end.as_of,
            new_observations=end.new_observations,
            log_bf_before=before,
            log_bf_after=after,
            change=change,
            change_se=None if change is None else float(np.hypot(before_se, after_se)),
        )
        evidence = self.evidence.get(j)
        decs = self.decompositions.get(j, {})
        if evidence is None:  # new rows, none of them new evidence (e.g. a weaker corroborating report)
            evidence = interval_evidence(self.table, self.study, set(), set(), {})
            decs = {h: decompose(np.zeros((0, 1)), None, None, None) for h in (first, second)}
        n = evidence.n_events
        if first not in decs or second not in decs:
            missing = ", ".join(h for h in (first, second) if h not in decs)
            return IntervalAttribution(
                **record,
                n_events=n,
                importance_change=None,
                importance_change_se=None,
                agreement_z=None,
                pareto_k={},
                pareto_k_threshold=float("nan"),
                from_earlier_fit={},
                attributed=False,
                note=f"no posterior draws for {missing}: only the interval's total is reported",
                top_events=[],
                other_events=n,
                other_contribution=None,
            ), []
        d1, d2 = decs[first], decs[second]
        total = d1.total - d2.total
        total_se = float(np.hypot(d1.se, d2.se))
        z = _agreement(total, total_se, change, record["change_se"])
        reliable = d1.reliable and d2.reliable
        notes = []
        if evidence.count is not None:
            notes.append(
                f"{n} new events, more than {MAX_EVENTS}: they are chained in blocks of one counterpart, domain "
                "and outcome (evaluate quarters more often, --every, to name single events)"
            )
        if not reliable:
            # The failing side's k against its own threshold (the thresholds differ when the two
            # hypotheses have different numbers of draws, e.g. the draws inside two regions).
            bad = d1 if not d1.reliable else d2
            notes.append(
                f"Pareto k {bad.pareto_k:.2f} > {bad.threshold:.2f}: the importance weights for these "
                f"{n} events are too heavy-tailed to split the change between them; only the interval's total is "
                "reported (evaluate quarters more often, --every, to split it)"
            )
        elif z is not None and abs(z) > AGREEMENT_Z:
            notes.append(
                f"the events' contributions sum to {total:+.2f}, {abs(z):.1f} standard errors from the change of "
                f"the bridge-sampled log marginal likelihoods ({change:+.2f}): read the shares with care"
            )
        events: list[EventContribution] = []
        if reliable:
            label = f"{start.quarter}..{end.quarter}"
            contributions = d1.contributions - d2.contributions
            events = [self._event(evidence, k, float(c), label) for k, c in enumerate(contributions)]
            events.sort(key=lambda e: -abs(e.contribution))
        top = events[:TOP_EVENTS]
        interval = IntervalAttribution(
            **record,
            n_events=n,
            importance_change=float(total),
            importance_change_se=total_se,
            agreement_z=z,
            pareto_k={first: _finite(d1.pareto_k), second: _finite(d2.pareto_k)},
            pareto_k_threshold=min(d1.threshold, d2.threshold),
            from_earlier_fit={first: d1.from_earlier, second: d2.from_earlier},
            attributed=reliable,
            note="; ".join(notes) or None,
            top_events=top,
            other_events=n - sum(e.count for e in top),
            other_contribution=float(sum(e.contribution for e in events[TOP_EVENTS:])) if reliable else None,
        )
        return interval, events

    def _event(self, evidence: IntervalEvidence, k: int, contribution: float, label: str) -> EventContribution:
        row = self.table.iloc[int(evidence.rows[k])]
        count = 1 if evidence.count is None else int(evidence.count[k])
        outcome = "cooperative" if bool(row["cooperative"]) else "conflictual"
        description = str(row["description"])
        if count > 1:
            description = (
                f"{count} {outcome} events with {row['counterpart']} in {row['domain']}; the first: {description}"
            )
        return EventContribution(
            id=str(row["id"]),
            event_date=_date(row["event_date"]),
            report_date=_date(row["report_date"]),
            counterpart=str(row["counterpart"]),
            domain=str(row["domain"]),
            outcome=outcome,
            description=description,
            weight=float(evidence.added_weight[k]),
            contribution=contribution,
            interval=label,
            replaces=[str(self.table.iloc[p]["id"]) for p in evidence.replaced[k]],
            count=count,
        )


def _agreement(total: float, total_se: float, change: float | None, change_se: float | None) -> float | None:
    """How many combined standard errors the importance-sampled change is from the bridge-sampled one."""
    if change is None or change_se is None or not (np.isfinite(total) and np.isfinite(total_se)):
        return None
    scale = float(np.hypot(total_se, change_se))
    if not np.isfinite(scale):
        return None
    if scale == 0:
        return 0.0 if abs(total - change) < 1e-9 else float("inf")
    return float((total - change) / scale)


def _log_bf(point: HistoryPoint, first: str, second: str) -> tuple[float | None, float]:
    """log p(y | first) - log p(y | second) at a point (0 before any evidence), and its MC error."""
    if point.source == "prior":
        return 0.0, 0.0
    a, b = point.log_marginal_likelihood.get(first), point.log_marginal_likelihood.get(second)
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
        return None, float("nan")
    sa, sb = point.log_marginal_likelihood_se.get(first), point.log_marginal_likelihood_se.get(second)
    se = float(np.hypot(sa, sb)) if sa is not None and sb is not None else float("nan")
    return float(a - b), se


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _date(value) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).date().isoformat()
