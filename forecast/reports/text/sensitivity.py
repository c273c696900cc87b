"""Terminal rendering of `forecast sensitivity`: the ranges, the verdict, the tornado, prior odds, power-scaling."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

from forecast.workflows.sensitivity.record import psense_diagnostics, psense_flag_details, psense_note
from forecast.workflows.sensitivity.reweight import SHARED

WIDTH = 100


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
    lines += power_scaling_lines(r, labels)
    if r.get("files"):
        lines += ["", "Plots: " + ", ".join(str(Path(r["run_dir"]) / v) for v in r["files"].values())]
    return "\n".join(lines)


def power_scaling_lines(r: Mapping, labels: dict[str, str]) -> list[str]:
    """The power-scaling section: priorsense's rule, each flag with its diagnosis, and how to read them.

    Works on stored JSON written before the diagnoses and the note were recorded: both are then
    derived from the stored sensitivities by the same rule.
    """
    t = float(r["psense_threshold"])
    diag = r.get("psense_diagnostics") or psense_diagnostics(r["psense"], t)
    flags = psense_flag_details(r["psense_flags"], r["psense"], t)
    note = r.get("psense_note")
    if note is None:
        note = psense_note(r["psense"], r["verdict"], labels, r["n_variants"], t)
    lines = [
        f"Power-scaling sensitivity, against priorsense's threshold {t:g} "
        f"({diag['n_flagged']} of {diag['n_hyperparameters']} hyperparameters flagged):",
        *textwrap.wrap("Rule: " + diag["rule"] + ".", WIDTH, initial_indent="  ", subsequent_indent="    "),
    ]
    if not flags:
        lines.append("  no potential prior-data conflict and no potential strong prior / weak likelihood")
    else:
        lines.append(f"  {'hypothesis':<22} {'hyperparameter':<22} {'prior':>6} {'lik.':>6}  diagnosis")
        for f in flags:
            shared = " (prior shared by every hypothesis)" if f.get("prior_role") == SHARED else ""
            lines.append(
                f"  {labels[f['hypothesis']][:22]:<22} {(f['parameter'] + '.' + f['group'])[:22]:<22} "
                f"{f.get('prior', float('nan')):>6.3f} {f.get('likelihood', float('nan')):>6.3f}  "
                f"{f.get('diagnosis') or f['flag']}{shared}"
            )
    if note:
        lines += ["", *textwrap.wrap("Reading the flags: " + note, WIDTH, initial_indent="  ", subsequent_indent="  ")]
    return lines


__all__ = ["power_scaling_lines", "render_sensitivity"]
