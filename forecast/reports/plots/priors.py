"""The prior predictive plot from ``prior_predictive.json`` (written by `forecast priors`)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np

from forecast.reports.figures import RC, legend_handles, png_bytes, pyplot

Interval = tuple[float, float, float, float, float]  # q05, q25, median, q75, q95


def prior_predictive(
    group_labels: Sequence[str],
    columns: Sequence[Sequence[str]],  # per group: the x labels (domains, then typical start/end)
    intervals: dict[str, list[list[Interval]]],  # hypothesis id -> per group -> per column
    labels: dict[str, str],
    colours: dict[str, str],
    reference_quarter: str,
) -> bytes:
    """Per counterpart group: each hypothesis's prior predictive cooperative shares (median, 50% and 90%)."""
    plt = pyplot()
    hids = list(intervals)
    n_g = len(group_labels)
    offsets = np.linspace(-0.25, 0.25, len(hids)) if len(hids) > 1 else np.zeros(1)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(n_g, 1, figsize=(9.5, 2.3 * n_g + 0.6), squeeze=False, sharey=True)
        for g in range(n_g):
            ax = axes[g, 0]
            x = np.arange(len(columns[g]))
            for k, hid in enumerate(hids):
                q = np.asarray(intervals[hid][g], float).reshape(-1, 5)
                xs = x + offsets[k]
                ax.vlines(xs, q[:, 0], q[:, 4], color=colours[hid], lw=1.2)
                ax.vlines(xs, q[:, 1], q[:, 3], color=colours[hid], lw=4)
                ax.plot(xs, q[:, 2], "o", color="white", mec=colours[hid], ms=4)
            ax.set_xticks(x, [textwrap.fill(c, 18) for c in columns[g]], fontsize=8)
            ax.set_title(group_labels[g], loc="left")
            ax.set_ylim(-0.03, 1.03)
            ax.set_ylabel("cooperative share")
            ax.grid(axis="y", color="#E5E5E5", lw=0.8)
        handles = legend_handles([(labels[h], colours[h]) for h in hids], marker="|")
        fig.legend(handles=handles, loc="upper center", ncols=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.0))
        fig.supxlabel(
            f"issue domain at the reference quarter {reference_quarter}; a typical domain at the window's ends",
            fontsize=10,
        )
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        return png_bytes(fig)
