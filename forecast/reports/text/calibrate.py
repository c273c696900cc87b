"""Terminal rendering of `forecast calibrate`: the checks, the verdict with its power, the design analysis;
the constraint hypotheses' calibration in its own section."""

from __future__ import annotations

import math

from forecast.workflows.calibrate import CalibrationResult, ConstraintCalibration, Power


def _points(probability: float | None) -> str:
    if probability is None or not math.isfinite(probability):
        return "an unknown number of"
    return f"{100 * probability:.0f}"


def power_sentence(power: Power) -> str:
    """What the check could detect at its number of data sets, in probability points."""
    text = f"at {power.n_datasets} data sets the check detects (with probability {power.probability:.0%}) "
    if power.mean_posterior >= 1:  # no probability can be that far from its prior
        text += (
            "no shift at all of the average posterior (it would take "
            f"{_points(power.mean_posterior)} probability points)"
        )
    else:
        text += f"an average posterior {_points(power.mean_posterior)} or more probability points away from the prior"
    if power.bins is not None:
        text += f", and a calibration bin {_points(power.bins)} or more points off at best"
    return text


def verdict_text(result: CalibrationResult | ConstraintCalibration) -> str:
    c = result.calibration
    if c.consistent is None:
        return (
            f"Too few data sets to judge ({result.n_datasets} < {c.min_datasets}): {power_sentence(c.power)}. "
            f"Run --datasets {c.min_datasets} or more for a verdict."
        )
    head = "Consistent with exact calibration" if c.consistent else "NOT consistent with exact calibration"
    return f"{head}; {power_sentence(c.power)} (smaller miscalibrations may go unseen; more --datasets see finer)."


def _n_checks(c) -> int:
    return len(c.mean_posterior) + sum(1 for b in c.bins if b.n) + 1


def _checks(result: CalibrationResult | ConstraintCalibration, n_events: int) -> list[str]:
    """The three checks, the verdict and the design analysis of one comparison."""
    c = result.calibration
    lines = [
        f"Every band below is one of {_n_checks(c)} checks made together at {c.band_level:.0%} (an exactly calibrated "
        f"tool fails any of them at most {1 - c.band_level:.0%} of the time).",
        "Data-averaged posterior (exact calibration: equal to the prior, within its band):",
    ]
    for m in c.mean_posterior:
        lines.append(
            f"  {m.hypothesis:<20} prior {m.prior:.3f}  mean posterior {m.mean_posterior:.3f} ± {m.se:.3f}  "
            f"[{m.band_low:.3f}, {m.band_high:.3f}]  {'ok' if m.within else 'OUTSIDE'}"
        )
    lines += ["", "Calibration (among data sets where the tool says P(H) = p, H is true a fraction p of the time):"]
    for b in c.bins:
        if not b.n:
            lines.append(f"  P in [{b.low:.1f}, {b.high:.1f}): no data sets")
            continue
        lines.append(
            f"  P in [{b.low:.1f}, {b.high:.1f}): n {b.n:>4}  said {b.mean_predicted:.2f}  true "
            f"{b.observed:.2f}  band [{b.band_low:.2f}, {b.band_high:.2f}]  {'ok' if b.within else 'OUTSIDE'}"
        )
    br = c.brier
    lines += [
        f"Brier check: {br.statistic:+.4f} ± {br.se:.4f} (z {br.z:+.2f}; {br.meaning})",
        "",
        verdict_text(result),
    ]
    da = result.design_analysis
    lines += [
        "",
        f"Design analysis at {n_events} events: the true hypothesis gets the most probability in "
        f"{da.picks_true:.0%} of data sets; decisive (P >= {da.decisive_threshold}) in {da.decisive:.0%}, "
        f"misleading (a false one >= {da.decisive_threshold}) in {da.misleading:.0%}.",
    ]
    for h, x in da.by_truth.items():
        if x.n:
            lines.append(
                f"  when '{h}' is true ({x.n}): picked {x.picks_true:.0%}, decisive {x.decisive:.0%}, "
                f"mean P {x.mean_posterior_of_true:.2f}"
            )
    return lines


def _constraint_section(result: CalibrationResult) -> list[str]:
    k = result.constraints
    lines = [
        f"Constraint hypotheses ({k.n_datasets} data sets of their own, ONE encompassing fit each; "
        f"the regions' prior masses estimated once from {k.prior_draws:,} encompassing prior draws):",
        "",
    ]
    lines += _checks(k, result.n_events)
    lines += ["", "Parameters drawn from the encompassing prior restricted to each region (by rejection):"]
    for h, r in k.rejection.items():
        lines.append(
            f"  {h:<20} prior mass {r.prior_mass:.3g}: about {r.expected_candidates:,.0f} candidates per draw; "
            f"{r.n_draws} data set{'' if r.n_draws == 1 else 's'} took {r.candidates:,} (at most {r.max_candidates:,})"
        )
    if k.warning:
        lines += ["", "WARNING (constraint hypotheses): " + k.warning]
    return lines


def render_calibration(result: CalibrationResult) -> str:
    lines = [
        f"Calibration of study '{result.study}': {result.n_datasets} simulated data sets of {result.n_events} events "
        f"({result.pool.description}).",
    ]
    both = result.calibration is not None and result.constraints is not None
    if result.calibration is not None:
        lines.append("")
        if both:
            lines += ["Prior-specified hypotheses (a fit of every hypothesis per data set):", ""]
        lines += _checks(result, result.n_events)
    if result.constraints is not None:
        lines += ["", *(["-" * 100, ""] if both else []), *_constraint_section(result)]
    if result.warning:
        lines += ["", "WARNING: " + result.warning]
    if result.note:
        lines += ["", "Note: " + result.note]
    if result.written:
        lines += ["", f"Written to {result.written}"]
    return "\n".join(lines)
