"""The report as a typed record: one frozen dataclass per section, ``Report`` holding them all.

``forecast.reports.report.assemble`` fills these from a stored run; ``render`` turns them into
HTML, Markdown and JSON. Nothing here reads files or computes statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from forecast.runs.layout import REPORT_SCHEMA

FORMATS = ("html", "md", "json")  # written by default
ALL_FORMATS = (*FORMATS, "pdf")  # pdf on request (headless Chromium)
UNRELIABLE = "UNRELIABLE: at least one fit failed its checks (convergence, marginal-likelihood error)"

# The convergence gate's thresholds, shown beside the diagnostics. A run records the thresholds
# it was judged by in its manifest (``StoredRun.gate``); these are the values of forecast.fit's
# gate, copied here (the report does not import the sampler) for runs written before that.
DEFAULT_GATE = {
    "rhat_max": 1.01,
    "ess_min": 400,
    "divergences": 0,
    "ebfmi_min": 0.3,
    "treedepth_saturation_max": 0.05,
}


# --- 1. headline -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SupportRow:
    id: str
    label: str
    colour: str
    rank: int
    prior_probability: float
    posterior_probability: float
    posterior_probability_se: float
    log_marginal_likelihood: float
    log_marginal_likelihood_se: float
    bayes_factor: float | None  # this hypothesis against `bayes_factor_against`
    log_bayes_factor: float | None
    log_bayes_factor_se: float | None
    bayes_factor_against: str | None  # id of the runner-up (for the leader) or of the leader (for the others)
    bayes_factor_text: str
    jeffreys: str  # verbal strength on Jeffreys' scale, e.g. "strong evidence for", "moderate evidence against"
    elpd_loo: float
    elpd_loo_se: float
    elpd_diff: float
    elpd_diff_se: float
    loo_weight: float
    converged: bool
    problems: list[str]


@dataclass(frozen=True)
class Headline:
    question: str
    study: str
    latest_observation: str | None
    n_observations: int
    rows: list[SupportRow]  # ranked by posterior probability
    leader: str
    runner_up: str | None
    conclusion: str
    loo_note: str
    converged: bool
    warning: str | None
    failed: list[str]  # labels of hypotheses whose fits failed the gate
    # The prior-specified comparison's own conclusion (summary.json's). ``conclusion`` is the report's
    # headline: the same sentence, or, when the run also holds constraint hypotheses, the headline of
    # both comparisons (worded by the weaker; it says when they disagree).
    prior_conclusion: str = ""
    constraint_only: bool = False  # no prior-specified hypotheses: the constraint comparison alone


# --- 2. support over time ----------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    quarter: str
    as_of: str
    n_observations: int
    new_observations: int
    source: str
    probabilities: dict[str, float]
    probabilities_se: dict[str, float]
    converged: bool
    failed: list[str]


@dataclass(frozen=True)
class HistorySection:
    available: bool
    note: str
    every: int | None = None
    settings: dict | None = None
    converged: bool = True
    rows: list[HistoryRow] = field(default_factory=list)
    figure: str | None = None


@dataclass(frozen=True)
class ConstraintHistoryRow:
    quarter: str
    n_observations: int
    new_observations: int
    source: str
    probabilities: list[str]  # per hypothesis (``ConstraintHistorySection.labels`` order): "0.412" or "< 0.010"
    leader: str  # label
    converged: bool


@dataclass(frozen=True)
class ConstraintHistorySection:
    """The constraint hypotheses over time (history.json's "constraints"), kept apart from section 3's table."""

    available: bool
    note: str = ""
    labels: list[str] = field(default_factory=list)
    rows: list[ConstraintHistoryRow] = field(default_factory=list)
    figure: str | None = None
    moved: list[str] = field(default_factory=list)  # what moved it, one sentence each


# --- 3. what each hypothesis learned ------------------------------------------------------------


@dataclass(frozen=True)
class IntervalRow:
    parameter: str
    group: str
    prior_median: float
    prior_low: float
    prior_high: float
    posterior_median: float
    posterior_low: float
    posterior_high: float


@dataclass(frozen=True)
class Learned:
    id: str
    label: str
    colour: str
    claim: str
    converged: bool
    problems: list[str]
    hyperparameters: list[IntervalRow]
    propensities: list[IntervalRow]  # P(cooperative) per (group, domain) at the reference quarter
    figures: list[str]


# --- 4. does the model fit ---------------------------------------------------------------------


@dataclass(frozen=True)
class PpcRow:
    group: str
    domain: str
    n_events: int
    observed_share: float
    replicated: dict[str, dict[str, float]]  # hypothesis id -> median, low, high (94%), p_value


@dataclass(frozen=True)
class FitSection:
    rows: list[PpcRow]
    figure: str
    calibration_figures: list[str]
    calibration_note: str
    flagged: list[str]  # labels of hypotheses whose fits failed (their checks are unreliable)
    surprising: int  # (group, domain) cells with a two-sided posterior predictive p-value < 0.05


# --- 5. evidence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceRow:
    id: str
    event_date: str
    report_date: str
    counterpart: str
    domain: str
    outcome: str
    reliability: str
    weight: float
    description: str
    source: str
    elpd_difference: float  # elpd_i(leader) - elpd_i(runner-up): > 0 favours the leader
    favours: str  # label of the hypothesis it favours
    pareto_k: float  # the larger of the two hypotheses' Pareto k for this observation


@dataclass(frozen=True)
class EvidenceSection:
    available: bool
    note: str
    leader: str | None
    runner_up: str | None
    total: float | None
    rows: list[EvidenceRow]
    figure: str | None
    unreliable: bool


# --- sensitivity to the priors (from sensitivity.json) ------------------------------------------


@dataclass(frozen=True)
class RangeRow:
    id: str
    label: str
    colour: str
    base: float
    low: float
    high: float
    low_variant: str
    high_variant: str


@dataclass(frozen=True)
class TornadoRow:
    hypothesis: str  # label
    target: str  # the perturbed prior ("all": every prior of the hypothesis jointly)
    low: float
    high: float
    swing: float


@dataclass(frozen=True)
class PsenseFlag:
    hypothesis: str  # label
    parameter: str
    group: str
    flag: str


@dataclass(frozen=True)
class SensitivitySection:
    available: bool
    note: str
    warning: str | None = None
    leader: str | None = None
    stable: bool | None = None
    verdict: str = ""
    n_variants: int = 0
    n_refitted: int = 0
    shifts: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    pareto_k_threshold: float | None = None
    ranges: list[RangeRow] = field(default_factory=list)
    tornado: list[TornadoRow] = field(default_factory=list)  # the largest swings first
    prior_odds: str = ""
    psense_threshold: float | None = None
    psense_flags: list[PsenseFlag] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


# --- what the priors imply (from prior_predictive.json) ------------------------------------------


@dataclass(frozen=True)
class StatedPrior:
    parameter: str
    group: str
    prior: str  # e.g. "Normal(mu=0, sigma=1)"
    statement: str | None  # the analyst's statement it was elicited from, if any


@dataclass(frozen=True)
class ShareRow:
    what: str  # e.g. "West / typical domain, 2020Q3"
    median: float
    q25: float
    q75: float
    q05: float
    q95: float


@dataclass(frozen=True)
class PriorHypothesis:
    id: str
    label: str
    colour: str
    prior_probability: float
    priors: list[StatedPrior]
    shares: list[ShareRow]


@dataclass(frozen=True)
class PairRow:
    a: str  # label
    b: str  # label
    most_different: str
    max_hellinger: float
    indistinguishable: bool


# --- the priors as the analyst stated them (from the run's own study copy) ------------------------


@dataclass(frozen=True)
class PriorRow:
    """One (hyperparameter, counterpart group) prior of a hypothesis: as stated and as fitted."""

    parameter: str
    group: str  # the group's label
    fitted: str  # the distribution the model uses, e.g. "Normal(mu=1.2, sigma=0.45)"
    stated_as: str  # "statement" (elicited from an analyst's statement) or "distribution" ({ dist, kwargs })
    statement: str | None = None  # the statement in plain language, e.g. "90% sure that 60% to 90% ..."
    says: str | None = None  # the analyst's own words (the statement's `says`)
    model_interval: list[float] | None = None  # the interval on the model's scale the fitted prior covers
    mass: float | None = None  # the stated mass in that interval
    fitted_mass: float | None = None  # the mass the fitted prior puts there


@dataclass(frozen=True)
class HypothesisPriors:
    id: str
    label: str
    colour: str
    prior_probability: float
    rows: list[PriorRow]
    n_statements: int  # rows stated as statements (the rest as distributions)


@dataclass(frozen=True)
class StatedPriorsSection:
    note: str
    hypotheses: list[HypothesisPriors] = field(default_factory=list)
    n_statements: int = 0
    parameters: list[str] = field(default_factory=list)  # the rows' order: per parameter, every group
    groups: list[str] = field(default_factory=list)  # group labels
    units: dict[str, str] = field(default_factory=dict)  # parameter -> its scale, in words


@dataclass(frozen=True)
class PriorPredictiveSection:
    available: bool
    note: str
    reference_quarter: str | None = None
    n_draws: int | None = None
    threshold: float | None = None
    hypotheses: list[PriorHypothesis] = field(default_factory=list)
    pairs: list[PairRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    figure: str | None = None


# --- 6. diagnostics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DiagnosticsRow:
    id: str
    label: str
    colour: str
    converged: bool
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    treedepth_saturated: float
    max_tree_depth: int | None
    ebfmi_min: float
    pareto_k_max: float
    n_bad_pareto_k: int
    attempts: int
    draws: int
    tune: int
    chains: int
    target_accept: float
    seconds: float
    problems: list[str]


@dataclass(frozen=True)
class DiagnosticsSection:
    rows: list[DiagnosticsRow]
    settings: dict
    thresholds: dict  # the gate the run was judged by (its manifest), else DEFAULT_GATE
    pareto_k_threshold: float
    manifest: dict | None
    data_hash_matches: bool | None
    notes: list[str]


# --- the one-page summary, and the sections drawn from other commands' files ---------------------


@dataclass(frozen=True)
class QuestionRow:
    id: str
    text: str
    quarter: str
    probability: float | None
    resolved: bool


@dataclass(frozen=True)
class WatchRow:
    """A milestone: what to watch next quarter and what it would say."""

    what: str  # e.g. "Russia / Defence, 2022Q1"
    text: str  # the milestone's own sentence (which outcome favours which hypothesis)
    score: float | None  # how strongly it separates the leading hypotheses (larger: more)


@dataclass(frozen=True)
class ComparisonBox:
    """One comparison's answer in the summary: the prior-specified one or the constraint one, kept apart."""

    kind: str  # "priors" or "constraints"
    title: str
    leader: str | None  # label
    probability: float | None
    likelihood: str | None
    evidence: str  # the leader's Bayes factor against its runner-up, in words
    robustness: str
    robust: bool | None
    confidence: str | None
    confidence_reasons: list[str] = field(default_factory=list)
    source: str = ""  # where it comes from (file, command)


@dataclass(frozen=True)
class Summary:
    """The one-page summary at the top of the report."""

    question: str
    answer: str  # the answer in words: the leader and its likelihood, or the conclusion sentence
    likelihood: str | None  # ICD 203 word of the leader's probability (update's judgement), if stored
    confidence: str | None  # high / moderate / low (update's judgement), if stored
    confidence_reasons: list[str]
    conclusion: str
    robustness: str  # the range over the declared class, or what adds it
    robust: bool | None
    moved: list[str]  # what moved it (history.json's attribution), one sentence each
    moved_note: str
    watch: list[WatchRow]
    watch_note: str
    questions: list[QuestionRow]
    questions_note: str
    warnings: list[str]  # stale data: forecast quarters or questions already over
    # Both comparisons side by side when the run holds constraint hypotheses (never merged).
    comparisons: list[ComparisonBox] = field(default_factory=list)
    agreement: str | None = None  # constraints.json's agreement sentence
    agree: bool | None = None


@dataclass(frozen=True)
class Missing:
    section: str  # the report section that would show it
    what: str
    command: str


@dataclass(frozen=True)
class CooperationRow:
    group: str
    domain: str
    now_median: float
    now_low: float
    now_high: float
    start_median: float
    change_median: float
    change_low: float
    change_high: float


@dataclass(frozen=True)
class CooperationSection:
    now: str  # quarter label of "now" (the quarter of the latest observation)
    start: str  # the window's first quarter
    note: str
    rows: list[CooperationRow]
    figure: str | None


@dataclass(frozen=True)
class RobustnessRange:
    id: str
    label: str
    colour: str
    base: float
    low: float
    high: float
    low_variant: str
    high_variant: str


@dataclass(frozen=True)
class RobustnessSection:
    available: bool
    note: str
    leader: str | None = None
    stable: bool | None = None
    n_variants: int = 0
    ranges: list[RobustnessRange] = field(default_factory=list)
    flips: list[str] = field(default_factory=list)  # one sentence per variant in which the leader changes
    prior_odds: str = ""
    declared: str = ""  # the class, in words
    warning: str | None = None
    figure: str | None = None
    reference_lines: str = ""  # what the tornado's lines mean


@dataclass(frozen=True)
class ForecastRow:
    what: str  # group / domain
    quarter: str
    probability: float | None  # P(cooperative) of an interaction (model average)
    low: float | None
    high: float | None
    expected_events: float | None


@dataclass(frozen=True)
class ForecastsSection:
    available: bool
    note: str
    issued: str | None = None
    origin: str | None = None
    rows: list[ForecastRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SkillRow:
    forecaster: str
    log_score: float | None
    brier: float | None
    brier_skill_base_rate: float | None  # Brier improvement over the base rate (> 0: better)
    coverage_50: float | None
    coverage_90: float | None


@dataclass(frozen=True)
class BacktestSection:
    available: bool
    note: str
    rows: list[SkillRow] = field(default_factory=list)
    figure: str | None = None


@dataclass(frozen=True)
class CalibrationSection:
    available: bool
    note: str
    verdict: str | None = None
    rows: list[dict] = field(default_factory=list)  # per hypothesis: prior, mean posterior, band, within
    design: dict | None = None  # picks_true, decisive, misleading
    # The constraint comparison's own calibration (calibration.json's "constraints"), kept apart.
    constraints: CalibrationSection | None = None


# --- constraint hypotheses (constraints.json, `forecast update`) ---------------------------------


@dataclass(frozen=True)
class ConstraintRow:
    id: str
    label: str
    claim: str  # the analyst's words
    constraints: list[str]  # as the analyst wrote them
    complement: bool
    prior_probability: float
    prior_mass: str  # e.g. "0.0372 ± 0.00095", "1.2e-05 ± 3e-06 (stepwise)"
    posterior_mass: str  # e.g. "0.0408 ± 0.0026", "< 0.0005" (no draw inside)
    bayes_factor: float | None  # against the encompassing model (the bound, when it is one)
    bayes_factor_text: str  # "1.10", "< 0.0135": never "infinity"
    bayes_factor_bound: str | None  # "upper" (below the value shown) or None
    log_bayes_factor: float | None
    log_bayes_factor_se: float | None
    posterior_probability: float
    posterior_probability_se: float
    posterior_probability_upper: float
    posterior_text: str  # "0.412 ± 0.017" or "< 0.012"
    scaled: list[float | None]  # the posterior probability with the encompassing prior scaled (``factors``)
    leader: bool = False


@dataclass(frozen=True)
class ConstraintSection:
    available: bool
    note: str
    rows: list[ConstraintRow] = field(default_factory=list)
    leader: str | None = None  # id
    runner_up: str | None = None  # id
    versus: str = ""  # the leader's Bayes factor against the runner-up, in words
    bayes_factor: float | None = None  # the leader against the runner-up (a lower bound when ``versus`` says so)
    strength: str = ""
    likelihood: str | None = None
    confidence: str | None = None
    confidence_reasons: list[str] = field(default_factory=list)
    robust: bool | None = None
    robustness: str = ""  # in words
    factors: list[str] = field(default_factory=list)  # column headings of ``ConstraintRow.scaled``
    robustness_notes: list[str] = field(default_factory=list)  # unreliable reweighting, said plainly
    overlaps: list[str] = field(default_factory=list)  # one warning per overlapping pair, with the advice
    method: str = ""
    encompassing: HypothesisPriors | None = None  # the encompassing prior in the analyst's terms
    encompassing_note: str = ""
    encompassing_same: bool = False  # every counterpart group has the same encompassing prior (shown once)
    prior_predictive: list[str] = field(default_factory=list)  # per group: 5% / 50% / 95% share
    converged: bool = True
    warning: str | None = None
    agreement: dict | None = None  # constraints.json's "agreement"
    headline: str = ""  # the constraint comparison's own sentence
    n_prior_draws: int | None = None
    n_posterior_draws: int | None = None
    evidence: str = ""  # what `forecast evidence` found for them (evidence.json's "constraints"), or what adds it


# --- the whole report --------------------------------------------------------------------------


@dataclass
class Report:
    study: str
    run_dir: str
    run_id: str
    generated: str
    forecast_version: str
    converged: bool
    warning: str | None
    headline: Headline
    history: HistorySection
    learned: list[Learned]
    fit: FitSection
    evidence: EvidenceSection
    diagnostics: DiagnosticsSection
    colours: dict[str, str]
    labels: dict[str, str]
    sensitivity: SensitivitySection = field(default_factory=lambda: SensitivitySection(False, ""))
    prior_predictive: PriorPredictiveSection = field(default_factory=lambda: PriorPredictiveSection(False, ""))
    priors: StatedPriorsSection = field(default_factory=lambda: StatedPriorsSection(""))
    summary: Summary | None = None
    cooperation: CooperationSection | None = None
    robustness: RobustnessSection = field(default_factory=lambda: RobustnessSection(False, ""))
    forecasts: ForecastsSection = field(default_factory=lambda: ForecastsSection(False, ""))
    backtest: BacktestSection = field(default_factory=lambda: BacktestSection(False, ""))
    calibration: CalibrationSection = field(default_factory=lambda: CalibrationSection(False, ""))
    constraints: ConstraintSection = field(default_factory=lambda: ConstraintSection(False, ""))
    constraint_history: ConstraintHistorySection = field(default_factory=lambda: ConstraintHistorySection(False))
    missing: list[Missing] = field(default_factory=list)
    evidence_shown: int = 15  # rows of the evidence table in the body (the full table is an appendix)
    figures: dict = field(default_factory=dict)  # name -> forecast.reports.figures.Figure
    timings: dict = field(default_factory=dict)  # seconds per stage of build_report
    seconds: float = 0.0

    def figure(self, name: str):
        return self.figures[name]

    def to_dict(self, with_images: bool = True) -> dict:
        d = {
            "schema_version": REPORT_SCHEMA,
            "kind": "forecast-report",
            "study": self.study,
            "run_dir": f"{Path(self.run_dir).parent.name}/{self.run_id}",  # relative to the runs directory
            "run_id": self.run_id,
            "generated": self.generated,
            "forecast_version": self.forecast_version,
            "converged": self.converged,
        }
        if self.warning:
            d["warning"] = self.warning
        d.update(
            {
                "colours": self.colours,
                "headline": asdict(self.headline),
                "history": asdict(self.history),
                "learned": [asdict(x) for x in self.learned],
                "fit": asdict(self.fit),
                "evidence": asdict(self.evidence),
                "sensitivity": asdict(self.sensitivity),
                "prior_predictive": asdict(self.prior_predictive),
                "priors": asdict(self.priors),
                "diagnostics": asdict(self.diagnostics),
                "summary": None if self.summary is None else asdict(self.summary),
                "cooperation": None if self.cooperation is None else asdict(self.cooperation),
                "robustness": asdict(self.robustness),
                "forecasts": asdict(self.forecasts),
                "backtest": asdict(self.backtest),
                "calibration": asdict(self.calibration),
                "constraints": asdict(self.constraints),
                "constraint_history": asdict(self.constraint_history),
                "missing": [asdict(m) for m in self.missing],
                "figures": {k: f.to_dict(with_images) for k, f in self.figures.items()},
            }
        )
        return d


@dataclass(frozen=True)
class ReportResult:
    """What `forecast report` did: the report, the files written, whether history was computed first."""

    report: Report
    outputs: dict[str, str]
    history_computed: bool
    history_path: str | None
    seconds: float

    @property
    def converged(self) -> bool:
        return self.report.converged

    def to_dict(self) -> dict:
        r = self.report
        h = r.headline
        d = {
            "run_dir": r.run_dir,
            "study": r.study,
            "question": h.question,
            "latest_observation": h.latest_observation,
            "converged": r.converged,
        }
        if r.warning:
            d["warning"] = r.warning
        d.update(
            {
                "outputs": self.outputs,
                "conclusion": h.conclusion,
                "leader": h.leader,
                "runner_up": h.runner_up,
                "hypotheses": [
                    {
                        "id": x.id,
                        "label": x.label,
                        "prior_probability": x.prior_probability,
                        "posterior_probability": x.posterior_probability,
                        "posterior_probability_se": x.posterior_probability_se,
                        "bayes_factor": x.bayes_factor,
                        "bayes_factor_against": x.bayes_factor_against,
                        "jeffreys": x.jeffreys,
                        "elpd_diff": x.elpd_diff,
                        "elpd_diff_se": x.elpd_diff_se,
                        "converged": x.converged,
                    }
                    for x in h.rows
                ],
                "history": None
                if not r.history.available
                else {
                    "path": self.history_path,
                    "computed": self.history_computed,
                    "every": r.history.every,
                    "n_points": len(r.history.rows),
                    "converged": r.history.converged,
                },
                "constraints": None
                if not r.constraints.available
                else {
                    "leader": r.constraints.leader,
                    "confidence": r.constraints.confidence,
                    "robust": r.constraints.robust,
                    "agreement": r.constraints.agreement,
                    "hypotheses": [
                        {
                            "id": x.id,
                            "label": x.label,
                            "prior_probability": x.prior_probability,
                            "posterior_probability": x.posterior_probability,
                            "posterior_probability_upper": x.posterior_probability_upper,
                            "bayes_factor": x.bayes_factor,
                            "bayes_factor_bound": x.bayes_factor_bound,
                        }
                        for x in r.constraints.rows
                    ],
                },
                "sensitivity": r.sensitivity.available,
                "prior_predictive": r.prior_predictive.available,
                "figures": sorted(r.figures),
                "notes": r.diagnostics.notes,
                "seconds": self.seconds,
                "report_schema_version": REPORT_SCHEMA,
            }
        )
        return d
