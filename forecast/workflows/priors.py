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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.special import expit

from forecast.errors import ObservationError, RunStoreError
from forecast.model.build import DOMAIN_EFFECT, latent_logit, years_from_reference
from forecast.model.predictive import prior_draws  # the one prior sampler
from forecast.runs.layout import PRIOR_PREDICTIVE, PRIOR_PREDICTIVE_SCHEMA
from forecast.runs.store import default_root, jsonable
from forecast.runs.stored import StoredRun
from forecast.settings import DEFAULT_SEED, derive_seed
from forecast.spec.study import Study, load_study, quarter_label

N_DRAWS = 20_000
DISTINCT_THRESHOLD = 0.15
N_BINS = 25
QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}


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


def describe_priors(study: Study) -> list[dict]:
    """Per hypothesis and (parameter, group): the fitted prior and, if elicited, its statement (JSON-able)."""
    out = []
    for h in study.hypotheses:
        rows = []
        for param, group in study.slots:
            prior = h.priors[(param, group)]
            rows.append(
                {
                    "parameter": param,
                    "group": group,
                    "prior": prior.describe(),
                    "dist": prior.dist,
                    "kwargs": dict(prior.kwargs),
                    "statement": prior.statement.to_dict() if prior.statement is not None else None,
                }
            )
        out.append({"id": h.id, "label": h.label, "priors": rows})
    return out


@dataclass(frozen=True)
class PriorsResult:
    """Every hypothesis's priors and their prior predictive implications (``prior_predictive.json``).

    ``hypotheses``: per hypothesis its priors (stated and fitted) and prediction summaries;
    ``distinguishability``: per pair, the summary that differs most (Hellinger); ``warnings``:
    pairs no data can separate. ``written`` says whether the result went into ``run_dir``; when
    it did not, ``note`` says why.
    """

    schema_version: int
    study: str
    study_path: str
    reference_quarter: str
    window: list[str]
    n_draws: int
    seed: int
    threshold: float
    hypotheses: list[dict]
    distinguishability: list[dict]
    warnings: list[str]
    run_dir: str | None = None
    written: bool = False
    files: dict[str, str] | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        out = {
            "schema_version": self.schema_version,
            "study": self.study,
            "study_path": self.study_path,
            "reference_quarter": self.reference_quarter,
            "window": self.window,
            "n_draws": self.n_draws,
            "seed": self.seed,
            "threshold": self.threshold,
            "hypotheses": self.hypotheses,
            "distinguishability": self.distinguishability,
            "warnings": self.warnings,
            "run_dir": self.run_dir,
            "written": self.written,
            "files": self.files or {},
        }
        if self.note is not None:
            out["note"] = self.note
        return jsonable(out)


# Draws the plot of a result (its ``to_dict()``): key -> (file name in the run, PNG bytes).
# Workflows sit below reports, so the CLI hands in forecast.reports.plots.run_pngs.priors_pngs.
Plots = Callable[[dict], Mapping[str, tuple[str, bytes]]]


def run_priors(
    study_path: str | Path,
    *,
    runs_root: Path | None = None,
    n: int = N_DRAWS,
    seed: int = DEFAULT_SEED,
    threshold: float = DISTINCT_THRESHOLD,
    write: bool = True,
    plots: Plots | None = None,
) -> PriorsResult:
    """Every hypothesis's priors (stated and fitted) and their prior predictive implications.

    With ``write``, the result goes into the study's latest run (``prior_predictive.json``, and
    the PNG ``plots`` draws) when that run matches the current study and observations
    (``StoredRun.check_inputs``); otherwise nothing is written and ``note`` says why.
    """
    study = load_study(study_path)
    ids = [h.id for h in study.hypotheses]
    described = {d["id"]: d["priors"] for d in describe_priors(study)}
    quantities = {}
    hypotheses = []
    for h in study.hypotheses:
        rng = np.random.default_rng(derive_seed(seed, h.id))  # the sampler's per-hypothesis seed
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
    result = PriorsResult(
        schema_version=PRIOR_PREDICTIVE_SCHEMA,
        study=study.name,
        study_path=str(study.path),
        reference_quarter=quarter_label(study.time.reference),
        window=[quarter_label(study.time.start), quarter_label(study.time.end)],
        n_draws=n,
        seed=seed,
        threshold=threshold,
        hypotheses=hypotheses,
        distinguishability=pairs,
        warnings=warnings,
    )
    if write:
        result = write_into_run(study, runs_root, result, plots)
    return result


def matching_run(study: Study, runs_root: Path | None) -> StoredRun:
    """The study's latest run if it matches the current inputs; RunStoreError or ObservationError saying why not."""
    from forecast.data.observations import load_observations  # pandas: only when a run is looked for

    obs = load_observations(study)
    root = Path(runs_root or study.runs_path or default_root())
    return StoredRun.find(study=study, runs_root=root).check_inputs(study, obs.sha256)


def write_into_run(study: Study, runs_root: Path | None, result: PriorsResult, plots: Plots | None) -> PriorsResult:
    """``result`` written into the study's latest run if it matches (else a ``note`` says why not)."""
    try:
        run = matching_run(study, runs_root)
    except RunStoreError as e:  # no run, an unreadable one, or one of other inputs
        return replace(result, note=f"nothing written: {e}")
    except ObservationError as e:  # the observations do not validate, so no run can be matched to them
        return replace(
            result, note=f"nothing written: no run can be matched to observations that do not validate ({e})"
        )
    pngs = plots(result.to_dict()) if plots is not None else {}
    result = replace(result, run_dir=str(run.path), written=True, files={k: name for k, (name, _) in pngs.items()})
    for name, png in pngs.values():
        run.write_with(name, lambda tmp, png=png: tmp.write_bytes(png))
    run.write_json(PRIOR_PREDICTIVE, result)
    return result


__all__ = [
    "DISTINCT_THRESHOLD",
    "N_DRAWS",
    "PriorsResult",
    "describe_priors",
    "distinguishability",
    "hellinger",
    "predictive_quantities",
    "run_priors",
    "summarize",
]
