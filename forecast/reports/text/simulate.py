"""Terminal rendering of `forecast simulate`."""

from __future__ import annotations

from forecast.workflows.simulate import SimulationResult


def render_simulate(result: SimulationResult) -> str:
    return "\n".join(
        [
            f"Simulated {result.n_events} SYNTHETIC events from hypothesis '{result.hypothesis}' ({result.source} "
            f"predictive, seed {result.seed}): {result.cooperative_share:.0%} cooperative.",
            f"  events:     {result.observations}",
            f"  study copy: {result.study_file}  (study '{result.study}__sim_{result.hypothesis}')",
            f"Fit it with: forecast update {result.study_file}",
        ]
    )
