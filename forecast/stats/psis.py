"""Pareto-smoothed importance sampling (PSIS) log weights, vectorized over rows.

``arviz_stats.base.array_stats.psislw`` smooths one row (one observation pattern) at a time in a
Python loop: a full argsort, a generalized Pareto fit and a logsumexp per row. For the 5,000-10,000
patterns x 6,000 draws of a large study that loop takes many seconds per fit and dominated
``forecast update``. :func:`psislw` computes the same thing for all rows at once with NumPy
broadcasting and reproduces arviz-stats 1.3's ``psislw(ary, r_eff=r_eff, axis=-1)`` operation for
operation (same sign convention, tail length, Zhang & Stephens fit with the prior on k, truncation,
normalisation, degenerate-row behaviour), so results agree to the last bit in practice;
``tests/test_psis.py`` checks it against arviz-stats.

Convention, as in arviz-stats 1.x: the input is the log-*likelihood* of the left-out term (or, in
general, minus the log importance ratio); the function smooths weights proportional to
``exp(-ary)`` and returns them normalised (each row's weights log-sum-exp to 0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["logsumexp_rows", "psislw"]

_PRIOR_BS = 3
_PRIOR_K = 10
# Rows are processed in blocks of about this many elements: big enough to amortise the Python
# overhead per block, small enough that the temporaries stay in cache-friendly sizes.
_BLOCK_ELEMENTS = 1 << 17
_FIT_BLOCK_ELEMENTS = 1 << 16
_TINY = np.finfo(float).tiny
_NEGLIGIBLE_WEIGHT = 10 * np.finfo(float).eps


def psislw(
    log_lik: np.ndarray, r_eff: float | np.ndarray = 1.0, same_order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed log weights and Pareto k of each row; equal to arviz-stats' ``psislw``.

    Parameters
    ----------
    log_lik
        Array of shape ``(..., n_draws)``, usually ``(n_rows, n_draws)``. Like arviz-stats 1.x,
        the raw log weights are ``-log_lik`` (pass minus the log ratios to smooth ``exp(log_ratios)``).
        Computed in float64 (for float32 input arviz-stats keeps some steps in float32, so the two
        then differ at float32 precision).
    r_eff
        Relative efficiency of the draws: a scalar, as arviz-stats takes, or one value per row
        (shape ``log_lik.shape[:-1]``), equivalent to calling arviz-stats row by row.
    same_order
        Optional labels, one per row of a 2-D ``log_lik``: rows with the same label are positive
        multiples of one another (LOO terms of events that differ only in their weight), so
        their draws sort in the same order and one partial sort serves them all. Rounding can
        only turn an order into a tie, and tied tails take the full-sort route anyway, so the
        result is the same as without labels.

    Returns
    -------
    log_weights
        Same shape as ``log_lik``: smoothed log weights, normalised so that each row log-sum-exps
        to 0.
    pareto_k
        Shape ``log_lik.shape[:-1]``: estimated Pareto shape k of each row; ``inf`` when the fit
        breaks down (NaN rows) and ``nan`` when the tail is too far from a generalized Pareto
        distribution (rows that are then left unsmoothed, as in arviz-stats).

    Raises
    ------
    ValueError
        If the tail would have fewer than 5 draws, or a row's tail values are all equal (e.g. a
        constant row), as arviz-stats does.
    """
    values = np.asarray(log_lik, dtype=np.float64)
    if values.ndim == 0:
        raise ValueError("log_lik must have at least one dimension (the draws)")
    lead_shape = values.shape[:-1]
    n_draws = values.shape[-1]
    rows = values.reshape(-1, n_draws)
    n_rows = rows.shape[0]

    r = np.asarray(r_eff)
    if r.ndim == 0:
        tail_of_row = np.full(n_rows, _tail_length(n_draws, r_eff))
    elif r.shape == lead_shape:
        flat_r = r.reshape(-1)
        uniq, inverse = np.unique(flat_r, return_inverse=True)
        tail_of_row = np.array([_tail_length(n_draws, float(u)) for u in uniq])[inverse.reshape(-1)]
    else:
        raise ValueError(f"r_eff must be a scalar or have shape {lead_shape}, got {r.shape}")

    log_w = np.empty((n_rows, n_draws))
    pareto_k = np.empty(n_rows)
    if n_rows:
        if np.min(tail_of_row) < 5:
            raise ValueError("n_draws_tail must be at least 5")
        groups = np.unique(tail_of_row)
        labels = None
        if same_order is not None:
            labels = np.asarray(same_order).reshape(-1)
            if values.ndim != 2 or labels.size != n_rows:
                raise ValueError(f"same_order must label each of the {n_rows} rows of a 2-D log_lik")
        with np.errstate(all="ignore"):
            if groups.size == 1:
                _psislw_rows(rows, float(groups[0]), log_w, pareto_k, labels)
            else:
                for n_tail in groups:
                    sel = np.flatnonzero(tail_of_row == n_tail)
                    out = np.empty((sel.size, n_draws))
                    sub = None if labels is None else labels[sel]
                    pareto_k[sel] = _psislw_rows(rows[sel], float(n_tail), out, np.empty(sel.size), sub)
                    log_w[sel] = out
    return log_w.reshape(values.shape), pareto_k.reshape(lead_shape)


def _tail_length(n_draws: int, r_eff: float | np.floating) -> np.floating:
    # Same expression as arviz-stats' _get_ps_tails(tail="right"), evaluated on the same scalar
    # types, so borderline floor() cases round identically.
    if n_draws * r_eff > 225:
        return np.floor(3 * (n_draws / r_eff) ** 0.5)
    return np.floor(n_draws / 5)


def _psislw_rows(
    rows: np.ndarray, n_tail_f: float, log_w: np.ndarray, pareto_k: np.ndarray, labels: np.ndarray | None = None
) -> np.ndarray:
    """Smooth every row of rows (tail length n_tail_f) into log_w and pareto_k; returns pareto_k.
    Rows with equal ``labels`` share one partial sort (see ``psislw``'s ``same_order``)."""
    n_rows, n_draws = rows.shape
    n_tail = int(n_tail_f)
    kth = n_draws - n_tail - 1
    # Blocks of rows small enough to stay in cache across the several passes made over them.
    block = max(1, _BLOCK_ELEMENTS // n_draws)
    starts = range(0, n_rows, block)

    # The cutoff and the tail: entries kth.. of each row in np.argsort order.
    part = np.empty((n_rows, n_tail + 1), dtype=np.intp)
    top = np.empty((n_rows, n_tail + 1))
    for start in starts:
        stop = min(start + block, n_rows)
        lw = log_w[start:stop]
        x = rows[start:stop]
        # arviz-stats computes (-x) - max(-x); x.min() - x is the same number bit for bit
        # (IEEE negation is exact and rounding is sign-symmetric) in two passes instead of three.
        np.subtract(x.min(axis=1, keepdims=True), x, out=lw)
        # A partial sort is enough, and much cheaper than arviz-stats' full argsort; see below.
        if labels is None:
            part[start:stop] = np.argpartition(lw, kth, axis=1)[:, kth:]
        else:
            _, first, inverse = np.unique(labels[start:stop], return_index=True, return_inverse=True)
            part[start:stop] = np.argpartition(lw[first], kth, axis=1)[:, kth:][inverse]
        top[start:stop] = np.take(lw, part[start:stop] + _row_offsets(start, stop, n_draws))
    order = np.argsort(top, axis=1)
    order += _row_offsets(0, n_rows, n_tail + 1)
    idx = np.take(part, order)
    vals = np.take(top, order)
    # With strictly increasing values the tail and its order are unique, so they are what the
    # full argsort would give. Ties (or NaN) make the result depend on how np.argsort breaks
    # them (tied draws get different smoothed values), so those rows use the full argsort.
    unique = np.all(vals[:, 1:] > vals[:, :-1], axis=1)
    for i in np.flatnonzero(~unique):
        idx[i] = np.argsort(log_w[i])[kth:]
        vals[i] = log_w[i, idx[i]]
    cutoff = vals[:, 0]
    tail_vals = vals[:, 1:]
    tail_idx = idx[:, 1:]

    max_tail = tail_vals.max(axis=1)
    if np.any(np.abs(max_tail - tail_vals.min(axis=1)) < _TINY):
        raise ValueError("All tail values are the same")

    exp_cutoff = np.exp(cutoff)
    kappa, sigma = _gpdfit_rows(np.exp(tail_vals) - exp_cutoff[:, None])
    pareto_k[:] = kappa

    smooth = np.isfinite(kappa)
    new_tail = tail_vals.copy()
    if smooth.any():
        probs = np.arange(0.5, n_tail_f) / n_tail_f
        smoothed = np.log(_gpinv_rows(probs, kappa[smooth], sigma[smooth], exp_cutoff[smooth]))
        cap = max_tail[smooth, None]
        new_tail[smooth] = np.where(smoothed > cap, cap, smoothed)

    # Normalising needs each row's max and which entries equal it (SciPy's logsumexp takes them
    # out of the sum). When the tail is unique and its new max exceeds the cutoff, both are
    # known from the tail alone, which saves three passes over the row; other rows take the
    # general route.
    row_max = np.maximum(cutoff, new_tail.max(axis=1))
    known = unique & (row_max > cutoff)
    at_max = (new_tail == row_max[:, None]) & known[:, None]
    n_max = np.count_nonzero(at_max, axis=1).astype(float)
    shift = np.where(known, row_max, 0.0)
    buf = np.empty((min(block, n_rows), n_draws))
    for start in starts:
        stop = min(start + block, n_rows)
        lw = log_w[start:stop]
        offsets = _row_offsets(start, stop, n_draws)
        tail_flat = tail_idx[start:stop] + offsets
        np.put(lw, tail_flat, new_tail[start:stop])

        shift_b = shift[start:stop, None]
        terms = buf[: stop - start]
        np.exp(lw if not shift_b.any() else np.subtract(lw, shift_b, out=terms), out=terms)
        np.put(terms, tail_flat[at_max[start:stop]], 0.0)
        s = terms.sum(axis=1)
        count = n_max[start:stop]
        s = np.where(s == 0, s, s / count)
        lse = np.log1p(s) + np.log(count) + row_max[start:stop]
        general = ~(known[start:stop] & np.isfinite(lse))
        if general.any():
            lse[general] = logsumexp_rows(lw[general])[:, 0]
        lw -= lse[:, None]
    return pareto_k


def _row_offsets(start: int, stop: int, n_draws: int) -> np.ndarray:
    """Flat offsets of rows start..stop of a block, for indexing the block's flattened view."""
    return (np.arange(stop - start) * n_draws)[:, None]


def _gpdfit_rows(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """arviz-stats' _gpdfit (Zhang & Stephens 2009 with a prior on k) on each sorted row of data."""
    n_rows, n = data.shape
    m_est = 30 + int(n**0.5)

    xstar = data[:, int((n / 4 + 0.5) - 1)]
    b_grid = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1, dtype=float) - 0.5))
    b_ary = b_grid / (_PRIOR_BS * xstar)[:, None]
    b_ary += (1 / data[:, -1])[:, None]

    # The (rows, grid, tail) log1p tensor dominates the cost; build it in blocks.
    neg_b = -b_ary
    k_ary = np.empty((n_rows, m_est))
    block = max(1, _FIT_BLOCK_ELEMENTS // (m_est * n))
    buf = np.empty((block, m_est, n))
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        log1p_mat = buf[: stop - start]
        # An outer product per row, the same IEEE products as ArviZ's -b[:, None] * x, but einsum
        # does it several times faster than a broadcast multiply over a short last axis.
        np.einsum("rj,ri->rji", neg_b[start:stop], data[start:stop], out=log1p_mat)
        np.log1p(log1p_mat, out=log1p_mat)
        # np.mean is this sum over the contiguous last axis divided by the count.
        np.divide(np.add.reduce(log1p_mat, axis=2), n, out=k_ary[start:stop])

    len_scale = n * (np.log(-b_ary / k_ary) - k_ary - 1)
    w_theta = np.exp(len_scale - logsumexp_rows(len_scale))

    # arviz-stats drops negligible weights before normalising; summing the survivors packed
    # contiguously (rows grouped by how many survive) keeps numpy's pairwise summation order.
    keep = w_theta >= _NEGLIGIBLE_WEIGHT
    n_keep = np.count_nonzero(keep, axis=1)
    b_post = np.empty(n_rows)
    for count in np.unique(n_keep):
        grp = np.flatnonzero(n_keep == count)
        w_g = w_theta[grp]
        b_g = b_ary[grp]
        if count < m_est:
            cols = np.argsort(~keep[grp], axis=1, kind="stable")[:, :count]
            w_g = np.take_along_axis(w_g, cols, axis=1)
            b_g = np.take_along_axis(b_g, cols, axis=1)
        w_g = w_g / w_g.sum(axis=1, keepdims=True)
        b_post[grp] = np.sum(b_g * w_g, axis=1)

    kappa = np.mean(np.log1p(-b_post[:, None] * data), axis=1)
    sigma = -kappa / b_post
    kappa = (n * kappa + _PRIOR_K * 0.5) / (n + _PRIOR_K)

    failed = np.isnan(kappa)
    kappa[failed] = np.inf
    sigma[failed] = np.nan
    # First quartile not above the minimum: far from a generalized Pareto; arviz-stats returns
    # (nan, nan) before fitting.
    not_gpd = xstar <= data[:, 0]
    kappa[not_gpd] = np.nan
    sigma[not_gpd] = np.nan
    return kappa, sigma


def _gpinv_rows(probs: np.ndarray, kappa: np.ndarray, sigma: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """arviz-stats' _gpinv: generalized Pareto quantiles, one (kappa, sigma, mu) per row."""
    log1p_p = np.log1p(-probs)
    sigma_c = sigma[:, None]
    mu_c = mu[:, None]
    q = np.multiply(-kappa[:, None], log1p_p)
    np.expm1(q, out=q)
    q *= sigma_c
    q /= kappa[:, None]
    q += mu_c
    zero = np.flatnonzero(kappa == 0)
    if zero.size:
        q[zero] = mu_c[zero] - sigma_c[zero] * log1p_p
    q[sigma <= 0] = np.nan
    return q


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """scipy.special.logsumexp(row) for each row of a 2-D array, as a (rows, 1) column.

    Mirrors SciPy's algorithm (the maxima are taken out of the sum and counted, the rest summed
    as exp(a - max), then log1p(s / count) + log(count) + max, with the direct formula where that
    is not finite) so the result is bit-identical to calling SciPy on each row, at a fraction of
    the passes over the data. Large arrays go through in blocks of rows, so that the several
    passes stay in cache.
    """
    out = np.empty((a.shape[0], 1))
    block = max(1, _BLOCK_ELEMENTS // max(1, a.shape[1]))
    for start in range(0, a.shape[0], block):
        out[start : start + block] = _logsumexp_block(a[start : start + block])
    return out


def _logsumexp_block(a: np.ndarray) -> np.ndarray:
    a_max = a.max(axis=1, keepdims=True)
    is_max = a == a_max
    count = np.count_nonzero(is_max, axis=1, keepdims=True).astype(float)
    terms = np.exp(a - a_max)
    np.copyto(terms, 0.0, where=is_max)
    s = terms.sum(axis=1, keepdims=True)
    s = np.where(s == 0, s, s / count)
    out = np.log1p(s) + np.log(count) + a_max
    bad = np.flatnonzero(~np.isfinite(out[:, 0]))
    if bad.size:
        out[bad, 0] = np.log(np.sum(np.exp(a[bad]), axis=1))
    return out
