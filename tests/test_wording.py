"""Words of the headline: ICD 203 likelihood words, Jeffreys' scale, and the confidence rule.

Pure functions over tables of cases (no fits): forecast.stats.wording states the rule, and these
cases are its examples, including the two promises: a weak Bayes factor (< 3) is never worded
or rated like a strong one, and a leader that is not robust is never "high" confidence.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecast.stats.loo import jeffreys_label
from forecast.stats.wording import (
    LIKELIHOOD_SCALE,
    LOO_AGREES,
    LOO_DIFFERS,
    LOO_DIFFERS_CLEARLY,
    confidence,
    favours,
    jeffreys,
    likelihood_word,
    loo_agreement,
    mc_error_can_flip,
    strength_phrase,
)

OPPOSITE = {
    "almost no chance": "almost certain",
    "very unlikely": "very likely",
    "unlikely": "likely",
    "roughly even chance": "roughly even chance",
}
OPPOSITE |= {v: k for k, v in OPPOSITE.items()}


@pytest.mark.parametrize(
    ("p", "word"),
    [
        (0.0, "almost no chance"),
        (0.004, "almost no chance"),
        (0.03, "almost no chance"),
        (0.05, "very unlikely"),
        (0.12, "very unlikely"),
        (0.20, "unlikely"),
        (0.33, "unlikely"),
        (0.45, "roughly even chance"),
        (0.5, "roughly even chance"),
        (0.55, "roughly even chance"),
        (0.56, "likely"),
        (0.80, "likely"),
        (0.83, "very likely"),
        (0.95, "very likely"),
        (0.97, "almost certain"),
        (0.999, "almost certain"),
        (1.0, "almost certain"),
    ],
)
def test_likelihood_words_follow_icd_203(p, word):
    assert likelihood_word(p) == word


def test_likelihood_words_are_symmetric_and_ordered():
    words = [w for _, w in LIKELIHOOD_SCALE]
    grid = np.linspace(0.0, 1.0, 1001)
    seen = [likelihood_word(float(p)) for p in grid]
    assert [words.index(w) for w in seen] == sorted(words.index(w) for w in seen)  # never goes back
    assert set(seen) == set(words)
    bounds = {b for b, _ in LIKELIHOOD_SCALE}
    for p in grid:
        if min(abs(p - b) for b in bounds | {1 - b for b in bounds}) > 1e-6:
            assert likelihood_word(1 - float(p)) == OPPOSITE[likelihood_word(float(p))], p


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, True, "0.5"])
def test_a_likelihood_word_needs_a_probability(bad):
    with pytest.raises(ValueError, match="probability"):
        likelihood_word(bad)


@pytest.mark.parametrize(
    ("bf", "label", "verb", "phrase"),
    [
        (0.5, "no", "does not favour", "no evidence for it"),
        (1.0, "anecdotal", "leans towards", "weak evidence, not enough to choose between them"),
        (1.7, "anecdotal", "leans towards", "weak evidence, not enough to choose between them"),
        (2.99, "anecdotal", "leans towards", "weak evidence, not enough to choose between them"),
        (3.0, "moderate", "favours", "moderate evidence"),
        (5.4, "moderate", "favours", "moderate evidence"),
        (10.0, "strong", "favours", "strong evidence"),
        (24.2, "strong", "favours", "strong evidence"),
        (50.0, "very strong", "strongly favours", "very strong evidence"),
        (1e4, "extreme", "strongly favours", "extreme evidence"),
    ],
)
def test_evidence_words_follow_jeffreys(bf, label, verb, phrase):
    assert jeffreys(bf) == label
    assert favours(bf) == verb
    assert strength_phrase(bf) == phrase


def test_jeffreys_labels_agree_with_the_stats_module():
    for bf in np.geomspace(1.0, 1e3, 200):
        assert jeffreys(float(bf)) == jeffreys_label(float(bf))


def test_a_weak_bayes_factor_is_never_worded_like_a_strong_one():
    for bf in np.linspace(1.0, 2.999, 50):
        assert "favours" not in favours(float(bf)).replace("does not favour", "")
        assert "strong" not in strength_phrase(float(bf)) and "moderate" not in strength_phrase(float(bf))


@pytest.mark.parametrize(
    ("log_bf", "se", "flips"),
    [(1.69, 0.20, False), (0.3, 0.2, True), (-0.3, 0.2, True), (0.41, 0.2, False), (5.0, math.inf, True)],
)
def test_monte_carlo_error_can_flip_the_leader_within_two_standard_errors(log_bf, se, flips):
    assert mc_error_can_flip(log_bf, se) is flips


@pytest.mark.parametrize(
    ("diff", "se", "verdict"),
    [(0.0, 0.0, LOO_AGREES), (-1.83, 1.71, LOO_DIFFERS), (-3.6, 1.8, LOO_DIFFERS), (-4.0, 1.0, LOO_DIFFERS_CLEARLY)],
)
def test_loo_agreement(diff, se, verdict):
    assert loo_agreement(diff, se) == verdict


# (Bayes factor, MC error can flip, leader stable (None: not checked), leader's range, LOO) -> level
CASES = [
    # strong, robust and tight, LOO agrees: high
    (25.0, False, True, (0.80, 0.97), LOO_AGREES, "high"),
    (120.0, False, True, (0.90, 0.99), None, "high"),
    # strong but robustness not checked: moderate
    (25.0, False, None, None, LOO_AGREES, "moderate"),
    # strong, robust, but its range is wide: moderate
    (25.0, False, True, (0.55, 0.97), LOO_AGREES, "moderate"),
    # strong and robust, LOO prefers another within noise: moderate; clearly: low
    (25.0, False, True, (0.80, 0.97), LOO_DIFFERS, "moderate"),
    (25.0, False, True, (0.80, 0.97), LOO_DIFFERS_CLEARLY, "low"),
    # strong but not robust: low, never high
    (25.0, False, False, (0.31, 0.97), LOO_AGREES, "low"),
    # moderate evidence: at most moderate
    (5.4, False, True, (0.75, 0.90), LOO_AGREES, "moderate"),
    # the default study today: moderate evidence, not robust, LOO prefers the runner-up slightly
    (5.4, False, False, (0.215, 0.981), LOO_DIFFERS, "low"),
    # weak evidence: low whatever else holds
    (1.7, False, True, (0.60, 0.70), LOO_AGREES, "low"),
    (2.9, False, True, (0.70, 0.75), LOO_AGREES, "low"),
    # MC error could flip the order: low
    (40.0, True, True, (0.90, 0.99), LOO_AGREES, "low"),
]


@pytest.mark.parametrize(("bf", "mc", "stable", "span", "loo", "level"), CASES)
def test_confidence_rule_over_cases(bf, mc, stable, span, loo, level):
    c = confidence(bayes_factor=bf, mc_can_flip=mc, leader_stable=stable, leader_range=span, loo=loo, loo_best="B")
    assert c.level == level
    assert bool(c.reasons) == (level != "high")  # every step below high is explained


def test_a_failed_fit_is_low_confidence():
    c = confidence(bayes_factor=200.0, mc_can_flip=False, leader_stable=True, leader_range=(0.9, 0.99), converged=False)
    assert c.level == "low" and "a fit failed its checks" in c.reasons


def test_the_two_promises_hold_over_a_grid_of_cases():
    for bf in (0.5, 1.0, 2.0, 2.99, 3.0, 9.0, 10.0, 50.0, 500.0):
        for mc in (False, True):
            for stable in (None, False, True):
                for loo in (None, LOO_AGREES, LOO_DIFFERS, LOO_DIFFERS_CLEARLY):
                    c = confidence(
                        bayes_factor=bf, mc_can_flip=mc, leader_stable=stable, leader_range=(0.8, 0.9), loo=loo
                    )
                    if bf < 3:
                        assert c.level == "low"
                    if stable is not True:
                        assert c.level != "high"
                    if bf < 10:
                        assert c.level != "high"


def test_reasons_name_the_hypothesis_that_predicts_better():
    c = confidence(
        bayes_factor=5.4,
        mc_can_flip=False,
        leader_stable=False,
        leader_range=(0.2, 0.98),
        loo=LOO_DIFFERS,
        loo_best="Strategic realignment",
    )
    assert c.to_dict() == {
        "level": "low",
        "reasons": [
            "the evidence is moderate, not strong (Bayes factor 5.4, below 10)",
            "another hypothesis leads under some reasonable priors",
            "'Strategic realignment' predicts left-out observations slightly better",
        ],
    }
