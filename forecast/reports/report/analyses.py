"""Report sections from analyses other commands stored in the run: history, sensitivity, priors.

``history.json``, ``sensitivity.json`` and ``prior_predictive.json`` are read as stored (no
recomputation) and drawn by forecast.reports.figures or forecast.reports.plots; a file of another
shape is a note in its section, never an error.
"""

from __future__ import annotations

import numpy as np

from forecast.reports import figures as F
from forecast.reports.figures import FigureJobs
from forecast.reports.plots import history as history_plots
from forecast.reports.plots import priors as prior_plots
from forecast.reports.plots import sensitivity as sensitivity_plots
from forecast.reports.report.records import (
    ConstraintHistoryRow,
    ConstraintHistorySection,
    HistoryRow,
    HistorySection,
    PairRow,
    PriorHypothesis,
    PriorPredictiveSection,
    PsenseFlag,
    RangeRow,
    SensitivitySection,
    ShareRow,
    StatedPrior,
    TornadoRow,
)
from forecast.reports.report.statistics import num
from forecast.runs.layout import HISTORY, PRIOR_PREDICTIVE, SENSITIVITY
from forecast.spec.questions import quarter_end
from forecast.spec.study import Study, quarter_label

TORNADO_ROWS = 20
SHAPE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)


def _label(labels: dict[str, str], hid: object) -> str:
    return labels.get(str(hid), str(hid))


# --- support over time (history.json, written by `forecast history`) ----------------------------

HOW_TO_HISTORY = (
    "Compute it with `forecast history` (or `forecast update --history`): one refit of every hypothesis per "
    "quarter of evidence, several minutes on the default study; `forecast history --every 4` evaluates once a "
    "year at about a quarter of the cost. The report itself never refits."
)


def history_section(data: dict | None, study: Study, labels: dict[str, str], colours, figures) -> HistorySection:
    if data is None:
        return HistorySection(False, "Support over time was not computed for this run. " + HOW_TO_HISTORY)
    try:
        ids = [str(x["id"]) for x in data["hypotheses"]]
        if ids != list(labels):
            return HistorySection(
                False, f"{HISTORY} lists other hypotheses ({ids}); recompute it with `forecast history`."
            )
        every, settings = int(data["every"]), dict(data["settings"])
        chains, draws = settings["chains"], settings["draws"]
        rows = [
            HistoryRow(
                quarter=str(p["quarter"]),
                as_of=str(p["as_of"]),
                n_observations=int(p["n_observations"]),
                new_observations=int(p["new_observations"]),
                source=str(p["source"]),
                probabilities={k: num(p["probabilities"][k]) for k in ids},
                probabilities_se={k: num(p["probabilities_se"][k]) for k in ids},
                converged=bool(p["converged"]),
                failed=[_label(labels, k) for k in p.get("problems") or {}],
            )
            for p in data["points"]
        ]
    except SHAPE_ERRORS as e:
        return HistorySection(
            False, f"{HISTORY} could not be read ({type(e).__name__}: {e}); recompute it with `forecast history`."
        )
    if not rows:
        return HistorySection(False, f"{HISTORY} holds no points. " + HOW_TO_HISTORY)
    flagged = np.array([not r.converged for r in rows])
    ref = study.time.reference
    bad = int(flagged.sum())
    caption = (
        "Posterior probability of each hypothesis given the evidence known by the end of each quarter "
        f"(a refit per {'quarter' if every == 1 else f'{every} quarters'}; {chains} chains x "
        f"{draws} draws); bands: ±2 Monte Carlo standard errors."
        + (f" Circled points ({bad}) come from fits that failed their convergence checks." if bad else "")
    )
    reference = (f"reference quarter {quarter_label(ref)}", quarter_end(ref).isoformat())
    attribution = data.get("attribution")
    if attribution:
        # What moved it: the change of the log Bayes factor per interval, drawn over the interval,
        # and the events that moved it most numbered on the time axis (forecast.reports.plots.history).
        first, second = (_label(labels, h) for h in attribution["hypotheses"][:2])
        name = figures.add(
            "support-over-time",
            "Support over time, and what moved it",
            caption
            + f" Lower panel: the change of the log Bayes factor of '{first}' against '{second}' over each interval "
            "(> 0 favours the first; hatched: not split by event), with the events that moved it most numbered at "
            "their dates (key under the figure).",
            "Line chart of each hypothesis's posterior probability by quarter, with the change per interval below",
            history_plots.history_png,
            data,
            reference,
            colours,
        )
    else:
        name = figures.add(
            "support-over-time",
            "Support over time",
            caption,
            "Line chart of each hypothesis's posterior probability by quarter",
            F.support_history,
            [r.quarter for r in rows],
            [r.as_of for r in rows],
            {hid: np.array([r.probabilities[hid] for r in rows]) for hid in ids},
            {hid: np.array([r.probabilities_se[hid] for r in rows]) for hid in ids},
            flagged,
            labels,
            colours,
            reference=reference,
        )
    n_fitted = sum(r.source == "fit" for r in rows)
    note = (
        f"{len(rows) - 1} quarter(s), every {every} quarter(s): {n_fitted} refitted"
        + (", the last one (all evidence) is the run itself" if rows[-1].source == "run" else "")
        + "; quarters without new evidence reuse the previous result; the first point is the prior."
    )
    return HistorySection(True, note, every, settings, all(r.converged for r in rows), rows, name)


def constraint_history_section(data: dict | None, figures: FigureJobs, moved: int = 3) -> ConstraintHistorySection:
    """The constraint hypotheses' probabilities over time (history.json's "constraints"), or not available."""
    c = (data or {}).get("constraints")
    if not c:
        return ConstraintHistorySection(False)
    try:
        hyps = c["hypotheses"]
        ids = [str(h["id"]) for h in hyps]
        labels = {str(h["id"]): str(h.get("label") or h["id"]) for h in hyps}

        def shown(p: dict, h: str) -> str:
            if (p.get("bound") or {}).get(h):
                return f"< {num(p['probabilities_upper'][h]):.3f}"
            return f"{num(p['probabilities'][h]):.3f}"

        rows = [
            ConstraintHistoryRow(
                str(p["quarter"]),
                int(p["n_observations"]),
                int(p["new_observations"]),
                str(p["source"]),
                [shown(p, h) for h in ids],
                _label(labels, p.get("leader")),
                bool(p.get("converged", True)),
            )
            for p in c["points"]
        ]
        sentences = []
        a = c.get("attribution")
        if a:
            first, second = (_label(labels, h) for h in a["hypotheses"][:2])
            for e in a.get("top_events", [])[:moved]:
                towards = first if e["contribution"] > 0 else second
                sentences.append(
                    f"{e['event_date']}, {e['counterpart']} / {e['domain']}, {e['outcome']}: {e['description']} "
                    f"({e['contribution']:+.2f}, towards '{towards}')."
                )
    except SHAPE_ERRORS as e:
        return ConstraintHistorySection(
            False, f"{HISTORY}'s constraint hypotheses could not be read ({type(e).__name__}: {e})."
        )
    if not rows:
        return ConstraintHistorySection(False)
    name = figures.add(
        "constraint-support-over-time",
        "The constraint hypotheses over time",
        "Posterior probability of each constraint hypothesis given the evidence known by the end of each quarter, "
        "from one fit of the encompassing model per evaluated quarter (prior masses estimated once); a region "
        "holding no posterior draw is drawn at its upper bound. Kept apart from the hypotheses stated as priors.",
        "Line chart of each constraint hypothesis's posterior probability by quarter",
        history_plots.constraint_history_png,
        data,
    )
    note = (
        f"From {HISTORY} (`forecast history`): {len(rows) - 1} quarter(s), {int(c.get('n_fitted', 0))} encompassing "
        "fit(s); the first point is the prior."
    )
    return ConstraintHistorySection(True, note, [labels[h] for h in ids], rows, name, sentences)


# --- sensitivity -------------------------------------------------------------------------------


def sensitivity_section(data: dict | None, labels: dict[str, str], colours, figures: FigureJobs) -> SensitivitySection:
    if data is None:
        return SensitivitySection(
            False,
            "The run holds no sensitivity analysis. `forecast sensitivity` asks whether the conclusion would change "
            "under other reasonable priors and stores its answer in the run; the next report shows it here.",
        )
    try:
        return _sensitivity(data, labels, colours, figures)
    except SHAPE_ERRORS as e:
        return SensitivitySection(
            False, f"{SENSITIVITY} could not be read ({type(e).__name__}: {e}); run `forecast sensitivity` again."
        )


def _sensitivity(data: dict, labels: dict[str, str], colours, figures: FigureJobs) -> SensitivitySection:
    ids = [str(h["id"]) for h in data["hypotheses"]]
    if ids != list(labels):
        return SensitivitySection(
            False, f"{SENSITIVITY} is about other hypotheses ({ids}); run `forecast sensitivity` again."
        )
    verdict = data["verdict"]
    leader = str(verdict["leader"])
    grid = data.get("grid", {})
    ranges = [
        RangeRow(
            hid,
            labels[hid],
            colours[hid],
            float(r["base"]),
            float(r["min"]),
            float(r["max"]),
            str(r["min_variant"]),
            str(r["max_variant"]),
        )
        for hid, r in ((hid, data["ranges"][hid]) for hid in ids)
    ]
    tornado = [
        TornadoRow(
            _label(labels, t["hypothesis"]), str(t["target"]), float(t["low"]), float(t["high"]), float(t["swing"])
        )
        for t in data["tornado"][:TORNADO_ROWS]
    ]
    flags = [
        PsenseFlag(_label(labels, f["hypothesis"]), str(f["parameter"]), str(f["group"]), str(f["flag"]))
        for f in data.get("psense_flags", [])
    ]
    warning = data.get("warning")
    if not data.get("converged", True) and not warning:
        warning = "UNRELIABLE: at least one fit failed its convergence checks"
    names = []
    if tornado:
        base = float(data["base"]["posterior_probabilities"][leader])
        names.append(
            figures.add(
                "sensitivity-tornado",
                "Which prior moves the conclusion most",
                f"The range of the posterior probability of '{labels[leader]}' over the variants of each perturbed "
                "prior (largest swing first; grey: all priors of a hypothesis perturbed jointly). The black line is "
                "the run's own priors.",
                "Tornado chart of the leading hypothesis's posterior probability across prior variants",
                sensitivity_plots.tornado,
                [f"{t.hypothesis}: {t.target}" for t in tornado],
                [t.low for t in tornado],
                [t.high for t in tornado],
                [t.target == "all" for t in tornado],
                base,
                labels[leader],
                colours[leader],
            )
        )
    odds = data.get("prior_odds") or {}
    curves = {
        hid: (list(map(float, o["curve"]["prior"])), list(map(float, o["curve"]["posterior"])))
        for hid, o in odds.items()
        if hid in labels and o.get("curve", {}).get("prior")
    }
    if curves:
        points = {
            hid: (float(odds[hid]["prior_probability"]), float(odds[hid]["posterior_probability"])) for hid in curves
        }
        flip = odds.get(leader, {}).get("flip_prior")
        names.append(
            figures.add(
                "sensitivity-prior-odds",
                "Prior odds",
                "Posterior probability of each hypothesis as a function of its prior probability, the others keeping "
                "their relative prior odds (exact from the Bayes factors). Dots: the study's prior probabilities; "
                f"dotted line: the prior probability of '{labels[leader]}' below which another hypothesis leads.",
                "Line chart of posterior against prior probability for each hypothesis",
                sensitivity_plots.prior_odds,
                curves,
                points,
                None if flip is None else float(flip),
                leader,
                labels,
                colours,
            )
        )
    shifts = [float(x) for x in grid.get("shifts", [])]
    scales = [float(x) for x in grid.get("scales", [])]
    k = grid.get("pareto_k_threshold")
    n_variants, n_refitted = int(data["n_variants"]), int(data.get("n_refitted", 0))
    note = (
        f"From {SENSITIVITY} (`forecast sensitivity`): {n_variants} prior variants"
        + (f" (locations shifted by ±{', '.join(f'{s:g}' for s in shifts)} prior SD" if shifts else "")
        + (f", widths ×/÷{', '.join(f'{s:g}' for s in scales)})" if scales else (")" if shifts else ""))
        + f"; {n_refitted} refitted"
        + (f" where Pareto k > {float(k):.2f}" if k is not None else "")
        + ", the others reweighted from the run's posterior draws (Pareto-smoothed importance sampling)."
    )
    return SensitivitySection(
        available=True,
        note=note,
        warning=None if warning is None else str(warning),
        leader=leader,
        stable=bool(verdict.get("stable")),
        verdict=str(verdict.get("text", "")),
        n_variants=n_variants,
        n_refitted=n_refitted,
        shifts=shifts,
        scales=scales,
        pareto_k_threshold=None if k is None else float(k),
        ranges=ranges,
        tornado=tornado,
        prior_odds=str(data.get("prior_odds_text", "")),
        psense_threshold=None if data.get("psense_threshold") is None else float(data["psense_threshold"]),
        psense_flags=flags,
        figures=names,
    )


# --- what the priors imply ----------------------------------------------------------------------


def prior_predictive_section(
    data: dict | None, study: Study, labels: dict[str, str], colours, figures: FigureJobs
) -> PriorPredictiveSection:
    if data is None:
        return PriorPredictiveSection(
            False,
            "The run holds no prior predictive check. `forecast priors` shows what each hypothesis's priors imply "
            "before any data, and whether any data could tell the hypotheses apart; it stores its answer in the run "
            "and the next report shows it here.",
        )
    try:
        return _prior_predictive(data, study, labels, colours, figures)
    except SHAPE_ERRORS as e:
        return PriorPredictiveSection(
            False, f"{PRIOR_PREDICTIVE} could not be read ({type(e).__name__}: {e}); run `forecast priors` again."
        )


QUANTILES = ("q05", "q25", "median", "q75", "q95")


def _prior_predictive(data: dict, study: Study, labels: dict[str, str], colours, figures) -> PriorPredictiveSection:
    hyps = data["hypotheses"]
    ids = [str(h["id"]) for h in hyps]
    if ids != list(labels):
        return PriorPredictiveSection(
            False, f"{PRIOR_PREDICTIVE} is about other hypotheses ({ids}); run `forecast priors` again."
        )
    groups = {g.id: g.label for g in study.groups}
    domains = {d.id: d.label for d in study.domains}
    out = []
    for h in hyps:
        hid = str(h["id"])
        pred = h["predictive"]
        shares, shown = [], set()
        # The priors treat a group's domains alike, so one row stands for all of them here.
        for r in pred["domain_shares"]:
            if r["group"] not in shown:
                shown.add(r["group"])
                shares.append(_share(f"{_label(groups, r['group'])} / each domain, {r['quarter']}", r))
        for r in pred["typical_share"]:
            shares.append(_share(f"{_label(groups, r['group'])} / typical domain, {r['quarter']}", r))
        for r in pred.get("change_over_window", []):
            shares.append(_share(f"{_label(groups, r['group'])} / change over the window", r))
        priors = [
            StatedPrior(
                str(p["parameter"]),
                _label(groups, p["group"]),
                str(p["prior"]),
                None if not p.get("statement") else str(p["statement"].get("text", "")),
            )
            for p in h.get("priors", [])
        ]
        out.append(PriorHypothesis(hid, labels[hid], colours[hid], float(h["prior_probability"]), priors, shares))
    pairs = [
        PairRow(
            _label(labels, p["a"]),
            _label(labels, p["b"]),
            str(p["most_different"]),
            float(p["max_hellinger"]),
            bool(p["indistinguishable"]),
        )
        for p in data.get("distinguishability", [])
    ]
    # The plot: per group, each domain at the reference quarter, then a typical domain at the ends.
    group_ids = list(dict.fromkeys(r["group"] for r in hyps[0]["predictive"]["domain_shares"]))
    columns, intervals = [], {}
    for hid, h in zip(ids, hyps, strict=True):
        intervals[hid] = []
        for g in group_ids:
            rows = [r for r in h["predictive"]["domain_shares"] if r["group"] == g]
            rows += [r for r in h["predictive"]["typical_share"] if r["group"] == g and r.get("at") != "reference"]
            intervals[hid].append([tuple(float(r[q]) for q in QUANTILES) for r in rows])
            if hid == ids[0]:
                columns.append(
                    [_label(domains, r["domain"]) if "domain" in r else f"typical, {r['quarter']}" for r in rows]
                )
    reference = str(data.get("reference_quarter", ""))
    name = figures.add(
        "prior-predictive",
        "What the priors imply before any data",
        "Prior predictive cooperative share with each counterpart group (median, 50% and 90% intervals of "
        f"{int(data.get('n_draws', 0))} draws from each hypothesis's priors): per issue domain at the reference "
        f"quarter {reference}, and in a typical domain at the start and end of the window.",
        "Interval chart of each hypothesis's prior predictive cooperative share per group and domain",
        prior_plots.prior_predictive,
        [_label(groups, g) for g in group_ids],
        columns,
        intervals,
        labels,
        colours,
        reference,
    )
    return PriorPredictiveSection(
        available=True,
        note=(
            f"From {PRIOR_PREDICTIVE} (`forecast priors`): hyperparameters drawn from each hypothesis's priors, pushed "
            "through the model's own formula. Two hypotheses whose prior predictive distributions are nearly the same "
            "cannot be told apart by any data (Hellinger distance of the most different summary below "
            f"{float(data.get('threshold', float('nan'))):.2f})."
        ),
        reference_quarter=reference,
        n_draws=int(data.get("n_draws", 0)),
        threshold=None if data.get("threshold") is None else float(data["threshold"]),
        hypotheses=out,
        pairs=pairs,
        warnings=[str(w) for w in data.get("warnings", [])],
        figure=name,
    )


def _share(what: str, r: dict) -> ShareRow:
    return ShareRow(what, float(r["median"]), float(r["q25"]), float(r["q75"]), float(r["q05"]), float(r["q95"]))
