"""What `forecast sensitivity` returns: the variant rows summarised, and the result record.

``SensitivityResult.to_dict()`` is the ``--json`` object and the content of ``sensitivity.json``.
The summaries here are pure functions of the variant rows: each hypothesis's range of posterior
probabilities, the tornado (which prior moves the leader most) and the verdict (does the
leading hypothesis lead in every variant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forecast.runs.store import jsonable
from forecast.spec.study import Hypothesis

UNRELIABLE = "UNRELIABLE: at least one fit failed its convergence checks"


def probability_ranges(rows: list[dict], ids: list[str]) -> dict[str, dict]:
    """Per hypothesis: its base posterior probability and the lowest and highest over the rows."""
    out = {}
    base = rows[0]["posterior_probabilities"]
    for h in ids:
        values = [(r["posterior_probabilities"][h], r["id"]) for r in rows]
        lo, hi = min(values), max(values)
        out[h] = {"base": base[h], "min": lo[0], "max": hi[0], "min_variant": lo[1], "max_variant": hi[1]}
    return out


def tornado_rows(rows: list[dict], leader: str) -> list[dict]:
    """Per (hypothesis, perturbed prior): the range of the leader's posterior probability."""
    base = rows[0]["posterior_probabilities"][leader]
    groups: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for r in rows[1:]:
        groups.setdefault((r["hypothesis"], r["target"]), []).append((r["posterior_probabilities"][leader], r["id"]))
    out = []
    for (h, target), values in groups.items():
        lo, hi = min(values), max(values)
        out.append(
            {
                "hypothesis": h,
                "target": target,
                "low": min(lo[0], base),
                "high": max(hi[0], base),
                "low_variant": lo[1],
                "high_variant": hi[1],
                "swing": max(hi[0], base) - min(lo[0], base),
            }
        )
    return sorted(out, key=lambda t: -t["swing"])


def leader_verdict(
    rows: list[dict],
    leader: str,
    hyp: dict[str, Hypothesis],
    log_ml: np.ndarray,
    log_ml_se: np.ndarray,
    prior: np.ndarray,
    ids: list[str],
) -> dict:
    """Does ``leader`` lead in every variant? The flips, whether each is within MC error, a sentence."""
    flips = []
    for r in rows[1:]:
        if r["leader"] == leader:
            continue
        i, j = ids.index(leader), ids.index(r["leader"])
        lm = dict(zip(ids, log_ml, strict=True))
        lse = dict(zip(ids, log_ml_se, strict=True))
        lm[r["hypothesis"]] = r["log_marginal_likelihood"]
        lse[r["hypothesis"]] = r["log_marginal_likelihood_se"]
        gap = (np.log(prior[j]) + lm[r["leader"]]) - (np.log(prior[i]) + lm[leader])
        flips.append(
            {
                "variant": r["id"],
                "new_leader": r["leader"],
                "posterior_probabilities": r["posterior_probabilities"],
                "within_mc_error": bool(abs(gap) < 2 * math.hypot(lse[leader], lse[r["leader"]])),
            }
        )
    p = [r["posterior_probabilities"][leader] for r in rows]
    label = hyp[leader].label
    if not flips:
        text = (
            f"'{label}' leads in all {len(rows)} prior variants (its posterior probability ranges from "
            f"{min(p):.2f} to {max(p):.2f}): the conclusion does not depend on these prior choices."
        )
    else:
        names = ", ".join(f"{f['variant']} (-> '{hyp[f['new_leader']].label}')" for f in flips[:8])
        more = f" and {len(flips) - 8} more" if len(flips) > 8 else ""
        text = (
            f"'{label}' leads in {len(rows) - len(flips)} of {len(rows)} prior variants; it loses the lead in "
            f"{names}{more}. The conclusion depends on these prior choices."
        )
        if all(f["within_mc_error"] for f in flips):
            text += " Every flip is within two Monte Carlo standard errors: rerun with more --draws to settle it."
    return {"leader": leader, "stable": not flips, "flips": flips, "text": text}


def odds_text(odds: dict, leader: str, hyp: dict[str, Hypothesis]) -> str:
    """One sentence: the prior probability below which the leader stops leading."""
    o = odds[leader]
    if o.get("flip_prior") is None:
        return ""
    return (
        f"'{hyp[leader].label}' stays the most probable hypothesis as long as its prior probability is above "
        f"{o['flip_prior']:.3g} (now {o['prior_probability']:.3g}, others keeping their relative odds); below that "
        f"'{hyp[o['flip_against']].label}' leads. It needs a prior of {o['even_odds_prior']:.3g} for even posterior odds."
    )


@dataclass(frozen=True)
class SensitivityResult:
    """The three sensitivity analyses of one run (see forecast.workflows.sensitivity).

    ``variants`` are the rows of the grid, the base first; ``ranges``, ``tornado`` and
    ``verdict`` summarise them; ``prior_odds`` and ``psense`` are per hypothesis. Nested values
    are the JSON shapes of ``sensitivity.json`` (schema ``SENSITIVITY_SCHEMA``).
    """

    schema_version: int
    study: str
    study_path: str
    run_dir: str
    converged: bool
    grid: dict
    sampler: dict
    hypotheses: list[dict]
    base: dict
    variants: list[dict]
    ranges: dict[str, dict]
    tornado: list[dict]
    verdict: dict
    prior_odds: dict[str, dict]
    prior_odds_text: str
    psense: dict[str, list[dict]]
    psense_flags: list[dict]
    psense_threshold: float
    scaleout: dict
    files: dict[str, str]
    unreliable_variants: list[str]
    warning: str | None
    timings: dict[str, float]
    # Why `forecast update` ran first (no run of the study matched the current inputs), or None.
    ran_update: str | None = None

    @property
    def leader(self) -> str:
        return self.verdict["leader"]

    @property
    def stable(self) -> bool:
        """True when the leading hypothesis leads in every prior variant."""
        return bool(self.verdict["stable"])

    @property
    def n_variants(self) -> int:
        return len(self.variants)

    @property
    def refitted(self) -> list[str]:
        return [r["id"] for r in self.variants if r["method"] == "refitted"]

    def to_dict(self) -> dict:
        out = {
            "schema_version": self.schema_version,
            "study": self.study,
            "study_path": self.study_path,
            "run_dir": self.run_dir,
        }
        if self.ran_update is not None:
            out["ran_update"] = self.ran_update
        out |= {
            "converged": self.converged,
            "grid": self.grid,
            "sampler": self.sampler,
            "hypotheses": self.hypotheses,
            "base": self.base,
            "n_variants": self.n_variants,
            "n_refitted": len(self.refitted),
            "refitted": self.refitted,
            "variants": self.variants,
            "ranges": self.ranges,
            "tornado": self.tornado,
            "verdict": self.verdict,
            "prior_odds": self.prior_odds,
            "prior_odds_text": self.prior_odds_text,
            "psense": self.psense,
            "psense_flags": self.psense_flags,
            "psense_threshold": self.psense_threshold,
            "scaleout": self.scaleout,
            "files": self.files,
            "unreliable_variants": self.unreliable_variants,
        }
        if self.warning is not None:
            out["warning"] = self.warning
        out["timings"] = self.timings
        return jsonable(out)


__all__ = ["UNRELIABLE", "SensitivityResult", "leader_verdict", "odds_text", "probability_ranges", "tornado_rows"]
