"""Terminal rendering of `forecast sensitivity`: the ranges, the verdict, the tornado, prior odds, power-scaling."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def render_sensitivity(result) -> str:
    """The plain-text report; ``result`` is a SensitivityResult or its stored JSON (``sensitivity.json``)."""
    r: Mapping = result.to_dict() if hasattr(result, "to_dict") else result
    labels = {h["id"]: h["label"] for h in r["hypotheses"]}
    lines = [f"Sensitivity of '{r['study']}' to its priors (run {r['run_dir']})", ""]
    if r.get("ran_update"):
        lines += [f"`forecast update` ran first: {r['ran_update']}", ""]
    if r.get("warning"):
        lines += [r["warning"], ""]
    grid = r["grid"]
    lines.append(
        f"Perturbation grid: {r['n_variants']} variants (shifts ±{', '.join(f'{s:g}' for s in grid['shifts'])} "
        f"prior SD, widths ×/÷{', '.join(f'{s:g}' for s in grid['scales'])}); "
        f"{r['n_refitted']} refitted where Pareto k > {grid['pareto_k_threshold']:.2f}, the rest reweighted."
    )
    lines.append(f"  {'hypothesis':<26} {'base P':>7} {'min P':>7} {'max P':>7}")
    for h, x in r["ranges"].items():
        lines.append(f"  {labels[h][:26]:<26} {x['base']:>7.3f} {x['min']:>7.3f} {x['max']:>7.3f}")
    lines += ["", r["verdict"]["text"], ""]
    lines.append("Priors that move the leader's probability most:")
    for t in r["tornado"][:5]:
        lines.append(f"  {labels[t['hypothesis']]}: {t['target']:<14} {t['low']:.3f} .. {t['high']:.3f}")
    if r["refitted"]:
        lines.append("Refitted (reweighting unreliable): " + ", ".join(r["refitted"]))
    lines += ["", "Prior odds: " + r["prior_odds_text"], ""]
    lines.append(f"Power-scaling (threshold {r['psense_threshold']}):")
    if not r["psense_flags"]:
        lines.append("  no prior-data conflict and no prior-dominated hyperparameter")
    for f in r["psense_flags"]:
        lines.append(f"  {labels[f['hypothesis']]}: {f['parameter']}.{f['group']}: {f['flag']}")
    if r.get("files"):
        lines += ["", "Plots: " + ", ".join(str(Path(r["run_dir"]) / v) for v in r["files"].values())]
    return "\n".join(lines)


__all__ = ["render_sensitivity"]
