"""Terminal rendering of `forecast backtest`: scores and skill per forecaster, LFO beside LOO, questions."""

from __future__ import annotations

import math

from forecast.workflows.backtest import BMA, UNRELIABLE, BacktestResult, Score, Skill


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, spec)


def _skill(s: Score) -> str:
    return f"{_fmt(s.log_score, '+.3f')} / {_fmt(s.brier, '+.3f')}"


def render_backtest(result: BacktestResult) -> str:
    d = result.to_dict()
    lines = []
    if not result.converged:
        lines += ["!" * 80, "WARNING: " + UNRELIABLE + "; every figure below is UNRELIABLE.", "!" * 80, ""]
    lines.append(
        f"Study '{result.study}': backtest at {len(result.origins)} origins {d['origins'][0]}..{d['origins'][-1]}, "
        f"forecasting 1..{result.horizon} quarters ahead from what was known at each origin"
    )
    overall = result.scores.overall
    if overall:
        lines += [
            f"{overall.n_events} forecast events. Log score: higher is better; Brier: lower is better; "
            "skill = 1 - score / baseline's (> 0 beats the baseline).",
            "",
            f"{'forecaster':<16} {'log score':>9} {'Brier':>7}  {'skill vs base rate':>18}  {'skill vs last qtr':>17}"
            f"  {'cover 50%':>9} {'cover 90%':>9}",
        ]
        for f in result.forecasters:
            s = overall[f]
            sk: Skill | None = (result.scores.skill or {}).get(f)
            cov = result.coverage.get(f)
            skill_base = _skill(sk.base_rate) if sk else ""
            skill_last = _skill(sk.last_quarter) if sk else ""
            lines.append(
                f"{f[:16]:<16} {_fmt(s.log_score):>9} {_fmt(s.brier):>7}  {skill_base:>18}  {skill_last:>17}  "
                f"{_fmt(cov.interval_50, '.2f') if cov else '':>9} {_fmt(cov.interval_90, '.2f') if cov else '':>9}"
            )
        lines.append("(skill columns: log score / Brier)")
    if result.lfo.hypotheses:
        lines += ["", f"Leave-future-out elpd ({result.lfo.method}), beside the run's PSIS-LOO elpd:"]
        for h in result.lfo.hypotheses:
            loo = f"{_fmt(h.elpd_loo, '.1f')} ± {_fmt(h.elpd_loo_se, '.1f')}" if h.elpd_loo is not None else "—"
            lines.append(
                f"  {h.id:<16} elpd_lfo {h.elpd_lfo:>8.1f} ± {h.se:<5.1f} "
                f"(Δ {h.elpd_diff:>5.1f} ± {h.elpd_diff_se:<4.1f})  elpd_loo {loo}"
            )
        if result.lfo.note:
            lines.append("  " + result.lfo.note)
    for q in result.questions:
        if q.n_resolved and q.scores:
            s = q.scores
            lines.append(
                f"Question {q.id} ({q.n_resolved} resolved): Brier model average {s[BMA].brier:.3f}, "
                f"base rate {s['base_rate'].brier:.3f}, last quarter {s['last_quarter'].brier:.3f}"
            )
    if result.written:
        lines += ["", "Written: " + ", ".join(result.written)]
    return "\n".join(lines)
