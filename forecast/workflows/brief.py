"""`forecast brief`: the whole analysis in one run, in one command, on one set of fits.

The steps, in order, each the workflow of its own command applied to the SAME stored run:

1. ``update``   fit every hypothesis (with robustness over the declared class of reasonable
                priors, when the update workflow offers it) and write the run;
2. ``history``  support over time and what moved it (``forecast history``; yearly by default:
                every 4 quarters) into the run's history.json;
3. ``evidence`` diagnosticity, critical items and evidence quality into evidence.json;
4. ``predict``  forecasts, question probabilities and milestones into forecasts.json;
5. ``report``   the report of the run (HTML, Markdown, JSON); the report step is a callable the
                caller passes in (the report lives in a higher layer, forecast.reports).

Nothing is refitted that the run holds: history reuses the run's own fit for its last quarter,
evidence and predict read the run's posterior draws. ``skip`` leaves steps out; with ``update``
skipped the study's latest run is used, and it must match the current study and observations
(the one staleness rule). A failing later step (e.g. an evidence refit that fails its checks) is
recorded and the others still run, so the report lists what is missing.

A run of a study that also states its hypotheses as constraints holds constraints.json with an
``agreement`` of the two comparisons; when they disagree, the brief's headline says so first
(``headline_with_agreement``; the report's own headline words both comparisons by the weaker).

Time left: each step's cost is estimated in units of the update step (``RELATIVE_COST``; history
per evaluated quarter), scaled by the seconds the finished steps actually took per unit. Before
the update has run, the unit is ``FIRST_GUESS_S`` seconds per hypothesis (doubled with
robustness). Measured on the golden study (2 hypotheses, 48 observations, 4 x 500 draws): update
with robustness 13 s, history (every 4 quarters) 9 s, evidence 3 s, predict 2 s, report 6 s.
On the default study (3 hypotheses, 335 observations, 4 x 300 draws, a shared 2-core machine):
update 49 s, history 72 s, evidence 12 s, predict 1 s, report 10 s.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from forecast.data.observations import load_observations
from forecast.errors import ForecastError, InputError, RunStoreError
from forecast.runs.layout import CONSTRAINTS, CONSTRAINTS_SCHEMA
from forecast.runs.store import default_root
from forecast.runs.stored import StoredRun
from forecast.settings import Progress, SamplerSettings
from forecast.spec.study import load_study

STEPS = ("update", "history", "evidence", "predict", "report")
DEFAULT_HISTORY_EVERY = 4  # yearly
# Each step's cost relative to the update step (history: per evaluated quarter).
RELATIVE_COST = {"update": 1.0, "history": 0.3, "evidence": 0.3, "predict": 0.05, "report": 0.3}
FIRST_GUESS_S = 6.0  # seconds per hypothesis of one update, before any step has been timed

ReportStep = Callable[[StoredRun], list[str]]  # writes the report of the run, returns the paths written


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # "done", "skipped" or "failed"
    seconds: float = 0.0
    written: list[str] = field(default_factory=list)
    note: str | None = None
    exit_code: int = 0  # of the error, when failed

    def to_dict(self) -> dict:
        d = {"name": self.name, "status": self.status, "seconds": round(self.seconds, 2), "written": self.written}
        if self.note:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class BriefResult:
    study: str
    run_dir: str
    steps: list[StepResult]
    conclusion: str
    judgement: dict | None
    converged: bool
    seconds: float
    agreement: dict | None = None  # constraints.json's agreement of the two comparisons, when the run has one

    @property
    def written(self) -> list[str]:
        return [p for s in self.steps for p in s.written]

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if s.status == "failed"]

    def to_dict(self) -> dict:
        return {
            "study": self.study,
            "run_dir": self.run_dir,
            "converged": self.converged,
            "headline": self.conclusion,
            "judgement": self.judgement,
            "agreement": self.agreement,
            "steps": [s.to_dict() for s in self.steps],
            "written": self.written,
            "failed": [s.name for s in self.failed],
            "seconds": round(self.seconds, 2),
        }


def run_agreement(run: StoredRun) -> dict | None:
    """The agreement of the prior-specified and the constraint comparisons (constraints.json), or None."""
    try:
        data = run.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA)
    except RunStoreError:
        return None
    agreement = (data or {}).get("agreement")
    return agreement if isinstance(agreement, dict) else None


def headline_with_agreement(conclusion: str, agreement: dict | None) -> str:
    """The brief's headline: the update's, opened by the disagreement of the two comparisons when they
    disagree (the answer then depends on how the hypotheses were stated: low confidence whatever either
    comparison says alone)."""
    if not agreement or agreement.get("agree") is not False:
        return conclusion
    sentence = str(agreement.get("sentence") or "").strip()
    if sentence and sentence in conclusion:
        return conclusion
    lead = sentence or (
        f"the hypotheses stated as sets of priors favour '{agreement.get('prior_leader')}', stated as constraints "
        f"'{agreement.get('constraint_leader')}'."
    )
    return (
        f"The two comparisons disagree: {lead} Confidence: low, whatever either says alone. "
        f"Stated as sets of priors: {conclusion}"
    )


def parse_skip(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"history,evidence"`` (or a list of such) as step names; an unknown name is an InputError."""
    if not text:
        return ()
    items = [text] if isinstance(text, str) else list(text)
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise InputError(f"--skip {', '.join(unknown)}: unknown step; the steps are {', '.join(STEPS)}")
    return tuple(dict.fromkeys(names))


class Clock:
    """Time left: the remaining steps' relative costs times the seconds per unit measured so far."""

    def __init__(self, units: dict[str, float], first_unit_s: float):
        self.units = units  # step -> relative cost (only the steps that will run)
        self.first_unit_s = first_unit_s
        self.done_units = 0.0
        self.done_s = 0.0

    @property
    def unit_s(self) -> float:
        return self.done_s / self.done_units if self.done_units > 0 else self.first_unit_s

    def finished(self, step: str, seconds: float) -> None:
        self.done_units += self.units.get(step, 0.0)
        self.done_s += seconds

    def left(self, steps: Sequence[str]) -> float:
        return sum(self.units.get(s, 0.0) for s in steps) * self.unit_s


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} s"
    return f"{seconds / 60:.1f} min"


def run_brief(
    study_path: str | Path,
    *,
    settings: SamplerSettings | None = None,
    runs_root: Path | None = None,
    skip: Sequence[str] = (),
    history_every: int = DEFAULT_HISTORY_EVERY,
    allow_unconverged: bool = False,
    robustness: bool = True,
    today: dt.date | None = None,
    report: ReportStep | None = None,
    progress: Progress | None = None,
) -> BriefResult:
    """Run the whole pipeline on one run (see the module docstring) and say what was written."""
    from forecast.workflows.evidence import run_evidence
    from forecast.workflows.history import run_history
    from forecast.workflows.predict import run_predict
    from forecast.workflows.update import run_update

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    skip = parse_skip(list(skip))
    if history_every < 1:
        raise InputError(f"--history-every must be a whole number of quarters >= 1, got {history_every}")
    if report is None and "report" not in skip:
        skip = (*skip, "report")
    study = load_study(study_path)
    root = runs_root or study.runs_path or default_root()
    todo = [s for s in STEPS if s not in skip]
    n_points = math.ceil((study.time.end - study.time.start + 1) / history_every)
    units = {s: RELATIVE_COST[s] * (max(n_points - 1, 1) if s == "history" else 1.0) for s in todo}
    offers_robustness = "robustness" in inspect.signature(run_update).parameters
    first = FIRST_GUESS_S * len(study.hypotheses) * (2 if robustness and offers_robustness else 1)
    clock = Clock(units, first)
    say(
        f"brief: {study.name}: {', '.join(todo) or 'nothing'} ({len(todo)} steps"
        + (f"; skipping {', '.join(skip)}" if skip else "")
        + f"), about {_duration(clock.left(todo))} in all (a first guess until the first step is timed)"
    )

    run: StoredRun | None = None
    conclusion, judgement, converged = "", None, True
    steps: list[StepResult] = []

    def update() -> list[str]:
        nonlocal run, conclusion, judgement, converged
        extra = {"robustness": robustness} if offers_robustness else {}
        result = run_update(
            study_path,
            settings,
            runs_root=root,
            allow_unconverged=allow_unconverged,
            progress=say,
            today=today,
            **extra,
        )
        run = StoredRun.open(Path(result.run_dir))
        conclusion, judgement, converged = result.conclusion, getattr(result, "judgement", None), result.converged
        return [str(run.path)]

    def history() -> list[str]:
        h = run_history(
            study_path,
            run_dir=run.path,
            runs_root=root,
            every=history_every,
            allow_unconverged=allow_unconverged,
            progress=say,
            today=today,
        )
        return [h.written] if h.written else []

    def evidence() -> list[str]:
        e = run_evidence(
            study_path, runs_root=root, run_dir=run.path, allow_unconverged=allow_unconverged, progress=say
        )
        return [e.written] if e.written else []

    def predict() -> list[str]:
        p = run_predict(
            study_path, runs_root=root, run_dir=run.path, allow_unconverged=allow_unconverged, today=today, progress=say
        )
        return [p.written] if p.written else []

    def report_step() -> list[str]:
        return list(report(run))

    actions = {"update": update, "history": history, "evidence": evidence, "predict": predict, "report": report_step}
    if "update" in skip:
        run = StoredRun.find(study=study, runs_root=root)
        run.check_inputs(study, load_observations(study, today=today).sha256)  # the one staleness rule
        say(f"brief: using the study's latest run {run.path.name} (update skipped)")
        s = run.summary
        conclusion, judgement, converged = s.get("conclusion", ""), s.get("judgement"), bool(s.get("converged", True))
    for name in STEPS:
        if name in skip:
            steps.append(StepResult(name, "skipped"))
            continue
        k = todo.index(name)
        say(
            f"brief [{k + 1}/{len(todo)}] {name}: about {_duration(clock.left([name]))}; "
            f"about {_duration(clock.left(todo[k:]))} left in all"
        )
        start = time.perf_counter()
        try:
            written = actions[name]()
        except ForecastError as e:
            if name == "update":
                raise
            seconds = time.perf_counter() - start
            clock.finished(name, seconds)
            say(f"brief: {name} FAILED after {_duration(seconds)}: {e}")
            steps.append(StepResult(name, "failed", seconds, [], str(e), e.exit_code))
            continue
        seconds = time.perf_counter() - start
        clock.finished(name, seconds)
        rest = todo[k + 1 :]
        say(
            f"brief: {name} done in {_duration(seconds)}"
            + (f"; about {_duration(clock.left(rest))} left" if rest else "")
        )
        steps.append(StepResult(name, "done", seconds, [str(w) for w in written]))
    assert run is not None
    agreement = run_agreement(run)
    return BriefResult(
        study=study.name,
        run_dir=str(run.path),
        steps=steps,
        conclusion=headline_with_agreement(conclusion, agreement),
        judgement=judgement,
        converged=converged,
        seconds=time.perf_counter() - t0,
        agreement=agreement,
    )
