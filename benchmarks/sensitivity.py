"""Benchmark `forecast sensitivity` against one `forecast update` and against naive refitting.

Measured in one run, each step in a FRESH process (wall clock, ``time.perf_counter``):

1. ``update_s``: ``forecast update STUDY --quiet --json --runs-dir TMP``, run once first to
   warm the on-disk compile caches, then timed. Its run is the base of the grid.
2. ``grid_s``: ``forecast sensitivity STUDY --quiet --json --runs-dir TMP`` with the default
   grid (every variant reweighted by PSIS, refitted where Pareto k is too high, refits on the
   default pool), including power-scaling, prior odds and writing the results.

   Steps 1 and 2 alternate ``--repeat`` times (default 2) and the fastest of each is reported
   (all times are in the JSON): other work on the machine only ever adds time.
3. ``naive_s``: the same variants fitted naively, each in a FRESH process (this file
   re-invoked with ``--naive-worker``): imports, a model build and nutpie compile, one fit of
   the variant's hypothesis and its bridge-sampling log marginal likelihood; the unperturbed
   base fits each hypothesis the same way. This is the cheapest honest naive method (it refits
   only the changed hypothesis), and what a script run once per variant costs.
4. ``naive_in_process_s``: the same, all in ONE process with a fresh ``StudyModel`` (model
   build and compile) per variant. PyTensor and numba then reuse their in-memory caches, so
   after the first variant a "fresh" compile costs almost nothing: a stricter baseline that
   measures the fits alone.

Ratios: ``grid_vs_update = grid_s / update_s`` (target <= 3), ``speedup = naive_s / grid_s``
(target >= 5) and ``speedup_in_process = naive_in_process_s / grid_s``. The naive fits are also
compared with the grid's figures: for every variant, the leading hypothesis's posterior
probability, grid minus naive, and that difference over its Monte Carlo standard error.

``--naive-limit N`` fits only the first N variants naively (after the base), both ways, and
extrapolates from their mean time per variant; the output then says ``naive_extrapolated``.

Progress on stderr; stdout gets a summary and, as its LAST line, one JSON object with the
keys ``update_s``, ``grid_s``, ``naive_s``, ``naive_in_process_s``, ``naive_extrapolated``,
``n_variants``, ``n_refitted``, ``grid_vs_update``, ``speedup``, ``speedup_in_process``, ``pool``,
``max_abs_diff_leader_p``, ``max_abs_z`` (the largest grid-minus-naive difference over its Monte Carlo standard error),
``within_3_mcse`` and ``n_compared``, among others.

Run from the repository root::

    .venv/bin/python benchmarks/sensitivity.py                    # everything (~50 naive fits twice: ~45 min)
    .venv/bin/python benchmarks/sensitivity.py --naive-limit 6    # quicker, naive part extrapolated

Timings are wall clock on whatever else the machine is doing: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = Path("priors/turkey_nato.toml")
FORECAST = Path(sys.executable).parent / "forecast"
_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def timed(cmd: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout)


def naive_jobs(study, limit: int | None) -> list[tuple[str, object]]:
    """(key, hypothesis with the variant's priors): the base hypotheses, then the grid's variants."""
    from dataclasses import replace

    from forecast.workflows.sensitivity import GridSpec, build_grid

    variants = build_grid(study, GridSpec())[1:]
    jobs = [(f"base/{h.id}", h) for h in study.hypotheses]
    chosen = variants if limit is None else variants[:limit]
    return jobs + [(v.id, replace(study.hypothesis(v.hypothesis), priors=v.priors)) for v in chosen]


def naive_worker(study_path: str, runs_dir: str, which: str) -> None:
    """Fit grid variants, each with its own freshly built and compiled model; print JSON.

    ``which``: "all", a number N (the base and the first N variants), or "key=<job key>" (one).
    """
    from dataclasses import replace

    from forecast.data.cells import cell_data
    from forecast.data.observations import load_observations
    from forecast.fit.hypothesis import marginal_likelihood
    from forecast.fit.sampler import StudyModel, hypothesis_seed
    from forecast.runs.stored import StoredRun
    from forecast.spec.study import load_study
    from forecast.workflows.sensitivity import GridSpec, build_grid, load_base

    study = load_study(study_path)
    obs = load_observations(study)
    cells = cell_data(obs.table, study)
    run = StoredRun.find(study=study, runs_root=Path(runs_dir)).check_inputs(study, obs.sha256)
    settings = load_base(run, study).settings
    if which.startswith("key="):
        jobs = [j for j in naive_jobs(study, None) if j[0] == which[4:]]
    else:
        jobs = naive_jobs(study, None if which == "all" else int(which))
    out = {}
    t0 = time.perf_counter()
    for i, (key, h) in enumerate(jobs, start=1):
        t = time.perf_counter()
        model = StudyModel(study, cells)  # a fresh build and compile for every variant
        seed = hypothesis_seed(settings.seed, key)
        fit = model.fit(h, replace(settings, seed=seed))
        bridge = marginal_likelihood(model, h, fit, seed)
        out[key] = {
            "log_ml": bridge.log_ml,
            "se": bridge.se,
            "seconds": time.perf_counter() - t,
            "converged": fit.diagnostics.converged,
        }
        print(f"naive [{i}/{len(jobs)}] {key}: {out[key]['seconds']:.1f} s", file=sys.stderr, flush=True)
    n_total = len(build_grid(study, GridSpec())) - 1
    print(json.dumps({"fits": out, "seconds": time.perf_counter() - t0, "n_total_variants": n_total}))


def run_naive(study: Path, runs: Path, which: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--naive-worker", str(study), str(runs), which],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"naive worker failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, json.loads(proc.stdout.strip().splitlines()[-1])


def extrapolate(wall: float, fits: dict, n_total: int) -> tuple[float, bool]:
    """Total naive time for the whole grid from the fitted variants (exact when all were fitted)."""
    variant_fits = {k: v for k, v in fits.items() if not k.startswith("base/")}
    if len(variant_fits) >= n_total:
        return wall, False
    per_variant = sum(v["seconds"] for v in variant_fits.values()) / max(len(variant_fits), 1)
    return wall + per_variant * (n_total - len(variant_fits)), True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", type=Path, default=DEFAULT_STUDY)
    ap.add_argument("--naive-limit", type=int, default=None, help="Fit only N variants naively; extrapolate.")
    ap.add_argument("--repeat", type=int, default=2, help="Time update and grid N times each; report the fastest.")
    ap.add_argument("--naive-worker", nargs=3, metavar=("STUDY", "RUNS", "WHICH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_worker:
        naive_worker(*args.naive_worker)
        return

    with tempfile.TemporaryDirectory(prefix="forecast-bench-sens-") as tmp:
        runs = Path(tmp) / "runs"
        update = [str(FORECAST), "update", str(args.study), "--quiet", "--json", "--runs-dir", str(runs)]
        say("warm-up: forecast update (fills the compile caches)")
        timed(update)
        sensitivity = [str(FORECAST), "sensitivity", str(args.study), "--quiet", "--json", "--runs-dir", str(runs)]
        update_runs, grid_runs = [], []
        for i in range(args.repeat):  # alternate, so both see the same machine load
            say(f"timed ({i + 1}/{args.repeat}): forecast update")
            update_runs.append(timed(update)[0])
            say(f"  {update_runs[-1]:.1f} s")
            say(f"timed ({i + 1}/{args.repeat}): forecast sensitivity (default grid) on that run")
            seconds, grid = timed(sensitivity)
            grid_runs.append(seconds)
            say(
                f"  {seconds:.1f} s: {grid['n_variants']} variants, {grid['n_refitted']} refitted on "
                f"{grid['scaleout']['pool']}"
            )
        update_s, grid_s = min(update_runs), min(grid_runs)
        limit = "all" if args.naive_limit is None else str(args.naive_limit)
        say("timed: naive in one process (a fresh model build and compile per variant)")
        wall_a, naive = run_naive(args.study, runs, limit)
        say(f"  {wall_a:.1f} s")
        say("timed: naive, a fresh process per variant (build, compile, fit, bridge)")
        from forecast.spec.study import load_study

        keys = [k for k, _ in naive_jobs(load_study(args.study), None if limit == "all" else int(limit))]
        fresh = {}
        for i, key in enumerate(keys, start=1):
            seconds, out = run_naive(args.study, runs, f"key={key}")
            fresh[key] = {**out["fits"][key], "seconds": seconds}
            say(f"  [{i}/{len(keys)}] {key}: {seconds:.1f} s")

    fits = naive["fits"]
    n_total = naive["n_total_variants"]
    naive_in_process_s, extrapolated = extrapolate(wall_a, fits, n_total)
    naive_s, _ = extrapolate(sum(v["seconds"] for v in fresh.values()), fresh, n_total)
    n_variant_fits = len(fits) - len(grid["hypotheses"])

    # Agreement: the leader's posterior probability per variant, grid against naive refits.
    import numpy as np

    ids = [h["id"] for h in grid["hypotheses"]]
    prior = np.array([h["prior_probability"] for h in grid["hypotheses"]])
    leader = grid["verdict"]["leader"]
    base_lm = np.array([fits[f"base/{h}"]["log_ml"] for h in ids])
    diffs = []
    for row in grid["variants"][1:]:
        if row["id"] not in fits:
            continue
        lm = base_lm.copy()
        lm[ids.index(row["hypothesis"])] = fits[row["id"]]["log_ml"]
        w = np.log(prior) + lm
        p_naive = float(np.exp(w[ids.index(leader)] - np.logaddexp.reduce(w)))
        # first-order MC error of the naive probability, from its three bridge estimates
        se_lm = np.array([fits[f"base/{h}"]["se"] for h in ids])
        se_lm[ids.index(row["hypothesis"])] = fits[row["id"]]["se"]
        p = np.exp(w - np.logaddexp.reduce(w))
        jac = np.diag(p) - np.outer(p, p)
        se_naive = float(np.sqrt((jac**2) @ (se_lm**2))[ids.index(leader)])
        se = float(np.hypot(row["posterior_probabilities_se"][leader], se_naive))
        diff = row["posterior_probabilities"][leader] - p_naive
        diffs.append((diff, row["id"], row["method"], diff / se if se > 0 else float("inf")))
    worst = max(diffs, key=lambda d: abs(d[0])) if diffs else (float("nan"), None, None, float("nan"))
    worst_z = max(diffs, key=lambda d: abs(d[3])) if diffs else (float("nan"), None, None, float("nan"))

    result = {
        "update_s": update_s,
        "grid_s": grid_s,
        "update_runs_s": update_runs,
        "grid_runs_s": grid_runs,
        "naive_s": naive_s,
        "naive_in_process_s": naive_in_process_s,
        "naive_extrapolated": extrapolated,
        "naive_variants_fitted": n_variant_fits,
        "n_variants": grid["n_variants"],
        "n_refitted": grid["n_refitted"],
        "refitted": grid["refitted"],
        "pool": grid["scaleout"]["pool"],
        "grid_vs_update": grid_s / update_s,
        "speedup": naive_s / grid_s,
        "speedup_in_process": naive_in_process_s / grid_s,
        "max_abs_diff_leader_p": abs(worst[0]),
        "max_abs_diff_variant": worst[1],
        "max_abs_z": abs(worst_z[3]),
        "max_abs_z_variant": worst_z[1],
        "within_3_mcse": sum(abs(d[3]) <= 3 for d in diffs),
        "n_compared": len(diffs),
        "grid_timings": grid["timings"],
        "naive_all_converged": all(v["converged"] for v in [*fits.values(), *fresh.values()]),
        "naive_seconds_per_fit": {k: v["seconds"] for k, v in fits.items()},
        "naive_fresh_seconds_per_fit": {k: v["seconds"] for k, v in fresh.items()},
    }
    print(f"forecast update ({args.study.name}):  {update_s:8.1f} s")
    print(
        f"forecast sensitivity (default grid):  {grid_s:8.1f} s  ({grid['n_variants']} variants, "
        f"{grid['n_refitted']} refitted on {result['pool'] or 'no pool'})  = {result['grid_vs_update']:.2f} x update (target <= 3)"
    )
    note = f" (extrapolated from {n_variant_fits} variants)" if extrapolated else ""
    print(
        f"naive, a fresh process per variant:   {naive_s:8.1f} s{note}  -> grid is {result['speedup']:.1f} x faster "
        "(target >= 5)"
    )
    print(
        f"naive, one process (fresh model and compile per variant, PyTensor's in-memory caches shared): "
        f"{naive_in_process_s:.1f} s{note}  -> grid is {result['speedup_in_process']:.1f} x faster"
    )
    print(
        f"grid vs naive, leader's posterior probability: max |difference| {result['max_abs_diff_leader_p']:.3f} "
        f"({worst[1]}, {worst[2]}); max |difference| / MCSE {result['max_abs_z']:.2f} ({worst_z[1]}); "
        f"{result['within_3_mcse']} of {len(diffs)} variants within 3 MCSE"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
