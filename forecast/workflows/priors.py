"""`forecast priors`: what each hypothesis's priors imply before seeing any data.

For every hypothesis, hyperparameters are drawn from its priors, the domain effects and
random-walk steps from their standard normals, and the model's log-odds grid is computed
exactly as in the fitted model (``model.latent_logit``). Summaries, each with its median and
50% and 90% intervals:

- ``domain_shares``: the cooperative share with each group in each domain, at the reference
  quarter;
- ``typical_share``: the share in a typical domain (domain effect 0) at the start of the
  window, the reference quarter and the end of the window;
- ``change_over_window``: end minus start of the typical share (what the trend and the random
  walk allow);
- ``quarterly_swing``: the absolute change of the typical share over one quarter at the
  reference quarter (what the volatility allows).

Two hypotheses whose prior predictive distributions are nearly the same cannot be told apart
by any data: for every pair, the Hellinger distance between the two hypotheses' distributions
of each summary above is estimated (equal-mass bins of the pooled draws), and a warning is
given when even the most different summary is closer than ``DISTINCT_THRESHOLD`` (0.15; for two
normals with equal spread that is a shift of their means by about 0.43 standard deviations).
"""

from __future__ import annotations

import io
import json
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.special import expit

from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, latent_logit, years_from_reference
from forecast.settings import DEFAULT_SEED
from forecast.spec.study import Hypothesis, Study, load_study, quarter_label

PRIOR_PREDICTIVE = "prior_predictive.json"
PRIOR_PREDICTIVE_PLOT = "prior_predictive.png"
SCHEMA_VERSION = 1
N_DRAWS = 20_000
DISTINCT_THRESHOLD = 0.15
N_BINS = 25
QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}


def prior_draws(study: Study, hypothesis: Hypothesis, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draws of every model variable from the hypothesis's priors, shaped as ``latent_logit`` expects."""
    G, D, Q = len(study.groups), len(study.domains), study.time.n_quarters
    out: dict[str, np.ndarray] = {}
    for p in study.parameters:
        out[p] = np.stack([hypothesis.priors[(p, g.id)].sample(rng, n) for g in study.groups], axis=-1)
    out[DOMAIN_EFFECT] = rng.standard_normal((n, G, D))
    if "random_walk" in study.time.components and Q > 1:
        out[RW_STEPS] = rng.standard_normal((n, G, Q - 1))
    return out


def predictive_quantities(study: Study, draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Named prior predictive summaries, each an array of draws: name -> (n,)."""
    years = years_from_reference(study)
    ref = study.time.reference - study.time.start
    last = study.time.n_quarters - 1
    eta = latent_logit(np, draws, years, ref, study.time.components)  # (n, G, D, Q)
    typical = latent_logit(
        np, {**draws, DOMAIN_EFFECT: np.zeros_like(draws[DOMAIN_EFFECT])}, years, ref, study.time.components
    )
    typical = expit(typical[:, :, 0, :])  # (n, G, Q): domain effect zero, so any domain
    q: dict[str, np.ndarray] = {}
    for gi, g in enumerate(study.groups):
        for di, d in enumerate(study.domains):
            q[f"domain_share/{g.id}/{d.id}"] = expit(eta[:, gi, di, ref])
        for name, t in (("start", 0), ("reference", ref), ("end", last)):
            q[f"typical_share/{g.id}/{name}"] = typical[:, gi, t]
        if last > 0:
            q[f"change_over_window/{g.id}"] = typical[:, gi, last] - typical[:, gi, 0]
            nxt = ref + 1 if ref < last else ref - 1
            q[f"quarterly_swing/{g.id}"] = np.abs(typical[:, gi, nxt] - typical[:, gi, ref])
    return q


def summarize(values: np.ndarray) -> dict[str, float]:
    qs = np.quantile(values, list(QUANTILES.values()))
    return {k: float(v) for k, v in zip(QUANTILES, qs, strict=True)}


def hellinger(a: np.ndarray, b: np.ndarray, bins: int = N_BINS) -> float:
    """Hellinger distance between two samples' distributions (equal-mass bins of the pooled draws)."""
    pooled = np.concatenate([a, b])
    edges = np.unique(np.quantile(pooled, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    pa = np.histogram(a, edges)[0] / len(a)
    pb = np.histogram(b, edges)[0] / len(b)
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(pa * pb)))))


def distinguishability(
    ids: list[str], quantities: dict[str, dict[str, np.ndarray]], threshold: float = DISTINCT_THRESHOLD
) -> list[dict]:
    """For each pair of hypotheses: the summary that differs most and how much (Hellinger)."""
    out = []
    for a, b in combinations(ids, 2):
        distances = {name: hellinger(quantities[a][name], quantities[b][name]) for name in quantities[a]}
        best = max(distances, key=distances.get)
        out.append(
            {
                "a": a,
                "b": b,
                "max_hellinger": distances[best],
                "most_different": best,
                "indistinguishable": distances[best] < threshold,
            }
        )
    return out


def _rows(study: Study, q: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    ref = quarter_label(study.time.reference)
    when = {"start": quarter_label(study.time.start), "reference": ref, "end": quarter_label(study.time.end)}
    out: dict[str, list[dict]] = {
        "domain_shares": [],
        "typical_share": [],
        "change_over_window": [],
        "quarterly_swing": [],
    }
    for name, values in q.items():
        kind, *rest = name.split("/")
        row: dict = {"group": rest[0]}
        if kind == "domain_share":
            row |= {"domain": rest[1], "quarter": ref}
            out["domain_shares"].append(row | summarize(values))
        elif kind == "typical_share":
            row |= {"at": rest[1], "quarter": when[rest[1]]}
            out["typical_share"].append(row | summarize(values))
        else:
            out[kind].append(row | summarize(values))
    return out


def run_priors(
    study_path: str | Path,
    *,
    runs_root: Path | None = None,
    n: int = N_DRAWS,
    seed: int = DEFAULT_SEED,
    threshold: float = DISTINCT_THRESHOLD,
    write: bool = True,
) -> dict:
    """Every hypothesis's priors (stated and fitted) and their prior predictive implications.

    Writes ``prior_predictive.json`` and ``prior_predictive.png`` into the study's latest run
    directory when that run was made from the current study file; otherwise writes nothing
    and says so (``written`` False, ``note``).
    """
    from forecast.fit.sampler import hypothesis_seed
    from forecast.spec.elicitation import describe_priors

    study = load_study(study_path)
    ids = [h.id for h in study.hypotheses]
    described = {d["id"]: d["priors"] for d in describe_priors(study)}
    quantities = {}
    hypotheses = []
    for h in study.hypotheses:
        rng = np.random.default_rng(hypothesis_seed(seed, h.id))
        quantities[h.id] = predictive_quantities(study, prior_draws(study, h, n, rng))
        hypotheses.append(
            {
                "id": h.id,
                "label": h.label,
                "prior_probability": h.prior_probability,
                "priors": described[h.id],
                "predictive": _rows(study, quantities[h.id]),
            }
        )
    pairs = distinguishability(ids, quantities, threshold)
    labels = {h.id: h.label for h in study.hypotheses}
    warnings = [
        f"'{labels[p['a']]}' and '{labels[p['b']]}' imply nearly the same data before any is seen (largest "
        f"difference: {p['most_different']}, Hellinger {p['max_hellinger']:.2f} < {threshold}): no data can "
        "separate them; make their priors say what distinguishes the claims"
        for p in pairs
        if p["indistinguishable"]
    ]
    result = {
        "schema_version": SCHEMA_VERSION,
        "study": study.name,
        "study_path": str(study.path),
        "reference_quarter": quarter_label(study.time.reference),
        "window": [quarter_label(study.time.start), quarter_label(study.time.end)],
        "n_draws": n,
        "seed": seed,
        "threshold": threshold,
        "hypotheses": hypotheses,
        "distinguishability": pairs,
        "warnings": warnings,
        "run_dir": None,
        "written": False,
        "files": {},
    }
    if write:
        _write(study, runs_root, result)
    return result


def _write(study: Study, runs_root: Path | None, result: dict) -> None:
    from forecast.runs.store import MANIFEST, default_root, latest_run
    from forecast.workflows.sensitivity import atomic_write

    root = Path(runs_root or study.runs_path or default_root())
    try:
        run = latest_run(root, study.name)
        manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    except Exception:
        result["note"] = f"no run of '{study.name}' under {root}: nothing written (run `forecast update` first)"
        return
    if manifest.get("study", {}).get("sha256") != study.sha256:
        result["note"] = f"the latest run {run.name} was made from another version of the study file: nothing written"
        return
    result["run_dir"] = str(run)
    result["written"] = True
    result["files"] = {"plot": PRIOR_PREDICTIVE_PLOT}
    atomic_write(run / PRIOR_PREDICTIVE_PLOT, plot_png(result))
    atomic_write(run / PRIOR_PREDICTIVE, json.dumps(result, indent=2) + "\n")


def plot_png(result: dict) -> bytes:
    """Per group: each hypothesis's prior predictive shares (median, 50% and 90% intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyps = result["hypotheses"]
    groups = list(dict.fromkeys(r["group"] for r in hyps[0]["predictive"]["domain_shares"]))
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.4 * len(groups) + 0.6), squeeze=False, sharey=True)
    for ax, g in zip(axes[:, 0], groups, strict=True):
        for k, h in enumerate(hyps):
            rows = [r for r in h["predictive"]["domain_shares"] if r["group"] == g]
            rows += [
                {**r, "domain": f"typical, {r['at']}"}
                for r in h["predictive"]["typical_share"]
                if r["group"] == g and r["at"] != "reference"
            ]
            x = np.arange(len(rows)) + (k - (len(hyps) - 1) / 2) * 0.8 / max(len(hyps), 1)
            med = [r["median"] for r in rows]
            ax.vlines(x, [r["q05"] for r in rows], [r["q95"] for r in rows], lw=1, color=f"C{k}")
            ax.vlines(x, [r["q25"] for r in rows], [r["q75"] for r in rows], lw=3.5, color=f"C{k}")
            ax.plot(x, med, "o", ms=3, color=f"C{k}", label=h["label"] if g == groups[0] else None)
            ax.set_xticks(np.arange(len(rows)))
            ax.set_xticklabels([r["domain"] for r in rows], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"{g}\ncooperative share", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=len(hyps), loc="upper left", bbox_to_anchor=(0, 1.35))
    fig.suptitle(
        f"Prior predictive cooperative shares at {result['reference_quarter']} (median, 50% and 90% intervals)",
        fontsize=9,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def load_prior_predictive(run_dir: str | Path) -> dict | None:
    """The `forecast priors` results stored in a run directory, or None."""
    path = Path(run_dir) / PRIOR_PREDICTIVE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def render_priors(result: dict) -> str:
    """The plain-text output of `forecast priors` (also usable as a report section)."""
    lines = [
        f"Priors of '{result['study']}' and what they imply before any data (reference quarter {result['reference_quarter']})"
    ]
    for h in result["hypotheses"]:
        lines += ["", f"{h['label']} ({h['id']}, prior probability {h['prior_probability']:.3f})"]
        for p in h["priors"]:
            line = f"  {p['parameter'] + '.' + p['group']:<22} {p['prior']}"
            if p["statement"]:
                line += f"\n  {'':<22} stated: {p['statement']['text']}"
            lines.append(line)
        lines.append(f"  {'prior predictive share':<34} {'median':>6}  {'50% interval':>13}  {'90% interval':>13}")
        # The priors treat a group's domains alike, so one row stands for all of them here
        # (the JSON output lists every domain).
        shown = set()
        for r in h["predictive"]["domain_shares"]:
            if r["group"] not in shown:
                shown.add(r["group"])
                lines.append(_row(f"{r['group']} / each domain, {r['quarter']}", r))
        for r in h["predictive"]["typical_share"]:
            lines.append(_row(f"{r['group']} / typical domain, {r['quarter']}", r))
        for r in h["predictive"]["change_over_window"]:
            lines.append(_row(f"{r['group']} / change over window", r, signed=True))
    lines.append("")
    for p in result["distinguishability"]:
        lines.append(
            f"{p['a']} vs {p['b']}: most different in {p['most_different']} (Hellinger {p['max_hellinger']:.2f})"
        )
    for w in result["warnings"]:
        lines.append("WARNING: " + w)
    if result["written"]:
        lines.append(f"\nWritten to {result['run_dir']} ({PRIOR_PREDICTIVE}, {PRIOR_PREDICTIVE_PLOT})")
    elif result.get("note"):
        lines.append("\n" + result["note"])
    return "\n".join(lines)


def _row(name: str, r: dict, signed: bool = False) -> str:
    f = "{:+.2f}" if signed else "{:.2f}"
    a = f"[{f.format(r['q25'])}, {f.format(r['q75'])}]"
    b = f"[{f.format(r['q05'])}, {f.format(r['q95'])}]"
    return f"  {name[:34]:<34} {f.format(r['median']):>6}  {a:>13}  {b:>13}"


def prior_predictive_section(run_dir: str | Path) -> str | None:
    """A report section (Markdown) for ``forecast report``, or None if `forecast priors` wrote nothing here."""
    data = load_prior_predictive(run_dir)
    if data is None:
        return None
    return (
        "## What the priors imply\n\n```\n"
        + render_priors(data)
        + "\n```\n\n"
        + f"![prior predictive]({PRIOR_PREDICTIVE_PLOT})\n"
    )
