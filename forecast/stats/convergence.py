"""Vectorized rank-normalized R-hat and bulk/tail ESS, identical to arviz_stats.

Why this module exists: ``arviz_stats.base.array_stats.rhat`` and ``.ess`` loop in
Python over every scalar variable (``np.ndindex`` in ``stats_utils.make_ufunc``) and
call ``scipy.stats.rankdata``, ``norm.ppf`` and an FFT once per variable. For ~200
variables x 4 chains x 1500 draws that costs ~1.5 s per fit, as long as the sampling
itself. The functions here do the same computation once for all variables at a time.

They reproduce arviz-stats (1.3.x) exactly, including its edge cases, and
``tests/test_convergence.py`` checks them against ``array_stats`` directly:

* the rank normalisation (average ranks, Blom offset 3/8, normal quantile) over the
  split chains, where the odd middle draw is dropped;
* a variable whose split array (after rank normalisation, or as a quantile indicator)
  is constant to within ``np.finfo(float).resolution`` gets ESS = number of split
  draws, while its R-hat is NaN (0/0 between/within variance);
* a NaN anywhere in a variable gives NaN; +-inf is *not* rejected by ArviZ and is
  ranked like any other value, so it is not rejected here either;
* fewer than 4 draws (or fewer than 2 chains for R-hat) gives NaN for every variable;
* Geyer's initial positive / initial monotone sequence, whose sequential loop in
  ``_DiagnosticsBase._ess`` is rewritten as prefix operations over lag pairs.

Reductions are laid out so that NumPy sums the same numbers in the same order as
ArviZ does, and the autocovariance uses the same NumPy FFT calls, so for float64 and
float32 draws the results are bit-identical to ArviZ, not just close. That matters
beyond tidiness: Geyer's stopping rule compares autocorrelations against zero, and a
last-bit difference there could change which lags are summed.

What remains is mostly sorting (ranks) and the FFT, both done for all variables in
one call; norm.ppf is evaluated on the possible ranks only and looked up.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.fftpack import next_fast_len  # ArviZ's core.autocov pads with fftpack's 5-smooth length
from scipy.stats import norm

__all__ = ["ess_bulk", "ess_mean", "ess_tail", "rhat_and_ess_bulk", "rhat_rank"]

_MIN_DRAWS = 4
_BLOM_OFFSET = 3 / 8


def _as_batch(a: ArrayLike) -> tuple[NDArray[np.floating], tuple[int, ...]]:
    """Flatten leading dimensions so the array is (k, chain, draw)."""
    arr = np.asarray(a)
    if arr.ndim < 2:
        raise ValueError(f"expected an array of shape (..., chain, draw), got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        # Integer draws become float64 in ArviZ's median/quantile anyway; float32 is
        # kept because ArviZ ranks and folds it in float32.
        arr = arr.astype(np.float64)
    lead = arr.shape[:-2]
    return arr.reshape(-1, *arr.shape[-2:]), lead


def _invalid_rows(arr: NDArray[np.floating], min_chains: int) -> NDArray[np.bool_]:
    """Mirror ``stats_utils.not_valid``: any NaN, or too few chains/draws, gives NaN."""
    n_chain, n_draw = arr.shape[-2:]
    if n_chain < min_chains or n_draw < _MIN_DRAWS:
        return np.ones(arr.shape[0], dtype=bool)
    return np.isnan(arr).any(axis=(-2, -1))


def _sanitize(arr: NDArray[np.floating], invalid: NDArray[np.bool_]) -> NDArray[np.floating]:
    # Rows that end up NaN anyway are zeroed so their NaNs cannot reach the ranking
    # or raise warnings; their results are overwritten afterwards.
    if invalid.any():
        arr = arr.copy()
        arr[invalid] = 0.0
    return arr


def _split_chains(arr: NDArray) -> NDArray:
    """(k, chain, draw) -> (k, 2*chain, draw//2): first halves, then last halves."""
    half = arr.shape[-1] // 2
    # Same row order as ArviZ's np.vstack, so per-chain sums accumulate identically.
    return np.concatenate((arr[..., :half], arr[..., -half:]), axis=-2)


class _SortedRows:
    """Per-variable sort of a (k, n) array, kept to derive ranks, medians and folds."""

    def __init__(self, flat_index: NDArray[np.intp], values: NDArray[np.floating]) -> None:
        self.flat_index = flat_index  # index into the raveled (k, n) array, in sorted order
        self.values = values  # (k, n) sorted values

    @classmethod
    def of(cls, flat: NDArray[np.floating]) -> "_SortedRows":
        k, size = flat.shape
        order = np.argsort(flat, axis=-1)
        # Raveled indices are several times faster than take/put_along_axis here.
        flat_index = order + (np.arange(k) * size)[:, None]
        return cls(flat_index, flat.ravel()[flat_index])

    def median(self) -> NDArray[np.floating]:
        # np.median is np.mean of the middle one or two sorted values.
        size = self.values.shape[1]
        half = size // 2
        middle = slice(half, half + 1) if size % 2 else slice(half - 1, half + 1)
        return np.mean(self.values[:, middle], axis=-1)

    def folded(self, centre: NDArray[np.floating]) -> "_SortedRows":
        """Sorted rows of |x - centre|, from the sort of x."""
        distance = np.abs(self.values - centre[:, None])
        # |x - centre| along sorted x is a descending run followed by an ascending run,
        # which the stable (merge) sort orders faster than a fresh quicksort.
        k, size = distance.shape
        order = np.argsort(distance, axis=-1, kind="stable") + (np.arange(k) * size)[:, None]
        return _SortedRows(self.flat_index.ravel()[order], distance.ravel()[order])

    def z_scale(self) -> NDArray[np.float64]:
        """Rank-normalised values in the original (unsorted) layout, as ArviZ's _z_scale.

        ArviZ ranks with scipy's rankdata (average ties), applies Blom's offset and
        norm.ppf element by element. Average ranks are half-integers, so norm.ppf is
        evaluated once on every possible rank and looked up; the values are the same
        floats as the element-wise call.
        """
        k, size = self.values.shape
        # rankdata returns ranks in the input's float type (float32 stays float32), and
        # ArviZ's Blom transform keeps that precision.
        possible_ranks = (1.0 + np.arange(2 * size - 1) / 2.0).astype(self.values.dtype)
        table = norm.ppf((possible_ranks - _BLOM_OFFSET) / (size - 2 * _BLOM_OFFSET + 1))

        # Index into `table` is 2 * rank - 2: the sum of the 0-based first and last
        # sorted positions of a run of tied values (2 * position without ties).
        table_index = np.broadcast_to(2 * np.arange(size), (k, size))
        # Ties are usually rare (a fold has one), so only tied pairs are visited.
        tied_pairs = np.flatnonzero(self.values[:, 1:] == self.values[:, :-1])
        if tied_pairs.size:
            rows, left = np.divmod(tied_pairs, size - 1)
            run_start = np.ones(rows.size, dtype=bool)
            run_start[1:] = (rows[1:] != rows[:-1]) | (left[1:] != left[:-1] + 1)
            run_end = np.append(run_start[1:], True)
            run_id = np.cumsum(run_start) - 1
            twice_rank = left[run_start] + left[run_end] + 1  # first + last position
            table_index = table_index.copy()
            table_index[rows, left] = twice_rank[run_id]
            table_index[rows, left + 1] = twice_rank[run_id]

        z_sorted = table[table_index]
        # NaN (only from inf - inf in a fold) sorts last and never equals anything, so
        # the other values get rankdata's nan_policy="omit" ranks; NaN stays NaN.
        is_nan = np.isnan(self.values)
        if is_nan.any():
            z_sorted[is_nan] = np.nan
        z = np.empty(k * size)
        z[self.flat_index.ravel()] = z_sorted.ravel()
        return z.reshape(k, size)


def _rhat(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Classic (already split) R-hat per variable for (k, chain, draw)."""
    num_samples = z.shape[-1]
    chain_mean = np.mean(z, axis=-1)
    chain_var = np.var(z, axis=-1, ddof=1)
    between_chain_variance = num_samples * np.var(chain_mean, axis=-1, ddof=1)
    within_chain_variance = np.mean(chain_var, axis=-1)
    # Constant variables give 0/0 = NaN, exactly as ArviZ.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between_chain_variance / within_chain_variance + num_samples - 1) / num_samples)


def _python_max(first: NDArray, second: NDArray) -> NDArray:
    # Python's max(first, second) keeps `first` unless `second > first`: a NaN in
    # `first` wins, a NaN in `second` loses. ArviZ relies on builtins max/min.
    return np.where(second > first, second, first)


def _python_min(first: NDArray, second: NDArray) -> NDArray:
    return np.where(second < first, second, first)


def _autocov(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    """Autocovariance for every lag along the last axis, as ``core.autocov``."""
    n = arr.shape[-1]
    m = next_fast_len(2 * n)
    centred = arr - arr.mean(axis=-1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=m, axis=-1)
    spectrum *= np.conjugate(spectrum)
    cov = np.fft.irfft(spectrum, n=m, axis=-1)[..., :n]
    cov /= n
    return cov


def _ess(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    """ESS of already split chains, (k, chain, draw) -> (k,), as ``_DiagnosticsBase._ess``.

    ArviZ runs Geyer's initial positive sequence as a while loop over lag pairs and
    then the initial monotone sequence as a second loop. With pair sums
    S_0 = 1 + rho_1 and S_m = rho_2m + rho_2m+1, the first loop stops at the first
    pair J with S_J <= 0 (or at the lag bound), the second replaces each pair sum
    by the running minimum, so both become prefix operations over pairs.
    """
    k, n_chain, n_draw = arr.shape
    total = n_chain * n_draw

    acov = _autocov(arr)
    chain_mean = arr.mean(axis=-1)
    # ArviZ averages acov[:, t] over chains as a 1-D pairwise sum; putting the chain
    # axis last makes NumPy use the same summation order.
    acov_chain_mean = np.ascontiguousarray(np.swapaxes(acov, -1, -2)).mean(axis=-1)
    mean_var = acov_chain_mean[:, 0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    var_plus += np.var(chain_mean, axis=-1, ddof=1)  # split chains: always >= 2 of them
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov_chain_mean) / var_plus[:, None]

    # The while loop may run for lag pairs j = 0 .. n_pairs_max-1 (t = 2j+1 < n_draw-3);
    # body j reads pair j+1, so pair sums are needed for pairs 0 .. n_pairs_max.
    n_pairs_max = max(0, (n_draw - 3) // 2)
    rows = np.arange(k)
    pair_sum = np.empty((k, n_pairs_max + 1))
    pair_sum[:, 0] = 1.0 + rho[:, 1]
    if n_pairs_max:
        pair_sum[:, 1:] = rho[:, 2 : 2 * n_pairs_max + 1 : 2] + rho[:, 3 : 2 * n_pairs_max + 2 : 2]

    # Number of loop iterations J: leading run of positive pair sums (NaN stops it).
    keep_going = pair_sum[:, :n_pairs_max] > 0.0
    n_pairs = np.cumprod(keep_going, axis=-1).sum(axis=-1)  # J; max_t = 2J - 1

    # Lag 2J is added once (the "improve estimation" step): ArviZ uses rho_2J when it
    # is positive, else whatever the loop left there, i.e. rho_2J if pair J was
    # written (S_J >= 0) and 0 otherwise. With J = 0 it is rho_0 = 1.
    rho_last = rho[rows, 2 * n_pairs]
    pair_last_written = pair_sum[rows, n_pairs] >= 0.0
    last = np.where((rho_last > 0.0) | pair_last_written, rho_last, 0.0)
    last = np.where(n_pairs == 0, 1.0, last)

    # Initial monotone sequence on pairs 0 .. J-1: a pair larger than the (already
    # smoothed) previous pair is replaced by two halves of the previous pair sum.
    elements = np.empty((k, 2 * n_pairs_max))
    if n_pairs_max:
        running_min = np.minimum.accumulate(pair_sum[:, :n_pairs_max], axis=-1)
        lowered = running_min < pair_sum[:, :n_pairs_max]
        halves = running_min / 2.0
        elements[:, 0::2] = np.where(lowered, halves, rho[:, 0 : 2 * n_pairs_max : 2])
        elements[:, 1::2] = np.where(lowered, halves, rho[:, 1 : 2 * n_pairs_max : 2])
        elements[:, 0] = 1.0  # ArviZ sets rho_0 to exactly 1; pair 0 is never lowered

    # Sum lags 0 .. 2J-1 with one np.sum per distinct J (not per variable), so NumPy's
    # pairwise summation sees the same slice as ArviZ and the result is bit-identical.
    rho_sum = np.empty(k)
    for n_pairs_value in np.unique(n_pairs):
        same = n_pairs == n_pairs_value
        rho_sum[same] = np.sum(elements[same, : 2 * n_pairs_value], axis=-1)

    tau_hat = -1.0 + 2.0 * rho_sum + last
    tau_hat = _python_max(tau_hat, np.full(k, 1 / np.log10(total)))
    ess = total / tau_hat
    # ArviZ returns NaN if any rho it stored is NaN; only rho_1 can be NaN and stored.
    ess = np.where(np.isnan(rho[:, 1]), np.nan, ess)

    # A (numerically) constant split array short-circuits to its size.
    spread = arr.max(axis=(-2, -1)) - arr.min(axis=(-2, -1))
    return np.where(spread < np.finfo(float).resolution, float(total), ess)


class _Ranked:
    """The split chains of (k, chain, draw) draws, ranked once: what R-hat and bulk ESS share."""

    def __init__(self, a: ArrayLike, min_chains: int) -> None:
        arr, self.lead = _as_batch(a)
        self.invalid = _invalid_rows(arr, min_chains)
        self.empty = bool(self.invalid.all())
        if not self.empty:
            self.split = _split_chains(_sanitize(arr, self.invalid))
            self.sorted = _SortedRows.of(self.split.reshape(self.split.shape[0], -1))
            self.z = self.sorted.z_scale().reshape(self.split.shape)

    def nan(self) -> NDArray[np.float64]:
        return np.full(self.lead, np.nan)

    def rhat(self) -> NDArray[np.float64]:
        """Max of the bulk and folded rank-normalised R-hats."""
        with np.errstate(invalid="ignore"):  # inf - inf when the median is infinite, as in ArviZ
            folded = self.sorted.folded(self.sorted.median())
        out = _python_max(_rhat(self.z), _rhat(folded.z_scale().reshape(self.split.shape)))
        return np.where(self.invalid, np.nan, out).reshape(self.lead)

    def ess_bulk(self) -> NDArray[np.float64]:
        return np.where(self.invalid, np.nan, _ess(self.z)).reshape(self.lead)


def rhat_rank(a: ArrayLike) -> NDArray[np.float64]:
    """Rank-normalised split R-hat, max of bulk and folded (Vehtari et al. 2021).

    ``a`` has shape (..., chain, draw); the result has shape (...) and equals
    ``arviz_stats.base.array_stats.rhat(a, method="rank")``.
    """
    ranked = _Ranked(a, min_chains=2)
    return ranked.nan() if ranked.empty else ranked.rhat()


def ess_bulk(a: ArrayLike) -> NDArray[np.float64]:
    """Bulk ESS: ESS of the rank-normalised split chains.

    ``a`` has shape (..., chain, draw); the result has shape (...) and equals
    ``arviz_stats.base.array_stats.ess(a, method="bulk")``.
    """
    ranked = _Ranked(a, min_chains=1)
    return ranked.nan() if ranked.empty else ranked.ess_bulk()


def rhat_and_ess_bulk(a: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(rhat_rank(a), ess_bulk(a))`` from one ranking of the split chains (the same numbers as
    the two calls, for a third less time in a fit's diagnostics)."""
    ranked = _Ranked(a, min_chains=1)
    if ranked.empty:
        return ranked.nan(), ranked.nan()
    # With two or more chains R-hat's invalid rows are ESS's (NaN draws); with one, all of them.
    rhat = ranked.rhat() if ranked.split.shape[-2] >= 4 else ranked.nan()
    return rhat, ranked.ess_bulk()


def ess_tail(a: ArrayLike, prob: float | Sequence[float] = (0.05, 0.95)) -> NDArray[np.float64]:
    """Tail ESS: min of the ESS of the indicators ``a <= q(p_low)`` and ``a <= q(p_high)``.

    ``a`` has shape (..., chain, draw); the result has shape (...) and equals
    ``arviz_stats.base.array_stats.ess(a, method="tail", prob=prob)``. A scalar
    ``prob`` means ``(prob, 1 - prob)`` sorted, as in ArviZ.
    """
    if not isinstance(prob, Sequence):
        prob = sorted((prob, 1 - prob))
    prob_low, prob_high = prob
    arr, lead = _as_batch(a)
    invalid = _invalid_rows(arr, min_chains=1)
    if invalid.all():
        return np.full(lead, np.nan)
    arr = _sanitize(arr, invalid)
    # The quantile is taken over all draws, including the middle draw that the
    # split drops for an odd number of draws.
    flat = arr.reshape(arr.shape[0], -1)
    with np.errstate(invalid="ignore"):  # inf - inf interpolating between infinite draws, as in ArviZ
        quantiles = np.quantile(flat, [prob_low, prob_high], axis=-1, method="linear")
    results = []
    for quantile in quantiles:
        indicator = (arr <= quantile[:, None, None]).astype(np.float64)
        results.append(_ess(_split_chains(indicator)))
    out = _python_min(results[0], results[1])
    return np.where(invalid, np.nan, out).reshape(lead)


def ess_mean(a: ArrayLike, relative: bool = False) -> NDArray[np.float64]:
    """ESS of the mean: ESS of the split chains, without rank normalisation.

    ``a`` has shape (..., chain, draw); the result has shape (...) and equals
    ``arviz_stats.base.array_stats.ess(a, method="mean", relative=relative)``, including
    ArviZ's quirk that a constant variable gives the number of split draws even when
    ``relative`` is true.
    """
    arr, lead = _as_batch(a)
    invalid = _invalid_rows(arr, min_chains=1)
    if invalid.all():
        return np.full(lead, np.nan)
    split = _split_chains(_sanitize(arr, invalid)).astype(np.float64)
    out = _ess(split)
    if relative:
        total = split.shape[-2] * split.shape[-1]
        spread = split.max(axis=(-2, -1)) - split.min(axis=(-2, -1))
        out = np.where(spread < np.finfo(float).resolution, out, out / total)
    return np.where(invalid, np.nan, out).reshape(lead)
