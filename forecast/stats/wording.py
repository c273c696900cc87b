"""Words analysts use: how likely (ICD 203), how strong the evidence (Jeffreys), how confident.

Pure functions of numbers (nothing here imports from forecast); the headline of `forecast update`
is worded with them. Two separate statements, as the US intelligence community's ICD 203 keeps
them apart: a *likelihood* word for a probability, and a *confidence* level in the judgement.

**Likelihood** (ICD 203's scale), for a probability p: almost no chance (below 5%), very unlikely
(5-20%), unlikely (20-45%), roughly even chance (45-55%), likely (55-80%), very likely (80-95%),
almost certain (above 95%). ICD 203 states the bands as 1-5%, ..., 95-99%; p below 1% or above 99%
keeps the end word. A value on a boundary takes the word nearer to even chance (0.80 is likely,
0.20 unlikely, 0.45 and 0.55 roughly even chance), so the scale is symmetric: the word for 1 - p
is the opposite of the word for p.

**Strength of evidence**: the Bayes factor of the leading hypothesis against the runner-up on
Jeffreys' scale: below 1 none, 1-3 anecdotal, 3-10 moderate, 10-30 strong, 30-100 very strong,
above 100 extreme. A Bayes factor below 3 is called weak evidence, "not enough to choose between
them", and the leader is said to be leaned towards, never favoured.

**Confidence** (high / moderate / low) is the lowest level that any of these criteria allows:

1. *Strength of evidence*: a Bayes factor of at least 10 (strong or more) allows high; 3 to 10
   (moderate) at most moderate; below 3 (anecdotal or none) only low.
2. *Robustness* over the study's declared class of reasonable priors and evidence variants
   (``[robustness]``): if the leading hypothesis leads in every variant and its probability
   varies by at most 0.25 over them (max - min; about one band of the likelihood scale), high is
   allowed; if it leads in every variant over a wider range, at most moderate; if another
   hypothesis leads in some variant, only low. Not checked: at most moderate.
3. *Monte Carlo error*: if the log Bayes factor of the leader against the runner-up is within two
   Monte Carlo standard errors of zero, the order itself is in doubt: only low.
4. *Predictive accuracy* (PSIS-LOO): if the leader also predicts left-out observations best, no
   limit; if another hypothesis predicts better but by at most two standard errors of the
   difference, at most moderate; by more than two, only low.
5. A fit that failed its convergence or marginal-likelihood checks: only low.

So a weak Bayes factor is never more than low confidence, and a leader that is not robust to the
declared class is never high.

**Two comparisons of the same claims.** A study may state its hypotheses twice: as sets of priors
(each judged by its own marginal likelihood) and as constraints on one shared encompassing model
(forecast.workflows.constraints). The headline that reports both is worded no stronger than the
weaker of the two (``two_comparisons``): the verb of the smaller of the two Bayes factors (each the
leader's against its runner-up), the likelihood word of the smaller of the two leaders'
probabilities, and the lower of the two confidence levels. When the two name different leaders,
the headline says they disagree, names both, and the confidence is low: the answer then depends
on how the hypotheses were stated, which no reader can defend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ICD 203 likelihood scale: (upper bound, word); a value on a bound takes the word nearer 0.5.
LIKELIHOOD_SCALE: tuple[tuple[float, str], ...] = (
    (0.05, "almost no chance"),
    (0.20, "very unlikely"),
    (0.45, "unlikely"),
    (0.55, "roughly even chance"),
    (0.80, "likely"),
    (0.95, "very likely"),
    (1.00, "almost certain"),
)
# Jeffreys' scale for a Bayes factor: (upper bound, label).
JEFFREYS_SCALE: tuple[tuple[float, str], ...] = (
    (1.0, "no"),
    (3.0, "anecdotal"),
    (10.0, "moderate"),
    (30.0, "strong"),
    (100.0, "very strong"),
)
WEAK_BAYES_FACTOR = 3.0  # below: weak evidence, only low confidence
STRONG_BAYES_FACTOR = 10.0  # at or above: strong evidence, high confidence allowed
ROBUST_RANGE_MAX = 0.25  # the leader's probability may vary this much over the class for high confidence
MC_ERROR_SES = 2.0  # the order is in doubt when |log BF| is within this many Monte Carlo SEs of zero
LOO_CLEAR_SES = 2.0  # predictive accuracy clearly prefers another hypothesis beyond this many SEs

LEVELS = ("low", "moderate", "high")
ROBUSTNESS_NOT_CHECKED = "robustness to other reasonable priors was not checked"

# How the leader's predictive accuracy (PSIS-LOO) compares with the others'.
LOO_AGREES = "agrees"  # the leader predicts left-out observations best
LOO_DIFFERS = "differs"  # another predicts better, by at most LOO_CLEAR_SES standard errors
LOO_DIFFERS_CLEARLY = "differs clearly"  # another predicts better by more than that


def likelihood_word(p: float) -> str:
    """The ICD 203 word for a probability (see the module docstring); raises on p outside [0, 1]."""
    if isinstance(p, bool) or not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
        raise ValueError(f"a probability must be a number in [0, 1], got {p!r}")
    for bound, word in LIKELIHOOD_SCALE:
        # Below one half a bound belongs to the band above it, above one half to the band below:
        # either way to the word nearer even chance.
        if p < bound or (p > 0.5 and p <= bound):
            return word
    return LIKELIHOOD_SCALE[-1][1]


def jeffreys(bayes_factor: float) -> str:
    """Jeffreys' label for a Bayes factor: "no", "anecdotal", ..., "extreme"."""
    if math.isnan(bayes_factor):
        raise ValueError("a Bayes factor must be a number, got nan")
    for bound, label in JEFFREYS_SCALE:
        if bayes_factor < bound:
            return label
    return "extreme"


def strength_phrase(bayes_factor: float) -> str:
    """The evidence's strength in words: "moderate evidence", or for BF < 3 a plain "weak evidence"."""
    if bayes_factor < 1.0:
        return "no evidence for it"
    if bayes_factor < WEAK_BAYES_FACTOR:
        return "weak evidence, not enough to choose between them"
    return f"{jeffreys(bayes_factor)} evidence"


def favours(bayes_factor: float) -> str:
    """The verb of a headline: how the evidence bears on the leader (never "favours" below BF 3)."""
    if bayes_factor < 1.0:
        return "does not favour"
    if bayes_factor < WEAK_BAYES_FACTOR:
        return "leans towards"
    if bayes_factor < 30.0:
        return "favours"
    return "strongly favours"


def mc_error_can_flip(log_bayes_factor: float, se: float) -> bool:
    """True when the log Bayes factor is within ``MC_ERROR_SES`` Monte Carlo SEs of zero (or SE unknown)."""
    if not math.isfinite(se):
        return True
    return abs(log_bayes_factor) <= MC_ERROR_SES * se


def loo_agreement(leader_elpd_diff: float, leader_elpd_diff_se: float) -> str:
    """How LOO sees the leader, from its elpd difference to the best-predicting hypothesis (<= 0) and its SE."""
    if leader_elpd_diff >= 0.0:
        return LOO_AGREES
    if leader_elpd_diff_se > 0 and -leader_elpd_diff <= LOO_CLEAR_SES * leader_elpd_diff_se:
        return LOO_DIFFERS
    return LOO_DIFFERS_CLEARLY


@dataclass(frozen=True)
class Confidence:
    """A confidence level and, for every criterion that held it below high, the reason in words."""

    level: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"level": self.level, "reasons": list(self.reasons)}


def confidence(
    *,
    bayes_factor: float,
    mc_can_flip: bool,
    leader_stable: bool | None,
    leader_range: tuple[float, float] | None = None,
    loo: str | None = None,
    loo_best: str | None = None,
    converged: bool = True,
) -> Confidence:
    """Confidence in the leading hypothesis by the rule of the module docstring.

    ``leader_stable``: None when robustness was not checked; ``leader_range``: the leader's lowest
    and highest probability over the class. ``loo``: one of LOO_AGREES, LOO_DIFFERS,
    LOO_DIFFERS_CLEARLY, or None when unknown; ``loo_best``: the name of the hypothesis that
    predicts best (for the reason's wording).
    """
    caps: list[tuple[str, str]] = []
    if bayes_factor < WEAK_BAYES_FACTOR:
        caps.append(("low", f"the evidence is weak (Bayes factor {bayes_factor:.3g}, below 3)"))
    elif bayes_factor < STRONG_BAYES_FACTOR:
        caps.append(("moderate", f"the evidence is moderate, not strong (Bayes factor {bayes_factor:.3g}, below 10)"))
    if leader_stable is None:
        caps.append(("moderate", ROBUSTNESS_NOT_CHECKED))
    elif not leader_stable:
        caps.append(("low", "another hypothesis leads under some reasonable priors"))
    elif leader_range is not None and leader_range[1] - leader_range[0] > ROBUST_RANGE_MAX:
        lo, hi = leader_range
        caps.append(("moderate", f"its probability ranges widely over reasonable priors ({lo:.2f} to {hi:.2f})"))
    if mc_can_flip:
        caps.append(("low", "the Monte Carlo error could reverse the order"))
    who = f"'{loo_best}'" if loo_best else "another hypothesis"
    if loo == LOO_DIFFERS:
        caps.append(("moderate", f"{who} predicts left-out observations slightly better"))
    elif loo == LOO_DIFFERS_CLEARLY:
        caps.append(("low", f"{who} predicts left-out observations clearly better"))
    if not converged:
        caps.append(("low", "a fit failed its checks"))
    level = min((c for c, _ in caps), key=LEVELS.index, default="high")
    return Confidence(level, tuple(reason for _, reason in caps))


# --- two comparisons of the same claims ------------------------------------------------------------

DISAGREE_REASON = (
    "the hypotheses stated as sets of priors and the claims stated as constraints on one model name different leaders"
)


def weaker_level(*levels: str | None) -> str | None:
    """The lowest of some confidence levels ("low" < "moderate" < "high"); None when none is known."""
    known = [x for x in levels if x in LEVELS]
    return min(known, key=LEVELS.index) if known else None


@dataclass(frozen=True)
class Side:
    """One comparison's answer, in numbers: its leader, the leader's probability, the leader's Bayes
    factor against its runner-up (None: unknown), its confidence level (None: not judged)."""

    leader: str  # the leader's label
    probability: float
    bayes_factor: float | None
    confidence: str | None
    runner_up: str | None = None


@dataclass(frozen=True)
class TwoComparisons:
    """The headline's words when two comparisons answer the question: never stronger than the weaker."""

    agree: bool | None
    verb: str  # favours() of the smaller Bayes factor
    likelihood: str  # the word of the smaller leader probability
    confidence: str  # the lower level (low when they disagree)
    reasons: tuple[str, ...]
    sentence: str  # the headline's first sentence

    def to_dict(self) -> dict:
        return {
            "agree": self.agree,
            "verb": self.verb,
            "likelihood": self.likelihood,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
            "sentence": self.sentence,
        }


def two_comparisons(priors: Side, constraints: Side, agree: bool) -> TwoComparisons:
    """The headline for two comparisons of the same claims (see the module docstring).

    ``priors``: the hypotheses stated as sets of priors; ``constraints``: the claims stated as
    constraints on one encompassing model; ``agree``: whether they name the same claim as leader.
    """
    known = [b for b in (priors.bayes_factor, constraints.bayes_factor) if b is not None and not math.isnan(b)]
    weakest_bf = min(known) if known else 1.0
    verb = favours(weakest_bf)
    p = min(max(min(priors.probability, constraints.probability), 0.0), 1.0)
    word = likelihood_word(p)
    reasons: list[str] = []
    if agree:
        level = weaker_level(priors.confidence, constraints.confidence) or "moderate"
        if priors.confidence is None or constraints.confidence is None:
            level = weaker_level(level, "moderate") or "moderate"
            reasons.append("one of the two comparisons was not judged")
        if level != "high":
            lower = [
                name
                for name, c in (("as sets of priors", priors.confidence), ("as constraints", constraints.confidence))
                if c == level
            ]
            if lower:
                reasons.append(f"the comparison {' and '.join(lower)} has {level} confidence")
        sentence = (
            f"Both ways of stating the hypotheses point the same way: the evidence {verb} '{priors.leader}' "
            f"({priors.probability:.2f}) stated as sets of priors and '{constraints.leader}' "
            f"({constraints.probability:.2f}) stated as constraints on one model; in the words of the weaker of the "
            f"two: {word}, {level} confidence."
        )
    else:
        level = "low"
        reasons.append(DISAGREE_REASON)
        sentence = (
            f"The two ways of stating the hypotheses disagree: stated as sets of priors '{priors.leader}' leads "
            f"({priors.probability:.2f}); stated as constraints on one model '{constraints.leader}' leads "
            f"({constraints.probability:.2f}). Neither answer holds on its own: low confidence."
        )
    return TwoComparisons(bool(agree), verb, word, level, tuple(reasons), sentence)


__all__ = [
    "JEFFREYS_SCALE",
    "LEVELS",
    "LIKELIHOOD_SCALE",
    "LOO_AGREES",
    "LOO_CLEAR_SES",
    "LOO_DIFFERS",
    "LOO_DIFFERS_CLEARLY",
    "MC_ERROR_SES",
    "ROBUSTNESS_NOT_CHECKED",
    "ROBUST_RANGE_MAX",
    "STRONG_BAYES_FACTOR",
    "WEAK_BAYES_FACTOR",
    "DISAGREE_REASON",
    "Confidence",
    "Side",
    "TwoComparisons",
    "confidence",
    "favours",
    "jeffreys",
    "likelihood_word",
    "loo_agreement",
    "mc_error_can_flip",
    "strength_phrase",
    "two_comparisons",
    "weaker_level",
]
