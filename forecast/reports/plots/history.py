"""Support over time from ``history.json``: each hypothesis's probability, what moved it, key events.

The top panel draws each hypothesis's posterior probability at the evaluated quarters, joined by
straight segments over each interval (the evidence of an interval arrives over the whole of it,
not on one quarter), in bands that alternate from interval to interval. The lower panel draws,
for each interval, the change of the log Bayes factor between the two hypotheses leading at the
end as a bar spanning the interval (hatched where it could not be split by event). The events
that moved it most over the whole window are numbered on the time axis at their dates, with a key
under the figure.

``history_png`` takes a ``history.json`` object (``History.to_dict()``); ``support_over_time``
takes the plain values, for the report. A study's constraint hypotheses (``history.json``'s
``"constraints"``) get their own figure, ``constraint_history_png``, in the same form (their
probabilities, what moved the Bayes factor of the two leading at the end): the two comparisons
are never drawn in one panel. For a study with constraint hypotheses only, ``history_png`` draws
that figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from forecast.reports.figures import RC, palette, png_bytes, pyplot

FLAGGED_COLOUR = "#C00000"
BAND_COLOUR = "#F2F2F2"
MOVERS = 8  # key events numbered on the time axis
KEY_WIDTH = 128  # characters per line of the key
CLOSE_DAYS = 75  # key events closer in time than this get their numbers stacked


def history_png(
    history: dict, reference: tuple[str, str] | None = None, colours: dict[str, str] | None = None
) -> bytes:
    """The support-over-time figure of a ``history.json`` object (see the module docstring)."""
    if not history["hypotheses"] and history.get("constraints"):
        return constraint_history_png(history, reference, colours)
    ids = [h["id"] for h in history["hypotheses"]]
    labels = {h["id"]: h.get("label") or h["id"] for h in history["hypotheses"]}
    points = history["points"]
    attribution = history.get("attribution")
    return support_over_time(
        [p["as_of"] for p in points],
        {h: [_nan(p["probabilities"][h]) for p in points] for h in ids},
        {h: [_nan(p["probabilities_se"][h]) for p in points] for h in ids},
        [not p["converged"] for p in points],
        labels,
        colours or palette(ids),
        intervals=attribution["intervals"] if attribution else None,
        movers=attribution["top_events"][:MOVERS] if attribution else None,
        between=tuple(attribution["hypotheses"]) if attribution else None,
        reference=reference,
    )


def constraint_history_png(
    history: dict, reference: tuple[str, str] | None = None, colours: dict[str, str] | None = None
) -> bytes:
    """The constraint hypotheses' probabilities over time (``history.json``'s ``"constraints"``), a
    figure of its own; a region holding no posterior draw is drawn at its upper bound."""
    c = history["constraints"]
    ids = [h["id"] for h in c["hypotheses"]]
    labels = {h["id"]: "constraint: " + (h.get("label") or h["id"]) for h in c["hypotheses"]}
    points = c["points"]
    attribution = c.get("attribution")
    return support_over_time(
        [p["as_of"] for p in points],
        {
            h: [_nan(p["probabilities_upper"][h] if p["bound"].get(h) else p["probabilities"][h]) for p in points]
            for h in ids
        },
        {h: [_nan(p["probabilities_se"][h]) for p in points] for h in ids},
        [not p["converged"] for p in points],
        labels,
        colours or palette(ids),
        intervals=attribution["intervals"] if attribution else None,
        movers=attribution["top_events"][:MOVERS] if attribution else None,
        between=tuple(attribution["hypotheses"]) if attribution else None,
        reference=reference,
        ylabel="probability of the\nconstraint hypothesis",
    )


def support_over_time(
    as_of: Sequence[str],
    probabilities: dict[str, Sequence[float]],
    errors: dict[str, Sequence[float]],
    flagged: Sequence[bool],
    labels: dict[str, str],
    colours: dict[str, str],
    *,
    intervals: Sequence[dict] | None = None,
    movers: Sequence[dict] | None = None,
    between: tuple[str, str] | None = None,
    reference: tuple[str, str] | None = None,
    ylabel: str = "posterior probability",
) -> bytes:
    """Posterior probabilities over the evaluated quarters, and (given ``intervals`` and ``between``)
    the change of the log Bayes factor per interval with the key events (``movers``) marked.

    ``as_of``: ISO dates of the points (the first is the prior's); ``intervals``: dicts with
    ``start_date``, ``end_date``, ``change``, ``change_se``, ``attributed``; ``movers``: dicts with
    ``event_date``, ``id``, ``counterpart``, ``domain``, ``outcome``, ``description``,
    ``contribution``; ``reference``: an optional (label, ISO date) marked with a dotted line.
    """
    import matplotlib.dates as mdates

    plt = pyplot()
    x = np.array(as_of, dtype="datetime64[D]")
    flagged = np.asarray(flagged, dtype=bool)
    with_changes = bool(intervals) and between is not None
    movers = list(movers or []) if with_changes else []
    key = _key_lines(movers, labels, between) if movers else []
    with plt.rc_context(RC):
        heights = [3.0, 1.7] if with_changes else [3.0]
        key_height = 0.16 * len(key) + 0.1 if key else 0.0
        fig = plt.figure(figsize=(9.5, 0.5 + sum(heights) + (key_height + 0.55 if key else 0.0)))
        if key:
            outer = fig.add_gridspec(2, 1, height_ratios=[sum(heights), key_height], hspace=0.55 / sum(heights) * 2)
            grid = outer[0].subgridspec(len(heights), 1, height_ratios=heights, hspace=0.1)
            key_cell = outer[1]
        else:
            grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.1)
        ax = fig.add_subplot(grid[0])
        axes = [ax]
        for j in range(1, len(x)):
            if j % 2:
                ax.axvspan(x[j - 1], x[j], color=BAND_COLOUR, lw=0, zorder=0)
        for hid, values in probabilities.items():
            p = np.array(values, dtype=float)
            se = np.array(errors[hid], dtype=float)
            lo, hi = np.clip(p - 2 * se, 0, 1), np.clip(p + 2 * se, 0, 1)
            ax.fill_between(x, lo, hi, color=colours[hid], alpha=0.18, lw=0)
            ax.plot(x, p, color=colours[hid], lw=2, marker="o", ms=3.5, label=labels[hid])
            if flagged.any():
                ax.scatter(x[flagged], p[flagged], s=60, facecolors="none", edgecolors=FLAGGED_COLOUR, lw=1.5, zorder=5)
        if flagged.any():
            ax.scatter(
                [], [], s=60, facecolors="none", edgecolors=FLAGGED_COLOUR, lw=1.5, label="fit failed its checks"
            )
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", color="#E5E5E5", lw=0.8)
        ax.set_axisbelow(True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        if with_changes:
            low = fig.add_subplot(grid[1], sharex=ax)
            axes.append(low)
            _changes(low, intervals, between, labels, colours, x)
            _mark_movers(low, movers)
            ax.tick_params(labelbottom=False)
        axes[-1].set_xlabel("evidence known by the end of the quarter")
        axes[-1].xaxis.set_major_locator(mdates.YearLocator())
        axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
        if reference is not None:
            x_ref = np.datetime64(reference[1], "D")
            for a in axes:
                a.axvline(x_ref, color="#555555", ls=":", lw=1)
            ax.annotate(
                reference[0], (x_ref, 1.0), xytext=(3, -10), textcoords="offset points", fontsize=8, color="#555555"
            )
        if key:
            text_ax = fig.add_subplot(key_cell)
            text_ax.axis("off")
            text_ax.text(0.0, 1.0, "\n".join(key), va="top", ha="left", fontsize=7.5, family="monospace")
        return png_bytes(fig)


def _changes(ax, intervals, between, labels, colours, x) -> None:
    """Each interval's change of the log Bayes factor as a bar over the interval, ±2 MC errors."""
    first, second = between
    for j in range(1, len(x)):
        if j % 2:
            ax.axvspan(x[j - 1], x[j], color=BAND_COLOUR, lw=0, zorder=0)
    top = 0.0
    for i in intervals:
        change = _num(i.get("change"))
        if change is None:
            continue
        start, end = np.datetime64(i["start_date"], "D"), np.datetime64(i["end_date"], "D")
        colour = colours[first] if change >= 0 else colours[second]
        split = bool(i.get("attributed"))
        ax.bar(
            start,
            change,
            width=(end - start).astype(int),
            align="edge",
            color=colour,
            alpha=0.75 if split else 0.35,
            hatch=None if split else "///",
            edgecolor=colour,
            lw=0.6,
        )
        se = _num(i.get("change_se"))
        mid = start + (end - start) // 2
        if se is not None and se > 0:
            ax.errorbar(mid, change, yerr=2 * se, color="#333333", lw=0.8, capsize=2)
        top = max(top, abs(change) + 2 * (se or 0.0))
    ax.axhline(0, color="#333333", lw=0.8)
    ax.set_axisbelow(True)
    if top > 0:
        ax.set_ylim(-1.25 * top, 1.25 * top)
    ax.set_ylabel(f"change of log BF\n(> 0: {_short(labels[first])})", fontsize=8.5)
    ax.grid(axis="y", color="#E5E5E5", lw=0.8)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(facecolor=colours[first], alpha=0.75, label=f"towards {labels[first]}"),
            Patch(facecolor=colours[second], alpha=0.75, label=f"towards {labels[second]}"),
            Patch(facecolor="#BBBBBB", hatch="///", edgecolor="#888888", label="not split by event"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8,
    )


def _mark_movers(ax, movers) -> None:
    """Number the key events at their dates on the lower panel's time axis."""
    import matplotlib.transforms as mtransforms

    on_axis = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    dates = [np.datetime64(e["event_date"], "D") for e in movers]
    # Numbers of events close in time are stacked so that they stay readable.
    levels: dict[int, int] = {}
    for n in sorted(range(len(dates)), key=lambda i: dates[i]):
        near = [levels[m] for m in levels if abs((dates[m] - dates[n]).astype(int)) < CLOSE_DAYS]
        levels[n] = min(set(range(len(near) + 1)) - set(near))
    for n, when in enumerate(dates):
        ax.plot([when], [0.0], marker="^", ms=7, color="#333333", transform=on_axis, clip_on=False, zorder=6)
        ax.annotate(
            str(n + 1),
            (when, 0.0),
            xycoords=on_axis,
            xytext=(0, 6 + 9 * levels[n]),
            textcoords="offset points",
            ha="center",
            fontsize=7.5,
            fontweight="bold",
        )


def _key_lines(movers, labels, between) -> list[str]:
    first = _short(labels[between[0]])
    lines = [f"Events that moved it most (▲ on the time axis; log BF units, > 0 towards {first}):"]
    for n, e in enumerate(movers, start=1):
        head = f"{n:>2}  {e['event_date']}  {_num(e['contribution']) or 0.0:+.2f}  {e['counterpart']} / {e['domain']}, "
        head += f"{e['outcome']}: "
        text = str(e.get("description") or e["id"])
        room = KEY_WIDTH - len(head)
        lines.append(head + (text if len(text) <= room else text[: room - 1] + "…"))
    return lines


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _num(x) -> float | None:
    """A stored figure (null for not estimable) as a float or None."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _nan(x) -> float:
    value = _num(x)
    return float("nan") if value is None else value
