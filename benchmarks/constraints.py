"""Benchmark the constraint comparison (issue 15) on the default study, and its robustness.

In one process (the model compiled before anything is timed; wall clock, ``time.perf_counter``),
for each of ``--seeds`` run seeds (default 5: the default seed and the next four, fixed in advance;
a single seed measures mostly whether a fit happened to fail the gate and be retried, which any
fit does now and then):

1. ``encompassing_fit_s``: one fit of the default study's (priors/turkey_nato.toml) encompassing
   model, built as `forecast update` builds it (``fit_encompassing``: the encompassing hypothesis
   alone; 4 chains x (400 tune + 1500 draws), the convergence gate with its retry).
2. ``comparison_s``: the rest of the constraint comparison on that fit, computed after it (prior
   Monte Carlo with stepwise conditioning where needed, regions on prior and posterior draws,
   Bayes factors, probabilities); ``sequential_ratio_vs_one_fit = (fit + comparison) / fit``.
   ``fit_and_comparison_s``: the fit and the comparison as `forecast update` and `forecast
   constraints` run them, the prior Monte Carlo (which needs no data) on a thread of its own
   while the model samples; the same fit again (same seed, same draws: checked) and the same
   numbers (checked); ``ratio_vs_one_fit = fit_and_comparison / fit`` (target <= 1.2). The
   encompassing-prior robustness (x1.5 and /1.5 by reweighting) is timed apart
   (``robustness_s``).
3. ``each_constraint_hypothesis_s``: the alternative to the encompassing approach, each constraint
   hypothesis (the complement included) fitted separately with its own marginal likelihood: here a
   LOWER BOUND of its cost, one fit of the same encompassing model per hypothesis (its seed
   derived from the hypothesis id, the gate and retry as always) plus bridge sampling, each fit's
   bridge sampling while the next one samples (``fit_hypotheses``, as `forecast update` fits
   prior-specified hypotheses), without the truncation to the region that a real restricted fit
   needs (hard walls slow NUTS down, and its marginal likelihood needs the region's prior mass,
   the very Monte Carlo of step 2 again); ``speedup_vs_each_hypothesis =
   each_constraint_hypothesis_s / fit_and_comparison`` (target >= 2). For reference,
   ``separate_fits_s``: the study's prior-specified hypotheses as `forecast update` computes their
   support (``fit_hypotheses``: each fitted, bridge-sampled and LOO'd; a different model family
   with other priors, hence other sampling costs), ``speedup_vs_separate``.

Every seed's figures are printed, with its attempts (2 = the fit was retried); the targets are
read on the medians over the seeds (``median_ratio_vs_one_fit``,
``median_speedup_vs_each_hypothesis``).

4. At the default seed: robustness to a 1.5x wider prior: constraint-based probabilities with
   the encompassing prior widened 1.5x (every prior; by reweighting AND by a direct refit)
   against the base; and today's prior-specified probabilities when ONE hypothesis's priors are
   widened 1.5x (a direct refit of that hypothesis with its bridge-sampled marginal likelihood,
   the others as fitted), for each hypothesis in turn. The largest change of any probability is
   printed for both.

Stdout: a readable summary and, as its LAST line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecast.data.cells import cell_data  # noqa: E402
from forecast.data.observations import load_observations  # noqa: E402
from forecast.fit.hypothesis import fit_hypotheses, fit_hypothesis  # noqa: E402
from forecast.fit.sampler import SamplerSettings, StudyModel  # noqa: E402
from forecast.model.build import family_signature  # noqa: E402
from forecast.settings import DEFAULT_SEED  # noqa: E402
from forecast.spec.study import load_study  # noqa: E402
from forecast.stats.loo import posterior_probabilities  # noqa: E402
from forecast.workflows.constraints import (  # noqa: E402
    compare,
    encompassing_hypothesis,
    prior_masses_in_background,
)
from forecast.workflows.sensitivity.grid import scale_prior  # noqa: E402

# The default study states both kinds: its [[hypotheses]] and its [[constraint_hypotheses]].
CONSTRAINT_STUDY = PRIOR_STUDY = ROOT / "priors" / "turkey_nato.toml"
FACTOR = 1.5


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timing(seed: int, model: StudyModel, study, spec, enc, pmodel: StudyModel, pstudy) -> dict:
    """Figures 1-3 at one run seed (compiled models; nothing else differs between seeds)."""
    settings = SamplerSettings(seed=seed)
    say(f"seed {seed}: fitting the encompassing model")
    t0 = time.perf_counter()
    fit = model.fit(enc, settings)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = compare(study, spec, fit.trace.posterior, settings.seed, spec.prior_draws, factors=())
    t_cmp = time.perf_counter() - t0
    t0 = time.perf_counter()
    with_robustness = compare(study, spec, fit.trace.posterior, settings.seed, spec.prior_draws, factors=(FACTOR,))
    t_rob = time.perf_counter() - t0 - t_cmp
    say(f"seed {seed}: the comparison as `forecast update` runs it (the prior masses computed while the model samples)")
    t0 = time.perf_counter()
    prior = prior_masses_in_background(study, spec, settings.seed, spec.prior_draws)
    again = model.fit(enc, settings)
    pipelined = compare(study, spec, again.trace.posterior, settings.seed, spec.prior_draws, factors=(), prior=prior)
    t_pipe = time.perf_counter() - t0
    same = [h.posterior_probability for h in pipelined.hypotheses] == [h.posterior_probability for h in base.hypotheses]
    if not same or again.attempts != fit.attempts:
        raise SystemExit(f"seed {seed}: the pipelined comparison differs from the sequential one")
    say(f"seed {seed}: fitting each constraint hypothesis separately (lower bound: fit + bridge sampling)")
    t0 = time.perf_counter()
    # As `forecast update` fits prior-specified hypotheses: each judged while the next samples.
    one_by_one = {
        j.fit.hypothesis: j
        for j in fit_hypotheses(
            model, [dataclasses.replace(enc, id=h.id) for h in spec.hypotheses], settings, with_loo=False
        )
    }
    t_each = time.perf_counter() - t0
    say(f"seed {seed}: fitting each prior-specified hypothesis (fit, bridge sampling, LOO)")
    t0 = time.perf_counter()
    judged = {j.fit.hypothesis: j for j in fit_hypotheses(pmodel, pstudy.hypotheses, settings)}
    t_sep = time.perf_counter() - t0
    return {
        "seed": seed,
        "encompassing_fit_s": round(t_fit, 2),
        "encompassing_attempts": fit.attempts,
        "separate_attempts": {k: j.fit.attempts for k, j in judged.items()},
        "comparison_s": round(t_cmp, 3),
        "sequential_ratio_vs_one_fit": round((t_fit + t_cmp) / t_fit, 3),
        "fit_and_comparison_s": round(t_pipe, 3),
        "robustness_s": round(t_rob, 2),
        "ratio_vs_one_fit": round(t_pipe / t_fit, 3),
        "ratio_vs_one_fit_with_robustness": round((t_pipe + t_rob) / t_fit, 3),
        "each_constraint_hypothesis_s": round(t_each, 2),
        "each_constraint_hypothesis_attempts": {k: j.fit.attempts for k, j in one_by_one.items()},
        "speedup_vs_each_hypothesis": round(t_each / t_pipe, 2),
        "separate_fits_s": round(t_sep, 2),
        "speedup_vs_separate": round(t_sep / t_pipe, 2),
        "converged": fit.diagnostics.converged,
        # for the default seed's robustness section
        "_base": base,
        "_with_robustness": with_robustness,
        "_judged": judged,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="run seeds: the default seed and the next N-1 (5)")
    args = parser.parse_args(argv)
    seeds = [DEFAULT_SEED + k for k in range(max(1, args.seeds))]
    out: dict = {}

    study = load_study(CONSTRAINT_STUDY)
    spec = study.constraints
    obs = load_observations(study)
    cells = cell_data(obs.table, study)
    enc = encompassing_hypothesis(spec)
    model = StudyModel(dataclasses.replace(study, hypotheses=(enc,)), cells)
    model.compiled(family_signature(model.study, enc))
    pstudy = load_study(PRIOR_STUDY)
    pobs = load_observations(pstudy)
    pcells = cell_data(pobs.table, pstudy)
    pmodel = StudyModel(pstudy, pcells)
    for h in pstudy.hypotheses:
        pmodel.compiled(family_signature(pstudy, h))

    runs = [timing(seed, model, study, spec, enc, pmodel, pstudy) for seed in seeds]
    first = runs[0]
    settings = SamplerSettings(seed=first["seed"])
    base, with_robustness, judged = first["_base"], first["_with_robustness"], first["_judged"]
    per_seed = [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]
    out.update(per_seed[0])
    out.update(
        seeds=per_seed,
        median_ratio_vs_one_fit=round(float(np.median([r["ratio_vs_one_fit"] for r in per_seed])), 3),
        median_speedup_vs_each_hypothesis=round(
            float(np.median([r["speedup_vs_each_hypothesis"] for r in per_seed])), 2
        ),
        median_speedup_vs_separate=round(float(np.median([r["speedup_vs_separate"] for r in per_seed])), 2),
        constraint_probabilities={
            h.id: [round(h.posterior_probability, 4), round(h.posterior_probability_se, 4)] for h in base.hypotheses
        },
        constraint_bayes_factors={h.id: round(float(np.exp(h.bayes_factor.log_bf)), 4) for h in base.hypotheses},
    )
    base_p = {h.id: h.posterior_probability for h in base.hypotheses}

    # 4a: the encompassing prior widened 1.5x: reweighted (from compare) and refitted.
    wide = next(r for r in with_robustness.robustness if r.factor == FACTOR)
    wide_spec = dataclasses.replace(spec, priors={k: scale_prior(p, FACTOR) for k, p in spec.priors.items()})
    wide_enc = encompassing_hypothesis(wide_spec)
    say("refitting the encompassing model with its prior widened 1.5x")
    wide_fit = model.fit(wide_enc, settings)
    refit = compare(study, wide_spec, wide_fit.trace.posterior, settings.seed, spec.prior_draws, factors=())
    refit_p = {h.id: h.posterior_probability for h in refit.hypotheses}
    out.update(
        constraint_widened_reweighted=wide.probabilities,
        constraint_widened_reweighted_pareto_k=wide.pareto_k,
        constraint_widened_refit={k: round(v, 4) for k, v in refit_p.items()},
        constraint_max_change_reweighted=wide.max_change,
        constraint_max_change_refit=round(max(abs(refit_p[k] - base_p[k]) for k in base_p), 4),
    )

    ids = [h.id for h in pstudy.hypotheses]
    prior = [h.prior_probability for h in pstudy.hypotheses]
    log_ml = {k: judged[k].bridge.log_ml for k in ids}
    p_base = posterior_probabilities(np.array([log_ml[k] for k in ids]), np.zeros(len(ids)), np.array(prior))[0]
    out["prior_specified_probabilities"] = {k: round(float(p), 4) for k, p in zip(ids, p_base, strict=True)}

    # 4b: one prior-specified hypothesis's priors widened 1.5x (refit + bridge), in turn.
    moves = {}
    for h in pstudy.hypotheses:
        widened = dataclasses.replace(h, priors={k: scale_prior(p, FACTOR) for k, p in h.priors.items()})
        say(f"refitting '{h.id}' with its priors widened 1.5x")
        wf = fit_hypothesis(pmodel, widened, settings, with_loo=False)
        lm = dict(log_ml, **{h.id: wf.bridge.log_ml})
        p = posterior_probabilities(np.array([lm[k] for k in ids]), np.zeros(len(ids)), np.array(prior))[0]
        moves[h.id] = {
            "probabilities": {k: round(float(x), 4) for k, x in zip(ids, p, strict=True)},
            "max_change": round(float(np.max(np.abs(p - p_base))), 4),
        }
    out["prior_specified_widened_one"] = moves
    out["prior_specified_max_change"] = max(m["max_change"] for m in moves.values())

    print("Constraint comparison (priors/turkey_nato.toml):")
    for k, (p, se) in out["constraint_probabilities"].items():
        print(f"  {k:<15} P = {p:.3f} ± {se:.3f}   BF vs encompassing {out['constraint_bayes_factors'][k]:.3g}")
    print("Timing per run seed (attempts 2 = the fit failed the gate once and was refitted):")
    for r in per_seed:
        print(
            f"  seed {r['seed']}: encompassing fit {r['encompassing_fit_s']:.2f} s (attempts "
            f"{r['encompassing_attempts']}), comparison after it {r['comparison_s']:.3f} s "
            f"({r['sequential_ratio_vs_one_fit']:.3f}x); fit and comparison as `forecast update` runs them "
            f"{r['fit_and_comparison_s']:.2f} s -> {r['ratio_vs_one_fit']:.3f}x "
            f"one fit ({r['ratio_vs_one_fit_with_robustness']:.3f}x with the robustness); each constraint "
            f"hypothesis fitted separately {r['each_constraint_hypothesis_s']:.2f} s (attempts "
            f"{list(r['each_constraint_hypothesis_attempts'].values())}) -> {r['speedup_vs_each_hypothesis']:.2f}x "
            f"faster; the prior-specified hypotheses {r['separate_fits_s']:.2f} s (attempts "
            f"{list(r['separate_attempts'].values())}) -> {r['speedup_vs_separate']:.2f}x"
        )
    print(
        f"  median over {len(per_seed)} seeds: {out['median_ratio_vs_one_fit']:.3f}x one fit (target <= 1.2); "
        f"{out['median_speedup_vs_each_hypothesis']:.2f}x faster than fitting each constraint hypothesis separately "
        f"(target >= 2); {out['median_speedup_vs_separate']:.2f}x faster than the prior-specified hypotheses' fits"
    )
    print("Robustness to a 1.5x wider prior (largest change of any probability):")
    print(
        f"  constraint-based, encompassing prior widened: {out['constraint_max_change_reweighted']:.3f} reweighted "
        f"(Pareto k {wide.pareto_k:.2f}), {out['constraint_max_change_refit']:.3f} refitted"
    )
    for k, m in moves.items():
        print(f"  prior-specified, '{k}' widened: {m['max_change']:.3f}  {m['probabilities']}")
    print(f"  prior-specified base: {out['prior_specified_probabilities']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
