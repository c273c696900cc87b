"""Benchmark `forecast import` on a GDELT-sized dump: time and peak memory, with the per-row figure.

Generates (once, cached under ``--cache``) a GDELT 2.0 style export of ``--rows`` rows (default
1,000,000; headerless, tab-separated, 61 columns, as GDELT ships them) in which ``--share`` of the
rows (default 1.5%) involve Turkey (TURGOV, TURMIL ... against USA, RUS, IGOWSTNAT, UKR, GEO and
others, many of them repeated reports of the same events on the same or the next day), the rest
other countries' events. Then imports it into a copy of the default study's observations
(``priors/turkey_nato.toml`` with the shipped ``data/cameo_mapping.toml``) in a FRESH process, so
that its peak resident memory (``ru_maxrss`` of the child) is the import's own, and prints::

    rows, seconds, microseconds per row, peak memory (MiB), rows imported / events / skipped by reason

and, as its last line, one JSON object with those figures. Target (issue 17): <= 30 s and <= 1 GB
for 1,000,000 rows on this 2-core machine. ``--gz`` imports the file gzip-compressed (as GDELT
ships it, zipped).

    .venv/bin/python benchmarks/import.py
    .venv/bin/python benchmarks/import.py --rows 200000 --gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "priors" / "turkey_nato.toml"

COUNTRIES = ["USA", "RUS", "CHN", "FRA", "DEU", "GBR", "IND", "BRA", "JPN", "ZAF", "NGA", "MEX", "CAN", "AUS"]
TUR_PARTNERS = ["USAGOV", "RUSGOV", "IGOWSTNAT", "UKRGOV", "GEOGOV", "USA", "RUSMIL", "CHN", "FRAGOV"]
SUFFIX = ["", "GOV", "MIL", "BUS", "MED", "OPP"]
CODES = [
    "010",
    "020",
    "036",
    "042",
    "043",
    "051",
    "057",
    "061",
    "062",
    "071",
    "111",
    "112",
    "120",
    "130",
    "163",
    "173",
    "190",
]
WORDS = ["minister", "talks", "visit", "deal", "trade", "pipeline", "s-400", "missile", "grain", "summit", "chief"]


def _quad(code: str) -> str:
    r = int(code[:2])
    return "1" if r <= 5 else "2" if r <= 8 else "3" if r <= 13 else "4"


def generate(path: Path, rows: int, share: float, seed: int = 20240105) -> None:
    """Write a GDELT 2.0 style export of ``rows`` rows; ``share`` of them involve Turkey."""
    rng = random.Random(seed)
    blank = [""] * 61
    with path.open("w", encoding="utf-8", newline="") as f:
        buf = []
        event = None
        for i in range(rows):
            v = list(blank)
            v[0] = str(1_100_000_000 + i)
            if rng.random() < share:
                # Turkey's events come in bursts of repeated reports of one event
                if event is None or rng.random() < 0.3:
                    day = 20240101 + rng.randrange(0, 28)
                    partner = rng.choice(TUR_PARTNERS)
                    code = rng.choice(CODES)
                    tur_first = rng.random() < 0.5
                    event = (day, partner, code, tur_first)
                day, partner, code, tur_first = event
                tur = "TUR" + rng.choice(SUFFIX)
                a1, a2 = (tur, partner) if tur_first else (partner, tur)
                day += rng.random() < 0.2
            else:
                day = 20240101 + rng.randrange(0, 28)
                a1 = rng.choice(COUNTRIES) + rng.choice(SUFFIX)
                a2 = rng.choice(COUNTRIES) + rng.choice(SUFFIX)
                code = rng.choice(CODES)
            v[1], v[2], v[3], v[4] = str(day), str(day // 100), str(day // 10000), "2024.0110"
            v[5], v[6], v[7] = a1, a1[:3] + " NAME", a1[:3]
            v[15], v[16], v[17] = a2, a2[:3] + " NAME", a2[:3]
            v[25] = "1" if rng.random() < 0.6 else "0"
            v[26], v[27], v[28] = code, code[:3], code[:2]
            v[29] = _quad(code)
            v[30] = f"{(1 if v[29] in '12' else -1) * rng.choice([1.0, 2.8, 3.4, 5.0, 7.0]):.1f}"
            v[31], v[32], v[33] = str(rng.randint(1, 20)), str(rng.randint(1, 8)), str(rng.randint(1, 20))
            v[34] = f"{rng.uniform(-8, 4):.4f}"
            v[59] = f"{day}{rng.randint(0, 23):02d}1500"
            site = rng.choice(["news.example", "wire.example", "daily.example", "times.example"])
            v[60] = f"https://{site}/{day}/{'-'.join(rng.sample(WORDS, 3))}-{rng.randint(1000, 9999999)}"
            buf.append("\t".join(v))
            if len(buf) >= 50_000:
                f.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            f.write("\n".join(buf) + "\n")


def worker(source: str, into: str, runs: str) -> None:
    """Run the import in this process and print its figures as JSON (the parent measures memory)."""
    from forecast.workflows.import_events import run_import

    t0 = time.perf_counter()
    result = run_import(
        source,
        STUDY,
        into=into,
        runs_root=Path(runs),
    )
    seconds = time.perf_counter() - t0
    d = result.to_dict()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "n_rows": d["n_rows"],
                "n_prefiltered": d["n_prefiltered"],
                "n_imported": d["n_imported"],
                "n_events": d["n_events"],
                "n_corroborating": d["n_corroborating"],
                "reasons": d["reasons"],
                "rows_report_bytes": Path(d["rows_report"]).stat().st_size if d["rows_report"] else 0,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--share", type=float, default=0.015)
    p.add_argument("--gz", action="store_true", help="import the dump gzip-compressed")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "forecast-import-bench")
    p.add_argument("--worker", nargs=3, metavar=("SOURCE", "INTO", "RUNS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    dump = args.cache / f"gdelt-{args.rows}-{args.share}.export.CSV"
    if not dump.exists():
        print(f"generating {args.rows:,} rows -> {dump}", file=sys.stderr)
        t = time.perf_counter()
        generate(dump.with_suffix(".tmp"), args.rows, args.share)
        dump.with_suffix(".tmp").rename(dump)
        print(f"  {time.perf_counter() - t:.1f} s, {dump.stat().st_size / 2**20:.0f} MiB", file=sys.stderr)
    source = dump
    if args.gz:
        source = dump.with_name(dump.name + ".gz")
        if not source.exists():
            with dump.open("rb") as fi, gzip.open(source, "wb", compresslevel=6) as fo:
                shutil.copyfileobj(fi, fo)
    with tempfile.TemporaryDirectory() as tmp:
        into = Path(tmp) / "events.csv"
        shutil.copy(REPO / "data" / "turkey_nato_events.csv", into)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--worker", str(source), str(into), str(Path(tmp) / "runs")],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures.update(
        {
            "file": source.name,
            "file_mib": round(source.stat().st_size / 2**20, 1),
            "process_seconds": round(wall, 2),
            "seconds": round(figures["seconds"], 2),
            "us_per_row": round(1e6 * figures["seconds"] / max(figures["n_rows"], 1), 2),
            "peak_mib": round(max(peak_kib, before) / 1024, 1),
        }
    )
    print(
        f"{figures['n_rows']:,} rows ({figures['file']}, {figures['file_mib']} MiB): {figures['seconds']} s in the "
        f"import ({figures['process_seconds']} s with start-up), {figures['us_per_row']} us/row, peak memory "
        f"{figures['peak_mib']} MiB"
    )
    print(
        f"  {figures['n_prefiltered']:,} rows dropped by the pre-filter; {figures['n_imported']:,} imported as "
        f"{figures['n_events']:,} events ({figures['n_corroborating']:,} corroborating reports); per-row report "
        f"{figures['rows_report_bytes'] / 1024:.0f} KiB"
    )
    print("  skipped: " + ", ".join(f"{k} {v:,}" for k, v in figures["reasons"].items()))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
