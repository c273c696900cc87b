"""Benchmark what robustness costs `forecast update` (and, once it exists, `forecast brief`).

Measured in one run, each command in a FRESH process (wall clock, ``time.perf_counter``), on the
default study unless ``--study`` says otherwise:

1. ``plain_s``: ``forecast update STUDY --quiet --json --no-robustness --runs-dir TMP``: every
   hypothesis fitted, bridge sampling, LOO, the evidence variants, the run written.
2. ``robust_s``: the same with robustness (the default): besides all of the above, the study's
   declared class of reasonable priors (``[robustness]``; by default 48 prior variants of the
   default study) reweighted by PSIS over the fits in memory, refits on the compiled model where
   Pareto k says reweighting is unreliable, ranges, flips and prior odds.

Both run once untimed first (warm on-disk compile caches), then alternate ``--repeats`` times
(default 3); the median of each is the figure (every run's time is printed: this machine's speed
drifts by up to a third over a day, and alternating spreads the drift over both). ``ratio =
robust_s / plain_s``, target <= 2.5. The two commands' support figures (log marginal likelihoods,
posterior probabilities, LOO) must be identical for the same seed: checked and printed.

3. ``brief_s``: ``forecast brief STUDY`` end to end, the same way, when the command exists
   (``brief_ratio = brief_s / plain_s``, target <= 6); otherwise reported as not measured.

Progress on stderr; stdout gets a summary and, as its LAST line, one JSON object with the keys
``plain_s``, ``robust_s``, ``ratio``, ``target``, ``met``, ``plain_runs_s``, ``robust_runs_s``,
``robustness_in_process_s`` (the robust run's own robustness seconds), ``n_variants``,
``refits``, ``support_identical``, ``brief_s``, ``brief_ratio`` and ``machine_yardstick_s`` (a
fixed pure-Python loop's seconds at the start and the end: compare runs whose yardsticks agree).

Run from the repository root with the venv's interpreter::

    .venv/bin/python benchmarks/brief.py
    .venv/bin/python benchmarks/brief.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = Path("priors/turkey_nato.toml")
FORECAST = Path(sys.executable).parent / "forecast"
TARGET_RATIO = 2.5
TARGET_BRIEF_RATIO = 6.0
SUPPORT_KEYS = (
    "id",
    "log_marginal_likelihood",
    "log_marginal_likelihood_se",
    "posterior_probability",
    "posterior_probability_se",
    "elpd_loo",
    "elpd_loo_se",
)
_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Timed:
    seconds: float
    result: dict | None  # the --json output, when the command prints one


def run(cmd: list[str]) -> Timed:
    """Time one command end to end in a new process; raise with its stderr if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        result = None
    return Timed(seconds, result)


def update_cmd(study: Path, runs: Path, robustness: bool) -> list[str]:
    flag = [] if robustness else ["--no-robustness"]
    return [str(FORECAST), "update", str(study), "--quiet", "--json", "--runs-dir", str(runs), *flag]


def has_brief_command() -> bool:
    proc = subprocess.run([str(FORECAST), "brief", "--help"], cwd=ROOT, capture_output=True, text=True)
    return proc.returncode == 0


def machine_speed() -> float:
    """Seconds for a fixed pure-Python loop (best of 3): a yardstick for this machine's speed."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return best


def support(result: dict) -> list[tuple]:
    return [tuple(h[k] for k in SUPPORT_KEYS) for h in result["hypotheses"]]


def spread(seconds: list[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in seconds)


def measure(study: Path, repeats: int, tmp: Path) -> dict:
    speed_before = machine_speed()
    print(f"Machine yardstick (pure-Python loop, lower is faster): {speed_before:.2f} s at the start")
    runs = tmp / "runs"
    say("warming the compile caches: one untimed update with and one without robustness")
    run(update_cmd(study, runs, True))
    run(update_cmd(study, runs, False))
    plain: list[Timed] = []
    robust: list[Timed] = []
    for i in range(repeats):
        say(f"round {i + 1}/{repeats}: forecast update --no-robustness")
        plain.append(run(update_cmd(study, runs, False)))
        say(f"round {i + 1}/{repeats}: forecast update (with robustness)")
        robust.append(run(update_cmd(study, runs, True)))
    plain_s = statistics.median(t.seconds for t in plain)
    robust_s = statistics.median(t.seconds for t in robust)
    ratio = robust_s / plain_s
    r = robust[-1].result or {}
    rob = r.get("robustness") or {}
    identical = all(support(t.result) == support(plain[0].result) for t in plain + robust if t.result)

    brief_runs: list[float] = []
    if has_brief_command():
        say("forecast brief: one untimed run, then timed")
        brief_cmd = [str(FORECAST), "brief", str(study), "--quiet", "--runs-dir", str(runs)]
        run(brief_cmd)
        brief_runs = [run(brief_cmd).seconds for _ in range(repeats)]
    brief_s = statistics.median(brief_runs) if brief_runs else None

    print(f"\nStudy: {study}")
    print(
        f"forecast update --no-robustness   {plain_s:6.1f} s  [median of {repeats}: {spread([t.seconds for t in plain])} s]"
    )
    print(
        f"forecast update (robustness)      {robust_s:6.1f} s  [median of {repeats}: {spread([t.seconds for t in robust])} s]"
    )
    print(
        f"  robustness in process: {rob.get('seconds', float('nan')):.1f} s for {rob.get('n_variants')} variants, "
        f"{len(rob.get('refitted', []))} refitted"
    )
    print(
        f"ratio robust / plain: {ratio:.2f}x (target <= {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'})"
    )
    print(f"support figures identical with and without robustness (same seed): {identical}")
    if brief_s is not None:
        print(
            f"forecast brief end to end        {brief_s:6.1f} s  [median of {repeats}: {spread(brief_runs)} s] = "
            f"{brief_s / plain_s:.2f}x a plain update (target <= {TARGET_BRIEF_RATIO}x)"
        )
    else:
        print("forecast brief: not measured (no `forecast brief` command in this version)")
    if r.get("conclusion"):
        print(f"\nHeadline: {r['conclusion']}")
    speed_after = machine_speed()
    print(f"Machine yardstick: {speed_after:.2f} s at the end ({speed_before:.2f} s at the start)")
    return {
        "study": str(study),
        "plain_s": plain_s,
        "robust_s": robust_s,
        "ratio": ratio,
        "target": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
        "plain_runs_s": [t.seconds for t in plain],
        "robust_runs_s": [t.seconds for t in robust],
        "robustness_in_process_s": rob.get("seconds"),
        "n_variants": rob.get("n_variants"),
        "refits": len(rob.get("refitted", [])),
        "support_identical": identical,
        "brief_s": brief_s,
        "brief_ratio": brief_s / plain_s if brief_s is not None else None,
        "machine_yardstick_s": [speed_before, speed_after],
    }


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", type=Path, default=DEFAULT_STUDY, help="study file [default: the default study]")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each command (the median is the figure)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    tmp = Path(tempfile.mkdtemp(prefix="forecast-bench-brief-"))
    try:
        out = measure(args.study, args.repeats, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
