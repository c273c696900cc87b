"""From a stored run to a typed ``Report``: the sections in reading order, their figures queued.

Sections: 1 headline (support table, conclusion, convergence warning), 1b the constraint hypotheses
(``constraints.json``, forecast.reports.report.constraints; a run with constraint hypotheses alone
is reported from them), 2 support over time
(``history.json``), 3 what each hypothesis learned (prior beside posterior), 4 does the model fit
(posterior predictive checks, LOO calibration), 5 evidence (most diagnostic observations first),
6 sensitivity to the priors (``sensitivity.json``) and 7 what the priors imply
(``prior_predictive.json``) when the run holds them, 8 diagnostics (sampler, convergence, Pareto
k, manifest). Nothing here fits a model: the report renders what the run holds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from importlib import metadata

import numpy as np
import pandas as pd

from forecast.data.cells import CellData
from forecast.model.build import cell_logit_draws, draws_as_arrays
from forecast.model.predictive import prior_draws
from forecast.model.record import concentration_draws, model_record
from forecast.reports import figures as F
from forecast.reports.figures import FigureJobs, FigureRenderer, palette
from forecast.reports.report import analyses, sections
from forecast.reports.report import constraints as C
from forecast.reports.report import statistics as S
from forecast.reports.report.priors import stated_priors
from forecast.reports.report.read import RunData, load_run
from forecast.reports.report.records import (
    DEFAULT_GATE,
    UNRELIABLE,
    DiagnosticsRow,
    DiagnosticsSection,
    EvidenceRow,
    EvidenceSection,
    FitSection,
    Headline,
    IntervalRow,
    Learned,
    PpcRow,
    Report,
    RobustnessSection,
    SupportRow,
)
from forecast.reports.text.update import overdispersion_sentence
from forecast.runs.stored import StoredRun
from forecast.settings import DEFAULT_SEED, derive_rng
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import Study, quarter_label
from forecast.stats.loo import PARETO_K_GOOD, jeffreys_label

REPLICATE_DRAWS = 1000  # posterior predictive replications per hypothesis
CALIBRATION_DRAWS = 400  # LOO predictive replications for the calibration plot
CALIBRATION_MAX_EVENTS = 5000  # larger studies: a seeded random subset of events
EVIDENCE_BARS = 15
EVIDENCE_MAX_ROWS = 1000  # larger studies: the most diagnostic observations only
REPORT_SEED = DEFAULT_SEED  # the report's own draws (prior draws, PPC) use the default seed

PARAMETER_LABELS = {"tilt": "tilt", "spread": "spread", "trend": "trend", "volatility": "volatility"}
PARAMETER_UNITS = {
    "tilt": "log-odds of cooperation at the reference quarter",
    "spread": "SD of the domain effects (log-odds)",
    "trend": "change in log-odds per year",
    "volatility": "SD of the quarter-to-quarter steps (log-odds)",
}

Progress = Callable[[str], None]


def build_report(
    run: StoredRun,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
    renderer: FigureRenderer | None = None,
) -> Report:
    """Assemble the report of a stored run (see the module docstring); no fitting.

    ``workers``: processes that render the figures (default: forecast.reports.figures.default_workers());
    ``renderer``: an open renderer to use instead (anything with ``render(FigureJobs)``).
    """
    if renderer is not None:
        return _build(run, renderer, progress)
    with FigureRenderer(workers) as own:  # its workers warm up while the report is assembled
        return _build(run, own, progress)


def _build(stored: StoredRun, renderer, progress: Progress | None) -> Report:
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def stage(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 3)
        clock[0] = now

    say(f"report: reading {stored.path}")
    run = load_run(stored)
    study = run.study
    ids = [h.id for h in study.hypotheses]
    colours = palette(ids)
    labels = {h.id: h.label for h in study.hypotheses}
    constraint_only = not ids  # a study with constraint hypotheses alone: their comparison is the report
    latest = run.summary.get("latest_observation", run.obs.latest_date)
    constraints = C.with_evidence(C.constraint_section(run.constraints, study, latest), run.evidence)
    head = _constraint_headline(run, constraints) if constraint_only else _headline(run, colours)
    rows = {r.id: r for r in head.rows}
    arrays = {hid: draws_as_arrays(run.posteriors[hid], study) for hid in ids}
    etas = {hid: cell_logit_draws(arrays[hid], study, run.cells) for hid in ids}
    # An overdispersed study's concentration draws per hypothesis (None each for a plain study).
    phis = {hid: concentration_draws(run.posteriors[hid], study) for hid in ids}
    stage("read_s")
    jobs = FigureJobs()
    say("report: assembling the sections")
    history = analyses.history_section(run.history, run.study, labels, colours, jobs)
    constraint_history = analyses.constraint_history_section(run.history, jobs)
    learned = _learned(run, rows, colours, jobs, arrays)
    if constraint_only:
        fit = FitSection([], "", [], "", [], 0)
        pointwise = None
        evidence = EvidenceSection(False, NO_PRIOR_HYPOTHESES, None, None, None, [], None, False)
    else:
        fit = _fit_section(run, etas, labels, colours, rows, jobs, phis)
        pointwise = _pointwise(run, etas, phis)
        evidence = _evidence(run, head, pointwise, labels, colours, rows, jobs)
    sensitivity = analyses.sensitivity_section(run.sensitivity, labels, colours, jobs)
    prior_predictive = analyses.prior_predictive_section(run.prior_predictive, study, labels, colours, jobs)
    priors = stated_priors(study, colours, PARAMETER_UNITS)
    diagnostics = _diagnostics(run, pointwise, colours, constraints, phis)
    robustness = sections.robustness(run.summary.get("robustness"), labels, colours, jobs)
    if constraint_only:
        robustness = RobustnessSection(False, NO_PRIOR_ROBUSTNESS)
        priors = dataclasses.replace(priors, note=NO_PRIOR_PRIORS)
        cooperation = None
        if run.encompassing is not None:
            enc = {ENCOMPASSING_ID: draws_as_arrays(run.encompassing, study)}
            cooperation = sections.cooperation(run, enc, {ENCOMPASSING_ID: 1.0}, jobs, encompassing=True)
    else:
        probabilities = {r.id: r.posterior_probability for r in head.rows}
        cooperation = sections.cooperation(run, arrays, probabilities, jobs)
    summary = sections.summary(run, head, labels, robustness, sensitivity)
    if constraints.available:
        pbox = None if constraint_only else C.priors_box(head, summary, robustness, run.summary.get("judgement"))
        head, summary = C.with_constraints(head, summary, constraints, pbox)
    forecasts = sections.forecasts(run.forecasts, study)
    backtest = sections.backtest(run.backtest, labels, jobs)
    constraint_labels = {h.id: h.label for h in study.constraints.hypotheses} if study.constraints else {}
    calibration = sections.calibration(run.calibration, labels, constraint_labels)
    missing = sections.missing(
        run,
        robustness.available,
        constraint_only=constraint_only,
        constraints_missing=study.constraints is not None and run.constraints is None,
    )
    stage("assemble_s")
    say(f"report: rendering {len(jobs)} figures (ArviZ forest and calibration plots, matplotlib)")
    figures = renderer.render(jobs)
    stage("figures_s")
    report = Report(
        study=study.name,
        run_dir=str(run.run_dir),
        run_id=run.run_dir.name,
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        forecast_version=_version(),
        converged=head.converged,
        warning=head.warning,
        headline=head,
        history=history,
        learned=learned,
        fit=fit,
        evidence=evidence,
        diagnostics=diagnostics,
        colours=colours,
        labels=labels,
        sensitivity=sensitivity,
        prior_predictive=prior_predictive,
        priors=priors,
        summary=summary,
        cooperation=cooperation,
        robustness=robustness,
        forecasts=forecasts,
        backtest=backtest,
        calibration=calibration,
        constraints=constraints,
        constraint_history=constraint_history,
        missing=missing,
        evidence_shown=EVIDENCE_BARS,
        figures=figures,
        timings=timings,
    )
    report.seconds = time.perf_counter() - t0
    return report


def _version() -> str:
    try:
        return metadata.version("forecast")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- 1. headline -------------------------------------------------------------------------------


def _support_rows(run: RunData, colours: dict[str, str]) -> list[SupportRow]:
    hyps = run.summary["hypotheses"]
    # Unknown figures are null in strict JSON: NaN here, "—" in the report.
    ranked = sorted(hyps, key=lambda h: np.nan_to_num(S.num(h["posterior_probability"]), nan=-1.0), reverse=True)
    leader = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    rows = []
    for rank, h in enumerate(ranked, start=1):
        ref = runner if h is leader else leader
        if ref is None:
            bf = log_bf = log_bf_se = None
            text, strength = "—", "only one hypothesis"
        else:
            log_bf = S.num(h["log_marginal_likelihood"]) - S.num(ref["log_marginal_likelihood"])
            log_bf_se = float(
                np.hypot(S.num(h["log_marginal_likelihood_se"]), S.num(ref["log_marginal_likelihood_se"]))
            )
            with np.errstate(over="ignore"):
                bf = float(np.exp(log_bf))
            if np.isnan(bf):
                text, strength = f"unknown vs {ref['label']}", "unknown (a marginal likelihood is missing)"
            else:
                shown = f"{bf:.3g}" if bf >= 1 else f"1/{1 / bf:.3g}"
                text = f"{shown} vs {ref['label']}"
                label = jeffreys_label(max(bf, 1 / bf))
                strength = label if label == "no support" else f"{label} evidence {'for' if bf >= 1 else 'against'}"
        d = h["diagnostics"]
        rows.append(
            SupportRow(
                id=h["id"],
                label=h["label"],
                colour=colours[h["id"]],
                rank=rank,
                prior_probability=S.num(h["prior_probability"]),
                posterior_probability=S.num(h["posterior_probability"]),
                posterior_probability_se=S.num(h["posterior_probability_se"]),
                log_marginal_likelihood=S.num(h["log_marginal_likelihood"]),
                log_marginal_likelihood_se=S.num(h["log_marginal_likelihood_se"]),
                bayes_factor=bf,
                log_bayes_factor=log_bf,
                log_bayes_factor_se=log_bf_se,
                bayes_factor_against=ref["id"] if ref else None,
                bayes_factor_text=text,
                jeffreys=strength,
                elpd_loo=S.num(h["elpd_loo"]),
                elpd_loo_se=S.num(h["elpd_loo_se"]),
                elpd_diff=S.num(h["elpd_diff"]),
                elpd_diff_se=S.num(h["elpd_diff_se"]),
                loo_weight=S.num(h.get("loo_weight")),
                converged=bool(d.get("converged", False)),
                problems=list(d.get("problems", [])),
            )
        )
    return rows


def _headline(run: RunData, colours: dict[str, str]) -> Headline:
    s = run.summary
    rows = _support_rows(run, colours)
    failed = [r.label for r in rows if not r.converged]
    converged = bool(s.get("converged", not failed)) and not failed
    warning = None
    if not converged:
        warning = (
            f"{UNRELIABLE}: "
            + "; ".join(
                f"{r.label} ({', '.join(p for p in r.problems if not p.startswith('warning')) or 'see diagnostics'})"
                for r in rows
                if not r.converged
            )
            + ". Every figure in this report is unreliable until the run is refitted with more --tune/--draws."
        )
    return Headline(
        question=s.get("question", run.study.question),
        study=s.get("study", run.study.name),
        latest_observation=s.get("latest_observation", run.obs.latest_date),
        n_observations=int(s.get("n_observations", run.obs.n)),
        rows=rows,
        leader=rows[0].id,
        runner_up=rows[1].id if len(rows) > 1 else None,
        conclusion=s.get("conclusion", ""),
        loo_note=s.get("loo_note", ""),
        converged=converged,
        warning=warning,
        failed=failed,
        prior_conclusion=s.get("conclusion", ""),
    )


NO_PRIOR_ROBUSTNESS = (
    "The declared class of reasonable priors applies to hypotheses stated as sets of priors, which this study does "
    "not state; the constraint comparison's robustness to its encompassing prior is in section 1b."
)
NO_PRIOR_PRIORS = (
    "This study states no hypotheses as sets of priors; the encompassing prior its constraint hypotheses share is "
    "in section 1b, in the analyst's terms."
)
NO_PRIOR_HYPOTHESES = (
    "This study states its hypotheses only as constraints on one model (section 1b): there are no prior-specified "
    "hypotheses to compare observation by observation."
)


def _constraint_headline(run: RunData, c) -> Headline:
    """The headline of a run with constraint hypotheses alone (no prior-specified support table)."""
    s = run.summary
    converged = bool(s.get("converged", True)) and (c.converged if c.available else True)
    return Headline(
        question=s.get("question", run.study.question),
        study=s.get("study", run.study.name),
        latest_observation=s.get("latest_observation", run.obs.latest_date),
        n_observations=int(s.get("n_observations", run.obs.n)),
        rows=[],
        leader=c.leader or "",
        runner_up=c.runner_up,
        conclusion=c.headline if c.available else (s.get("conclusion") or c.note),
        loo_note="",
        converged=converged,
        warning=c.warning if c.available else None,
        failed=[] if converged else ["Encompassing model"],
        prior_conclusion="",
        constraint_only=True,
    )


# --- 3. what each hypothesis learned -------------------------------------------------------------


def _hyper_dataset(study: Study, arrays: dict[str, np.ndarray], shape):
    import xarray as xr

    groups = [g.label for g in study.groups]
    data = {
        PARAMETER_LABELS[p]: xr.DataArray(
            S.as_samples(arrays[p], shape),
            dims=("chain", "draw", "counterpart group"),
            coords={"counterpart group": groups},
        )
        for p in study.parameters
    }
    return xr.Dataset(data)


def _propensity_dataset(study: Study, prop: np.ndarray, shape):
    import xarray as xr

    domains = [d.label for d in study.domains]
    return xr.Dataset(
        {
            g.label: xr.DataArray(
                S.as_samples(prop[:, i, :], shape), dims=("chain", "draw", "domain"), coords={"domain": domains}
            )
            for i, g in enumerate(study.groups)
        }
    )


def _learned(run: RunData, rows: dict[str, SupportRow], colours, figures: FigureJobs, arrays: dict) -> list[Learned]:
    study = run.study
    out = []
    ref = quarter_label(study.time.reference)
    for i, h in enumerate(study.hypotheses):
        # As many prior draws as posterior draws, in the same (chain, draw) layout, so that ArviZ
        # can put the two side by side.
        shape = run.posteriors[h.id]["tilt__" + study.groups[0].id].shape[:2]
        rng = derive_rng(REPORT_SEED, i, 7)
        pri = prior_draws(study, h, int(np.prod(shape)), rng)  # the one prior sampler (Prior.sample)
        post = arrays[h.id]
        hyper = [
            IntervalRow(
                f"{PARAMETER_LABELS[p]} ({PARAMETER_UNITS[p]})",
                g.label,
                *S.interval(pri[p][:, j]),
                *S.interval(post[p][:, j]),
            )
            for p in study.parameters
            for j, g in enumerate(study.groups)
        ]
        prop_prior, prop_post = S.propensity(pri), S.propensity(post)
        props = [
            IntervalRow(
                "P(cooperative)",
                f"{g.label} / {d.label}",
                *S.interval(prop_prior[:, a, b]),
                *S.interval(prop_post[:, a, b]),
            )
            for a, g in enumerate(study.groups)
            for b, d in enumerate(study.domains)
        ]
        names = [f"learned-{h.id}-hyperparameters", f"learned-{h.id}-propensities"]
        figures.add(
            names[0],
            f"{h.label}: hyperparameters",
            f"Hyperparameters under '{h.label}': prior (grey) beside posterior, medians with 50% and 94% intervals. "
            + "; ".join(f"{PARAMETER_LABELS[p]}: {PARAMETER_UNITS[p]}" for p in study.parameters)
            + ".",
            f"Forest plot of prior and posterior hyperparameters for {h.label}",
            F.forest,
            _hyper_dataset(study, pri, shape),
            _hyper_dataset(study, post, shape),
            colours[h.id],
            f"{h.label}: hyperparameters",
            "value (log-odds scale)",
        )
        figures.add(
            names[1],
            f"{h.label}: propensity to cooperate",
            f"Probability that an interaction with each counterpart group is cooperative, per issue domain, at the "
            f"reference quarter {ref}, under '{h.label}': prior (grey) beside posterior.",
            f"Forest plot of prior and posterior cooperation probabilities by group and domain for {h.label}",
            F.forest,
            _propensity_dataset(study, prop_prior, shape),
            _propensity_dataset(study, prop_post, shape),
            colours[h.id],
            f"{h.label}: probability of cooperation at {ref}",
            f"probability that an interaction is cooperative ({ref})",
            variable_label="counterpart group",
            xlim=(0, 1),
        )
        r = rows[h.id]
        out.append(Learned(h.id, h.label, colours[h.id], h.claim, r.converged, r.problems, hyper, props, names))
    return out


# --- 4. does the model fit -----------------------------------------------------------------------


def _fit_section(
    run: RunData, etas: dict[str, np.ndarray], labels, colours, rows, figures: FigureJobs, phis=None
) -> FitSection:
    study, cells = run.study, run.cells
    phis = phis or {}
    n_gd, k_gd, coop = S.group_domain_counts(study, run.obs.table)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(n_gd > 0, k_gd / np.maximum(n_gd, 1), np.nan)
    rng = derive_rng(REPORT_SEED, 11)
    replicated, pvals = {}, {}
    for hid, eta in etas.items():
        replicated[hid], pvals[hid] = S.replicate_shares(eta, cells, n_gd, k_gd, rng, REPLICATE_DRAWS, phis.get(hid))
    ppc_rows = []
    surprising = set()
    for a, g in enumerate(study.groups):
        for b, d in enumerate(study.domains):
            if n_gd[a, b] == 0:
                continue
            rep = {}
            for hid in etas:
                med, lo, hi = S.interval(replicated[hid][:, a, b])
                rep[hid] = {"median": med, "low": lo, "high": hi, "p_value": float(pvals[hid][a, b])}
                if pvals[hid][a, b] < 0.05:
                    surprising.add((a, b))
            ppc_rows.append(PpcRow(g.label, d.label, int(n_gd[a, b]), float(observed[a, b]), rep))
    name = "ppc-shares"
    figures.add(
        name,
        "Observed and replicated cooperative share",
        "Posterior predictive check: for each counterpart group and issue domain, the observed share of cooperative "
        "events (black diamond) and the share in data replicated under each hypothesis (median, 50% and 94% intervals; "
        f"{REPLICATE_DRAWS} replications of every event from its cell's fitted probability"
        + (
            "; overdispersed: each cell's cooperative share drawn once per replication from its Beta around that "
            "probability, then its events from that share)."
            if study.overdispersed
            else ")."
        ),
        "Interval chart of replicated versus observed cooperative share per group and domain",
        F.ppc_shares,
        [g.label for g in study.groups],
        [d.label for d in study.domains],
        observed,
        n_gd,
        replicated,
        labels,
        colours,
    )

    # LOO calibration: the LOO predictive probability of each event (PSIS weights per pattern),
    # then ArviZ's PAV-adjusted calibration plot; the binary-outcome counterpart of a LOO-PIT.
    # Computed with the figure (in a rendering worker), it costs the assembly nothing.
    y = coop.astype(np.int8)
    events = np.arange(len(y))
    note = ""
    if len(y) > CALIBRATION_MAX_EVENTS:
        events = np.sort(rng.choice(len(y), CALIBRATION_MAX_EVENTS, replace=False))
        note = f" Computed on a random subset of {CALIBRATION_MAX_EVENTS} of the {len(y)} events."
    cal_names = []
    for k, (hid, eta) in enumerate(etas.items()):
        cname = figures.add(
            f"loo-calibration-{hid}",
            f"{labels[hid]}: LOO calibration",
            f"PAV-adjusted calibration of the leave-one-out predictive probabilities under '{labels[hid]}' "
            "(ArviZ plot_ppc_pava): the diagonal is perfect calibration; the band is a 94% consistency interval."
            + note,
            f"Calibration curve of LOO predicted probability against observed rate for {labels[hid]}",
            calibration_figure,
            eta,
            cells,
            events,
            y[events],
            colours[hid],
            labels[hid],
            REPORT_SEED + k,
            phis.get(hid),
        )
        cal_names.append(cname)
    flagged = [labels[h] for h in etas if not rows[h].converged]
    return FitSection(
        ppc_rows,
        name,
        cal_names,
        "For 0/1 outcomes a LOO-PIT is degenerate (every PIT value is one of two steps), so calibration is checked "
        "with the PAV-adjusted reliability diagram of the LOO predictive probabilities (Säilynoja et al.; "
        "Dimitriadis et al. 2021)." + note,
        flagged,
        len(surprising),
    )


def calibration_figure(
    eta, cells: CellData, events, observed, colour: str, title: str, seed: int, concentration=None
) -> bytes:
    """LOO predictive replications (Bernoulli draws at each event's LOO probability), then the ArviZ plot.

    ``concentration``: an overdispersed fit's draws (each event predicted given the rest of its cell)."""
    p_event = S.loo_predictive_probability(eta, cells, concentration)[cells.event_pattern][events]
    rng = np.random.default_rng(seed)
    y_rep = (rng.random((CALIBRATION_DRAWS, len(events))) < p_event).astype(np.int8)
    return F.loo_calibration(y_rep, observed, colour, title)


def overdispersion_note(study: Study, phis: dict) -> str | None:
    """The diagnostics' one sentence on an overdispersed study's likelihood (None for a plain study):
    the bound on a cell's evidence, the concentration's posterior per hypothesis and its prior, and
    that the checks above use that likelihood."""
    model = model_record(study, phis, {h.id: h.label for h in study.hypotheses})
    text = overdispersion_sentence(model)
    if text is None:
        return None
    return (
        text[:-1] + '; the study sets [model] overdispersion = "cell", so the posterior predictive checks, '
        "LOO and the calibration plots draw or predict each cell's events through its Beta share."
    )


# --- 5. evidence ---------------------------------------------------------------------------------


def _pointwise(run: RunData, etas: dict[str, np.ndarray], phis=None) -> pd.DataFrame:
    """Per observation: elpd_loo__<h> and pareto_k__<h>, from the run or recomputed from the draws
    (overdispersed: with each hypothesis's concentration draws, as update computes them)."""
    if run.pointwise is not None:
        return run.pointwise
    chains = {hid: run.posteriors[hid].sizes["chain"] for hid in etas}
    return S.pointwise_loo(run.obs.table["id"].to_numpy(), etas, chains, run.cells, phis)


def _evidence(run: RunData, head: Headline, pointwise: pd.DataFrame, labels, colours, rows, figures) -> EvidenceSection:
    if head.runner_up is None:
        return EvidenceSection(
            False,
            "Only one hypothesis: there is no support to move between two.",
            head.leader,
            None,
            None,
            [],
            None,
            False,
        )
    a, b = head.leader, head.runner_up
    diff = pointwise[f"elpd_loo__{a}"].to_numpy() - pointwise[f"elpd_loo__{b}"].to_numpy()
    k = np.maximum(pointwise[f"pareto_k__{a}"].to_numpy(), pointwise[f"pareto_k__{b}"].to_numpy())
    t = run.obs.table
    order = np.argsort(-np.abs(diff), kind="stable")[:EVIDENCE_MAX_ROWS]
    ev = [
        EvidenceRow(
            id=str(t["id"].iat[i]),
            event_date=t["event_date"].iat[i].date().isoformat(),
            report_date=t["report_date"].iat[i].date().isoformat(),
            counterpart=str(t["counterpart"].iat[i]),
            domain=str(t["domain"].iat[i]),
            outcome="cooperative" if t["cooperative"].iat[i] else "conflictual",
            reliability=str(t["reliability"].iat[i]),
            weight=float(t["weight"].iat[i]),
            description=str(t["description"].iat[i]),
            source=str(t["source"].iat[i]),
            elpd_difference=float(diff[i]),
            favours=labels[a] if diff[i] > 0 else labels[b],
            pareto_k=float(k[i]),
        )
        for i in order
    ]
    top = ev[:EVIDENCE_BARS]
    name = "evidence-most-diagnostic"
    figures.add(
        name,
        "The most diagnostic observations",
        f"The {len(top)} observations whose pointwise LOO elpd differs most between '{labels[a]}' and '{labels[b]}', "
        "coloured by the hypothesis each favours.",
        "Bar chart of the most diagnostic observations",
        F.evidence_bars,
        [f"{r.id} {r.event_date}" for r in top],
        np.array([r.elpd_difference for r in top]),
        a,
        b,
        labels,
        colours,
    )
    note = (
        f"Each observation's pointwise PSIS-LOO elpd under '{labels[a]}' minus under '{labels[b]}' (nats; > 0 favours "
        f"'{labels[a]}'). Summed over all observations it is the LOO elpd difference between the two, a measure of "
        "predictive accuracy that tracks, but is not, the Bayes factor."
    )
    if len(diff) > EVIDENCE_MAX_ROWS:
        note += f" The appendix lists the {EVIDENCE_MAX_ROWS} most diagnostic of the {len(diff)} observations."
    note += " " + _critical(run.evidence)
    unreliable = not (rows[a].converged and rows[b].converged)
    return EvidenceSection(True, note, a, b, float(diff.sum()), ev, name, unreliable)


def _critical(data: dict | None) -> str:
    """What `forecast evidence` found about critical items, in one sentence (or what adds it)."""
    if data is None:
        return (
            "`forecast evidence` adds which observations are critical (removing or reversing one changes the leader)."
        )
    try:
        critical = [str(c["id"]) if isinstance(c, dict) else str(c) for c in data.get("critical") or []]
        n = int(data.get("n_counted", data.get("n_observations", 0)))
    except (KeyError, TypeError, ValueError):
        return "evidence.json could not be read; run `forecast evidence` again."
    if not critical:
        return f"No single observation is critical: removing or reversing any one of the {n} leaves the leader in place (evidence.json)."
    shown = ", ".join(critical[:10]) + (f" and {len(critical) - 10} more" if len(critical) > 10 else "")
    return f"{len(critical)} of {n} observations are critical (removing or reversing one changes the leader): {shown} (evidence.json)."


# --- 6. diagnostics ------------------------------------------------------------------------------


def gate_thresholds(gate: dict, notes: list[str]) -> dict:
    """The gate the run was judged by (its manifest), else this version's defaults (with a note)."""
    recorded = {k: v for k, v in gate.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    missing = [k for k in DEFAULT_GATE if k not in recorded]
    if missing:
        notes.append(
            "the run's manifest does not record "
            + ("its gate thresholds" if len(missing) == len(DEFAULT_GATE) else f"the gate's {', '.join(missing)}")
            + "; the thresholds shown are this version's defaults"
        )
    return {**DEFAULT_GATE, **recorded}


def _encompassing_row(c: dict) -> DiagnosticsRow:
    """The encompassing model's fit (constraint hypotheses) as a diagnostics row."""
    d = c.get("diagnostics") or {}
    settings = c.get("settings") or {}
    seconds = (c.get("timings") or {}).get("fit_seconds")
    return DiagnosticsRow(
        id=ENCOMPASSING_ID,
        label="Encompassing model (constraint hypotheses)",
        colour=C.ENCOMPASSING_COLOUR,
        converged=bool(d.get("converged", c.get("converged", False))),
        rhat_max=S.num(d.get("rhat_max")),
        ess_bulk_min=S.num(d.get("ess_bulk_min")),
        ess_tail_min=S.num(d.get("ess_tail_min")),
        divergences=int(d.get("divergences") or 0),
        treedepth_saturated=S.num(d.get("treedepth_saturated")),
        max_tree_depth=None,
        ebfmi_min=S.num(d.get("ebfmi_min")),
        pareto_k_max=float("nan"),
        n_bad_pareto_k=0,
        attempts=int(c.get("attempts", 1)),
        draws=int(settings.get("draws", 0)),
        tune=int(settings.get("tune", 0)),
        chains=int(settings.get("chains", 0)),
        target_accept=S.num(settings.get("target_accept")),
        seconds=S.num(seconds),
        problems=[str(p) for p in d.get("problems", [])],
    )


def _diagnostics(
    run: RunData, pointwise: pd.DataFrame | None, colours, constraints=None, phis=None
) -> DiagnosticsSection:
    notes = list(run.notes)
    sentence = overdispersion_note(run.study, phis or {})
    if sentence:
        notes.insert(0, sentence)
    thresholds = gate_thresholds(run.stored.gate, notes)
    out = []
    n_samples = None
    for h in run.summary["hypotheses"]:
        d = h["diagnostics"]
        sampler = h.get("sampler", run.summary.get("settings", {}))
        stats = run.sample_stats.get(h["id"])
        depth = int(stats["depth"].max()) if stats is not None and "depth" in stats else None
        n_samples = int(run.posteriors[h["id"]].sizes["chain"] * run.posteriors[h["id"]].sizes["draw"])
        threshold = min(1 - 1 / np.log10(n_samples), PARETO_K_GOOD)
        ks = pointwise[f"pareto_k__{h['id']}"].to_numpy()
        out.append(
            DiagnosticsRow(
                id=h["id"],
                label=h["label"],
                colour=colours[h["id"]],
                converged=bool(d.get("converged", False)),
                rhat_max=S.num(d.get("rhat_max")),
                ess_bulk_min=S.num(d.get("ess_bulk_min")),
                ess_tail_min=S.num(d.get("ess_tail_min")),
                divergences=int(d.get("divergences") or 0),
                treedepth_saturated=S.num(d.get("treedepth_saturated")),
                max_tree_depth=depth,
                ebfmi_min=S.num(d.get("ebfmi_min")),
                pareto_k_max=float(np.nanmax(ks)),
                n_bad_pareto_k=int((ks > threshold).sum()),
                attempts=int(h.get("attempts", 1)),
                draws=int(sampler.get("draws", 0)),
                tune=int(sampler.get("tune", 0)),
                chains=int(sampler.get("chains", 0)),
                target_accept=S.num(sampler.get("target_accept")),
                seconds=S.num(h.get("seconds")),
                problems=list(d.get("problems", [])),
            )
        )
    if constraints is not None and constraints.available and isinstance(run.constraints, dict):
        try:
            out.append(_encompassing_row(run.constraints))
        except (TypeError, ValueError, AttributeError) as e:
            notes.append(f"the encompassing model's diagnostics in constraints.json could not be read ({e})")
    matches = None
    if run.manifest is not None:
        matches = run.manifest.get("observations", {}).get("sha256") == run.obs.sha256
    threshold = min(1 - 1 / np.log10(n_samples), PARETO_K_GOOD) if n_samples else PARETO_K_GOOD
    return DiagnosticsSection(
        rows=out,
        settings=run.summary.get("settings", {}),
        thresholds=thresholds,
        pareto_k_threshold=float(threshold),
        manifest=run.manifest,
        data_hash_matches=matches,
        notes=notes,
    )
