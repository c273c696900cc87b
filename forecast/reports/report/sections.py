"""The brief's own sections: the one-page summary, what is missing, cooperation now, robustness,
forecasts, backtest skill and calibration.

Each reads what the run holds (``summary.json``'s judgement and robustness from `forecast update`,
``history.json``'s attribution, ``forecasts.json``, ``backtest.json``, ``evidence.json``,
``calibration.json``) and never fits; a file of another shape is a note in its section, never an
error. Cooperation now is the model's own formula applied to the stored posterior draws.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from forecast.model.build import latent_logit, years_from_reference
from forecast.reports import figures as F
from forecast.reports.figures import FigureJobs
from forecast.reports.plots import backtest as backtest_plots
from forecast.reports.plots import sensitivity as sensitivity_plots
from forecast.reports.report.records import (
    BacktestSection,
    CalibrationSection,
    CooperationRow,
    CooperationSection,
    ForecastRow,
    ForecastsSection,
    Missing,
    QuestionRow,
    RobustnessRange,
    RobustnessSection,
    SkillRow,
    Summary,
    WatchRow,
)
from forecast.reports.report.statistics import num, sigmoid
from forecast.settings import DEFAULT_SEED, derive_rng
from forecast.spec.questions import quarter_end
from forecast.spec.study import Study, quarter_index, quarter_label

SHAPE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)
WATCH_ROWS = 3  # milestones in the summary
MOVED_EVENTS = 3  # events named in the summary's "what moved it"
TORNADO_ROWS = 20
MIXTURE_DRAWS = 4000  # model-averaged draws of the cooperation probabilities
FLIP_LINE = 0.5

# What each analysis adds, and the command that adds it (the report lists the missing ones).
COMMANDS = {
    "robustness": (
        "robustness over the declared class of reasonable priors",
        "forecast update (robustness is on by default)",
    ),
    "history": ("support over time and what moved it", "forecast history --every 4"),
    "evidence": ("critical items and evidence quality", "forecast evidence"),
    "forecasts": ("forecasts, question probabilities and milestones", "forecast predict"),
    "backtest": ("backtest skill (rolling-origin forecasts scored)", "forecast backtest"),
    "calibration": ("simulation-based calibration of the support", "forecast calibrate"),
    "sensitivity": ("the full prior-sensitivity grid and power-scaling", "forecast sensitivity"),
    "priors": ("what the priors imply before any data", "forecast priors"),
    "constraints": ("the constraint hypotheses compared on one encompassing model", "forecast update"),
}
# What a run with constraint hypotheses alone can miss: the analyses of prior-specified hypotheses
# (robustness grid, evidence, sensitivity, their prior predictive check) do not apply.
CONSTRAINT_ONLY = ("history", "evidence", "forecasts", "backtest", "calibration")


def _label(labels: dict[str, str], key: object) -> str:
    return labels.get(str(key), str(key))


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, spec)


# --- what is missing ------------------------------------------------------------------------------


def missing(
    run, robustness_available: bool, *, constraint_only: bool = False, constraints_missing: bool = False
) -> list[Missing]:
    """The analyses the run does not hold, each with the command that adds it to the run."""
    present = {
        "constraints": not constraints_missing,
        "robustness": robustness_available,
        "history": run.history is not None,
        "evidence": run.evidence is not None,
        "forecasts": run.forecasts is not None,
        "backtest": run.backtest is not None,
        "calibration": run.calibration is not None,
        "sensitivity": run.sensitivity is not None,
        "priors": run.prior_predictive is not None,
    }
    wanted = CONSTRAINT_ONLY if constraint_only else tuple(COMMANDS)
    return [Missing(k, what, cmd) for k, (what, cmd) in COMMANDS.items() if k in wanted and not present[k]]


# --- the one-page summary ---------------------------------------------------------------------------


def summary(run, head, labels: dict[str, str], robustness: RobustnessSection, sensitivity) -> Summary:
    s = run.summary
    j = s.get("judgement") or None
    conclusion = head.conclusion
    if isinstance(j, dict) and j.get("leader") in labels:
        p = num(j.get("posterior_probability"))
        answer = (
            f"Most probable answer: '{labels[j['leader']]}', {j.get('likelihood', '')} ({_fmt(p)}), "
            f"with {j.get('confidence', 'unstated')} confidence."
        )
        likelihood, confidence = j.get("likelihood"), j.get("confidence")
        reasons = [str(r) for r in j.get("confidence_reasons") or []]
    else:
        answer, likelihood, confidence, reasons = conclusion, None, None, []
    return Summary(
        question=head.question,
        answer=answer,
        likelihood=None if likelihood is None else str(likelihood),
        confidence=None if confidence is None else str(confidence),
        confidence_reasons=reasons,
        conclusion=conclusion,
        robustness=_robustness_text(robustness, sensitivity, labels),
        robust=robustness.stable if robustness.available else (sensitivity.stable if sensitivity.available else None),
        **_moved(run.history, labels),
        **_watch(run.forecasts, run.study, labels),
        **_questions(run.forecasts),
        warnings=_stale(run.forecasts),
    )


def _robustness_text(r: RobustnessSection, sensitivity, labels: dict[str, str]) -> str:
    if r.available and r.leader is not None:
        rng = next((x for x in r.ranges if x.id == r.leader), None)
        span = f" ({_fmt(rng.low)} to {_fmt(rng.high)})" if rng else ""
        if r.stable:
            return f"Robust: '{labels[r.leader]}' leads in all {r.n_variants} reasonable variants{span}."
        first = r.flips[0] if r.flips else ""
        return (
            f"Not robust: the leader changes in {len(r.flips)} of {r.n_variants} reasonable variants; "
            f"'{labels[r.leader]}' ranges{span}. {first}"
        ).strip()
    if sensitivity.available:
        return sensitivity.verdict or "See the sensitivity section."
    return "Not evaluated for this run: " + COMMANDS["robustness"][1] + " adds it."


def _moved(history: dict | None, labels: dict[str, str]) -> dict:
    if history is None:
        return {"moved": [], "moved_note": "Not computed: `forecast history --every 4` adds support over time."}
    a = history.get("attribution")
    if not a:
        return {"moved": [], "moved_note": "history.json has no attribution (recompute it with `forecast history`)."}
    try:
        first, second = (_label(labels, h) for h in a["hypotheses"][:2])
        out = []
        log_bf = a.get("log_bf")
        if log_bf is not None:
            out.append(
                f"By the latest observation the evidence multiplies the odds of '{first}' against '{second}' by "
                f"{math.exp(log_bf):.3g} (log Bayes factor {log_bf:+.2f})."
            )
        intervals = [i for i in a["intervals"] if i.get("change") is not None]
        if intervals:
            big = max(intervals, key=lambda i: abs(i["change"]))
            towards = first if big["change"] > 0 else second
            out.append(
                f"It moved most in {big['start']}..{big['end']} ({big['change']:+.2f}, towards '{towards}', "
                f"{big['new_observations']} new observations)."
            )
        for e in a["top_events"][:MOVED_EVENTS]:
            towards = first if e["contribution"] > 0 else second
            out.append(
                f"{e['event_date']}, {e['counterpart']} / {e['domain']}, {e['outcome']}: {e['description']} "
                f"({e['contribution']:+.2f}, towards '{towards}')."
            )
        return {
            "moved": out,
            "moved_note": "From history.json (`forecast history`): log Bayes factor changes, > 0 "
            f"favours '{first}'; +1 multiplies the odds by 2.7.",
        }
    except SHAPE_ERRORS as e:
        return {"moved": [], "moved_note": f"history.json's attribution could not be read ({type(e).__name__})."}


def _watch(forecasts: dict | None, study: Study, labels: dict[str, str]) -> dict:
    if forecasts is None:
        return {"watch": [], "watch_note": "No milestones: `forecast predict` adds them."}
    try:
        m = forecasts["milestones"]
        leading = m.get("leading")
        if not leading:
            return {"watch": [], "watch_note": "No milestones (one hypothesis)."}
        a, b = (_label(labels, h) for h in leading[:2])
        groups = {g.id: g.label for g in study.groups}
        domains = {d.id: d.label for d in study.domains}
        rows = []
        for c in m["cells"][:WATCH_ROWS]:
            coop, confl = float(c["log_bf_if_cooperative"]), float(c["log_bf_if_conflictual"])

            def says(x: float) -> str:
                return f"favours '{a if x > 0 else b}' (odds x{math.exp(abs(x)):.2f})"

            rows.append(
                WatchRow(
                    f"{_label(groups, c['group'])} / {_label(domains, c['domain'])}, {c['quarter']}",
                    f"one cooperative interaction {says(coop)}, one conflictual {says(confl)}; "
                    f"about {float(c['expected_events']):.1f} interactions expected",
                    num(c.get("expected_abs_log_bf_change")),
                )
            )
        return {
            "watch": rows,
            "watch_note": f"Where next quarter's observations are expected to move the odds of '{a}' against '{b}' "
            "most (forecasts.json, `forecast predict`).",
        }
    except SHAPE_ERRORS as e:
        return {"watch": [], "watch_note": f"forecasts.json's milestones could not be read ({type(e).__name__})."}


def _questions(forecasts: dict | None) -> dict:
    if forecasts is None:
        return {"questions": [], "questions_note": "No question probabilities: `forecast predict` adds them."}
    try:
        rows = [
            QuestionRow(
                str(q["id"]), str(q["text"]), str(q["quarter"]), num(q.get("probability")), bool(q.get("resolved"))
            )
            for q in forecasts.get("questions", [])
        ]
    except SHAPE_ERRORS as e:
        return {
            "questions": [],
            "questions_note": f"forecasts.json's questions could not be read ({type(e).__name__}).",
        }
    note = f"Issued {str(forecasts.get('issued', ''))[:10]} (`forecast predict`): probability averaged over hypotheses."
    return {"questions": rows, "questions_note": note if rows else "The study registers no questions."}


def _stale(forecasts: dict | None, today: dt.date | None = None) -> list[str]:
    """Stale data said plainly: predict's own warnings, or (forecasts written before it warned, or
    read long after) forecast quarters and open questions that are over by today."""
    if forecasts is None:
        return []
    stored = [str(w) for w in forecasts.get("warnings") or []]
    if stored:
        return stored
    today = today or dt.date.today()
    try:
        over = [q for q in forecasts.get("quarters") or [] if quarter_end(quarter_index(str(q))) < today]
        questions = [
            str(q["id"])
            for q in forecasts.get("questions") or []
            if not q.get("resolved") and quarter_end(quarter_index(str(q["quarter"]))) < today
        ]
    except SHAPE_ERRORS:
        return []
    if not over and not questions:
        return []
    what = []
    if over:
        what.append(f"forecast quarter(s) {', '.join(over)}")
    if questions:
        what.append(f"question(s) {', '.join(questions)}")
    return [
        f"Stale data: {' and '.join(what)} are already over on {today.isoformat()}, but the data end "
        f"{forecasts.get('data_cutoff', '—')}. Read these figures as estimates of the past; code the events since "
        "then and rerun `forecast update` and `forecast predict` (or `forecast brief`)."
    ]


# --- cooperation now and over the window -------------------------------------------------------------


def cooperation(
    run, arrays: dict[str, dict], probabilities: dict[str, float], figures: FigureJobs, *, encompassing: bool = False
) -> CooperationSection:
    """P(cooperative) per (group, domain) at the quarter of the latest observation and its change
    since the window's first quarter, averaged over the hypotheses by their posterior probabilities
    (``encompassing``: the encompassing model's posterior alone, for a study of constraint hypotheses)."""
    study = run.study
    t = study.time
    years = years_from_reference(study)
    now_q = int(run.obs.table["quarter"].max()) if run.obs.n else t.end
    now_i = min(max(now_q - t.start, 0), len(years) - 1)
    rng = derive_rng(DEFAULT_SEED, 13)
    weights = np.array([max(num(probabilities.get(h, 0.0)), 0.0) for h in arrays], dtype=float)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(arrays), 1 / len(arrays))
    counts = rng.multinomial(MIXTURE_DRAWS, weights)
    now_draws, start_draws = [], []
    for a, n in zip(arrays.values(), counts, strict=True):
        if n == 0:
            continue
        eta = latent_logit(np, a, years, t.reference - t.start, t.components)  # (s, g, d, q)
        take = rng.choice(eta.shape[0], size=n, replace=eta.shape[0] < n)
        now_draws.append(sigmoid(eta[take, :, :, now_i]))
        start_draws.append(sigmoid(eta[take, :, :, 0]))
    now, start = np.concatenate(now_draws), np.concatenate(start_draws)
    change = now - start
    rows = []
    for gi, g in enumerate(study.groups):
        for di, d in enumerate(study.domains):
            lo, med, hi = np.percentile(now[:, gi, di], [5, 50, 95])
            clo, cmed, chi = np.percentile(change[:, gi, di], [5, 50, 95])
            rows.append(
                CooperationRow(
                    g.label,
                    d.label,
                    float(med),
                    float(lo),
                    float(hi),
                    float(np.median(start[:, gi, di])),
                    float(cmed),
                    float(clo),
                    float(chi),
                )
            )
    now_label, start_label = quarter_label(t.start + now_i), quarter_label(t.start)
    name = figures.add(
        "cooperation-now",
        f"Probability of cooperation in {now_label}, and since {start_label}",
        f"Probability that an interaction with each counterpart group in each issue domain is cooperative in "
        f"{now_label} (dot: median; line: 90% interval), "
        + (
            "under the encompassing model"
            if encompassing
            else "averaged over the hypotheses by their posterior probabilities"
        )
        + f"; the hollow dot and arrow show where it stood in {start_label}.",
        "Dot plot of the probability of cooperation per counterpart group and domain now and at the window's start",
        F.cooperation,
        [f"{r.group} / {r.domain}" for r in rows],
        np.array([[r.now_median, r.now_low, r.now_high] for r in rows]),
        np.array([r.start_median for r in rows]),
        now_label,
        start_label,
    )
    how = (
        "The encompassing model's posterior draws (the one model every constraint hypothesis is a region of), "
        "pushed through the model's formula, so the figures hold whatever hypothesis is right."
        if encompassing
        else "Each hypothesis's posterior draws, pushed through the model's formula, are pooled in proportion to its "
        "posterior probability, so the figures hold whatever hypothesis is right."
    )
    note = (
        f"Now is {now_label}, the quarter of the latest observation. {how} Change: percentage points since the "
        f"window's first quarter ({start_label}), with its 90% interval."
        + ("" if encompassing else " The log-odds hyperparameters behind them are in the technical appendix.")
    )
    return CooperationSection(now_label, start_label, note, rows, name)


# --- robustness (summary.json's robustness object, `forecast update`) --------------------------------


def robustness(data: dict | None, labels: dict[str, str], colours, figures: FigureJobs) -> RobustnessSection:
    if not data:
        return RobustnessSection(
            False,
            "This run holds no robustness analysis over a declared class of reasonable priors. "
            f"`{COMMANDS['robustness'][1]}` adds it; `forecast sensitivity` adds the full prior-sensitivity grid.",
        )
    try:
        return _robustness(data, labels, colours, figures)
    except SHAPE_ERRORS as e:
        return RobustnessSection(False, f"summary.json's robustness could not be read ({type(e).__name__}: {e}).")


def _robustness(data: dict, labels: dict[str, str], colours, figures: FigureJobs) -> RobustnessSection:
    leader = str(data["leader"])
    ranges = [
        RobustnessRange(
            hid,
            labels[hid],
            colours[hid],
            num(r["base"]),
            num(r["min"]),
            num(r["max"]),
            str(r["min_variant"]),
            str(r["max_variant"]),
        )
        for hid, r in data["ranges"].items()
        if hid in labels
    ]
    variants = data.get("variants") or []
    by_id = {v["id"]: v for v in variants}
    flips = []
    for f in data.get("flips") or []:
        v = by_id.get(f.get("id"), f)
        new = f.get("new_leader") or v.get("leader")
        p = num((v.get("posterior_probabilities") or {}).get(new))
        flips.append(f"'{_label(labels, new)}' leads ({_fmt(p)}) when {v.get('description', f.get('id', ''))}.")
    c = data.get("class") or {}
    declared = (
        (
            "The study declares"
            if c.get("source") not in (None, "defaults")
            else "The default class (the study declares none):"
        )
        + (
            f" locations shifted by ±{', '.join(f'{x:g}' for x in c.get('shifts', []))} prior SD;"
            if c.get("shifts")
            else ""
        )
        + (f" widths ×/÷{', '.join(f'{x:g}' for x in c.get('scales', []))};" if c.get("scales") else "")
        + (
            " one prior at a time and every prior of a hypothesis jointly;"
            if c.get("joint")
            else " one prior at a time;"
        )
        + (
            f" {c.get('n_evidence_variants')} evidence variant(s)."
            if c.get("n_evidence_variants")
            else " no evidence variants."
        )
    )
    # Tornado: the leader's probability over each perturbed prior's variants.
    groups: dict[str, list[float]] = {}
    joint: dict[str, bool] = {}
    for v in variants:
        if v.get("kind") == "base":
            continue
        p = num((v.get("posterior_probabilities") or {}).get(leader))
        if v.get("kind") == "evidence":
            key = f"evidence: {v.get('description', v['id'])}"
        else:
            key = f"{_label(labels, v.get('hypothesis'))}: {'all priors' if v.get('joint') else v.get('target', '')}"
        groups.setdefault(key, []).append(p)
        joint[key] = bool(v.get("joint"))
    rows = sorted(((k, min(ps), max(ps)) for k, ps in groups.items() if ps), key=lambda r: r[2] - r[1], reverse=True)[
        :TORNADO_ROWS
    ]
    base = next((r.base for r in ranges if r.id == leader), float("nan"))
    reference = (
        f"Black line: the probability of '{labels[leader]}' under the stated priors ({_fmt(base)}). Red dashed line: "
        "probability 1/2; a bar wholly to its right means the leader keeps a majority in every variant of that prior, "
        "a bar that crosses it means another hypothesis can lead. Coloured bars: one prior changed; grey bars: every "
        "prior of a hypothesis changed at once."
    )
    name = None
    if rows:
        name = figures.add(
            "robustness-tornado",
            "Which reasonable prior moves the conclusion most",
            f"The range of the posterior probability of '{labels[leader]}' over the variants of each prior in the "
            "declared class (largest swing first). " + reference,
            "Tornado chart of the leading hypothesis's posterior probability across reasonable prior variants",
            sensitivity_plots.tornado,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [joint[r[0]] for r in rows],
            base,
            labels[leader],
            colours[leader],
        )
    n = int(data.get("n_variants", len(variants) - 1))
    note = (
        f"From summary.json (`forecast update`): {n} variants of the priors (and of the evidence counted) evaluated on "
        f"the run's fits by Pareto-smoothed importance reweighting, {len(data.get('refitted') or [])} refitted where "
        "the weights were unreliable. This is robust Bayesian analysis: the conclusion is defensible to the extent "
        "that it holds over every prior an analyst would accept."
    )
    return RobustnessSection(
        available=True,
        note=note,
        leader=leader,
        stable=bool(data.get("leader_stable")),
        n_variants=n,
        ranges=ranges,
        flips=flips,
        prior_odds=str(data.get("prior_odds_text", "")),
        declared=declared,
        warning=None if data.get("warning") is None else str(data["warning"]),
        figure=name,
        reference_lines=reference,
    )


# --- forecasts (forecasts.json, `forecast predict`) ----------------------------------------------------


def forecasts(data: dict | None, study: Study) -> ForecastsSection:
    if data is None:
        return ForecastsSection(False, f"No forecasts in this run: `{COMMANDS['forecasts'][1]}` adds them.")
    try:
        groups = {g.id: g.label for g in study.groups}
        domains = {d.id: d.label for d in study.domains}
        first = min((int(r.get("horizon", 1)) for r in data["forecasts"]), default=1)
        rows = [
            ForecastRow(
                f"{_label(groups, r['group'])} / {_label(domains, r['domain'])}",
                str(r["quarter"]),
                num(r.get("mean")),
                num(r["interval_90"][0]),
                num(r["interval_90"][1]),
                num(r.get("expected_events")),
            )
            for r in data["forecasts"]
            if int(r.get("horizon", 1)) == first
        ]
    except SHAPE_ERRORS as e:
        return ForecastsSection(
            False, f"forecasts.json could not be read ({type(e).__name__}: {e}); run `forecast predict` again."
        )
    note = (
        f"From forecasts.json (`forecast predict`, issued {str(data.get('issued', ''))[:10]}, data to "
        f"{data.get('data_cutoff', '—')}): the share of cooperative interactions next quarter ({rows[0].quarter if rows else '—'}), "
        "averaged over the hypotheses by their posterior probabilities, with its 90% interval; the questions and "
        "milestones are in the summary."
    )
    return ForecastsSection(
        True,
        note,
        str(data.get("issued", ""))[:10],
        str(data.get("origin", "")),
        rows,
        [str(w) for w in data.get("warnings") or []],
    )


# --- backtest skill (backtest.json) --------------------------------------------------------------------

FORECASTER_NAMES = {"bma": "model average", "base_rate": "base rate", "last_quarter": "last quarter"}


def backtest(data: dict | None, labels: dict[str, str], figures: FigureJobs) -> BacktestSection:
    if data is None:
        return BacktestSection(False, f"No backtest in this run: `{COMMANDS['backtest'][1]}` adds it.")
    try:
        scores = data["scores"]
        overall = scores.get("overall") or {}
        skill = scores.get("skill") or {}
        coverage = data.get("coverage") or {}
        rows = []
        for f, s in overall.items():
            if not isinstance(s, dict) or "brier" not in s:
                continue
            base = (skill.get(f) or {}).get("base_rate") or {}
            cov = coverage.get(f) or {}
            rows.append(
                SkillRow(
                    FORECASTER_NAMES.get(f, _label(labels, f)),
                    num(s.get("log_score")),
                    num(s.get("brier")),
                    num(base.get("brier")),
                    num(cov.get("interval_50")) if cov else None,
                    num(cov.get("interval_90")) if cov else None,
                )
            )
        name = None
        if data.get("calibration"):
            name = figures.add(
                "backtest-reliability",
                "Backtest calibration",
                "Observed frequency of cooperative interactions against the forecast probability, per bin, over every "
                "backtest origin: the model average beside the base-rate and last-quarter baselines; the dashed "
                "diagonal is perfect calibration.",
                "Reliability diagram of the backtest forecasts",
                backtest_plots.reliability,
                data["calibration"],
            )
    except SHAPE_ERRORS as e:
        return BacktestSection(
            False, f"backtest.json could not be read ({type(e).__name__}: {e}); run `forecast backtest` again."
        )
    origins = data.get("origins") or []
    note = (
        f"From backtest.json (`forecast backtest`): forecasts made at {len(origins)} past origin(s), each from the "
        "evidence known then, scored on what followed. Lower log score and Brier score are better; skill over the "
        "base rate > 0 means better than forecasting each cell's historical share; a calibrated 50% (90%) interval "
        "covers about 50% (90%) of outcomes."
    )
    return BacktestSection(True, note, rows, name)


# --- calibration (calibration.json, `forecast calibrate`) ---------------------------------------------


def _calibration_checks(data: dict, labels: dict[str, str]) -> tuple[list[dict], dict | None, object]:
    checks = data.get("calibration") or {}
    rows = [
        {
            "hypothesis": _label(labels, c.get("hypothesis")),
            "prior": num(c.get("prior")),
            "mean_posterior": num(c.get("mean_posterior")),
            "band_low": num(c.get("band_low")),
            "band_high": num(c.get("band_high")),
            "within": bool(c.get("within")),
        }
        for c in checks.get("mean_posterior") or []
    ]
    design = data.get("design_analysis")
    design = (
        None
        if not isinstance(design, dict)
        else {k: num(design.get(k)) for k in ("picks_true", "decisive", "misleading")}
    )
    return rows, design, checks.get("verdict")


def calibration(
    data: dict | None, labels: dict[str, str], constraint_labels: dict[str, str] | None = None
) -> CalibrationSection:
    if data is None:
        return CalibrationSection(False, f"No calibration check in this run: `{COMMANDS['calibration'][1]}` adds it.")
    try:
        rows, design, verdict = _calibration_checks(data, labels) if data.get("calibration") else ([], None, None)
        part = data.get("constraints")
        constraints = None
        if isinstance(part, dict) and part.get("calibration"):
            c_rows, c_design, c_verdict = _calibration_checks(part, constraint_labels or {})
            constraints = CalibrationSection(
                True,
                f"The constraint hypotheses, on their own {part.get('n_datasets', '—')} data sets: a hypothesis drawn "
                "from their prior probabilities, parameters from the encompassing prior restricted to its region, one "
                "encompassing fit per data set.",
                None if c_verdict is None else str(c_verdict),
                c_rows,
                c_design,
            )
    except SHAPE_ERRORS as e:
        return CalibrationSection(False, f"calibration.json could not be read ({type(e).__name__}: {e}).")
    note = (
        f"From calibration.json (`forecast calibrate`): {data.get('n_datasets', '—')} data sets simulated from the "
        "priors with this study's design, each fitted like the real one. Calibrated support means that, averaged over "
        "data sets, each hypothesis's posterior probability equals its prior probability, and that hypotheses given "
        "probability p are true about a fraction p of the time."
    )
    if not rows and constraints is not None:  # a constraint-only calibration
        return CalibrationSection(True, note, constraints.verdict, constraints.rows, constraints.design, None)
    return CalibrationSection(True, note, None if verdict is None else str(verdict), rows, design, constraints)
