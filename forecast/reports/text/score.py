"""Terminal rendering of `forecast score`: each question's score, and their averages."""

from __future__ import annotations

from forecast.workflows.score import ScoreResult


def render_score(result: ScoreResult) -> str:
    d = result.to_dict()
    lines = [f"Study '{result.study}': {d['n_scored']} question(s) scored on the observations to {result.data_cutoff}"]
    if not result.questions:
        lines.append("No questions registered ([[questions]] in the study file) and no stored forecasts.")
    for r in result.questions:
        if r["status"] == "scored":
            lines.append(
                f"  {r['id']}: forecast {r['probability']:.2f}, outcome {'yes' if r['outcome'] else 'no'}; "
                f"Brier {r['brier']:.3f}, log score {r['log_score']:.3f} (running {r['running_brier']:.3f}, "
                f"{r['running_log_score']:.3f})"
            )
        else:
            lines.append(f"  {r['id']}: {r['status']}")
    if d["n_scored"]:
        lines.append(f"Average: Brier {d['mean_brier']:.3f}, log score {d['mean_log_score']:.3f}")
    if result.written:
        lines.append(f"Scores written to {result.written}")
    return "\n".join(lines)
