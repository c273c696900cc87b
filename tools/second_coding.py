"""A blind second coding of the default data: draw the sample, then measure agreement.

    python tools/second_coding.py sample --n 60 --seed 16 > sample.csv   # what the second coder sees
    python tools/second_coding.py agree second.csv                       # Cohen's kappa per variable

The sample shows the second coder only what a coder works from: the date, the counterpart, the
description and the source (never the first coding's outcome, domain, initiator or grade). The
agreement step compares the second coder's outcome, domain and initiator with the file's.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "turkey_nato_events.csv"
SHOWN = ("id", "event_date", "counterpart", "description", "source")
CODED = ("outcome", "domain", "initiator")


def rows(path: Path = DATA) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sample(n: int, seed: int) -> list[dict]:
    data = rows()
    pick = sorted(np.random.default_rng(seed).choice(len(data), size=min(n, len(data)), replace=False))
    return [{k: data[i][k] for k in SHOWN} for i in pick]


def cohen_kappa(a: list[str], b: list[str]) -> tuple[float, float]:
    """Cohen's kappa and the observed agreement of two codings of the same items."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[c] * cb[c] for c in set(ca) | set(cb)) / n**2
    kappa = 1.0 if expected == 1 else (observed - expected) / (1 - expected)
    return kappa, observed


def agreement(second: Path) -> dict[str, dict]:
    first = {r["id"]: r for r in rows()}
    other = rows(second)
    out = {}
    for var in CODED:
        a = [first[r["id"]][var] for r in other]
        b = [r[var].strip() for r in other]
        kappa, observed = cohen_kappa(a, b)
        out[var] = {
            "n": len(other),
            "kappa": kappa,
            "agreement": observed,
            "disagreements": [
                (r["id"], first[r["id"]][var], r[var].strip()) for r in other if first[r["id"]][var] != r[var].strip()
            ],
        }
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--n", type=int, default=60)
    s.add_argument("--seed", type=int, default=16)
    a = sub.add_parser("agree")
    a.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "sample":
        w = csv.DictWriter(sys.stdout, fieldnames=SHOWN, lineterminator="\n")
        w.writeheader()
        w.writerows(sample(args.n, args.seed))
        return 0
    for var, r in agreement(args.second).items():
        print(
            f"{var}: n={r['n']} kappa={r['kappa']:.3f} agreement={r['agreement']:.3f} disagreements={len(r['disagreements'])}"
        )
        for d in r["disagreements"]:
            print(f"   {d[0]}: first {d[1]}, second {d[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
