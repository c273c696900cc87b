"""Report figures: ArviZ (arviz_plots, matplotlib backend) and matplotlib, rendered headless to PNG.

Every plotting function takes plain arrays or xarray objects assembled by forecast.reports.report
(forecast.reports.plots: values read from a run's stored JSON) and returns PNG bytes; a ``Figure``
adds its title, caption and alt text; HTML embeds it as base64, Markdown writes it as a PNG file beside
itself (``<stem>_files/``) unless asked to embed it. One palette maps
each hypothesis to one colour, used by every figure; priors are grey and observed data black
throughout. Axes carry units and hypothesis labels, never variable names.

Rendering is most of a report's cost and the figures are independent, so ``FigureRenderer``
renders them in two forked worker processes where the platform allows it and a core is free
(started first, they import the plotting stack while the report is assembled), else in-process.
Either way the figures are byte-for-byte the same.
matplotlib is imported lazily, always with the headless Agg backend.
"""

from __future__ import annotations

import base64
import io
import multiprocessing
import os
import textwrap
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
PRIOR_COLOUR = "#9E9E9E"
OBSERVED_COLOUR = "#000000"
DPI = 200  # print quality: figures are scaled down to the page, never up
RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
WORKERS_ENV = "FORECAST_REPORT_WORKERS"


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def palette(hypothesis_ids: Sequence[str]) -> dict[str, str]:
    """Hypothesis id -> colour, in study order; the one mapping every figure uses."""
    return {h: PALETTE[i % len(PALETTE)] for i, h in enumerate(hypothesis_ids)}


@dataclass(frozen=True)
class Figure:
    name: str  # stable id, e.g. "learned-hedging-hyperparameters"
    title: str
    caption: str
    alt: str
    png: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + self.base64

    def to_dict(self, with_image: bool = True) -> dict:
        d = {"name": self.name, "title": self.title, "caption": self.caption, "alt": self.alt}
        if with_image:
            d["png_base64"] = self.base64
        return d


@dataclass(frozen=True)
class _Job:
    name: str
    title: str
    caption: str
    alt: str
    fn: Callable[..., bytes]  # a module-level function (it is pickled by name for the workers)
    args: tuple
    kwargs: dict


class FigureJobs:
    """Figures to render, collected while a report is assembled and rendered in one batch."""

    def __init__(self) -> None:
        self._jobs: list[_Job] = []

    def add(self, name: str, title: str, caption: str, alt: str, fn: Callable[..., bytes], *args, **kwargs) -> str:
        self._jobs.append(_Job(name, title, caption, alt, fn, args, kwargs))
        return name

    def __contains__(self, name: str) -> bool:
        return any(j.name == name for j in self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self):
        return iter(self._jobs)


def default_workers() -> int:
    """Rendering processes: $FORECAST_REPORT_WORKERS, else 2 where fork is available and a core is free.

    A second process pays for its own imports (~3 CPU-seconds); that is a gain only when it gets
    a core of its own, so a busy machine (load average within one of the core count) renders here.
    """
    if os.environ.get(WORKERS_ENV):
        return max(1, int(os.environ[WORKERS_ENV]))
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return 1  # no fork (macOS/Windows default), or inside a daemonic worker (no child processes)
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] + 1 > cores
    except OSError:
        busy = False
    return 1 if busy or cores < 2 else 2


class FigureRenderer:
    """Renders ``FigureJobs``; a context manager whose worker processes start (and warm up) at once."""

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            with warnings.catch_warnings():
                # Python warns that forking a process with (BLAS) threads may deadlock; the
                # workers only import and plot, and never touch those threads.
                warnings.simplefilter("ignore", DeprecationWarning)
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("fork"), initializer=_warm_up
                )
                for _ in range(self.workers):
                    self._pool.submit(int)  # start every worker now: they import while the report is assembled

    def render(self, jobs: FigureJobs) -> dict[str, Figure]:
        jobs = list(jobs)
        if self._pool is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                futures: list[Future] = [self._pool.submit(_render, j.fn, j.args, j.kwargs) for j in jobs]
                pngs = [f.result() for f in futures]
        else:
            pngs = [_render(j.fn, j.args, j.kwargs) for j in jobs]
        return {j.name: Figure(j.name, j.title, j.caption, j.alt, png) for j, png in zip(jobs, pngs, strict=True)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> FigureRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _warm_up() -> None:
    """Worker initializer: import the plotting stack once, before any figure is asked for."""
    pyplot()
    import arviz_plots  # noqa: F401


def _render(fn: Callable[..., bytes], args: tuple, kwargs: dict) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of empty cells, etc.
        return fn(*args, **kwargs)


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    pyplot().close(fig)
    return buf.getvalue()


def legend_handles(items: Sequence[tuple[str, str]], marker: str = "o"):
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=c, marker=marker, linewidth=2, label=label) for label, c in items]


# --- support over time ---------------------------------------------------------------------


def support_history(
    quarters: Sequence[str],
    as_of: Sequence[str],
    probabilities: dict[str, np.ndarray],
    errors: dict[str, np.ndarray],
    flagged: np.ndarray,
    labels: dict[str, str],
    colours: dict[str, str],
    reference: tuple[str, str] | None = None,
) -> bytes:
    """Posterior probability of each hypothesis against the date its evidence was known.

    ``reference`` is an optional (label, ISO date) marked with a dotted line.
    """
    import matplotlib.dates as mdates

    plt = pyplot()
    x = np.array(as_of, dtype="datetime64[D]")
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(9.5, 4.2))
        for hid, p in probabilities.items():
            se = errors[hid]
            lo, hi = np.clip(p - 2 * se, 0, 1), np.clip(p + 2 * se, 0, 1)
            ax.fill_between(x, lo, hi, color=colours[hid], alpha=0.18, lw=0, step="post")
            ax.plot(x, p, color=colours[hid], lw=2, marker="o", ms=3.5, label=labels[hid], drawstyle="steps-post")
            if flagged.any():
                ax.scatter(
                    x[flagged], p[flagged], s=60, facecolors="none", edgecolors="#C00000", linewidths=1.5, zorder=5
                )
        if flagged.any():
            ax.scatter(
                [],
                [],
                s=60,
                facecolors="none",
                edgecolors="#C00000",
                linewidths=1.5,
                label="fit failed its convergence checks",
            )
        if reference is not None:
            x_ref = np.datetime64(reference[1], "D")
            ax.axvline(x_ref, color="#555555", ls=":", lw=1)
            ax.annotate(
                reference[0], (x_ref, 1.0), xytext=(3, -10), textcoords="offset points", fontsize=8, color="#555555"
            )
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("posterior probability")
        ax.set_xlabel("evidence known by the end of the quarter")
        ax.xaxis.set_major_locator(mdates.YearLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
        ax.grid(axis="y", color="#E5E5E5", lw=0.8)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return png_bytes(fig)


# --- prior beside posterior (ArviZ forest plots) -----------------------------------------


def forest(
    prior,
    posterior,
    colour: str,
    title: str,
    xlabel: str,
    *,
    variable_label: str = "parameter",
    xlim: tuple[float, float] | None = None,
) -> bytes:
    """An ArviZ forest plot of a prior and a posterior (xarray Datasets with chain/draw dims).

    Variables and coordinates must already carry readable names (they become the row labels);
    ``variable_label`` names the column of variable names.
    """
    import arviz_plots as azp
    import xarray as xr

    plt = pyplot()
    data = {
        "Prior": xr.DataTree.from_dict({"posterior": prior}),
        "Posterior": xr.DataTree.from_dict({"posterior": posterior}),
    }
    n_rows = sum(
        int(np.prod([v.sizes[d] for d in v.dims if d not in ("chain", "draw")])) for v in prior.data_vars.values()
    )
    with plt.rc_context(RC):
        # Point estimates are added below in one scatter call: arviz_plots draws one scatter per
        # row, which costs more than the rest of the plot.
        pc = azp.plot_forest(
            data,
            combined=True,
            backend="matplotlib",
            ci_kind="eti",
            ci_probs=(0.5, 0.94),
            visuals={"point_estimate": False},
            color=[PRIOR_COLOUR, colour],
            figure_kwargs={
                "width_ratios": [1.3, 1.7],
                "figsize": (9.0, 1.1 + 0.42 * n_rows),
                "figsize_units": "inches",
            },
        )
        fig = pc.viz["figure"].item()
        axes = fig.get_axes()
        forest_ax = axes[-1]
        _add_medians(forest_ax, pc, {"Prior": prior, "Posterior": posterior})
        forest_ax.set_xlabel(xlabel)
        if xlim is not None:
            forest_ax.set_xlim(*xlim)
        forest_ax.grid(axis="x", color="#E5E5E5", lw=0.8)
        for ax in axes[:-1]:  # the label columns: name them for a reader, not a programmer
            names = [(variable_label if t.get_text() == "variable" else t.get_text()) for t in ax.get_xticklabels()]
            ax.set_xticks(ax.get_xticks(), names)
            if names:  # keep the last column's name clear of the interval axis
                ax.get_xticklabels()[-1].set_horizontalalignment("right")
        height = fig.get_size_inches()[1]
        fig.subplots_adjust(top=1 - 0.75 / height, bottom=0.5 / height)
        fig.suptitle(title, fontsize=12, x=0.02, y=1 - 0.12 / height, ha="left", va="top")
        fig.legend(
            handles=legend_handles([("prior", PRIOR_COLOUR), ("posterior", colour)]),
            loc="upper right",
            bbox_to_anchor=(0.98, 1 - 0.05 / height),
            ncols=2,
            frameon=False,
            title="median, 50% and 94% intervals",
            title_fontsize=8,
        )
        return png_bytes(fig)


def _add_medians(ax, pc, data: dict) -> None:
    """Median markers at the y of each interval line that plot_forest drew (white fill, as ArviZ does)."""
    twig = pc.viz["twig"]
    xs, ys, cs = [], [], []
    for var in twig.data_vars:
        lines = twig[var]
        for idx in np.ndindex(lines.shape):
            sel = {d: lines.coords[d].values[i] for d, i in zip(lines.dims, idx, strict=True)}
            line = lines.values[idx]
            model = sel.pop("model")
            xs.append(float(np.median(data[model][var].sel(sel).values)))
            ys.append(float(np.asarray(line.get_ydata())[0]))
            cs.append(line.get_color())
    ax.scatter(xs, ys, s=22, facecolors="white", edgecolors=cs, linewidths=1.3, zorder=3)
    if ys:  # room for the outermost rows (the y axis is shared with the label column)
        ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)


# --- posterior predictive check per (group, domain) ---------------------------------------


def ppc_shares(
    group_labels: Sequence[str],
    domain_labels: Sequence[str],
    observed: np.ndarray,  # (groups, domains) observed cooperative share, NaN where no events
    n_events: np.ndarray,  # (groups, domains)
    replicated: dict[str, np.ndarray],  # hypothesis id -> (draws, groups, domains) replicated shares
    labels: dict[str, str],
    colours: dict[str, str],
) -> bytes:
    """Observed cooperative share per (group, domain) against each hypothesis's replications."""
    plt = pyplot()
    n_g, n_d = observed.shape
    hids = list(replicated)
    offsets = np.linspace(-0.25, 0.25, len(hids)) if len(hids) > 1 else np.zeros(1)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(n_g, 1, figsize=(9.5, 2.3 * n_g + 0.6), squeeze=False, sharey=True)
        for g in range(n_g):
            ax = axes[g, 0]
            x = np.arange(n_d)
            for k, hid in enumerate(hids):
                rep = replicated[hid][:, g, :]
                lo94, lo50, med, hi50, hi94 = np.nanpercentile(rep, [3, 25, 50, 75, 97], axis=0)
                ok = n_events[g] > 0
                xs = x[ok] + offsets[k]
                ax.vlines(xs, lo94[ok], hi94[ok], color=colours[hid], lw=1.2)
                ax.vlines(xs, lo50[ok], hi50[ok], color=colours[hid], lw=4)
                ax.plot(xs, med[ok], "o", color="white", mec=colours[hid], ms=4)
            has = n_events[g] > 0
            ax.plot(x[has], observed[g, has], "D", color=OBSERVED_COLOUR, ms=6, zorder=5)
            ticks = [f"{textwrap.fill(d, 18)}\n(n={int(n)})" for d, n in zip(domain_labels, n_events[g], strict=True)]
            ax.set_xticks(x, ticks, fontsize=8)
            ax.set_title(group_labels[g], loc="left")
            ax.set_ylim(-0.03, 1.03)
            ax.set_ylabel("cooperative share")
            ax.grid(axis="y", color="#E5E5E5", lw=0.8)
        handles = legend_handles([(labels[h], colours[h]) for h in hids], marker="|")
        handles += legend_handles([("observed", OBSERVED_COLOUR)], marker="D")
        handles[-1].set_linestyle("none")
        fig.legend(handles=handles, loc="upper center", ncols=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.supxlabel("issue domain (n = observed events)", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        return png_bytes(fig)


# --- LOO calibration (ArviZ PAV-adjusted calibration for binary outcomes) ------------------


def loo_calibration(y_rep: np.ndarray, observed: np.ndarray, colour: str, title: str) -> bytes:
    """ArviZ's PAV-adjusted calibration plot of LOO predictive draws (draws, events) for 0/1 outcomes."""
    import arviz_plots as azp
    import xarray as xr

    plt = pyplot()
    dims = ("chain", "draw", "event")
    dt = xr.DataTree.from_dict(
        {
            "posterior_predictive": xr.Dataset({"cooperative": (dims, y_rep[None].astype(np.int8))}),
            "observed_data": xr.Dataset({"cooperative": (("event",), observed.astype(np.int8))}),
        }
    )
    with plt.rc_context(RC):
        pc = azp.plot_ppc_pava(
            dt,
            backend="matplotlib",
            ci_prob=0.94,
            visuals={
                "lines": {"color": colour},
                "credible_interval": {"color": colour},
                "xlabel": {"text": "LOO predicted probability of cooperation"},
                "ylabel": {"text": "observed rate (PAV-calibrated)"},
                "title": False,
            },
            figure_kwargs={"figsize": (4.2, 3.6), "figsize_units": "inches"},
        )
        fig = pc.viz["figure"].item()
        ax = fig.get_axes()[0]
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(title, loc="left")
        return png_bytes(fig)


# --- evidence ----------------------------------------------------------------------------


def evidence_bars(
    names: Sequence[str],
    diffs: np.ndarray,
    leader: str,
    runner_up: str,
    labels: dict[str, str],
    colours: dict[str, str],
) -> bytes:
    """The most diagnostic observations: pointwise elpd difference, coloured by the hypothesis favoured."""
    plt = pyplot()
    y = np.arange(len(names))[::-1]
    cols = [colours[leader] if d > 0 else colours[runner_up] for d in diffs]
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(9.5, 0.28 * len(names) + 1.2))
        ax.barh(y, diffs, color=cols, height=0.7)
        ax.set_yticks(y, names, fontsize=8)
        ax.axvline(0, color="#333333", lw=0.8)
        ax.set_xlabel(
            f"pointwise elpd difference (nats): > 0 favours {labels[leader]}, < 0 favours {labels[runner_up]}"
        )
        ax.grid(axis="x", color="#E5E5E5", lw=0.8)
        from matplotlib.patches import Patch

        ax.legend(
            handles=[Patch(color=colours[h], label=f"favours {labels[h]}") for h in (leader, runner_up)],
            loc="lower right",
            frameon=False,
        )
        return png_bytes(fig)


# --- cooperation now ------------------------------------------------------------------------------


def cooperation(names: Sequence[str], now: np.ndarray, start: np.ndarray, now_label: str, start_label: str) -> bytes:
    """P(cooperative) per (group / domain): now (median, 90% interval) and an arrow from the window's start.

    ``now``: (rows, 3) median, low, high; ``start``: (rows,) medians at the window's first quarter.
    """
    plt = pyplot()
    n = len(names)
    y = np.arange(n)[::-1]
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(8.5, 0.3 * max(n, 3) + 1.3))
        for yi, (med, lo, hi), s0 in zip(y, now, start, strict=True):
            ax.plot([lo, hi], [yi, yi], color="#333333", lw=1.6, solid_capstyle="butt")
            if abs(med - s0) > 0.005:
                ax.annotate(
                    "",
                    (med, yi + 0.22),
                    (s0, yi + 0.22),
                    arrowprops={"arrowstyle": "->", "color": PRIOR_COLOUR, "lw": 1.0},
                )
        ax.plot(start, y + 0.22, "o", mfc="white", mec=PRIOR_COLOUR, ms=5, label=f"median in {start_label}")
        ax.plot(now[:, 0], y, "o", color="#0072B2", ms=6, label=f"median in {now_label} (line: 90% interval)")
        ax.set_yticks(y, list(names), fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color="#BBBBBB", lw=0.8, ls=":")
        ax.set_xlabel("probability that an interaction is cooperative")
        ax.grid(axis="x", color="#E5E5E5", lw=0.8)
        ax.set_axisbelow(True)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / max(n, 3)), ncol=2, frameon=False)
        return png_bytes(fig)
