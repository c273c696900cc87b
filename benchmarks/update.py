"""Benchmark `forecast update` end to end, against a naive PyMC baseline, and as events grow.

What is measured, all in one run and each in a FRESH process (wall clock, `time.perf_counter`):

1. ``default_study_s``: ``forecast update priors/turkey_nato.toml --quiet --json --runs-dir TMP``
   (the venv's ``forecast``, found next to ``sys.executable``), run once to warm the on-disk
   compile caches, then timed ``--repeats`` times (default 3; the median is the figure, every
   run's time is printed). 4 chains x (400 tune + 1500 draws) per hypothesis, bridge
   sampling, PSIS-LOO and writing the run directory are all included.
2. ``baseline_s``: a plain PyMC script (this file re-invoked as ``--baseline-worker``; it does not
   import ``forecast``) that reads the same TOML and CSV with tomllib and pandas and, for each
   hypothesis, builds its own ``pm.Model`` with the priors as constants and the same structure
   as forecast/model.py (tilt, spread, trend and volatility per group, non-centred domain
   effects, random walk anchored at the reference quarter), with a reliability-weighted
   Bernoulli log-likelihood over EVENTS (a ``pm.Potential``, no sufficient statistics), and
   estimates the log marginal likelihood with ``pm.sample_smc`` at PyMC's defaults (2000
   particles, 2 chains on this 2-core machine), as a plain script would. It is warmed with a short run
   (``--baseline-warmup-draws``) so that both sides start with warm compile caches.
   ``speedup = baseline_s / default_study_s``; both methods' log marginal likelihoods are
   printed side by side as a cross-check. SMC's estimate is biased low with few particles in
   this ~160-dimensional model: for 'hedging' it rose from -103.3 (1000 particles) to -99.6
   (4000) and -98.2 (16000) towards forecast's -96.8 +- 0.2, so expect SMC to come out lower.
3. ``scaling``: the same timed ``forecast update`` (plus ``--allow-unconverged``, so that a fit
   failing the convergence gate still reports its timings and diagnostics; the work done is
   the same) on synthetic studies of 1k, 10k, 100k and 1M events (valid observation CSVs drawn
   from one fixed "true" state of the model's own logistic structure, with the counterparts,
   domains and a few Admiralty grades of the default study, dates in 2015Q1..2025Q4), each
   timed ``--repeats`` times (median) after a short untimed warm-up run of the same study (its
   parameterisation, hence its compiled model, follows the data), and ``scaling_ratio_1m_1k``
   (target <= 2). Each size prints its convergence retries (hypotheses refitted after failing the
   gate: target 0 at every size) and its time as a ratio to 1k events (target <= 1.3 at 10k and
   100k). For the largest size, a breakdown
   shows where the time goes: process start-up and imports, reading and validating the CSV,
   cell statistics, compiling, NUTS sampling (with retries and tree-depth saturation per
   hypothesis), and bridge sampling + LOO + writing. It combines the timed run's own
   ``timings`` with the pre-sampling stages and both compiles timed again in a fresh process
   (``--breakdown-worker``, no sampling, so it costs about one validation pass).

Progress goes to stderr. Stdout gets a readable summary and, as its LAST line, one JSON object
with the keys ``default_study_s``, ``baseline_s``, ``speedup``, ``scaling`` (event count as a
string -> seconds), ``scaling_ratio_1m_1k`` (null when skipped), ``scaling_ratios`` (event count
-> seconds / seconds at 1k, when 1k was run), ``scaling_cpu_s`` (event count -> CPU seconds of
the timed update process, all threads: a figure a loaded machine disturbs less), ``retries`` (event count -> convergence retries
summed over the hypotheses of the timed run, null if it reported none) and ``machine_yardstick_s``
(a fixed pure-Python loop's seconds at the start and the end: this machine's speed drifts by up
to a third over a day, so compare figures of runs whose yardsticks agree).

Run from the repository root with the venv's interpreter::

    .venv/bin/python benchmarks/update.py                       # everything (see the note below)
    .venv/bin/python benchmarks/update.py --quick               # 1k and 10k events, no baseline
    .venv/bin/python benchmarks/update.py --sizes 1000,10000 --skip-baseline

Timings are wall clock on whatever else the machine is doing: run it on an idle machine. The
1M-event update can take far longer than the others (see the breakdown it prints), so the full
run can take an hour or more; ``--sizes`` keeps it short.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forecast.settings import DEFAULT_SEED

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = Path("priors/turkey_nato.toml")
FORECAST = Path(sys.executable).parent / "forecast"
DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
CONVERGENCE_EXIT = 3  # forecast's exit code when the convergence gate fails
# Scaling runs still report their timings and diagnostics when a fit fails the gate (the same
# work is done either way: every fit and its retry, bridge sampling and LOO precede the gate).
ALLOW_UNCONVERGED = "--allow-unconverged"
SEED = DEFAULT_SEED
MIDDLE_RATIO_TARGET = 1.3  # 10k and 100k events: time / time at 1k (issue 17)
WARMUP_DRAWS = ("--draws", "100", "--tune", "100")

# Admiralty grades of the synthetic events and how often each occurs.
SYNTHETIC_GRADES = {"A1": 0.2, "B2": 0.4, "C3": 0.25, "B1": 0.1, "D4": 0.05}
# The study file's defaults (forecast/study.py), for a study without a [reliability] table.
DEFAULT_SOURCE = {"A": 1.0, "B": 0.9, "C": 0.75, "D": 0.5, "E": 0.25, "F": 0.5}
DEFAULT_CREDIBILITY = {"1": 1.0, "2": 0.9, "3": 0.75, "4": 0.5, "5": 0.25, "6": 0.5}

_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# forecast update in a fresh process


@dataclass(frozen=True)
class UpdateRun:
    seconds: float  # wall clock of the whole subprocess
    cpu_seconds: float  # its CPU time (user + system, all threads): steadier than wall clock on a loaded machine
    result: dict | None  # the --json output (None if the command failed)
    returncode: int
    stderr: str


# The fit of every hypothesis, as this benchmark has always measured it: the evidence variants and
# the robustness over the prior class (on by default since session 5) are measured apart, by
# benchmarks/brief.py (robustness: 1.42x a plain update on the default study).
CORE = ("--no-robustness", "--no-variants")


def forecast_update(study: Path, runs_dir: Path, *extra: str) -> UpdateRun:
    """Time ``forecast update STUDY --quiet --json --runs-dir RUNS --no-robustness --no-variants [EXTRA]``
    end to end in a new process."""
    cmd = [str(FORECAST), "update", str(study), "--quiet", "--json", "--runs-dir", str(runs_dir), *CORE, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, CONVERGENCE_EXIT):
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout) if proc.returncode == 0 else None
    return UpdateRun(seconds, cpu, result, proc.returncode, proc.stderr)


def count_retries(run: UpdateRun) -> int | None:
    """Hypotheses refitted after failing the convergence gate (attempts beyond the first)."""
    if run.result is None:
        return None
    return sum(h["attempts"] - 1 for h in run.result["hypotheses"])


def median_update(study: Path, runs_dir: Path, repeats: int, *extra: str) -> tuple[UpdateRun, list[float]]:
    """The run of median wall clock among ``repeats`` timed runs, and every run's seconds.

    This machine's speed drifts (by up to a third over a day, seconds from one run to the
    next), so one run says little about a 15-second target; the median of three says more.
    """
    runs = sorted((forecast_update(study, runs_dir, *extra) for _ in range(repeats)), key=lambda r: r.seconds)
    return runs[len(runs) // 2], [r.seconds for r in runs]


def spread(seconds: list[float]) -> str:
    return "" if len(seconds) < 2 else f" [median of {len(seconds)}: {', '.join(f'{x:.1f}' for x in seconds)} s]"


def describe(run: UpdateRun) -> str:
    """One line on where an update's time went, from its own --json timings."""
    if run.result is None:
        failed = [line.strip() for line in run.stderr.splitlines() if line.strip().startswith("- ")]
        return f"{run.seconds:7.1f} s wall, CONVERGENCE GATE FAILED (no timings reported): {' '.join(failed)[:400]}"
    r = run.result
    total, compile_s = r["timings"]["total_s"], r["timings"]["compile_s"]
    fits = [h["seconds"] for h in r["hypotheses"]]
    attempts = [h["attempts"] for h in r["hypotheses"]]
    text = (
        f"{run.seconds:7.1f} s wall ({run.cpu_seconds:.1f} s CPU) = {run.seconds - total:5.1f} s start-up/imports + {total:6.1f} s in run_update "
        f"(fits {' + '.join(f'{s:.1f}' for s in fits)} s, attempts {attempts}; {total - sum(fits):.1f} s "
        f"validation/cells/bridge/LOO/write; compiling {compile_s:.1f} s of it all)"
    )
    if not r["converged"]:
        problems = [
            f"'{h['id']}': {'; '.join(h['diagnostics']['problems'])}"
            for h in r["hypotheses"]
            if not h["diagnostics"]["converged"]
        ]
        text += " NOT CONVERGED: " + " | ".join(problems)
    return text


# --------------------------------------------------------------------------------------------
# Synthetic observations


def synthetic_study(template: Path, n: int, directory: Path, seed: int = SEED) -> Path:
    """Write ``n`` valid synthetic events and a copy of ``template`` that reads them."""
    import pandas as pd

    from forecast.spec.study import load_study

    study = load_study(template)
    counterparts = [(c, gi) for gi, g in enumerate(study.groups) for c in g.counterparts]
    domains = [d.id for d in study.domains]
    n_groups, n_quarters = len(study.groups), study.time.n_quarters
    ref = study.time.reference - study.time.start

    # One "true" state of the world for every size, with the model's own structure
    # (forecast/model.py); only the events drawn from it depend on n.
    truth = np.random.default_rng(seed)
    tilt = truth.normal(0.8, 0.6, n_groups)
    spread = truth.uniform(0.4, 1.2, n_groups)
    trend = truth.normal(0.0, 0.05, n_groups)
    volatility = np.full(n_groups, 0.1)
    z = truth.standard_normal((n_groups, len(domains)))
    walk = np.concatenate(
        [np.zeros((n_groups, 1)), np.cumsum(truth.standard_normal((n_groups, n_quarters - 1)), axis=1)], axis=1
    )
    walk = (walk - walk[:, ref : ref + 1]) * volatility[:, None]
    years = (np.arange(n_quarters) - ref) / 4.0

    rng = np.random.default_rng([seed, n])
    first = np.datetime64(f"{study.time.start // 4}-{3 * (study.time.start % 4) + 1:02d}-01")
    end_q = study.time.end + 1
    stop = np.datetime64(f"{end_q // 4}-{3 * (end_q % 4) + 1:02d}-01")
    dates = first + rng.integers(0, int((stop - first).astype(int)), n).astype("timedelta64[D]")
    months = dates.astype("datetime64[M]").astype(int)  # months since 1970-01
    t = (1970 * 4 + months // 3) - study.time.start

    c = rng.integers(len(counterparts), size=n)
    g = np.array([gi for _, gi in counterparts])[c]
    d = rng.integers(len(domains), size=n)
    eta = tilt[g] + spread[g] * z[g, d] + trend[g] * years[t] + walk[g, t]
    cooperative = rng.random(n) < 1.0 / (1.0 + np.exp(-eta))
    grades = rng.choice(list(SYNTHETIC_GRADES), size=n, p=list(SYNTHETIC_GRADES.values()))

    events = pd.DataFrame(
        {
            "id": [f"SYN-{i:07d}" for i in range(n)],
            "event_date": np.datetime_as_string(dates, unit="D"),
            "counterpart": np.array([name for name, _ in counterparts])[c],
            "domain": np.array(domains)[d],
            "outcome": np.where(cooperative, "cooperative", "conflictual"),
            "reliability": grades,
            "description": "synthetic event",
            "source": "benchmarks/update.py",
        }
    )
    csv = directory / f"events_{n}.csv"
    events.to_csv(csv, index=False)
    text = without_constraint_hypotheses(template.read_text(encoding="utf-8"))
    text, count = re.subn(r"(?m)^observations\s*=.*$", f"observations = {json.dumps(str(csv))}", text)
    if count != 1:
        raise ValueError(f"{template}: expected one 'observations = ...' line, found {count}")
    toml = directory / f"study_{n}.toml"
    toml.write_text(text, encoding="utf-8")
    return toml


def without_constraint_hypotheses(text: str) -> str:
    """The study's TOML without its constraint hypotheses and their encompassing model's tables.

    The scaling runs time the fits of the prior-specified hypotheses, as they always have; the
    constraint comparison (one more fit, of a wider model, plus prior masses) is measured with the
    default study's own figure.
    """
    dropped = re.compile(r"^\[\[?\s*(constraint_hypotheses|encompassing)\b")
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skipping = bool(dropped.match(line))
        if not skipping:
            out.append(line)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Breakdown: where one update's time goes


def breakdown_worker(study_path: str) -> dict:
    """Time the stages before sampling, and both compiles, in a fresh process (no sampling).

    Run after the timed update, so the compile caches are as warm as they were for it.
    """
    t0 = time.perf_counter()
    import nutpie  # noqa: F401  -- imported up front so that import time is not counted as compile time
    import pandas as pd
    import pymc  # noqa: F401

    from forecast.data.cells import cell_data
    from forecast.data.observations import load_observations, read_with_arrow
    from forecast.fit.sampler import StudyModel
    from forecast.model.build import family_signature
    from forecast.spec.study import load_study

    out: dict = {"import_s": time.perf_counter() - t0}
    t = time.perf_counter()
    study = load_study(study_path)
    out["load_study_s"] = time.perf_counter() - t
    t = time.perf_counter()
    # The file is in the page cache after the timed run; this is parsing alone, as load_observations does.
    table = read_with_arrow(Path(study.observations_path).read_bytes())
    if table is None:  # Arrow refused the file; forecast falls back to pandas' C parser
        pd.read_csv(study.observations_path, dtype=str, keep_default_na=False)
    out["read_csv_s"] = time.perf_counter() - t
    t = time.perf_counter()
    obs = load_observations(study)
    out["load_observations_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cells = cell_data(obs.table, study)
    out["cell_data_s"] = time.perf_counter() - t
    model = StudyModel(study, cells)
    first = study.hypotheses[0]
    t = time.perf_counter()
    model.compiled(family_signature(study, first))
    out["nutpie_compile_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model.log_posterior(first)(np.zeros((1, model.compiled(family_signature(study, first))[1].n_dim)))
    out["logp_compile_s"] = time.perf_counter() - t
    out.update(n_observations=obs.n, n_cells=cells.n_cells, n_patterns=len(cells.pattern_count))
    return out


def breakdown(study: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--breakdown-worker", str(study)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"breakdown worker exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_breakdown(run: UpdateRun, b: dict) -> None:
    """Split a timed update's wall clock with its own timings and the worker's stage timings."""
    print(f"Breakdown, {b['n_observations']} events ({b['n_cells']} cells, {b['n_patterns']} LOO patterns):")
    if run.result is None:
        print("  (the timed run failed its convergence gate, so it reported no timings)")
        return
    r = run.result
    total = r["timings"]["total_s"]
    fits = [h["seconds"] for h in r["hypotheses"]]
    load = b["load_study_s"] + b["load_observations_s"]
    rest = total - sum(fits) - load - b["cell_data_s"] - b["logp_compile_s"]
    rows = [
        ("process start-up + imports (wall - run_update)", run.seconds - total),
        ("load study + read and validate the CSV *", load),
        (
            f"    reading the CSV {b['read_csv_s']:.1f} s, checks {b['load_observations_s'] - b['read_csv_s']:.1f} s *",
            None,
        ),
        ("cell statistics (cell_data) *", b["cell_data_s"]),
        ("compile the nutpie model *", b["nutpie_compile_s"]),
        ("NUTS sampling, all hypotheses incl. retries", sum(fits) - b["nutpie_compile_s"]),
        *[
            (
                f"    '{h['id']}': {h['seconds']:.1f} s, attempts {h['attempts']}, "
                f"tree depth saturated {h['diagnostics']['treedepth_saturated']:.0%}",
                None,
            )
            for h in r["hypotheses"]
        ],
        ("compile the batched log posterior (bridge) *", b["logp_compile_s"]),
        ("bridge sampling + PSIS-LOO + writing the run (rest)", rest),
        ("total (wall clock)", run.seconds),
    ]
    for label, s in rows:
        print(f"  {label:<58} {s:8.2f} s" if s is not None else f"  {label}")
    print("  * measured again in a fresh process after the timed run (same warm caches)")


# --------------------------------------------------------------------------------------------
# Naive baseline: a plain PyMC script, per-event likelihood, SMC marginal likelihood


def _quarter(text: str) -> int:
    year, q = text.split("Q")
    return int(year) * 4 + int(q) - 1


def _last_finite_per_chain(values) -> list[float]:
    """The log marginal likelihood estimate of each chain: the last finite entry over stages.

    PyMC 6.4 stores a (chain, stage) object array (NaN first); older versions an object
    array over chains of per-stage lists. Both are handled.
    """
    values = np.asarray(values, dtype=object)
    out = []
    for row in values.reshape(values.shape[0], -1):
        flat = [float(x) for e in row for x in np.ravel(np.asarray(e, dtype=float))]
        finite = [x for x in flat if np.isfinite(x)]
        out.append(finite[-1] if finite else float("nan"))
    return out


def naive_smc_baseline(study_path: str, draws: int, chains: int, cores: int, seed: int) -> dict:
    """Per hypothesis: its own pm.Model, per-event weighted Bernoulli Potential, pm.sample_smc."""
    import logging
    import tomllib
    import warnings

    import pandas as pd
    import pymc as pm
    import pytensor.tensor as pt

    logging.getLogger("pymc").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    path = Path(study_path)
    spec = tomllib.loads(path.read_text(encoding="utf-8"))
    groups = [g["id"] for g in spec["groups"]]
    group_of = {c: i for i, g in enumerate(spec["groups"]) for c in g["counterparts"]}
    domain_of = {d["id"]: i for i, d in enumerate(spec["domains"])}
    time_spec = spec["time"]
    start, end = _quarter(time_spec["start"]), _quarter(time_spec["end"])
    reference = _quarter(time_spec["reference"]) if "reference" in time_spec else (start + end) // 2
    components = time_spec.get("components", ["trend", "random_walk"])
    n_q, ref = end - start + 1, reference - start
    years = (np.arange(n_q) - ref) / 4.0

    events = pd.read_csv(path.parent / spec["study"]["observations"], dtype=str, keep_default_na=False)
    date = pd.to_datetime(events["event_date"].str.strip(), format="%Y-%m-%d")
    t = ((date.dt.year * 4 + (date.dt.month - 1) // 3) - start).to_numpy()
    g = events["counterpart"].str.strip().map(group_of).to_numpy(dtype=int)
    d = events["domain"].str.strip().map(domain_of).to_numpy(dtype=int)
    y = (events["outcome"].str.strip().str.lower() == "cooperative").to_numpy(dtype=float)
    reliability = spec.get("reliability", {})
    source = reliability.get("source", DEFAULT_SOURCE)
    credibility = reliability.get("credibility", DEFAULT_CREDIBILITY)
    grade = events["reliability"].str.strip().str.upper()
    w = np.array([source[x[0]] * credibility[x[1:]] if re.fullmatch(r"[A-F][1-6]", x) else float(x) for x in grade])

    out = []
    for h in spec["hypotheses"]:
        priors = h["priors"]

        def per_group(param: str, priors=priors):
            rvs = []
            for gid in groups:
                p = priors[param].get(gid, priors[param].get("all"))
                rvs.append(getattr(pm, p["dist"])(f"{param}__{gid}", **p["kwargs"]))
            return pt.stack(rvs)

        with pm.Model():
            tilt, spread = per_group("tilt"), per_group("spread")
            z = pm.Normal("domain_z", 0.0, 1.0, shape=(len(groups), len(domain_of)))
            eta = tilt[g] + spread[g] * z[g, d]
            if "trend" in components:
                eta = eta + per_group("trend")[g] * years[t]
            if "random_walk" in components and n_q > 1:
                volatility = per_group("volatility")
                steps = pm.Normal("rw_z", 0.0, 1.0, shape=(len(groups), n_q - 1))
                walk = pt.concatenate([pt.zeros((len(groups), 1)), pt.cumsum(steps, axis=1)], axis=1)
                walk = (walk - walk[:, ref : ref + 1]) * volatility[:, None]
                eta = eta + walk[g, t]
            # Reliability-weighted Bernoulli log-likelihood, one term per event.
            pm.Potential("weighted_loglik", pt.sum(w * (-y * pt.softplus(-eta) - (1.0 - y) * pt.softplus(eta))))
            t0 = time.perf_counter()
            trace = pm.sample_smc(
                draws=draws,
                chains=chains,
                cores=cores,
                random_seed=seed,
                progressbar=False,
                compute_convergence_checks=False,
            )
            seconds = time.perf_counter() - t0
        per_chain = _last_finite_per_chain(trace.sample_stats["log_marginal_likelihood"].values)
        print(
            f"  baseline: '{h['id']}' SMC in {seconds:.1f} s, log ML per chain {per_chain}", file=sys.stderr, flush=True
        )
        out.append({"id": h["id"], "log_ml_chains": per_chain, "log_ml": float(np.mean(per_chain)), "seconds": seconds})
    return {"n_events": len(events), "hypotheses": out}


def baseline(study: Path, draws: int, chains: int, cores: int) -> tuple[float, dict]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--baseline-worker",
        str(study),
        str(draws),
        str(chains),
        str(cores),
        str(SEED),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # its progress goes to our stderr
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"baseline worker exited with {proc.returncode}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def print_cross_check(forecast_result: dict, smc: dict) -> None:
    smc_by_id = {h["id"]: h for h in smc["hypotheses"]}
    print("Log marginal likelihoods (forecast: bridge sampling on NUTS draws; baseline: SMC, mean over chains):")
    print(f"  {'hypothesis':<14} {'forecast':>18} {'SMC':>10}  {'SMC chains':<24} {'difference':>10}")
    for h in forecast_result["hypotheses"]:
        s = smc_by_id[h["id"]]
        chains = ", ".join(f"{x:.2f}" for x in s["log_ml_chains"])
        print(
            f"  {h['id']:<14} {h['log_marginal_likelihood']:>9.2f} ± {h['log_marginal_likelihood_se']:<6.2f} "
            f"{s['log_ml']:>10.2f}  {chains:<24} {h['log_marginal_likelihood'] - s['log_ml']:>+10.2f}"
        )


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        default=None,
        help="comma-separated event counts for the scaling runs ('' for none) [default: 1000,10000,100000,1000000]",
    )
    ap.add_argument("--skip-baseline", action="store_true", help="do not run the naive PyMC/SMC baseline")
    ap.add_argument("--skip-breakdown", action="store_true", help="no stage breakdown for the largest size")
    ap.add_argument("--quick", action="store_true", help="sizes 1000,10000, no baseline, no breakdown")
    ap.add_argument(
        "--baseline-draws", type=int, default=2000, help="SMC particles per chain [default: 2000, PyMC's default]"
    )
    ap.add_argument("--baseline-chains", type=int, default=2, help="SMC chains [default: 2, PyMC's default on 2 cores]")
    ap.add_argument("--baseline-cores", type=int, default=2, help="SMC processes [default: 2]")
    ap.add_argument(
        "--baseline-warmup-draws",
        type=int,
        default=100,
        help="particles of the untimed warm-up run of the baseline (0: no warm-up) [default: 100]",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs per figure (the default study and each size); the median is reported [default: 3]",
    )
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (synthetic data, runs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.skip_baseline = args.skip_breakdown = True
        args.repeats = 1
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    else:
        args.sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    return args


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    if not FORECAST.is_file():
        raise SystemExit(
            f"{FORECAST} not found: run this with the venv's python (.venv/bin/python benchmarks/update.py)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="forecast-bench-"))
    say(f"temporary directory {tmp}")
    try:
        return measure(args, tmp)
    finally:
        if args.keep_tmp:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def machine_speed() -> float:
    """Seconds for a fixed pure-Python loop (best of 3): a yardstick for this machine's speed.

    The machine's speed drifts by a third over a day (shared hardware); printed at the start and
    end of a run, it says whether two runs' figures can be compared, and how.
    """
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return best


def measure(args: argparse.Namespace, tmp: Path) -> dict:
    runs = tmp / "runs"
    speed_before = machine_speed()
    print(f"Machine yardstick (pure-Python loop, lower is faster): {speed_before:.2f} s at the start")

    # 1. The default study.
    say("default study: warm-up run (fills the compile caches)")
    warm = forecast_update(DEFAULT_STUDY, runs)
    say(f"  warm-up: {describe(warm)}")
    say(f"default study: timed run{'s' if args.repeats > 1 else ''} ({args.repeats})")
    default, seconds = median_update(DEFAULT_STUDY, runs, args.repeats)
    say(f"  timed:   {describe(default)}{spread(seconds)}")
    print(f"Default study ({DEFAULT_STUDY}): {describe(default)}{spread(seconds)}")

    # 2. The naive baseline.
    baseline_s = speedup = None
    if not args.skip_baseline:
        if args.baseline_warmup_draws:
            say(f"baseline: warm-up run ({args.baseline_warmup_draws} particles, untimed)")
            baseline(ROOT / DEFAULT_STUDY, args.baseline_warmup_draws, args.baseline_chains, args.baseline_cores)
        say(f"baseline: timed run (pm.sample_smc, {args.baseline_draws} particles x {args.baseline_chains} chains)")
        baseline_s, smc = baseline(ROOT / DEFAULT_STUDY, args.baseline_draws, args.baseline_chains, args.baseline_cores)
        speedup = baseline_s / default.seconds
        print(
            f"Naive baseline (per-event Potential, pm.sample_smc, {smc['n_events']} events): {baseline_s:.1f} s wall; "
            f"speedup {speedup:.1f}x"
        )
        if default.result is not None:
            print_cross_check(default.result, smc)

    # 3. Scaling with synthetic events.
    scaling: dict[str, float] = {}
    scaling_cpu: dict[str, float] = {}
    retries: dict[str, int | None] = {}
    if args.sizes:
        studies, timed = {}, {}
        for n in args.sizes:
            t0 = time.perf_counter()
            studies[n] = synthetic_study(ROOT / DEFAULT_STUDY, n, tmp)
            say(f"synthetic study with {n} events written in {time.perf_counter() - t0:.1f} s")
        print(f"Scaling (synthetic events; wall clock of a fresh `forecast update ... {ALLOW_UNCONVERGED}` process):")
        for n in args.sizes:
            # The model's parameterisation follows the data (forecast/model.py), so each size may
            # compile its own structure: a short untimed run warms its compile cache, as the
            # default study's warm-up run does.
            say(f"scaling: warm-up run, {n} events ({' '.join(WARMUP_DRAWS)}, untimed)")
            forecast_update(studies[n], runs, ALLOW_UNCONVERGED, *WARMUP_DRAWS)
            say(f"scaling: timed run{'s' if args.repeats > 1 else ''} ({args.repeats}), {n} events")
            run, seconds = median_update(studies[n], runs, args.repeats, ALLOW_UNCONVERGED)
            timed[n] = run
            scaling[str(n)] = run.seconds
            scaling_cpu[str(n)] = run.cpu_seconds
            retries[str(n)] = count_retries(run)
            say(f"  {n}: {describe(run)}{spread(seconds)}")
            print(f"  {n:>9} events: {describe(run)}{spread(seconds)}; retries {retries[str(n)]}")
        if not args.skip_breakdown:
            largest = max(args.sizes)
            say(f"breakdown: stage timings before sampling and compiles ({largest} events)")
            print_breakdown(timed[largest], breakdown(studies[largest]))

    ratios = {n: s / scaling["1000"] for n, s in scaling.items()} if "1000" in scaling else {}
    if ratios:
        print(
            "Time / time at 1k events: "
            + ", ".join(f"{int(n):,}: {r:.2f}" for n, r in ratios.items() if n != "1000")
            + f" (targets <= {MIDDLE_RATIO_TARGET} at 10k and 100k, <= 2 at 1M); retries per size "
            + ", ".join(f"{int(n):,}: {r}" for n, r in retries.items())
            + " (target 0)"
        )
    if "1000" in scaling_cpu:
        print(
            "CPU time / CPU time at 1k events (steadier on a loaded machine): "
            + ", ".join(f"{int(n):,}: {c / scaling_cpu['1000']:.2f}" for n, c in scaling_cpu.items() if n != "1000")
        )
    ratio = ratios.get("1000000")
    if ratio is not None:
        print(f"Scaling ratio 1M / 1k events: {ratio:.2f} (target <= 2)")
    speed_after = machine_speed()
    print(f"Machine yardstick: {speed_after:.2f} s at the end ({speed_before:.2f} s at the start)")
    return {
        "default_study_s": default.seconds,
        "baseline_s": baseline_s,
        "speedup": speedup,
        "scaling": scaling,
        "scaling_ratio_1m_1k": ratio,
        "scaling_ratios": ratios,
        "scaling_cpu_s": scaling_cpu,
        "retries": retries,
        "machine_yardstick_s": [speed_before, speed_after],
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-worker":
        study_arg, draws_arg, chains_arg, cores_arg, seed_arg = sys.argv[2:7]
        report = naive_smc_baseline(study_arg, int(draws_arg), int(chains_arg), int(cores_arg), int(seed_arg))
    elif len(sys.argv) > 1 and sys.argv[1] == "--breakdown-worker":
        report = breakdown_worker(sys.argv[2])
    else:
        report = main(sys.argv[1:])
    print(json.dumps(report), flush=True)
