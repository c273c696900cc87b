"""The checks of `forecast calibrate` and the design analysis, as pure functions of the replicates.

The data-averaged posterior, binned calibration and the Brier check, each with its Monte Carlo
band and the power it has at this number of data sets.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from forecast.workflows.calibrate.records import (
    BinCheck,
    BrierCheck,
    CalibrationChecks,
    DesignAnalysis,
    MeanPosteriorCheck,
    Power,
    TruthAnalysis,
)

BAND_LEVEL = 0.99
POWER = 0.8  # the power stated with every verdict
MIN_DATASETS = 20  # fewer data sets: "too few data sets to judge"
DECISIVE = 0.9
DEFAULT_BINS = 5
# The stratified average needs this many data sets of every true hypothesis: its standard error
# comes from each stratum's variance, which a stratum of two or three data sets can put near zero
# (a band far too narrow). Smaller strata: the plain average and its own standard error.
MIN_STRATUM = 5
CONSISTENT = "consistent with exact calibration"
NOT_CONSISTENT = "not consistent with exact calibration"
TOO_FEW = "too few data sets to judge"


def detectable_shift(se: float, band_level: float = BAND_LEVEL, power: float = POWER) -> float:
    """The true shift a two-sided z-test at ``band_level`` detects with probability ``power``.

    With standard error ``se``: (z_band + z_power) * se; the far tail's chance is negligible.
    """
    return float((stats.norm.ppf(0.5 + band_level / 2) + stats.norm.ppf(power)) * se)


def calibration_checks(
    true: np.ndarray,
    post: np.ndarray,
    prior: np.ndarray,
    n_bins: int = DEFAULT_BINS,
    *,
    hypotheses: list[str] | None = None,
    min_datasets: int = MIN_DATASETS,
) -> CalibrationChecks:
    """Data-averaged posterior, binned calibration and the Brier check, with their MC bands.

    ``true``: (K,) index of the true hypothesis per data set; ``post``: (K, H) posterior
    probabilities; ``prior``: (H,). Bands are two-sided at ``BAND_LEVEL`` and clipped to [0, 1];
    below ``min_datasets`` data sets there is no verdict (``consistent`` None).
    """
    true, post, prior = np.asarray(true), np.asarray(post, dtype=float), np.asarray(prior, dtype=float)
    k, n_h = post.shape
    names = hypotheses or [str(j) for j in range(n_h)]
    z = float(stats.norm.ppf(0.5 + BAND_LEVEL / 2))
    onehot = np.eye(n_h)[true]

    # Data-averaged posterior. The plain average over data sets carries the noise of how often
    # each hypothesis happened to be drawn; averaging within each true hypothesis and weighting
    # by the prior (post-stratification) estimates the same E[P(H | y)] without that noise.
    counts = np.bincount(true, minlength=n_h)
    stratified = bool((counts >= MIN_STRATUM).all())
    mean_post = []
    for j in range(n_h):
        plain = float(post[:, j].mean())
        plain_se = float(post[:, j].std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
        if stratified:
            m = float(sum(prior[h] * post[true == h, j].mean() for h in range(n_h)))
            se = float(np.sqrt(sum(prior[h] ** 2 * post[true == h, j].var(ddof=1) / counts[h] for h in range(n_h))))
        else:
            m, se = plain, plain_se
        zj = (m - prior[j]) / se if se > 0 else 0.0
        mean_post.append(
            MeanPosteriorCheck(
                prior=float(prior[j]),
                mean_posterior=m,
                se=se,
                estimator="stratified by the true hypothesis" if stratified else "plain average",
                plain_mean=plain,
                plain_se=plain_se,
                band_low=float(max(prior[j] - z * se, 0.0)),
                band_high=float(min(prior[j] + z * se, 1.0)),
                z=float(zj),
                within=bool(abs(zj) <= z),
                fraction_true=float(onehot[:, j].mean()),
                hypothesis=names[j],
                detectable=detectable_shift(se),
            )
        )

    p, o = post.ravel(), onehot.ravel()
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = which == b
        n = int(sel.sum())
        if n == 0:
            bins.append(BinCheck(low=float(edges[b]), high=float(edges[b + 1]), n=0))
            continue
        pb, ob = p[sel], o[sel]
        sd = float(np.sqrt((pb * (1 - pb)).sum()) / n)
        lo, hi = float(pb.mean() - z * sd), float(pb.mean() + z * sd)
        bins.append(
            BinCheck(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                n=n,
                mean_predicted=float(pb.mean()),
                observed=float(ob.mean()),
                band_low=max(lo, 0.0),
                band_high=min(hi, 1.0),
                # a bin whose probabilities are all 0 or 1 has no spread: then it must match exactly
                within=bool(lo - 1e-9 <= ob.mean() <= hi + 1e-9),
                detectable=detectable_shift(sd),
            )
        )

    d = ((onehot - post) ** 2).sum(axis=1) - (post * (1 - post)).sum(axis=1)
    d_se = float(d.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
    d_z = float(d.mean() / d_se) if d_se > 0 else 0.0
    brier = BrierCheck(
        statistic=float(d.mean()),
        se=d_se,
        z=d_z,
        within=bool(abs(d_z) <= z),
        meaning="0 if calibrated; > 0 over-confident, < 0 under-confident",
    )
    passed = all(m.within for m in mean_post) and all(b.within is not False for b in bins) and brier.within
    judged = k >= min_datasets
    spread = [b.detectable for b in bins if b.n and b.detectable > 0]
    return CalibrationChecks(
        band_level=BAND_LEVEL,
        mean_posterior=tuple(mean_post),
        bins=tuple(bins),
        brier=brier,
        consistent=bool(passed) if judged else None,
        min_datasets=min_datasets,
        verdict=(CONSISTENT if passed else NOT_CONSISTENT) if judged else TOO_FEW,
        power=Power(
            probability=POWER,
            band_level=BAND_LEVEL,
            n_datasets=int(k),
            mean_posterior=float(max(m.detectable for m in mean_post)),
            bins=float(min(spread)) if spread else None,
        ),
    )


def design_analysis(
    true: np.ndarray, post: np.ndarray, hypotheses: list[str], decisive: float = DECISIVE
) -> DesignAnalysis:
    """How often the tool would pick the true hypothesis, be decisive, or mislead."""
    true, post = np.asarray(true), np.asarray(post, dtype=float)
    picked = post.argmax(axis=1)
    p_true = post[np.arange(len(true)), true]
    wrong = post.copy()
    wrong[np.arange(len(true)), true] = 0
    by_truth = {}
    for j, h in enumerate(hypotheses):
        sel = true == j
        by_truth[h] = TruthAnalysis(
            n=int(sel.sum()),
            picks_true=float((picked[sel] == j).mean()) if sel.any() else None,
            decisive=float((p_true[sel] >= decisive).mean()) if sel.any() else None,
            mean_posterior_of_true=float(p_true[sel].mean()) if sel.any() else None,
        )
    return DesignAnalysis(
        picks_true=float((picked == true).mean()),
        decisive=float((p_true >= decisive).mean()),
        misleading=float((wrong.max(axis=1) >= decisive).mean()),
        decisive_threshold=decisive,
        mean_posterior_of_true=float(p_true.mean()),
        by_truth=by_truth,
    )
