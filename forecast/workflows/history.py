"""`forecast history`: the posterior probability of each hypothesis after each quarter of evidence.

For each quarter, the observations *known* by its end (``report_date`` on or before the last day
of the quarter) are refitted under every hypothesis on the SAME compiled model (only the cell
data are swapped in), each log marginal likelihood is estimated by bridge sampling, and the
posterior probabilities follow. A quarter that brings no new evidence reuses the previous
result; before the first observation the support is the prior. The last quarter sees every
observation, so it is the run's own result: with the run's own sampler settings (the default) it
is taken from the run instead of being refitted.

Sampler settings default to the run's own (4 chains x 1500 draws). Lighter settings are possible
but were measured to mislead on the default study: with 500 draws per chain most fits failed the
gate and the bridge estimates in its ~160 dimensions were off by up to 1.7 nats, against a
reported MC error of ~0.2. Points are flagged when a fit fails the gate; they are not gated.

Cost: one fit and one bridge estimate per hypothesis and evaluated quarter, on one compiled
model; the default study has 44 quarters x 3 hypotheses, so ``every=N`` evaluates every N-th
quarter (and always the last) at about 1/N of the cost.

``run_history`` is the workflow (`forecast history`, `update --history`, `report --history`): it
reads the run through ``StoredRun``, applies the one staleness rule, computes and stores
``history.json`` into that run. ``compute_history`` is the computation alone.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.cells import cell_data
from forecast.data.observations import Observations, load_observations
from forecast.errors import ConvergenceError, InputError, RunStoreError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.runs.layout import HISTORY, HISTORY_SCHEMA
from forecast.runs.store import dumps, preflight
from forecast.runs.stored import StoredRun
from forecast.settings import Progress
from forecast.spec.study import Study, load_study, quarter_label
from forecast.stats.loo import posterior_probabilities

SOURCES = ("prior", "fit", "reused", "run")
HISTORY_FILE_BYTES = 1024 * 1024  # room checked for history.json before any fitting

# hypothesis id -> (log marginal likelihood, its MC standard error, convergence problems)
FinalResult = dict[str, tuple[float, float, list[str]]]

__all__ = [
    "HISTORY",
    "HISTORY_SCHEMA",
    "History",
    "HistoryPoint",
    "compute_history",
    "evaluation_quarters",
    "history_for_run",
    "load_history",
    "quarter_end",
    "run_history",
]


@dataclass(frozen=True)
class HistoryPoint:
    """Support after the evidence known by the end of one quarter."""

    quarter: str  # e.g. "2019Q3"
    as_of: str  # the last day of the quarter (ISO date)
    n_observations: int  # observations known by then
    new_observations: int  # since the previous point
    source: str  # "prior" (no evidence yet), "fit", "reused" (no new evidence), "run" (the run's own fit)
    probabilities: dict[str, float]
    probabilities_se: dict[str, float]
    log_marginal_likelihood: dict[str, float | None]
    log_marginal_likelihood_se: dict[str, float | None]
    converged: bool
    problems: dict[str, list[str]] = field(default_factory=dict)  # hypothesis id -> problems

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class History:
    """Support over time, as stored in a run's ``history.json``.

    ``written`` is where it was stored (not part of the file; None when it was not stored).
    """

    study: str
    hypotheses: list[dict]  # id, label, prior_probability
    every: int
    settings: dict
    points: list[HistoryPoint]
    seconds: float
    schema_version: int = HISTORY_SCHEMA
    written: str | None = None

    @property
    def converged(self) -> bool:
        return all(p.converged for p in self.points)

    @property
    def n_fitted(self) -> int:
        """Quarters refitted here (the run's own last point not counted)."""
        return sum(p.source == "fit" for p in self.points)

    def to_dict(self) -> dict:
        d = {
            "schema_version": self.schema_version,
            "study": self.study,
            "hypotheses": self.hypotheses,
            "every": self.every,
            "settings": self.settings,
            "converged": self.converged,
            "n_points": len(self.points),
            "n_fitted": self.n_fitted,
            "seconds": self.seconds,
            "points": [p.to_dict() for p in self.points],
        }
        if self.written is not None:
            d["written"] = self.written
        return d

    @classmethod
    def from_dict(cls, d: dict) -> History:
        if d.get("schema_version") != HISTORY_SCHEMA:
            raise RunStoreError(
                f"{HISTORY} was written with history schema {d.get('schema_version')!r}; this forecast reads "
                f"schema {HISTORY_SCHEMA}. Recompute it with `forecast history`."
            )
        points = [HistoryPoint(**p) for p in d["points"]]
        return cls(d["study"], d["hypotheses"], d["every"], d["settings"], points, d["seconds"])


def quarter_end(index: int) -> dt.date:
    """The last day of the quarter with index ``year * 4 + quarter - 1``."""
    year, q = divmod(index, 4)
    first_of_next = dt.date(year + (q == 3), (3 * (q + 1)) % 12 + 1, 1)
    return first_of_next - dt.timedelta(days=1)


def known_quarter(table: pd.DataFrame) -> np.ndarray:
    """The quarter index in which each observation became known (its report date)."""
    rd = table["report_date"]
    return (rd.dt.year * 4 + (rd.dt.month - 1) // 3).to_numpy(dtype=np.int64)


def evaluation_quarters(known: np.ndarray, every: int) -> list[int]:
    """Every ``every``-th quarter from the first with evidence to the last, always ending at the last."""
    if len(known) == 0:
        return []
    first, last = int(known.min()), int(known.max())
    quarters = list(range(first, last + 1, every))
    if quarters[-1] != last:
        quarters.append(last)
    return quarters


# --- the workflow: a stored run in, history.json stored into it ---------------------------------


def run_history(
    study_path: str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    runs_root: Path | None = None,
    every: int = 1,
    settings: SamplerSettings | None = None,
    overrides: Mapping[str, int] | None = None,
    allow_unconverged: bool = False,
    progress: Progress | None = None,
    today: dt.date | None = None,
) -> History:
    """Compute support over time for a run and store it as the run's ``history.json``.

    The run is ``run_dir`` (a run directory or a study's run folder) or the latest run of the
    study at ``study_path`` (under ``runs_root``, the study's ``runs`` or ``reports/runs``). With
    ``study_path`` the current study and observations are used and the run must match them (the
    one staleness rule, exit 2 otherwise); without it, the run's own copies are used.

    ``settings`` default to the run's own sampler settings (the last quarter is then the run's
    stored result, not a refit); ``overrides`` replace single fields of them (e.g. ``{"draws":
    500}``). A run that failed its convergence checks is refused (exit 3) unless
    ``allow_unconverged``; points whose refits fail are flagged, not refused.
    """
    if every < 1:
        raise InputError(f"--every must be a whole number of quarters >= 1, got {every}")
    study = load_study(study_path) if study_path is not None else None
    run = StoredRun.find(run_dir, study=study, runs_root=runs_root)
    if study is None:
        study = run.stored_study()
        obs = load_observations(study, run.observations_path, today=today)
    else:
        obs = load_observations(study, today=today)
    # history.json goes into the run: check it can be written before minutes of fitting.
    preflight(run.path.parent, run.path.name, need_bytes=HISTORY_FILE_BYTES)
    return history_for_run(
        run,
        study,
        obs,
        every=every,
        settings=settings,
        overrides=overrides,
        allow_unconverged=allow_unconverged,
        progress=progress,
    )


def history_for_run(
    run: StoredRun,
    study: Study,
    obs: Observations,
    *,
    model: StudyModel | None = None,
    every: int = 1,
    settings: SamplerSettings | None = None,
    overrides: Mapping[str, int] | None = None,
    allow_unconverged: bool = False,
    progress: Progress | None = None,
) -> History:
    """``run_history`` once the run and the inputs are in hand (``update --history`` calls it on
    the run it is writing, with the model it has compiled): check, compute, store."""
    run.check_inputs(study, obs.sha256)
    if not run.converged and not allow_unconverged:
        raise ConvergenceError(
            f"run {run.path} failed its convergence checks, so support over time was not computed. "
            "Refit with more --tune/--draws, or pass --allow-unconverged to compute it anyway (flagged)."
        )
    own = run_settings(run)
    chosen = replace(settings or own, **dict(overrides or {}))
    history = compute_history(
        study,
        obs,
        model,
        chosen,
        every=every,
        progress=progress,
        final=run_result(run) if chosen == own else None,
    )
    path = run.write_json(HISTORY, history.to_dict())
    return replace(history, written=str(path))


def run_settings(run: StoredRun) -> SamplerSettings:
    """The sampler settings a run was fitted with (from its summary)."""
    names = {f.name for f in fields(SamplerSettings)}
    stored = {k: v for k, v in (run.summary.get("settings") or {}).items() if k in names}
    return SamplerSettings(**stored)


def run_result(run: StoredRun) -> FinalResult:
    """Each hypothesis's log marginal likelihood, its error and its problems, as the run stored them."""
    out: FinalResult = {}
    for h in run.summary.get("hypotheses", []):
        d = h.get("diagnostics", {})
        problems = [] if d.get("converged") else list(d.get("problems", ["failed"]))
        # Stored JSON has null for an unknown figure (e.g. a bridge error that cannot be estimated).
        value, se = (
            np.nan if v is None else float(v) for v in (h["log_marginal_likelihood"], h["log_marginal_likelihood_se"])
        )
        out[h["id"]] = (value, se, problems)
    return out


# --- the computation ------------------------------------------------------------------------------


def compute_history(
    study: Study,
    obs: Observations,
    model: StudyModel | None = None,
    settings: SamplerSettings | None = None,
    *,
    every: int = 1,
    progress: Progress | None = None,
    final: FinalResult | None = None,
) -> History:
    """Posterior probabilities after each (every N-th) quarter of evidence; see the module docstring.

    ``model`` is the study's compiled model (e.g. the one `forecast update` just used); one is
    built for ``obs`` if not given. ``settings`` default to ``SamplerSettings()``. ``final`` is the
    result of fitting all of ``obs`` with the same settings (the run itself), used for the last
    quarter instead of a refit.
    """
    if every < 1:
        raise InputError(f"every must be a whole number of quarters >= 1, got {every}")
    t0 = time.perf_counter()
    settings = settings or SamplerSettings()
    say = progress or (lambda _msg: None)
    table = obs.table
    known = known_quarter(table)
    model = model or StudyModel(study, cell_data(table, study))
    ids = [h.id for h in study.hypotheses]
    prior = np.array([h.prior_probability for h in study.hypotheses])
    quarters = evaluation_quarters(known, every)
    n_fits = sum(1 for i, q in enumerate(quarters) if _new(known, quarters, i) > 0)
    say(
        f"history: {len(quarters)} quarter(s) {quarter_label(quarters[0]) if quarters else ''}.."
        f"{quarter_label(quarters[-1]) if quarters else ''}, every {every}, up to {n_fits * len(ids)} fits "
        f"({settings.chains} chains x {settings.draws} draws)"
    )

    points: list[HistoryPoint] = []
    if quarters:
        before = quarters[0] - 1
        points.append(_prior_point(ids, prior, before))
    for i, q in enumerate(quarters):
        mask = known <= q
        n_known = int(mask.sum())
        new = _new(known, quarters, i)
        if new == 0 and points:
            prev = points[-1]
            points.append(
                replace(
                    prev,
                    quarter=quarter_label(q),
                    as_of=quarter_end(q).isoformat(),
                    new_observations=0,
                    source="reused",
                )
            )
            continue
        t_q = time.perf_counter()
        log_ml, log_ml_se, problems = [], [], {}
        source = "fit"
        if final is not None and n_known == len(table) and set(final) == set(ids):
            source = "run"  # every observation is known: this is the run's own result
            for hid in ids:
                value, se, issues = final[hid]
                log_ml.append(value)
                log_ml_se.append(se)
                if any(not p.startswith("warning") for p in issues):
                    problems[hid] = list(issues)
        else:
            cells = cell_data(table[mask], study)
            for h in study.hypotheses:
                judged = fit_hypothesis(model, h, settings, cells=cells, with_loo=False)
                log_ml.append(judged.bridge.log_ml)
                log_ml_se.append(judged.bridge.se)
                if not judged.converged:
                    problems[h.id] = list(judged.fit.diagnostics.problems)
        p, p_se = posterior_probabilities(np.array(log_ml), np.array(log_ml_se), prior)
        points.append(
            HistoryPoint(
                quarter=quarter_label(q),
                as_of=quarter_end(q).isoformat(),
                n_observations=n_known,
                new_observations=new,
                source=source,
                probabilities=dict(zip(ids, map(float, p), strict=True)),
                probabilities_se=dict(zip(ids, map(float, p_se), strict=True)),
                log_marginal_likelihood=dict(zip(ids, map(float, log_ml), strict=True)),
                log_marginal_likelihood_se=dict(zip(ids, map(float, log_ml_se), strict=True)),
                converged=not problems,
                problems=problems,
            )
        )
        flag = "" if not problems else "  NOT CONVERGED: " + ", ".join(problems)
        say(
            f"  {quarter_label(q)}: {n_known} observations (+{new}), "
            + ", ".join(f"{k} {v:.3f}" for k, v in zip(ids, p, strict=True))
            + ("  [the run's own fit]" if source == "run" else f"  [{time.perf_counter() - t_q:.1f} s]")
            + flag
        )
    return History(
        study=study.name,
        hypotheses=[{"id": h.id, "label": h.label, "prior_probability": h.prior_probability} for h in study.hypotheses],
        every=every,
        settings=settings.to_dict(),
        points=points,
        seconds=time.perf_counter() - t0,
    )


def _new(known: np.ndarray, quarters: list[int], i: int) -> int:
    lower = quarters[i - 1] if i > 0 else -np.inf
    return int(((known > lower) & (known <= quarters[i])).sum())


def _prior_point(ids: list[str], prior: np.ndarray, quarter: int) -> HistoryPoint:
    return HistoryPoint(
        quarter=quarter_label(quarter),
        as_of=quarter_end(quarter).isoformat(),
        n_observations=0,
        new_observations=0,
        source="prior",
        probabilities=dict(zip(ids, map(float, prior), strict=True)),
        probabilities_se=dict.fromkeys(ids, 0.0),
        log_marginal_likelihood=dict.fromkeys(ids),
        log_marginal_likelihood_se=dict.fromkeys(ids),
        converged=True,
    )


def history_json(history: History) -> str:
    """``history.json``'s text (strict JSON)."""
    return dumps(history.to_dict()) + "\n"


def load_history(run_dir: str | Path) -> History | None:
    """A run's stored history, or None if it has none; an unreadable one is a RunStoreError."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return None
    try:
        return History.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise RunStoreError(f"{path}: unreadable ({e}); recompute it with `forecast history`") from None
