"""Benchmark: the cost of a 12-origin `forecast backtest` relative to one `forecast update`.

Both run on the default study (priors/turkey_nato.toml) as the CLI runs them, each in a FRESH
process (wall clock), into a temporary runs directory:

1. ``update_s``: ``forecast update --quiet --json``, run once before timing to warm the on-disk
   compile caches (both commands then start warm), then timed;
2. ``backtest_s``: ``forecast backtest --n-origins 12 --horizon 4 --quiet --json`` on that run
   (exact refits: 12 origins x 3 hypotheses = 36 fits, each with bridge sampling), timed;
3. ``backtest_approx_s`` (unless ``--skip-approx``): the same with ``--lfo approx``, which
   refits only where Pareto k > 0.7.

``ratio = backtest_s / update_s``. Without compilation the ideal ratio would be about 12 (twelve
times the fits of one update); compiling once for all origins brings it below that. The
backtest's own timings (compile seconds, number of fits) are printed too.

Progress goes to stderr; the LAST line of stdout is one JSON object with ``update_s``,
``backtest_s``, ``ratio``, ``backtest_fits``, ``backtest_compile_s``, ``backtest_approx_s``,
``approx_ratio`` and ``approx_fits``.

Run from the repository root::

    .venv/bin/python benchmarks/backtest.py            # ~15-30 min on 2 cores
    .venv/bin/python benchmarks/backtest.py --skip-approx --n-origins 4

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
FORECAST = Path(sys.executable).parent / "forecast"
STUDY = "priors/turkey_nato.toml"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(args: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([str(FORECAST), *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        say(proc.stderr)
        raise SystemExit(f"`forecast {' '.join(args)}` exited {proc.returncode}")
    return seconds, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-origins", type=int, default=12)
    ap.add_argument("--horizon", type=int, default=4)
    ap.add_argument("--skip-approx", action="store_true", help="Do not time --lfo approx.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = ["--runs-dir", tmp]
        say("warming the compile caches with one update ...")
        timed(["update", STUDY, "--quiet", "--json", *runs])
        say("timing `forecast update` ...")
        update_s, _ = timed(["update", STUDY, "--quiet", "--json", *runs])
        say(f"  {update_s:.1f} s")
        bt_args = ["backtest", STUDY, "--n-origins", str(args.n_origins), "--horizon", str(args.horizon)]
        say(f"timing `forecast {' '.join(bt_args[:1] + bt_args[2:])}` (exact refits) ...")
        backtest_s, bt = timed([*bt_args, "--quiet", "--json", *runs])
        say(f"  {backtest_s:.1f} s")
        approx_s, approx = None, None
        if not args.skip_approx:
            say("timing the same with --lfo approx ...")
            approx_s, approx = timed([*bt_args, "--lfo", "approx", "--quiet", "--json", *runs])
            say(f"  {approx_s:.1f} s")
    figures = {
        "update_s": round(update_s, 1),
        "backtest_s": round(backtest_s, 1),
        "ratio": round(backtest_s / update_s, 2),
        "n_origins": args.n_origins,
        "backtest_fits": bt["timings"]["fits"],
        "backtest_compile_s": round(bt["timings"].get("compile_s", float("nan")), 1),
        "backtest_approx_s": None if approx_s is None else round(approx_s, 1),
        "approx_ratio": None if approx_s is None else round(approx_s / update_s, 2),
        "approx_fits": None if approx is None else approx["timings"]["fits"],
    }
    print(f"forecast update (3 hypotheses):          {update_s:7.1f} s")
    print(
        f"forecast backtest, {args.n_origins} origins (exact):  {backtest_s:7.1f} s  = {figures['ratio']:.1f} x update "
        f"({figures['backtest_fits']} fits, compile {figures['backtest_compile_s']} s)"
    )
    if approx_s is not None:
        print(
            f"forecast backtest, {args.n_origins} origins (approx): {approx_s:7.1f} s  = {figures['approx_ratio']:.1f} x "
            f"update ({figures['approx_fits']} fits)"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
