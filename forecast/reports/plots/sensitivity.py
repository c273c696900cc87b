"""Sensitivity plots from ``sensitivity.json``: the tornado of prior variants and the prior-odds curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forecast.reports.figures import PRIOR_COLOUR, RC, png_bytes, pyplot

FLIP_COLOUR = "#C00000"


def tornado(
    names: Sequence[str],
    low: Sequence[float],
    high: Sequence[float],
    joint: Sequence[bool],
    base: float,
    leader_label: str,
    colour: str,
) -> bytes:
    """The range of the leader's posterior probability over each perturbed prior's variants, largest first.

    Joint perturbations (every prior of a hypothesis at once) are grey; the black line is the
    probability under the stated priors, the dashed one probability 1/2: a bar wholly to its right
    keeps the leader's majority in every variant, a bar that crosses it may let another lead.
    """
    plt = pyplot()
    n = len(names)
    y = np.arange(n)[::-1]
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(9.5, 0.32 * max(n, 3) + 1.4))
        widths = np.asarray(high, float) - np.asarray(low, float)
        cols = [PRIOR_COLOUR if j else colour for j in joint]
        ax.barh(y, widths, left=low, color=cols, height=0.7)
        ax.set_yticks(y, list(names), fontsize=8)
        ax.axvline(base, color="#000000", lw=1.2)
        ax.axvline(0.5, color=FLIP_COLOUR, lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"posterior probability of {leader_label} across the prior variants")
        ax.grid(axis="x", color="#E5E5E5", lw=0.8)
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        ax.legend(
            handles=[
                Patch(color=colour, label="one prior perturbed"),
                Patch(color=PRIOR_COLOUR, label="all priors of a hypothesis jointly"),
                Line2D([], [], color="#000000", lw=1.2, label="the stated priors"),
                Line2D([], [], color=FLIP_COLOUR, lw=0.8, ls="--", label="probability 1/2 (even odds)"),
            ],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )
        return png_bytes(fig)


def prior_odds(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    points: dict[str, tuple[float, float]],
    flip: float | None,
    leader: str,
    labels: dict[str, str],
    colours: dict[str, str],
) -> bytes:
    """Posterior probability of each hypothesis against its prior probability (the others keep their odds).

    ``curves``: hypothesis id -> (prior grid, posterior); ``points``: id -> the study's (prior,
    posterior); ``flip``: the leader's prior probability below which another hypothesis leads.
    """
    plt = pyplot()
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(7.0, 4.4))
        for hid, (prior, post) in curves.items():
            ax.plot(prior, post, color=colours[hid], lw=2, label=labels[hid])
            if hid in points:
                ax.plot(*points[hid], "o", color=colours[hid], ms=6)
        if flip is not None:
            ax.axvline(flip, color=colours[leader], ls=":", lw=1.2, label=f"{labels[leader]} stops leading")
        ax.plot([0, 1], [0, 1], color=PRIOR_COLOUR, lw=0.6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("prior probability of the hypothesis (the others keep their relative odds)")
        ax.set_ylabel("posterior probability")
        ax.grid(color="#E5E5E5", lw=0.8)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return png_bytes(fig)
