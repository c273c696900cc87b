"""What `forecast sensitivity` returns: the variant rows summarised, and the result record.

``SensitivityResult.to_dict()`` is the ``--json`` object and the content of ``sensitivity.json``.
The summaries here are pure functions of the variant rows: each hypothesis's range of posterior
probabilities, the tornado (which prior moves the leader most) and the verdict (does the
leading hypothesis lead in every variant); and of the power-scaling rows: the diagnoses counted
against priorsense's threshold, and a note on how to read them when a hypothesis is stated as a
prior (``psense_diagnostics``, ``psense_note``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forecast.runs.store import jsonable
from forecast.spec.study import Hypothesis
from forecast.workflows.sensitivity.reweight import (
    FLAGS,
    PRIOR_DATA_CONFLICT,
    PSENSE_THRESHOLD,
    SHARED,
    STRONG_PRIOR,
    psense_diagnosis,
)

UNRELIABLE = "UNRELIABLE: at least one fit failed its convergence checks"

PSENSE_SOURCE = (
    "priorsense's power-scaling sensitivity (Kallioinen et al. 2024, Statistics and Computing 34:57), "
    "computed with arviz_stats.psense_summary"
)
PSENSE_RULE = (
    "sensitivity = the derivative of the cumulative Jensen-Shannon distance between the base and the "
    "power-scaled posterior with respect to log2(alpha), at alpha = 0.99 and 1.01; prior and likelihood "
    "sensitivity both >= {t:g}: potential prior-data conflict; prior > {t:g} > likelihood: potential strong "
    "prior / weak likelihood; otherwise not flagged"
)
# What each diagnosis means when the prior is a hypothesis's claim.
PSENSE_MEANING = {
    PRIOR_DATA_CONFLICT: "the observations pull this hyperparameter away from where the hypothesis puts it: the "
    "evidence disagrees with this part of its claim (already counted against it in its marginal likelihood)",
    STRONG_PRIOR: "the observations say little about this hyperparameter, so the hypothesis's statement decides "
    "it: this part of the claim is barely tested by the evidence",
}
# priorsense's own reading, for a prior every hypothesis states alike (an assumption, not a claim).
USUAL_MEANING = {
    PRIOR_DATA_CONFLICT: "the prior and the observations pull this hyperparameter in different directions",
    STRONG_PRIOR: "its posterior is mostly its prior: the observations say little about it",
}
SHARED_MEANING = (
    "every hypothesis states this prior alike, so it is an assumption they share, not part of any claim: "
    "read the flag as priorsense intends, as a question about that assumption"
)
NOT_FLAGGED = "not flagged"


def _diagnosis(row: dict, threshold: float) -> str | None:
    """A power-scaling row's diagnosis (computed by the rule for rows stored before it was recorded)."""
    if "diagnosis" in row:
        return row["diagnosis"]
    return psense_diagnosis(float(row["prior"]), float(row["likelihood"]), threshold)


def psense_diagnostics(psense: dict[str, list[dict]], threshold: float = PSENSE_THRESHOLD) -> dict:
    """The power-scaling rows counted by priorsense's diagnosis, overall and per hypothesis.

    ``shared_flagged``: flagged hyperparameters whose prior every hypothesis states alike (they
    are not part of a claim); ``rows`` with a ``prior_role`` recorded are needed for it.
    """
    counts = {PRIOR_DATA_CONFLICT: 0, STRONG_PRIOR: 0, NOT_FLAGGED: 0}
    by_hypothesis = {}
    shared: list[str] = []
    for h, rows in psense.items():
        mine = {PRIOR_DATA_CONFLICT: 0, STRONG_PRIOR: 0, NOT_FLAGGED: 0}
        for r in rows:
            d = _diagnosis(r, threshold) or NOT_FLAGGED
            mine[d] += 1
            name = f"{r['parameter']}.{r['group']}"
            if d != NOT_FLAGGED and r.get("prior_role") == SHARED and name not in shared:
                shared.append(name)
        by_hypothesis[h] = mine
        for k, v in mine.items():
            counts[k] += v
    n = sum(counts.values())
    return {
        "threshold": threshold,
        "rule": PSENSE_RULE.format(t=threshold),
        "source": PSENSE_SOURCE,
        "n_hyperparameters": n,
        "n_flagged": n - counts[NOT_FLAGGED],
        "counts": counts,
        "by_hypothesis": by_hypothesis,
        "shared_flagged": shared,
        "meaning": {
            "claim": dict(PSENSE_MEANING),
            "shared": {k: f"{v}; {SHARED_MEANING}" for k, v in USUAL_MEANING.items()},
        },
    }


def psense_flag_details(
    flags: list[dict], psense: dict[str, list[dict]], threshold: float = PSENSE_THRESHOLD
) -> list[dict]:
    """Each flag with its diagnosis in priorsense's words, its two sensitivities, its prior's role, its meaning."""
    rows = {(h, r["parameter"], r["group"]): r for h, rs in psense.items() for r in rs}
    out = []
    for f in flags:
        r = rows.get((f["hypothesis"], f["parameter"], f["group"]))
        if r is None:
            out.append(dict(f))
            continue
        d = _diagnosis(r, threshold) or next((k for k, v in FLAGS.items() if v == f.get("flag")), None)
        role = r.get("prior_role")
        meaning = f"{USUAL_MEANING[d]}; {SHARED_MEANING}" if role == SHARED and d else PSENSE_MEANING.get(d, "")
        out.append(
            f
            | {"diagnosis": d, "prior": r["prior"], "likelihood": r["likelihood"], "prior_role": role}
            | {"meaning": meaning}
        )
    return out


def psense_note(
    psense: dict[str, list[dict]], verdict: dict, labels: dict[str, str], n_variants: int, threshold: float
) -> str:
    """Why hypotheses stated as priors are expected to be prior-sensitive, and what decides defensibility.

    The count of flags is put in context: a hypothesis IS its priors, so sensitivity to them is
    the point; whether the conclusion can be defended is what the class of reasonable priors (the
    perturbation grid's verdict) says, not how many hyperparameters are flagged.
    """
    diag = psense_diagnostics(psense, threshold)
    n, flagged, c = diag["n_hyperparameters"], diag["n_flagged"], diag["counts"]
    if n == 0:
        return ""
    if flagged:
        head = (
            f"{flagged} of {n} hyperparameters are flagged by priorsense's rule (threshold {threshold:g}): "
            f"{c[PRIOR_DATA_CONFLICT]} {PRIOR_DATA_CONFLICT}, {c[STRONG_PRIOR]} {STRONG_PRIOR}. "
            "That is expected here and is not by itself a defect."
        )
    else:
        head = f"None of the {n} hyperparameters is flagged by priorsense's rule (threshold {threshold:g})."
    why = (
        " Each hypothesis IS its priors: its claim (a trend, a tilt, how much domains differ) is written as "
        "priors on these hyperparameters, so the posterior under a hypothesis is meant to depend on them; that "
        "dependence is what lets the evidence tell the hypotheses apart, and power-scaling measures it. Under a "
        "hypothesis, a prior-data conflict is the evidence disagreeing with that part of its claim (already "
        "counted against it in its marginal likelihood), and a strong prior / weak likelihood is a part of the "
        "claim the observations barely test."
    )
    shared = ""
    if diag["shared_flagged"]:
        names = ", ".join(diag["shared_flagged"][:8]) + (" ..." if len(diag["shared_flagged"]) > 8 else "")
        shared = (
            f" The exception is a prior every hypothesis states alike ({names}): it is a shared assumption, not a "
            "claim, so its flags are questions about that assumption, as priorsense means them."
        )
    leader = labels.get(verdict.get("leader"), verdict.get("leader"))
    flips = len(verdict.get("flips", []))
    if verdict.get("stable"):
        robust = (
            f" Whether the conclusion can be defended is decided by the class of reasonable priors, not by the "
            f"number of flags: '{leader}' leads in all {n_variants} variants of the perturbation grid, so it "
            "survives these prior choices."
        )
    else:
        robust = (
            f" Whether the conclusion can be defended is decided by the class of reasonable priors, not by the "
            f"number of flags: '{leader}' loses the lead in {flips} of {n_variants} variants of the perturbation "
            "grid, so the conclusion depends on how the priors were written (see the verdict)."
        )
    return head + why + shared + robust


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
    def psense_note(self) -> str:
        """How to read the power-scaling flags of hypotheses stated as priors (``psense_note``)."""
        labels = {h["id"]: h["label"] for h in self.hypotheses}
        return psense_note(self.psense, self.verdict, labels, self.n_variants, self.psense_threshold)

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
            "psense_flags": psense_flag_details(self.psense_flags, self.psense, self.psense_threshold),
            "psense_threshold": self.psense_threshold,
            "psense_diagnostics": psense_diagnostics(self.psense, self.psense_threshold),
            "psense_note": self.psense_note,
            "scaleout": self.scaleout,
            "files": self.files,
            "unreliable_variants": self.unreliable_variants,
        }
        if self.warning is not None:
            out["warning"] = self.warning
        out["timings"] = self.timings
        return jsonable(out)


__all__ = [
    "PSENSE_MEANING",
    "PSENSE_RULE",
    "UNRELIABLE",
    "SensitivityResult",
    "leader_verdict",
    "odds_text",
    "probability_ranges",
    "psense_diagnostics",
    "psense_flag_details",
    "psense_note",
    "tornado_rows",
]
